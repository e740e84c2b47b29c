"""Metrics of the evaluation protocol (docs/protocol.md)."""

from __future__ import annotations

import numpy as np


def pairwise_nhd(bits: np.ndarray) -> np.ndarray:
    """Normalised Hamming distances of all unordered pairs of rows of a bool matrix."""
    bits = np.asarray(bits, dtype=bool)
    packed = np.packbits(bits, axis=1)
    n = len(packed)
    rows, cols = np.triu_indices(n, 1)
    popcount = np.unpackbits((packed[rows] ^ packed[cols]), axis=1).sum(axis=1)
    return popcount / bits.shape[1]


def threshold_at_fpr(distinct: np.ndarray, fpr: float = 0.01) -> float:
    """The largest threshold τ with P(distance ≤ τ) ≤ ``fpr`` over distinct-image pairs.

    Decisions are "match if distance ≤ τ". Ties matter for short hashes: τ is always one
    of the observed distances (or below all of them), never a value between, so the
    rate actually achieved on ``distinct`` never exceeds ``fpr``.
    """
    values = np.sort(np.asarray(distinct, dtype=np.float64))
    if values.size == 0:
        raise ValueError("no distinct-image distances to calibrate on")
    allowed = int(np.floor(fpr * values.size))  # how many false positives we may accept
    if allowed == 0:
        return float(np.nextafter(values[0], -np.inf))
    candidate = values[allowed - 1]
    if values[allowed] > candidate:
        return float(candidate)
    # candidate ties with the next value: step down to the largest value strictly below it
    below = values[values < candidate]
    return float(below[-1]) if below.size else float(np.nextafter(values[0], -np.inf))
