"""The identification engine: candidates from every method, each verified against its
registered original, one verdict.

1. **Candidates.** Every method the database holds searches the query (with its
   variants: borders trimmed, PDQ's rotations and flips): every reference it matches,
   and its ``per_method`` nearest besides, at most ``most_per_method`` in all (its
   nearest); and its ``per_part`` nearest to each half of the query (a montage's parts).
   Their union is the candidate list; its length depends on those numbers and the
   number of methods, not on the collection.
2. **A second look** at the part of the query that the identified references leave
   unexplained (:func:`unexplained_region`: a montage's other picture, an inset; else
   :func:`uncovered_side`, the side no identified frame covers): each method's
   ``per_method`` nearest to it, verified against that part. A half the query's
   keypoints hardly reach is verified against keypoints of its own as well. Where
   nothing is identified, windows of the query (a picture pasted onto another photo)
   bring their nearest, and where PDQ's complement matches a reference the query's
   negative (colours inverted) is looked at the same way.
3. **Verification.** Each candidate's stored local features are checked against the
   query's (:func:`robusthash.compare.features.verify`: ORB, ratio test, one match per
   original point, a plausible PROSAC homography, the mirror image tried as well).
4. **Verdict.** Each signal's evidence for a candidate (the verification's inliers,
   each method's distance) is turned into how often distinct images show evidence that
   strong, and their sum of −log10 rates into how often distinct images show that much
   evidence together (:mod:`.calibration`: a joint tail, measured on the train split or
   on the collection itself). That is the candidate's false-match rate per reference,
   and the candidate is named when it is at most ``false_match_rate`` (10⁻⁶). Named
   candidates are one picture when their regions overlap and the query points that
   verified them coincide; two or more pictures are a montage. A query with too little
   information in it (flat, noise, tiny) is refused: it matches nothing. A query of a
   registered file's own bytes (the same SHA-256 digest) is that file, whatever its
   signals say (``SAME_FILE_RATE``).

A query is first judged as it is given (each method's own hash, no variants); its
variants are searched, and it is judged again, only when no reference identified then
explains most of it: most copies are decided at about half the cost.

A reference registered before local features were stored cannot be verified: only its
methods' distances count, and its evidence says so (``db add`` of its file again stores
its features).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from scipy.spatial import cKDTree

from ..compare.features import (CHECK_VERSION, DEFAULT_FEATURES, FeatureConfig, LocalFeatures, Verification,
                                verify, worth_matching_each)
from ..db.ingest import Examined, ExaminedRegion
from ..db.reference import MOST_DECIDED, Match, QueryResult, ReferenceDB
from ..db.store import ImageRecord
from ..imaging import window_boxes
from ..hashing import Hash, MultiHash
from ..io import ImageSource
from .calibration import VERIFICATION, Calibration, bonferroni, joint_evidence, query_darkness, shipped_calibration
from .collection import collection_calibration, outdated

MATCH, MONTAGE, NO_MATCH = "match", "montage", "no match"
AUTO = "auto"
# The false-match rate of a registered file queried with its own bytes: the chance that
# another file has the same SHA-256 digest. A file no signal can tell (too smooth for
# keypoints, weak hashes) is still itself.
SAME_FILE_RATE = 2.0 ** -256


@dataclass(frozen=True)
class IdentifyConfig:
    per_method: int = 10  # nearest references each method offers, besides those it matches
    # ... but never more than this many, its nearest: a loose method matches about 1% of
    # distinct references (cmaa), thousands in a large collection, and each candidate
    # costs a verification. 20 lost no copy on 1,480 train queries among 2,748
    # references (10 lost 2 of them, crops).
    most_per_method: int = 20
    # ... and besides them, each query variant's (borders trimmed, the picture cut out, a
    # half turn: db.ingest) own nearest this many: a variant that brings many near
    # references (a cut-out's flat surroundings) must not push out those the query
    # itself ranks first.
    per_variant: int = 3
    # ... and its nearest this many through the crops the learned methods store beside
    # each reference (docs/database.md): a crop of a picture is far from the whole image's
    # hash, and ranked by their crops alone, others' crops pushed a whole copy's original
    # out of the 20.
    per_crop: int = 10
    # Whether the database decides every match of each method (up to 1,000 a hash: what a
    # report counting a single method's false matches needs), or only the
    # ``most_per_method`` nearest the engine can use: then the cost beyond the index
    # search does not grow with the collection.
    every_match: bool = False
    # Nearest references each method offers for each half of the query (a montage's
    # parts); 0: halves are not searched.
    per_part: int = 3
    # ... searched only when no identified reference's frame covers this share of the
    # query: on 800 train queries (760 copies, 40 montages) the same references were named
    # as with the halves always searched, with 34 candidates a query instead of 46 and 22%
    # less CPU (searched only when nothing at all was identified, one montage was lost).
    explained_share: float = 0.6
    # A reference is named when its evidence would be at least this rare between distinct
    # images: expected false matches per reference per query (1 M references: ≤ 1).
    false_match_rate: float = 1e-6
    same_region: float = 0.5  # regions overlapping this much (of the smaller) are one picture
    features: FeatureConfig = DEFAULT_FEATURES
    # Rounds of a second look: the part of the query that no identified reference
    # explains (unexplained_region: an inset, a montage's other picture) is hashed, and
    # each method's ``per_method`` nearest to it are verified against that part's own
    # local features; 0: none.
    residual_rounds: int = 2
    residual_inner: float = 0.7  # the share of that part's sides whose hashes are searched
    # Where nothing is identified and a method tells from the query's hashes alone that
    # its negative (colours inverted) matches a reference (PDQ: the complement of its
    # hash, within its threshold), the negative is examined and those references, and
    # each method's ``per_method`` nearest to it, verified against it: a negative's ORB
    # descriptors and learned hashes match nothing of the original (0 of 20 train photos
    # named before).
    negatives: bool = True
    # Where nothing is identified, windows of the query (these shares of its sides, a
    # quarter of a window overlapping the next: imaging.window_boxes, 9 of them) are
    # hashed by the methods that find crops (those storing crops beside each reference)
    # and their ``per_part`` nearest verified: a registered picture pasted into another
    # photo (a collage, a page, a background) is no candidate of the whole query, whose
    # hashes resemble the surroundings. (): none.
    windows: tuple[float, ...] = (0.4,)
    per_window: int = 1  # nearest references each window brings
    # A half of the query holding less than this share of the query's keypoints, relative
    # to its share of the area, is starved: its nearest are verified against keypoints of
    # its own as well (a dark picture beside a bright one held 1-12% of them).
    starved_part: float = 0.5
    # A side of the query outside every identified picture's frame, of at least this share
    # of the query, holding keypoints, gets a second look even where they are too sparse
    # for unexplained_region (a dark picture beside the one identified).
    uncovered_share: float = 0.15
    # Where no part is unexplained, a hole in an identified picture (its own keypoints,
    # mapped into the query, unmatched there against this chance: occluded_region) gets
    # the second look: an inset too dark for the query's keypoints; 0: none. Keypoints
    # are not lost independently (a forest's under JPEG go together), so copies have
    # holes too: at 1e-3, 11% of 448 train copies were looked at again (10 ms more a copy
    # at 10,000 references), at 1e-9 2%, with the same 12 of 20 train insets found.
    occluded_chance: float = 1e-9
    # The tails rates are read from. AUTO: the collection's own (db calibrate --engine)
    # where it has one, else the shipped one; None: uncalibrated, nothing is named.
    calibration: Calibration | str | None = AUTO
    # A query is first judged as it is given, and its variants (borders trimmed, turns,
    # flips, a picture within it: db.ingest.with_variants) are looked for only when no
    # reference identified then explains ``explained_share`` of it: most copies are
    # identified as they come, at about half the cost (docs/identify.md, "As given
    # first"). False: the variants always.
    as_given_first: bool = True


@dataclass(frozen=True)
class Evidence:
    """Why a candidate was (or was not) identified: each method's distance and own
    decision, and the verification (None: the reference has no stored features)."""

    methods: dict[str, tuple[float, bool]]
    verification: Verification | None
    keypoints: tuple[int, int] | None = None  # the query's and the original's, where checked
    # Each calibrated signal's rate between distinct images at this evidence.
    rates: dict[str, float] = field(default_factory=dict)
    same_file: bool = False  # the query's bytes are this registered file's (same digest)
    negative: bool = False  # verified against the query's negative (colours inverted)

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
                "false_match_rates": {k: float(f"{r:.3g}") for k, r in self.rates.items()},
                "same_file": self.same_file, "negative": self.negative}


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
    query was refused (if it was), each method's own result, whether the query's
    variants were searched or it was decided as given, and the calibration's stratum
    that judged it (details)."""

    query: str
    verdict: str
    matches: list[Identified]
    candidates: list[Identified]
    refused: str | None = None
    results: list[QueryResult] = field(default_factory=list)
    variants: bool = True
    # The stratum of queries whose tails judged it (calibration.Stratum); None: those of every query.
    stratum: str | None = None

    def to_dict(self, details: bool = False) -> dict[str, Any]:
        record: dict[str, Any] = {"query": self.query, "verdict": self.verdict,
                                  "matches": [m.to_dict() for m in self.matches], "refused": self.refused}
        if details:
            record["variants_searched"] = self.variants
            record["calibration_stratum"] = self.stratum
            record["candidates"] = [c.to_dict() for c in self.candidates]
            record["methods"] = [r.to_dict() for r in self.results]
        return record


