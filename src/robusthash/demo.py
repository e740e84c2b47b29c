"""The demo: how far attacked copies land from their originals, for every hasher.

Uses only the photographs that ship inside scikit-image, so it needs no download.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterable

from PIL import Image
from skimage import data

from . import attacks
from .hashing import available_methods, get_hasher

DEMO_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")

DEMO_ATTACKS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "JPEG q50": lambda im: attacks.jpeg(im, 50),
    "resize 0.5": lambda im: attacks.resize(im, 0.5),
    "blur σ1.5": lambda im: attacks.gaussian_blur(im, 1.5),
    "rotate 10°": lambda im: attacks.rotate(im, 10),
    "flip H": lambda im: attacks.flip(im, "H"),
}


def demo_images() -> dict[str, Image.Image]:
    """The bundled scikit-image photographs, as RGB PIL images."""
    return {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in DEMO_IMAGES}


@dataclass
class MethodResult:
    """Distances of one hasher: per attack over all images, and between distinct images."""

    method: str
    attacked: dict[str, list[float]] = field(default_factory=dict)
    attacked_matched: dict[str, list[bool]] = field(default_factory=dict)
    distinct: list[float] = field(default_factory=list)
    distinct_matched: list[bool] = field(default_factory=list)


def run_demo(methods: Iterable[str] | None = None, on_step: Callable[[str], None] | None = None) -> list[MethodResult]:
    """Hash originals and attacked copies with each method and collect distances."""
    originals = demo_images()
    copies = {(name, attack): fn(im) for name, im in originals.items() for attack, fn in DEMO_ATTACKS.items()}
    results = []
    for method in methods or available_methods():
        if on_step:
            on_step(method)
        hasher = get_hasher(method)
        hashes = {name: hasher.hash(im) for name, im in originals.items()}
        result = MethodResult(method)
        for (name, attack), im in copies.items():
            comparison = hasher.compare(hasher.hash(im), hashes[name])
            result.attacked.setdefault(attack, []).append(comparison.distance)
            result.attacked_matched.setdefault(attack, []).append(comparison.matched)
        for a, b in itertools.combinations(originals, 2):
            comparison = hasher.compare(hashes[a], hashes[b])
            result.distinct.append(comparison.distance)
            result.distinct_matched.append(comparison.matched)
        results.append(result)
    return results
