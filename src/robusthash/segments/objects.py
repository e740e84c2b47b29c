"""Isolating one object of an image and normalising its rotation (Steinebach,
Berwanger, Liu, section 4.2).

An object is a boolean mask over the image. It is cut out either with its background
removed (every pixel outside the mask white) or kept (the bounding box as it is), its
orientation is read from the mask (scikit-image ``regionprops``: the angle of the
major axis of the ellipse with the mask's second moments), and the object is rotated
by minus that angle on a canvas large enough that nothing is cut off; the result is
the bounding box of the rotated mask. The same object rotated by any angle then comes
out upright the same way, up to a half turn (an ellipse's axis has no direction),
which ForBild's automatic mirroring absorbs: a half turn is a horizontal plus a
vertical flip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.measure import regionprops

MIN_SIDE = 50  # the paper discards objects smaller than 50 × 50 pixels
WHITE = (255, 255, 255)


class Background(str, Enum):
    removed = "removed"  # pixels outside the mask set to white
    kept = "kept"  # the bounding box as it is
    # Pixels outside the mask take the colour of the nearest pixel inside it: the object
    # alone decides the picture, as with "removed", but different objects do not all
    # become mostly-white pictures whose learned hashes crowd together.
    filled = "filled"


@dataclass(frozen=True)
class NormalisedObject:
    image: Image.Image  # upright object, RGB
    box: tuple[int, int, int, int]  # (left, top, right, bottom) of the mask in the source image
    angle: float  # degrees the object was rotated by (counter-clockwise) to be upright
    area: int  # pixels in the mask


def orientation(mask: np.ndarray) -> float:
    """Angle in degrees, counter-clockwise, from the image's vertical axis to the mask's
    major axis, in (-90, 90]; 0 for an empty mask."""
    props = regionprops(mask.astype(np.uint8))
    return math.degrees(props[0].orientation) if props else 0.0


def box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    top, bottom = np.flatnonzero(rows)[[0, -1]]
    left, right = np.flatnonzero(cols)[[0, -1]]
    return int(left), int(top), int(right) + 1, int(bottom) + 1


def nearest_fill(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``pixels`` (H×W×3) with every pixel outside ``mask`` set to its nearest pixel inside."""
    _, (rows, cols) = ndi.distance_transform_edt(~mask, return_indices=True)
    return pixels[rows, cols]


MAX_FILLED = 0.6  # fill_in leaves a picture alone where its objects cover more than this share


def fill_in(image: Image.Image, masks: list[np.ndarray], margin: int = 2) -> Image.Image | None:
    """``image`` with the objects ``masks`` mark (grown by ``margin`` px, for their blended
    edges) filled from the nearest pixels around them: a montage's photo without what was
    pasted on it. None without masks, or where they cover most of the picture."""
    if not masks:
        return None
    covered = ndi.binary_dilation(np.logical_or.reduce(masks), iterations=margin)
    if covered.mean() > MAX_FILLED or covered.all():
        return None
    return Image.fromarray(nearest_fill(np.asarray(image.convert("RGB")), ~covered))


def normalise_object(image: Image.Image, mask: np.ndarray, background: Background = Background.removed,
                     min_side: int = MIN_SIDE) -> NormalisedObject | None:
    """The object ``mask`` marks in ``image``, isolated and upright; None when its
    bounding box is smaller than ``min_side`` on either side (or the mask is empty)."""
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask of shape {mask.shape} does not fit an image of {image.width}×{image.height}")
    box = box_of(mask)
    if box is None or box[2] - box[0] < min_side or box[3] - box[1] < min_side:
        return None
    left, top, right, bottom = box
    angle = -orientation(mask)
    rgb = image.convert("RGB")
    if background is Background.removed:
        pixels = np.array(rgb.crop(box))
        pixels[~mask[top:bottom, left:right]] = WHITE
        region, region_mask = Image.fromarray(pixels), mask[top:bottom, left:right]
    elif background is Background.filled:  # filled after the rotation, below
        region, region_mask = rgb.crop(box), mask[top:bottom, left:right]
    else:
        # Rotating the box would bring in corners from outside it: take a square around
        # the box's centre that holds the box at any angle, so the rotated bounding box
        # is filled with the image's own pixels wherever the image has them.
        half = math.ceil(math.hypot(right - left, bottom - top) / 2)
        cx, cy = (left + right) // 2, (top + bottom) // 2
        square = (cx - half, cy - half, cx + half, cy + half)
        region = rgb.crop(square)  # outside the image: black, as PIL fills
        region_mask = np.asarray(Image.fromarray(mask).crop(square), dtype=bool)
    turned = region.rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=WHITE)
    turned_mask = Image.fromarray(region_mask.astype(np.uint8) * 255).rotate(angle, Image.Resampling.NEAREST,
                                                                               expand=True)
    bbox = turned_mask.getbbox()
    if bbox is None:
        return None
    upright = turned.crop(bbox)
    if background is Background.filled:
        # One pixel in from the mask's edge: the bilinear rotation blends the border pixels
        # with what lay outside the object.
        inside = np.asarray(turned_mask.crop(bbox)) > 0
        eroded = ndi.binary_erosion(inside)
        upright = Image.fromarray(nearest_fill(np.asarray(upright), eroded if eroded.any() else inside))
    return NormalisedObject(upright, box, angle, int(mask.sum()))
