"""Segmenters: an image → object masks, behind one small interface.

- ``PlainBackgroundSegmenter``: an object on a plain background (a cut-out on white, a
  product shot) is everything that differs from the border's colour. This is how a
  registered cut-out gets its own mask back after the alpha is composited on white.
- ``ObjectNetSegmenter``: ObjectNet (``models.objectnet``), a small U-Net shipped as
  ONNX and trained on synthetic montages from the train split, marks pasted objects
  whole, where colour classes split them into their colour parts.
- ``OnnxInstanceSegmenter`` (optional): an instance-segmentation network such as Mask
  R-CNN, exported to ONNX by the user; instances above a confidence threshold (0.20, as
  in the paper). Why ONNX and not torchvision: the registry's torchvision wheels are CUDA
  builds whose compiled operators (nms, roi_align) do not load against the CPU torch.
- ``ColourSegmenter`` needs no model: colour classes by k-means in CIELAB on a reduced,
blurred copy of the image (centres initialised deterministically at lightness
quantiles, so the same image always gives the same segments), opened, split into
connected components, kept between ``min_area`` and ``max_area`` of the image, largest
first. Measurements of how stable its segments are under JPEG, rotation and cropping
are in docs/segments.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage as ndi
from skimage.color import rgb2lab

from ..imaging import reduced
from .objects import Background


class Segmenter(Protocol):
    # How its objects are cut out for hashing: None leaves it to the hasher. Whole
    # objects (plain background, ObjectNet) are cut with the background removed, so a
    # pasted object matches its registered cut-out whatever it was pasted on.
    background: Background | None
    # Its objects were pasted onto the picture (ObjectNet): the hasher also hashes the
    # picture with them filled in from their surroundings, to find the photo beneath.
    pasted: bool

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
    pixels = pixels.astype(np.float32)
    order = np.argsort(pixels[:, 0], kind="stable")
    centres = pixels[order[((np.arange(k) + 0.5) / k * len(pixels)).astype(int)]].copy()
    labels = np.zeros(len(pixels), dtype=np.int64)
    squared = (pixels**2).sum(axis=1, keepdims=True)
    for _ in range(iterations):
        distances = squared - 2 * pixels @ centres.T + (centres**2).sum(axis=1)
        labels = distances.argmin(axis=1)
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=pixels[:, c], minlength=k) for c in range(3)], axis=1)
        filled = counts > 0
        centres[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return labels


class ColourSegmenter:
    background = None
    pasted = False

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


@dataclass(frozen=True)
class PlainBackgroundConfig:
    work_size: int = 256
    border_share: float = 0.6  # share of the 2-px border ring that must be the border colour
    tolerance: int = 24  # max RGB channel difference that still counts as the border colour
    # Only light borders: a cut-out's transparency is composited on white, and product
    # shots are on white; dark plain borders are mostly night sky around stars (the
    # corpus's astronomy photos), which are better left to the other segmenters.
    lightest_below: int = 200  # every channel of the border colour at least this
    min_area: float = 0.02
    max_area: float = 0.98


class PlainBackgroundSegmenter:
    """One object: everything unlike a plain, light border colour; nothing when the
    border is not plain (a photo)."""

    background = Background.removed
    pasted = False

    def __init__(self, config: PlainBackgroundConfig = PlainBackgroundConfig()):
        self.config = config

    def segment(self, image: Image.Image) -> list[np.ndarray]:
        c = self.config
        work = reduced(image.convert("RGB"), c.work_size)
        pixels = np.asarray(work, dtype=np.int16)
        ring = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                               pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
        colour = np.median(ring, axis=0)
        if colour.min() < c.lightest_below or (np.abs(ring - colour).max(axis=1) <= c.tolerance).mean() < c.border_share:
            return []
        # No hole filling: a transparent hole composited on white is background here, as
        # it shows the photo beneath once the cut-out is pasted somewhere.
        mask = np.abs(pixels - colour).max(axis=2) > c.tolerance
        if not c.min_area * mask.size <= mask.sum() <= c.max_area * mask.size:
            return []
        return [_to_size(mask, image.size)]


@dataclass(frozen=True)
class ObjectNetSegmenterConfig:
    model: str = "objectnet.onnx"  # in robusthash/data, or a path
    work_size: int = 256  # longer side the network sees (rounded to a multiple of 32)
    probability: float = 0.3  # a pixel is an object's above this
    min_area: float = 0.01  # share of the image
    max_segments: int = 4


class ObjectNetSegmenter:
    """Connected regions of ObjectNet's mask, largest first."""

    background = Background.removed
    pasted = True

    def __init__(self, config: ObjectNetSegmenterConfig = ObjectNetSegmenterConfig()):
        from ..runtime import onnx_session, shipped_model

        self.config = config
        path = Path(config.model) if Path(config.model).is_file() else shipped_model(config.model)
        self.session = onnx_session(path)

    def probabilities(self, image: Image.Image) -> np.ndarray:
        """ObjectNet's probability per pixel of the work copy (sides multiples of 32)."""
        c = self.config
        scale = c.work_size / max(image.size)
        size = tuple(max(32, round(side * scale / 32) * 32) for side in image.size)
        work = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        logits = self.session.run(None, {"images": work.transpose(2, 0, 1)[None]})[0][0, 0]
        return 1.0 / (1.0 + np.exp(-logits))

    def segment(self, image: Image.Image) -> list[np.ndarray]:
        c = self.config
        region = self.probabilities(image) > c.probability
        components, count = ndi.label(region)
        if not count:
            return []
        sizes = ndi.sum(region, components, range(1, count + 1))
        keep = [(size, index) for index, size in enumerate(sizes, start=1) if size >= c.min_area * region.size]
        keep.sort(key=lambda item: -item[0])
        return [_to_size(components == index, image.size) for _, index in keep[: c.max_segments]]


