"""The default threshold of the ``segments`` method, from the train split.

    .venv/bin/python benchmarks/segments_threshold.py --corpus corpus [--images 200]

Hashes the first N photos of corpus/train.txt with ``segments``; for every distinct
pair takes the distance of its closest pair of parts (whole image or objects), and
prints the threshold at 1% false positives, and how many parts photos have.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from robusthash import get_hasher
from robusthash.evaluation.metrics import hamming_matrix, threshold_at_fpr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--fpr", type=float, default=0.01)
    args = parser.parse_args()
    hasher = get_hasher("segments")
    names = (args.corpus / "train.txt").read_text().split()[: args.images]
    start = time.perf_counter()
    multis = [hasher.hash(args.corpus / name) for name in names]
    seconds = (time.perf_counter() - start) / len(names)
    owner = np.concatenate([[i] * len(m) for i, m in enumerate(multis)])
    packed = np.stack([np.frombuffer(h.data, np.uint8) for m in multis for h in m.hashes])
    parts = hamming_matrix(packed, packed)
    n = len(multis)
    closest = np.full((n, n), np.iinfo(np.int64).max)
    for i in range(n):
        rows = parts[owner == i]
        for j in range(i + 1, n):
            closest[i, j] = rows[:, owner == j].min()
    distinct = closest[np.triu_indices(n, 1)]
    tau = threshold_at_fpr(distinct, args.fpr)
    counts = np.array([len(m) for m in multis])
    print(f"{n} train photos, {seconds * 1000:.0f} ms each; parts per photo: mean {counts.mean():.1f}, "
          f"max {counts.max()}; closest-part distance of distinct pairs: mean {distinct.mean() / hasher.bits:.4f}")
    print(f"τ at {args.fpr:.0%} FPR: {tau:.0f} bits = NHD {np.floor(tau) / hasher.bits:.6f}")


if __name__ == "__main__":
    main()
