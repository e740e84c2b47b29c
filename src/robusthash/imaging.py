"""Image resizing helpers of the ground floor."""

from __future__ import annotations

from PIL import Image


def reduced(image: Image.Image, side: int, resample: Image.Resampling = Image.Resampling.BOX) -> Image.Image:
    """``image`` down-scaled so its longer side is at most ``side`` (sides rounded, ≥ 1 px)."""
    scale = side / max(image.size)
    if scale >= 1:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
