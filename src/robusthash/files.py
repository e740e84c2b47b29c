"""Finding image files under the paths a user names.

A folder is scanned by what this Pillow can read (:func:`scan_images`): the file
suffixes its plugins register (``.avif .ico .jfif .apng .jp2 .tga .pcx .qoi`` and the
rest), and for a file with a suffix it does not know, a cheap look at the first bytes.
Every file of a folder that is not taken is returned with the reason, so a caller can
report it: an image in a format this installation cannot read (HEIF without a plugin,
JPEG XL, EPS without Ghostscript, ...) or a file that is not an image at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from PIL import Image

from .io import format_problem, unsupported_format

LIST_SUFFIX = ".txt"
SNIFF_BYTES = 64

# Suffixes of image formats Pillow has no reader for (unless a plugin registers one:
# then the suffix is among Pillow's registered extensions and is taken).
UNSUPPORTED_SUFFIXES = {
    **dict.fromkeys((".heic", ".heif", ".heics", ".heifs", ".hif"), "HEIF image: no Pillow plugin for HEIF is installed here (pillow-heif provides one)"),
    ".jxl": "JPEG XL image: this Pillow cannot read JPEG XL (a plugin such as pillow-jxl-plugin can)",
    **dict.fromkeys((".svg", ".svgz"), "SVG: a vector drawing, not a raster image Pillow can read"),
    **dict.fromkeys((".jxr", ".wdp", ".hdp"), "JPEG XR image: Pillow cannot read it"),
    ".exr": "OpenEXR image: Pillow cannot read it",
    ".hdr": "Radiance HDR image: Pillow cannot read it",
    **dict.fromkeys((".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".srw", ".pef", ".raw"),
                    "camera raw file: Pillow cannot read it (convert it to JPEG, PNG or TIFF first)"),
}

# Formats whose signature is too short or loose to take a file of unknown suffix on
# the signature alone; they are taken by suffix only.
WEAK_SIGNATURES = frozenset({"PCX", "SGI", "FLI", "XBM", "FITS", "DIB", "ICO", "CUR", "MPEG", "SPIDER", "TGA"})


@lru_cache(maxsize=None)
def _suffix_table(extensions: tuple[tuple[str, str], ...]) -> tuple[frozenset[str], dict[str, str]]:
    readable, unreadable = set(), {}
    for suffix, fmt in extensions:
        problem = format_problem(fmt)
        if problem is None:
            readable.add(suffix)
        else:
            unreadable[suffix] = problem
    return frozenset(readable), unreadable


def image_suffixes() -> tuple[frozenset[str], dict[str, str]]:
    """(suffixes Pillow reads here, {suffix: why not} for those it registers but cannot
    read here), from Pillow's registered extensions at the time of the call (a plugin
    registered since, such as pillow-heif's, counts)."""
    Image.init()
    return _suffix_table(tuple(sorted(Image.registered_extensions().items())))


def __getattr__(name: str):
    # The suffix list of earlier versions, kept for callers that import it. Computed on
    # first use: Image.init() imports every Pillow plugin (~30 ms), which a command
    # given only file names never needs.
    if name == "IMAGE_SUFFIXES":
        return image_suffixes()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Skipped(NamedTuple):
    """A file of a scanned folder that is not hashed, and why. The reason of a file
    that is not an image at all begins with "not an image"."""

    path: Path
    reason: str


