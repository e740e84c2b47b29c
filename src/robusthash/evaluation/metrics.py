"""Metrics of the evaluation protocol; docs/protocol.md defines every pair and threshold.

Hashes are handled as packed bit matrices (one row per image, ``np.packbits`` of the
hash bits), so distances between thousands of pairs are a XOR and a popcount.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..measure import (  # noqa: F401 - the protocol's metrics include these primitives
    cell_iou,
    hamming_matrix,
    hamming_rows,
    heatmap_iou,
    pack,
    pairwise_hamming,
    pairwise_nhd,
    threshold_at_fpr,
)


@dataclass(frozen=True)
class Identification:
    """Counts of one binary identification experiment at a threshold τ."""

    tp: int
    fn: int
    fp: int
    tn: int

    @property
    def f1(self) -> float:
        """CMAA's F1 = TP / (TP + ½(FP + FN)); 0 when there is nothing to find or flag."""
        denominator = self.tp + 0.5 * (self.fp + self.fn)
        return self.tp / denominator if denominator else 0.0

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0


def identification(positive: np.ndarray, negative: np.ndarray, tau: float) -> Identification:
    """Decide "same content" when distance ≤ ``tau`` for positive and negative pairs."""
    positive, negative = np.asarray(positive), np.asarray(negative)
    tp = int((positive <= tau).sum())
    fp = int((negative <= tau).sum())
    return Identification(tp=tp, fn=len(positive) - tp, fp=fp, tn=len(negative) - fp)


def rank1_rate(distances: np.ndarray, truth: np.ndarray) -> float:
    """Share of queries whose nearest reference is the right one.

    ``distances[q, r]`` between query ``q`` and reference ``r``; ``truth[q]`` the right
    reference. A tie at the minimum between the right reference and k−1 others counts
    1/k (the expected score of breaking ties at random), so short hashes with many
    equal distances are not flattered.
    """
    distances = np.asarray(distances)
    if distances.size == 0:
        return float("nan")
    nearest = distances.min(axis=1, keepdims=True)
    at_min = distances == nearest
    right = at_min[np.arange(len(truth)), truth]
    return float(np.where(right, 1.0 / at_min.sum(axis=1), 0.0).mean())


def det_curve(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detection error trade-off: for every distinct threshold τ (ascending), the false
    positive rate P(negative ≤ τ) and the false negative rate P(positive > τ)."""
    positive = np.sort(np.asarray(positive, dtype=np.float64))
    negative = np.sort(np.asarray(negative, dtype=np.float64))
    if positive.size == 0 or negative.size == 0:
        raise ValueError("a DET curve needs both positive and negative pairs")
    thresholds = np.unique(np.concatenate([positive, negative]))
    fpr = np.searchsorted(negative, thresholds, side="right") / negative.size
    fnr = 1.0 - np.searchsorted(positive, thresholds, side="right") / positive.size
    return thresholds, fpr, fnr


def det_from_histograms(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The DET curve at every integer distance t from histograms (``histogram[t]`` =
    pairs at distance t): P(negative ≤ t) and P(positive > t). Pools millions of pairs
    in the memory of two histograms."""
    return np.cumsum(negative) / negative.sum(), 1.0 - np.cumsum(positive) / positive.sum()


def fnr_at_fpr(positive: np.ndarray, negative: np.ndarray, fpr: float) -> float:
    """The false negative rate at the largest threshold whose FPR stays ≤ ``fpr``."""
    _, rates, misses = det_curve(positive, negative)
    allowed = rates <= fpr
    return float(misses[allowed].min()) if allowed.any() else 1.0


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision–recall curve as scikit-learn's ``average_precision_score``
    computes it: Σ (Rₙ − Rₙ₋₁) Pₙ over the distinct score thresholds, highest first (tied
    scores enter together). The comparator report's AP (ARIA Table 4)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if not positive.any():
        raise ValueError("average precision needs at least one positive")
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    hits = np.cumsum(positive)[last_of_tie]
    precision = hits / (last_of_tie + 1)
    recall = hits / positive.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
