"""Training views for CMAA, from the corpus train split (never the test split).

A training original is a random crop of a photo (several scales), sometimes with a
corpus object (RGBA cut-out) pasted on it first. Its three views are made by one of two
recipes (``ViewConfig.augment``):

* ``"table1"`` (the shipped model's): each view gets one random Table 1 attack (a weak
  attack); view 1 then also gets the strong attack (five rounds of a random Table 1
  attack with probability ½).
* ``"wide"`` (v2, issue 24): each view gets a chain of 1–3 operations drawn from
  continuous ranges (:class:`WideAugment`): colour (brightness, contrast, saturation,
  gamma, colour cast, posterisation; greyscale for ~15% of views), geometry (any
  rotation, translation, borders and letterboxing in any colour, crops, affine maps,
  flips), filters (a Table 1 attack, JPEG, blur, down-up scaling), overlays (corpus
  cut-outs, drawn shapes) and mixing in another training photo (cutmix, mixup). View 1
  gets 2–4 more such operations on top (SSCD-style strong view). A Table 1 attack is
  only one of the filter operations, so a model sees its grid and far more besides.
* ``"blend"`` (v2 fine-tuning from the shipped weights): a sample's views are the
  table1 recipe's, or with probability ``wide_share`` a milder wide recipe's (one
  operation per weak view, 1–2 more for view 1, no mixing in of other photos), so the
  grid the shipped model learned stays most of what it sees while the wide ranges
  widen it (the wide recipe alone collapsed the hashes, docs/models/cmaa.md).

Held out of the wide recipe on purpose: perspective warps, text captions, screenshot
framing, WebP/AVIF re-encoding and hue shifts. docs/attacks.md's evaluation-only suite
measures them, so some of what it measures stays truly new to the model (a check of
generalisation, not of recall). Training never reads that suite.

Attacks run at ``work_size``; a wide operation that changes the size is resized back,
so wide views are ``work_size`` squares (as :func:`preprocess` would squash them).
The views are then brought to the model's input size by :func:`preprocess`.

Everything is drawn from one ``numpy.random.Generator``: a seed fixes a sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from ..attacks import draw_table1_attack, parse
from ..attacks import transforms as T
from ..attacks.suites import strong_attack
from ..synth.montage import object_size, paste

AUGMENTS = ("table1", "wide", "blend")

Op = Callable[[Image.Image], Image.Image]
Donor = Callable[[np.random.Generator], Image.Image]  # another training photo, picked by the generator


@dataclass(frozen=True)
class WideAugment:
    """The wide recipe's ranges and probabilities (issue 24). Every range is wider than
    the grids an evaluation uses, and drawn continuously, so no grid value is special."""
    weak_ops: tuple[int, int] = (1, 3)  # operations in a view's chain (inclusive)
    strong_ops: tuple[int, int] = (2, 4)  # operations view 1 gets on top of its weak chain
    # Probability of each family for one operation (then an operation of it, uniformly).
    families: tuple[tuple[str, float], ...] = (
        ("colour", 0.3), ("geometry", 0.35), ("filter", 0.2), ("overlay", 0.1), ("mix", 0.05))
    greyscale: float = 0.15  # share of weak views turned grey (at a random point of the chain)
    brightness: tuple[float, float] = (0.3, 1.9)
    contrast: tuple[float, float] = (0.3, 1.8)
    saturation: tuple[float, float] = (0.0, 2.0)
    gamma: tuple[float, float] = (0.4, 2.5)  # log-uniform
    cast: float = 0.4  # largest strength of a colour cast
    posterize_bits: tuple[int, int] = (2, 7)
    rotation: float = 180.0  # degrees, either way (rotations and affine maps)
    translation: float = 0.45  # share of a side
    border: float = 0.35  # widest border, share of a side
    letterbox_aspect: tuple[float, float] = (0.5, 2.0)  # frame width / height, log-uniform
    crop_area: tuple[float, float] = (0.3, 1.0)
    affine_scale: tuple[float, float] = (0.7, 1.3)
    affine_translation: float = 0.2  # share of a side
    affine_shear: float = 20.0  # degrees, either way
    jpeg_quality: tuple[int, int] = (10, 95)
    blur_sigma: tuple[float, float] = (0.3, 3.0)  # pixels at work_size
    down_up: tuple[float, float] = (0.15, 0.8)
    overlays: tuple[int, int] = (1, 3)  # objects or shapes pasted by one overlay operation
    object_scale: tuple[float, float] = (0.1, 0.35)  # object's longer side / view's side
    shape_size: tuple[float, float] = (0.06, 0.25)
    cutmix_area: tuple[float, float] = (0.05, 0.35)  # share of the view covered by another photo
    mixup: tuple[float, float] = (0.1, 0.3)  # weight of another photo blended over the view


# The blend recipe's wide share: one operation per weak view, no photos mixed in.
BLEND_WIDE = WideAugment(weak_ops=(1, 1), strong_ops=(1, 2),
                         families=(("colour", 0.35), ("geometry", 0.4), ("filter", 0.15), ("overlay", 0.1)))


@dataclass(frozen=True)
class ViewConfig:
    work_size: int = 192  # side of the training original the attacks work on (2× small's input)
    crop_area: tuple[float, float] = (0.35, 1.0)  # share of the photo a crop keeps
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # width / height of a crop
    composite_probability: float = 0.3
    object_scale: tuple[float, float] = (0.25, 0.6)  # object's longer side / photo's shorter side
    augment: str = "table1"  # the views' recipe: "table1" (shipped model), "wide" or "blend" (v2)
    # The wide recipe's ranges: None for table1 (so its checkpoints do not depend on them),
    # by default WideAugment() for wide and BLEND_WIDE for blend (so a run's checkpoint records them).
    wide: WideAugment | None = None
    wide_share: float | None = None  # blend: share of samples whose views are wide (0.3 by default)

    def __post_init__(self):
        if self.augment not in AUGMENTS:
            raise ValueError(f"unknown augment {self.augment!r}; choose from {', '.join(AUGMENTS)}")
        if self.augment == "wide" and self.wide is None:
            object.__setattr__(self, "wide", WideAugment())
        if self.augment == "blend":
            if self.wide is None:
                object.__setattr__(self, "wide", BLEND_WIDE)
            if self.wide_share is None:
                object.__setattr__(self, "wide_share", 0.3)
        if self.wide_share is not None and not 0.0 <= self.wide_share <= 1.0:
            raise ValueError(f"wide_share must be within 0..1, not {self.wide_share}")


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


def three_views(original: Image.Image, rng: np.random.Generator, config: ViewConfig = ViewConfig(),
                cutouts: list[Image.Image] | None = None,
                donor: Donor | None = None) -> tuple[Image.Image, Image.Image, Image.Image]:
    """(view 1: weak then strong, view 2: weak, view 3: weak), as in CMAA's Fig. 1.

    ``cutouts`` (objects to overlay) and ``donor`` (another training photo, for cutmix and
    mixup) are used by the wide recipe only; the table1 recipe draws exactly what it did
    before the wide one existed, so the shipped model's views stay reproducible."""
    if config.augment == "table1" or (config.augment == "blend" and rng.random() >= config.wide_share):
        view1 = strong_attack(weak_view(original, rng), rng)
        return view1, weak_view(original, rng), weak_view(original, rng)
    w, sources = config.wide, Sources(cutouts or [], donor)
    view1 = apply_ops(original, wide_weak_ops(rng, w, sources) + draw_wide_ops(rng, w, w.strong_ops, sources))
    view2 = apply_ops(original, wide_weak_ops(rng, w, sources))
    return view1, view2, apply_ops(original, wide_weak_ops(rng, w, sources))