@dataclass
class ImageScan:
    """What :func:`scan_images` found: ``files`` to hash, in a stable order, and the
    files of scanned folders that were left out, each with its reason."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def unreadable_images(self) -> list[Skipped]:
        """The skipped files that are images, in a format this installation cannot read."""
        return [s for s in self.skipped if not s.reason.startswith(NOT_AN_IMAGE)]


NOT_AN_IMAGE = "not an image"


def classify(path: Path) -> str | None:
    """None if a file found in a folder is to be hashed, else why not."""
    suffix = path.suffix.lower()
    readable, unreadable = image_suffixes()
    if suffix in readable:
        return None
    if suffix in unreadable:
        return unreadable[suffix]
    if suffix in UNSUPPORTED_SUFFIXES:
        return UNSUPPORTED_SUFFIXES[suffix]
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(SNIFF_BYTES)
    except OSError as exc:
        return f"cannot read it to tell whether it is an image ({exc.strerror or exc})"
    return sniff(prefix, path)


def sniff(prefix: bytes, path: Path | None = None) -> str | None:
    """For a file of unknown suffix: None if its first bytes are an image Pillow reads
    here, else why it is skipped."""
    shown = f"suffix {path.suffix!r}" if path is not None and path.suffix else "no image suffix"
    if not prefix:
        return f"{NOT_AN_IMAGE} ({shown}, empty file)"
    problem = unsupported_format(prefix)
    if problem:
        return problem
    Image.init()
    for fmt, (factory, accept) in Image.OPEN.items():
        if accept is None or fmt in WEAK_SIGNATURES:
            continue
        try:
            verdict = accept(prefix)
        except Exception:  # noqa: BLE001 - a plugin's check must not stop a scan
            continue
        if not verdict:
            continue
        problem = format_problem(fmt)
        if problem:
            return problem
        if path is None or _header_opens(path, fmt):
            return None
    return f"{NOT_AN_IMAGE} ({shown}, and its first bytes are no image format Pillow reads)"


def _header_opens(path: Path, fmt: str) -> bool:
    """Whether Pillow parses the file's header as ``fmt`` (pixels are not decoded)."""
    try:
        with open(path, "rb") as fh, Image.open(fh, formats=[fmt]) as im:
            return im.size[0] > 0 and im.size[1] > 0
    except Exception:  # noqa: BLE001
        return False


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


def _folder_files(root: Path, recursive: bool, skipped: list[Skipped]) -> list[Path]:
    def unreadable(exc: OSError) -> None:
        skipped.append(Skipped(Path(exc.filename or root), f"cannot list this folder ({exc.strerror or exc})"))

    found = []
    for folder, dirs, names in os.walk(root, onerror=unreadable):  # symlinked folders are not followed
        base = Path(folder)
        found.extend(base / name for name in names)
        if not recursive:
            dirs.clear()
    return sorted(p for p in found if p.is_file())


def scan_images(paths: Iterable[str | os.PathLike], recursive: bool = True) -> ImageScan:
    """The files to hash under ``paths``, and what was left out of the folders and why.

    A file named explicitly is always taken (so a bad one is reported when it is read,
    not silently skipped), as is a path that does not exist (for the caller to report).
    A ``.txt`` file is a list: one path per line, relative to the list's folder (the
    corpus's ``train.txt`` and ``test.txt``); blank lines and ``#`` comments are ignored;
    its entries are taken as named. In a folder (and, with ``recursive``, its
    subfolders, symlinked folders not followed), a file is taken when Pillow here
    registers its suffix for a format it can read, or, for a suffix Pillow does not
    know, when its first bytes are such a format; every other file is in ``skipped``
    with the reason, in path order.
    """
    scan = ImageScan()
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == LIST_SUFFIX and path.is_file():
            scan.files.extend(read_image_list(path))
        elif path.is_dir():
            for child in _folder_files(path, recursive, scan.skipped):
                reason = classify(child)
                if reason is None:
                    scan.files.append(child)
                else:
                    scan.skipped.append(Skipped(child, reason))
        else:
            scan.files.append(path)
    return scan


def iter_image_paths(paths: Iterable[str | os.PathLike], recursive: bool = True) -> Iterator[Path]:
    """The files to hash under ``paths`` (:func:`scan_images`'s ``files``), in a stable
    order; what folders held besides is left out silently (use :func:`scan_images` to
    report it)."""
    yield from scan_images(paths, recursive).files
