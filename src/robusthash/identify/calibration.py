"""How rare each piece of evidence is between two distinct images: the engine's scores as
false-match rates per reference.

For each signal (a method's distance, the verification's inliers) a :class:`Tail` holds
P(a distinct pair's statistic is at least this extreme), measured on distinct pairs
(shipped: the corpus train split, ``python -m robusthash.evaluation.identify_calibration``;
``robusthash db calibrate --engine``: the user's collection): empirical where enough
pairs were that extreme, and beyond, a straight line in log10 p fitted to the most
extreme part of the measured tail, extended.

The signals are joined by a **joint tail**: a candidate's evidence is the sum of
−log10 of each signal's rate (:func:`joint_evidence`), and how often distinct pairs
reach that sum is measured on the same pairs, so the signals' dependence is measured,
not assumed. The engine names a reference when that joint rate is at most the target
(10⁻⁶ false matches per reference per query by default). Where no joint tail covers
its signals, it falls back to the union bound (:func:`bonferroni`).

Verification is too slow to run on every distinct pair of a large collection, so the
pairs verified can be a stratified sample (:func:`stratified_pairs`): every reference
among any method's nearest to a query (the candidates, where evidence is strongest),
and a random share of the rest, each standing for its share.

**Strata of queries.** How rare a piece of evidence is between distinct images depends
on the query: star fields and sky art are near each other in every hash and share star
patterns, natural photos are not. A calibration can hold, besides its tails for every
query, the tails of a :class:`Stratum` of queries measured on that stratum's queries
alone (:meth:`Calibration.for_query`); a query outside every stratum is judged by the
tails of every query. The stratum is measured on the query itself (:func:`dark_share`),
never on its source.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..db.ingest import INFORMATION_DECODE
from ..hashing.base import DecodedImage
from ..runtime import shipped_model

VERIFICATION = "verification"
JOINT = "joint:"  # a joint tail's signal: JOINT + its signals' names joined by "+"
JOINT_VERSIONS = "|"  # ...and its version: theirs joined by this (PDQ's own has a "+")
SHIPPED = "identify-calibration.json"
FORMAT = 2  # format 1: no strata
# A query's darkness (dark_share): the share of a 64 x 64 grey copy of its 128 px decoding
# darker than 40 of 255. On the 1,300 queries of the train calibration, astronomy and
# sky art have a median of 0.92 and 0.76, landscapes 0.22, drawings 0.31.
DARK_LEVEL = 40
DARK_SIDE = 64
# The strata a calibration measures apart (name, dark_below): queries less than 60% dark,
# mostly natural photos and drawings, whose distinct pairs have far lighter tails than
# the dark-sky queries that make 66% of the train split's (docs/identify.md).
STRATA = (("light", 0.6),)
# A stratum is measured only with at least this many of its queries.
LEAST_STRATUM_QUERIES = 10
# Below this many pairs at least as extreme, the empirical rate is noise; the fitted
# line takes over.
MIN_TAIL_PAIRS = 20


@dataclass(frozen=True)
class Tail:
    """P(statistic at least as extreme as x | distinct images). ``smaller_is_extreme`` for
    distances; else larger is (inliers). ``knots``: (x, p) of the empirical function,
    from common to extreme; beyond the last knot ``log10 p = intercept + slope * x``, but
    never below ``sparse``: the share of pairs measured at least as extreme as x where
    too few were for a knot (a line fitted to the bulk must not wish away the few
    distinct pairs seen far out)."""

    signal: str
    version: str
    smaller_is_extreme: bool
    knots: tuple[tuple[float, float], ...]
    slope: float
    intercept: float
    pairs: int
    sparse: tuple[tuple[float, float], ...] = ()  # (x, share at least as extreme), towards the extreme

    def p(self, x: float) -> float:
        """The rate; never above 1, never below the fitted line's value."""
        if self._beyond_knots(x):
            line = 10 ** (self.intercept + self.slope * x)
            seen = [share for value, share in self.sparse if (value <= x if self.smaller_is_extreme else value >= x)]
            return min(1.0, max(line, max(seen, default=0.0)))
        # Interpolated in log10 p between knots (a step function would jump by factors).
        xs, log_ps = self._interpolated
        return min(1.0, 10 ** float(np.interp(x, xs, log_ps)))

    def _beyond_knots(self, x: float) -> bool:
        """Whether ``x`` is more extreme than the last knot (or there are none)."""
        if not self.knots:
            return True
        last = self.knots[-1][0]
        return x < last if self.smaller_is_extreme else x > last

    @cached_property
    def _interpolated(self) -> tuple[np.ndarray, np.ndarray]:
        """The knots' x (increasing) and log10 p, made once: the engine asks every
        candidate's rate of each signal."""
        order = slice(None, None, -1) if self.smaller_is_extreme else slice(None)
        return (np.array([k[0] for k in self.knots])[order],
                np.log10(np.array([k[1] for k in self.knots]))[order])

    def bound(self, x: float) -> float:
        """:meth:`p`, but where it rests on the few most extreme pairs measured (beyond the
        last knot), never below their count's one-sided 95% Poisson upper bound: one
        distinct pair seen at least as extreme as ``x`` among a million is no evidence
        that such pairs are rarer than about five in a million. A decision at a rate the
        sample cannot resolve reads this; beyond every pair measured, the fitted line
        alone speaks, as in :meth:`p`."""
        rate = self.p(x)
        if not self._beyond_knots(x):
            return rate  # within the knots: at least MIN_TAIL_PAIRS pairs measured there
        beyond = [share for value, share in self.sparse if (value <= x if self.smaller_is_extreme else value >= x)]
        if not beyond:
            return rate
        # The Poisson bound is chi2.ppf(0.95, 2 (count + 1)) / 2, which scipy.stats
        # computes as this: importing scipy.stats cost a query 0.5-1 s the first time.
        from scipy.special import gammaincinv

        count = len(beyond)  # distinct values: a tie counts once, which only raises the bound
        bounded = max(beyond) * float(gammaincinv(count + 1, 0.95)) / count
        # ...and never above the last knot's rate, measured on more pairs than these.
        return min(1.0, self.knots[-1][1] if self.knots else 1.0, max(rate, bounded))

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "version": self.version, "smaller_is_extreme": self.smaller_is_extreme,
                "knots": [list(k) for k in self.knots], "slope": self.slope, "intercept": self.intercept,
                "pairs": self.pairs, "sparse": [list(k) for k in self.sparse]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Tail":
        return cls(d["signal"], d["version"], bool(d["smaller_is_extreme"]),
                   tuple((float(x), float(p)) for x, p in d["knots"]), float(d["slope"]), float(d["intercept"]),
                   int(d["pairs"]), tuple((float(x), float(p)) for x, p in d.get("sparse", ())))


