"""The engine calibrated on the user's own collection (``robusthash db calibrate --engine``).

The shipped calibration measured distinct pairs of the corpus train split. A collection
of another kind (screenshots, documents, one photographer's series) can have more
similar distinct images, and then a heavier tail. Here the registered images are the
distinct pairs: ``queries`` of them, read again from their files and examined as a
query is (variants, local features), against every other registered image (up to
``max_references`` of them). Registered images are taken to be distinct pictures; near
duplicates among them make the tails heavier, so the engine more cautious, never less.

The tails are measured for every query and, apart, for each stratum of queries with
enough of them (``calibration.STRATA``: queries less than 60% dark), as the shipped
calibration is. The result is stored in the database (meta ``identify-calibration``)
and used by every engine over it instead of the shipped one (:func:`collection_calibration`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

from ..compare.features import CHECK_VERSION, DEFAULT_FEATURES, FeatureConfig, LocalFeatures, verify
from ..db.reference import ReferenceDB
from ..hashing import Hash
from ..io import ImageError
from ..measure import nearest_variant_matrix
from .calibration import VERIFICATION, Calibration, Measured, calibrate_by_stratum, query_darkness, resolution

KEY = "identify-calibration"


def collection_calibration(ref: ReferenceDB) -> Calibration | None:
    """The calibration stored in ``ref`` by :func:`calibrate_collection`, or None."""
    text = ref.store.meta(KEY)
    return _parsed(text) if text else None


def outdated(calibration: Calibration) -> str | None:
    """Why a collection's calibration no longer fits this version's check, or None. A
    calibration measured with another check (``CHECK_VERSION``) has no tail for the
    inlier counts the engine now finds: used anyway, the engine would decide without
    verification."""
    if calibration.tail(VERIFICATION, CHECK_VERSION) is not None:
        return None
    found = sorted({t.version for t in calibration.tails if t.signal == VERIFICATION})
    was = f"check {', '.join(found)}" if found else "no verification"
    return (f"the collection's engine calibration was measured with {was}, and this version's check is "
            f"{CHECK_VERSION}: the shipped calibration is used until 'robusthash db calibrate --engine' is run again")


@lru_cache(maxsize=4)
def _parsed(text: str) -> Calibration:  # the service builds an engine per request
    return Calibration.parse(text, f"the database's {KEY}")


def calibrate_collection(ref: ReferenceDB, queries: int = 200, max_references: int = 20_000, nearest: int = 10,
                         sample: int = 40, seed: int = 0, features: FeatureConfig = DEFAULT_FEATURES,
                         progress: Callable[[str, int, int], None] | None = None) -> Measured:
    """Measure the engine's tails on ``ref``'s registered images (see the module doc) and
    store them. Raises ValueError when the collection is too small or its files cannot
    be read."""
    rng = np.random.default_rng(seed)
    methods = list(ref.methods)
    codes: dict[str, dict[int, bytes]] = {}
    for m in methods:
        hasher = ref.hashers[m]
        codes[m] = {r.image_id: r.bits for batch in ref.store.hashes(m, hasher.version) for r in batch
                    if r.segment == 0}
    ids = sorted(set.intersection(*(set(c) for c in codes.values()))) if codes else []
    if len(ids) > max_references:
        ids = sorted(rng.choice(ids, size=max_references, replace=False).tolist())
    stored = ref.stored_features(ids)
    ids = [i for i in ids if i in stored]
    if len(ids) < 30:
        raise ValueError(f"calibrating the engine needs at least 30 registered images with local features, "
                         f"found {len(ids)}")
    order = rng.permutation(len(ids))
    asked, examined = [], []
    for n in order:
        if len(asked) == queries:
            break
        record = ref.store.image(ids[n])
        if record is None:  # removed meanwhile
            continue
        try:
            found = ref.examine(record.source, methods, features=features)
        except (ImageError, OSError, ValueError):
            continue  # a file moved or gone: it stays a reference, it is not asked
        asked.append(int(n))
        examined.append(found)
        if progress:
            progress("examining", len(asked), queries)
    if len(asked) < 10:
        raise ValueError(f"only {len(asked)} registered files could be read again as queries; calibrating needs "
                         f"their files where they were registered from")
    # A method hashing parts (segments) has no one distance per pair: verification covers it.
    methods = [m for m in methods if all(isinstance(e.hashes.get(m), Hash) for e in examined)]
    distances = {}
    for m in methods:
        packed = np.stack([np.frombuffer(codes[m][i], dtype=np.uint8) for i in ids])
        variants = [[v.data for v in (e.hashes[m], *e.variants.get(m, [])) if isinstance(v, Hash)] for e in examined]
        distances[m] = nearest_variant_matrix(variants, packed) / ref.hashers[m].bits
    distinct = np.ones((len(asked), len(ids)), dtype=bool)
    distinct[np.arange(len(asked)), asked] = False
    originals = {}

    def inliers(pairs: list[tuple[int, int]]) -> np.ndarray:
        out = np.zeros(len(pairs))
        for n, (row, col) in enumerate(pairs):
            if col not in originals:
                originals[col] = LocalFeatures.from_bytes(stored[ids[col]])
            plain, mirrored = examined[row].local_features
            out[n] = verify(plain, originals[col], mirrored, features).inliers
            if progress and n % 200 == 0:
                progress("verifying", n, len(pairs))
        return out

    versions = {m: ref.hashers[m].version for m in methods}
    # Each query's stratum, measured on the query itself as the engine measures it.
    dark = np.array([query_darkness(e.decoded) for e in examined])
    measured = calibrate_by_stratum(distances, distinct, versions, inliers, CHECK_VERSION, dark, nearest, sample,
                                    seed, provenance={"split": "collection", "references": len(ids),
                                                      "queries": len(asked)})
    ref.store.set_meta(KEY, measured.calibration.to_json())
    return measured


def too_coarse(calibration: Calibration, rate: float) -> str | None:
    """Why ``calibration`` cannot support the false-match ``rate`` by measurement alone
    (it rests on the tails' fitted lines there), or None."""
    tail = calibration.tail(VERIFICATION, CHECK_VERSION)
    if tail is None:
        return "it has no verification tail"
    measured = resolution(tail)
    if measured > rate:
        stand_for = calibration.provenance.get("verified_pairs_stand_for") or tail.pairs
        return (f"its {stand_for:,} distinct pairs measure rates down to {measured:.1e}; {rate:.0e} rests on the "
                f"tails' fitted lines (about {20 / rate:,.0f} distinct pairs would measure it: more queries or a "
                f"larger collection)")
    return None
