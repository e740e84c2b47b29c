"""The engine's calibration: tails of distinct-pair statistics, read back exactly, and
rates that fall towards the extreme end and stay conservative beyond the measured part."""

from __future__ import annotations

import numpy as np
import pytest

from robusthash.identify.calibration import Calibration, Tail, bonferroni, fit_tail, shipped_calibration


def test_a_geometric_tail_is_measured_then_extended():
    rng = np.random.default_rng(0)
    inliers = rng.geometric(0.3, 200_000) - 1  # P(X >= x) = 0.7 ** x
    tail = fit_tail("verification", "1", inliers, smaller_is_extreme=False)
    for x in (5, 10, 20):
        assert tail.p(x) == pytest.approx(0.7**x, rel=0.25)
    assert tail.p(40) == pytest.approx(0.7**40, rel=1.0)  # beyond the data: the fitted line
    rates = [tail.p(x) for x in range(0, 80)]
    assert all(a >= b for a, b in zip(rates, rates[1:])) and rates[0] == 1.0


def test_a_distance_tail_falls_towards_zero_and_never_claims_unmeasured_rarity():
    rng = np.random.default_rng(1)
    nhd = rng.binomial(256, 0.5, 300_000) / 256
    tail = fit_tail("forbild", "2", nhd, smaller_is_extreme=True)
    rates = [tail.p(x) for x in np.linspace(0, 0.6, 61)]
    assert all(a <= b for a, b in zip(rates, rates[1:]))
    assert tail.p(0.5) == pytest.approx(0.5, abs=0.05)
    # The binomial's true P(NHD <= 0.35) is about 1e-6; the line is never more optimistic.
    assert tail.p(0.35) >= 5e-7


def test_a_flat_sample_claims_nothing_beyond_it():
    tail = fit_tail("x", "1", np.zeros(1000), smaller_is_extreme=False)
    assert tail.p(0) == 1.0 and tail.p(100) == 1.0  # no pair ever exceeded 0: no slope to extend
    with pytest.raises(ValueError):
        fit_tail("x", "1", np.zeros(50), smaller_is_extreme=False)


def test_calibration_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    tails = (fit_tail("verification", "1", rng.geometric(0.4, 5000) - 1, False),
             fit_tail("pdq", "v", rng.random(5000), True))
    path = tmp_path / "cal.json"
    path.write_text(Calibration(tails, {"split": "train"}).to_json())
    back = Calibration.read(path)
    assert back.provenance == {"split": "train"}
    for a in tails:
        b = back.tail(a.signal, a.version)
        assert isinstance(b, Tail) and b.knots == a.knots and all(a.p(x) == b.p(x) for x in (0, 0.01, 3, 30))
    assert back.tail("pdq", "another version") is None


def test_the_union_bound():
    assert bonferroni([1e-7, 0.5, 1.0]) == pytest.approx(3e-7)
    assert bonferroni([]) == 1.0 and bonferroni([0.9, 0.8]) == 1.0


def test_the_shipped_calibration_covers_verification_and_the_default_methods():
    calibration = shipped_calibration()
    assert calibration is not None and calibration.provenance["split"] == "train"
    signals = {t.signal for t in calibration.tails}
    assert {"verification", "forbild", "pdq", "cmaa"} <= signals
