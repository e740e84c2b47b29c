"""Content-preserving image attacks, each a plain, documented function of a PIL image.

Conventions shared by every function here:

* Input: a PIL image, converted to RGB by :func:`robusthash.io.to_rgb` if it is not
  (alpha is composited on white, as the loader does). Output: a new 8-bit RGB image;
  values are rounded to the nearest integer and clipped to 0..255.
* Random attacks take ``rng: numpy.random.Generator`` and draw from nothing else, so a
  seeded generator gives the same pixels every time.
* Geometric attacks that keep the canvas (rotation, shear, translation, affine,
  perspective) fill the uncovered area black unless given a ``fill`` colour.
* A ``fill`` is a grey level 0..255 or an RGB triple.
* Neighbourhood filters (average, median, Gaussian) see beyond the border the image
  mirrored *without* repeating the edge pixel (``dcb|abcd``): OpenCV's default
  ``BORDER_REFLECT_101``, numpy's ``"reflect"``, scipy.ndimage's ``"mirror"``.

The attack codes (``BA``, ``JC``, ...), CMAA's grids and the spec language that
composes these functions are in :mod:`robusthash.attacks.spec`,
:mod:`robusthash.attacks.suites` and ``docs/attacks.md``.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps, features
from scipy import ndimage

from ..io import to_rgb

BLACK = (0, 0, 0)
# The median filter works on bands of this many rows, so its shifted copies of the
# image stay small (and cache-friendly) however large the image is.
MEDIAN_BAND_ROWS = 128


def _rgb(fill: int | tuple[int, int, int]) -> tuple[int, int, int]:
    """A fill as an RGB triple: a grey level 0..255 or an RGB triple."""
    return (fill, fill, fill) if isinstance(fill, (int, np.integer)) else tuple(int(v) for v in fill)


def _pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(to_rgb(im))


def _from_float(values: np.ndarray) -> Image.Image:
    """Float values on the 0..255 scale → RGB image (clipped, rounded); overwrites ``values``."""
    np.clip(values, 0.0, 255.0, out=values)  # in place: 10× faster than fresh arrays
    return Image.fromarray(np.rint(values, out=values).astype(np.uint8))


def _from_unit(values: np.ndarray) -> Image.Image:
    """Float64 values on the 0..1 scale → RGB image (clipped, ×255, rounded); overwrites ``values``."""
    np.clip(values, 0.0, 1.0, out=values)  # in place, as in _from_float
    values *= 255.0
    return Image.fromarray(np.rint(values, out=values).astype(np.uint8))


# --- colour and sharpness (PIL ImageEnhance, as torchvision's adjust_* do for PIL) ---

def brightness(im: Image.Image, factor: float) -> Image.Image:
    """Brightness adjustment (BA): every channel value multiplied by ``factor``.

    ``factor`` 1 leaves the image unchanged, 0 gives black, 1.3 is 30 % brighter.
    PIL's ``ImageEnhance.Brightness`` (a blend with black), as torchvision's
    ``adjust_brightness`` does for PIL images.
    """
    return ImageEnhance.Brightness(to_rgb(im)).enhance(factor)


def contrast(im: Image.Image, factor: float) -> Image.Image:
    """Contrast adjustment (CA): blend with a flat grey at the image's mean luma.

    ``factor`` 1 leaves the image unchanged, 0 gives the flat grey, above 1 stretches
    values away from the mean. PIL's ``ImageEnhance.Contrast`` (as torchvision's
    ``adjust_contrast`` for PIL images).
    """
    return ImageEnhance.Contrast(to_rgb(im)).enhance(factor)


def saturation(im: Image.Image, factor: float) -> Image.Image:
    """Saturation adjustment (ST): blend with the image's own greyscale (ITU-R 601 luma).

    ``factor`` 1 leaves the image unchanged, 0 gives grey, above 1 makes colours more
    vivid. PIL's ``ImageEnhance.Color`` (as torchvision's ``adjust_saturation``).
    """
    return ImageEnhance.Color(to_rgb(im)).enhance(factor)


def sharpness(im: Image.Image, factor: float) -> Image.Image:
    """Sharpness adjustment (SH): blend with a slightly smoothed copy of the image.

    ``factor`` 1 leaves the image unchanged, below 1 blurs (0 = PIL's 3×3 SMOOTH
    filter), above 1 sharpens. PIL's ``ImageEnhance.Sharpness`` (as torchvision's
    ``adjust_sharpness``); the one-pixel border is left unchanged.
    """
    return ImageEnhance.Sharpness(to_rgb(im)).enhance(factor)


# --- neighbourhood filters ---

def _check_kernel(size: int) -> None:
    # An even window has no centre pixel, so the filtered image would shift by half a pixel.
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd integer >= 1, not {size!r}")


def _separable(im: Image.Image, kernel: np.ndarray) -> Image.Image:
    """Correlate rows and columns with a 1-D kernel (float, mirrored borders), rounded."""
    rows = ndimage.correlate1d(_pixels(im), kernel, axis=0, mode="mirror", output=np.float32)
    return _from_float(ndimage.correlate1d(rows, kernel, axis=1, mode="mirror"))


def _mirror_pad(pixels: np.ndarray, r: int) -> np.ndarray:
    """``r`` mirrored pixels around the image, edge pixel not repeated (BORDER_REFLECT_101)."""
    return np.pad(pixels, ((r, r), (r, r), (0, 0)), mode="reflect")


def average_filter(im: Image.Image, size: int) -> Image.Image:
    """Average (box) filter (AF): mean of the ``size``×``size`` window, per channel.

    ``size`` is the odd kernel size in pixels (3 for 3×3). Exact mean, rounded to the
    nearest integer; mirrored borders (see the module docstring).
    """
    _check_kernel(size)
    pixels = _pixels(im)
    height, width = pixels.shape[:2]
    # Integer window sums by shifted adds: exact, and twice as fast as a float convolution.
    padded = _mirror_pad(pixels, size // 2).astype(np.uint16 if size <= 15 else np.uint32)
    columns = padded[0:height].copy()
    for dy in range(1, size):
        columns += padded[dy : dy + height]
    sums = columns[:, 0:width].copy()
    for dx in range(1, size):
        sums += columns[:, dx : dx + width]
    n = size * size
    # Round half up; n is odd, so a mean never ends in exactly .5 and this is plain rounding.
    return Image.fromarray(((sums + n // 2) // n).astype(np.uint8))


def gaussian_sigma(size: int) -> float:
    """OpenCV's standard deviation for a Gaussian kernel of ``size`` taps when none is given.

    ``0.3 * ((size - 1) * 0.5 - 1) + 0.8``: 0.8 for 3, 1.1 for 5, 1.4 for 7, 1.7 for 9.
    """
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_filter(im: Image.Image, size: int) -> Image.Image:
    """Gaussian filter (GF) with a ``size``×``size`` kernel, per channel.

    ``size`` is the odd kernel size in pixels; the standard deviation follows OpenCV's
    rule for a given kernel size, :func:`gaussian_sigma`. The kernel is the sampled
    Gaussian over exactly ``size`` taps, normalised to sum 1 (OpenCV itself uses fixed
    binomial-like tables for sizes up to 7, which differ slightly). Mirrored borders.
    """
    _check_kernel(size)
    sigma = gaussian_sigma(size)
    offsets = np.arange(size) - size // 2
    kernel = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return _separable(im, kernel / kernel.sum())


def gaussian_blur(im: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (PIL's approximation).

    Used by the demo; the evaluation's GF attack is :func:`gaussian_filter`.
    """
    return to_rgb(im).filter(ImageFilter.GaussianBlur(radius=sigma))


