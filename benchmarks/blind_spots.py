"""Edits outside every attack suite, through the identification engine: where are its
blind spots?

    .venv/bin/python benchmarks/blind_spots.py --corpus corpus --photos 20 --distractors 600

Train photos only (this looks for weaknesses; nothing here is reported as a result):
``--photos`` registered with forbild, pdq and cmaa and local features, beside
``--distractors`` other train photos. Each photo is queried once under each edit in
``EDITS``: plain Pillow and numpy operations, none of them in the grids, the strong
attack or the unseen suite (``robusthash.attacks``), so none was ever tuned on (a
photo pasted onto another is AugLy's overlay onto a background image; the background
is an unregistered train photo). Reported
per edit: how many photos the engine names, how many queries it refuses, and the
original's score in each (None: never a candidate). ``--workdir DIR`` keeps the
database for a later run (of other code, a git worktree on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from robusthash.db import ReferenceDB
from robusthash.identify import Identifier
from robusthash.io import load_pil
from robusthash.runtime import one_query_at_a_time
from robusthash.synth.corpus import Corpus


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    im.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _thumbnail(side: int):
    def edit(im: Image.Image) -> Image.Image:
        scale = side / max(im.size)
        return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    return edit


def _noise(sigma: float):
    def edit(im: Image.Image) -> Image.Image:
        pixels = np.asarray(im.convert("RGB")).astype(float)
        pixels += np.random.default_rng(1).normal(0, sigma, pixels.shape)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return edit


def _vignette(im: Image.Image) -> Image.Image:
    pixels = np.asarray(im.convert("RGB")).astype(float)
    h, w = pixels.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    radius = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
    pixels *= np.clip(1.2 - 0.8 * radius, 0.1, 1)[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _rgb(im: Image.Image) -> Image.Image:
    return im.convert("RGB")


def _ignoring_background(edit):
    return lambda im, _: edit(im)


def _pasted(im: Image.Image, background: Image.Image, scale: float) -> Image.Image:
    """``im`` with its longer side ``scale`` of an 800 × 600 copy of ``background``, pasted
    at a place drawn from the picture's size (AugLy's overlay onto a background)."""
    canvas = background.convert("RGB").resize((800, 600))
    factor = scale * 800 / max(im.size)
    picture = im.convert("RGB").resize((max(1, round(im.width * factor)), max(1, round(im.height * factor))))
    draw = np.random.default_rng(im.width * 7919 + im.height)
    canvas.paste(picture, (int(draw.uniform(0, max(1, 800 - picture.width))),
                           int(draw.uniform(0, max(1, 600 - picture.height)))))
    return canvas


EDITS = {
    "negative": lambda im, _: ImageOps.invert(_rgb(im)),
    "negative turned 90°": lambda im, _: ImageOps.invert(_rgb(im)).rotate(90, expand=True),
    "negative turned 20°": lambda im, _: ImageOps.invert(_rgb(im)).rotate(20, expand=True),
    "solarized at 128": lambda im, _: ImageOps.solarize(_rgb(im), 128),
    "histogram equalised": lambda im, _: ImageOps.equalize(_rgb(im)),
    "thumbnail 64 px": _ignoring_background(_thumbnail(64)),
    "thumbnail 96 px": _ignoring_background(_thumbnail(96)),
    "thumbnail 128 px": _ignoring_background(_thumbnail(128)),
    "stretched 1.6x wide": lambda im, _: im.resize((round(im.width * 1.6), im.height)),
    "squashed to 0.6 high": lambda im, _: im.resize((im.width, round(im.height * 0.6))),
    "JPEG quality 5": lambda im, _: _jpeg(im, 5),
    "noise sigma 40": _ignoring_background(_noise(40)),
    "noise sigma 60": _ignoring_background(_noise(60)),
    "pixelated 8 px": lambda im, _: im.resize((max(1, im.width // 8), max(1, im.height // 8)),
                                           Image.Resampling.NEAREST).resize(im.size, Image.Resampling.NEAREST),
    "sharpened 4x": lambda im, _: ImageEnhance.Sharpness(_rgb(im)).enhance(4.0),
    "contrast 0.4": lambda im, _: ImageEnhance.Contrast(_rgb(im)).enhance(0.4),
    "turned 90° and cropped to 70%": lambda im, _: im.rotate(90, expand=True).crop(
        (0, 0, round(im.height * 0.7), round(im.width * 0.7))),
    "median filter 7": lambda im, _: _rgb(im).filter(ImageFilter.MedianFilter(7)),
    "blur radius 6": lambda im, _: _rgb(im).filter(ImageFilter.GaussianBlur(6)),
    "mirrored and turned 45°": lambda im, _: ImageOps.mirror(_rgb(im)).rotate(45, expand=True),
    "vignette": _ignoring_background(_vignette),
    "pasted onto another photo at 0.6": lambda im, background: _pasted(im, background, 0.6),
    "pasted onto another photo at 0.45": lambda im, background: _pasted(im, background, 0.45),
    "pasted onto another photo at 0.3": lambda im, background: _pasted(im, background, 0.3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("corpus"))
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--distractors", type=int, default=600)
    parser.add_argument("--edits", default=",".join(EDITS), help="comma-separated names of EDITS")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/blind_spots.json"))
    args = parser.parse_args()
    one_query_at_a_time()
    train = Corpus(args.corpus).train()
    random.Random(5).shuffle(train)
    photos, distractors = train[: args.photos], train[args.photos: args.photos + args.distractors]
    # Backgrounds for the pasted pictures: train photos that are not registered.
    backgrounds = train[args.photos + args.distractors: 2 * args.photos + args.distractors]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        fresh = not (folder / "refs.sqlite").exists()
        with ReferenceDB(folder / "refs.sqlite", methods=["forbild", "pdq", "cmaa"]) as ref:
            if fresh:
                ref.add(photos + distractors)
            engine = Identifier(ref)
            for name in args.edits.split(","):
                named = refused = 0
                scores = []
                for path, background in zip(photos, backgrounds):
                    verdict = engine.identify(EDITS[name](load_pil(path), load_pil(background)))
                    named += any(Path(c.image.source).name == path.name for c in verdict.matches)
                    refused += verdict.refused is not None
                    own = next((c for c in verdict.candidates if Path(c.image.source).name == path.name), None)
                    scores.append(None if own is None else own.score)
                rows[name] = {"named": named, "refused": refused, "queries": len(photos), "scores": scores}
                print(f"{name}: named {named} of {len(photos)}, refused {refused}; scores "
                      f"{[s if s is None else round(s) for s in scores]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
