"""The identification engine's calibration: how rare each signal's evidence is between
distinct images, measured on the corpus train split (docs/identify.md).

    python -m robusthash.evaluation.identify_calibration --corpus corpus \\
        --out src/robusthash/data/identify-calibration.json

References: every train photo. Queries: ``--queries`` train photos, as they are and
under ``ATTACKS`` (a spread of Tables 1 and 2, the strong attack, crops and padding),
each hashed as the database hashes a query (with its variants: borders trimmed, PDQ's
rotations and flips; the nearest variant counts). Distinct pairs: a query against every
reference of another artwork (``Corpus.artworks``: one wallpaper's renditions are one
picture). For each method, the distance of every distinct pair; for verification, the
inliers of a stratified sample of them: each method's ``--nearest`` references to every
query, and ``--verify`` random others standing for the rest (``all``: every distinct
pair, each standing for itself, as ``make identify-calibration`` does). Each signal's
tail, and the joint tails, are fitted (:func:`robusthash.identify.calibration.calibrate`)
and written with how they were made.

**Strata** (:func:`robusthash.identify.calibration.calibrate_by_stratum`): the tails of
every query are measured on the train queries against the train references; each
stratum's (queries less than 60% dark: ``calibration.STRATA``) on its own queries
against every reference. ``--extra-queries N`` adds the ``--extra`` photos less the
validation share as references, and N of them as queries: natural photos, which the
train split holds few of. The test split and the validation share are never read.
"""

from __future__ import annotations

import argparse
import multiprocessing
from dataclasses import asdict, replace
import sys
import time
from pathlib import Path

import numpy as np

from ..attacks import parse
from ..compare.features import CHECK_VERSION, DEFAULT_FEATURES, LocalFeatures, local_features, verify
from ..runtime import one_query_at_a_time
from ..db.ingest import FEATURES_DECODE, QUERY_FEATURES_DECODE
from ..files import evenly_spaced
from ..hashing import Hash, get_hasher
from ..hashing.base import DecodedImage
from ..identify.calibration import VERIFICATION, calibrate_by_stratum, query_darkness
from ..io import ImageError, load_pil
from ..measure import nearest_variant_matrix
from ..synth.corpus import Corpus, validation_share

ATTACKS = ("JC(30)", "RS(0.5)", "GF(5)", "BA(1.3)", "RT(10)", "FL(H)", "CROP(0.7)", "PAD(0.1)", "ST(0)",
           "SA(1)", "RT(90)+JC(70)", "CROP(0.5)+RS(0.7)")
METHODS = "forbild,pdq,cmaa,aria,blockhash,phash"

_STATE: dict = {}


def _init(methods: list[str]) -> None:
    # Each worker process is one thread: FAISS's OpenMP threads, started for every small
    # search of the verification's first check, ran beside the other worker's (4 busy
    # threads on 2 cores; one run took over 20 min, 3.6 min on one thread each).
    one_query_at_a_time()
    _STATE["hashers"] = [get_hasher(m) for m in methods]


def _hash_query(task: tuple[str, str | None, int]) -> tuple[list[list[np.ndarray]], bytes, bytes, float] | None:
    """A query's packed bits per method (every variant), its local features (plain,
    mirrored) and its darkness (the stratum's measure), decoded as the database decodes a
    query (from JPEG bytes)."""
    import io

    path, spec, seed = task
    try:
        im = load_pil(path)
    except ImageError:
        return None
    if spec is not None:
        im = parse(spec)(im, seed=seed)
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=90)
    decoded = DecodedImage(buffer.getvalue())
    bits = []
    for hasher in _STATE["hashers"]:
        pil = decoded.for_hasher(hasher)
        value, variants = hasher.query_hashes(pil)
        values = [value, *variants]
        bits.append([v.data for v in values if isinstance(v, Hash)])
    grey = decoded.decoded(QUERY_FEATURES_DECODE)
    return (bits, local_features(grey, query=True).to_bytes(),
            local_features(grey, mirrored=True, query=True).to_bytes(), query_darkness(decoded))


def _hash_reference(path: str) -> tuple[list[bytes], bytes] | None:
    try:
        decoded = DecodedImage(Path(path))
    except ImageError:
        return None
    bits = [h.hash_pil(decoded.for_hasher(h)).data for h in _STATE["hashers"]]
    return bits, local_features(decoded.decoded(FEATURES_DECODE)).to_bytes()