# --- the wide recipe: each drawer draws its parameters now and returns the operation ---

@dataclass(frozen=True)
class Sources:
    """What overlays and mixing take from outside the view."""
    cutouts: list[Image.Image]
    donor: Donor | None


def wide_weak_ops(rng: np.random.Generator, w: WideAugment, sources: Sources) -> list[tuple[str, Op]]:
    """A weak view's chain: 1–3 operations, greyscale inserted at a random point for some views."""
    ops = draw_wide_ops(rng, w, w.weak_ops, sources)
    if rng.random() < w.greyscale:
        luma = ("601", "709", "AVG")[int(rng.integers(3))]  # tools disagree on grey
        ops.insert(int(rng.integers(len(ops) + 1)), ("colour/greyscale", lambda im: T.greyscale(im, luma)))
    return ops


def draw_wide_ops(rng: np.random.Generator, w: WideAugment, count: tuple[int, int],
                  sources: Sources) -> list[tuple[str, Op]]:
    """``count`` (a range) operations, each "family/name" and the function applying it."""
    names, weights = zip(*w.families)
    ops = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        family = names[int(rng.choice(len(names), p=np.asarray(weights) / sum(weights)))]
        drawers = list(DRAWERS[family].values())
        name, op = drawers[int(rng.integers(len(drawers)))](rng, w, sources)
        ops.append((f"{family}/{name}", op))
    return ops


