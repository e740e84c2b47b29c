"""The comparator's answer as a picture for people: the query, the original, and the
heatmap over each of them (projected onto the query through the alignment, so the
marked region sits where it is in the copy the user holds)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import Explanation
from .align import stretch_homography

PANEL = 320  # each panel's longer side
RED = np.array([230, 30, 30], dtype=np.float32)


def _heat_over_original(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The cells × cells heatmap stretched over an image of ``size`` (w, h), bilinear."""
    layer = Image.fromarray(heatmap.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(layer, dtype=np.float32).clip(0, 1)


def _heat_over_query(heatmap: np.ndarray, result: Explanation, query_size, original_size) -> np.ndarray:
    """The heatmap carried into the query's frame: sample the original-frame heat at
    each query pixel's place in the original (the inverse of the alignment's grid)."""
    import cv2

    qw, qh = query_size
    heat = _heat_over_original(heatmap, original_size)
    homography = (result.alignment.homography if result.alignment.found
                  else stretch_homography(query_size, original_size))
    xs, ys = np.meshgrid(np.arange(qw, dtype=np.float64), np.arange(qh, dtype=np.float64))
    if result.alignment.flipped:  # the homography is of the mirrored query
        xs = (qw - 1) - xs
    points = homography @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    map_x = (points[0] / points[2]).reshape(qh, qw).astype(np.float32)
    map_y = (points[1] / points[2]).reshape(qh, qw).astype(np.float32)
    return cv2.remap(heat, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def _overlay(im: Image.Image, heat: np.ndarray) -> Image.Image:
    pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
    weight = (0.65 * heat)[..., None]
    return Image.fromarray((pixels * (1 - weight) + RED * weight).round().astype(np.uint8))


def _outline_cells(im: Image.Image, result: Explanation) -> None:
    draw = ImageDraw.Draw(im)
    cells = result.heatmap.shape[0]
    cw, ch = im.width / cells, im.height / cells
    for r, c in result.edited_cells():
        draw.rectangle((c * cw, r * ch, (c + 1) * cw - 1, (r + 1) * ch - 1), outline=(255, 230, 0), width=2)


def _panel(im: Image.Image) -> Image.Image:
    im = im.convert("RGB").copy()
    scale = PANEL / max(im.size)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BILINEAR)


def explanation_picture(query: Image.Image, original: Image.Image, result: Explanation) -> Image.Image:
    """Four panels (query, original, heat on the query, heat on the original) and a
    caption; only the first two when the pair is not "edited"."""
    query, original = query.convert("RGB"), original.convert("RGB")
    show_heat = result.label == "edited"
    heat_query = _heat_over_query(result.heatmap, result, query.size, original.size) if show_heat else None
    marked_query = _overlay(query, heat_query) if show_heat else query
    marked_original = _overlay(original, _heat_over_original(result.heatmap, original.size)) if show_heat else original
    if show_heat:
        _outline_cells(marked_original, result)
    panels = [_panel(p) for p in ((query, original, marked_query, marked_original) if show_heat else (query, original))]
    titles = ["query", "original", "edits on the query", f"edits on the original ({len(result.heatmap)}x{len(result.heatmap)} cells)"]
    caption = (f"{result.label}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.probabilities.items())
               + ("; aligned" + (" (mirrored)" if result.alignment.flipped else "")
                  + f", {result.alignment.inliers} matching points" if result.alignment.found
                  else "; no geometric match, compared as is"))
    gap, header = 8, 20
    font = ImageFont.load_default(size=14)
    width = max(sum(p.width for p in panels) + gap * (len(panels) + 1), round(font.getlength(caption)) + 2 * gap)
    height = max(p.height for p in panels) + 2 * header + 2 * gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 2), caption, fill=(0, 0, 0), font=font)
    x = gap
    for panel, title in zip(panels, titles):
        draw.text((x, header + 2), title, fill=(60, 60, 60), font=font)
        canvas.paste(panel, (x, 2 * header + gap))
        x += panel.width + gap
    return canvas