def median_filter(im: Image.Image, size: int) -> Image.Image:
    """Median filter (MF): median of the ``size``×``size`` window, per channel.

    ``size`` is the odd kernel size in pixels. Exact (identical to PIL's
    ``MedianFilter`` on the mirrored image) but about ten times faster for 9×9;
    mirrored borders (see the module docstring).
    """
    _check_kernel(size)
    pixels = _pixels(im)
    r = size // 2
    padded = _mirror_pad(pixels, r)
    out = np.empty_like(pixels)
    for top in range(0, pixels.shape[0], MEDIAN_BAND_ROWS):
        rows = min(MEDIAN_BAND_ROWS, pixels.shape[0] - top)
        out[top : top + rows] = _window_median(padded[top : top + rows + 2 * r], size)
    return Image.fromarray(out)


def _window_median(padded: np.ndarray, size: int) -> np.ndarray:
    """Exact median of every ``size``×``size`` window of ``padded`` (uint8, H×W×C).

    The median is decided one bit at a time from the top: it is at least ``trial``
    exactly when fewer than ``rank`` window values lie below ``trial``. Counting is
    vectorised over all pixels, one comparison per window offset, so the cost is
    8 × size² whole-array operations instead of a sort per pixel.
    """
    r = size // 2
    height, width = padded.shape[0] - 2 * r, padded.shape[1] - 2 * r
    shape = (height, width, padded.shape[2])
    rank = size * size // 2 + 1  # the median is the rank-th smallest of size² values
    # Contiguous column-shifted copies make every window offset a contiguous slice (2× faster).
    columns = [np.ascontiguousarray(padded[:, dx : dx + width]) for dx in range(size)]
    offsets = [column[dy : dy + height] for column in columns for dy in range(size)]
    median = np.zeros(shape, np.uint8)
    trial = np.empty(shape, np.uint8)
    below = np.empty(shape, bool)
    count = np.empty(shape, np.uint8 if size * size < 256 else np.uint16)
    for bit in range(7, -1, -1):
        np.bitwise_or(median, 1 << bit, out=trial)
        count.fill(0)
        for values in offsets:
            np.less(values, trial, out=below)
            np.add(count, below.view(np.uint8), out=count)
        np.less(count, rank, out=below)  # fewer than rank below: the median has this bit
        median |= below.view(np.uint8) << bit  # branch-free; np.copyto(where=) is 5× slower
    return median


