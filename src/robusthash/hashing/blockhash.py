"""Block mean value hash (Yang, Gu, Niu 2006) as in the open-source blockhash project.

Bit-compatible with commonsmachinery's blockhash-python ``blockhash(im, 16)`` (the
precise method): every pixel contributes R+G+B to the 16×16 grid of blocks, with
fractional weights where a pixel straddles a block border; each of the four
horizontal bands of 4×16 blocks is thresholded at its own median.

The reference loops over every pixel in Python. Here the fractional weights are
separable, so the block sums are two small matrix products: ``Wy @ V @ Wx.T``.

Pixels are valued as the reference values them (``blockhash.utility.normalize_image``
and ``total_value_rgba``), from the file's own mode: R+G+B, alpha ignored, except that a
fully transparent pixel counts as white (765); grey, bilevel and palette images are
converted to RGB by Pillow (a palette's transparency is dropped, as there). Modes the
reference refuses (CMYK, 16-bit, ...) go through the loader's RGB rule.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..imaging import row_strips
from ..io import to_rgb
from .base import TRAIN_SPLIT_TAU, BaseHasher
from .value import Hash

GRID = 16
BANDS = 4


def axis_weights(n: int, blocks: int) -> np.ndarray:
    """A ``(blocks, n)`` matrix: how much of pixel ``i`` along one axis falls in each block.

    Reproduces the reference's rule exactly, including its treatment of pixels that
    end exactly on a block boundary and of the last pixel.
    """
    weights = np.zeros((blocks, n))
    pos = np.arange(n, dtype=np.float64)
    if n % blocks == 0:
        weights[(np.arange(n) // (n // blocks)), np.arange(n)] = 1.0
        return weights
    size = n / blocks
    frac, whole = np.modf(np.fmod(pos + 1, size))
    first = np.floor_divide(pos, size).astype(int)
    second = (-np.floor_divide(-pos, size)).astype(int)
    inside = (whole > 0) | (pos + 1 == n)
    second = np.where(inside, first, second)
    np.add.at(weights, (first, np.arange(n)), 1.0 - frac)
    np.add.at(weights, (second, np.arange(n)), frac)
    return weights


def reference_mode(im: Image.Image) -> Image.Image:
    """The image in the mode the reference reads it (module docstring): RGB, or RGBA
    where a fully transparent pixel counts as white."""
    if im.mode in ("1", "L", "P"):
        return im.convert("RGB")
    if im.mode == "LA":
        return im.convert("RGBA")
    if im.mode not in ("RGB", "RGBA"):
        return to_rgb(im)
    return im


def pixel_values(arr: np.ndarray) -> np.ndarray:
    """Each pixel's value as the reference sees it, as float64 (H, W), of an (H, W, 3)
    or (H, W, 4) array of :func:`reference_mode`'s image."""
    values = channel_sum(arr)
    if arr.shape[2] == 4:
        values[arr[:, :, 3] == 0] = 765.0
    return values


def block_sums(rgb: np.ndarray, blocks: int = GRID) -> tuple[np.ndarray, float]:
    """Sums of R+G+B per block (row-major) and the number of pixels per block."""
    return value_sums(channel_sum(rgb), blocks)


def channel_sum(arr: np.ndarray) -> np.ndarray:
    """R+G+B of each pixel as float64 (channel by channel: numpy's reduction over a
    length-3 last axis is several times slower)."""
    return arr[:, :, 0].astype(np.float64) + arr[:, :, 1] + arr[:, :, 2]


def value_sums(values: np.ndarray, blocks: int = GRID) -> tuple[np.ndarray, float]:
    """Sums of pixel values per block (row-major) and the number of pixels per block."""
    height, width = values.shape
    # The narrow product first: (H×W)·(W×16) then (16×H)·(H×16).
    return _sums_of_rows(values @ axis_weights(width, blocks).T, width, blocks)


def _sums_of_rows(row_sums: np.ndarray, width: int, blocks: int) -> tuple[np.ndarray, float]:
    height = len(row_sums)
    return (axis_weights(height, blocks) @ row_sums).ravel(), (width / blocks) * (height / blocks)


def image_sums(im: Image.Image, blocks: int = GRID) -> tuple[np.ndarray, float]:
    """:func:`value_sums` of the pixel values of :func:`reference_mode`'s image, read a
    strip of rows at a time (``imaging.row_strips``), so that a 50-megapixel upload never
    holds a float64 copy of itself (0.4 GB). Each strip's row sums are the rows of the
    whole image's product, so the bits do not depend on the strip size."""
    im = reference_mode(im)
    width, height = im.size
    across = axis_weights(width, blocks).T
    row_sums = np.concatenate([pixel_values(np.asarray(im.crop((0, top, width, bottom)))) @ across
                               for top, bottom in row_strips(width, 0, height)])
    return _sums_of_rows(row_sums, width, blocks)


def blockhash_bits(rgb: np.ndarray, blocks: int = GRID) -> np.ndarray:
    """The ``blocks**2`` bits of an ``(H, W, 3)`` uint8 image."""
    return bits_from_sums(*block_sums(rgb, blocks))


def bits_from_sums(sums: np.ndarray, pixels_per_block: float) -> np.ndarray:
    half_block_value = pixels_per_block * 256 * 3 / 2
    bands = sums.reshape(BANDS, -1)
    medians = np.median(bands, axis=1, keepdims=True)
    # A block equal to its band's median (flat black or white areas) gets the bit of
    # the median's half of the value range, so such images do not hash to all zeros.
    bits = (bands > medians) | ((np.abs(bands - medians) < 1) & (medians > half_block_value))
    return bits.ravel()


class BlockHasher(BaseHasher):
    name = "blockhash"
    bits = GRID * GRID
    # 2: pixels valued from the file's own mode as the reference does (1 composited
    # alpha on white first: 16 bits off on blockhash.io's emptyBasket.png).
    version = "2"
    description = "Block mean value hash, 16×16 blocks, medians per horizontal band (blockhash.io compatible)"
    # No published default: τ at 1% FPR on the train split (benchmarks/default_thresholds.py).
    threshold = 33 / 256
    threshold_source = TRAIN_SPLIT_TAU

    input_mode = "native"

    def hash_pil(self, im: Image.Image) -> Hash:
        return self.make_hash(bits_from_sums(*image_sums(im)))