def _verify(task: tuple[bytes, bytes, list[bytes]]) -> list[tuple[int, int, float]]:
    """(inliers, ratio-test matches, share of the original covered) per reference."""
    plain, mirrored = LocalFeatures.from_bytes(task[0]), LocalFeatures.from_bytes(task[1])
    found = (verify(plain, LocalFeatures.from_bytes(r), mirrored) for r in task[2])
    return [(v.inliers, v.matches, v.original_share) for v in found]


def train_queries(corpus: Corpus, photos: int, extra_photos: int = 0
                  ) -> tuple[list[Path], int, np.ndarray, list[int], list[tuple[str, str | None, int]]]:
    """The references (every train photo, then, with ``extra_photos``, every extra photo
    less the validation share), how many of them are train photos, each one's artwork,
    the indices of the photos made into queries (``photos`` train and ``extra_photos``
    extra ones, evenly spaced), and the queries: (path, attack or None for the photo as
    it is, seed), each chosen photo plain and under every attack."""
    train = corpus.train()
    # The validation share's rule, which its list (Corpus.validation) is written from.
    extra = [p for p in corpus.extra_train() if not validation_share(p)] if extra_photos else []
    if extra_photos and not extra:
        raise ValueError(f"{corpus.extra_train_list}: no extra photos; build the corpus with --extra")
    references = train + extra
    artworks = corpus.artworks()
    art = np.array([artworks.get(p, str(p)) for p in references])
    chosen = evenly_spaced(list(range(len(train))), photos) + \
        evenly_spaced(list(range(len(train), len(references))), extra_photos)
    return (references, len(train), art, chosen,
            [(str(references[i]), spec, i) for i in chosen for spec in (None, *ATTACKS)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the calibration JSON to write")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--queries", type=int, default=250, help="train photos made into queries")
    parser.add_argument("--nearest", type=int, default=10,
                        help="per query, each method's nearest distinct references are all verified")
    parser.add_argument("--extra-queries", type=int, default=0,
                        help="extra photos (less the validation share) made into queries; with any, every one of "
                             "them is a reference too (for the strata's tails)")
    parser.add_argument("--verify", default="40",
                        help="random other distinct references verified per query, or 'all': every distinct pair, "
                             "each standing for itself")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=Path, default=None,
                        help="also write every verified pair's statistics here (.npz), each query's against its "
                             "own original included (for designing and checking the joint score)")
    args = parser.parse_args(argv)
    started = time.time()
    methods = args.methods.split(",")
    hashers = {name: get_hasher(name) for name in methods}
    if args.verify != "all" and not args.verify.isdigit():
        parser.error(f"--verify {args.verify}: a number of references, or 'all'")
    references, trained, art, chosen, tasks = train_queries(Corpus(args.corpus), args.queries, args.extra_queries)
    sample = len(references) if args.verify == "all" else int(args.verify)
    owners = np.array([i for i in chosen for _ in (None, *ATTACKS)])
    context = multiprocessing.get_context("fork")
    with context.Pool(args.workers, _init, (methods,)) as pool:
        print(f"hashing {len(references)} references ({trained} train) and {len(tasks)} queries "
              f"({len(chosen)} photos × {len(ATTACKS) + 1})", file=sys.stderr)
        refs = pool.map(_hash_reference, map(str, references), chunksize=8)
        queries = pool.map(_hash_query, tasks, chunksize=4)
        kept = [i for i, r in enumerate(refs) if r is not None]
        asked = [i for i, q in enumerate(queries) if q is not None]
        # Each method's distance (the nearest of a query's variants) for every query × reference.
        distances = {}
        for m, name in enumerate(methods):
            ref_bits = np.stack([np.frombuffer(refs[j][0][m], dtype=np.uint8) for j in kept])
            nearest = nearest_variant_matrix([queries[qi][0][m] for qi in asked], ref_bits)
            distances[name] = nearest / hashers[name].bits
        distinct = art[owners[asked]][:, None] != art[kept][None, :]

        def checked(pairs: list[tuple[int, int]]) -> np.ndarray:
            """(inliers, matches, original share) of each (query row, reference row) pair."""
            by_query: dict[int, list[int]] = {}
            for n, (row, _) in enumerate(pairs):
                by_query.setdefault(row, []).append(n)
            work = [(queries[asked[row]][1], queries[asked[row]][2], [refs[kept[pairs[n][1]]][1] for n in ns])
                    for row, ns in by_query.items()]
            print(f"verifying {len(pairs)} pairs", file=sys.stderr)
            out = np.zeros((len(pairs), 3))
            for ns, found in zip(by_query.values(), pool.map(_verify, work, chunksize=4)):
                out[ns] = np.array(found, dtype=np.float64).reshape(-1, 3)
            return out

        found: dict[tuple[int, int], np.ndarray] = {}  # every distinct pair verified, for --pairs

        def verified_inliers(pairs: list[tuple[int, int]]) -> np.ndarray:
            out = checked(pairs)
            if args.pairs is not None:
                found.update(zip(pairs, out))
            return out[:, 0]

        # Every query's tails on the train queries against the train references; the
        # strata's on their queries against every reference.
        every = (np.array([row for row, qi in enumerate(asked) if owners[qi] < trained], dtype=np.int64),
                 np.array([col for col, j in enumerate(kept) if j < trained], dtype=np.int64))
        dark = np.array([queries[qi][3] for qi in asked])
        measured = calibrate_by_stratum(distances, distinct, {m: hashers[m].version for m in methods},
                                        verified_inliers, CHECK_VERSION, dark, args.nearest, sample, args.seed,
                                        every)
        position = {j: n for n, j in enumerate(kept)}
        own = [(row, position[owners[qi]]) for row, qi in enumerate(asked) if owners[qi] in position] \
            if args.pairs is not None else []
        own_stats = checked(own) if own else np.zeros((0, 3))
    provenance = {
        "command": "python -m robusthash.evaluation.identify_calibration " + " ".join(argv or sys.argv[1:]),
        "split": "train", "references": len(every[1]), "queries": len(every[0]),
        "extra_references": len(kept) - len(every[1]), "extra_queries": len(asked) - len(every[0]),
        "attacks": list(ATTACKS),
        "features": {"kind": "orb", "version": CHECK_VERSION, **asdict(DEFAULT_FEATURES)},
        "seconds": round(time.time() - started),
    } | measured.calibration.provenance
    calibration = replace(measured.calibration, provenance=provenance)
    if args.pairs is not None:
        weights = {(int(every[0][r]), int(every[1][c])): w for (r, c), w in zip(measured.pairs, measured.weights)}
        _write_pairs(args.pairs, found, weights, own, own_stats, distances, dark,
                     [(None, *ATTACKS)[i % (len(ATTACKS) + 1)] or "" for i in asked])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(calibration.to_json())
    print(f"wrote {args.out} ({provenance['seconds']} s)")
    for t in calibration.tails[: 1 + len(methods)]:
        probes = (10, 20) if t.signal == VERIFICATION else (0.05, 0.1, 0.2)
        rates = ", ".join(f"p({x:g}) = {t.p(x):.2e}" for x in probes)
        print(f"  {t.signal} {t.version}: {t.pairs} pairs; last knot {t.knots[-1]}; {rates}")
    for name, tails in [("every query", calibration), *((f"stratum {s.name}", s.calibration)
                                                        for s in calibration.strata)]:
        full = tails.tails[-1]
        print(f"  {name}, {full.signal}: {full.pairs} pairs; p(S=6) = {full.p(6):.2e}, p(S=8) = {full.p(8):.2e}, "
              f"p(S=10) = {full.p(10):.2e}")


def _write_pairs(path: Path, found: dict[tuple[int, int], np.ndarray], weights: dict[tuple[int, int], float],
                 own: list[tuple[int, int]], own_stats: np.ndarray, distances: dict[str, np.ndarray],
                 dark: np.ndarray, specs: list[str]) -> None:
    """Every verified pair's statistics: the distinct ones (``weight``: how many distinct
    pairs each stands for in the fit of every query's tails, NaN where it was verified
    for a stratum only), then each query against its own original (weight 1)."""
    pairs = list(found) + own
    rows = np.array([p[0] for p in pairs], dtype=np.int64)
    cols = np.array([p[1] for p in pairs], dtype=np.int64)
    both = np.concatenate([np.array(list(found.values())).reshape(-1, 3), own_stats])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, own=np.arange(len(pairs)) >= len(found),
                        weight=np.array([weights.get(p, np.nan) for p in found] + [1.0] * len(own)),
                        inliers=both[:, 0], matches=both[:, 1], original_share=both[:, 2], query=rows,
                        reference=cols, dark=dark[rows], attack=np.array([specs[r] for r in rows]),
                        **{f"distance_{m}": d[rows, cols] for m, d in distances.items()})


if __name__ == "__main__":
    main()
