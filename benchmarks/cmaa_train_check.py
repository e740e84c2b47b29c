"""A quick look at an exported model on the train split (for following a training run;
reported results come from ``robusthash bench`` on the test split).

    .venv/bin/python benchmarks/cmaa_train_check.py MODEL.onnx --corpus corpus [--images 150]

Hashes the last N photos of corpus/train.txt and one copy of each under a few attacks;
prints μ of the distinct-pair NHD, τ at 1% FPR on those pairs, and per attack the mean
NHD to the original and the share of copies within τ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from robusthash import attacks
from robusthash.evaluation.metrics import pairwise_hamming, threshold_at_fpr
from robusthash.hashing.learned import OnnxHasher
from robusthash.synth.corpus import Corpus

ATTACKS = ("JC(30)", "GN(0.05)", "RS(0.5)", "GF(9)", "RT(20)", "FL(H)", "SHR(X,0.3)", "TR(X,0.3)", "CROP(0.6)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--images", type=int, default=150)
    args = parser.parse_args()
    hasher = OnnxHasher(args.model)
    names = Corpus(args.corpus).train()[-args.images:]
    photos = [Image.open(p).convert("RGB") for p in names]
    originals = hasher.hash_pils(photos)
    packed = np.stack([np.frombuffer(h.data, np.uint8) for h in originals])
    distinct = pairwise_hamming(packed)
    tau = threshold_at_fpr(distinct, 0.01)
    print(f"{args.model.name}: μ {distinct.mean() / hasher.bits:.3f}, τ {tau:.0f} bits, {len(photos)} train photos")
    print("| attack | NHD_r | within τ |\n|---|---:|---:|")
    for spec in ATTACKS:
        copies = hasher.hash_pils([attacks.parse(spec)(im, seed=1) for im in photos])
        distances = np.array([c - o for c, o in zip(copies, originals)])
        print(f"| {spec} | {distances.mean() / hasher.bits:.3f} | {(distances <= tau).mean():.3f} |")


if __name__ == "__main__":
    main()
