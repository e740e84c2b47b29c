"""Distances and thresholds of the ground floor, for every layer: Hamming distances of
packed bit rows (one row per image, ``np.packbits`` of the hash bits, so distances
between thousands of pairs are a XOR and a popcount), the threshold at a false-positive
rate, and the overlap of cell maps (the comparator's heatmaps).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pack(bits: np.ndarray) -> np.ndarray:
    """``(n, nbits)`` bools → ``(n, ceil(nbits / 8))`` uint8 rows."""
    return np.packbits(np.asarray(bits, dtype=bool), axis=-1)


def hamming_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances of packed rows ``a[i]`` and ``b[i]`` (broadcasting like numpy)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int64)


def hamming_matrix(queries: np.ndarray, references: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``(len(queries), len(references))`` Hamming distances of packed rows."""
    out = np.empty((len(queries), len(references)), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk, None, :]
        out[start : start + chunk] = hamming_rows(block, references[None, :, :])
    return out


def nearest_variant_matrix(variants: Sequence[Sequence[bytes]], references: np.ndarray) -> np.ndarray:
    """``(len(variants), len(references))`` Hamming distances of each query to each packed
    reference row, the nearest of the query's variants (``variants[i]``: query i's packed
    codes, at least one)."""
    best = None
    for v in range(max(len(codes) for codes in variants)):
        rows = np.stack([np.frombuffer(codes[min(v, len(codes) - 1)], dtype=np.uint8) for codes in variants])
        d = hamming_matrix(rows, references)
        best = d if best is None else np.minimum(best, d)
    return best


def pairwise_nhd(bits: np.ndarray) -> np.ndarray:
    """Normalised Hamming distances of all unordered pairs of rows of a bool matrix."""
    bits = np.asarray(bits, dtype=bool)
    return pairwise_hamming(pack(bits)) / bits.shape[1]


def pairwise_hamming(packed: np.ndarray) -> np.ndarray:
    """Hamming distances of all unordered pairs of packed rows (i < j, row-major)."""
    rows, cols = np.triu_indices(len(packed), 1)
    return hamming_rows(packed[rows], packed[cols])


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


def cell_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean cell maps; 1 when both are empty."""
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def heatmap_iou(heatmaps: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    """Mean over pairs of ``cell_iou`` between the cells of heat ≥ ``threshold`` and the
    true edited cells (``truth``: boolean, one map per pair)."""
    return float(np.mean([cell_iou(h >= threshold, t) for h, t in zip(heatmaps, truth)]))
