"""Load any image input safely into RGB pixels.

Every part of robusthash reads images through :func:`load_image` (numpy) or
:func:`load_pil` (PIL), so the same rules apply everywhere:

* Accepted sources: a path (``str`` / ``os.PathLike``), ``bytes``, a binary file
  object, a ``PIL.Image.Image`` or a numpy array.
* EXIF orientation is applied, so a photo looks as a viewer shows it.
* Animated files (GIF, APNG, WebP, multi-page TIFF) give their first frame.
* Conversion to 8-bit RGB follows one rule (:func:`to_rgb`):

  - any alpha channel (RGBA, LA, PA, palette transparency) is composited on white;
  - 16-bit and 32-bit integer data (modes ``I;16*`` and ``I``) are scaled from 0..65535 to 0..255;
  - float data (mode ``F``, float arrays) are taken as 0..1 and clipped;
  - boolean arrays map to 0/255; every other mode (1, L, P, CMYK, YCbCr, LAB, HSV)
    goes through Pillow's own conversion to RGB.

* Limits (:class:`LoadLimits`): the pixel count is checked from the header, *before*
  any pixel is decoded, so a decompression bomb costs nothing; file size is checked
  before reading. Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``, about 179 MP for
  an error) still applies on top: raise it yourself if you raise ``max_pixels`` above it.
* Whatever goes wrong (missing, empty, truncated, corrupt, not an image, too big)
  raises one :class:`ImageError` that names the source.

``mode="L"``: hashers that only need luma get a grey image, and JPEGs are then decoded
as luma only.

``draft_size``: hashers that only need a small picture ask for it, and JPEG files are
then decoded at a reduced scale (1/2, 1/4 or 1/8, via libjpeg's DCT scaling) that is
still at least ``draft_size`` pixels on each side. This is much faster than decoding
at full size and then shrinking (measured in ``benchmarks/README.md``). Other formats
are shrunk right after decoding (``Image.reduce`` by the largest integer factor that keeps
``draft_size`` a side), before any conversion.

A Huffman-coded JPEG whose coded data is too short for the size its header claims is
refused (:func:`check_jpeg_data`); libjpeg would fill the missing part with grey.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features

from .imaging import box_reduced, row_strips

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]

WHITE = (255, 255, 255)
NATIVE = "native"
MODES = ("RGB", "L", NATIVE)
ORIENTATION_TAG = 0x0112


class ImageError(ValueError):
    """An input could not be loaded as an image. ``source`` names the input."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass(frozen=True)
class LoadLimits:
    """Explicit limits for untrusted input.

    max_pixels: width × height refused above this (default 50 megapixels).
    max_bytes: encoded input refused above this size (default 256 MiB).

    The defaults are a memory budget: one worker process per core on a 2-core, 4 GB
    machine has about 2 GB, and the costliest method measured (pdq, about 30 MB per
    megapixel at its peak, ``benchmarks/memory.py``) stays near 1.5 GB at 50 MP.
    See docs/loading.md, "Memory".
    """

    max_pixels: int = 50_000_000
    max_bytes: int = 256 * 1024 * 1024


DEFAULT_LIMITS = LoadLimits()


def describe_source(source: object) -> str:
    """A short human name for an input, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {'x'.join(map(str, source.shape))}>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else f"<{type(source).__name__}>"


def load_image(
    source: ImageSource, *, limits: LoadLimits = DEFAULT_LIMITS, draft_size: int | None = None
) -> np.ndarray:
    """Load ``source`` as an ``(H, W, 3)`` uint8 RGB array. See the module docstring."""
    return np.asarray(load_pil(source, limits=limits, draft_size=draft_size))


def load_pil(
    source: ImageSource,
    *,
    limits: LoadLimits = DEFAULT_LIMITS,
    draft_size: int | None = None,
    mode: str = "RGB",
) -> Image.Image:
    """Load ``source`` as an RGB (or, with ``mode="L"``, grey) ``PIL.Image``.

    ``mode="L"`` gives the ITU-R 601 luma of the RGB image the rule defines; JPEGs are
    then decoded as luma only, skipping the colour conversion (faster).
    ``mode="native"`` gives the decoded frame in the file's own mode (alpha and bit depth
    kept; EXIF orientation applied), for hashers that follow a peer's own conversion;
    arrays are converted to RGB by the rule.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, not {mode!r}")
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return _as_mode(Image.fromarray(array_to_rgb(source, name, limits)), mode)
    if isinstance(source, Image.Image):
        _check_pixels(source.size, name, limits)
        frame = _first_frame(source)
        return frame if mode == NATIVE else convert(frame, mode, name)
    data = _read_bytes(source, name, limits)
    return decode(data, name, limits=limits, draft_size=draft_size, mode=mode)


