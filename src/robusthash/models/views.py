"""Training views for CMAA, from the corpus train split (never the test split).

A training original is a random crop of a photo (several scales), sometimes with a
corpus object (RGBA cut-out) pasted on it first. Its three views each get one random
Table 1 attack (a weak attack); view 1 then also gets the strong attack (five rounds
of a random Table 1 attack with probability ½). Attacks run at ``work_size`` and the
views are then brought to the model's input size by :func:`preprocess`.

Everything is drawn from one ``numpy.random.Generator``: a seed fixes a sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..attacks import draw_table1_attack, parse
from ..attacks.suites import strong_attack
from ..synth.montage import object_size, paste


@dataclass(frozen=True)
class ViewConfig:
    work_size: int = 192  # side of the training original the attacks work on (2× small's input)
    crop_area: tuple[float, float] = (0.35, 1.0)  # share of the photo a crop keeps
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # width / height of a crop
    composite_probability: float = 0.3
    object_scale: tuple[float, float] = (0.25, 0.6)  # object's longer side / photo's shorter side


def random_crop(im: Image.Image, rng: np.random.Generator, area: tuple[float, float],
                ratio: tuple[float, float]) -> Image.Image:
    """A crop keeping a random share of the area at a random aspect ratio (log-uniform)."""
    width, height = im.size
    for _ in range(10):
        target = width * height * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return im.crop((left, top, left + w, top + h))
    return im.copy()  # a very elongated photo: keep it whole


def paste_object(photo: Image.Image, cutout: Image.Image, rng: np.random.Generator,
                 scale: tuple[float, float]) -> Image.Image:
    """``photo`` with the RGBA ``cutout`` pasted at a random place and size (alpha kept)."""
    drawn = rng.uniform(*scale)
    width, height = object_size(photo, cutout, drawn)
    room = (photo.width - width, photo.height - height)
    offsets = [int(rng.integers(0, max(1, r + 1))) for r in room]
    position = tuple(offset / r if r > 0 else 0.0 for offset, r in zip(offsets, room))
    return paste(photo, cutout, drawn, 0.0, position)[0]


def training_original(photo: Image.Image, rng: np.random.Generator, config: ViewConfig,
                      cutouts: list[Image.Image] | None = None) -> Image.Image:
    """A (composited,) cropped photo at ``work_size × work_size``."""
    if cutouts and rng.random() < config.composite_probability:
        photo = paste_object(photo, cutouts[int(rng.integers(len(cutouts)))], rng, config.object_scale)
    crop = random_crop(photo.convert("RGB"), rng, config.crop_area, config.crop_ratio)
    return crop.resize((config.work_size, config.work_size), Image.Resampling.BILINEAR)


def weak_view(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random Table 1 attack."""
    return parse(draw_table1_attack(rng))(im, seed=int(rng.integers(2**63)))


def three_views(original: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, Image.Image, Image.Image]:
    """(view 1: weak then strong attack, view 2: weak, view 3: weak), as in CMAA's Fig. 1."""
    view1 = strong_attack(weak_view(original, rng), rng)
    return view1, weak_view(original, rng), weak_view(original, rng)
