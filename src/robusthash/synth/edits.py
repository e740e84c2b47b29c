"""Editorial changes with their ground truth: each a plain function returning the edited
image and a boolean mask of the pixels it changed.

These are the changes the comparator must see (and a hash must survive): an object
pasted in, a region removed (inpainted from its surroundings, as a content-aware fill
does), a region smeared, a region replaced from another photo. Regions are ellipses or
rectangles drawn by :func:`random_region`. Non-editorial changes (compression, filters,
geometry) are the Table 1 attacks of :mod:`robusthash.attacks.transforms`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..io import to_rgb
from .montage import paste

EDITS = ("paste", "remove", "smear", "replace")


def random_region(size: tuple[int, int], area: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean H×W mask: an ellipse or a rectangle (turned by up to 45°) covering about
    ``area`` of the image, with an aspect ratio between 1:2 and 2:1, at a random place
    that keeps it inside the image."""
    if not 0 < area < 1:
        raise ValueError(f"region area {area} must be between 0 and 1")
    width, height = size
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    ellipse = bool(rng.integers(2))
    pixels = area * width * height * (4 / np.pi if ellipse else 1.0)  # bounding box of the shape
    box_w = min(width, max(2.0, np.sqrt(pixels * aspect)))
    box_h = min(height, max(2.0, pixels / box_w))
    cx = rng.uniform(box_w / 2, width - box_w / 2)
    cy = rng.uniform(box_h / 2, height - box_h / 2)
    layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    box = (cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2)
    if ellipse:
        draw.ellipse(box, fill=255)
    else:
        angle = float(rng.uniform(-45, 45))
        corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]) - (cx, cy)
        turn = np.deg2rad(angle)
        rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        draw.polygon([tuple(p) for p in corners @ rotation.T + (cx, cy)], fill=255)
    return np.asarray(layer) > 127


def paste_object(image: Image.Image, cutout: Image.Image, scale: float, angle: float,
                 position: tuple[float, float]) -> tuple[Image.Image, np.ndarray]:
    """An RGBA cut-out pasted in (``synth.montage.paste``); the mask is its alpha."""
    edited, truth = paste(to_rgb(image), cutout, scale, angle, position)
    return edited, truth.mask


def remove_region(image: Image.Image, mask: np.ndarray, radius: int = 5) -> tuple[Image.Image, np.ndarray]:
    """The region filled in from its surroundings (OpenCV's Telea inpainting)."""
    import cv2

    pixels = np.asarray(to_rgb(image))
    filled = cv2.inpaint(np.ascontiguousarray(pixels), mask.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return Image.fromarray(filled), mask


def smear_region(image: Image.Image, mask: np.ndarray, sigma: float) -> tuple[Image.Image, np.ndarray]:
    """The region blurred with a Gaussian of ``sigma`` pixels (a face or a sign smudged)."""
    image = to_rgb(image)
    blurred = image.filter(ImageFilter.GaussianBlur(sigma))
    return Image.composite(blurred, image, Image.fromarray(mask.astype(np.uint8) * 255)), mask


def replace_region(image: Image.Image, donor: Image.Image, mask: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """The region's pixels taken from ``donor`` (another photo, stretched to the same size)."""
    image = to_rgb(image)
    donor = to_rgb(donor).resize(image.size, Image.Resampling.BILINEAR)
    return Image.composite(donor, image, Image.fromarray(mask.astype(np.uint8) * 255)), mask


def cell_fractions(mask: np.ndarray, cells: int = 7) -> np.ndarray:
    """The share of each of ``cells`` × ``cells`` equal cells that ``mask`` covers
    (the heatmap's ground truth, float32 in [0, 1])."""
    layer = Image.fromarray(mask.astype(np.float32))
    return np.asarray(layer.resize((cells, cells), Image.Resampling.BOX), dtype=np.float32).clip(0.0, 1.0)