def decode(
    data: bytes,
    name: str,
    *,
    limits: LoadLimits = DEFAULT_LIMITS,
    draft_size: int | None = None,
    mode: str = "RGB",
) -> Image.Image:
    """Decode encoded image bytes (already read) into an RGB or grey ``PIL.Image``."""
    return finish_decode(decode_frame(data, name, limits=limits, draft_size=draft_size, mode=mode),
                         draft_size=draft_size, mode=mode)


@dataclass(frozen=True)
class DecodedFrame:
    """A file's first frame as its decoder gave it, before any reduction, turn or
    conversion: :func:`finish_decode` makes each decoding of it. ``drafted``: decoded at
    a reduced JPEG scale, for the ``draft_size`` and ``mode`` it was asked with, so only
    those; any other frame serves every decoding of its file (one decode, not one per
    hasher: a 49-megapixel PNG took a second for each)."""

    image: Image.Image
    name: str
    format: str | None
    orientation: int
    drafted: bool
    reusable: bool


def decode_frame(
    data: bytes,
    name: str,
    *,
    limits: LoadLimits = DEFAULT_LIMITS,
    draft_size: int | None = None,
    mode: str = "RGB",
) -> DecodedFrame:
    """The first step of :func:`decode`: open, check, (JPEG: draft) and load the first frame."""
    if not data:
        raise ImageError(name, "empty input (0 bytes)")
    found: list[str | None] = [None]
    with _decoding(name, found, data[:64]):
        with warnings.catch_warnings():
            # Our own pixel limit is checked below; Pillow's size warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = found[0] = im.format
            if fmt in ("JPEG", "MPO"):
                check_jpeg_data(data, name)  # first: a header that claims more than the file holds is corrupt
            _check_pixels(im.size, name, limits)
            drafted = draftable = False
            if fmt in ("JPEG", "MPO"):
                draftable = im.mode in ("RGB", "L")
                if (draft_size or mode == "L") and draftable:
                    # libjpeg decodes luma only and/or at 1/2, 1/4, 1/8 scale (never below draft_size)
                    im.draft(im.mode if mode == NATIVE else mode, (draft_size, draft_size) if draft_size else im.size)
                    drafted = bool(draft_size)
            im = _first_frame(im)
            im.load()
            # Parsing EXIF costs about as much as hashing, and most files have none.
            orientation = 1
            if "exif" in im.info or im.format not in ("JPEG", "PNG"):
                orientation = im.getexif().get(ORIENTATION_TAG, 1)
            return DecodedFrame(im, name, fmt, orientation, drafted, reusable=not draftable)


def finish_decode(frame: DecodedFrame, *, draft_size: int | None = None, mode: str = "RGB") -> Image.Image:
    """The rest of :func:`decode`: reduce (formats without reduced decoding), turn by
    the EXIF orientation, convert to ``mode``. Never changes ``frame``."""
    im, name = frame.image, frame.name
    with _decoding(name, [frame.format]):
        reduced = False
        if draft_size and not frame.drafted and mode != NATIVE:
            # Formats without reduced decoding: shrink right after decoding, so every
            # conversion below works on the small picture.
            small = reduce_for_draft(im, draft_size, name, mode)
            reduced, im = small is not im, small
        if frame.orientation in TRANSPOSE:
            im = im.transpose(TRANSPOSE[frame.orientation]) if reduced else ImageOps.exif_transpose(im)
        if mode == NATIVE:
            return im
        return convert(im, mode, name)


