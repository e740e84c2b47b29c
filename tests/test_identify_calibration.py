"""The engine's calibration: tails of distinct-pair statistics, read back exactly, and
rates that fall towards the extreme end and stay conservative beyond the measured part."""

from __future__ import annotations

import numpy as np
import pytest

from robusthash.compare.features import CHECK_VERSION
from robusthash.hashing import get_hasher
from robusthash.identify.calibration import (Calibration, Tail, bonferroni, fit_tail, joint_evidence, joint_signal,
                                             shipped_calibration)


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


def test_a_few_distinct_pairs_far_out_are_never_wished_away():
    rng = np.random.default_rng(5)
    inliers = np.concatenate([rng.geometric(0.5, 100_000) - 1, [24, 41]])  # two shared-content pairs
    tail = fit_tail("verification", "1", inliers, smaller_is_extreme=False)
    assert tail.p(30) == pytest.approx(1 / len(inliers)) and tail.p(20) == pytest.approx(2 / len(inliers))
    assert tail.p(42) < 1e-9  # beyond every pair measured: the fitted line
    back = Tail.from_dict(tail.to_dict())
    assert back.sparse == tail.sparse and back.p(30) == tail.p(30)


def test_a_rate_resting_on_a_few_pairs_far_out_is_bounded_by_their_count():
    rng = np.random.default_rng(5)
    inliers = np.concatenate([rng.geometric(0.5, 100_000) - 1, [24, 41]])  # two pairs far out
    tail = fit_tail("verification", "1", inliers, smaller_is_extreme=False)
    n = len(inliers)
    # One pair at least as extreme (41): its share 1/n, its 95% Poisson upper bound 4.74/n.
    assert tail.p(30) == pytest.approx(1 / n) and tail.bound(30) == pytest.approx(4.744 / n, rel=1e-3)
    assert tail.bound(20) == pytest.approx(2 / n * 6.296 / 2, rel=1e-3)  # two pairs: 6.30/n
    assert tail.bound(42) == tail.p(42) < 1e-9  # beyond every pair measured: the fitted line
    assert tail.bound(3) == tail.p(3)  # within the knots: measured, not bounded
    rates = [tail.bound(x) for x in range(0, 60)]
    assert all(a >= b * (1 - 1e-12) for a, b in zip(rates, rates[1:]))  # never rising (to rounding)


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


def test_a_stratified_sample_measures_the_tail_of_the_whole():
    # Every extreme pair measured, 2% of the rest standing for all of it: the same tail.
    rng = np.random.default_rng(3)
    values = rng.geometric(0.3, 400_000) - 1
    extreme = values >= 8
    sample = np.flatnonzero(~extreme)[rng.random((~extreme).sum()) < 0.02]
    kept = np.concatenate([np.flatnonzero(extreme), sample])
    weights = np.concatenate([np.ones(extreme.sum()), np.full(len(sample), (~extreme).sum() / len(sample))])
    whole = fit_tail("verification", "1", values, smaller_is_extreme=False)
    stratified = fit_tail("verification", "1", values[kept], smaller_is_extreme=False, weights=weights)
    assert stratified.pairs == len(kept) < len(values) // 10
    for x in (2, 8, 15, 25):
        assert stratified.p(x) == pytest.approx(whole.p(x), rel=0.2)
    unweighted = fit_tail("verification", "1", values[kept], smaller_is_extreme=False)
    assert unweighted.p(15) > 10 * whole.p(15)  # the sample alone would overstate the tail tenfold


def test_a_joint_tail_is_found_for_its_signals_or_a_cautious_superset():
    rng = np.random.default_rng(4)
    fitted = {}
    for signals in ({"verification": "1/2", "cmaa": "c"}, {"verification": "1/2", "cmaa": "c", "pdq": "p"}):
        name, version = joint_signal(signals)
        fitted[len(signals)] = fit_tail(name, version, rng.exponential(1, 5000) * len(signals), False)
    calibration = Calibration(tuple(fitted.values()))
    assert calibration.joint({"cmaa": "c", "verification": "1/2"}) is fitted[2]
    assert calibration.joint({"pdq": "p", "verification": "1/2"}) is fitted[3]  # only the larger set has pdq
    assert calibration.joint({"pdq": "p2", "verification": "1/2"}) is None  # another version of pdq
    assert calibration.joint({"forbild": "f"}) is None
    assert joint_evidence([1e-3, 0.1, 1.0]) == pytest.approx(4.0)


def test_the_shipped_calibration_covers_verification_and_the_default_methods():
    calibration = shipped_calibration()
    assert calibration is not None and calibration.provenance["split"] == "train"
    signals = {t.signal for t in calibration.tails}
    assert {"verification", "forbild", "pdq", "cmaa"} <= signals
    defaults = {"verification": CHECK_VERSION, "forbild": get_hasher("forbild").version,
                "pdq": get_hasher("pdq").version, "cmaa": get_hasher("cmaa").version}
    assert calibration.tail("verification", CHECK_VERSION) is not None
    joint = calibration.joint(defaults)
    assert joint is not None and joint.signal == joint_signal(defaults)[0]