# --- noise (the meaning of skimage.util.random_noise, on the 0..1 scale) ---

def gaussian_noise(im: Image.Image, var: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian noise (GN): add N(0, ``var``) independently to every channel value.

    Values are on the 0..1 scale, so ``var`` is the variance of the noise there
    (0.01 = standard deviation 0.1 = 25.5 grey levels). The result is clipped to 0..1.
    Same draws as ``skimage.util.random_noise(img, "gaussian", rng=rng, var=var)``.
    """
    values = _pixels(im) / 255.0
    noisy = rng.normal(0.0, var**0.5, values.shape)
    noisy += values
    return _from_unit(noisy)


def speckle_noise(im: Image.Image, var: float, rng: np.random.Generator) -> Image.Image:
    """Speckle noise (SN): multiplicative, ``img + img * n`` with n ~ N(0, ``var``) per value.

    Values are on the 0..1 scale; ``var`` is the variance of n, so bright pixels get
    more noise and black stays black. The result is clipped to 0..1.
    Same draws as ``skimage.util.random_noise(img, "speckle", rng=rng, var=var)``.
    """
    values = _pixels(im) / 255.0
    noisy = rng.normal(0.0, var**0.5, values.shape)
    noisy *= values
    noisy += values
    return _from_unit(noisy)


def _bernoulli(p: float, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    # As scikit-image draws it (no draw at all for p 0 or 1), so the draws stay in step.
    if p == 0:
        return np.zeros(shape, dtype=bool)
    if p == 1:
        return np.ones(shape, dtype=bool)
    return rng.random(shape) <= p


def salt_and_pepper(im: Image.Image, amount: float, rng: np.random.Generator) -> Image.Image:
    """Salt & pepper noise (SPN): replace a fraction ``amount`` of the values with 255 or 0.

    Each channel value independently (as scikit-image does, so noise dots are coloured)
    is replaced with probability ``amount``; a replaced value is salt (255) or pepper
    (0) with probability 1/2 each. Same draws as
    ``skimage.util.random_noise(img, "s&p", rng=rng, amount=amount)``.
    """
    pixels = _pixels(im).copy()
    replaced = _bernoulli(amount, pixels.shape, rng)
    salt = _bernoulli(0.5, pixels.shape, rng)
    pixels[replaced & salt] = 255
    pixels[replaced & ~salt] = 0
    return Image.fromarray(pixels)


# --- coding ---

def jpeg(im: Image.Image, quality: int) -> Image.Image:
    """JPEG compression (JC): encode at ``quality`` (1–100, libjpeg's scale) and decode again.

    Pillow's defaults otherwise (4:2:0 chroma subsampling, standard tables).
    """
    buffer = io.BytesIO()
    to_rgb(im).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def posterize(im: Image.Image, bits: int) -> Image.Image:
    """Posterization (PT): keep the top ``bits`` bits (1–8) of every channel value.

    Leaves 2**bits levels per channel (the lower bits are set to 0); 8 is the identity.
    PIL's ``ImageOps.posterize`` (as torchvision's ``posterize``).
    """
    return ImageOps.posterize(to_rgb(im), int(bits))


# --- geometry ---

def resize(im: Image.Image, scale: float) -> Image.Image:
    """Resizing (RS): scale both sides by ``scale`` (bicubic; sides rounded, at least 1 pixel).

    The result is not resized back: a 512×512 image at 0.5 is 256×256.
    """
    width, height = im.size
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return to_rgb(im).resize(size, Image.Resampling.BICUBIC)


def rotate(im: Image.Image, degrees: float, fill: int | tuple[int, int, int] = BLACK) -> Image.Image:
    """Rotation (RT): rotate by ``degrees`` about the centre; positive = counter-clockwise.

    The canvas keeps its size (bilinear); corners that come from outside the image are
    filled with ``fill`` (black by default, as torchvision's rotation does) and the
    parts rotated outside the canvas are lost. Multiples of 90° on a square image are
    exact (no interpolation).
    """
    return to_rgb(im).rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=_rgb(fill))


def flip(im: Image.Image, direction: str = "H") -> Image.Image:
    """Flip (FL): mirror horizontally (``"H"``, left–right) or vertically (``"V"``, top–bottom)."""
    if direction.upper() == "H":
        return to_rgb(im).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if direction.upper() == "V":
        return to_rgb(im).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    raise ValueError(f"flip direction must be 'H' or 'V', not {direction!r}")


def _axis(axis: str) -> str:
    if axis.upper() not in ("X", "Y"):
        raise ValueError(f"axis must be 'X' or 'Y', not {axis!r}")
    return axis.upper()


def shear(im: Image.Image, axis: str, factor: float) -> Image.Image:
    """Shear (SHR) along ``axis`` ``"X"`` or ``"Y"`` by ``factor``, about the image centre.

    X: a point (x, y) moves to (x + factor·(y − cy), y), so with positive ``factor`` the
    rows below the centre move right and those above move left; Y: (x, y + factor·(x − cx)),
    the right half moves down. ``factor`` is the tangent of the shear angle (0.3 ≈ 16.7°).
    Canvas kept, bilinear, uncovered area black; (cx, cy) = (width/2, height/2).
    """
    width, height = im.size
    # PIL's AFFINE takes the inverse map: output (x, y) samples input (a·x + b·y + c, d·x + e·y + f).
    if _axis(axis) == "X":
        inverse = (1.0, -factor, factor * height / 2.0, 0.0, 1.0, 0.0)
    else:
        inverse = (1.0, 0.0, 0.0, -factor, 1.0, factor * width / 2.0)
    return to_rgb(im).transform(im.size, Image.Transform.AFFINE, inverse,
                                resample=Image.Resampling.BILINEAR, fillcolor=BLACK)


def translate(im: Image.Image, axis: str, fraction: float, fill: int | tuple[int, int, int] = BLACK) -> Image.Image:
    """Translation (TR) along ``axis`` ``"X"`` or ``"Y"`` by ``fraction`` of the width or height.

    Positive moves the content right (X) or down (Y). The shift is rounded to whole
    pixels (no interpolation); the canvas is kept and the uncovered strip is ``fill``
    (black by default; a shared picture moved inside a white or coloured frame is the
    case the fill is for).
    """
    width, height = im.size
    if _axis(axis) == "X":
        offset = (round(fraction * width), 0)
    else:
        offset = (0, round(fraction * height))
    canvas = Image.new("RGB", im.size, _rgb(fill))
    canvas.paste(to_rgb(im), offset)  # paste clips what falls outside the canvas
    return canvas


def crop(im: Image.Image, area: float, cx: float = 0.5, cy: float = 0.5) -> Image.Image:
    """Crop keeping a fraction ``area`` (0 < area ≤ 1) of the image area, same aspect ratio.

    Each side is scaled by √area and rounded to whole pixels (at least 1). ``cx`` and
    ``cy`` (0..1) place the crop within the room left over: 0.5, 0.5 is centred,
    0, 0 the top-left corner, 1, 1 the bottom-right corner. The result has the cropped
    size (it is not resized back).
    """
    width, height = im.size
    side = area**0.5
    crop_width, crop_height = max(1, round(width * side)), max(1, round(height * side))
    left, top = round(cx * (width - crop_width)), round(cy * (height - crop_height))
    return to_rgb(im).crop((left, top, left + crop_width, top + crop_height))


def pad(im: Image.Image, border: float, fill: int | tuple[int, int, int] = 0) -> Image.Image:
    """Padding: add a border on all four sides, ``border`` × the longer side wide.

    The border width is ``round(border * max(width, height))`` pixels on each side, so
    the result is ``(width + 2b) × (height + 2b)``. ``fill`` is a grey level (0 black,
    255 white) or an RGB triple.
    """
    width, height = im.size
    b = round(border * max(width, height))
    canvas = Image.new("RGB", (width + 2 * b, height + 2 * b), _rgb(fill))
    canvas.paste(to_rgb(im), (b, b))
    return canvas


# --- beyond CMAA's grids: what the unseen suite (suites.UNSEEN) is made of ---
# Families the shipped model's (Table 1) training views never draw: colour changes, frames,
# free geometry, overlays and other codecs, the edits a shared picture meets that Table 1
# has no row for. The wide (v2) views use some of these functions with their own ranges;
# perspective, caption, screenshot, webp, avif and hue_shift they never use.

# Luma weights of the greyscale conversions in common use.
LUMA_WEIGHTS = {
    "601": (0.299, 0.587, 0.114),  # ITU-R BT.601: PIL's convert("L"), JPEG's Y, OpenCV's BGR2GRAY
    "709": (0.2126, 0.7152, 0.0722),  # ITU-R BT.709 / sRGB luminance: CSS grayscale(), ffmpeg's HD matrices
    "AVG": (1 / 3, 1 / 3, 1 / 3),  # plain mean of R, G and B, as naive tools do
}


def greyscale(im: Image.Image, luma: str = "601") -> Image.Image:
    """Greyscale (GREY): every pixel replaced by its luma, so R = G = B.

    ``luma`` picks the weights (:data:`LUMA_WEIGHTS`): ``"601"`` (default, PIL's
    ``convert("L")``), ``"709"`` or ``"AVG"``; tools disagree, so the suite uses more
    than one. Float weights, rounded once. A hash that reads colour loses it all.
    """
    weights = np.asarray(LUMA_WEIGHTS[luma.upper()], np.float64)
    grey = _pixels(im) @ weights
    return _from_float(np.repeat(grey[..., None], 3, axis=2))


def gamma(im: Image.Image, g: float) -> Image.Image:
    """Gamma (GAMMA): every channel value v becomes 255·(v/255)^g, rounded.

    ``g`` > 1 darkens the mid-tones (2: mid-grey 128 → 64) and keeps black and white;
    ``g`` < 1 brightens them. Unlike brightness (BA), the extremes do not move, so a
    monitor or export profile mismatch looks like this.
    """
    if not g > 0:
        raise ValueError(f"gamma must be > 0, not {g!r}")
    table = [round(255.0 * (v / 255.0) ** g) for v in range(256)]
    return to_rgb(im).point(table * 3)


def hue_shift(im: Image.Image, degrees: float) -> Image.Image:
    """Hue shift (HUE): rotate every pixel's hue by ``degrees`` (positive: red → yellow → green).

    As torchvision's ``adjust_hue`` does for PIL images: PIL's HSV conversion, the
    8-bit hue channel (256 steps per turn) shifted by round(degrees/360·256) with
    wrap-around, back to RGB. Saturation and value are kept (up to the HSV round trip,
    a grey level or two); greys do not change.
    """
    hsv = np.array(to_rgb(im).convert("HSV"))
    shift = round(degrees / 360.0 * 256.0) % 256
    hsv[..., 0] = (hsv[..., 0].astype(np.int64) + shift) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def colour_cast(im: Image.Image, colour: int | tuple[int, int, int], strength: float) -> Image.Image:
    """Colour cast (CAST): blend every pixel with the flat ``colour`` by ``strength`` (0..1).

    ``(1 − strength)·pixel + strength·colour``, rounded: 0 leaves the image unchanged,
    1 gives the flat colour. A warm or cold white balance, a tinted filter or a sepia
    wash (after GREY) look like this.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"cast strength must be in [0, 1], not {strength!r}")
    values = _pixels(im) * (1.0 - strength)
    values += strength * np.asarray(_rgb(colour), np.float64)
    return _from_float(values)


def letterbox(im: Image.Image, aspect: tuple[float, float], fill: int | tuple[int, int, int] = BLACK) -> Image.Image:
    """Letterbox or pillarbox (LETTERBOX): bars of ``fill`` around the image to the aspect ``aspect``.

    ``aspect`` is (width, height) of the frame, e.g. (16, 9): a picture narrower than
    the frame gets bars left and right (its height kept, width round(height·16/9)), a
    wider one bars above and below (width kept); one of exactly that aspect is returned
    unchanged. The picture is centred (an odd pixel of bar goes right / below). A video
    frame, a TV or a phone screen shows a picture like this.
    """
    width, height = im.size
    ratio = aspect[0] / aspect[1]
    if width < height * ratio:
        size = (max(width, round(height * ratio)), height)
    else:
        size = (width, max(height, round(width / ratio)))
    canvas = Image.new("RGB", size, _rgb(fill))
    canvas.paste(to_rgb(im), ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def affine(im: Image.Image, degrees: float, scale: float, tx: float, ty: float, shear_degrees: float,
           fill: int | tuple[int, int, int] = BLACK) -> Image.Image:
    """Affine (AFFINE): rotate, shear and scale about the centre, then translate; canvas kept.

    A point p moves to c + (tx·W, ty·H) + R·Sh·s·(p − c): R rotates by ``degrees``
    counter-clockwise (as RT), Sh shears along x by ``shear_degrees`` (x + tan(shear)·(y − cy),
    as SHR(X, tan)), s = ``scale`` and (tx, ty) are fractions of the width and height
    (positive: right, down). torchvision's ``RandomAffine`` draws these same five
    numbers; here they are written out, so a spec says exactly what it does. Bilinear;
    uncovered area ``fill``.
    """
    if not scale > 0:
        raise ValueError(f"affine scale must be > 0, not {scale!r}")
    width, height = im.size
    angle, slant = math.radians(degrees), math.radians(shear_degrees)
    rotation = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    forward = rotation @ np.array([[1.0, math.tan(slant)], [0.0, 1.0]]) * scale
    inverse = np.linalg.inv(forward)
    centre = np.array([width / 2.0, height / 2.0])
    offset = centre - inverse @ (centre + np.array([tx * width, ty * height]))
    # PIL's AFFINE takes the inverse map: output (x, y) samples input (a·x + b·y + c, d·x + e·y + f).
    coefficients = (*inverse[0], offset[0], *inverse[1], offset[1])
    return to_rgb(im).transform(im.size, Image.Transform.AFFINE, tuple(float(v) for v in coefficients),
                                resample=Image.Resampling.BILINEAR, fillcolor=_rgb(fill))


def _perspective_coefficients(output: np.ndarray, source: np.ndarray) -> tuple[float, ...]:
    """PIL's 8 PERSPECTIVE coefficients mapping the 4 ``output`` points onto the ``source`` points."""
    rows, targets = [], []
    for (x, y), (u, v) in zip(output, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        targets += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.array(rows, np.float64), np.array(targets, np.float64)))


def perspective(im: Image.Image, strength: float, rng: np.random.Generator,
                fill: int | tuple[int, int, int] = BLACK) -> Image.Image:
    """Random perspective (PERSP): each corner moved inwards, the picture warped to the new corners.

    Corner i (top-left, top-right, bottom-right, bottom-left) moves inwards by
    u·strength·W/2 horizontally and v·strength·H/2 vertically, with u, v drawn uniformly
    from [0, 1) in that order (8 draws): torchvision's ``RandomPerspective`` with
    ``distortion_scale = strength``, continuous. ``strength`` in [0, 1); 0 changes
    nothing. A photo of a screen or a print taken at an angle looks like this.
    Bilinear; canvas kept, uncovered area ``fill``.
    """
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"perspective strength must be in [0, 1), not {strength!r}")
    width, height = im.size
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    inwards = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64)
    moved = rng.random((4, 2)) * strength * np.array([width / 2.0, height / 2.0])
    coefficients = _perspective_coefficients(corners + inwards * moved, corners)
    return to_rgb(im).transform(im.size, Image.Transform.PERSPECTIVE, coefficients,
                                resample=Image.Resampling.BILINEAR, fillcolor=_rgb(fill))


