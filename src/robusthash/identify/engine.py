"""The identification engine: candidates from every method, each verified against its
registered original, one verdict.

1. **Candidates.** Every method the database holds searches the query (with its
   variants: borders trimmed, PDQ's rotations and flips): every reference it matches,
   and its ``per_method`` nearest besides; and its ``per_part`` nearest to each half of
   the query (a montage's parts). Their union is the candidate list; its length depends
   on those numbers and the number of methods, not on the collection.
2. **Verification.** Each candidate's stored local features are checked against the
   query's (:func:`robusthash.compare.features.verify`: ORB, ratio test, one match per
   original point, a plausible PROSAC homography, the mirror image tried as well).
3. **Verdict.** Each signal's evidence for a candidate (the verification's inliers,
   each method's distance) is turned into how often distinct images show evidence that
   strong, and their sum of −log10 rates into how often distinct images show that much
   evidence together (:mod:`.calibration`: a joint tail, measured on the train split or
   on the collection itself). That is the candidate's false-match rate per reference,
   and the candidate is named when it is at most ``false_match_rate`` (10⁻⁶). Named
   candidates are one picture when their regions overlap and the query points that
   verified them coincide; two or more pictures are a montage. A query with too little
   information in it (flat, noise, tiny) is refused: it matches nothing.

A reference registered before local features were stored cannot be verified: only its
methods' distances count, and its evidence says so (``db add`` of its file again stores
its features).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..compare.features import (CHECK_VERSION, DEFAULT_FEATURES, KIND, VERSION, FeatureConfig, LocalFeatures,
                                Verification, verify)
from ..db.ingest import Examined
from ..db.reference import QueryResult, ReferenceDB
from ..db.store import ImageRecord
from ..io import ImageSource
from .calibration import VERIFICATION, Calibration, bonferroni, joint_evidence, shipped_calibration
from .collection import collection_calibration

MATCH, MONTAGE, NO_MATCH = "match", "montage", "no match"
AUTO = "auto"


@dataclass(frozen=True)
class IdentifyConfig:
    per_method: int = 10  # nearest references each method offers, besides those it matches
    # Nearest references each method offers for each half of the query (a montage's
    # parts); 0: halves are not searched.
    per_part: int = 3
    # A reference is named when its evidence would be at least this rare between distinct
    # images: expected false matches per reference per query (1 M references: ≤ 1).
    false_match_rate: float = 1e-6
    same_region: float = 0.5  # regions overlapping this much (of the smaller) are one picture
    features: FeatureConfig = DEFAULT_FEATURES
    # The tails rates are read from. AUTO: the collection's own (db calibrate --engine)
    # where it has one, else the shipped one; None: uncalibrated, nothing is named.
    calibration: Calibration | str | None = AUTO


@dataclass(frozen=True)
class Evidence:
    """Why a candidate was (or was not) identified: each method's distance and own
    decision, and the verification (None: the reference has no stored features)."""

    methods: dict[str, tuple[float, bool]]
    verification: Verification | None
    keypoints: tuple[int, int] | None = None  # the query's and the original's, where checked
    # Each calibrated signal's rate between distinct images at this evidence.
    rates: dict[str, float] = field(default_factory=dict)

    @property
    def matched_by(self) -> list[str]:
        return [m for m, (_, matched) in self.methods.items() if matched]

    def to_dict(self) -> dict[str, Any]:
        v = self.verification
        return {"methods": {m: {"distance": round(d, 4), "matched": ok} for m, (d, ok) in self.methods.items()},
                "verification": None if v is None else {
                    "inliers": v.inliers, "matches": v.matches, "flipped": v.flipped,
                    "original_share": round(v.original_share, 3),
                    "keypoints": list(self.keypoints) if self.keypoints else None},
                "false_match_rates": {k: float(f"{r:.3g}") for k, r in self.rates.items()}}


@dataclass(frozen=True)
class Identified:
    """One candidate: the registered image, its score (−log10 of its false-match rate per
    reference: 6 is 10⁻⁶), whether it is identified, why, and its region in the query
    (x0, y0, x1, y1), where verification found one."""

    image: ImageRecord
    score: float
    identified: bool
    reason: str
    region: tuple[int, int, int, int] | None
    evidence: Evidence

    def to_dict(self) -> dict[str, Any]:
        return {"image_id": self.image.id, "source": self.image.source, "metadata": self.image.metadata,
                "score": self.score, "identified": self.identified, "reason": self.reason,
                "region": list(self.region) if self.region else None, "evidence": self.evidence.to_dict()}


@dataclass(frozen=True)
class Verdict:
    """The answer for one query: ``verdict`` (``match``, ``montage`` or ``no match``),
    ``matches`` (the references it names, best first), every candidate checked, why the
    query was refused (if it was), and each method's own result (details)."""

    query: str
    verdict: str
    matches: list[Identified]
    candidates: list[Identified]
    refused: str | None = None
    results: list[QueryResult] = field(default_factory=list)

    def to_dict(self, details: bool = False) -> dict[str, Any]:
        record: dict[str, Any] = {"query": self.query, "verdict": self.verdict,
                                  "matches": [m.to_dict() for m in self.matches], "refused": self.refused}
        if details:
            record["candidates"] = [c.to_dict() for c in self.candidates]
            record["methods"] = [r.to_dict() for r in self.results]
        return record


