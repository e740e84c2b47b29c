"""The state one app holds: the database (readers for queries, a writer), its hashers,
the thumbnails and the comparator. Routes (:mod:`robusthash.service.routes`) take a
:class:`Service`."""

import logging
import queue
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

from fastapi import HTTPException

from ..db import Examined, ReferenceDB
from ..db.store import ImageRecord
from ..hashing import BaseHasher, get_hasher
from ..hashing.base import DecodedImage
from ..io import ImageError
from .config import ServiceConfig
from .thumbnails import Thumbnails

log = logging.getLogger("robusthash.service")


class Service:
    """The database (readers and a writer), its hashers and the thumbnails."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.limits = config.load_limits
        self.ref = ReferenceDB(config.db, methods=list(config.methods) if config.methods else None, limits=self.limits)
        # A ReferenceDB is used by one thread at a time. Queries are judged by
        # ``config.readers`` of them at once, each with its own connection and indexes
        # (each catches up with committed writes by itself), so a query waits for a free
        # reader, not for every other query; ``self.ref`` is the first of them.
        self._readers = [self.ref] + [ReferenceDB(config.db, methods=self.ref.methods, limits=self.limits)
                                      for _ in range(config.readers - 1)]
        self._free: queue.LifoQueue[ReferenceDB] = queue.LifoQueue()
        # Writes (register, delete) go through a connection and a lock of their own: a
        # write that waits for another process's write lock (SQLite's busy timeout, 30 s)
        # must not hold the lock every query takes. Queries see committed writes at once
        # (WAL, MVCC) and bring their indexes up to date themselves.
        self.writer = ReferenceDB(config.store, methods=self.ref.methods, limits=self.limits)
        self.write_lock = threading.Lock()
        folder = config.thumbnails_folder()
        self.thumbnails = Thumbnails(folder, config.thumbnail_size, self.limits, config.source_roots)
        # The comparator needs more pixels than a thumbnail; kept the same way, beside them.
        self.comparison_copies = Thumbnails(folder / "compare" if folder else None, config.comparison_size,
                                            self.limits, config.source_roots)
        self._comparator = None
        self._comparator_lock = threading.Lock()
        # Decoding and hashing hold the most memory a request takes (about 0.3 GB for a
        # 50-megapixel upload, docs/service.md): at most max_decodes at once, whatever
        # the number of threads; a request that waits longer than decode_wait gets 503.
        self.decoding = threading.BoundedSemaphore(config.max_decodes)
        for reader in self._readers:
            reader.refresh()  # build the indexes now, not during the first query
            self._free.put(reader)

    @contextmanager
    def reading(self) -> Iterator[ReferenceDB]:
        """A reader of the database for this thread alone, until the block ends."""
        reader = self._free.get()
        try:
            yield reader
        finally:
            self._free.put(reader)

    def close(self) -> None:
        readers = [self._free.get() for _ in self._readers]  # each, once its query is done
        try:
            self.ref.save_indexes()  # the next start loads them and catches up instead of rebuilding
        except OSError as exc:
            log.warning("could not save the indexes: %s", exc)
        for reader in readers:
            reader.close()
        with self.write_lock:
            self.writer.close()

    def hashers(self, methods: Optional[str]) -> list[BaseHasher]:
        """The hashers a query asked for (comma-separated), else the database's."""
        if not methods or not methods.strip():
            return [self.ref.hashers[m] for m in self.ref.methods]
        with self.reading() as reader:
            known = set(reader.methods) | {m for m, _ in reader.store.methods()}
        names = [m.strip() for m in methods.split(",") if m.strip()]
        if not names:  # ",,,": something was asked for, but no method named
            raise HTTPException(422, f"methods: {methods!r} names no method; leave it out for the database's "
                                     f"({', '.join(self.ref.methods)})")
        unknown = [m for m in names if m not in known]
        if unknown:
            raise HTTPException(422, f"methods: {', '.join(map(repr, unknown))} not registered in this database; "
                                     f"it has {', '.join(sorted(known))}")
        return [self.ref.hashers.get(m) or get_hasher(m) for m in dict.fromkeys(names)]  # type: ignore[misc]

    def examine_upload(self, data: bytes | DecodedImage, name: str, hashers: list[BaseHasher],
                       query: bool) -> Examined:
        """:meth:`ReferenceDB.examine` with the database's local features, its refusals as
        422: the loader refuses non-images and pixel bombs, naming the upload. A
        ``query`` is examined as it is given: the engine looks for its variants where it
        needs them, on the decodings made here; else an image to register."""
        if not self.decoding.acquire(timeout=self.config.decode_wait):
            wait = max(1, round(self.config.decode_wait))
            raise HTTPException(503, f"busy: {self.config.max_decodes} uploads are being decoded; retry in {wait} s",
                                headers={"Retry-After": str(wait)})
        try:
            return self.ref.examine(data, [h.name for h in hashers], name, False, self.ref.features, query)
        except ImageError as exc:
            raise HTTPException(422, str(exc)) from None
        except ValueError as exc:  # a hasher refusing a decoded picture (e.g. too small) is still bad input
            raise HTTPException(422, f"{name}: cannot be hashed ({exc})") from None
        finally:
            self.decoding.release()

    def keep_copies(self, digest: str, data: bytes | DecodedImage) -> None:
        """Keep a preview of an uploaded original and its copy for the comparator (from the
        upload's own decoding, when given: no decode of their own); the image is registered
        even if this fails."""
        for kept in (self.thumbnails, self.comparison_copies):
            try:
                kept.keep(digest, data)
            except (ImageError, OSError) as exc:
                log.warning("no %s px copy kept for %s: %s", kept.size, digest, exc)

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
        with self.reading() as reader:
            record = reader.store.image(image_id)
        if record is None:
            raise HTTPException(404, f"no registered image with id {image_id}")
        return record