def _codec(im: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    to_rgb(im).save(buffer, format=fmt, **options)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def webp(im: Image.Image, quality: int) -> Image.Image:
    """WebP re-encoding (WEBP): lossy WebP at ``quality`` (1–100, libwebp's scale), decoded again.

    Pillow's libwebp, ``method`` 4 (its default effort), 4:2:0 chroma. The codec of
    most web image pipelines and messengers; its block artefacts differ from JPEG's.
    """
    return _codec(im, "WEBP", quality=int(quality), method=4)


def avif_available() -> bool:
    """Whether this Pillow can write AVIF (Pillow 11.3 or later, built with libavif)."""
    try:
        return bool(features.check("avif"))
    except ValueError:  # a Pillow that does not know the feature at all
        return False


def avif(im: Image.Image, quality: int) -> Image.Image:
    """AVIF re-encoding (AVIF): AVIF at ``quality`` (1–100, Pillow's scale), decoded again.

    Pillow's libavif plugin at encoder speed 6 (its default), 4:2:0. Needs Pillow 11.3
    or later built with libavif (:func:`avif_available`); raises ``RuntimeError`` if not.
    """
    if not avif_available():
        raise RuntimeError("AVIF needs Pillow >= 11.3 built with libavif (PIL.features.check('avif') is False)")
    return _codec(im, "AVIF", quality=int(quality), speed=6)


def down_up(im: Image.Image, scale: float) -> Image.Image:
    """Down-up scaling (DOWNUP): resize by ``scale`` (0 < scale ≤ 1), then back to the original size.

    Both steps bicubic (Pillow's, antialiased when shrinking); the small side is at
    least 1 pixel. The result has the input's size and the detail of the thumbnail: a
    picture that went through a thumbnail and was blown up again.
    """
    width, height = im.size
    small = to_rgb(im).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                              Image.Resampling.BICUBIC)
    return small.resize((width, height), Image.Resampling.BICUBIC)


