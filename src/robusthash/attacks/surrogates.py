"""Black-box attacks on the classical hashers through differentiable surrogates.

The classical hashes (``pdq``, ``phash``, ``blockhash``, ``forbild``) are thresholds of
smooth functions of the pixels: DCT coefficients or block means against a median. Each
surrogate here recomputes those values in torch as *margins* (value − median: the bit
is margin > 0), so PGD can push them across zero. The attacker holds the surrogate
but not the hasher's code: the real hash is only queried, once per step, on the file
the attacker would publish (JPEG quality 90), and the attack stops at the first query
that succeeds. Success rate against queries is the black-box curve; the surrogates'
agreement with the real bits is tested (tests/test_adversarial.py).

Needs torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..hashing.blockhash import axis_weights
from ..hashing.value import Hash
from .adversarial import published, to_tensor

LUMA = torch.tensor([0.299, 0.587, 0.114])


def luma(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] → (B, H, W) grey levels 0..255 (ITU-R 601, as Pillow's "L")."""
    return torch.einsum("bchw,c->bhw", pixels, LUMA) * 255


def dct_matrix(n: int, rows: int, skip_dc: bool = False, scale: float = 1.0) -> torch.Tensor:
    """Rows k of the DCT-II of length ``n``: scale · cos(π k (2i + 1) / 2n)."""
    k = torch.arange(rows, dtype=torch.float64)[:, None] + (1 if skip_dc else 0)
    i = torch.arange(n, dtype=torch.float64)[None]
    return (scale * torch.cos(math.pi * k * (2 * i + 1) / (2 * n))).float()


