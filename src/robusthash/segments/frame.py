"""Rotation normalisation of the whole picture: the paper's step for objects (section
4.2: orientation from the mask, turn back, bounding box) applied to the image itself.

A picture turned about its centre keeps a frame of plain fill in its four corners
(black for most editors and for our RT attack), either on a canvas of the same size
(the picture's corners are lost) or on one grown to hold it. The frame's edges give
the angle far more exactly than the second moments of a mask, and without the
half-turn ambiguity; the picture is then turned back, cut to its own rectangle, and
the corners it lost are filled from their nearest pixels, so it hashes like the
upright original. A frame is accepted only where the corners fit one turned rectangle
(fill inside, picture just beyond its edges): dark photos whose black sky meets a black
frame give no angle, and are left to the whole-image hash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .objects import nearest_fill
from ..imaging import reduced


@dataclass(frozen=True)
class FrameConfig:
    work_size: int = 256  # the frame is measured on a copy this size (its every other pixel for candidates)
    tolerance: int = 16  # max RGB channel difference that still counts as the fill colour
    min_angle: float = 1.0  # degrees; below this the picture is taken as upright
    min_inside: float = 0.9  # share of the predicted frame that must be fill
    min_contrast: float = 0.5  # ... minus the share of fill just inside the picture's edges


@dataclass(frozen=True)
class Frame:
    angle: float  # degrees the picture was turned, counter-clockwise
    expanded: bool  # the canvas grew to hold it (else its size was kept and corners lost)
    fill: tuple[int, int, int]
    picture_size: tuple[float, float]  # the picture's own width and height, in the image's pixels


def picture_size(canvas: tuple[float, float], angle: float, expanded: bool) -> tuple[float, float]:
    """Width and height of the picture that, turned by ``angle``, gives ``canvas``."""
    if not expanded:
        return float(canvas[0]), float(canvas[1])
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    det = c * c - s * s
    if abs(det) < 1e-6:
        return 0.0, 0.0
    return (c * canvas[0] - s * canvas[1]) / det, (c * canvas[1] - s * canvas[0]) / det


def outside(x: np.ndarray, y: np.ndarray, angle: float, size: tuple[float, float]) -> np.ndarray:
    """Signed distance (pixels, positive outside) of canvas points ``x``, ``y`` (relative
    to the canvas centre) from a ``size`` rectangle turned by ``angle`` about the centre."""
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    # PIL turns counter-clockwise as seen, with y pointing down: the canvas point (x, y)
    # shows the picture's point (c·x − s·y, s·x + c·y).
    return np.maximum(np.abs(c * x - s * y) - size[0] / 2, np.abs(s * x + c * y) - size[1] / 2)


def _centred_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return x - (width - 1) / 2, y - (height - 1) / 2


def _fill_and_near(image: Image.Image, side: int, tolerance: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The fill colour (the four corners' median, when they agree) and which pixels of a
    ``side`` px copy have it."""
    pixels = np.asarray(reduced(image, side, Image.Resampling.BILINEAR), dtype=np.int16)
    corners = pixels[[0, 0, -1, -1], [0, -1, 0, -1]]
    fill = np.median(corners, axis=0)
    if np.abs(corners - fill).max() > tolerance:
        return None
    return fill, np.abs(pixels - fill).max(axis=2) <= tolerance


def _candidate_angles(near: np.ndarray) -> set[float]:
    """Angles whose frame fits each corner's fill run along its two edges: one edge of
    the turned picture cuts every corner, at the angle or at 90° minus it."""
    found = set()
    corners = ((near[0], near[:, 0]), (near[0, ::-1], near[:, -1]), (near[-1], near[::-1, 0]),
               (near[-1, ::-1], near[::-1, -1]))
    for along_row, along_column in corners:
        a, b = (int(np.argmin(run)) if not run.all() else len(run) for run in (along_row, along_column))
        if min(a, b) >= 1:
            angle = round(math.degrees(math.atan2(min(a, b), max(a, b))) * 2) / 2
            found.update({angle, -angle})
    return found


def _error(near: np.ndarray, x: np.ndarray, y: np.ndarray, angle: float, size: tuple[float, float]) -> float:
    # Fill predicted from the signed distance, with a one-pixel linear edge where the
    # bilinear turn blends fill and picture; compared where it can be fill.
    distance = outside(x, y, angle, size)
    zone = distance > -4
    return float(np.abs(near[zone] - np.clip(distance[zone], 0, 1)).mean()) if zone.any() else 1.0


