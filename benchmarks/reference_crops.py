"""How often a learned method ranks a crop's original among its 20 nearest references
by the whole image's hash, among its 10 nearest by the crops stored beside each
reference (``BaseHasher.reference_crops``, docs/database.md "Crops stored beside a
hash"), and either (the engine's candidates: ``most_per_method``, ``per_crop``).

    .venv/bin/python benchmarks/reference_crops.py --corpus corpus [--method cmaa] [--every 10]

References: every train photo and a crop of each (``CROP(0.6)``, as the identification
report's distractors). Queries: crops of every ``--every``-th train photo, at this
benchmark's own places and areas. By the whole hash, the original's rank among every other
reference (photos and distractor crops); by crops, its nearest crop's rank among the other
photos' nearest crops (each index ranks by Hamming distance); the distractor crop of the
queried photo is left out (it is the same picture).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from robusthash.attacks import parse
from robusthash.synth.corpus import Corpus
from robusthash.hashing import get_hasher
from robusthash.io import load_pil

QUERIES = ("CROP(0.5)", "CROP(0.4,0.3,0.6)", "CROP(0.6,0.8,0.2)", "CROP(0.7,0,0)", "CROP(0.7,1,1)", "CROP(0.7,1,0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--method", default="cmaa")
    parser.add_argument("--every", type=int, default=10, help="query crops of every n-th train photo")
    parser.add_argument("--top", type=int, default=20, help="the candidates a method offers by its whole hash "
                                                              "(most_per_method)")
    parser.add_argument("--by-crop", type=int, default=10, help="the candidates it offers through crops (per_crop)")
    args = parser.parse_args()
    hasher = get_hasher(args.method)
    started = time.perf_counter()
    photos = [load_pil(p).convert("RGB") for p in Corpus(args.corpus).train()]

    def bits(im) -> np.ndarray:
        return np.unpackbits(np.frombuffer(hasher.hash_pil(im).data, dtype=np.uint8))

    whole = np.array([bits(im) for im in photos])
    distractors = np.array([bits(parse("CROP(0.6)")(im)) for im in photos])
    stored = np.array([[np.unpackbits(np.frombuffer(h.data, dtype=np.uint8)) for h in hasher.reference_crops(im)]
                       for im in photos])
    print(f"{len(photos)} train photos and a crop of each, {args.method} with {stored.shape[1]} stored crops; "
          f"{time.perf_counter() - started:.0f} s\n")
    print(f"| query | n | among the {args.top} nearest by the whole hash | among the {args.by_crop} nearest by a crop | "
          f"either |\n|---|---:|---:|---:|---:|")
    for spec in QUERIES:
        alone, cropped, by_crop = [], [], []
        for i in range(0, len(photos), args.every):
            query = bits(parse(spec)(photos[i]))
            to_whole, to_distractor = (whole != query).sum(1), (distractors != query).sum(1)
            alone.append((np.concatenate([np.delete(to_whole, i), np.delete(to_distractor, i)]) < to_whole[i]).sum())
            to_crops = (stored != query).sum(2).min(1)
            by_crop.append((np.delete(to_crops, i) < to_crops[i]).sum())
        whole_ok, crop_ok = np.array(alone) < args.top, np.array(by_crop) < args.by_crop
        print(f"| `{spec}` | {len(alone)} | {whole_ok.mean():.2f} | {crop_ok.mean():.2f} | "
              f"{(whole_ok | crop_ok).mean():.2f} |")


if __name__ == "__main__":
    main()
