"""``robusthash serve``: the reference database over HTTP (FastAPI), and a small page.

One :class:`~robusthash.db.ReferenceDB` per app. Its SQLite or PostgreSQL connection
and its in-memory indexes are shared by FastAPI's worker threads, so every use of it
holds one lock; decoding and hashing, which take most of a request's time, run
outside the lock and in parallel. Authentication, the rate limit and the body size
limit are enforced in front of the app (:mod:`robusthash.service.gate`). Every error
answers ``{"detail": "..."}`` naming the input at fault. See docs/service.md.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations,
and those refer to values local to :func:`_api_routes` (the configured limits).
"""

import base64
import hashlib
import io
import json
import logging
import sqlite3
import threading
import unicodedata
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, AsyncIterator, Optional

import psycopg
from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Path as PathParam, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from .. import __version__
from ..db import Examined, QueryResult, ReferenceDB
from ..db.store import ImageRecord
from ..hashing import BaseHasher, get_hasher
from ..io import ImageError, header_size
from .config import ServiceConfig
from .gate import RequestGate
from .thumbnails import ThumbnailMissing, Thumbnails

log = logging.getLogger("robusthash.service")

API_PREFIX = "/v1"
PUBLIC_PATHS = (f"{API_PREFIX}/health",)
MAX_SOURCE_CHARS = 1024
MAX_IMAGE_ID = 2**63 - 1
# The page loads its own script, style and (blob:) previews, nothing from elsewhere.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
               "frame-ancestors 'none'")


# --- response models: they are what /openapi.json documents --------------------------

class ErrorOut(BaseModel):
    detail: Any = Field(description="what went wrong, naming the input at fault (a list for validation errors)")


class RegisterOut(BaseModel):
    image_id: int
    status: str = Field(description='"added"; "updated" when the same bytes were registered before and hashes '
                                    'they lacked were added; "existing" when nothing was new')
    left_out: list[str] = Field(default_factory=list, description="methods whose hash was too weak to register "
                                                                  "(e.g. PDQ quality below 50), and why")


class MatchOut(BaseModel):
    image_id: int
    source: str = Field(description="the registered image's file name or path")
    metadata: dict[str, Any]
    distance: float = Field(description="normalised Hamming distance (NHD, 0..1), or the method's own distance")
    hamming: Optional[int] = Field(description="Hamming distance in bits")
    matched: bool = Field(description="the method's decision for this image")
    rule: str = Field(description="the rule that decided, with its numbers")
    quality: Optional[int] = Field(None, description="the registered hash's quality (PDQ)")


class MethodResultOut(BaseModel):
    query: str
    method: str
    matched: bool
    decision: str = Field(description='"match" or "no match"')
    refused: Optional[str] = Field(None, description="why the query cannot match anything: too little "
                                                     "information in it, or a hash below its quality floor")
    quality: Optional[int] = Field(None, description="the query hash's quality (PDQ)")
    matches: list[MatchOut] = Field(
        description="every image the method matches, and at least the k nearest; nearest first")


class QueryOut(BaseModel):
    query: str = Field(description="the uploaded file's name")
    decision: str = Field(description='"match" when any method matched a registered image, else "no match"')
    matched_image_ids: list[int] = Field(description="images matched by at least one method, best first")
    results: list[MethodResultOut]


class ExplainOut(BaseModel):
    image_id: int = Field(description="the registered original compared with")
    label: str = Field(description='"same" (only non-editorial changes), "edited" or "different"')
    probabilities: dict[str, float]
    heatmap: list[list[float]] = Field(description="7×7, row 0 at the top, over the original: how likely each "
                                                   "cell was edited")
    edited_cells: list[tuple[int, int]] = Field(description="(row, column) of the cells at or above the threshold")
    threshold: float = Field(description="the comparator's heatmap cut, chosen on train pairs (model card)")
    aligned: bool = Field(description="whether a homography took the query onto the original")
    flipped: bool
    inliers: int
    picture: Optional[str] = Field(None, description="PNG (base64): query, original and the heatmap over both")


class ImageOut(BaseModel):
    image_id: int
    digest: str = Field(description="SHA-256 of the registered file's bytes")
    source: str
    metadata: dict[str, Any]
    width: Optional[int]
    height: Optional[int]
    added_at: str


class RemovedOut(BaseModel):
    image_id: int
    status: str = Field(description='"removed"')


class HealthOut(BaseModel):
    status: str
    version: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        401: "missing or wrong API key",
        404: "no such image, or no thumbnail for it",
        413: "request body over the upload limit",
        422: "invalid field, or an upload that is not a readable image (empty, corrupt, too many pixels)",
        429: "rate limit exceeded; see the Retry-After header",
    }
    return {code: {"model": ErrorOut, "description": meaning[code]} for code in codes}


