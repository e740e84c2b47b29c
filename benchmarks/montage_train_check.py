"""How often both sources of a montage are found, on train photos and train cut-outs (a
quick look for tuning; the reported evaluation, on the test split, is
``python -m robusthash.evaluation.segments_report``, which this shares its code with).

    .venv/bin/python benchmarks/montage_train_check.py --corpus corpus [--montages 50]

Registers N train photos and the train cut-outs (each flattened on white), then queries
N montages (cut-out i pasted into photo i+1, random scale 0.3–0.6, angle ±30°, position)
and counts how often the photo, the object, both, and the montage flag are found.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from robusthash import get_hasher
from robusthash.evaluation.segments_report import montage_rows, reduced, register_paper_variants
from robusthash.synth.corpus import Corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--montages", type=int, default=50)
    parser.add_argument("--methods", default="segments,segments-forbild-removed")
    args = parser.parse_args()
    register_paper_variants()
    corpus = Corpus(args.corpus)
    every = corpus.train()
    names = every[:: max(1, len(every) // (args.montages + 1))][: args.montages + 1]  # spread over the sources
    photos = [reduced(Image.open(p)) for p in names]
    cutouts = [Image.open(p).convert("RGBA") for p in corpus.objects("train")]
    methods = {m: get_hasher(m) for m in args.methods.split(",")}
    montage_rows(methods, photos, cutouts[: args.montages], args.montages, print)


if __name__ == "__main__":
    main()