def apply_ops(im: Image.Image, ops: list[tuple[str, Op]]) -> Image.Image:
    """``im`` through the chain; an operation that changes the size is resized back, so
    the next one (and the model) sees the square every view is."""
    for _, op in ops:
        out = op(im)
        im = out if out.size == im.size else out.resize(im.size, Image.Resampling.BILINEAR)
    return im


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))


def _seed(rng: np.random.Generator) -> np.random.Generator:
    """A generator of its own for an operation's randomness, drawn now (so a seed fixes it)."""
    return np.random.default_rng(int(rng.integers(2**63)))


def _fill(rng: np.random.Generator) -> tuple[int, int, int]:
    """What uncovered area shows: black, white, a grey or any colour (frames vary)."""
    kind = int(rng.integers(4))
    if kind < 2:
        return (255 * kind,) * 3
    if kind == 2:
        return (int(rng.integers(40, 216)),) * 3
    return tuple(int(v) for v in rng.integers(0, 256, 3))


# colour: global tone changes a shared picture meets (screens, filters, exports)

def _brightness(rng, w, sources):
    f = rng.uniform(*w.brightness)
    return "brightness", lambda im: T.brightness(im, f)


def _contrast(rng, w, sources):
    f = rng.uniform(*w.contrast)
    return "contrast", lambda im: T.contrast(im, f)


def _saturation(rng, w, sources):
    f = rng.uniform(*w.saturation)
    return "saturation", lambda im: T.saturation(im, f)


def _gamma(rng, w, sources):
    g = _log_uniform(rng, w.gamma)
    return "gamma", lambda im: T.gamma(im, g)


def _cast(rng, w, sources):
    colour, strength = tuple(int(v) for v in rng.integers(0, 256, 3)), rng.uniform(0.0, w.cast)
    return "cast", lambda im: T.colour_cast(im, colour, strength)


def _posterize(rng, w, sources):
    bits = int(rng.integers(w.posterize_bits[0], w.posterize_bits[1] + 1))
    return "posterize", lambda im: T.posterize(im, bits)


# geometry: the picture moved, turned, framed or cut, uncovered area in any colour

def _rotate(rng, w, sources):
    degrees, fill = rng.uniform(-w.rotation, w.rotation), _fill(rng)
    return "rotate", lambda im: T.rotate(im, degrees, fill)


def _translate(rng, w, sources):
    axis, fraction, fill = "XY"[int(rng.integers(2))], rng.uniform(-w.translation, w.translation), _fill(rng)
    return "translate", lambda im: T.translate(im, axis, fraction, fill)


def _border(rng, w, sources):
    """Borders on all four sides alike (half the time) or on some sides, of any colour."""
    if rng.random() < 0.5:
        sides = [rng.uniform(0.0, w.border)] * 4
    else:
        sides = [rng.uniform(0.0, w.border) if rng.random() < 0.5 else 0.0 for _ in range(4)]
    fill = _fill(rng)

    def framed(im):
        left, top, right, bottom = (round(s * max(im.size)) for s in sides)
        canvas = Image.new("RGB", (im.width + left + right, im.height + top + bottom), fill)
        canvas.paste(im.convert("RGB"), (left, top))
        return canvas
    return "border", framed


def _letterbox(rng, w, sources):
    aspect, fill = _log_uniform(rng, w.letterbox_aspect), _fill(rng)
    return "letterbox", lambda im: T.letterbox(im, (aspect, 1.0), fill)


def _crop(rng, w, sources):
    crop_rng = _seed(rng)
    return "crop", lambda im: random_crop(im, crop_rng, w.crop_area, (3 / 4, 4 / 3))


