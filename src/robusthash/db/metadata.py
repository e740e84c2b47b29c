"""What may be stored as an image's metadata: a JSON object every store keeps and gives
back as it was, within stated limits.

Checked on the way in (``db add --meta``, ``ReferenceDB.add``, the service's register),
so that nothing stored can later fail to be read or sent. Unchecked, a document nested
256 levels deep was stored and then broke every read of it (the JSON encoder's recursion
limit), and a lone surrogate (``"\\ud800"``) is no UTF-8 text at all.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 16  # levels of objects and arrays, the top object being 1
MAX_BYTES = 64 * 1024  # of the compact UTF-8 JSON
MAX_KEY_CHARS = 256


class MetadataError(ValueError):
    """Metadata that cannot be stored; the message says what is wrong and where."""


def check_metadata(value: Any, what: str = "metadata") -> dict[str, Any]:
    """``value`` if it can be stored as metadata, else :class:`MetadataError` naming
    ``what`` and the problem: a JSON object of at most :data:`MAX_DEPTH` levels and
    :data:`MAX_BYTES` bytes, string keys of at most :data:`MAX_KEY_CHARS` characters,
    text that is valid Unicode without NUL characters (PostgreSQL's jsonb refuses them),
    finite numbers."""
    if not isinstance(value, dict):
        raise MetadataError(f"{what} must be a JSON object, not {type(value).__name__}")
    _check(value, what, "", 1)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_BYTES:
        raise MetadataError(f"{what} is {size:,} bytes of JSON; at most {MAX_BYTES:,} are stored")
    return value


def _check(value: Any, what: str, path: str, depth: int) -> None:
    if isinstance(value, (dict, list)):
        if depth > MAX_DEPTH:
            raise MetadataError(f"{what} is nested more than {MAX_DEPTH} levels deep (at {path or 'the top'})")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict):
                if not isinstance(key, str):
                    raise MetadataError(f"{what}: key {key!r} at {path or 'the top'} is not a string")
                if len(key) > MAX_KEY_CHARS:
                    raise MetadataError(f"{what}: a key at {path or 'the top'} is longer than {MAX_KEY_CHARS} "
                                        "characters")
                _check_text(key, what, f"{path}/{key[:40]}")
            _check(item, what, f"{path}/{str(key)[:40]}", depth + 1)
    elif isinstance(value, str):
        _check_text(value, what, path)
    elif isinstance(value, float) and not math.isfinite(value):
        raise MetadataError(f"{what}: {value} at {path} is not a JSON number")
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise MetadataError(f"{what}: {type(value).__name__} at {path} is not a JSON value")


def _check_text(text: str, what: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MetadataError(f"{what}: text at {path or 'the top'} is not valid Unicode (a lone surrogate)") from None
    if "\x00" in text:
        raise MetadataError(f"{what}: text at {path or 'the top'} contains a NUL character")