INSTANCE_OUTPUTS = ("boxes", "labels", "scores", "masks")


class OnnxInstanceSegmenter:
    """An instance-segmentation network the user supplies as ONNX, in the layout of
    torchvision's Mask R-CNN export: input one image, float32 3×H×W in [0, 1]; outputs
    ``boxes`` (N×4, x1 y1 x2 y2 in input pixels), ``labels`` (N), ``scores`` (N) and
    ``masks`` (N×1×h×w probabilities: the whole input, or a box's grid such as 28×28,
    which is stretched into its box). Instances scoring at least ``score`` (the paper:
    0.20) are kept, their masks at 0.5. Runs on onnxruntime; nothing is downloaded."""

    background = None
    pasted = False

    def __init__(self, model: Path | str, score: float = 0.20, work_size: int = 640):
        from ..runtime import onnx_session

        self.path = Path(model)
        self.session = onnx_session(self.path)
        outputs = [o.name for o in self.session.get_outputs()]
        if len(self.session.get_inputs()) != 1 or any(name not in outputs for name in INSTANCE_OUTPUTS):
            raise ValueError(f"{self.path}: an instance-segmentation model needs one input and the outputs "
                             f"{', '.join(INSTANCE_OUTPUTS)}; it has {', '.join(outputs)}")
        self.input = self.session.get_inputs()[0].name
        self.outputs = outputs
        self.score = score
        self.work_size = work_size

    def segment(self, image: Image.Image) -> list[np.ndarray]:
        work = reduced(image.convert("RGB"), self.work_size)
        pixels = (np.asarray(work, dtype=np.float32) / 255.0).transpose(2, 0, 1)
        found = dict(zip(self.outputs, self.session.run(None, {self.input: pixels})))
        masks = []
        for box, score, mask in zip(found["boxes"], found["scores"], found["masks"]):
            if score < self.score:
                continue
            mask = mask.reshape(mask.shape[-2:])
            full = np.zeros((work.height, work.width), dtype=bool)
            if mask.shape == full.shape:
                full = mask > 0.5
            else:  # a box's grid: stretch it into the box
                left, top, right, bottom = (int(round(v)) for v in np.clip(box, 0, [work.width, work.height] * 2))
                if right > left and bottom > top:
                    grid = Image.fromarray(mask.astype(np.float32)).resize((right - left, bottom - top),
                                                                              Image.Resampling.BILINEAR)
                    full[top:bottom, left:right] = np.asarray(grid) > 0.5
            if full.any():
                masks.append(_to_size(full, image.size))
        return sorted(masks, key=lambda m: -int(m.sum()))


def _to_size(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0
