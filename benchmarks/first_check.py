"""The verification's first check (``compare.features.worth_matching``): how many distinct
pairs each threshold lets through to a full match, and which copies it would stop, on
the corpus train split only.

    .venv/bin/python benchmarks/first_check.py --corpus corpus --photos 100   # about 3 min, 2 cores

Queries: ``--photos`` train photos (evenly spaced), as they are and under the engine
calibration's attacks (``evaluation.identify_calibration.ATTACKS``), JPEG-encoded and
decoded as a query is. Each is checked against its own original (a copy) and against
distinct originals (another artwork): its ``--nearest`` nearest by cmaa among every
train photo (the candidates the engine verifies, where distinct pairs resemble most)
and ``--random`` others. Every pair is matched in full in both orientations (the query
and its mirror image), and each orientation's first-check count is recorded: the
ratio-test matches of every ``first_check_every``-th original descriptor among the
query's.

Reported per threshold t: the share of distinct orientations with a count ≥ t (those
matched in full), nearest and random apart, and the copies that a threshold stops (the
count of the orientation that verified below t), by the inliers the full match finds.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
from dataclasses import replace
from pathlib import Path

import numpy as np

from robusthash.attacks import parse
from robusthash.compare.features import DEFAULT_FEATURES, first_check_count, local_features, verify
from robusthash.db.ingest import FEATURES_DECODE, QUERY_FEATURES_DECODE
from robusthash.evaluation.identify_calibration import ATTACKS, train_queries
from robusthash.hashing import get_hasher
from robusthash.hashing.base import DecodedImage
from robusthash.io import load_pil
from robusthash.synth.corpus import Corpus

THRESHOLDS = (3, 4, 5, 6, 8, 10)
BANDS = ((8, 15), (15, 25), (25, 40), (40, 80), (80, 10**6))
FULL = replace(DEFAULT_FEATURES, first_check_every=1)  # every pair matched in full


def sampled_count(query: np.ndarray, original: np.ndarray) -> int:
    """The first check's count (a huge one where the original has too few descriptors to
    sample: the check then matches in full)."""
    if len(query) < 2 or len(original[:: DEFAULT_FEATURES.first_check_every]) < 2:
        return 10**6
    return first_check_count(query, original)


def query_jpeg(task: tuple[str, str | None, int]) -> bytes:
    """A query's file: the photo (attacked) as a JPEG at quality 90."""
    path, spec, seed = task
    im = load_pil(path)
    if spec is not None:
        im = parse(spec)(im, seed=seed)
    buffer = io.BytesIO()
    im.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


_STATE: dict = {}


def checked(task: tuple[bytes, list[tuple[int, str]]]) -> list[tuple[int, int, int]]:
    """(kind, inliers, count of the verified orientation or the larger count) per pair."""
    grey = DecodedImage(task[0]).decoded(QUERY_FEATURES_DECODE)
    query, mirrored = local_features(grey, query=True), local_features(grey, mirrored=True, query=True)
    rows = []
    for kind, path in task[1]:
        if path not in _STATE:
            _STATE[path] = local_features(DecodedImage(Path(path)).decoded(FEATURES_DECODE))
        original = _STATE[path]
        found = verify(query, original, mirrored, FULL)
        counts = (sampled_count(query.descriptors, original.descriptors),
                  sampled_count(mirrored.descriptors, original.descriptors))
        if kind == 0:
            rows.append((0, found.inliers, counts[found.flipped]))
        else:
            rows.extend((kind, found.inliers, c) for c in counts)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--nearest", type=int, default=10)
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    references, art, chosen, tasks = train_queries(Corpus(args.corpus), args.photos)
    cmaa = get_hasher("cmaa")
    reference_bits = np.stack([np.unpackbits(np.frombuffer(cmaa.hash(p).data, dtype=np.uint8)) for p in references])
    rng = np.random.default_rng(0)
    work = []
    for n, task in enumerate(tasks):
        owner = chosen[n // (len(ATTACKS) + 1)]
        data = query_jpeg(task)
        query_bits = np.unpackbits(np.frombuffer(cmaa.hash(data).data, dtype=np.uint8))
        distance = np.count_nonzero(reference_bits != query_bits, axis=1)
        distinct = np.flatnonzero(art != art[owner])
        nearest = distinct[np.argsort(distance[distinct], kind="stable")[: args.nearest]]
        others = rng.choice(np.setdiff1d(distinct, nearest), args.random, replace=False)
        work.append((data, [(0, str(references[owner]))] + [(1, str(references[j])) for j in nearest]
                     + [(2, str(references[j])) for j in others]))
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        rows = np.array([r for rs in pool.map(checked, work, chunksize=4) for r in rs])
    kind, inliers, count = rows.T
    copies = kind == 0
    print(f"{len(tasks)} queries ({args.photos} train photos × {len(ATTACKS) + 1}); "
          f"distinct orientations: {np.sum(kind == 1)} nearest by cmaa, {np.sum(kind == 2)} random\n")
    print("| threshold | distinct matched in full: nearest | random | copies stopped, by inliers: "
          + " | ".join(f"{lo}-{hi - 1}" if hi < 10**6 else f"{lo}+" for lo, hi in BANDS) + " |")
    print("|---:|---:|---:|" + "---:|" * len(BANDS))
    for t in THRESHOLDS:
        stopped = [int(np.sum(copies & (count < t) & (inliers >= lo) & (inliers < hi))) for lo, hi in BANDS]
        print(f"| {t} | {np.mean(count[kind == 1] >= t):.3f} | {np.mean(count[kind == 2] >= t):.3f} | "
              + " | ".join(f"{s} of {int(np.sum(copies & (inliers >= lo) & (inliers < hi)))}"
                           for s, (lo, hi) in zip(stopped, BANDS)) + " |")


if __name__ == "__main__":
    main()
