"""What searching a query also with its picture straightened buys (issue 23/24, query
normalisation): a picture turned or in perspective on a plain ground, found by
``imaging.picture_quad`` and mapped upright (``db.ingest.straightened_variants``).

    .venv/bin/python benchmarks/straightened_variants.py --corpus corpus [--photos 100]

``--photos`` train photos are registered with ``--methods`` and local features; as many
other train photos are kept out. Queries, this benchmark's own placements (not the unseen
suite's attacks), each saved as a JPEG at quality 80:

* **turned on a ground**: the photo turned by a random angle on a canvas grown to hold
  it, the corners one of five ground colours;
* **in perspective on a ground**: each corner moved inward by up to 35% of the side;
* **a scanned print**: turned by up to 8° and laid anywhere on a bed 1.5× its size;
* **no ground**, where there is nothing to straighten: a JPEG at 50, CMAA's grid
  rotation by 30° (canvas kept, corners filled), a crop to 70%.

Each query runs through ``ReferenceDB.query`` (each method alone) and through the
identification engine, with the variant and without it. Reported per method (and the
engine) and query kind: recall@1 and false matches per query (for the engine: any
reference named other than the original), and how often a picture was found.
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from robusthash.attacks import parse
from robusthash.db import ReferenceDB, ingest
from robusthash.identify import Identifier
from robusthash.imaging import picture_quad
from robusthash.io import load_pil
from variant_report import arguments, print_table, tally

GROUNDS = ((255, 255, 255), (0, 0, 0), (128, 128, 128), (30, 144, 255), (250, 240, 200))


def turned(im: Image.Image, rng: random.Random) -> Image.Image:
    return im.rotate(rng.uniform(-180, 180), expand=True, resample=Image.Resampling.BICUBIC,
                     fillcolor=rng.choice(GROUNDS))


def perspective(im: Image.Image, rng: random.Random) -> Image.Image:
    import cv2

    w, h = im.size
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * np.float32(
        [[rng.uniform(0, 0.35) * w, rng.uniform(0, 0.35) * h] for _ in range(4)])
    warp = cv2.getPerspectiveTransform(corners, corners + inward)
    return Image.fromarray(cv2.warpPerspective(np.asarray(im), warp, (w, h), flags=cv2.INTER_LINEAR,
                                               borderValue=rng.choice(GROUNDS)))


def scanned(im: Image.Image, rng: random.Random) -> Image.Image:
    ground = rng.choice(GROUNDS)
    bed = Image.new("RGB", (int(im.width * 1.5), int(im.height * 1.5)), ground)
    print_ = im.rotate(rng.uniform(-8, 8), expand=True, resample=Image.Resampling.BICUBIC, fillcolor=ground)
    bed.paste(print_, (rng.randint(0, max(0, bed.width - print_.width)),
                       rng.randint(0, max(0, bed.height - print_.height))))
    return bed


def attacked(spec: str):
    return lambda im, rng: parse(spec)(im, seed=rng.randrange(1 << 30))


KINDS = {"turned on a ground": (turned,), "in perspective on a ground": (perspective,), "a scanned print": (scanned,),
         "no ground": (attacked("JC(50)"), attacked("RT(30)"), attacked("CROP(0.7)"))}


def jpeg(im: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    im.convert("RGB").save(buffer, format="JPEG", quality=80)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def main() -> None:
    args, methods, registered, kept_out = arguments(__doc__, 100, "forbild,pdq,cmaa")
    counts: dict = {}
    found: dict[str, list[int]] = {}
    with_variant = ingest.straightened_variants
    with tempfile.TemporaryDirectory() as tmp:
        ref = ReferenceDB(Path(tmp) / "refs.sqlite", methods=methods)
        ref.add(registered)
        engine = Identifier(ref)
        started = time.perf_counter()
        for label, photos in (("registered", registered), ("unregistered", kept_out)):
            for seed, photo in enumerate(photos):
                im = load_pil(photo).convert("RGB")
                for kind, placements in KINDS.items():
                    for placement in placements:
                        query = jpeg(placement(im, random.Random(seed)))
                        hit = found.setdefault(kind, [0, 0])
                        hit[0] += picture_quad(query) is not None
                        hit[1] += 1
                        for straighten in (True, False):
                            ingest.straightened_variants = with_variant if straighten else (lambda *_: {})
                            verdict = engine.identify(query, methods=methods)
                            for result in verdict.results:
                                tally(counts, result, f"{label}: {kind}", straighten, photo, label == "registered")
                            names = [m.image.source for m in verdict.matches]
                            row = counts.setdefault(("engine", f"{label}: {kind}", straighten),
                                                    {"queries": 0, "recall@1": 0, "false": 0})
                            row["queries"] += 1
                            row["recall@1"] += label == "registered" and bool(names) and names[0] == str(photo)
                            row["false"] += sum(name != str(photo) for name in names)
        ingest.straightened_variants = with_variant
        print(f"{len(registered)} registered train photos, {len(kept_out)} kept out; "
              f"{time.perf_counter() - started:.0f} s\n")
    print("| query kind | a picture found on a ground |\n|---|---:|")
    for kind, (hits, n) in found.items():
        print(f"| {kind} | {hits}/{n} |")
    print()
    print_table(counts, "the picture straightened", args.out)


if __name__ == "__main__":
    main()
