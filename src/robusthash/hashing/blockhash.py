"""Block mean value hash (Yang, Gu, Niu 2006) as in the open-source blockhash project.

Bit-compatible with commonsmachinery's blockhash-python ``blockhash(im, 16)`` (the
precise method): every pixel contributes R+G+B to the 16×16 grid of blocks, with
fractional weights where a pixel straddles a block border; each of the four
horizontal bands of 4×16 blocks is thresholded at its own median.

The reference loops over every pixel in Python. Here the fractional weights are
separable, so the block sums are two small matrix products: ``Wy @ V @ Wx.T``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .base import TRAIN_SPLIT_TAU, BaseHasher, register
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


def block_sums(rgb: np.ndarray, blocks: int = GRID) -> tuple[np.ndarray, float]:
    """Sums of R+G+B per block (row-major) and the number of pixels per block."""
    height, width = rgb.shape[:2]
    # Channel by channel: numpy's reduction over a length-3 last axis is several times slower.
    values = rgb[:, :, 0].astype(np.float64) + rgb[:, :, 1] + rgb[:, :, 2]
    # The narrow product first: (H×W)·(W×16) then (16×H)·(H×16).
    sums = axis_weights(height, blocks) @ (values @ axis_weights(width, blocks).T)
    return sums.ravel(), (width / blocks) * (height / blocks)


def blockhash_bits(rgb: np.ndarray, blocks: int = GRID) -> np.ndarray:
    """The ``blocks**2`` bits of an ``(H, W, 3)`` uint8 image."""
    sums, pixels_per_block = block_sums(rgb, blocks)
    half_block_value = pixels_per_block * 256 * 3 / 2
    bands = sums.reshape(BANDS, -1)
    medians = np.median(bands, axis=1, keepdims=True)
    # A block equal to its band's median (flat black or white areas) gets the bit of
    # the median's half of the value range, so such images do not hash to all zeros.
    bits = (bands > medians) | ((np.abs(bands - medians) < 1) & (medians > half_block_value))
    return bits.ravel()


@register
class BlockHasher(BaseHasher):
    name = "blockhash"
    bits = GRID * GRID
    version = "1"
    description = "Block mean value hash, 16×16 blocks, medians per horizontal band (blockhash.io compatible)"
    # No published default: τ at 1% FPR on the train split (benchmarks/default_thresholds.py).
    threshold = 33 / 256
    threshold_source = TRAIN_SPLIT_TAU

    def hash_pil(self, im: Image.Image) -> Hash:
        return self.make_hash(blockhash_bits(np.asarray(im)))
