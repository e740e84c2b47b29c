"""Reading a request's upload and form fields; a bad one is a 422 naming it."""

import json
import unicodedata
from typing import Any, Optional

from fastapi import HTTPException, UploadFile

from ..db.metadata import MetadataError, check_metadata

MAX_SOURCE_CHARS = 1024


def upload_name(upload: UploadFile) -> str:
    return f"upload {upload.filename!r}" if upload.filename else "upload (no file name)"


def read_upload(upload: UploadFile) -> bytes:
    # The gate has already bounded the whole body, so reading the part whole is safe.
    upload.file.seek(0)
    return upload.file.read()


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")  # Python's json accepts NaN and Infinity; JSON does not


def metadata_field(text: Optional[str]) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise HTTPException(422, f"metadata form field is not valid JSON ({exc})") from None
    except RecursionError:
        raise HTTPException(422, "metadata form field is nested too deeply") from None
    try:
        return check_metadata(value, "metadata form field")
    except MetadataError as exc:
        raise HTTPException(422, str(exc)) from None


def source_name(text: Optional[str], what: str) -> Optional[str]:
    """The name an image is registered under: shown to people and stored as text
    (PostgreSQL refuses NUL characters), so no control characters and a bounded length."""
    if not text:
        return None
    if len(text) > MAX_SOURCE_CHARS:
        raise HTTPException(422, f"{what} is longer than {MAX_SOURCE_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise HTTPException(422, f"{what} {text!r} contains control characters")
    return text
