"""The service's settings: one frozen object, checked once, shared by every part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..db.milvus import is_milvus_url, parse_milvus_url
from ..io import LoadLimits

MIB = 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 20 * MIB
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_RATE_LIMIT = 120  # requests per minute per API key
DEFAULT_K = 5
MAX_K = 100


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of ``robusthash serve`` (see docs/service.md).

    db: SQLite file, ``postgresql://`` URL or ``milvus://host:port?store=…`` of the reference database.
    methods: hashers used to register and query (default: the database's own).
    api_keys: accepted keys; empty only with ``allow_anonymous=True`` (``--no-auth``).
    max_upload_bytes: largest request body accepted, multipart envelope included.
    max_pixels: largest width × height accepted, checked from the header before decoding.
    rate_limit: requests per minute per API key (a token bucket holding a minute's worth,
        so short bursts are fine); 0 turns the limit off.
    default_k / max_k: nearest images a query returns unless it asks, and the most it may ask.
    thumbnail_dir: where thumbnails of uploaded originals are kept (default for SQLite:
        ``<db>.thumbnails/``; for PostgreSQL none, so only local source files have one).
    source_roots: folders holding the files registered with ``robusthash db add``; a
        registered source is opened (for a thumbnail or the comparator's copy) only
        if it lies inside one of them. Default none: no path a client named is opened.
    thumbnail_size: longest side of a thumbnail, in pixels.
    comparison_size: longest side of the copy of each original kept (beside the
        thumbnails) for the image comparator (``/v1/images/{id}/explain``).
    max_decodes: uploads decoded and hashed at once (each up to about 0.3 GB at the pixel
        limit); decode_wait: seconds a request waits for its turn before a 503.
    readers: queries judged at once, each through a database connection and indexes of
        its own (the indexes' memory is held once per reader).
    """

    db: str
    methods: tuple[str, ...] | None = None
    api_keys: tuple[str, ...] = ()
    allow_anonymous: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    rate_limit: int = DEFAULT_RATE_LIMIT
    default_k: int = DEFAULT_K
    max_k: int = MAX_K
    thumbnail_dir: Path | None = None
    source_roots: tuple[Path, ...] = ()
    thumbnail_size: int = 256
    comparison_size: int = 512
    max_decodes: int = 2
    decode_wait: float = 10.0
    readers: int = 2

    def __post_init__(self) -> None:
        if not self.api_keys and not self.allow_anonymous:
            raise ValueError("no API key given: pass at least one, or allow anonymous access explicitly")
        if any(not key or not key.isascii() or not key.isprintable() for key in self.api_keys):
            raise ValueError("API keys must be non-empty printable ASCII (they travel in an HTTP header)")
        for name in ("max_upload_bytes", "max_pixels", "default_k", "max_k", "thumbnail_size", "comparison_size",
                     "max_decodes", "readers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.decode_wait < 0:
            raise ValueError(f"decode_wait must be 0 or more seconds, not {self.decode_wait}")
        if self.rate_limit < 0:
            raise ValueError(f"rate_limit must be 0 (off) or more, not {self.rate_limit}")
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) exceeds max_k ({self.max_k})")

    @property
    def load_limits(self) -> LoadLimits:
        return LoadLimits(max_pixels=self.max_pixels, max_bytes=self.max_upload_bytes)

    @property
    def store(self) -> str:
        """Where the truth lives: ``db`` itself, or the store a ``milvus://`` URL names."""
        return parse_milvus_url(self.db).store if is_milvus_url(self.db) else self.db

    @property
    def is_postgres(self) -> bool:
        return self.store.startswith(("postgresql://", "postgres://"))

    def thumbnails_folder(self) -> Path | None:
        if self.thumbnail_dir is not None:
            return self.thumbnail_dir
        return None if self.is_postgres else Path(f"{self.store}.thumbnails")
