"""Finding image files under the paths a user names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)

LIST_SUFFIX = ".txt"


def read_image_list(path: Path) -> list[Path]:
    """The paths listed in a text file, one per line, relative to the file's folder."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(path.parent / line)
    return entries


def evenly_spaced(paths: list, count: int | None) -> list:
    """``count`` paths spread evenly through the list, so that every source of a sorted
    collection is represented (its first files often all come from one source)."""
    if count is None or count >= len(paths):
        return paths
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def iter_image_paths(paths: Iterable[str | os.PathLike], recursive: bool = True) -> Iterator[Path]:
    """Yield files to hash, in a stable order.

    A file named explicitly is always yielded (so a bad one is reported, not silently
    skipped); inside a directory only files with an image suffix are taken. A ``.txt``
    file is a list: one path per line, relative to the list's folder (the corpus's
    ``train.txt`` and ``test.txt``); blank lines and ``#`` comments are ignored. A path
    that does not exist is yielded as is, for the caller to report.
    """
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == LIST_SUFFIX and path.is_file():
            yield from read_image_list(path)
        elif path.is_dir():
            walker = path.rglob("*") if recursive else path.glob("*")
            for child in sorted(walker):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield child
        else:
            yield path
