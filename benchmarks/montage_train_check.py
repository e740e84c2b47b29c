"""How often both sources of a montage are found, on train photos (a quick look; the
reported evaluation will use the test split).

    .venv/bin/python benchmarks/montage_train_check.py --corpus corpus [--montages 50]

Registers N train photos and N corpus objects (each flattened on white) in a temporary
database per variant of the ``segments`` method, then queries N montages (object i
pasted into photo i+1, random scale 0.3–0.6, angle ±30°, position) and counts how
often the photo, the object, both, and the montage flag are found.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from robusthash.db.reference import ReferenceDB
from robusthash.hashing.base import register
from robusthash.segments import Background, SegmentsHasher
from robusthash.segments.montage import random_montage

VARIANTS = {"segments": ("cmaa", Background.kept), "segments-forbild-removed": ("forbild", Background.removed)}


def variant(name: str, method: str, background: Background) -> None:
    class Variant(SegmentsHasher):
        def __init__(self, **kwargs):
            super().__init__(object_method=method, background=background, **kwargs)

    Variant.name = name
    register(Variant, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--montages", type=int, default=50)
    args = parser.parse_args()
    n = args.montages
    photos = [args.corpus / p for p in (args.corpus / "train.txt").read_text().split()[-(n + 1):]]
    objects = sorted((args.corpus / "objects").glob("*.png"))[:n]
    for name, (method, background) in VARIANTS.items():
        if name != "segments":
            variant(name, method, background)
        with tempfile.TemporaryDirectory() as tmp:
            flat = []
            for path in objects:
                cut = Image.open(path).convert("RGBA")
                white = Image.new("RGB", cut.size, (255, 255, 255))
                white.paste(cut, (0, 0), cut)
                flat.append(Path(tmp) / path.name)
                white.save(flat[-1])
            db = ReferenceDB(Path(tmp) / "refs.sqlite", methods=[name])
            db.add(photos[1:] + flat)
            rng = np.random.default_rng(0)
            found = {"photo": 0, "object": 0, "both": 0, "montage flag": 0}
            for i in range(n):
                montage, _ = random_montage(Image.open(photos[i + 1]).convert("RGB"),
                                            Image.open(objects[i]).convert("RGBA"), rng)
                result = db.query(montage, [name])[0]
                sources = {Path(m.image.source).name for m in result.matched}
                got_photo, got_object = photos[i + 1].name in sources, objects[i].name in sources
                found["photo"] += got_photo
                found["object"] += got_object
                found["both"] += got_photo and got_object
                found["montage flag"] += result.montage
            print(f"{name}: " + ", ".join(f"{k} {v / n:.2f}" for k, v in found.items()) + f" ({n} montages)", flush=True)


if __name__ == "__main__":
    main()