class Identifier:
    """The engine over one :class:`~robusthash.db.ReferenceDB`."""

    def __init__(self, ref: ReferenceDB, config: IdentifyConfig = IdentifyConfig()):
        self.ref = ref
        self.config = config
        # Why the collection's own calibration is not used, for the front ends to say.
        self.calibration_notice: str | None = None
        if config.calibration == AUTO:
            own = collection_calibration(ref)
            self.calibration_notice = outdated(own) if own is not None else None
            self.calibration = own if own is not None and self.calibration_notice is None else shipped_calibration()
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
        examined = self.examine(image, names)
        name = source or (str(image) if isinstance(image, (str, Path)) else "<image>")
        return self.identify_examined(examined, name, names, k)

    def examine(self, image: ImageSource, methods: Sequence[str] | None = None) -> Examined:
        """``image`` examined as this engine asks a query: each method's hash and the local
        features, and the query's variants unless it is judged as given first. Raises
        ImageError for an unreadable input."""
        return self.ref.examine(image, methods, features=self.config.features,
                                variants=not self.config.as_given_first, query=True)

    def identify_examined(self, examined: Examined, source: str = "<image>", methods: Sequence[str] | None = None,
                          k: int = 5) -> Verdict:
        """The verdict on an examined query. One examined as it was given (``query``, no
        variants) is judged so first; its variants are looked for, and it is judged again
        with them, only when no reference identified explains most of it and it is not
        refused (a refused query matches nothing, whatever its variants)."""
        seen = _Seen()
        # The tails of the query's stratum (how dark it is, measured on the query itself,
        # and only where the calibration has strata), else those of every query.
        calibration, stratum = self.calibration, None
        if calibration is not None and calibration.strata and examined.decoded is not None:
            dark = query_darkness(examined.decoded)
            stratum, calibration = calibration.stratum_for(dark), calibration.for_query(dark)
        if not examined.with_variants and examined.decoded is not None:
            verdict = self._identify(examined, source, methods, k, seen, calibration, last=False)
            if verdict is not None:
                return replace(verdict, stratum=stratum and stratum.name)
            examined = self.ref.with_variants(examined, methods)
        return replace(self._identify(examined, source, methods, k, seen, calibration, last=True),
                       stratum=stratum and stratum.name)

    def _identify(self, examined: Examined, source: str, methods: Sequence[str] | None, k: int, seen: "_Seen",
                  calibration: Calibration | None, last: bool) -> Verdict | None:
        """The verdict with the query's hashes as examined, judged by ``calibration``'s
        tails; None when it is not the ``last`` look and nothing identified explains most
        of the query (then its variants are worth their cost). ``seen``: what an earlier
        look found, kept for this one."""
        results = self._search(examined, source, methods, k, seen.searched)
        if not examined.with_variants:
            seen.searched = {r.method: r for r in results}
        verified = seen.verified
        refused = self.ref.refusal(examined)
        offered: dict[int, dict[str, tuple[float, bool]]] = {}
        records: dict[int, ImageRecord] = {}
        for result in results:
            for m in _offered(result, self.config.most_per_method, self.config.per_crop):
                offered.setdefault(m.image.id, {})[result.method] = (m.distance, m.matched)
                records[m.image.id] = m.image
        same_file = self.ref.store.image_by_digest(examined.digest) if examined.digest else None
        if same_file is not None:  # offered whether or not a method ranked it near
            offered.setdefault(same_file.id, {})
            records[same_file.id] = same_file
        versions = {r.method: examined.hashes[r.method].version for r in results}
        candidates = self._checked(offered, records, examined, refused, versions, calibration, verified=verified)
        names = [r.method for r in results]
        explained = _mostly_explained(candidates, examined, self.config.explained_share)
        if not last and not explained and not refused:
            return None
        if self.config.per_part and examined.decoded is not None and not explained:
            # Nothing found that covers most of the query: perhaps two pictures side by
            # side, which the whole query's hashes resemble neither of. Each half's nearest
            # are candidates only: their distances were not calibrated (a half is no
            # variant of the whole), so verification alone speaks for them. A query one
            # reference explains is a copy: its halves would bring nothing new.
            more: dict[int, dict[str, tuple[float, bool]]] = {}
            parts = self.ref.examine_halves(examined, names)
            values = [(n, value) for n, part in enumerate(parts) for value in part.hashes.values()]
            brought = self._nearest_to_part([value for _, value in values], more, records, source)
            candidates += self._checked({i: m for i, m in more.items() if i not in offered}, records, examined,
                                        refused, versions, calibration, verified=verified)
            # A half that the query's keypoints hardly reach (a dark picture beside a bright
            # one: ORB spends the query's budget on the bright one) cannot verify its own
            # picture; its nearest are verified against its own keypoints too, and the
            # better check stands (as for a second look's part).
            for n, part in enumerate(parts):
                if not _starved(part.box, examined.local_features, self.config.starved_part):
                    continue
                ids = {i for (owner, _), found in zip(values, brought) if owner == n for i in found}
                region = self.ref.examine_region(examined, part.box, (), self.config.features)
                candidates = _better(candidates, self._checked({i: {} for i in ids}, records, examined, refused,
                                                               versions, calibration, region))
        looks = examined.decoded is not None and examined.local_features is not None
        for _ in range(self.config.residual_rounds if looks else 0):
            identified = [c for c in candidates if c.identified]
            found = False
            # The parts worth a second look, tried in turn until one names a picture: the
            # largest part holding keypoints none identified explains, a hole in an
            # identified picture, a side outside every identified frame.
            for box in self._parts(examined, identified):
                candidates, found = self._look_again(box, candidates, identified, examined, names, records, source,
                                                     refused, versions, calibration)
                if found:
                    break
            if not found:
                break  # the same parts would be looked at again
        # Where still nothing is identified: windows of the query, then its negative.
        if looks and not refused:
            if self.config.windows and self.config.per_window and not any(c.identified for c in candidates):
                candidates = self._look_through_windows(candidates, examined, names, records, source, refused,
                                                        versions, calibration, verified)
            if self.config.negatives and not any(c.identified for c in candidates):
                candidates = self._look_at_negative(candidates, examined, names, records, source, versions,
                                                    calibration)
        candidates.sort(key=lambda c: (not c.identified, -c.score, c.image.id))
        identified = [c for c in candidates if c.identified]
        query_features = examined.local_features
        side = max(query_features[0].size) if query_features is not None else 0
        return Verdict(source, _verdict(identified, self.config.same_region, side), identified, candidates, refused,
                       results, examined.with_variants)

    def _parts(self, examined: Examined, identified: list[Identified]) -> Iterator[tuple[int, int, int, int]]:
        """The boxes of the query a second look is worth, best first, each made only
        when the one before it found nothing."""
        query = examined.local_features[0]
        box = unexplained_region(query, identified)
        if box is not None:
            yield box
        if self.config.occluded_chance:
            stored = self.ref.stored_features([c.image.id for c in identified])
            originals = {i: LocalFeatures.from_bytes(data) for i, data in stored.items()}
            box = occluded_region(query, identified, originals, chance=self.config.occluded_chance)
            if box is not None:
                yield box
        box = uncovered_side(query, identified, self.config.uncovered_share)
        if box is not None:
            yield box

    def _look_again(self, box: tuple[int, int, int, int], candidates: list[Identified],
                    identified: list[Identified], examined: Examined, names: list[str],
                    records: dict[int, ImageRecord], source: str, refused: str | None,
                    versions: dict[str, str], calibration: Calibration | None) -> tuple[list[Identified], bool]:
        """A second look at a ``box`` of the query: the candidates with its nearest
        references checked against it, and whether a picture not named before is named."""
        # Its inner part is searched: a pasted picture's box holds corners of its host
        # (on 30 train insets, with the exact box, cmaa's 10 nearest hold the inset's
        # original for 97% of the inner 70%, 67% of the whole box). Its own local
        # features verify: a small part of the query has few of the query's keypoints.
        x0, y0, x1, y1 = box
        inner = self.config.residual_inner
        dx, dy = round((1 - inner) / 2 * (x1 - x0)), round((1 - inner) / 2 * (y1 - y0))
        inner_hashes = self.ref.examine_region(examined, (x0 + dx, y0 + dy, x1 - dx, y1 - dy), names).hashes
        # Each method's nearest to it besides those named. One already checked against
        # the whole query is checked again against the part, and the better check
        # stands; against the part verification alone speaks (a part's distances are
        # not calibrated).
        named = {c.image.id for c in identified}
        more: dict[int, dict[str, tuple[float, bool]]] = {}
        self._nearest_to_part(inner_hashes.values(), more, records, source, self.config.per_method, named)
        if not more:
            return candidates, False
        region = self.ref.examine_region(examined, box, (), self.config.features)
        candidates = _better(candidates, self._checked(more, records, examined, refused, versions, calibration,
                                                       region))
        return candidates, any(c.identified and c.image.id not in named for c in candidates)

    def _look_through_windows(self, candidates: list[Identified], examined: Examined, names: list[str],
                              records: dict[int, ImageRecord], source: str, refused: str | None,
                              versions: dict[str, str], calibration: Calibration | None,
                              verified: dict[int, tuple[Verification | None, tuple[int, int] | None]]
                              ) -> list[Identified]:
        """The candidates, with each window's ``per_window`` nearest references (by the
        hashes of the methods that find crops) verified against the whole query: a
        picture that fills part of the query holds its share of the query's keypoints, so
        a window only has to bring it among the candidates (verification alone speaks for
        them, as for the halves)."""
        methods = self.ref.crop_methods(names)
        if not methods:
            return candidates
        size = examined.local_features[0].size
        values = [value for box in window_boxes(size, self.config.windows)
                  for value in self.ref.examine_region(examined, box, methods).hashes.values()]
        more: dict[int, dict[str, tuple[float, bool]]] = {}
        self._nearest_to_part(values, more, records, source, self.config.per_window)
        known = {c.image.id for c in candidates}
        return candidates + self._checked({i: m for i, m in more.items() if i not in known}, records, examined,
                                          refused, versions, calibration, verified=verified)

    def _look_at_negative(self, candidates: list[Identified], examined: Examined, names: list[str],
                          records: dict[int, ImageRecord], source: str, versions: dict[str, str],
                          calibration: Calibration | None) -> list[Identified]:
        """The candidates, with those the query's negative brings verified against the
        negative's keypoints (verification alone speaks, as for a part), when a method's
        negative hash (:meth:`ReferenceDB.negative_hashes`) matches a reference: only
        then is the negative examined."""
        negatives = self.ref.negative_hashes(examined, names)
        results = self.ref.query_hashes(negatives, k=self.config.per_variant, source=source) if negatives else []
        matched = {m.image.id: m.image for result in results for m in result.matches if m.matched}
        if not matched:
            return candidates
        region = self.ref.examine_negative(examined, names, self.config.features)
        records.update(matched)
        more: dict[int, dict[str, tuple[float, bool]]] = {i: {} for i in matched}
        self._nearest_to_part(region.hashes.values(), more, records, source, self.config.per_method)
        return _better(candidates, self._checked(more, records, examined, None, versions, calibration, region,
                                                 negative=True))

    def method_results(self, examined: Examined, source: str = "<image>", methods: Sequence[str] | None = None,
                       k: int = 5) -> list[QueryResult]:
        """Each method's own result for an examined query as the engine searches it, with
        the query's variants (looked for here where it was examined as given): what each
        method alone answers, for a comparison beside the engine."""
        if not examined.with_variants and examined.decoded is not None:
            examined = self.ref.with_variants(examined, methods)
        return self._search(examined, source, methods, k)

    def _search(self, examined: Examined, source: str, methods: Sequence[str] | None, k: int,
                searched: dict[str, QueryResult] | None = None) -> list[QueryResult]:
        most = MOST_DECIDED if self.config.every_match else max(k, self.config.most_per_method)
        return self.ref.query_examined(examined, methods, k=max(k, self.config.per_method), source=source,
                                       most=most, lead=self.config.per_variant, searched=searched)

    def _nearest_to_part(self, values: Iterable[Hash | MultiHash], offered: dict[int, dict[str, tuple[float, bool]]],
                         records: dict[int, ImageRecord], source: str, k: int | None = None,
                         besides: frozenset[int] | set[int] = frozenset()) -> list[list[int]]:
        """Each part hash's ``k`` (default ``per_part``) nearest references ``besides``
        those given, as candidates without a method's word for them (a part's distances
        are not calibrated); returns each hash's."""
        k = k or self.config.per_part
        brought = []
        # Only the nearest are wanted, so only that many matches are decided (a loose method
        # matches hundreds of a large collection): the same nearest, by hash or by crop.
        for result in self.ref.query_hashes(list(values), k=k + len(besides), source=source, most=k + len(besides)):
            found = result.matches
            nearest = sorted((m for m in found if m.image.id not in besides), key=lambda m: m.nearest)[:k]
            for m in nearest:
                offered.setdefault(m.image.id, {})
                records[m.image.id] = m.image
            brought.append([m.image.id for m in nearest])
        return brought

    def _checked(self, offered: dict[int, dict[str, tuple[float, bool]]], records: dict[int, ImageRecord],
                 examined: Examined, refused: str | None, versions: dict[str, str],
                 calibration: Calibration | None, region: ExaminedRegion | None = None,
                 verified: dict[int, tuple[Verification | None, tuple[int, int] | None]] | None = None,
                 negative: bool = False) -> list[Identified]:
        """Each offered reference verified against the query (or a ``region`` of it, told
        in the query's frame) and judged by ``calibration``. ``verified``: verifications against the whole
        query made already, by reference, and kept for a later look; ``negative``: the
        region is the query's negative."""
        verified = {} if verified is None or region is not None else verified
        query_size = examined.local_features[0].size if examined.local_features is not None else None
        unchecked = [i for i in offered if i not in verified]
        stored = self.ref.stored_features(unchecked) if unchecked else {}
        query_features = examined.local_features if region is None else region.local_features
        originals = {i: LocalFeatures.from_bytes(stored[i]) for i in unchecked if i in stored} \
            if query_features is not None else {}
        # The first check of every original against the query and its mirror image: one search each.
        descriptors = [o.descriptors for o in originals.values()]
        worth = [dict(zip(originals, worth_matching_each(f.descriptors, descriptors, self.config.features)))
                 if f is not None and originals else {} for f in (query_features or (None, None))]
        for image_id in unchecked:
            verification = keypoints = None
            if image_id in originals:
                original = originals[image_id]
                verification = verify(query_features[0], original, query_features[1], self.config.features,
                                      worth=(worth[0].get(image_id, False), worth[1].get(image_id, False)))
                if region is not None:
                    verification = verification.in_query(region.box, examined.local_features[0].size[0])
                keypoints = (len(query_features[0]), len(original))
            verified[image_id] = (verification, keypoints)
        return [self._judge(records[image_id], Evidence(methods, *verified[image_id],
                                                        same_file=records[image_id].digest == examined.digest,
                                                        negative=negative),
                            refused, versions, calibration, query_size)
                for image_id, methods in offered.items()]

    def _judge(self, image: ImageRecord, evidence: Evidence, refused: str | None,
               versions: dict[str, str], calibration: Calibration | None,
               query_size: tuple[int, int] | None = None) -> Identified:
        """Each calibrated signal's rate between distinct images (:mod:`.calibration`);
        the joint tail's rate at their summed evidence (the union bound where no joint
        tail covers them) is the candidate's false-match rate; it is named when that is
        at most the target. ``query_size``: the query's frame (its local features'
        pixels), the region of a file that is the query itself."""
        rates, signal_versions = _rates(evidence, versions, calibration)
        joint = calibration.joint(signal_versions) if rates else None
        # The joint rate as the calibration can support it (Tail.bound): where only a few
        # distinct pairs were measured this far out, their count's upper bound, not their
        # share (the pairs named at the tail's sparse floor, 7.7e-7, were distinct
        # pictures: docs/identify.md).
        rate = joint.bound(joint_evidence(list(rates.values()))) if joint is not None \
            else bonferroni(list(rates.values()))
        if evidence.same_file:
            rate = min(rate, SAME_FILE_RATE)
        v = evidence.verification
        identified = rate <= self.config.false_match_rate
        # The evidence named: every signal at least 10x rarer than chance, strongest first.
        telling = sorted((r, s) for s, r in rates.items() if r <= 0.1)
        if evidence.same_file:
            reason = "the same file (its SHA-256 digest)"
        elif not rates:
            reason = "no calibrated signal to decide with"
        elif not telling:
            reason = "no signal stands out"
        else:
            reason = ", ".join(f"{v.inliers} inliers" + (" mirrored" if v.flipped else "") if s == VERIFICATION
                               else f"{s} NHD {evidence.methods[s][0]:.3f}" for _, s in telling)
        how = "joint " if joint is not None and len(telling) > 1 and not evidence.same_file else ""
        reason = f"{'identified' if identified else 'not identified'}: {reason}, {how}false-match rate {rate:.1e} " \
                 f"{'≤' if identified else '>'} {self.config.false_match_rate:.0e} per reference"
        if evidence.negative:
            reason += "; seen in the query's negative (its colours inverted)"
        if v is None:
            reason += "; not verified: no local features stored for it (run db add on its file again)"
        if refused and identified:
            identified, reason = False, f"{reason}; not a match: the query {refused}"
        region = v.query_box if v is not None and v.accepted else None
        if region is None and evidence.same_file and query_size is not None:
            region = (0, 0, *query_size)  # the whole query is the file
        score = round(-math.log10(max(rate, 1e-300)), 2)
        return Identified(image, score, identified, reason, region, replace(evidence, rates=rates))