@contextmanager
def _decoding(name: str, fmt: list[str | None], head: bytes = b"") -> Iterator[None]:
    """Any decoder failure as an :class:`ImageError` naming the input, never a crash.
    ``fmt``: the format, once known (a one-item list, filled in while decoding);
    ``head``: the file's first bytes, to name a format this build cannot open."""
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, unsupported_format(head) or "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        # Pillow's guard fires inside open(), before our own check can read the size.
        raise ImageError(name, f"pixel count exceeds the limit of Pillow's bomb guard ({exc}); refused before decoding") from None
    except MemoryError:
        raise ImageError(name, "not enough memory to decode") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input, never a crash
        problem = format_problem(fmt[0]) if fmt[0] else None  # a format this Pillow cannot decode here
        raise ImageError(name, problem or f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None


# --- Corrupt JPEGs whose header claims more than the file holds ------------------------

# Frame headers (SOFn) of Huffman-coded JPEGs: baseline, extended, progressive, lossless.
# Arithmetic coding (SOF9-11) can code a flat picture in almost nothing, and the
# hierarchical kinds (SOF5-7, 13-15) are not checked.
HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3})
FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# The end of entropy-coded data: a marker other than RSTn (FF00 is a stuffed FF, FFFF fill).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_blocks(frame: bytes) -> int | None:
    """The number of 8×8 blocks of all components that a SOFn segment's payload
    (after the length) describes; None if it is malformed or its height is not given."""
    if len(frame) < 6:
        return None
    height, width, count = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
    factors = [(frame[6 + 3 * i + 1] >> 4, frame[6 + 3 * i + 1] & 15) for i in range(count) if 6 + 3 * i + 2 < len(frame)]
    if not height or not width or not factors or len(factors) < count or min(min(f) for f in factors) == 0:
        return None
    hmax, vmax = max(h for h, _ in factors), max(v for _, v in factors)
    return sum(-(-(-(-width * h // hmax)) // 8) * -(-(-(-height * v // vmax)) // 8) for h, v in factors)


def check_jpeg_data(data: bytes, name: str) -> None:
    """Refuse a Huffman-coded JPEG whose coded data is too short for the size its header
    claims (a header patched or damaged to claim 9000×11000 pixels on a small file; a
    file cut short). libjpeg would decode such a file with the missing part filled in
    grey and only a warning, which Pillow does not pass on.

    The rule is a lower bound no genuine file can miss: every 8×8 block of every
    component codes its DC coefficient with a Huffman code of at least one bit (in a
    progressive file, in its first DC scan), so the entropy-coded data of the first
    frame holds at least ``blocks / 8`` bytes. Only the markers are walked; the count
    stops as soon as the bound is reached, so a genuine file costs a few microseconds.
    """
    if data[:2] != b"\xff\xd8":
        return
    pos, needed, have, claimed, blocks = 2, None, 0, "", 0
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return  # not a marker where one must be: left to the decoder
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2
            continue
        if marker == 0xD9:
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return
        if marker in FRAMES:
            if needed is not None or marker not in HUFFMAN_FRAMES:
                return
            frame = data[pos + 4:pos + 2 + length]
            counted = jpeg_blocks(frame)
            if counted is None:
                return
            blocks = counted
            needed = -(-blocks // 8)
            claimed = f"{int.from_bytes(frame[3:5], 'big')}x{int.from_bytes(frame[1:3], 'big')}"
        pos += 2 + length
        if marker == 0xDA:
            end = _SCAN_END.search(data, pos)
            stop = end.start() if end else len(data)
            have += stop - pos
            if needed is not None and have >= needed:
                return
            pos = stop
    if needed is not None and have < needed:
        raise ImageError(
            name,
            f"corrupt JPEG: its header claims {claimed} pixels ({blocks:,} blocks of 8×8), which need at "
            f"least {needed:,} bytes of coded data, but the file holds {have:,}; refused (damaged or cut short)",
        )


# --- Image formats this Pillow cannot read ---------------------------------------------

# Pillow's own feature that a format's decoder needs (features.check).
FORMAT_FEATURES = {"AVIF": "avif", "WEBP": "webp", "JPEG2000": "jpg_2000", "JPEG": "jpg", "PNG": "zlib"}


def format_problem(fmt: str) -> str | None:
    """Why this Pillow cannot decode ``fmt`` (a Pillow format name), or None if it can."""
    Image.init()
    if fmt == "MPO":  # opened by the JPEG plugin
        fmt = "JPEG"
    if fmt not in Image.OPEN:
        return f"{fmt}: Pillow can write this format but not read it"
    feature = FORMAT_FEATURES.get(fmt)
    if feature and not features.check(feature):
        return f"{fmt} image: this Pillow was built without {feature} support"
    factory = Image.OPEN[fmt][0]
    if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile) \
            and getattr(factory, "_handler", None) is None:
        return f"{fmt}: Pillow can identify it but has no decoder for it here (it needs a handler plugin)"
    if fmt == "EPS":
        from PIL import EpsImagePlugin

        if not EpsImagePlugin.has_ghostscript():
            return "EPS: Pillow needs Ghostscript to read it, and it is not installed"
    if fmt == "MPEG":
        return "MPEG video: Pillow can identify it but cannot decode it"
    return None



# --- ... and by their first bytes ------------------------

HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1",
                         b"mif2", b"heif"})
JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")


def unsupported_format(prefix: bytes) -> str | None:
    """Why the file whose first bytes are ``prefix`` is an image this Pillow cannot read
    (HEIF without a plugin, AVIF without libavif, JPEG XL, SVG), or None."""
    Image.init()
    if prefix[4:8] == b"ftyp":
        box = int.from_bytes(prefix[:4], "big")
        brands = {prefix[8:12]} | {prefix[i:i + 4] for i in range(16, min(box, len(prefix)) - 3, 4)}
        if brands & {b"avif", b"avis"}:
            if "AVIF" in Image.OPEN and features.check("avif"):
                return None
            return "AVIF image: this Pillow was built without AVIF support"
        if brands & HEIF_BRANDS and "HEIF" not in Image.OPEN:
            return "HEIF image: no Pillow plugin for HEIF is installed here (pillow-heif provides one)"
    if prefix.startswith(JXL_SIGNATURES) and "JXL" not in Image.OPEN:
        return "JPEG XL image: this Pillow cannot read JPEG XL (a plugin such as pillow-jxl-plugin can)"
    head = prefix.lstrip()[:64].lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in prefix.lower()):
        return "SVG: a vector drawing, not a raster image Pillow can read"
    return None


def _as_mode(rgb: Image.Image, mode: str) -> Image.Image:
    # An array's native mode is the RGB the rule makes of it.
    return rgb if rgb.mode == mode or mode == NATIVE else rgb.convert(mode)


# EXIF orientation → the transposition that makes the picture upright (as ImageOps.exif_transpose).
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Modes Pillow's Image.reduce averages correctly (RGBA and LA with premultiplied alpha).
REDUCIBLE = frozenset({"L", "RGB", "RGBA", "LA", "I", "F", "CMYK"})
# Modes whose conversion to RGB is Pillow's own single pass (see the conversion rule).
DIRECT_TO_RGB = frozenset({"1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV"})


def reduction_factor(size: tuple[int, int], draft_size: int) -> int:
    """The integer factor :func:`reduce_for_draft` shrinks by: the largest that keeps at
    least ``draft_size`` pixels on each side (1: none)."""
    return max(1, min(size) // max(1, draft_size))


def reduce_for_draft(im: Image.Image, draft_size: int, name: str = "<image>", mode: str = "RGB") -> Image.Image:
    """``im`` shrunk by box averaging (``Image.reduce``) by the largest integer factor
    that keeps at least ``draft_size`` pixels on each side; ``im`` itself when that
    factor is 1. For decoded formats that, unlike JPEG, cannot be decoded at a reduced
    size. Modes ``reduce`` cannot average (palette, bilevel, 16-bit) are first converted
    by the rule (to ``mode``, RGB or L)."""
    factor = reduction_factor(im.size, draft_size)
    if factor < 2:
        return im
    if im.mode not in REDUCIBLE:
        im = convert(im, "L" if mode == "L" else "RGB", name)
    return box_reduced(im, factor)


def convert(im: Image.Image, mode: str, name: str = "<image>") -> Image.Image:
    """A decoded image of any mode in ``mode`` ("RGB" or "L") by the module's one rule;
    ``im`` itself when it is in that mode already. Only the output is allocated full size:
    conversions of more than one pass run strip by strip."""
    if im.mode == mode:
        return im
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    if im.mode == "RGB" or (mode == "RGB" and im.mode in DIRECT_TO_RGB and not _has_transparency(im)):
        try:
            return im.convert(mode)
        except Exception as exc:  # noqa: BLE001
            raise ImageError(name, f"cannot convert mode {im.mode} to {mode} ({exc})") from None
    out = Image.new(mode, im.size)
    # Strip by strip (imaging.row_strips): only the output is ever full size (alpha
    # compositing, 16-bit scaling).
    for top, bottom in row_strips(im.width, 0, im.height):
        strip = im.crop((0, top, im.width, bottom))
        out.paste(_as_mode(_strip_to_rgb(strip, name), mode), (0, top))
    return out


def _has_transparency(im: Image.Image) -> bool:
    return im.mode == "P" and "transparency" in im.info


def to_rgb(im: Image.Image, name: str = "<image>") -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit RGB by the module's one rule."""
    return convert(im, "RGB", name)


def _strip_to_rgb(im: Image.Image, name: str) -> Image.Image:
    """The rule, on one (small) piece of an image."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(array_to_rgb(_high_depth_array(im), name))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return im.convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise ImageError(name, f"cannot convert mode {im.mode} to RGB ({exc})") from None


def array_to_rgb(arr: np.ndarray, name: str = "<array>", limits: LoadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Convert a numpy image (H×W, H×W×1, H×W×3 or H×W×4) to ``(H, W, 3)`` uint8 RGB."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(name, f"array of shape {arr.shape} is not an image (H×W, H×W×3 or H×W×4)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(name, "image has no pixels")
    _check_pixels((arr.shape[1], arr.shape[0]), name, limits)
    arr = _to_uint8(arr, name)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        composite = arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        arr = np.rint(composite).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageError(name, "float image contains NaN or infinity")
        return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() >= 0 and arr.max() <= 255 and arr.dtype.itemsize == 1:
            return arr.astype(np.uint8)
        # Wider integers are 16-bit image data: 0..65535 maps onto 0..255.
        return np.rint(np.clip(arr.astype(np.float64), 0, 65535) / 257.0).astype(np.uint8)
    raise ImageError(name, f"unsupported array dtype {arr.dtype}")


def _high_depth_array(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im)
    if im.mode == "F":
        return arr.astype(np.float32)
    return arr.astype(np.int64)


def _first_frame(im: Image.Image) -> Image.Image:
    if getattr(im, "is_animated", False) or getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    return im


def _check_pixels(size: tuple[int, int], name: str, limits: LoadLimits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageError(
            name,
            f"{width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{limits.max_pixels:,} (LoadLimits.max_pixels); refused before decoding",
        )


def _read_stream(stream: object, name: str, max_bytes: int) -> bytes:
    # Read in chunks: read(max_bytes + 1) would allocate the whole limit up front.
    chunks, total = [], 0
    while total <= max_bytes:
        try:
            chunk = stream.read(min(1 << 20, max_bytes + 1 - total))  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001
            raise ImageError(name, f"cannot read ({exc})") from None
        if not isinstance(chunk, (bytes, bytearray)):
            raise ImageError(name, "file object must be opened in binary mode")
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of encoded image bytes, without decoding;
    None when the header cannot be read. The size of the file, not of a reduced decode."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # noqa: BLE001 - callers use the size for information only
        return None


def read_bytes(source: ImageSource, limits: LoadLimits = DEFAULT_LIMITS) -> bytes:
    """The encoded bytes of a path, bytes or file object, read within ``limits``
    (for callers that also need the bytes themselves, e.g. to digest them)."""
    return _read_bytes(source, describe_source(source), limits)


def _read_bytes(source: object, name: str, limits: LoadLimits) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as fh:
                info = os.fstat(fh.fileno())
                if info.st_size > limits.max_bytes:
                    raise ImageError(name, f"file of {info.st_size:,} bytes exceeds the limit of {limits.max_bytes:,} bytes")
                # A pipe or device has no size to trust: read it in bounded chunks.
                data = fh.read() if stat.S_ISREG(info.st_mode) else _read_stream(fh, name, limits.max_bytes)
        except FileNotFoundError:
            raise ImageError(name, "no such file") from None
        except PermissionError:
            raise ImageError(name, "permission denied") from None
        except IsADirectoryError:
            raise ImageError(name, "is a directory, not an image file") from None
        except OSError as exc:
            raise ImageError(name, f"cannot read ({exc.strerror or exc})") from None
    elif hasattr(source, "read"):
        data = _read_stream(source, name, limits.max_bytes)
    else:
        raise ImageError(name, f"unsupported input type {type(source).__name__}")
    if len(data) > limits.max_bytes:
        raise ImageError(name, f"input exceeds the limit of {limits.max_bytes:,} bytes")
    return data
