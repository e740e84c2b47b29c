"""Protocol metrics used for calibration."""

from __future__ import annotations

import numpy as np
import pytest

from robusthash.evaluation.metrics import pairwise_nhd, threshold_at_fpr


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