# --- the state one app holds -----------------------------------------------------------

class Service:
    """The database (behind a lock), its hashers and the thumbnails."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.limits = config.load_limits
        self.ref = ReferenceDB(config.db, methods=list(config.methods) if config.methods else None, limits=self.limits)
        self.lock = threading.Lock()
        folder = config.thumbnails_folder()
        self.thumbnails = Thumbnails(folder, config.thumbnail_size, self.limits)
        # The comparator needs more pixels than a thumbnail; kept the same way, beside them.
        self.comparison_copies = Thumbnails(folder / "compare" if folder else None, config.comparison_size,
                                            self.limits)
        self._comparator = None
        self._comparator_lock = threading.Lock()
        with self.lock:
            self.ref.refresh()  # build the indexes now, not during the first query

    def close(self) -> None:
        with self.lock:
            try:
                self.ref.save_indexes()  # the next start loads them and catches up instead of rebuilding
            except OSError as exc:
                log.warning("could not save the indexes: %s", exc)
            self.ref.close()

    def hashers(self, methods: Optional[str]) -> list[BaseHasher]:
        """The hashers a query asked for (comma-separated), else the database's."""
        if not methods or not methods.strip():
            return [self.ref.hashers[m] for m in self.ref.methods]
        with self.lock:
            known = set(self.ref.methods) | {m for m, _ in self.ref.store.methods()}
        names = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in names if m not in known]
        if unknown:
            raise HTTPException(422, f"methods: {', '.join(map(repr, unknown))} not registered in this database; "
                                     f"it has {', '.join(sorted(known))}")
        return [self.ref.hashers.get(m) or get_hasher(m) for m in dict.fromkeys(names)]  # type: ignore[misc]

    def examine_upload(self, data: bytes, name: str, hashers: list[BaseHasher], variants: bool = True) -> Examined:
        """Hash with each and measure its information (the loader refuses non-images and
        pixel bombs, naming the upload)."""
        try:
            return self.ref.examine(data, [h.name for h in hashers], name, variants)
        except ImageError as exc:
            raise HTTPException(422, str(exc)) from None
        except ValueError as exc:  # a hasher refusing a decoded picture (e.g. too small) is still bad input
            raise HTTPException(422, f"{name}: cannot be hashed ({exc})") from None

    def comparator(self):
        """The shipped image comparator, loaded on first use; 503 when it cannot be."""
        from ..compare import ImageComparator

        with self._comparator_lock:
            if self._comparator is None:
                try:
                    self._comparator = ImageComparator(limits=self.limits)
                except (ValueError, ImportError) as exc:
                    raise HTTPException(503, f"the image comparator is unavailable: {exc}") from None
            return self._comparator

    def record(self, image_id: int) -> ImageRecord:
        with self.lock:
            record = self.ref.store.image(image_id)
        if record is None:
            raise HTTPException(404, f"no registered image with id {image_id}")
        return record


def _upload_name(upload: UploadFile) -> str:
    return f"upload {upload.filename!r}" if upload.filename else "upload (no file name)"


def _read_upload(upload: UploadFile) -> bytes:
    # The gate has already bounded the whole body, so reading the part whole is safe.
    upload.file.seek(0)
    return upload.file.read()


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")  # Python's json accepts NaN and Infinity; JSON does not


def _metadata(text: Optional[str]) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise HTTPException(422, f"metadata form field is not valid JSON ({exc})") from None
    except RecursionError:
        raise HTTPException(422, "metadata form field is nested too deeply") from None
    if not isinstance(value, dict):
        raise HTTPException(422, f"metadata form field must be a JSON object, not {type(value).__name__}")
    return value