def fit_tail(signal: str, version: str, values: np.ndarray, smaller_is_extreme: bool, knots: int = 64,
             fit_from: float = 1e-2, weights: np.ndarray | None = None) -> Tail:
    """The tail of ``values`` (one per distinct pair): empirical knots down to
    ``MIN_TAIL_PAIRS`` pairs, and a line in log10 p fitted to the knots rarer than
    ``fit_from``, forced through the last one and never flatter than zero.

    ``weights``: how many distinct pairs each value stands for, where the pairs are a
    stratified sample (every near pair measured, a random share of the rest); the rates
    are shares of the total weight, while knots still need ``MIN_TAIL_PAIRS`` measured
    pairs behind them."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    key = values if smaller_is_extreme else -values  # ascending key: the extreme end first
    order = np.argsort(key, kind="stable")
    values, key, weights = values[order], key[order], weights[order]
    n = len(values)
    if n < 10 * MIN_TAIL_PAIRS:
        raise ValueError(f"{signal}: {n} distinct pairs are too few to measure a tail")
    total = float(weights.sum())
    # Weight at least as extreme as each value, ties included: a run of equal values
    # counts as a whole.
    cumulative = np.cumsum(weights)
    last_of_run = np.searchsorted(key, key, side="right") - 1
    # p(x) at x taken at quantile steps that get finer towards the extreme end
    # (log-spaced measured-pair counts).
    counts = np.unique(np.geomspace(MIN_TAIL_PAIRS, n, knots).astype(int))[::-1]
    points = {}
    for count in counts:
        x = float(values[count - 1])
        points[x] = float(cumulative[last_of_run[count - 1]]) / total
    ordered = sorted(points.items(), key=lambda k: -k[0] if smaller_is_extreme else k[0])
    xs = np.array([x for x, _ in ordered])
    logs = np.log10(np.array([p for _, p in ordered]))
    rare = logs <= math.log10(fit_from)
    if rare.sum() >= 2 and np.ptp(xs[rare]) > 0:
        slope = float(np.polyfit(xs[rare], logs[rare], 1)[0])
    else:
        slope = float(np.polyfit(xs[-3:], logs[-3:], 1)[0]) if len(xs) >= 3 and np.ptp(xs[-3:]) > 0 else 0.0
    # Towards the extreme end p must fall: a distance's line rises with x, an inlier
    # count's falls. A flat or wrong-signed fit would claim rarity it has not measured.
    slope = max(slope, 0.0) if smaller_is_extreme else min(slope, 0.0)
    intercept = float(logs[-1] - slope * xs[-1])
    # Every distinct value measured beyond the last knot, with its share: the floor p()
    # keeps (the first MIN_TAIL_PAIRS - 1 pairs of the sorted sample, the most extreme).
    beyond = values[: MIN_TAIL_PAIRS - 1]
    sparse = sorted({float(v): float(cumulative[last_of_run[i]]) / total for i, v in enumerate(beyond)
                     if (v < xs[-1] if smaller_is_extreme else v > xs[-1])}.items(),
                    key=lambda k: -k[0] if smaller_is_extreme else k[0])
    return Tail(signal, version, smaller_is_extreme, tuple(ordered), slope, intercept, n, tuple(sparse))


def query_darkness(decoded: DecodedImage) -> float:
    """:func:`dark_share` of a query, on the decoding it is measured on (wherever a
    query's stratum is decided: the engine, the shipped and the collection's calibration)."""
    return dark_share(decoded.decoded(INFORMATION_DECODE))


def dark_share(image: Image.Image) -> float:
    """How much of ``image`` (a query's decoding at 128 px, ``db.ingest.INFORMATION_DECODE``)
    is dark: the share of a 64 x 64 grey copy darker than ``DARK_LEVEL``. What a query's
    stratum is measured by (:class:`Stratum`)."""
    grey = image.convert("L").resize((DARK_SIDE, DARK_SIDE), Image.Resampling.BILINEAR)
    return float((np.asarray(grey) < DARK_LEVEL).mean())


@dataclass(frozen=True)
class Stratum:
    """The queries whose :func:`dark_share` is below ``dark_below``, and the tails measured
    on them alone (a :class:`Calibration` without strata of its own)."""

    name: str
    dark_below: float
    calibration: "Calibration"

    def holds(self, dark: float) -> bool:
        return dark < self.dark_below

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dark_below": self.dark_below, "provenance": self.calibration.provenance,
                "tails": [t.to_dict() for t in self.calibration.tails]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stratum":
        return cls(str(d["name"]), float(d["dark_below"]),
                   Calibration(tuple(Tail.from_dict(t) for t in d["tails"]), d.get("provenance", {})))


@dataclass(frozen=True)
class Calibration:
    """The tails of every calibrated signal for every query, how they were made, and the
    tails of strata of queries measured on their own."""

    tails: tuple[Tail, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    strata: tuple[Stratum, ...] = ()

    def stratum_for(self, dark: float | None) -> Stratum | None:
        """The stratum a query of darkness ``dark`` (:func:`dark_share`; None: unknown)
        belongs to; None: it is judged by the tails of every query."""
        return None if dark is None else next((s for s in self.strata if s.holds(dark)), None)

    def for_query(self, dark: float | None) -> "Calibration":
        """The tails a query of darkness ``dark`` is judged by: its stratum's, else those of every query."""
        stratum = self.stratum_for(dark)
        return self if stratum is None else stratum.calibration

    def tail(self, signal: str, version: str) -> Tail | None:
        return next((t for t in self.tails if t.signal == signal and t.version == version), None)

    def joint(self, signals: dict[str, str]) -> Tail | None:
        """The tail of :func:`joint_evidence` over ``signals`` (name → version): the one
        calibrated for exactly these, else for the fewest more (more signals can only add
        evidence, so their tail is the more cautious), else None."""
        wanted = frozenset(signals.items())
        if wanted not in self._joint_for:
            fitting = [(len(covered), t) for covered, t in self._joint_tails if wanted <= covered]
            self._joint_for[wanted] = min(fitting, key=lambda f: f[0])[1] if fitting else None
        return self._joint_for[wanted]

    @cached_property
    def _joint_for(self) -> dict[frozenset[tuple[str, str]], Tail | None]:
        """:meth:`joint`'s answers, by the signals asked for."""
        return {}

    @cached_property
    def _joint_tails(self) -> list[tuple[frozenset[tuple[str, str]], Tail]]:
        """Each joint tail with its (signal, version) pairs, read from its name once (the
        engine looks one up for every candidate)."""
        found = []
        for t in self.tails:
            if t.signal.startswith(JOINT):
                names, versions = t.signal[len(JOINT):].split("+"), t.version.split(JOINT_VERSIONS)
                if len(names) == len(versions):
                    found.append((frozenset(zip(names, versions)), t))
        return found

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "provenance": self.provenance, "tails": [t.to_dict() for t in self.tails],
                           "strata": [s.to_dict() for s in self.strata]}, indent=1) + "\n"

    @classmethod
    def read(cls, path: Path) -> "Calibration":
        return cls.parse(Path(path).read_text(), str(path))

    @classmethod
    def parse(cls, text: str, name: str = "calibration") -> "Calibration":
        """:meth:`to_json`'s form back (or format 1's, without strata); ValueError naming
        ``name`` on anything else."""
        try:
            data = json.loads(text)
            if data.get("format") not in (1, FORMAT):
                raise ValueError("format")
            return cls(tuple(Tail.from_dict(t) for t in data["tails"]), data.get("provenance", {}),
                       tuple(Stratum.from_dict(s) for s in data.get("strata", ())))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(f"{name}: not a robusthash identification calibration (format 1 or {FORMAT})") from None