def _affine(rng, w, sources):
    degrees, scale = rng.uniform(-w.rotation, w.rotation), rng.uniform(*w.affine_scale)
    tx, ty = rng.uniform(-w.affine_translation, w.affine_translation, 2)
    slant, fill = rng.uniform(-w.affine_shear, w.affine_shear), _fill(rng)
    return "affine", lambda im: T.affine(im, degrees, scale, float(tx), float(ty), slant, fill)


def _flip(rng, w, sources):
    direction = "HV"[int(rng.integers(2))]
    return "flip", lambda im: T.flip(im, direction)


# filter: CMAA's Table 1 grid (kept in the mix so it is still covered) and codec/blur/scale off it

def _table1(rng, w, sources):
    spec, seed = draw_table1_attack(rng), int(rng.integers(2**63))
    return "table1", lambda im: parse(spec)(im, seed=seed)


def _jpeg(rng, w, sources):
    quality = int(rng.integers(w.jpeg_quality[0], w.jpeg_quality[1] + 1))
    return "jpeg", lambda im: T.jpeg(im, quality)


def _blur(rng, w, sources):
    sigma = rng.uniform(*w.blur_sigma)
    return "blur", lambda im: T.gaussian_blur(im, sigma)


def _down_up(rng, w, sources):
    scale = rng.uniform(*w.down_up)
    return "down_up", lambda im: T.down_up(im, scale)


# overlay: things pasted over part of the picture

def _objects(rng, w, sources):
    """1–3 corpus cut-outs (the train share) pasted small; drawn shapes when there are none."""
    if not sources.cutouts:
        return _shapes(rng, w, sources)
    n = int(rng.integers(w.overlays[0], w.overlays[1] + 1))
    picked = [sources.cutouts[int(rng.integers(len(sources.cutouts)))] for _ in range(n)]
    paste_rng = _seed(rng)

    def pasted(im):
        for cutout in picked:
            im = paste_object(im, cutout, paste_rng, w.object_scale)
        return im
    return "objects", pasted


def _shapes(rng, w, sources):
    n, size = int(rng.integers(w.overlays[0], w.overlays[1] + 1)), rng.uniform(*w.shape_size)
    shape_rng = _seed(rng)
    return "shapes", lambda im: T.stickers(im, n, size, shape_rng)


# mix: another training photo over part of the view (cutmix) or blended in (mixup)

def _other(im: Image.Image, sources: Sources, rng: np.random.Generator) -> Image.Image:
    """Another training photo at the view's size; without a donor, another crop of the
    view itself (cutmix within the sample)."""
    other = sources.donor(rng) if sources.donor else random_crop(im, rng, (0.1, 0.5), (3 / 4, 4 / 3))
    return other.convert("RGB").resize(im.size, Image.Resampling.BILINEAR)


def _cutmix(rng, w, sources):
    area, aspect = rng.uniform(*w.cutmix_area), _log_uniform(rng, (0.5, 2.0))
    cx, cy, other_rng = rng.uniform(), rng.uniform(), _seed(rng)

    def mixed(im):
        width = min(im.width, round(im.width * math.sqrt(area * aspect)))
        height = min(im.height, round(im.height * math.sqrt(area / aspect)))
        left, top = round(cx * (im.width - width)), round(cy * (im.height - height))
        patch = _other(im, sources, other_rng).crop((left, top, left + width, top + height))
        out = im.convert("RGB").copy()
        out.paste(patch, (left, top))
        return out
    return "cutmix", mixed


def _mixup(rng, w, sources):
    weight, other_rng = rng.uniform(*w.mixup), _seed(rng)
    return "mixup", lambda im: Image.blend(im.convert("RGB"), _other(im, sources, other_rng), weight)


DRAWERS: dict[str, dict[str, Callable]] = {
    "colour": {"brightness": _brightness, "contrast": _contrast, "saturation": _saturation,
               "gamma": _gamma, "cast": _cast, "posterize": _posterize},
    "geometry": {"rotate": _rotate, "translate": _translate, "border": _border, "letterbox": _letterbox,
                 "crop": _crop, "affine": _affine, "flip": _flip},
    "filter": {"table1": _table1, "jpeg": _jpeg, "blur": _blur, "down_up": _down_up},
    "overlay": {"objects": _objects, "shapes": _shapes},
    "mix": {"cutmix": _cutmix, "mixup": _mixup},
}