def _rates(evidence: Evidence, versions: dict[str, str],
           calibration: Calibration | None) -> tuple[dict[str, float], dict[str, str]]:
    """Each calibrated signal's rate between distinct images, and the signals' versions."""
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


@dataclass
class _Seen:
    """What a look at a query as it was given leaves for the look with its variants: each
    reference's verification against the whole query, and each method's result for the
    query's own hash."""

    verified: dict[int, tuple[Verification | None, tuple[int, int] | None]] = field(default_factory=dict)
    searched: dict[str, QueryResult] = field(default_factory=dict)


def unexplained_region(query: LocalFeatures, identified: Sequence[Identified], cells: int = 8,
                       least_share: float = 0.05, most_area: float = 0.8) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1, the query's pixels) of the largest part of the query that
    none of the ``identified`` references explains, or None when there is none worth a
    second look.

    The query is cut into a grid (``cells`` along its longer side). A cell is
    unexplained when it holds keypoints (at least a quarter of a typical cell's) and not
    one inlier of any identified reference: a montage's other picture, or an inset,
    which covers what would have matched its host there. The 4-connected unexplained
    cells holding most keypoints, at least ``least_share`` of them and two cells, are
    the part; its box is that of its keypoints (and of those in the cells around it)
    farther than a cell from every inlier: the edge of a picture whose inliers are
    sparse there is no part of another. A box over ``most_area`` of the query
    is no part: nothing was explained.
    """
    import cv2

    points = query.points
    inliers = [c.evidence.verification.query_points for c in identified
               if c.evidence.verification is not None and c.evidence.verification.query_points is not None]
    inliers = np.concatenate(inliers) if inliers else np.zeros((0, 2), dtype=np.float32)
    w, h = query.size
    if len(points) < 20 or not len(inliers):
        return None
    grid = _Grid.over(query.size, cells)
    cell_w, cell_h = grid.cell_w, grid.cell_h
    keypoints, explained = grid.counts(points), grid.counts(inliers)
    typical = float(np.median(keypoints[keypoints > 0]))
    unexplained = ((keypoints >= max(4.0, typical / 4)) & (explained == 0)).astype(np.uint8)
    count, labels = cv2.connectedComponents(unexplained, connectivity=4)
    best, most = 0, 0
    for label in range(1, count):
        part = labels == label
        held = int(keypoints[part].sum())
        if part.sum() >= 2 and held > most:
            best, most = label, held
    if not best or most < least_share * len(points):
        return None
    around = cv2.dilate((labels == best).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    loose = around[grid.cells_of(points)]  # the part's keypoints, then only those away from every inlier
    loose &= cKDTree(inliers).query(points)[0] > min(cell_w, cell_h)
    if not loose.any():
        return None
    margin = 0.02 * max(w, h)
    (x0, y0), (x1, y1) = points[loose].min(axis=0) - margin, points[loose].max(axis=0) + margin
    box = (max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))
    if box[2] - box[0] < 16 or box[3] - box[1] < 16 or (box[2] - box[0]) * (box[3] - box[1]) > most_area * w * h:
        return None
    return box


def occluded_region(query: LocalFeatures, identified: Sequence[Identified], originals: dict[int, LocalFeatures],
                    cells: int = 16, chance: float = 1e-9, least_expected: int = 12,
                    most_area: float = 0.5) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1, the query's pixels) of the largest part of an identified
    picture that is covered by something else, or None.

    Each identified reference's own keypoints (``originals``, by image id) are mapped into
    the query by its verified homography: they show where its picture should have
    matched. The query is cut into a grid (``cells`` along its longer side); 4-connected
    cells holding its mapped keypoints but no inlier of any identified reference are a
    hole in it. A hole is occluded when so many of its keypoints unmatched, at the
    share of them the picture matched elsewhere, would happen by chance less often than
    ``chance``, and at least ``least_expected`` of them lie there: an inset pasted over
    the picture. Unlike :func:`unexplained_region`, this needs no keypoints of the query
    in the part: a dark inset over a bright host holds few of them (ORB spends the
    query's budget where the contrast is). A hole over ``most_area`` of the query is no
    inset.
    """
    import cv2

    w, h = query.size
    grid = _Grid.over(query.size, cells)
    cell_w, cell_h = grid.cell_w, grid.cell_h
    # What any identified reference matched is explained, whichever picture's hole it lies in
    # (a collection holding several files of one picture names them all).
    inliers = [c.evidence.verification.query_points for c in identified if c.evidence.verification is not None
               and c.evidence.verification.accepted and c.evidence.verification.query_points is not None]
    explained = grid.counts(np.concatenate(inliers) if inliers else np.zeros((0, 2), dtype=np.float32))
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for c in identified:
        v, original = c.evidence.verification, originals.get(c.image.id)
        if original is None or v is None or not v.accepted or v.query_points is None or not len(original):
            continue
        mapped = _in_query(original.points, v, w)
        inside = (mapped[:, 0] >= 0) & (mapped[:, 0] < w) & (mapped[:, 1] >= 0) & (mapped[:, 1] < h)
        if inside.sum() < 2 * least_expected:
            continue
        expected = grid.counts(mapped[inside])
        # The share of its keypoints the picture matched where it was not covered.
        share = min(0.95, len(v.query_points) / float(inside.sum()))
        hole = ((expected > 0) & (explained == 0)).astype(np.uint8)
        count, labels = cv2.connectedComponents(hole, connectivity=4)
        for label in range(1, count):
            part = labels == label
            missed = int(expected[part].sum())
            surprise = -missed * np.log1p(-share)  # -ln P(none of them matched)
            rows, cols = np.nonzero(part)
            # The cells around the hole, which matched in part, are partly covered too.
            box = (max(0, int((cols.min() - 0.5) * cell_w)), max(0, int((rows.min() - 0.5) * cell_h)),
                   min(w, int(np.ceil((cols.max() + 1.5) * cell_w))), min(h, int(np.ceil((rows.max() + 1.5) * cell_h))))
            area = (box[2] - box[0]) * (box[3] - box[1])
            if missed < least_expected or surprise < -np.log(chance) or area > most_area * w * h:
                continue
            if best is None or surprise > best[0]:
                best = (surprise, box)
    return None if best is None else best[1]


def _offered(result: QueryResult, most: int, by_crop: int) -> list[Match]:
    """A method's ``most`` nearest references, its ``by_crop`` nearest through a crop
    stored beside them, and those its query or a variant of it ranked among its own
    nearest besides."""
    ranked = sorted(result.matches, key=lambda m: (m.distance, m.image.id))
    cropped = sorted((m for m in ranked[most:] if m.crop_distance is not None), key=lambda m: (m.nearest, m.image.id))
    chosen = {m.image.id for m in ranked[:most]} | {m.image.id for m in cropped[:by_crop]}
    return [m for m in ranked if m.image.id in chosen or m.image.id in result.leading]


def _starved(box: tuple[int, int, int, int], features: tuple[LocalFeatures, LocalFeatures | None] | None,
             share: float) -> bool:
    """Whether the query's keypoints hardly reach ``box`` (in their pixels): it holds less
    than ``share`` of them relative to its share of the query's area."""
    if features is None or not len(features[0]):
        return False
    points, (w, h) = features[0].points, features[0].size
    area = (box[2] - box[0]) * (box[3] - box[1]) / max(1, w * h)
    return float(_inside(points, box).mean()) < share * area


def _better(candidates: list[Identified], checked: Iterable[Identified]) -> list[Identified]:
    """The candidates, each replaced by its check in ``checked`` where that scored higher,
    and the references checked that were no candidate yet."""
    best = {c.image.id: c for c in candidates}
    for c in checked:
        if c.image.id not in best or c.score > best[c.image.id].score:
            best[c.image.id] = c
    return list(best.values())


def uncovered_side(query: LocalFeatures, identified: Sequence[Identified], share: float = 0.15,
                   least_keypoints: int = 8) -> tuple[int, int, int, int] | None:
    """The largest side of the query (a full-height strip left or right, a full-width one
    above or below) outside the frames of every ``identified`` reference (mapped into
    the query by their verified homographies), when it covers ``share`` of the query and
    holds ``least_keypoints`` of its keypoints (flat padding holds none); else None. Where
    a dark picture stands beside a bright one, the query's keypoints are spent on the
    bright one, too sparse on the dark one for :func:`unexplained_region` to see a part."""
    w, h = query.size
    frames = [f for f in (_frame_in_query(c, w, h) for c in identified) if f is not None]
    if not frames:
        return None
    x0, y0 = max(0, min(f[0] for f in frames)), max(0, min(f[1] for f in frames))
    x1, y1 = min(w, max(f[2] for f in frames)), min(h, max(f[3] for f in frames))
    sides = [(0, 0, int(x0), h), (int(np.ceil(x1)), 0, w, h), (0, 0, w, int(y0)), (0, int(np.ceil(y1)), w, h)]
    best = max(sides, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    if (best[2] - best[0]) * (best[3] - best[1]) < share * w * h or min(best[2] - best[0], best[3] - best[1]) < 16:
        return None
    return best if int(_inside(query.points, best).sum()) >= least_keypoints else None


def _inside(points: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Which of ``points`` (x, y) lie in ``box`` (x0, y0, x1, y1; x1 and y1 outside)."""
    return (points[:, 0] >= box[0]) & (points[:, 0] < box[2]) & (points[:, 1] >= box[1]) & (points[:, 1] < box[3])


def _frame_in_query(c: Identified, w: int, h: int) -> tuple[float, float, float, float] | None:
    """An identified reference's whole frame mapped into the query (w × h, its local
    features' pixels) by the verified homography: its box (x0, y0, x1, y1), unclipped;
    None where there is no plausible one (no homography, no size, across the horizon)."""
    v = c.evidence.verification
    if not c.identified or v is None or v.homography is None or not c.image.width or not c.image.height:
        return None
    corners = np.array([[0, 0], [c.image.width, 0], [c.image.width, c.image.height], [0, c.image.height]],
                       dtype=np.float64)
    mapped = _in_query(corners, v, w)
    if len(mapped) < len(corners):
        return None  # the frame crosses the horizon: no plausible picture of it
    return float(mapped[:, 0].min()), float(mapped[:, 1].min()), float(mapped[:, 0].max()), float(mapped[:, 1].max())


def _in_query(points: np.ndarray, v: Verification, w: int) -> np.ndarray:
    """Points of a verified original (x, y, its pixels) in the query's pixels (``w`` wide),
    through the homography and the mirror; those behind the horizon are left out."""
    mapped = np.hstack([points, np.ones((len(points), 1))]) @ np.linalg.inv(v.homography).T
    mapped = mapped[mapped[:, 2] > 0]
    xs, ys = mapped[:, 0] / mapped[:, 2], mapped[:, 1] / mapped[:, 2]
    if v.flipped:
        xs = w - 1 - xs
    return np.stack([xs, ys], axis=1)


@dataclass(frozen=True)
class _Grid:
    """The query cut into cells, ``nx`` × ``ny`` of ``cell_w`` × ``cell_h`` pixels."""

    nx: int
    ny: int
    cell_w: float
    cell_h: float

    @classmethod
    def over(cls, size: tuple[int, int], cells: int) -> "_Grid":
        """``cells`` along the longer side of a query of ``size`` (w, h), about square."""
        w, h = size
        nx, ny = (cells, max(1, round(cells * h / w))) if w >= h else (max(1, round(cells * w / h)), cells)
        return cls(nx, ny, w / nx, h / ny)

    def cells_of(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (row, column) of each of ``points`` (x, y)."""
        return (np.clip((points[:, 1] / self.cell_h).astype(int), 0, self.ny - 1),
                np.clip((points[:, 0] / self.cell_w).astype(int), 0, self.nx - 1))

    def counts(self, points: np.ndarray) -> np.ndarray:
        """How many of ``points`` each cell holds (ny × nx)."""
        grid = np.zeros((self.ny, self.nx), dtype=np.int32)
        np.add.at(grid, self.cells_of(points), 1)
        return grid


def _mostly_explained(candidates: Sequence[Identified], examined: Examined, share: float) -> bool:
    """Whether an identified reference, its whole frame mapped into the query by the
    verified homography, covers ``share`` of the query (the inliers' own box understates
    it: flat parts of a picture hold no keypoints)."""
    if examined.local_features is None or any(c.identified and c.evidence.same_file for c in candidates):
        return any(c.identified for c in candidates)
    w, h = examined.local_features[0].size
    for c in candidates:
        frame = _frame_in_query(c, w, h)
        if frame is None:
            continue
        x0, y0, x1, y1 = frame
        covered = (min(w, x1) - max(0, x0)) * (min(h, y1) - max(0, y0))
        if x1 > 0 and y1 > 0 and x0 < w and y0 < h and covered >= share * w * h:
            return True
    return False


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
    distances, _ = cKDTree(pa).query(pb)
    return float((distances <= near * query_side).mean()) >= 0.5


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The intersection of two boxes over the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0
