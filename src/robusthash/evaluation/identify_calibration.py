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
inliers of ``--verify`` random distinct references per query. Each signal's tail is
fitted (:func:`robusthash.identify.calibration.fit_tail`) and written with how it was
made. The test split is never read.
"""

from __future__ import annotations

import argparse
import multiprocessing
from dataclasses import asdict
import sys
import time
from pathlib import Path

import numpy as np

from ..attacks import parse
from ..compare.features import DEFAULT_FEATURES, VERSION, LocalFeatures, local_features, verify
from ..db.ingest import FEATURES_DECODE, QUERY_FEATURES_DECODE
from ..files import evenly_spaced
from ..hashing import Hash, get_hasher
from ..hashing.base import DecodedImage
from ..identify.calibration import VERIFICATION, Calibration, fit_tail
from ..io import ImageError, load_pil
from ..measure import hamming_matrix
from ..synth.corpus import Corpus

ATTACKS = ("JC(30)", "RS(0.5)", "GF(5)", "BA(1.3)", "RT(10)", "FL(H)", "CROP(0.7)", "PAD(0.1)", "ST(0)",
           "SA(1)", "RT(90)+JC(70)", "CROP(0.5)+RS(0.7)")
METHODS = "forbild,pdq,cmaa,aria,blockhash,phash"

_STATE: dict = {}


def _init(methods: list[str]) -> None:
    _STATE["hashers"] = [get_hasher(m) for m in methods]


def _hash_query(task: tuple[str, str | None, int]) -> tuple[list[list[np.ndarray]], bytes, bytes] | None:
    """A query's packed bits per method (every variant) and its local features (plain,
    mirrored), decoded as the database decodes a query (from JPEG bytes)."""
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
        values = [hasher.hash_pil(pil), *hasher.query_variants(pil)]
        bits.append([v.data for v in values if isinstance(v, Hash)])
    grey = decoded.decoded(QUERY_FEATURES_DECODE)
    return (bits, local_features(grey, query=True).to_bytes(),
            local_features(grey, mirrored=True, query=True).to_bytes())


def _hash_reference(path: str) -> tuple[list[bytes], bytes] | None:
    try:
        decoded = DecodedImage(Path(path))
    except ImageError:
        return None
    bits = [h.hash_pil(decoded.for_hasher(h)).data for h in _STATE["hashers"]]
    return bits, local_features(decoded.decoded(FEATURES_DECODE)).to_bytes()


def _verify(task: tuple[bytes, bytes, list[bytes]]) -> list[int]:
    plain, mirrored = LocalFeatures.from_bytes(task[0]), LocalFeatures.from_bytes(task[1])
    return [verify(plain, LocalFeatures.from_bytes(r), mirrored).inliers for r in task[2]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the calibration JSON to write")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--queries", type=int, default=250, help="train photos made into queries")
    parser.add_argument("--verify", type=int, default=40, help="random distinct references verified per query")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.time()
    methods = args.methods.split(",")
    corpus = Corpus(args.corpus)
    references = corpus.train()
    artworks = corpus.artworks()
    art = np.array([artworks.get(p, str(p)) for p in references])
    chosen = evenly_spaced(list(range(len(references))), args.queries)
    tasks = [(str(references[i]), spec, i) for i in chosen for spec in (None, *ATTACKS)]
    owners = np.array([i for i in chosen for _ in (None, *ATTACKS)])
    context = multiprocessing.get_context("fork")
    with context.Pool(args.workers, _init, (methods,)) as pool:
        print(f"hashing {len(references)} references and {len(tasks)} queries ({len(chosen)} photos × "
              f"{len(ATTACKS) + 1})", file=sys.stderr)
        refs = pool.map(_hash_reference, map(str, references), chunksize=8)
        queries = pool.map(_hash_query, tasks, chunksize=4)
        kept = [i for i, r in enumerate(refs) if r is not None]
        asked = [i for i, q in enumerate(queries) if q is not None]
        rng = np.random.default_rng(args.seed)
        verify_tasks, verify_owner = [], []
        for qi in asked:
            others = [j for j in kept if art[j] != art[owners[qi]]]
            picks = rng.choice(len(others), size=min(args.verify, len(others)), replace=False)
            verify_tasks.append((queries[qi][1], queries[qi][2], [refs[others[p]][1] for p in picks]))
            verify_owner.append(qi)
        print(f"verifying {sum(len(t[2]) for t in verify_tasks)} distinct pairs", file=sys.stderr)
        inliers = np.concatenate([np.array(r) for r in pool.map(_verify, verify_tasks, chunksize=4)])

    tails = [fit_tail(VERIFICATION, VERSION, inliers, smaller_is_extreme=False)]
    distinct_pairs = {}
    for m, name in enumerate(methods):
        hasher = get_hasher(name)
        ref_bits = np.stack([np.frombuffer(refs[j][0][m], dtype=np.uint8) for j in kept])
        best = None
        for variant in range(max(len(queries[qi][0][m]) for qi in asked)):
            rows = np.stack([np.frombuffer(queries[qi][0][m][min(variant, len(queries[qi][0][m]) - 1)], dtype=np.uint8)
                             for qi in asked])
            d = hamming_matrix(rows, ref_bits)
            best = d if best is None else np.minimum(best, d)
        distinct = art[owners[asked]][:, None] != art[kept][None, :]
        values = best[distinct] / hasher.bits
        distinct_pairs[name] = int(values.size)
        tails.append(fit_tail(name, hasher.version, values, smaller_is_extreme=True))
    provenance = {
        "command": "python -m robusthash.evaluation.identify_calibration " + " ".join(argv or sys.argv[1:]),
        "split": "train", "references": len(kept), "queries": len(asked), "attacks": list(ATTACKS),
        "distinct_pairs": {VERIFICATION: int(inliers.size), **distinct_pairs},
        "features": {"kind": "orb", "version": VERSION, **asdict(DEFAULT_FEATURES)},
        "seconds": round(time.time() - started),
    }
    calibration = Calibration(tuple(tails), provenance)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(calibration.to_json())
    print(f"wrote {args.out} ({provenance['seconds']} s)")
    for t in tails:
        probes = (25, 50) if t.signal == VERIFICATION else (0.05, 0.1, 0.2)
        rates = ", ".join(f"p({x:g}) = {t.p(x):.2e}" for x in probes)
        print(f"  {t.signal} {t.version}: {t.pairs} distinct pairs; last knot {t.knots[-1]}; {rates}")


if __name__ == "__main__":
    main()
