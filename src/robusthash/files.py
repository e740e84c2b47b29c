"""Finding image files under the paths a user names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


def iter_image_paths(paths: Iterable[str | os.PathLike], recursive: bool = True) -> Iterator[Path]:
    """Yield files to hash, in a stable order.

    A file named explicitly is always yielded (so a bad one is reported, not silently
    skipped); inside a directory only files with an image suffix are taken. A path
    that does not exist is yielded as is, for the caller to report.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            walker = path.rglob("*") if recursive else path.glob("*")
            for child in sorted(walker):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield child
        else:
            yield path
