"""Content-preserving image attacks, each a plain, documented function of a PIL image.

Conventions shared by every function here:

* Input: a PIL image, converted to RGB by :func:`robusthash.io.to_rgb` if it is not
  (alpha is composited on white, as the loader does). Output: a new 8-bit RGB image;
  values are rounded to the nearest integer and clipped to 0..255.
* Random attacks take ``rng: numpy.random.Generator`` and draw from nothing else, so a
  seeded generator gives the same pixels every time.
* Geometric attacks that keep the canvas (rotation, shear, translation) fill the
  uncovered area black.
* Neighbourhood filters (average, median, Gaussian) see beyond the border the image
  mirrored *without* repeating the edge pixel (``dcb|abcd``): OpenCV's default
  ``BORDER_REFLECT_101``, numpy's ``"reflect"``, scipy.ndimage's ``"mirror"``.

The attack codes (``BA``, ``JC``, ...), CMAA's grids and the spec language that
composes these functions are in :mod:`robusthash.attacks.spec`,
:mod:`robusthash.attacks.suites` and ``docs/attacks.md``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from scipy import ndimage

from ..io import to_rgb

BLACK = (0, 0, 0)
# The median filter works on bands of this many rows, so its shifted copies of the
# image stay small (and cache-friendly) however large the image is.
MEDIAN_BAND_ROWS = 128


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


def rotate(im: Image.Image, degrees: float, fill: tuple[int, int, int] = BLACK) -> Image.Image:
    """Rotation (RT): rotate by ``degrees`` about the centre; positive = counter-clockwise.

    The canvas keeps its size (bilinear); corners that come from outside the image are
    filled with ``fill`` (black by default, as torchvision's rotation does) and the
    parts rotated outside the canvas are lost. Multiples of 90° on a square image are
    exact (no interpolation).
    """
    return to_rgb(im).rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=fill)


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


def translate(im: Image.Image, axis: str, fraction: float) -> Image.Image:
    """Translation (TR) along ``axis`` ``"X"`` or ``"Y"`` by ``fraction`` of the width or height.

    Positive moves the content right (X) or down (Y). The shift is rounded to whole
    pixels (no interpolation); the canvas is kept and the uncovered strip is black.
    """
    width, height = im.size
    if _axis(axis) == "X":
        offset = (round(fraction * width), 0)
    else:
        offset = (0, round(fraction * height))
    canvas = Image.new("RGB", im.size, BLACK)
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
    colour = (fill, fill, fill) if isinstance(fill, int) else tuple(fill)
    canvas = Image.new("RGB", (width + 2 * b, height + 2 * b), colour)
    canvas.paste(to_rgb(im), (b, b))
    return canvas
