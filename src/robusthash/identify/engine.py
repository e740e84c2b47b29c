"""The identification engine: candidates from every method, each verified against its
registered original, one verdict.

1. **Candidates.** Every method the database holds searches the query (with its
   variants: borders trimmed, PDQ's rotations and flips): every reference it matches,
   and its ``per_method`` nearest besides. Their union is the candidate list; its
   length depends on ``per_method`` and the number of methods, not on the collection.
2. **Verification.** Each candidate's stored local features are checked against the
   query's (:func:`robusthash.compare.features.verify`: ORB, ratio test, a plausible
   RANSAC homography, the mirror image tried as well).
3. **Verdict.** A candidate is identified when its verification has ``min_inliers``
   inliers (no distinct train pair reached 25: ``benchmarks/verification_probe.py``),
   or, weaker geometry being common under blur and small crops, ``corroborated_inliers``
   inliers and a method's own match; where the geometry cannot be checked (the query or
   the original has too few keypoints: a tiny or flat picture), two methods' own
   matches. Identified candidates whose regions in the query
   overlap are one picture; two or more apart are a montage. A query with too little
   information in it (flat, noise, tiny) is refused: it matches nothing.

A reference registered before local features were stored cannot be verified; it is
identified only where two methods match it, and its evidence says so (``db add`` of its
file again stores its features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..compare.features import DEFAULT_FEATURES, KIND, VERSION, FeatureConfig, LocalFeatures, Verification, verify
from ..db.ingest import Examined
from ..db.reference import QueryResult, ReferenceDB
from ..db.store import ImageRecord
from ..io import ImageSource

MATCH, MONTAGE, NO_MATCH = "match", "montage", "no match"


@dataclass(frozen=True)
class IdentifyConfig:
    per_method: int = 10  # nearest references each method offers, besides those it matches
    min_inliers: int = 25  # verified on geometry alone
    corroborated_inliers: int = 12  # verified when a method also matches
    # Methods that must match a reference whose geometry cannot be checked: it has no
    # stored features, or the query or it has fewer than ``few_keypoints`` (tiny or flat
    # pictures give ORB too little to fit a homography to).
    unverified_methods: int = 2
    few_keypoints: int = 200
    same_region: float = 0.5  # regions overlapping this much (of the smaller) are one picture
    features: FeatureConfig = DEFAULT_FEATURES


@dataclass(frozen=True)
class Evidence:
    """Why a candidate was (or was not) identified: each method's distance and own
    decision, and the verification (None: the reference has no stored features)."""

    methods: dict[str, tuple[float, bool]]
    verification: Verification | None
    keypoints: tuple[int, int] | None = None  # the query's and the original's, where checked

    @property
    def matched_by(self) -> list[str]:
        return [m for m, (_, matched) in self.methods.items() if matched]

    def to_dict(self) -> dict[str, Any]:
        v = self.verification
        return {"methods": {m: {"distance": round(d, 4), "matched": ok} for m, (d, ok) in self.methods.items()},
                "verification": None if v is None else {
                    "inliers": v.inliers, "matches": v.matches, "flipped": v.flipped,
                    "original_share": round(v.original_share, 3),
                    "keypoints": list(self.keypoints) if self.keypoints else None}}


@dataclass(frozen=True)
class Identified:
    """One candidate: the registered image, its score (the verification's inliers; the
    number of methods matching it when it has no features), whether it is identified,
    why, and its region in the query (x0, y0, x1, y1), where verification found one."""

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
        examined = self.ref.examine(image, names, features=self.config.features)
        name = source or (str(image) if isinstance(image, (str, Path)) else "<image>")
        return self.identify_examined(examined, name, names, k)

    def identify_examined(self, examined: Examined, source: str = "<image>", methods: Sequence[str] | None = None,
                          k: int = 5) -> Verdict:
        results = self.ref.query_examined(examined, methods, k=max(k, self.config.per_method), source=source)
        refused = next((r.refused for r in results if r.refused and "cannot be identified" in r.refused), None)
        by_image: dict[int, dict[str, tuple[float, bool]]] = {}
        records: dict[int, ImageRecord] = {}
        for result in results:
            for m in result.matches:
                by_image.setdefault(m.image.id, {})[result.method] = (m.distance, m.matched)
                records[m.image.id] = m.image
        stored = self.ref.store.features(by_image, KIND, VERSION) if by_image else {}
        query_features = examined.local_features
        candidates = []
        for image_id, methods in by_image.items():
            verification = keypoints = None
            if image_id in stored and query_features is not None:
                original = LocalFeatures.from_bytes(stored[image_id])
                verification = verify(query_features[0], original, query_features[1], self.config.features)
                keypoints = (len(query_features[0]), len(original))
            candidates.append(self._judge(records[image_id], Evidence(methods, verification, keypoints), refused))
        candidates.sort(key=lambda c: (not c.identified, -c.score, c.image.id))
        identified = [c for c in candidates if c.identified]
        return Verdict(source, _verdict(identified, self.config.same_region), identified, candidates, refused, results)

    def _judge(self, image: ImageRecord, evidence: Evidence, refused: str | None) -> Identified:
        c = self.config
        v = evidence.verification
        matched_by = evidence.matched_by
        if v is None:
            ok = len(matched_by) >= c.unverified_methods
            reason = (f"matched by {', '.join(matched_by) or 'no method'}; not verified: no local features stored "
                      f"for it (run db add on its file again)")
            identified, score, region = ok, float(len(matched_by)), None
        elif v.inliers >= c.min_inliers:
            identified, score, region = True, float(v.inliers), v.query_box
            reason = f"verified: {v.inliers} inliers ≥ {c.min_inliers}" + (", mirrored" if v.flipped else "")
        elif v.inliers >= c.corroborated_inliers and matched_by:
            identified, score, region = True, float(v.inliers), v.query_box
            reason = f"verified: {v.inliers} inliers ≥ {c.corroborated_inliers} and matched by {', '.join(matched_by)}"
        elif evidence.keypoints and min(evidence.keypoints) < c.few_keypoints and len(matched_by) >= c.unverified_methods:
            identified, score, region = True, float(v.inliers), v.query_box
            reason = (f"matched by {', '.join(matched_by)}; geometry inconclusive ({min(evidence.keypoints)} keypoints "
                      f"< {c.few_keypoints}, {v.inliers} inliers)")
        else:
            identified, score, region = False, float(v.inliers), v.query_box
            reason = (f"not verified: {v.inliers} inliers" + (f" (matched by {', '.join(matched_by)})"
                                                               if matched_by else ""))
        if refused and identified:
            identified, reason = False, f"{reason}; not a match: the query {refused}"
        return Identified(image, score, identified, reason, region, evidence)


def _verdict(identified: list[Identified], same_region: float) -> str:
    if not identified:
        return NO_MATCH
    regions = [c.region for c in identified if c.region is not None]
    pictures: list[tuple[int, int, int, int]] = []
    for region in regions:
        if not any(_overlap(region, p) >= same_region for p in pictures):
            pictures.append(region)
    return MONTAGE if len(pictures) >= 2 else MATCH


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The intersection of two boxes over the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0