def find_frame(image: Image.Image, config: FrameConfig = FrameConfig()) -> Frame | None:
    """The turn that left ``image`` with a plain frame in its corners, or None."""
    rgb = image.convert("RGB")
    measured = _fill_and_near(rgb, config.work_size, config.tolerance)
    if measured is None:
        return None
    fill, near = measured
    height, width = near.shape
    coarse = near[::2, ::2]
    x, y = _centred_grid(coarse.shape[1], coarse.shape[0])
    options = []
    for angle in _candidate_angles(coarse):
        for expanded in (False, True):
            # On every other pixel the canvas is (width / 2) × (height / 2) of pixel pairs.
            size = picture_size((width / 2, height / 2), angle, expanded)
            if min(size) >= 8 and abs(angle) >= config.min_angle:
                options.append((_error(coarse, x, y, angle, size), angle, expanded))
    if not options:
        return None
    _, angle, expanded = min(options)
    x, y = _centred_grid(width, height)
    # Refine on the pixels near the coarse frame's edges only: the rest cannot change.
    edge = np.abs(outside(x, y, angle, picture_size((width, height), angle, expanded))) < 8
    x, y, near_edge = x[edge], y[edge], near[edge]
    _, angle = min((_error(near_edge, x, y, a, picture_size((width, height), a, expanded)), a)
                   for a in np.round(np.arange(angle - 1.5, angle + 1.51, 0.1), 2))
    distance = outside(x, y, angle, picture_size((width, height), angle, expanded))
    inside, beyond = near_edge[distance > 1], near_edge[(distance < -1) & (distance > -4)]
    if (abs(angle) < config.min_angle or not inside.size or not beyond.size or inside.mean() < config.min_inside
            or inside.mean() - beyond.mean() < config.min_contrast):
        return None
    size = picture_size(rgb.size, float(angle), expanded)
    return Frame(float(angle), expanded, tuple(int(v) for v in fill), size)  # type: ignore[arg-type]


def upright_picture(image: Image.Image, config: FrameConfig = FrameConfig()) -> Image.Image | None:
    """``image`` turned back upright and cut to the picture's own rectangle, the corners
    it lost filled from their nearest pixels; None when it has no frame (``find_frame``)."""
    frame = find_frame(image, config)
    if frame is None:
        return None
    rgb = image.convert("RGB")
    width, height = max(1, round(frame.picture_size[0])), max(1, round(frame.picture_size[1]))
    t = math.radians(frame.angle)
    c, s = math.cos(t), math.sin(t)
    # Output point (u, v) of the picture lies at canvas point (c·u + s·v, −s·u + c·v),
    # both relative to their centres (the inverse of ``outside``'s turn).
    cx, cy, ox, oy = rgb.width / 2, rgb.height / 2, width / 2, height / 2
    data = (c, s, cx - c * ox - s * oy, -s, c, cy + s * ox - c * oy)
    upright = rgb.transform((width, height), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR,
                            fillcolor=frame.fill)
    u, v = _centred_grid(width, height)
    # Visible: the canvas point lies at least a pixel inside the canvas (the edge is blended).
    visible = (np.abs(c * u + s * v) <= rgb.width / 2 - 1.5) & (np.abs(-s * u + c * v) <= rgb.height / 2 - 1.5)
    if not visible.any():
        return None
    if visible.all():
        return upright
    return Image.fromarray(nearest_fill(np.asarray(upright), visible))


@dataclass(frozen=True)
class MomentConfig:
    work_size: int = 128  # moments are measured on a copy this size
    reach: float = 2.0  # the window's half side, in standard deviations along the major axis
    side: int = 192  # the normalised picture's side


def moment_upright(image: Image.Image, config: MomentConfig = MomentConfig()) -> Image.Image | None:
    """``image`` normalised by the moments of its brightness: a square window centred on
    the brightness centroid, ``reach`` standard deviations of the major axis wide,
    turned so that the major axis lies horizontal and the brighter tail (third moment)
    points right. A turned copy gives the same window, corners lost or not, as long as
    the bright content stays in view. Brightness is luminance above the median, so a
    dark sky or a fill frame weighs nothing. None for a picture with nothing above its
    median."""
    rgb = image.convert("RGB")
    scale = min(1.0, config.work_size / max(rgb.size))
    small = rgb if scale == 1 else rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                                              Image.Resampling.BOX)
    grey = np.asarray(small.convert("L"), dtype=np.float64)
    weight = np.clip(grey - np.median(grey), 0, None)
    total = weight.sum()
    if total <= 0:
        return None
    y, x = np.mgrid[0:grey.shape[0], 0:grey.shape[1]].astype(np.float64)
    cx, cy = (weight * x).sum() / total, (weight * y).sum() / total
    dx, dy = x - cx, y - cy
    xx, yy, xy = (weight * dx * dx).sum() / total, (weight * dy * dy).sum() / total, (weight * dx * dy).sum() / total
    theta = 0.5 * math.atan2(2 * xy, xx - yy)  # the major axis, from the x axis (y down)
    c, s = math.cos(theta), math.sin(theta)
    if (weight * (c * dx + s * dy) ** 3).sum() < 0:  # an axis has no direction: the heavier tail decides
        c, s = -c, -s
    major = (xx + yy) / 2 + math.sqrt(((xx - yy) / 2) ** 2 + xy * xy)
    # Output pixel (u, v) of a side × side window samples the image at centre + R·(u, v)·step,
    # in the image's own pixels (moments were measured on the reduced copy).
    step = 2 * config.reach * math.sqrt(major) / scale / config.side
    if step <= 0:
        return None
    centre_x, centre_y = (cx + 0.5) / scale, (cy + 0.5) / scale
    half = config.side / 2
    data = (c * step, -s * step, centre_x - (c - s) * step * half,
            s * step, c * step, centre_y - (s + c) * step * half)
    return rgb.transform((config.side, config.side), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR,
                         fillcolor=(0, 0, 0))
