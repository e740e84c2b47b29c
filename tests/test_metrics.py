"""Protocol metrics used for calibration."""

from __future__ import annotations

import numpy as np
import pytest

from robusthash.evaluation.metrics import (
    det_curve,
    det_from_histograms,
    fnr_at_fpr,
    hamming_matrix,
    identification,
    pack,
    pairwise_nhd,
    rank1_rate,
    threshold_at_fpr,
)


def test_threshold_never_exceeds_the_false_positive_rate():
    rng = np.random.default_rng(0)
    distances = rng.integers(0, 65, size=5000) / 64  # short hash: many ties
    for fpr in (0.001, 0.01, 0.05, 0.2):
        tau = threshold_at_fpr(distances, fpr)
        assert (distances <= tau).mean() <= fpr
        # and it is the largest such threshold among observed values
        above = distances[distances > tau]
        assert (distances <= above.min()).mean() > fpr


def test_threshold_below_everything_when_no_false_positive_is_allowed():
    tau = threshold_at_fpr(np.array([0.3, 0.4, 0.5]), 0.01)
    assert tau < 0.3
    with pytest.raises(ValueError):
        threshold_at_fpr(np.array([]), 0.01)


def test_pairwise_nhd():
    bits = np.array([[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=bool)
    assert pairwise_nhd(bits).tolist() == [0.5, 1.0, 0.5]


def test_hamming_matrix_matches_a_plain_count():
    rng = np.random.default_rng(1)
    a, b = rng.random((7, 100)) > 0.5, rng.random((300, 100)) > 0.5
    plain = (a[:, None, :] != b[None, :, :]).sum(axis=2)
    assert (hamming_matrix(pack(a), pack(b), chunk=3) == plain).all()


def test_f1_from_counts():
    decided = identification(np.array([0.1, 0.2, 0.5]), np.array([0.05, 0.6, 0.7]), tau=0.3)
    assert (decided.tp, decided.fn, decided.fp, decided.tn) == (2, 1, 1, 2)
    assert decided.f1 == pytest.approx(2 / (2 + 0.5 * 2))
    assert identification(np.array([]), np.array([]), 0.5).f1 == 0.0


def test_rank1_counts_ties_as_a_fair_coin():
    distances = np.array([[0, 5, 5], [3, 3, 9], [4, 1, 2]])
    # query 0: unique nearest is right; query 1: tied with one other; query 2: wrong
    assert rank1_rate(distances, np.array([0, 1, 2])) == pytest.approx((1 + 0.5 + 0) / 3)


def test_det_curve_rates():
    thresholds, fpr, fnr = det_curve(np.array([1, 2, 3]), np.array([2, 4]))
    assert thresholds.tolist() == [1, 2, 3, 4]
    assert fpr.tolist() == [0, 0.5, 0.5, 1.0]
    assert fnr.tolist() == pytest.approx([2 / 3, 1 / 3, 0, 0])
    assert fnr_at_fpr(np.array([1, 2, 3]), np.array([2, 4]), 0.5) == 0.0
    # the same pairs as distance histograms (distances 0..4) give the same points
    fpr_h, fnr_h = det_from_histograms(np.bincount([1, 2, 3], minlength=5), np.bincount([2, 4], minlength=5))
    assert fpr_h[1:].tolist() == fpr.tolist()
    assert fnr_h[1:].tolist() == pytest.approx(fnr.tolist())