def test_the_random_stratum_stays_when_a_methods_nearest_change():
    from robusthash.identify.calibration import stratified_pairs

    rng = np.random.default_rng(5)
    distinct = rng.random((30, 200)) > 0.05
    first = {"pdq": rng.random((30, 200)), "cmaa": rng.random((30, 200))}
    second = {"pdq": first["pdq"], "cmaa": rng.random((30, 200))}  # another cmaa
    (a, wa), (b, wb) = (stratified_pairs(d, distinct, 5, 20, seed=0) for d in (first, second))
    near = {name: {(r, j) for r in range(30) for j in np.flatnonzero(distinct[r])[
        np.argsort(d[r, distinct[r]], kind="stable")[:5]]} for name, d in {**first, "cmaa2": second["cmaa"]}.items()}
    random_a = {p for p, w in zip(a, wa) if w > 1}
    random_b = {p for p, w in zip(b, wb) if w > 1}
    # A random pair of the first draw is drawn again unless the new cmaa brought it in as a nearest,
    # and only pairs the old cmaa had brought in are new to the second.
    assert random_a - random_b <= near["cmaa2"] and random_b - random_a <= near["cmaa"]
    assert len(random_a & random_b) > 0.8 * len(random_a)
    assert all(distinct[r, j] for r, j in a) and len(set(a)) == len(a)
    # Each query's weights stand for all its distinct pairs.
    for r in range(30):
        assert sum(w for (q, _), w in zip(a, wa) if q == r) == pytest.approx(distinct[r].sum())


def _strata_data(seed: int = 6, queries: int = 40, references: int = 300):
    """Distances and inliers of synthetic queries: the first half dark (near each other in
    the hash, sharing inliers), the second half light (far apart, few inliers)."""
    rng = np.random.default_rng(seed)
    dark = np.r_[np.full(queries // 2, 0.9), np.full(queries - queries // 2, 0.2)]
    heavy = dark[:, None] >= 0.6
    distances = {"pdq": np.where(heavy, rng.uniform(0.05, 0.5, (queries, references)),
                                 rng.uniform(0.3, 0.6, (queries, references)))}
    inliers = np.where(heavy, rng.geometric(0.15, (queries, references)), rng.geometric(0.6, (queries, references))) - 1
    distinct = np.ones((queries, references), dtype=bool)
    distinct[np.arange(queries), np.arange(queries)] = False
    return distances, distinct, inliers.astype(float), dark


def test_a_stratum_of_queries_gets_tails_of_its_own_and_each_pair_is_verified_once():
    from robusthash.identify.calibration import calibrate_by_stratum

    distances, distinct, inliers, dark = _strata_data()
    asked: list[tuple[int, int]] = []

    def verify(pairs):
        asked.extend(pairs)
        return np.array([inliers[r, c] for r, c in pairs])

    measured = calibrate_by_stratum(distances, distinct, {"pdq": "p"}, verify, "1", dark, nearest=5,
                                    sample=1000)
    calibration = measured.calibration
    assert len(asked) == len(set(asked)) == distinct.sum()  # every distinct pair, once, for both fits
    assert [s.name for s in calibration.strata] == ["light"]
    light = calibration.strata[0].calibration
    assert light.provenance["queries"] == 20 and calibration.provenance["distinct_pairs"] == distinct.sum()
    every, own = calibration.tail("verification", "1"), light.tail("verification", "1")
    assert own.p(8) < every.p(8) / 5  # the light queries' distinct pairs seldom share 8 inliers
    assert calibration.for_query(0.2) is light and calibration.for_query(0.9) is calibration
    assert calibration.for_query(None) is calibration
    assert calibration.stratum_for(0.2).name == "light" and calibration.stratum_for(0.9) is None
    back = Calibration.parse(calibration.to_json())
    assert back.strata[0].dark_below == 0.6 and back.for_query(0.2).tail("verification", "1").p(8) == own.p(8)
    # Too few queries in a stratum: its queries keep the tails of every query.
    five = np.where(np.arange(len(dark)) < 25, dark, 0.9)  # 5 light queries
    few = calibrate_by_stratum(distances, distinct, {"pdq": "p"}, verify, "1", five, nearest=5, sample=1000)
    assert few.calibration.strata == () and few.calibration.for_query(0.2) is few.calibration


def test_the_tails_of_every_query_can_be_measured_on_a_part_of_the_pairs():
    from robusthash.identify.calibration import calibrate_by_stratum

    distances, distinct, inliers, dark = _strata_data()
    every = (np.arange(20), np.arange(150))  # the dark queries against the first half of the references
    measured = calibrate_by_stratum(distances, distinct, {"pdq": "p"},
                                    lambda pairs: np.array([inliers[r, c] for r, c in pairs]), "1", dark,
                                    nearest=5, sample=1000, every=every)
    assert measured.calibration.provenance["distinct_pairs"] == distinct[:20, :150].sum()
    assert measured.calibration.strata[0].calibration.provenance["distinct_pairs"] == distinct[20:].sum()


def test_a_calibration_without_strata_of_format_1_is_still_read():
    rng = np.random.default_rng(2)
    tail = fit_tail("verification", "1", rng.geometric(0.4, 5000) - 1, False)
    import json

    text = json.dumps({"format": 1, "provenance": {"split": "train"}, "tails": [tail.to_dict()]})
    back = Calibration.parse(text)
    assert back.strata == () and back.for_query(0.1) is back
    with pytest.raises(ValueError, match="format 1 or 2"):
        Calibration.parse(json.dumps({"format": 3, "tails": []}))


def test_a_querys_darkness_is_measured_on_the_query():
    from PIL import Image

    from robusthash.identify.calibration import dark_share

    assert dark_share(Image.new("RGB", (128, 96), (10, 10, 20))) == 1.0
    assert dark_share(Image.new("RGB", (128, 96), (200, 180, 150))) == 0.0
    half = Image.new("RGB", (128, 128), (255, 255, 255))
    half.paste((0, 0, 0), (0, 0, 64, 128))
    assert dark_share(half) == pytest.approx(0.5, abs=0.02)
