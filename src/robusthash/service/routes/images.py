"""Registered images: register one, get, delete, its thumbnail."""

from typing import Annotated, Any, Optional

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile

from ...db.store import ImageRecord
from ...hashing.base import DecodedImage
from ...io import ImageError
from ..models import ImageOut, RegisterOut, RemovedOut, errors
from ..state import Service
from ..thumbnails import ThumbnailMissing
from ..uploads import MAX_SOURCE_CHARS, metadata_field, read_upload, source_name, upload_name
from . import API_PREFIX, ImageId, protected_router


def _image_out(record: ImageRecord) -> dict[str, Any]:
    return {"image_id": record.id, "digest": record.digest, "source": record.source, "metadata": record.metadata,
            "width": record.width, "height": record.height, "added_at": record.added_at}


def router(service: Service) -> APIRouter:
    config = service.config
    images = protected_router()

    @images.post("/images", status_code=201, response_model=RegisterOut, tags=["images"],
                 summary="Register an original",
                 responses={200: {"model": RegisterOut, "description": "already registered (same bytes)"},
                            **errors(422)})
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
        data, name = read_upload(file), upload_name(file)
        meta = metadata_field(metadata)
        registered_as = source_name(source, "source form field") if source else source_name(file.filename, "file name")
        # Hashed outside the lock; the library admits and registers it (ReferenceDB.add_examined).
        # One decoding serves the hashes, the thumbnail and the comparator's copy.
        pixels = DecodedImage(data, service.limits, name)
        examined = service.examine_upload(pixels, name, [service.ref.hashers[m] for m in service.ref.methods],
                                          query=False)
        digest = examined.digest
        assert digest is not None  # examined from the upload's bytes
        try:
            with service.write_lock:
                image_id, status, left_out = service.writer.add_examined(registered_as or digest, examined, meta)
        except ValueError as exc:  # refused: too little information in it, or every hash too weak
            raise HTTPException(422, f"{name}: {exc}") from None
        service.keep_copies(digest, pixels)
        response.status_code = 201 if status == "added" else 200
        response.headers["Location"] = f"{API_PREFIX}/images/{image_id}"
        return {"image_id": image_id, "status": status, "left_out": left_out}

    @images.get("/images/{image_id}", response_model=ImageOut, tags=["images"], summary="A registered image",
                responses=errors(404, 422))
    def get_image(image_id: ImageId) -> dict[str, Any]:
        return _image_out(service.record(image_id))

    @images.delete("/images/{image_id}", response_model=RemovedOut, tags=["images"],
                   summary="Remove a registered image", responses=errors(404, 422))
    def delete_image(image_id: ImageId) -> dict[str, Any]:
        """Remove the image and its hashes; later queries no longer find it."""
        with service.write_lock:
            removed = service.writer.remove([image_id])
        if not removed:
            raise HTTPException(404, f"no registered image with id {image_id}")
        return {"image_id": image_id, "status": "removed"}

    @images.get("/images/{image_id}/thumbnail", tags=["images"], summary="A small JPEG of a registered image",
                response_class=Response,
                responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG, longest side "
                                 f"{config.thumbnail_size} px"}, **errors(404, 422)})
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

    return images
