"""The default threshold of the ``segments`` method, from the train split.

    .venv/bin/python benchmarks/segments_threshold.py --corpus corpus [--images 200]

Hashes the first N photos of corpus/train.txt and M train cut-outs (flattened on white,
as a registered cut-out is) with ``segments``; for each kind of part (pictures: the
whole image and colour segments; objects: cut out on white) and every distinct pair of
images that both have such parts, takes the distance of their closest pair, and prints
the threshold at 1% false positives of those pairs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from robusthash import get_hasher
from robusthash.evaluation.metrics import hamming_matrix, threshold_at_fpr
from robusthash.segments.hasher import kind_of
from robusthash.synth.corpus import Corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--cutouts", type=int, default=100)
    parser.add_argument("--fpr", type=float, default=0.01)
    args = parser.parse_args()
    hasher = get_hasher("segments")
    corpus = Corpus(args.corpus)
    every = corpus.train()
    names = every[:: max(1, len(every) // args.images)][: args.images]  # every k-th: train.txt is sorted by source
    start = time.perf_counter()
    multis = [hasher.hash(path) for path in names]
    seconds = (time.perf_counter() - start) / len(names)
    cutouts = corpus.objects("train")
    multis += [hasher.hash(p) for p in cutouts[: args.cutouts]]  # the loader composites them on white
    n = len(multis)
    print(f"{len(names)} train photos ({seconds * 1000:.0f} ms each) and {n - len(names)} train cut-outs; "
          f"parts per image: mean {np.mean([len(m) for m in multis]):.1f}, max {max(len(m) for m in multis)}")
    closest, taus = {}, {}
    for kind in ("picture", "object"):
        owner = np.array([i for i, m in enumerate(multis) for h in m.hashes if kind_of(h) == kind])
        packed = np.stack([np.frombuffer(h.data, np.uint8) for m in multis for h in m.hashes if kind_of(h) == kind])
        parts = hamming_matrix(packed, packed)
        closest[kind] = np.full((n, n), np.inf)
        for i in np.unique(owner):
            rows = parts[owner == i]
            for j in np.unique(owner[owner > i]):
                closest[kind][i, j] = rows[:, owner == j].min()
        distinct = closest[kind][np.isfinite(closest[kind])]
        taus[kind] = np.floor(threshold_at_fpr(distinct, args.fpr))
        print(f"{kind} parts: {len(np.unique(owner))} images have them; closest pair of distinct images: mean "
              f"{distinct.mean():.1f} bits; τ at {args.fpr:.0%} FPR of their pairs: {taus[kind]:.0f} bits")
    # The rule as SegmentsHasher applies it: object distances stretched by the ratio of
    # the two, one threshold over all distinct pairs.
    stretch = taus["picture"] / taus["object"]
    pairs = np.minimum(closest["picture"], closest["object"] * stretch)[np.triu_indices(n, 1)]
    tau = np.floor(threshold_at_fpr(pairs, args.fpr))
    print(f"both kinds, objects stretched × {stretch:.3f}: τ at {args.fpr:.0%} FPR of all {len(pairs)} pairs = "
          f"{tau:.0f} bits for pictures, {tau / stretch:.1f} for objects")
    shipped_picture = round(hasher.threshold * hasher.bits)
    shipped_object = int(shipped_picture / hasher.object_stretch + 1e-9)
    false = (closest["picture"] <= shipped_picture) | (closest["object"] <= shipped_object)
    print(f"the shipped rule (pictures ≤ {shipped_picture} bits, objects ≤ {shipped_object}): "
          f"FPR {false[np.triu_indices(n, 1)].mean():.2%} of all {len(pairs)} pairs")


if __name__ == "__main__":
    main()