def _source(text: Optional[str], what: str) -> Optional[str]:
    """The name an image is registered under: shown to people and stored as text
    (PostgreSQL refuses NUL characters), so no control characters and a bounded length."""
    if not text:
        return None
    if len(text) > MAX_SOURCE_CHARS:
        raise HTTPException(422, f"{what} is longer than {MAX_SOURCE_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise HTTPException(422, f"{what} {text!r} contains control characters")
    return text


def _method_result(result: QueryResult) -> dict[str, Any]:
    return {**result.to_dict(), "decision": "match" if result.matched else "no match"}


def _matched_ids(results: list[QueryResult]) -> list[int]:
    best: dict[int, float] = {}
    for result in results:
        for m in result.matched:
            best[m.image.id] = min(best.get(m.image.id, m.distance), m.distance)
    return sorted(best, key=lambda i: (best[i], i))


def _image_out(record: ImageRecord) -> dict[str, Any]:
    return {"image_id": record.id, "digest": record.digest, "source": record.source, "metadata": record.metadata,
            "width": record.width, "height": record.height, "added_at": record.added_at}


# --- routes ------------------------------------------------------------------------------

# These declare the two ways of sending the key, so that /openapi.json and /docs know
# them; the check itself happens in the gate, before the body is read.
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an accepted API key")
_bearer = HTTPBearer(auto_error=False, description="the same key as a bearer token")


def _documented_auth(_key: Annotated[Optional[str], Depends(_key_header)],
                     _token: Annotated[Any, Depends(_bearer)]) -> None:
    return None


def _api_routes(service: Service) -> APIRouter:
    config = service.config
    protected = APIRouter(prefix=API_PREFIX, dependencies=[Depends(_documented_auth)],
                          responses=_errors(401, 413, 429))

    @protected.post("/images", status_code=201, response_model=RegisterOut, tags=["images"],
                    summary="Register an original",
                    responses={200: {"model": RegisterOut, "description": "already registered (same bytes)"},
                               **_errors(422)})
    def register(
        response: Response,
        file: Annotated[UploadFile, File(description="the image (any format the loader reads)")],
        metadata: Annotated[Optional[str], Form(
            description='JSON object stored with the image, e.g. {"owner": "agency"}')] = None,
        source: Annotated[Optional[str], Form(description="name to register it under (default: the file name)",
                                              max_length=MAX_SOURCE_CHARS)] = None,
    ) -> dict[str, Any]:
        """Hash the upload with the database's methods and register it. The same bytes
        registered twice give the same id (status "existing", HTTP 200); hashes the
        image lacks, e.g. of a method added since, are added."""
        data, name = _read_upload(file), _upload_name(file)
        meta = _metadata(metadata)
        registered_as = _source(source, "source form field") if source else _source(file.filename, "file name")
        examined = service.examine_upload(data, name, [service.ref.hashers[m] for m in service.ref.methods],
                                          variants=False)
        digest = hashlib.sha256(data).hexdigest()
        try:
            with service.lock:
                image_id, status, left_out = service.ref.add_examined(registered_as or digest, digest, examined, meta,
                                                                      header_size(data))
        except ValueError as exc:  # refused: too little information in it, or every hash too weak
            raise HTTPException(422, f"{name}: {exc}") from None
        _keep_thumbnail(service, digest, data)
        response.status_code = 201 if status == "added" else 200
        response.headers["Location"] = f"{API_PREFIX}/images/{image_id}"
        return {"image_id": image_id, "status": status, "left_out": left_out}

    @protected.post("/query", response_model=QueryOut, tags=["search"], summary="Is this image one of mine?",
                    responses=_errors(422))
    def query(
        file: Annotated[UploadFile, File(description="the image to look up")],
        k: Annotated[Optional[int], Form(ge=1, le=config.max_k,
                                         description=f"at least this many nearest images per method "
                                                     f"(default {config.default_k}); every match is returned")] = None,
        methods: Annotated[Optional[str], Form(description="comma-separated methods (default: the database's)")] = None,
    ) -> dict[str, Any]:
        """Ranked registered images per method, with distances, each method's decision
        and the rule that decided; ``decision`` is "match" if any method matched."""
        data, name = _read_upload(file), _upload_name(file)
        examined = service.examine_upload(data, name, service.hashers(methods))
        label = file.filename or "upload"
        with service.lock:
            results = service.ref.query_examined(examined, k=k or config.default_k, source=label)
        matched = _matched_ids(results)
        return {"query": label, "decision": "match" if matched else "no match", "matched_image_ids": matched,
                "results": [_method_result(r) for r in results]}

    # Bounded above too: a larger number does not fit the databases' 64-bit ids.
    ImageId = Annotated[int, PathParam(ge=1, le=MAX_IMAGE_ID, description="a registered image's id")]

    @protected.get("/images/{image_id}", response_model=ImageOut, tags=["images"], summary="A registered image",
                   responses=_errors(404, 422))
    def get_image(image_id: ImageId) -> dict[str, Any]:
        return _image_out(service.record(image_id))

    @protected.delete("/images/{image_id}", response_model=RemovedOut, tags=["images"],
                      summary="Remove a registered image", responses=_errors(404, 422))
    def delete_image(image_id: ImageId) -> dict[str, Any]:
        """Remove the image and its hashes; later queries no longer find it."""
        with service.lock:
            removed = service.ref.remove([image_id])
        if not removed:
            raise HTTPException(404, f"no registered image with id {image_id}")
        return {"image_id": image_id, "status": "removed"}

    @protected.get("/images/{image_id}/thumbnail", tags=["images"], summary="A small JPEG of a registered image",
                   response_class=Response,
                   responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG, longest side "
                                    f"{config.thumbnail_size} px"}, **_errors(404, 422)})
    def thumbnail(image_id: ImageId) -> Response:
        """Kept from the upload for images registered here; made from the source file
        (if it is on this server and unchanged) for images registered from files."""
        record = service.record(image_id)
        try:
            jpeg = service.thumbnails.get(record)
        except ThumbnailMissing as exc:
            raise HTTPException(404, str(exc)) from None
        except ImageError as exc:
            raise HTTPException(404, f"image {image_id}: no thumbnail ({exc})") from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @protected.post("/images/{image_id}/explain", response_model=ExplainOut, tags=["images"],
                    summary="What was edited between an upload and a registered original?",
                    responses={**_errors(404, 422), 503: {"model": ErrorOut, "description": "no comparator"}})
    def explain(
        image_id: ImageId,
        file: Annotated[UploadFile, File(description="the copy to compare with the registered image")],
        picture: Annotated[bool, Form(description="include the PNG for people")] = True,
    ) -> dict[str, Any]:
        """Align the upload to the registered image, then the image comparator: same
        picture, edited (and where: a 7×7 heatmap) or different (docs/comparator.md).
        The original is the copy kept at registration (or made from its unchanged
        source file)."""
        from ..compare.picture import explanation_picture

        record = service.record(image_id)
        comparator = service.comparator()
        data, name = _read_upload(file), _upload_name(file)
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

    @protected.get("/stats", tags=["service"], summary="Images, hashes per method, calibrations, limits")
    def stats() -> dict[str, Any]:
        with service.lock:
            stats = service.ref.stats()
        return {**stats, "limits": {"max_upload_bytes": config.max_upload_bytes, "max_pixels": config.max_pixels,
                                    "rate_limit_per_minute": config.rate_limit, "max_k": config.max_k}}

    router = APIRouter()
    router.include_router(protected)

    @router.get(f"{API_PREFIX}/health", response_model=HealthOut, tags=["service"],
                summary="Liveness (no API key needed)", responses={503: {"model": ErrorOut}})
    def health() -> dict[str, Any]:
        try:
            with service.lock:
                service.ref.store.execute("SELECT 1").fetchone()
        except Exception as exc:  # noqa: BLE001 - an unreachable database is the answer, not a crash
            raise HTTPException(503, f"database unavailable: {exc}") from None
        return {"status": "ok", "version": __version__}

    return router


