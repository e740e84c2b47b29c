"""A query-limited black-box attack for any hasher: Square Attack (Andriushchenko et
al., ECCV 2020) under ℓ∞, with the Hamming distance of hashes as its score.

The attacker sees only hashes. It starts from vertical stripes of ±ε, then proposes
random squares, each filled with ±ε per channel, and keeps a proposal when the score does
not get worse (hashes are discrete: equal scores are accepted, so the search walks
across plateaus). The squares shrink on Square Attack's schedule. Every query hashes
the file the attacker would publish: the perturbed pixels saved as JPEG (quality 90 by
default) and decoded again, so what succeeded is what gets saved.

Untargeted: push the hash more than ``threshold`` bits from the original's. Targeted:
pull it within ``threshold`` bits of a target hash. Works on numpy and Pillow alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from ..hashing.value import Hash


@dataclass(frozen=True)
class SquareConfig:
    eps: float = 8 / 255
    queries: int = 1000  # hash evaluations, the initial one included
    p_init: float = 0.05  # share of the pixels the first squares cover
    jpeg_quality: int | None = 90  # every query hashes the JPEG the attacker would save (None: PNG, lossless)
    seed: int = 0


@dataclass(frozen=True)
class SquareResult:
    image: Image.Image  # the file's pixels (after the JPEG round trip, when one is modelled)
    distance: int  # bits from the original (untargeted) or the target (targeted)
    success: bool
    queries: int  # queries spent; for a success, the query that reached it
    history: list[tuple[int, int]]  # (query, distance) at every improvement


def _p_schedule(p_init: float, query: int, budget: int) -> float:
    """Square Attack's halving schedule, its breakpoints rescaled from 10,000 queries."""
    fraction = query / max(budget, 1) * 10_000
    halvings = sum(fraction > b for b in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return p_init / 2**halvings


def published(pixels: np.ndarray, jpeg_quality: int | None) -> Image.Image:
    """The 8-bit file an attacker publishes from float pixels in [0, 1], as decoded again."""
    im = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))
    if not jpeg_quality:
        return im
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=2)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def square_attack(hash_image: Callable[[Image.Image], Hash], image: Image.Image, reference: Hash,
                  threshold: int, targeted: bool = False, config: SquareConfig = SquareConfig()) -> SquareResult:
    """Square Attack on ``hash_image``. Untargeted (``reference`` = the original's hash):
    success when the distance exceeds ``threshold``. Targeted (``reference`` = the target's
    hash): success when it is at most ``threshold``."""
    rng = np.random.default_rng(config.seed)
    x = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    height, width, channels = x.shape
    eps = config.eps
    sign = 1 if targeted else -1  # the attack minimises sign · distance

    def score(pixels: np.ndarray) -> tuple[int, Image.Image]:
        candidate = published(pixels, config.jpeg_quality)
        return hash_image(candidate) - reference, candidate

    def done(distance: int) -> bool:
        return distance <= threshold if targeted else distance > threshold

    stripes = eps * rng.choice([-1.0, 1.0], size=(1, width, channels))
    delta = np.broadcast_to(stripes, x.shape).copy()
    distance, current = score(x + delta)
    history = [(1, distance)]
    query = 1
    while not done(distance) and query < config.queries:
        side = max(1, min(height, width, int(round(np.sqrt(_p_schedule(config.p_init, query, config.queries)
                                                           * height * width)))))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        proposal = delta.copy()
        proposal[top:top + side, left:left + side] = eps * rng.choice([-1.0, 1.0], size=(1, 1, channels))
        candidate_distance, candidate = score(x + proposal)
        query += 1
        if sign * candidate_distance <= sign * distance:
            if candidate_distance != distance:
                history.append((query, candidate_distance))
            delta, distance, current = proposal, candidate_distance, candidate
    return SquareResult(current, distance, done(distance), query, history)