@lru_cache(maxsize=1)
def shipped_calibration() -> Calibration | None:
    """The calibration shipped in the package (made on the corpus train split), or None."""
    path = shipped_model(SHIPPED)
    return Calibration.read(path) if path.is_file() else None


def joint_signal(signals: dict[str, str]) -> tuple[str, str]:
    """The name and version of the joint tail over ``signals`` (name → version)."""
    names = sorted(signals)
    return JOINT + "+".join(names), JOINT_VERSIONS.join(signals[n] for n in names)


def joint_evidence(rates: Sequence[float]) -> float:
    """Every signal's evidence together: the sum of −log10 of each one's rate between
    distinct images. How often distinct pairs reach a sum this large is measured (a joint
    tail), not assumed: the signals need not be independent."""
    return float(sum(-math.log10(max(r, 1e-300)) for r in rates))


def bonferroni(rates: Sequence[float]) -> float:
    """The false-match rate of the strongest of ``rates``' signals, whichever it is: the
    smallest times their number (at most 1)."""
    return min(1.0, min(rates) * len(rates)) if rates else 1.0


def stratified_pairs(distances: dict[str, np.ndarray], distinct: np.ndarray, nearest: int, sample: int,
                     seed: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The distinct (query, reference) pairs to verify, and how many distinct pairs each
    stands for: per query (a row of ``distinct`` and of each method's ``distances``),
    every reference among any method's ``nearest`` (weight 1) and ``sample`` random ones
    of the rest (each standing for its share of the rest).

    A query's random ones are the first ``sample`` of its distinct references in one
    order drawn for that query alone (``seed``, the row), less those among the nearest.
    So a change to one method moves only the pairs its nearest bring in or let go: the
    random stratum, where a few far pairs stand for many (distinct star fields with 37
    inliers, 16 pairs each), is not drawn again by chance."""
    pairs, weights = [], []
    for row in range(distinct.shape[0]):
        others = np.flatnonzero(distinct[row])
        near: set[int] = set()
        for d in distances.values():
            near.update(others[np.argsort(d[row, others], kind="stable")[:nearest]].tolist())
        drawn = np.random.default_rng([seed, row]).permutation(others)[:sample]
        picks = drawn[~np.isin(drawn, list(near))]  # a uniform draw from the rest
        rest = len(others) - len(near)
        pairs += [(row, j) for j in sorted(near)] + [(row, int(j)) for j in sorted(picks)]
        weights += [1.0] * len(near) + [rest / max(1, len(picks))] * len(picks)
    return pairs, np.array(weights)


@dataclass(frozen=True)
class Measured:
    """A calibration and the per-pair statistics it was fitted on (for reports)."""

    calibration: Calibration
    pairs: list[tuple[int, int]]
    weights: np.ndarray
    inliers: np.ndarray


def calibrate(distances: dict[str, np.ndarray], distinct: np.ndarray, versions: dict[str, str],
              verify: Callable[[list[tuple[int, int]]], np.ndarray], check_version: str, nearest: int = 10,
              sample: int = 40, seed: int = 0, provenance: dict[str, Any] | None = None) -> Measured:
    """Fit every tail the engine uses from queries against references.

    ``distances``: per method, the normalised distance of every query (row) to every
    reference (column), the nearest of the query's variants; ``distinct``: which pairs
    are of distinct images; ``versions``: each method's version; ``verify``: the
    verification's inliers for a list of (row, column) pairs. Each method's tail is
    measured on every distinct pair; verification's, and the joint tails of verification
    with every subset of the methods, on :func:`stratified_pairs`."""
    import itertools

    pairs, weights = stratified_pairs(distances, distinct, nearest, sample, seed)
    if len(pairs) < 10 * MIN_TAIL_PAIRS:
        raise ValueError(f"{len(pairs)} distinct pairs to verify are too few to measure a tail "
                         f"(at least {10 * MIN_TAIL_PAIRS}: more images)")
    inliers = np.asarray(verify(pairs), dtype=np.float64)
    tails = [fit_tail(VERIFICATION, check_version, inliers, smaller_is_extreme=False, weights=weights)]
    for name, d in distances.items():
        tails.append(fit_tail(name, versions[name], d[distinct], smaller_is_extreme=True))
    rows = np.array([p[0] for p in pairs], dtype=np.int64)
    cols = np.array([p[1] for p in pairs], dtype=np.int64)
    rates = {VERIFICATION: np.array([tails[0].p(x) for x in inliers])}
    for tail in tails[1:]:
        rates[tail.signal] = np.array([tail.p(x) for x in distances[tail.signal][rows, cols]])
    signal_versions = {VERIFICATION: check_version, **versions}
    # A joint tail for verification with each subset of the methods: a database holds any
    # of them, and a tail over signals it lacks would be needlessly cautious.
    for size in range(1, len(distances) + 1):
        for subset in itertools.combinations(sorted(distances), size):
            signals = (VERIFICATION, *subset)
            evidence = -np.log10(np.maximum(np.stack([rates[s] for s in signals]), 1e-300)).sum(axis=0)
            name, version = joint_signal({s: signal_versions[s] for s in signals})
            tails.append(fit_tail(name, version, evidence, smaller_is_extreme=False, weights=weights))
    provenance = dict(provenance or {}) | {
        "verified_pairs": len(pairs), "verified_pairs_stand_for": round(float(weights.sum())),
        "distinct_pairs": int(distinct.sum()), "nearest": nearest, "sample": sample}
    return Measured(Calibration(tuple(tails), provenance), pairs, weights, inliers)


def calibrate_by_stratum(distances: dict[str, np.ndarray], distinct: np.ndarray, versions: dict[str, str],
                         verify: Callable[[list[tuple[int, int]]], np.ndarray], check_version: str,
                         dark: np.ndarray, nearest: int = 10, sample: int = 40, seed: int = 0,
                         every: tuple[np.ndarray, np.ndarray] | None = None,
                         strata: Sequence[tuple[str, float]] = STRATA,
                         provenance: dict[str, Any] | None = None) -> Measured:
    """:func:`calibrate` for every query, and for each of ``strata`` (name, dark_below)
    apart on its own queries (the rows whose ``dark``, :func:`dark_share`, is below
    ``dark_below``) against every reference, where it has ``LEAST_STRATUM_QUERIES`` and
    enough distinct pairs to measure a tail (else its queries keep every query's tails).
    ``every``: the rows and columns the tails of every query are measured on (default:
    all). A pair is verified once, whichever fits need it. The Measured's pairs are those
    of every query."""
    verified: dict[tuple[int, int], float] = {}

    def on(rows: np.ndarray, cols: np.ndarray) -> Callable[[list[tuple[int, int]]], np.ndarray]:
        def inliers(pairs: list[tuple[int, int]]) -> np.ndarray:
            wanted = [(int(rows[r]), int(cols[c])) for r, c in pairs]
            new = [p for p in dict.fromkeys(wanted) if p not in verified]
            if new:
                verified.update(zip(new, np.asarray(verify(new), dtype=np.float64).tolist()))
            return np.array([verified[p] for p in wanted], dtype=np.float64)
        return inliers

    def fit(rows: np.ndarray, cols: np.ndarray, about: dict[str, Any]) -> Measured:
        sub = {m: d[np.ix_(rows, cols)] for m, d in distances.items()}
        return calibrate(sub, distinct[np.ix_(rows, cols)], versions, on(rows, cols), check_version, nearest,
                         sample, seed, about)

    dark = np.asarray(dark, dtype=np.float64)
    everything = (np.arange(distinct.shape[0]), np.arange(distinct.shape[1]))
    rows, cols = every if every is not None else everything
    measured = fit(np.asarray(rows), np.asarray(cols), dict(provenance or {}))
    found = []
    for name, below in strata:
        members = np.flatnonzero(dark < below)
        if len(members) < LEAST_STRATUM_QUERIES:
            continue
        try:
            own = fit(members, everything[1], {"stratum": name, "dark_below": below, "queries": len(members),
                                               "references": len(everything[1])})
        except ValueError:  # too few distinct pairs: its queries keep the tails of every query
            continue
        found.append(Stratum(name, below, own.calibration))
    calibration = replace(measured.calibration, strata=tuple(found))
    return replace(measured, calibration=calibration)


def resolution(tail: Tail) -> float:
    """The rarest rate ``tail`` measured; rarer ones rest on its fitted line."""
    return tail.knots[-1][1] if tail.knots else 1.0