class Identifier:
    """The engine over one :class:`~robusthash.db.ReferenceDB`."""

    def __init__(self, ref: ReferenceDB, config: IdentifyConfig = IdentifyConfig()):
        self.ref = ref
        self.config = config
        if config.calibration == AUTO:
            self.calibration = collection_calibration(ref) or shipped_calibration()
        else:
            self.calibration = config.calibration

    def identify(self, image: ImageSource, source: str | None = None, methods: Sequence[str] | None = None,
                 k: int = 5) -> Verdict:
        """Examine ``image`` (anything the loader takes) with every method (or ``methods``)
        and its local features, and give the verdict; each method's own result lists at
        least its ``k`` nearest. Raises ImageError for an unreadable input, ValueError
        naming a method that cannot be searched here."""
        names = list(methods or self.ref.methods)
        problems = [why for why in map(self.ref.unregistered, names) if why]
        if problems:
            raise ValueError("; ".join(problems))
        examined = self.ref.examine(image, names, features=self.config.features, parts=self.config.per_part > 0)
        name = source or (str(image) if isinstance(image, (str, Path)) else "<image>")
        return self.identify_examined(examined, name, names, k)

    def identify_examined(self, examined: Examined, source: str = "<image>", methods: Sequence[str] | None = None,
                          k: int = 5) -> Verdict:
        results = self.ref.query_examined(examined, methods, k=max(k, self.config.per_method), source=source)
        refused = self.ref.refusal(examined)
        by_image: dict[int, dict[str, tuple[float, bool]]] = {}
        records: dict[int, ImageRecord] = {}
        for result in results:
            for m in result.matches:
                by_image.setdefault(m.image.id, {})[result.method] = (m.distance, m.matched)
                records[m.image.id] = m.image
        if self.config.per_part:
            # A half's nearest are candidates only: their distances were not calibrated
            # (a half is no variant of the whole), so verification alone speaks for them.
            for method, values in examined.parts.items():
                if methods is not None and method not in methods:
                    continue
                for value in values:
                    found = self.ref.query_hash(value, k=self.config.per_part, source=source).matches
                    for m in sorted(found, key=lambda m: m.distance)[: self.config.per_part]:
                        by_image.setdefault(m.image.id, {})
                        records[m.image.id] = m.image
        stored = self.ref.store.features(by_image, KIND, VERSION) if by_image else {}
        versions = {r.method: examined.hashes[r.method].version for r in results}
        query_features = examined.local_features
        candidates = []
        for image_id, methods in by_image.items():
            verification = keypoints = None
            if image_id in stored and query_features is not None:
                original = LocalFeatures.from_bytes(stored[image_id])
                verification = verify(query_features[0], original, query_features[1], self.config.features)
                keypoints = (len(query_features[0]), len(original))
            candidates.append(self._judge(records[image_id], Evidence(methods, verification, keypoints), refused,
                                          versions))
        candidates.sort(key=lambda c: (not c.identified, -c.score, c.image.id))
        identified = [c for c in candidates if c.identified]
        side = max(query_features[0].size) if query_features is not None else 0
        return Verdict(source, _verdict(identified, self.config.same_region, side), identified, candidates, refused,
                       results)

    def _judge(self, image: ImageRecord, evidence: Evidence, refused: str | None,
               versions: dict[str, str]) -> Identified:
        """Each calibrated signal's rate between distinct images (:mod:`.calibration`);
        the joint tail's rate at their summed evidence (the union bound where no joint
        tail covers them) is the candidate's false-match rate; it is named when that is
        at most the target."""
        rates, signal_versions = self._rates(evidence, versions)
        joint = self.calibration.joint(signal_versions) if rates else None
        rate = joint.p(joint_evidence(list(rates.values()))) if joint is not None else bonferroni(list(rates.values()))
        v = evidence.verification
        identified = rate <= self.config.false_match_rate
        # The evidence named: every signal at least 10x rarer than chance, strongest first.
        telling = sorted((r, s) for s, r in rates.items() if r <= 0.1)
        if not rates:
            reason = "no calibrated signal to decide with"
        elif not telling:
            reason = "no signal stands out"
        else:
            reason = ", ".join(f"{v.inliers} inliers" + (" mirrored" if v.flipped else "") if s == VERIFICATION
                               else f"{s} NHD {evidence.methods[s][0]:.3f}" for _, s in telling)
        how = "joint " if joint is not None and len(telling) > 1 else ""
        reason = f"{'identified' if identified else 'not identified'}: {reason}, {how}false-match rate {rate:.1e} " \
                 f"{'≤' if identified else '>'} {self.config.false_match_rate:.0e} per reference"
        if v is None:
            reason += "; not verified: no local features stored for it (run db add on its file again)"
        if refused and identified:
            identified, reason = False, f"{reason}; not a match: the query {refused}"
        region = v.query_box if v is not None and v.accepted else None
        score = round(-math.log10(max(rate, 1e-300)), 2)
        return Identified(image, score, identified, reason, region, replace(evidence, rates=rates))

    def _rates(self, evidence: Evidence, versions: dict[str, str]) -> tuple[dict[str, float], dict[str, str]]:
        """Each calibrated signal's rate between distinct images, and the signals' versions."""
        calibration = self.calibration
        if calibration is None:
            return {}, {}
        rates, signals = {}, {}
        verification = calibration.tail(VERIFICATION, CHECK_VERSION)
        if verification is not None and evidence.verification is not None:
            rates[VERIFICATION] = verification.p(evidence.verification.inliers)
            signals[VERIFICATION] = CHECK_VERSION
        for method, version in versions.items():
            tail = calibration.tail(method, version)
            if tail is not None:  # a method that did not offer this candidate found it no nearer than its tail
                rates[method] = tail.p(evidence.methods[method][0]) if method in evidence.methods else 1.0
                signals[method] = version
        return rates, signals


