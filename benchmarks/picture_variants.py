"""What searching a query also with its picture alone buys (issues 23/24, query
normalisation): a picture turned or in perspective on a plain ground, found by
``imaging.picture_quad`` and mapped upright, and a picture among surroundings that hold
text (a screenshot, a caption), found by ``imaging.content_box`` and cut out (both
``db.ingest.picture_variants``).

    .venv/bin/python benchmarks/picture_variants.py --corpus corpus [--photos 100]

``--photos`` train photos are registered with ``--methods`` and local features; as many
other train photos are kept out. Queries, this benchmark's own placements (not the unseen
suite's attacks), each saved as a JPEG at quality 80 and asked as its bytes:

* **turned on a ground**: the photo turned by a random angle on a canvas grown to hold
  it, the corners one of five ground colours;
* **turned, corners cut**: turned by 15-165° either way on a canvas of its own size, so
  the frame cuts the picture's corners off, the uncovered corners one of the grounds;
* **an affine warp, corners cut**: turned by up to 50°, scaled by 0.75-1.15, sheared by
  up to 15° and moved by up to 10% of a side, on a canvas of its own size;
* **in perspective on a ground**: each corner moved inward by up to 35% of the side;
* **a scanned print**: turned by up to 8° and laid anywhere on a bed 1.5× its size;
* **a phone screenshot**: the photo across the width of a 720 or 1,080 px screen, a
  status bar, an avatar and lines of text above, text below, light or dark;
* **a web page**: the photo at 30-50% of a 1,600 px page's width, anywhere below a
  browser's bar, paragraphs of text beside it;
* **a caption**: a band of text above the photo, 15-35% of its height;
* **no ground**, where there is nothing to find: a JPEG at 50, Gaussian noise (σ 0.05), a
  crop to 70%.

Each query runs through the identification engine (and so each method's own result), with
the variants and without them. Reported per method (and the engine) and query kind:
recall@1 and false matches per query (for the engine: any reference named other than the
original), and how often a picture was found.
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from robusthash.attacks import parse
from robusthash.db import ReferenceDB, ingest
from robusthash.identify import Identifier
from robusthash.db.ingest import PICTURE_DECODE
from robusthash.hashing.base import DecodedImage
from robusthash.imaging import content_box, picture_quad
from robusthash.io import load_pil
from variant_report import arguments, both_ways, print_table, tally_verdict

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


def turned_in_frame(im: Image.Image, rng: random.Random) -> Image.Image:
    angle = rng.choice([-1, 1]) * rng.uniform(15, 165)
    return im.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=rng.choice(GROUNDS))


def affine_in_frame(im: Image.Image, rng: random.Random) -> Image.Image:
    import cv2

    w, h = im.size
    turn, scale, shear = rng.uniform(-50, 50), rng.uniform(0.75, 1.15), np.radians(rng.uniform(-15, 15))
    warp = cv2.getRotationMatrix2D((w / 2, h / 2), turn, scale)
    warp = warp @ np.array([[1, np.tan(shear), -np.tan(shear) * h / 2], [0, 1, 0], [0, 0, 1]])
    warp[:, 2] += [rng.uniform(-0.1, 0.1) * w, rng.uniform(-0.1, 0.1) * h]
    return Image.fromarray(cv2.warpAffine(np.asarray(im), warp, (w, h), flags=cv2.INTER_LINEAR,
                                          borderValue=rng.choice(GROUNDS)))


def scanned(im: Image.Image, rng: random.Random) -> Image.Image:
    ground = rng.choice(GROUNDS)
    bed = Image.new("RGB", (int(im.width * 1.5), int(im.height * 1.5)), ground)
    print_ = im.rotate(rng.uniform(-8, 8), expand=True, resample=Image.Resampling.BICUBIC, fillcolor=ground)
    bed.paste(print_, (rng.randint(0, max(0, bed.width - print_.width)),
                       rng.randint(0, max(0, bed.height - print_.height))))
    return bed


WORDS = ("the of and a to in is you that it was for on are as with they at be this have from or one had by "
         "word but not what all were we when your can said there use an each which do how if will up other about "
         "out many then them these so some would make like into time has look two more write go see number no way "
         "could people than first water been call who its now find long down day did get come made may part").split()


def text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], rng: random.Random, colour, size: int) -> None:
    font = ImageFont.load_default(size=size)
    x0, y0, x1, y1 = box
    for y in range(y0, y1 - size, int(size * 1.5)):
        draw.text((x0, y), " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))), fill=colour, font=font)


def phone(im: Image.Image, rng: random.Random) -> Image.Image:
    ground, ink = ((16, 16, 16), (230, 230, 230)) if rng.random() < 0.4 else ((255, 255, 255), (20, 20, 20))
    w = rng.choice([720, 1080])
    shown = int(im.height * w / im.width)
    top, bottom = int(w * rng.uniform(0.25, 0.45)), int(w * rng.uniform(0.4, 0.8))
    screen = Image.new("RGB", (w, top + shown + bottom), ground)
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, w, int(w * 0.06)), fill=tuple(max(0, v - 10) for v in ground))
    text(draw, (20, int(w * 0.02), w // 2, int(w * 0.06)), rng, ink, int(w * 0.025))
    draw.ellipse((20, int(w * 0.09), 20 + int(w * 0.1), int(w * 0.19)), fill=tuple(rng.randrange(256) for _ in "rgb"))
    text(draw, (40 + int(w * 0.1), int(w * 0.1), w - 20, top - 10), rng, ink, int(w * 0.035))
    screen.paste(im.resize((w, shown)), (0, top))
    text(draw, (20, top + shown + 20, w - 20, top + shown + bottom - 20), rng, ink, int(w * 0.035))
    return screen


def web_page(im: Image.Image, rng: random.Random) -> Image.Image:
    w, h = 1600, 1000
    page = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, w, 80), fill=(222, 225, 230))
    draw.rectangle((200, 20, 1200, 60), fill=(255, 255, 255))
    text(draw, (210, 28, 1190, 58), rng, (60, 60, 60), 20)
    shown_w = int(w * rng.uniform(0.3, 0.5))
    shown_h = min(h - 200, int(im.height * shown_w / im.width))
    shown_w = int(im.width * shown_h / im.height)
    x, y = rng.randint(40, w - shown_w - 40), rng.randint(120, max(120, h - shown_h - 20))
    page.paste(im.resize((shown_w, shown_h)), (x, y))
    if x > 300:
        text(draw, (30, 120, x - 30, h - 20), rng, (30, 30, 30), 18)
    if w - x - shown_w > 300:
        text(draw, (x + shown_w + 30, 120, w - 30, h - 20), rng, (30, 30, 30), 18)
    return page


def captioned(im: Image.Image, rng: random.Random) -> Image.Image:
    band = int(im.height * rng.uniform(0.15, 0.35))
    out = Image.new("RGB", (im.width, im.height + band), (255, 255, 255))
    text(ImageDraw.Draw(out), (10, 10, im.width - 10, band - 5), rng, (0, 0, 0), max(12, band // 4))
    out.paste(im, (0, band))
    return out


def attacked(spec: str):
    return lambda im, rng: parse(spec)(im, seed=rng.randrange(1 << 30))


KINDS = {"turned on a ground": (turned,), "turned, corners cut": (turned_in_frame,),
         "an affine warp, corners cut": (affine_in_frame,),
         "in perspective on a ground": (perspective,), "a scanned print": (scanned,),
         "a phone screenshot": (phone,), "a web page": (web_page,), "a caption": (captioned,),
         "no ground": (attacked("JC(50)"), attacked("GN(0.05)"), attacked("CROP(0.7)"))}


def jpeg(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.convert("RGB").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def main() -> None:
    args, methods, registered, kept_out = arguments(__doc__, 100, "forbild,pdq,cmaa")
    counts: dict = {}
    found: dict[str, list[int]] = {}
    with_variant = ingest.picture_variants
    with tempfile.TemporaryDirectory() as tmp:
        ref = ReferenceDB(Path(tmp) / "refs.sqlite", methods=methods)
        ref.add(registered)
        engine = Identifier(ref)
        started = time.perf_counter()

        def queries(photo: Path, seed: int, _: bool) -> dict[str, list[bytes]]:
            im = load_pil(photo).convert("RGB")
            return {kind: [jpeg(placement(im, random.Random(seed))) for placement in placements]
                    for kind, placements in KINDS.items()}

        def switch(on: bool) -> None:
            ingest.picture_variants = with_variant if on else (lambda *_: {})

        for label, photo, kind, query, on in both_ways(registered, kept_out, queries, switch):
            if on:
                small = DecodedImage(query).decoded(PICTURE_DECODE)
                hit = found.setdefault(kind, [0, 0, 0])
                hit[0] += picture_quad(small) is not None
                hit[1] += content_box(small) is not None
                hit[2] += 1
            tally_verdict(counts, engine.identify(query, methods=methods), f"{label}: {kind}", on, photo,
                          label == "registered")
        print(f"{len(registered)} registered train photos, {len(kept_out)} kept out; "
              f"{time.perf_counter() - started:.0f} s\n")
    print("| query kind | a picture found on a ground (straightened) | among text (cut out) |\n|---|---:|---:|")
    for kind, (quads, boxes, n) in found.items():
        print(f"| {kind} | {quads}/{n} | {boxes}/{n} |")
    print()
    print_table(counts, "the picture alone", args.out)


if __name__ == "__main__":
    main()
