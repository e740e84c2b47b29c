"""How rare each piece of evidence is between two distinct images: the engine's scores as
false-match rates per reference.

For each signal (a method's distance, the verification's inliers) a :class:`Tail` holds
P(a distinct pair's statistic is at least this extreme), measured on distinct pairs of
the train split (``python -m robusthash.evaluation.identify_calibration``): empirical
where enough pairs were that extreme, and beyond, a straight line in log10 p fitted to
the most extreme part of the measured tail, extended. The engine asks, per candidate,
how likely its strongest signal would be between distinct images, times the number of
signals it looked at (a union bound: it holds however the signals depend on each
other), and names a reference when that rate is at most the target (10⁻⁶ false matches
per reference per query by default).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..runtime import shipped_model

VERIFICATION = "verification"
SHIPPED = "identify-calibration.json"
# Below this many pairs at least as extreme, the empirical rate is noise; the fitted
# line takes over.
MIN_TAIL_PAIRS = 20


@dataclass(frozen=True)
class Tail:
    """P(statistic at least as extreme as x | distinct images). ``smaller_is_extreme`` for
    distances; else larger is (inliers). ``knots``: (x, p) of the empirical function,
    from common to extreme; beyond the last knot ``log10 p = intercept + slope * x``."""

    signal: str
    version: str
    smaller_is_extreme: bool
    knots: tuple[tuple[float, float], ...]
    slope: float
    intercept: float
    pairs: int

    def p(self, x: float) -> float:
        """The rate; never above 1, never below the fitted line's value."""
        xs = [k[0] for k in self.knots]
        ps = [k[1] for k in self.knots]
        if not xs or (x < xs[-1] if self.smaller_is_extreme else x > xs[-1]):
            return min(1.0, 10 ** (self.intercept + self.slope * x))
        order = slice(None, None, -1) if self.smaller_is_extreme else slice(None)
        # Interpolated in log10 p between knots (a step function would jump by factors).
        value = float(np.interp(x, np.array(xs[order]), np.log10(np.array(ps[order]))))
        return min(1.0, 10 ** value)

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "version": self.version, "smaller_is_extreme": self.smaller_is_extreme,
                "knots": [list(k) for k in self.knots], "slope": self.slope, "intercept": self.intercept,
                "pairs": self.pairs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Tail":
        return cls(d["signal"], d["version"], bool(d["smaller_is_extreme"]),
                   tuple((float(x), float(p)) for x, p in d["knots"]), float(d["slope"]), float(d["intercept"]),
                   int(d["pairs"]))


def fit_tail(signal: str, version: str, values: np.ndarray, smaller_is_extreme: bool, knots: int = 64,
             fit_from: float = 1e-2) -> Tail:
    """The tail of ``values`` (one per distinct pair): empirical knots down to
    ``MIN_TAIL_PAIRS`` pairs, and a line in log10 p fitted to the knots rarer than
    ``fit_from``, forced through the last one and never flatter than zero."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    if not smaller_is_extreme:
        values = values[::-1]
    n = len(values)
    if n < 10 * MIN_TAIL_PAIRS:
        raise ValueError(f"{signal}: {n} distinct pairs are too few to measure a tail")
    # p(x) = share of pairs at least as extreme as x, for x taken at quantile steps that
    # get finer towards the extreme end (log-spaced counts).
    counts = np.unique(np.geomspace(MIN_TAIL_PAIRS, n, knots).astype(int))[::-1]
    points = {}
    for count in counts:
        x = float(values[count - 1])
        at_least = np.count_nonzero(values <= x) if smaller_is_extreme else np.count_nonzero(values >= x)
        points[x] = at_least / n  # ties: every pair at x counts, whichever count found it
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
    return Tail(signal, version, smaller_is_extreme, tuple(ordered), slope, intercept, n)


@dataclass(frozen=True)
class Calibration:
    """The tails of every calibrated signal, and how they were made."""

    tails: tuple[Tail, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def tail(self, signal: str, version: str) -> Tail | None:
        return next((t for t in self.tails if t.signal == signal and t.version == version), None)

    def to_json(self) -> str:
        return json.dumps({"format": 1, "provenance": self.provenance, "tails": [t.to_dict() for t in self.tails]},
                          indent=1) + "\n"

    @classmethod
    def read(cls, path: Path) -> "Calibration":
        data = json.loads(Path(path).read_text())
        if data.get("format") != 1:
            raise ValueError(f"{path}: not a robusthash identification calibration (format 1)")
        return cls(tuple(Tail.from_dict(t) for t in data["tails"]), data.get("provenance", {}))


@lru_cache(maxsize=1)
def shipped_calibration() -> Calibration | None:
    """The calibration shipped in the package (made on the corpus train split), or None."""
    path = shipped_model(SHIPPED)
    return Calibration.read(path) if path.is_file() else None


def bonferroni(rates: Sequence[float]) -> float:
    """The false-match rate of the strongest of ``rates``' signals, whichever it is: the
    smallest times their number (at most 1)."""
    return min(1.0, min(rates) * len(rates)) if rates else 1.0
