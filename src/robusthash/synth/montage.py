"""Montages for evaluation: a corpus object (RGBA, real alpha mask) pasted into a photo
at a given scale, rotation and position, with the ground truth recorded.

``paste`` is the plain function; ``random_montage`` draws its parameters from a seeded
generator. Training composites (``robusthash.models.views``) use ``paste`` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class MontageTruth:
    """Where the object went: its box in the montage, its scale (longer side over the
    photo's shorter side), rotation (degrees, counter-clockwise), the pasted pixels and
    their mask over the montage (left out of ``to_dict``)."""

    box: tuple[int, int, int, int]
    scale: float
    angle: float
    object_pixels: int
    mask: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros((0, 0), dtype=bool))

    def to_dict(self) -> dict:
        return {"box": list(self.box), "scale": self.scale, "angle": self.angle, "object_pixels": self.object_pixels}


def object_size(photo: Image.Image, cutout: Image.Image, scale: float) -> tuple[int, int]:
    """The cut-out's size when its longer side is ``scale`` × the photo's shorter side."""
    factor = min(photo.size) * scale / max(cutout.size)
    return max(1, round(cutout.width * factor)), max(1, round(cutout.height * factor))


def paste(photo: Image.Image, cutout: Image.Image, scale: float, angle: float = 0.0,
          position: tuple[float, float] = (0.5, 0.5)) -> tuple[Image.Image, MontageTruth]:
    """``photo`` with ``cutout`` (RGBA) resized so its longer side is ``scale`` × the
    photo's shorter side, rotated by ``angle`` (canvas expanded, alpha kept) and pasted
    with its centre at ``position`` (fractions of the room left for it; (0.5, 0.5) = centred)."""
    if scale <= 0:
        raise ValueError(f"scale {scale} must be > 0")
    obj = cutout.convert("RGBA").resize(object_size(photo, cutout, scale), Image.Resampling.BILINEAR)
    if angle:
        obj = obj.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    left = round(position[0] * max(0, photo.width - obj.width))
    top = round(position[1] * max(0, photo.height - obj.height))
    montage = photo.convert("RGB").copy()
    montage.paste(obj, (left, top), obj)
    alpha = np.asarray(obj.getchannel("A")) > 127
    mask = np.zeros((montage.height, montage.width), dtype=bool)
    visible = alpha[: montage.height - top, : montage.width - left]
    mask[top: top + visible.shape[0], left: left + visible.shape[1]] = visible
    box = obj.getchannel("A").getbbox() or (0, 0, 0, 0)
    truth = MontageTruth((left + box[0], top + box[1], left + box[2], top + box[3]), scale, angle, int(alpha.sum()),
                         mask)
    return montage, truth


def random_montage(photo: Image.Image, cutout: Image.Image, rng: np.random.Generator,
                   scale: tuple[float, float] = (0.3, 0.6), angle: tuple[float, float] = (-30.0, 30.0)
                   ) -> tuple[Image.Image, MontageTruth]:
    """``paste`` with a uniform scale, angle and position drawn from ``rng``."""
    return paste(photo, cutout, float(rng.uniform(*scale)), float(rng.uniform(*angle)),
                 (float(rng.uniform()), float(rng.uniform())))

