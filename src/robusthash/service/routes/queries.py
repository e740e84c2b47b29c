"""Asking about an upload: is it one of mine (query), what was edited (explain)."""

import base64
import io
from typing import Annotated, Any, Optional

from fastapi import APIRouter, File, Form, HTTPException, UploadFile

from ...db import QueryResult
from ...io import ImageError
from ..models import ErrorOut, ExplainOut, QueryOut, errors
from ..state import Service
from ..thumbnails import ThumbnailMissing
from ..uploads import read_upload, upload_name
from . import ImageId, protected_router


def _method_result(result: QueryResult) -> dict[str, Any]:
    return {**result.to_dict(), "decision": "match" if result.matched else "no match"}


def router(service: Service) -> APIRouter:
    config = service.config
    queries = protected_router()

    @queries.post("/query", response_model=QueryOut, tags=["search"], summary="Is this image one of mine?",
                  responses=errors(422))
    def query(
        file: Annotated[UploadFile, File(description="the image to look up")],
        k: Annotated[Optional[int], Form(ge=1, le=config.max_k,
                                         description=f"at least this many nearest images per method "
                                                     f"(default {config.default_k}); every match is returned")] = None,
        methods: Annotated[Optional[str], Form(description="comma-separated methods (default: the database's)")] = None,
    ) -> dict[str, Any]:
        """One verdict (the identification engine: every method's candidates, each verified
        against its original): ``match``, ``montage`` or ``no match``, the originals it
        names, every candidate checked with its evidence, and each method's own result."""
        from ...identify import NO_MATCH, Identifier

        data, name = read_upload(file), upload_name(file)
        hashers = service.hashers(methods)
        examined = service.examine_upload(data, name, hashers, query=True)
        label = file.filename or "upload"
        with service.reading() as reader:
            verdict = Identifier(reader).identify_examined(examined, label, [h.name for h in hashers],
                                                                k or config.default_k)
        record = verdict.to_dict(details=True)
        named = [m.image.id for m in verdict.matches]
        return {**{key: record[key] for key in ("query", "verdict", "matches", "refused", "candidates")},
                "decision": "no match" if verdict.verdict == NO_MATCH else "match", "matched_image_ids": named,
                "results": [_method_result(r) for r in verdict.results]}

    @queries.post("/images/{image_id}/explain", response_model=ExplainOut, tags=["images"],
                  summary="What was edited between an upload and a registered original?",
                  responses={**errors(404, 422), 503: {"model": ErrorOut, "description": "no comparator"}})
    def explain(
        image_id: ImageId,
        file: Annotated[UploadFile, File(description="the copy to compare with the registered image")],
        picture: Annotated[bool, Form(description="include the PNG for people")] = True,
    ) -> dict[str, Any]:
        """Align the upload to the registered image, then the image comparator: same
        picture, edited (and where: a 7×7 heatmap) or different (docs/comparator.md).
        The original is the copy kept at registration (or made from its unchanged
        source file)."""
        from ...compare.picture import explanation_picture

        record = service.record(image_id)
        comparator = service.comparator()
        data, name = read_upload(file), upload_name(file)
        try:
            original = comparator.load(service.comparison_copies.get(record))
        except ThumbnailMissing as exc:
            raise HTTPException(404, f"{exc} (nothing to compare with)") from None
        except ImageError as exc:
            raise HTTPException(404, f"image {image_id}: its kept copy cannot be read ({exc})") from None
        stream = io.BytesIO(data)
        stream.name = name
        try:
            query = comparator.load(stream)
        except ImageError as exc:
            raise HTTPException(422, str(exc)) from None
        result = comparator.explain_images(query, original)
        answer = {"image_id": image_id, **result.to_dict()}
        if picture:
            buffer = io.BytesIO()
            explanation_picture(query, original, result).save(buffer, format="PNG")
            answer["picture"] = base64.b64encode(buffer.getvalue()).decode("ascii")
        return answer

    return queries
