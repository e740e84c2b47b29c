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
at full size and then shrinking (measured in ``benchmarks/README.md``).
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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

    max_pixels: width × height refused above this (default 100 megapixels).
    max_bytes: encoded input refused above this size (default 256 MiB).
    """

    max_pixels: int = 100_000_000
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
        return frame if mode == NATIVE else _as_mode(to_rgb(frame, name), mode)
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
    if not data:
        raise ImageError(name, "empty input (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit is checked below; Pillow's size warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            _check_pixels(im.size, name, limits)
            if im.format == "JPEG" and (draft_size or mode == "L") and im.mode in ("RGB", "L"):
                # libjpeg decodes luma only and/or at 1/2, 1/4, 1/8 scale (never below draft_size)
                im.draft(im.mode if mode == NATIVE else mode, (draft_size, draft_size) if draft_size else im.size)
            im = _first_frame(im)
            im.load()
            # Parsing EXIF costs about as much as hashing, and most files have none.
            if ("exif" in im.info or im.format not in ("JPEG", "PNG")) and im.getexif().get(ORIENTATION_TAG, 1) != 1:
                im = ImageOps.exif_transpose(im)
            if mode == NATIVE:
                return im
            return _as_mode(im if im.mode == mode else to_rgb(im, name), mode)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        # Pillow's guard fires inside open(), before our own check can read the size.
        raise ImageError(name, f"pixel count exceeds the limit of Pillow's bomb guard ({exc}); refused before decoding") from None
    except MemoryError:
        raise ImageError(name, "not enough memory to decode") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input, never a crash
        raise ImageError(name, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None


def _as_mode(rgb: Image.Image, mode: str) -> Image.Image:
    return rgb if rgb.mode == mode else rgb.convert(mode)


def to_rgb(im: Image.Image, name: str = "<image>") -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit RGB by the module's one rule."""
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