def _verdict(identified: list[Identified], same_region: float, query_side: int) -> str:
    if not identified:
        return NO_MATCH
    pictures: list[Identified] = []
    for candidate in identified:
        if candidate.region is not None and \
                not any(_same_picture(candidate, p, same_region, query_side) for p in pictures):
            pictures.append(candidate)
    return MONTAGE if len(pictures) >= 2 else MATCH


def _same_picture(a: Identified, b: Identified, same_region: float, query_side: int, near: float = 0.03) -> bool:
    """Whether two identified references show one picture of the query (a photo and a
    registered crop of it) rather than two (a montage): their regions overlap, and the
    query points that verified the one lie among those that verified the other. An inset
    pasted into a host lies inside the host's region, but in a hole of its points: the
    inset covers what would have matched the host there. ``near``: of the query's longer
    side (``query_side`` pixels)."""
    if _overlap(a.region, b.region) < same_region:
        return False
    pa, pb = a.evidence.verification.query_points, b.evidence.verification.query_points
    if pa is None or pb is None or not len(pa) or not len(pb):
        return True
    if len(pa) < len(pb):
        pa, pb = pb, pa
    radius = near * query_side
    distances = np.sqrt(((pb[:, None, :] - pa[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    return float((distances <= radius).mean()) >= 0.5


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The intersection of two boxes over the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0