def _shrink(grey: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(grey[:, None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[:, 0]


def _box_means(values: torch.Tensor, blocks: int) -> torch.Tensor:
    """Block means over a blocks × blocks grid with Pillow's BOX (area) weights."""
    height, width = values.shape[-2:]
    rows = torch.from_numpy(axis_weights(height, blocks)).float()
    cols = torch.from_numpy(axis_weights(width, blocks)).float()
    rows, cols = rows / rows.sum(1, keepdim=True), cols / cols.sum(1, keepdim=True)
    return rows @ values @ cols.T


def _median(values: torch.Tensor) -> torch.Tensor:
    """The mean of the two middle values along the last axis (numpy's median)."""
    ordered = values.sort(dim=-1).values
    n = ordered.shape[-1]
    return (ordered[..., (n - 1) // 2] + ordered[..., n // 2]) / 2


def phash_margins(pixels: torch.Tensor) -> torch.Tensor:
    """imagehash.phash: grey 32 × 32, 2-D DCT, the 8 × 8 lowest, against their median."""
    d = dct_matrix(32, 8, scale=2.0)
    coefficients = (d @ _shrink(luma(pixels), 32) @ d.T).flatten(1)
    return coefficients - _median(coefficients)[:, None]


def pdq_margins(pixels: torch.Tensor) -> torch.Tensor:
    """PDQ: grey 64 × 64 (its tent filter, approximated by an antialiased resize), the
    16 × 16 DCT without the DC row, against the median; bit 255 first, as ``pdqhash``."""
    d = dct_matrix(64, 16, skip_dc=True, scale=math.sqrt(2 / 64))
    coefficients = (d @ _shrink(luma(pixels), 64) @ d.T).flatten(1)
    return (coefficients - _median(coefficients)[:, None]).flip(1)


def blockhash_margins(pixels: torch.Tensor) -> torch.Tensor:
    """blockhash (16 × 16): R + G + B block sums, each band of four rows against its median."""
    sums = _box_means(pixels.sum(1) * 255, 16).reshape(len(pixels), 4, 64)
    return (sums - _median(sums)[..., None]).flatten(1)


def forbild_margins(pixels: torch.Tensor, flips: tuple[bool, bool] | None = None) -> torch.Tensor:
    """ForBild: 16 × 16 grey block means, mirrored brightest quadrant top left (the
    mirroring, given as ``flips`` or read from the pixels, is not differentiated), each
    block against its own quadrant's median."""
    grid = _box_means(luma(pixels), 16)
    if flips is None:
        quadrants = grid.detach().reshape(-1, 2, 8, 2, 8).sum(dim=(2, 4))[0]
        row, col = divmod(int(quadrants.argmax()), 2)
        flips = (bool(row), bool(col))
    if flips[0]:
        grid = grid.flip(-2)
    if flips[1]:
        grid = grid.flip(-1)
    quads = grid.reshape(-1, 2, 8, 2, 8).permute(0, 1, 3, 2, 4).reshape(-1, 4, 64)
    margins = quads - _median(quads)[..., None]
    return margins.reshape(-1, 2, 2, 8, 8).permute(0, 1, 3, 2, 4).reshape(-1, 256)


SURROGATES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "phash": phash_margins, "pdq": pdq_margins, "blockhash": blockhash_margins, "forbild": forbild_margins,
}


@dataclass(frozen=True)
class SurrogateConfig:
    eps: float = 8 / 255
    queries: int = 100  # steps, one real hash query each
    step_size: float = 2 / 255
    margin: float = 0.5  # push each margin this far past zero, in units of the original margins' spread
    jpeg_quality: int | None = 90
    seed: int = 0
    # Stop at the first query past the threshold. An attacker who does not know the
    # database spends the whole budget instead, to get as far as possible.
    stop_at_success: bool = True


@dataclass(frozen=True)
class SurrogateResult:
    image: Image.Image  # the published file's pixels at the best query
    distance: int  # bits from the original (untargeted) or the target (targeted), real hasher
    success: bool
    queries: int  # the first query past the threshold (a success), else all that were spent


def surrogate_attack(method: str, hash_image: Callable[[Image.Image], Hash], image: Image.Image, reference: Hash,
                     threshold: int, target: Image.Image | None = None, config: SurrogateConfig = SurrogateConfig(),
                     original: Image.Image | None = None) -> SurrogateResult:
    """PGD under ℓ∞ on ``method``'s surrogate, the real hash queried at every step.
    Untargeted (``target`` None; ``reference`` = the original's hash): flip the
    surrogate's bits of ``original`` (default: ``image`` itself), success when the real
    distance exceeds ``threshold``. Targeted (``reference`` = the target's hash): take on
    the target's surrogate bits, success within ``threshold``."""
    if method not in SURROGATES:
        raise ValueError(f"no surrogate for {method!r}; surrogates: {', '.join(SURROGATES)}")
    margins_of = SURROGATES[method]
    x = to_tensor(image)
    with torch.no_grad():
        start = margins_of(x)
        away = start if original is None else margins_of(to_tensor(original))
        goal = -away.sign() if target is None else margins_of(to_tensor(target)).sign()
        spread = start.abs().mean().clamp_min(1e-6)
    generator = torch.Generator().manual_seed(config.seed)
    delta = ((torch.rand(x.shape, generator=generator) * 2 - 1) * config.eps / 4).requires_grad_(True)

    def done(distance: int) -> bool:
        return distance <= threshold if target is not None else distance > threshold

    best: tuple[int, Image.Image] | None = None
    first_success: int | None = None
    for query in range(1, config.queries + 1):
        # A hinge on every bit: zero once the margin is past zero by ``margin`` spreads.
        loss = F.relu(config.margin - goal * margins_of(x + delta) / spread).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta -= config.step_size * grad.sign()
            delta.clamp_(-config.eps, config.eps)
            delta.copy_((x + delta).clamp(0, 1) - x)
        candidate = published((x + delta).detach(), config.jpeg_quality)
        distance = hash_image(candidate) - reference
        better = best is None or (distance < best[0] if target is not None else distance > best[0])
        if better:
            best = (distance, candidate)
        if done(distance) and first_success is None:
            first_success = query
            if config.stop_at_success:
                break
    assert best is not None
    return SurrogateResult(best[1], best[0], first_success is not None, first_success or config.queries)


def surrogate_bits(method: str, image: Image.Image) -> np.ndarray:
    """The surrogate's bits of ``image`` (in the hasher's order), to check its fidelity."""
    with torch.no_grad():
        return (SURROGATES[method](to_tensor(image)) > 0)[0].numpy()
