"""A quick look at ``segments`` against whole-image ``cmaa`` on train photos that the
threshold was not calibrated on (reported results come from the test split).

    .venv/bin/python benchmarks/segments_train_check.py --corpus corpus [--images 100]

The photos are every k-th of train.txt from the second on (k = len / 200), so none of
the 200 that benchmarks/segments_threshold.py calibrates on (every k-th from the first).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from robusthash import attacks, get_hasher
from robusthash.synth.corpus import Corpus

ATTACKS = ("RT(20)", "CROP(0.5)+RT(20)", "CROP(0.5)+RT(-20)", "CROP(0.25)+RT(20)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    every = Corpus(args.corpus).train()
    names = every[1:: max(1, len(every) // 200)][: args.images]
    photos = [Image.open(p).convert("RGB") for p in names]
    hashers = {m: get_hasher(m) for m in ("segments", "cmaa")}
    originals = {m: h.hash_pils(photos) for m, h in hashers.items()}
    print(f"{len(photos)} train photos; share of copies matched by each method's default rule")
    print("| attack | segments | cmaa |\n|---|---:|---:|")
    for spec in ATTACKS:
        copies = [attacks.parse(spec)(im, seed=1) for im in photos]
        found = {m: np.mean([h.matches(c, o) for c, o in zip(h.hash_pils(copies), originals[m])])
                 for m, h in hashers.items()}
        print(f"| {spec} | {found['segments']:.2f} | {found['cmaa']:.2f} |")
    for m, h in hashers.items():
        pairs = [h.matches(a, b) for i, a in enumerate(originals[m]) for b in originals[m][i + 1:]]
        print(f"false matches among distinct photos, {m}: {np.mean(pairs):.4f} of {len(pairs)} pairs")


if __name__ == "__main__":
    main()