# --- overlays: captions, stickers, screenshots ---

# The words captions are made of (meme-style, upper case when drawn).
CAPTION_WORDS = (
    "when", "the", "hash", "still", "matches", "me", "every", "time", "nobody", "asked", "this", "is",
    "fine", "monday", "mood", "actually", "wait", "for", "it", "plot", "twist", "same", "energy",
    "big", "if", "true", "look", "at", "my", "new", "photo", "no", "way", "best", "day", "ever",
)
CAPTION_POSITIONS = ("TOP", "BOTTOM", "BOTH", "MIDDLE", "ABOVE")


def _font(pixels: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``pixels`` (no font files needed); the fixed-size bitmap
    font where Pillow has no FreeType (Pillow < 10.1 or built without it)."""
    try:
        return ImageFont.load_default(size=max(1, pixels))
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _caption_line(draw: ImageDraw.ImageDraw, font, width: float, rng: np.random.Generator) -> str:
    """Words drawn from ``rng`` (one index per word) while the line fits in ``width``; at least one."""
    words = [CAPTION_WORDS[rng.integers(len(CAPTION_WORDS))].upper()]
    while True:
        word = CAPTION_WORDS[rng.integers(len(CAPTION_WORDS))].upper()
        if draw.textlength(" ".join([*words, word]), font=font) > width or len(words) >= 12:
            return " ".join(words)
        words.append(word)


def caption(im: Image.Image, size: float, position: str, rng: np.random.Generator) -> Image.Image:
    """Text caption (TEXT): a line of words, ``size`` × the image height tall, in Pillow's built-in font.

    The words are drawn from :data:`CAPTION_WORDS` by ``rng`` until the line would pass
    92 % of the width. ``position``: ``TOP``, ``BOTTOM``, ``BOTH`` (two lines), ``MIDDLE``
    draw white letters with a black outline over the picture, as a meme does; ``ABOVE``
    adds a white bar above the picture (the canvas grows by 1.6 × the text height) with
    black text, as a captioned repost does. ``size`` in (0, 0.5].
    """
    where = position.upper()
    if where not in CAPTION_POSITIONS:
        raise ValueError(f"caption position must be one of {', '.join(CAPTION_POSITIONS)}, not {position!r}")
    image = to_rgb(im).copy()
    width, height = image.size
    pixels = max(6, round(size * height))
    font = _font(pixels)
    if where == "ABOVE":
        bar = round(1.6 * pixels)
        canvas = Image.new("RGB", (width, height + bar), (255, 255, 255))
        canvas.paste(image, (0, bar))
        draw = ImageDraw.Draw(canvas)
        draw.text((width / 2, bar / 2), _caption_line(draw, font, 0.92 * width, rng), fill=(0, 0, 0), font=font,
                  anchor="mm")
        return canvas
    draw = ImageDraw.Draw(image)
    margin = 0.04 * height + pixels / 2
    rows = {"TOP": (margin,), "BOTTOM": (height - margin,), "BOTH": (margin, height - margin),
            "MIDDLE": (height / 2,)}[where]
    stroke = max(1, pixels // 12)
    for y in rows:
        draw.text((width / 2, y), _caption_line(draw, font, 0.92 * width, rng), fill=(255, 255, 255), font=font,
                  anchor="mm", stroke_width=stroke, stroke_fill=(0, 0, 0))
    return image


STICKER_SHAPES = ("smiley", "star", "heart")
STICKER_COLOURS = ((255, 204, 0), (233, 30, 99), (33, 150, 243), (76, 175, 80), (255, 87, 34), (156, 39, 176))


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [(cx + (r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5),
             cy - (r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]


def stickers(im: Image.Image, n: int, size: float, rng: np.random.Generator) -> Image.Image:
    """Stickers and emoji (EMOJI): ``n`` opaque shapes, each ``size`` × the shorter side across.

    Each sticker draws, in this order, a shape (smiley, star or heart, uniformly), its
    left and top (whole pixels, uniformly where it fits on the canvas) and a colour
    (one of :data:`STICKER_COLOURS`; a smiley is always yellow). Drawn with PIL, no
    emoji font needed. They cover at most n·size² of the shorter side squared; later
    stickers cover earlier ones.
    """
    image = to_rgb(im).copy()
    width, height = image.size
    d = max(4, round(size * min(width, height)))
    draw = ImageDraw.Draw(image)
    for _ in range(n):
        shape = STICKER_SHAPES[rng.integers(len(STICKER_SHAPES))]
        left, top = int(rng.integers(0, max(1, width - d + 1))), int(rng.integers(0, max(1, height - d + 1)))
        colour = STICKER_COLOURS[rng.integers(len(STICKER_COLOURS))]
        box = (left, top, left + d - 1, top + d - 1)
        cx, cy, r = left + (d - 1) / 2, top + (d - 1) / 2, (d - 1) / 2
        if shape == "smiley":
            dark = (60, 40, 0)
            draw.ellipse(box, fill=STICKER_COLOURS[0], outline=dark, width=max(1, d // 24))
            for ex in (cx - 0.35 * r, cx + 0.35 * r):
                draw.ellipse((ex - 0.1 * r, cy - 0.4 * r, ex + 0.1 * r, cy - 0.1 * r), fill=dark)
            draw.arc((cx - 0.55 * r, cy - 0.45 * r, cx + 0.55 * r, cy + 0.6 * r), 20, 160, fill=dark,
                     width=max(1, d // 16))
        elif shape == "star":
            draw.polygon(_star(cx, cy, r), fill=colour)
        else:  # heart: two circles and a triangle
            half = r / 2
            draw.ellipse((left, top, cx, top + r), fill=colour)
            draw.ellipse((cx, top, left + d - 1, top + r), fill=colour)
            draw.polygon([(left, top + half), (left + d - 1, top + half), (cx, top + d - 1)], fill=colour)
    return image


SCREENSHOT_STYLES = ("PHONE", "DESKTOP")


def _fit(im: Image.Image, box: tuple[int, int]) -> Image.Image:
    """``im`` scaled (bicubic, aspect kept) to fit in ``box``."""
    scale = min(box[0] / im.width, box[1] / im.height)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BICUBIC)


def _text_lines(draw: ImageDraw.ImageDraw, left: int, top: int, width: int, line: int, count: int) -> None:
    """``count`` grey bars standing for lines of text, the last one shorter."""
    for k in range(count):
        length = width if k < count - 1 else 0.6 * width
        draw.rectangle((left, top + k * 2 * line, left + length, top + k * 2 * line + line - 1), fill=(200, 200, 200))


def screenshot(im: Image.Image, style: str = "PHONE") -> Image.Image:
    """Screenshot framing (SCREENSHOT): the picture, scaled, inside an app or browser window.

    ``PHONE`` (default): a 9:19.5 screen as wide as the picture: dark status bar with a
    clock, a post header (avatar, name), the picture at 92 % of the width (smaller if
    it is tall), then action icons, lines of text and a navigation bar. ``DESKTOP``: a
    16:10 browser window 1/0.6 of the picture's width: title bar with three buttons,
    address bar, the picture at most 60 % of the width and 70 % of the height, centred,
    with text lines beside it. Deterministic; the frame's layout scales with the picture.
    """
    kind = style.upper()
    if kind not in SCREENSHOT_STYLES:
        raise ValueError(f"screenshot style must be PHONE or DESKTOP, not {style!r}")
    image = to_rgb(im)
    if kind == "PHONE":
        sw = max(16, image.width)
        sh = round(sw * 19.5 / 9)
        unit = sw / 100
        canvas = Image.new("RGB", (sw, sh), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        status, header = round(6 * unit), round(14 * unit)
        draw.rectangle((0, 0, sw - 1, status - 1), fill=(17, 17, 17))
        draw.text((3 * unit, status / 2), "12:30", fill=(240, 240, 240), font=_font(round(3.5 * unit)), anchor="lm")
        draw.rectangle((sw - 10 * unit, 1.8 * unit, sw - 4 * unit, status - 1.8 * unit), fill=(240, 240, 240))
        draw.ellipse((3 * unit, status + 3 * unit, 11 * unit, status + 11 * unit), fill=(180, 120, 200))
        _text_lines(draw, round(14 * unit), round(status + 4 * unit), round(30 * unit), max(1, round(2 * unit)), 2)
        nav = round(12 * unit)
        below = round(30 * unit)  # icons and text under the picture
        picture = _fit(image, (round(92 * unit), sh - status - header - below - nav))
        top = status + header
        canvas.paste(picture, ((sw - picture.width) // 2, top))
        y = top + picture.height + 3 * unit
        for k in range(3):
            x = 4 * unit + k * 10 * unit
            draw.ellipse((x, y, x + 6 * unit, y + 6 * unit), outline=(40, 40, 40), width=max(1, round(unit / 2)))
        _text_lines(draw, round(4 * unit), round(y + 10 * unit), round(88 * unit), max(1, round(2 * unit)), 3)
        draw.rectangle((0, sh - nav, sw - 1, sh - 1), fill=(245, 245, 245))
        for k in range(4):
            x = (k + 0.5) * sw / 4
            draw.rectangle((x - 3 * unit, sh - nav / 2 - 3 * unit, x + 3 * unit, sh - nav / 2 + 3 * unit),
                           fill=(90, 90, 90))
        return canvas
    cw = max(16, round(image.width / 0.6))
    ch = round(cw * 10 / 16)
    unit = cw / 100
    canvas = Image.new("RGB", (cw, ch), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    title, address = round(4 * unit), round(4 * unit)
    draw.rectangle((0, 0, cw - 1, title - 1), fill=(222, 222, 222))
    for k, colour in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
        x = (1.5 + 2.2 * k) * unit
        draw.ellipse((x, title / 2 - 0.7 * unit, x + 1.4 * unit, title / 2 + 0.7 * unit), fill=colour)
    draw.rectangle((0, title, cw - 1, title + address - 1), fill=(245, 245, 245))
    draw.rectangle((10 * unit, title + 0.8 * unit, 80 * unit, title + address - 0.8 * unit), fill=(255, 255, 255),
                   outline=(200, 200, 200))
    picture = _fit(image, (round(60 * unit), round(0.7 * ch)))
    top = title + address + round(3 * unit)
    canvas.paste(picture, ((cw - picture.width) // 2, top))
    side = (cw - picture.width) // 2
    if side > 6 * unit:
        _text_lines(draw, round(2 * unit), top, round(side - 4 * unit), max(1, round(unit)), 6)
    _text_lines(draw, round(20 * unit), round(top + picture.height + 2 * unit), round(60 * unit),
                max(1, round(unit)), 2)
    return canvas
