"""Derive the default decision thresholds of the classical hashers from the train split.

    .venv/bin/python benchmarks/default_thresholds.py --corpus corpus [--images 400]

For each method: hash the first N images of corpus/train.txt, take the normalised
Hamming distances of all distinct pairs, and print the threshold at 1% false
positives. The printed values are the `threshold` constants of the hashers (the
reference database recalibrates per collection; this is only the default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from robusthash import get_hasher
from robusthash.evaluation.metrics import pairwise_nhd, threshold_at_fpr
from robusthash.synth.corpus import Corpus

METHODS = ("blockhash", "phash", "dhash", "ahash", "whash", "pdq", "forbild")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--fpr", type=float, default=0.01)
    args = parser.parse_args()
    names = Corpus(args.corpus).train()[: args.images]
    print(f"| method | μ NHD | σ | τ at {args.fpr:.0%} FPR | bits |")
    print("|---|---|---|---|---|")
    for method in METHODS:
        hasher = get_hasher(method)
        bits = np.array([hasher.hash(path).bits for path in names])
        distances = pairwise_nhd(bits)
        tau = threshold_at_fpr(distances, args.fpr)
        print(f"| {method} | {distances.mean():.4f} | {distances.std():.4f} | {tau:.4f} | {round(tau * hasher.bits)} |")


if __name__ == "__main__":
    main()
