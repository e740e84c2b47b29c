"""Segmenters: an image → object masks, behind one small interface.

``ColourSegmenter`` needs no model: colour classes by k-means in CIELAB on a reduced,
blurred copy of the image (centres initialised deterministically at lightness
quantiles, so the same image always gives the same segments), opened, split into
connected components, kept between ``min_area`` and ``max_area`` of the image, largest
first. Measurements of how stable its segments are under JPEG, rotation and cropping
are in docs/segments.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage as ndi
from skimage.color import rgb2lab


class Segmenter(Protocol):
    def segment(self, image: Image.Image) -> list[np.ndarray]:
        """Boolean masks of the image's size, one per object, largest first."""


@dataclass(frozen=True)
class ColourSegmenterConfig:
    work_size: int = 192  # longer side of the copy that is segmented
    blur_sigma: float = 1.5  # Gaussian blur before clustering (px of the work copy)
    classes: int = 4  # k of k-means
    iterations: int = 8
    opening: int = 2  # binary opening iterations: cuts thin bridges between regions
    min_area: float = 0.02  # share of the image
    max_area: float = 0.6
    max_segments: int = 8


def kmeans_classes(pixels: np.ndarray, k: int, iterations: int) -> np.ndarray:
    """Class of each row of ``pixels`` (n × 3, CIELAB). Centres start at the pixels at
    the k lightness quantiles: deterministic, and spread over light and dark."""
    order = np.argsort(pixels[:, 0], kind="stable")
    centres = pixels[order[((np.arange(k) + 0.5) / k * len(pixels)).astype(int)]].copy()
    labels = np.zeros(len(pixels), dtype=np.int64)
    for _ in range(iterations):
        distances = ((pixels[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = distances.argmin(axis=1)
        for j in range(k):
            members = labels == j
            if members.any():
                centres[j] = pixels[members].mean(axis=0)
    return labels


class ColourSegmenter:
    def __init__(self, config: ColourSegmenterConfig = ColourSegmenterConfig()):
        self.config = config

    def segment(self, image: Image.Image) -> list[np.ndarray]:
        c = self.config
        width, height = image.size
        scale = c.work_size / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        work = image.convert("RGB").resize(size, Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(c.blur_sigma))
        lab = rgb2lab(np.asarray(work, dtype=np.float64) / 255.0)
        classes = kmeans_classes(lab.reshape(-1, 3), c.classes, c.iterations).reshape(lab.shape[:2])
        area = classes.size
        found: list[tuple[float, np.ndarray]] = []
        for j in range(c.classes):
            region = ndi.binary_opening(classes == j, iterations=c.opening)
            components, count = ndi.label(region)
            if not count:
                continue
            sizes = ndi.sum(region, components, range(1, count + 1))
            for index, pixels in enumerate(sizes, start=1):
                if c.min_area * area <= pixels <= c.max_area * area:
                    found.append((float(pixels), components == index))
        found.sort(key=lambda item: -item[0])
        return [_to_size(mask, image.size) for _, mask in found[: c.max_segments]]


def _to_size(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0