def _keep_thumbnail(service: Service, digest: str, data: bytes) -> None:
    """Keep a preview of an uploaded original and its copy for the comparator; the image
    is registered even if this fails."""
    for kept in (service.thumbnails, service.comparison_copies):
        try:
            kept.keep(digest, data)
        except (ImageError, OSError) as exc:
            log.warning("no %s px copy kept for %s: %s", kept.size, digest, exc)


def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """A locked or unreachable database is the server's condition, not the request's fault."""
    return JSONResponse({"detail": f"database busy or unavailable ({exc}); retry later"}, status_code=503,
                        headers={"Retry-After": "5"})


def _page_routes(app: FastAPI) -> None:
    static = resources.files("robusthash.service") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=str(static)), name="static")


def create_app(config: ServiceConfig) -> FastAPI:
    """The service for one database. Opens it now, so a bad URL fails here, not later."""
    import faiss

    # Queries arrive one at a time from many threads; FAISS's OpenMP threads on top of
    # them stall single queries badly on a busy machine (benchmarks/README.md, search).
    faiss.omp_set_num_threads(1)
    service = Service(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="robusthash",
        version=__version__,
        summary="Register original images; recognise their (attacked) copies by robust hashes.",
        description=(
            "Every `/v1` endpoint except `/v1/health` needs an API key, in the `X-API-Key` header or as "
            "`Authorization: Bearer <key>`. Limits: request body "
            f"{config.max_upload_bytes:,} bytes (413), image {config.max_pixels:,} pixels (422, refused before "
            f"decoding), {config.rate_limit or 'unlimited'} requests per minute per key (429 with Retry-After). "
            'Errors are `{"detail": ...}` naming the input at fault.'
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    for error in (sqlite3.OperationalError, psycopg.OperationalError):
        app.add_exception_handler(error, _database_unavailable)
    app.include_router(_api_routes(service))
    _page_routes(app)
    app.add_middleware(
        RequestGate, api_keys=config.api_keys, allow_anonymous=config.allow_anonymous, rate_limit=config.rate_limit,
        max_body_bytes=config.max_upload_bytes,
        is_protected=lambda path: path.startswith(f"{API_PREFIX}/") and path not in PUBLIC_PATHS,
    )
    return app


__all__ = ["ServiceConfig", "create_app"]
