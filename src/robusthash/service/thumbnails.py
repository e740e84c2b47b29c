"""Small JPEG previews of registered images, for the web page.

An image registered through the service has no file the server can read later, so
its thumbnail is made from the upload and kept in a folder, named by the image's
digest. An image registered from local files (``robusthash db add``) gets one made
from its source file, but only if that file lies inside a folder the operator named
(``source_roots``) and still has the registered digest: a source is whatever text the
registering client sent, so no other path is ever opened, and checking the bytes keeps
a client from having the server preview other files by naming them.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image

from ..db import ImageRecord
from ..hashing.base import DecodedImage, DecodeSpec
from ..io import LoadLimits, load_pil

JPEG_QUALITY = 85


class ThumbnailMissing(LookupError):
    """No thumbnail can be made; the message says why."""


class Thumbnails:
    def __init__(self, folder: Path | None, size: int, limits: LoadLimits, source_roots: tuple[Path, ...] = ()):
        self.folder = folder
        self.size = size
        self.limits = limits
        self.source_roots = tuple(Path(os.path.realpath(root)) for root in source_roots)

    def render(self, source: object) -> bytes:
        """A JPEG at most ``size`` pixels on its longest side, from anything the loader
        takes or an upload's :class:`DecodedImage` (the same pixels, no decode of its own)."""
        if isinstance(source, DecodedImage):
            im = source.decoded(DecodeSpec(self.size, "RGB")).copy()  # thumbnail() works in place
        else:
            im = load_pil(source, limits=self.limits, draft_size=self.size)  # type: ignore[arg-type]
        im.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()

    def keep(self, digest: str, data: bytes | DecodedImage) -> None:
        """Make and store the thumbnail of an uploaded original (once per digest)."""
        path = self._path(digest)
        if path is None or path.exists():
            return
        self._write(path, self.render(data))

    def get(self, record: ImageRecord) -> bytes:
        """The thumbnail of a registered image; raises :class:`ThumbnailMissing`."""
        path = self._path(record.digest)
        if path is not None and path.exists():
            return path.read_bytes()
        thumbnail = self.render(self._verified_source(record))
        if path is not None:
            self._write(path, thumbnail)
        return thumbnail

    def _verified_source(self, record: ImageRecord) -> bytes:
        """The source file's bytes if it lies inside a source root and its bytes are the
        registered ones. Every other case gets one and the same answer: a path outside
        the roots (never opened), a missing file, an unreadable one, one over the limit
        and one with other bytes must not be told apart, or naming a path as the source
        would tell a client what exists on the server."""
        missing = ThumbnailMissing(f"image {record.id}: no thumbnail kept, and no file on the server with its "
                                   "registered bytes")
        # realpath: a symbolic link or ".." inside a root must not lead out of it.
        source = Path(os.path.realpath(record.source))
        if not any(source.is_relative_to(root) for root in self.source_roots):
            raise missing
        try:
            if not source.is_file() or source.stat().st_size > self.limits.max_bytes:
                raise missing
            data = source.read_bytes()
        except OSError:
            raise missing from None
        if hashlib.sha256(data).hexdigest() != record.digest:
            raise missing
        return data

    def _path(self, digest: str) -> Path | None:
        if self.folder is None or not all(c in "0123456789abcdef" for c in digest):
            return None
        return self.folder / f"{digest}.jpg"

    def _write(self, path: Path, data: bytes) -> None:
        """Write atomically: a concurrent reader sees the whole file or none."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

