"""The classical colour segmenter finds object-sized regions, deterministically."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from robusthash.segments.segmenter import ColourSegmenter, ColourSegmenterConfig


def shapes() -> tuple[Image.Image, list[np.ndarray]]:
    image = Image.new("RGB", (400, 300), (235, 235, 225))
    truth = []
    for box, colour, kind in [((30, 40, 170, 200), (200, 30, 30), "ellipse"),
                              ((220, 60, 370, 150), (30, 60, 190), "rectangle"),
                              ((200, 180, 330, 280), (40, 150, 60), "ellipse")]:
        getattr(ImageDraw.Draw(image), kind)(box, fill=colour)
        layer = Image.new("L", image.size, 0)
        getattr(ImageDraw.Draw(layer), kind)(box, fill=255)
        truth.append(np.asarray(layer) > 0)
    return image, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_each_shape_is_one_segment():
    image, truth = shapes()
    masks = ColourSegmenter().segment(image)
    assert all(m.shape == (300, 400) and m.dtype == bool for m in masks)
    for shape in truth:
        assert max(iou(shape, m) for m in masks) > 0.9
    assert [m.sum() for m in masks] == sorted((m.sum() for m in masks), reverse=True)


def test_segments_are_deterministic_and_survive_jpeg():
    image, truth = shapes()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=40)
    copy = Image.open(buffer).convert("RGB")
    segmenter = ColourSegmenter()
    first, again, jpeg = segmenter.segment(image), segmenter.segment(image), segmenter.segment(copy)
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again))
    for shape in truth:
        assert max(iou(shape, m) for m in jpeg) > 0.9


def test_limits_and_degenerate_images():
    image, _ = shapes()
    assert len(ColourSegmenter(ColourSegmenterConfig(max_segments=2)).segment(image)) == 2
    for flat in [Image.new("RGB", (1, 1)), Image.new("RGB", (300, 5), "white"), Image.new("RGB", (64, 64), (9, 9, 9))]:
        masks = ColourSegmenter().segment(flat)  # no error; a flat image has no object-sized region < 60%
        assert all(m.shape == (flat.height, flat.width) for m in masks)
