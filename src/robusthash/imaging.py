"""Image geometry helpers of the ground floor: resizing, borders, halves, the picture within a query."""

from __future__ import annotations

import math
from collections.abc import Iterator

from PIL import Image


def reduced(image: Image.Image, side: int, resample: Image.Resampling = Image.Resampling.BOX) -> Image.Image:
    """``image`` down-scaled so its longer side is at most ``side`` (sides rounded, ≥ 1 px)."""
    scale = side / max(image.size)
    if scale >= 1:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)


def near_colour(pixels: "np.ndarray", colour, tolerance: float) -> "np.ndarray":
    """Which of an RGB uint8 array's pixels lie within ``tolerance`` of ``colour`` in every
    channel (bool, the array's shape less the channels): OpenCV's inRange, 10x numpy's
    max over the channel axis."""
    import cv2
    import numpy as np

    low, high = tuple(np.ceil(np.asarray(colour) - tolerance)), tuple(np.floor(np.asarray(colour) + tolerance))
    return cv2.inRange(np.ascontiguousarray(pixels), low, high) > 0


# The least share of each side a border may leave: a 2:1 picture letterboxed into 9:16
# keeps 28% of the height, a 2.39:1 film frame 24%; at 0.3 neither was trimmed, and 4 of
# 8 white 9:16 letterboxes of validation photos were never candidates (at 0.2, 4 more of
# the 999 train photos hold a border to trim, each only one more query variant).
MIN_CONTENT = 0.2


def uniform_borders(image: Image.Image, tolerance: int = 20, min_border: float = 0.02,
                    min_content: float = MIN_CONTENT) -> tuple[int, int, int, int] | None:
    """The box ``(left, top, right, bottom)`` of ``image`` inside its uniform borders
    (padding, letterboxing, a frame of one colour), or None when it has none worth
    trimming.

    From each side inward, a line belongs to the border while 98% of its pixels lie
    within ``tolerance`` (per channel) of that side's outermost line's median colour:
    JPEG ringing along the picture's edge and a few stray pixels do not end a border;
    the first line of picture does. Borders are found on a copy reduced to 256 px, then
    located exactly in a strip of the full image. A side's border counts from
    ``min_border`` × that dimension (≥ 2 px), so a thin dark edge is no border; an image
    that would keep less than ``min_content`` of a side (a flat picture) has none.
    """
    import numpy as np

    def depth(lines: np.ndarray, least: float) -> int:  # lines[0] is the outermost
        # A line's pixel is uniform when each channel lies within ``tolerance`` of the
        # edge's median. The lines a border needs at least are tried first, and most
        # pictures have none: their sides are done after a few lines.
        median = np.median(lines[0], axis=0)

        def uniform(part: np.ndarray) -> np.ndarray:
            return near_colour(part, median, tolerance).mean(axis=1) >= 0.98

        if not uniform(lines[: math.ceil(least)]).all():
            return 0
        found = uniform(lines)
        run = int(np.argmin(found)) if not found.all() else len(found)
        return run if run >= least else 0

    # Pillow resizes RGBA and LA through a full-size premultiplied copy: they are first
    # box-reduced (exactly, by strips) to about twice the size the search looks at.
    coarse = box_reduced(image, max(image.size) // 512) if image.mode in ("RGBA", "LA") else image
    small = np.asarray(reduced(coarse, 256).convert("RGB"))
    height, width = small.shape[:2]
    if min(height, width) < 8:
        return None
    sides = {"top": small, "bottom": small[::-1], "left": small.transpose(1, 0, 2),
             "right": small.transpose(1, 0, 2)[::-1]}
    found = {side: depth(lines, max(2, min_border * len(lines))) for side, lines in sides.items()}
    if not any(found.values()):
        return None
    if (height - found["top"] - found["bottom"] < min_content * height
            or width - found["left"] - found["right"] < min_content * width):
        return None
    full = image.convert("RGB") if image.mode != "RGB" else image
    scale = max(image.size) / max(width, height)
    exact = {}
    for side, d in found.items():
        if not d:
            exact[side] = 0
            continue
        strip = int(np.ceil((d + 2) * scale))  # the border's end lies within this strip of the full image
        w, h = full.size
        box = {"top": (0, 0, w, strip), "bottom": (0, h - strip, w, h), "left": (0, 0, strip, h),
               "right": (w - strip, 0, w, h)}[side]
        lines = np.asarray(full.crop(box))
        lines = {"top": lines, "bottom": lines[::-1], "left": lines.transpose(1, 0, 2),
                 "right": lines.transpose(1, 0, 2)[::-1]}[side]
        exact[side] = depth(lines, 1)
    box = (exact["left"], exact["top"], image.width - exact["right"], image.height - exact["bottom"])
    return box if box[2] > box[0] and box[3] > box[1] else None


def nested_borders(image: Image.Image, most: int = 3,
                   min_content: float = MIN_CONTENT) -> list[tuple[int, int, int, int]]:
    """The boxes of ``image`` inside each of its frames of uniform borders, outermost
    first (:func:`uniform_borders`, looked for again inside each box found, ``most``
    times): a picture framed twice, as a letterboxed video frame on a white page, a mat
    inside a frame, or a picture moved within its frame (one side filled) and then
    padded. Each box is in ``image``'s pixels and keeps at least ``min_content`` of each
    of its sides; an empty list when there is no border."""
    boxes: list[tuple[int, int, int, int]] = []
    inner, factor, (left, top, right, bottom) = image, 1, (0, 0, *image.size)
    for _ in range(most):
        box = uniform_borders(inner)
        if box is None:
            break
        found = (left + box[0] * factor, top + box[1] * factor,
                 min(right, left + box[2] * factor), min(bottom, top + box[3] * factor))
        if found[2] - found[0] < min_content * image.width or found[3] - found[1] < min_content * image.height:
            break
        boxes.append(found)
        left, top, right, bottom = found
        # The next frame is looked for in the box, reduced as it is cut where it is large
        # (a crop of most of a 50 MP upload would be as large as its decoding); its
        # borders are then located to ``factor`` pixels.
        factor = cut_factor(found, PART_PIXELS)
        inner = box_reduced(image, factor, found)
    return boxes


# Work that Pillow or numpy would do on a whole large image through a full-size copy
# (premultiplied alpha, float64 values, a conversion of several passes) is done this
# many pixels at a time instead.
STRIP_PIXELS = 1 << 20


def row_strips(width: int, top: int, bottom: int, multiple: int = 1) -> Iterator[tuple[int, int]]:
    """Rows ``top`` to ``bottom`` of a ``width``-pixel-wide image as (first, end) strips of
    about :data:`STRIP_PIXELS`, each a ``multiple`` of rows tall (the last may be shorter)."""
    rows = multiple * max(1, STRIP_PIXELS // (multiple * max(1, width)))
    for first in range(top, bottom, rows):
        yield first, min(bottom, first + rows)


def box_reduced(image: Image.Image, factor: int, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """``image`` (or its ``box``) box-averaged over ``factor`` × ``factor`` blocks: the
    pixels of ``Image.reduce``, without a full-size copy for modes with alpha (they are
    reduced a strip of whole blocks at a time)."""
    x0, y0, x1, y1 = box or (0, 0, *image.size)
    if factor < 2:
        return image.crop((x0, y0, x1, y1)) if box else image
    if image.mode not in ("RGBA", "LA"):
        return image.reduce(factor, (x0, y0, x1, y1))
    out = Image.new(image.mode, (-(-(x1 - x0) // factor), -(-(y1 - y0) // factor)))
    for first, end in row_strips(x1 - x0, y0, y1, factor):
        out.paste(image.crop((x0, first, x1, end)).reduce(factor), (0, (first - y0) // factor))
    return out


# A query's part (a half, its picture cut out or straightened, its borders trimmed) is
# searched for but never stored: a large one is hashed reduced to at most this many
# pixels, cut without a full-size copy (memory: pdq holds 30 bytes a pixel, and a crop of
# most of a 50 MP upload is as large as its decoding). Photos up to 2 MP are cut whole.
PART_PIXELS = 2_000_000


def cut_factor(box: tuple[int, int, int, int], most_pixels: int | None) -> int:
    """The integer factor a ``box`` is box-reduced by as it is cut, so that it holds at
    most about ``most_pixels`` (1: cut whole)."""
    pixels = (box[2] - box[0]) * (box[3] - box[1])
    return math.ceil(math.sqrt(pixels / most_pixels)) if most_pixels and pixels > most_pixels else 1


def cut_out(image: Image.Image, box: tuple[int, int, int, int], most_pixels: int | None = None) -> Image.Image:
    """``image``'s ``box``, box-reduced by an integer factor as it is cut when it holds more
    than ``most_pixels`` (no full-size copy of it is made)."""
    return box_reduced(image, cut_factor(box, most_pixels), box)


def halves(image: Image.Image, most_pixels: int | None = None, at: float = 0.5) -> Iterator[Image.Image]:
    """``image`` cut in two across its longer side, at the fraction ``at`` of it (the
    middle, or :func:`montage_cut`'s): where two pictures stand side by side (a montage,
    a before-and-after), each half is mostly one of them. One half at a time, and a half
    of more than ``most_pixels`` box-reduced by an integer factor as it is cut
    (``Image.reduce``'s box): half a 50 MP upload is 98 MB at full size."""
    for box in half_boxes(image.size, at):
        yield cut_out(image, box, most_pixels)


def half_boxes(size: tuple[int, int], at: float = 0.5) -> tuple[tuple[int, int, int, int], ...]:
    """The boxes (x0, y0, x1, y1) of :func:`halves` in an image of ``size``."""
    w, h = size
    cut = min(max(1, round(at * (w if w >= h else h))), (w if w >= h else h) - 1)
    return ((0, 0, cut, h), (cut, 0, w, h)) if w >= h else ((0, 0, w, cut), (0, cut, w, h))


def window_boxes(size: tuple[int, int], scales: tuple[float, ...] = (0.4,),
                 step: float = 0.75) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) over an image of ``size``: at each of ``scales`` (a share of
    each side) a grid of windows, neighbours ``step`` of a window apart and the last one
    flush with the far edge, so that a picture of about that share anywhere in the image
    lies mostly within one of them."""
    w, h = size
    boxes = []
    for scale in scales:
        bw, bh = max(1, round(scale * w)), max(1, round(scale * h))

        def starts(room: int, side: int) -> list[int]:  # evenly spread, first and last flush
            n = math.ceil(room / (step * side) - 0.01) + 1 if room > 0 else 1  # 2.002 steps are 2
            return [round(i * room / (n - 1)) for i in range(n)] if n > 1 else [0]

        boxes += [(x, y, x + bw, y + bh) for y in starts(h - bh, bh) for x in starts(w - bw, bw)]
    return boxes


def picture_quad(image: Image.Image, tolerance: int = 24, min_fill: float = 0.35, min_area: float = 0.1,
                 min_tilt: float = 2.0, min_fit: float = 0.9,
                 min_shown: float = 0.5) -> tuple[tuple[float, float], ...] | None:
    """The corners of a picture lying turned or in perspective on a plain ground (a
    rotated copy on its fill colour, a print on a scanner's bed, an affine or perspective
    warp with fill), as fractions of ``image``'s width and height, in the order top-left,
    top-right, bottom-right, bottom-left; None when there is no such picture.

    The ground is the median colour of the image's outermost pixels, and must make up
    ``min_fill`` of them. The picture is everything not connected to the frame through
    pixels within ``tolerance`` of it (so the ground's colour inside the picture stays
    picture); its largest part must cover ``min_area`` of the image. Its convex hull is
    either a quadrilateral, filling ``min_fit`` of the four-cornered polygon fitted to it,
    or, where the frame cut the picture's corners off (a copy turned on a canvas of its
    own size, an affine warp), a polygon whose sides off the frame lie on four lines: the
    corners are then where those lines meet, outside the image (fractions below 0 or
    above 1), and at least ``min_shown`` of the picture must be within the frame.
    An upright rectangle (sides within ``min_tilt`` degrees of the axes) is left to
    :func:`uniform_borders`. Found on a copy reduced to 256 px.
    """
    import cv2
    import numpy as np

    small = np.ascontiguousarray(reduced(image, 256).convert("RGB"))
    height, width = small.shape[:2]
    if min(height, width) < 16:
        return None
    near = near_colour(small, np.median(np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]]), axis=0),
                       tolerance)
    frame = np.concatenate([near[0], near[-1], near[:, 0], near[:, -1]])
    if frame.mean() < min_fill:
        return None
    # The ground: the ground-coloured pixels connected to the frame.
    _, labels = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)  # 0: not ground-coloured
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    picture = (~np.isin(labels, touching[touching > 0])).astype(np.uint8)
    picture = cv2.morphologyEx(picture, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # JPEG specks on the ground
    contours, _ = cv2.findContours(picture, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    hull_area = cv2.contourArea(hull)
    if hull_area < min_area * height * width:
        return None
    quad = _fitted_quad(hull, hull_area, (width, height), min_fit)
    if quad is None:
        quad = _clipped_quad(hull, hull_area, (width, height), min_fit, min_shown)
    if quad is None:
        return None
    # Corners clockwise (as seen, y down) from the one with the smallest x + y: a picture
    # turned by 45° has two such candidates, and either start straightens it, turned by
    # a multiple of 90°, which the searches undo.
    x, y = quad[:, 0], quad[:, 1]
    if np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) < 0:
        quad = quad[::-1]
    corners = np.roll(quad, -int(np.argmin(quad.sum(axis=1))), axis=0)
    edges = np.roll(corners, -1, axis=0) - corners
    angles = np.degrees(np.arctan2(edges[:, 1], edges[:, 0])) % 90
    if np.all(np.minimum(angles, 90 - angles) < min_tilt):
        return None
    # Pixel corners (the contour runs through pixel centres) as fractions of the sides.
    fractions = (corners + 0.5) / np.array([width, height])
    return tuple((float(x), float(y)) for x, y in fractions)


def _fitted_quad(hull, hull_area: float, size: tuple[int, int], min_fit: float):
    """The four-cornered polygon a whole picture's hull simplifies to, or None (also when
    a side runs along the frame: a band of a picture cut by the frame is not all of it)."""
    import cv2
    import numpy as np

    perimeter = cv2.arcLength(hull, True)
    for share in (0.01, 0.02, 0.03, 0.05, 0.08):
        approx = cv2.approxPolyDP(hull, share * perimeter, True)
        if len(approx) == 4:
            quad = approx.reshape(4, 2).astype(np.float64)
            if not cv2.isContourConvex(quad.astype(np.float32).reshape(-1, 1, 2)):
                return None
            quad_area = cv2.contourArea(quad.astype(np.float32))
            if quad_area <= 0 or min(hull_area, quad_area) / max(hull_area, quad_area) < min_fit:
                return None
            if any(_along_frame(a, b, size) for a, b in zip(quad, np.roll(quad, -1, axis=0))):
                return None
            return quad
        if len(approx) < 4:
            return None
    return None


def _along_frame(a, b, size: tuple[int, int]) -> bool:
    """Whether the segment from ``a`` to ``b`` (pixel centres) runs along one side of the frame."""
    width, height = size

    def sides(point) -> set[str]:
        x, y = point
        return {name for name, on in (("left", x <= 1), ("right", x >= width - 2), ("top", y <= 1),
                                      ("bottom", y >= height - 2)) if on}

    return bool(sides(a) & sides(b))


def _clipped_quad(hull, hull_area: float, size: tuple[int, int], min_fit: float, min_shown: float,
                  least_side: float = 0.04):
    """The four corners of a picture whose corners the frame cut off: the hull's sides
    that do not run along the frame (each at least ``least_side`` of its perimeter) must
    be four, and consecutive ones meet at the picture's corners; the quadrilateral they
    make, cut to the frame, must match the hull as :func:`picture_quad` asks."""
    import cv2
    import numpy as np

    width, height = size
    perimeter = cv2.arcLength(hull, True)
    polygon = cv2.approxPolyDP(hull, 0.01 * perimeter, True).reshape(-1, 2).astype(np.float64)

    lines = []
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0)):
        if _along_frame(a, b, size):
            continue  # along the frame: where the picture was cut, not one of its sides
        if np.linalg.norm(b - a) >= least_side * perimeter:
            lines.append((a, b))
    if len(lines) != 4:
        return None
    corners = []
    for (a, b), (c, d) in zip(lines, lines[1:] + lines[:1]):
        u, v = b - a, d - c
        cross = u[0] * v[1] - u[1] * v[0]
        if abs(cross) < 0.3 * np.linalg.norm(u) * np.linalg.norm(v):  # nearly parallel: not adjacent sides
            return None
        t = ((c - a)[0] * v[1] - (c - a)[1] * v[0]) / cross
        corners.append(a + t * u)
    quad = np.array(corners)
    if not cv2.isContourConvex(quad.astype(np.float32).reshape(-1, 1, 2)):
        return None
    quad_area = cv2.contourArea(quad.astype(np.float32))
    frame = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    shown, _ = cv2.intersectConvexConvex(quad.astype(np.float32), frame)
    if quad_area <= 0 or shown < min_shown * quad_area or min(hull_area, shown) / max(hull_area, shown) < min_fit:
        return None
    return quad


def straightened(image: Image.Image, corners: tuple[tuple[float, float], ...],
                 most_pixels: int | None = None) -> Image.Image:
    """The picture within ``corners`` (:func:`picture_quad`'s fractions) mapped onto an
    upright rectangle of its mean side lengths (Pillow's QUAD transform, bilinear),
    scaled down to at most ``most_pixels``."""
    import numpy as np

    points = np.array(corners) * np.array(image.size)
    tl, tr, br, bl = points
    width = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    height = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    if most_pixels and width * height > most_pixels:
        shrink = math.sqrt(most_pixels / (width * height))
        width, height = width * shrink, height * shrink
    size = (max(1, round(width)), max(1, round(height)))
    # QUAD takes the source corners upper-left, lower-left, lower-right, upper-right.
    data = tuple(float(v) for v in (*tl, *bl, *br, *tr))
    return image.transform(size, Image.Transform.QUAD, data, Image.Resampling.BILINEAR)


def frame_colour(pixels) -> "np.ndarray":
    """The commonest colour of an RGB array's outermost pixels (the median of those in the
    most frequent of 8 × 8 × 8 colour bins): where only one side has surroundings (a
    caption above a photo), the median of the whole frame would be the photo's."""
    import numpy as np

    frame = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    bins = (frame[:, 0] // 32).astype(np.int32) * 64 + (frame[:, 1] // 32) * 8 + frame[:, 2] // 32
    return np.median(frame[bins == np.bincount(bins).argmax()], axis=0)


def content_box(image: Image.Image, tolerance: int = 24, plain: float = 0.75, min_content: float = 0.15,
                max_content: float = 0.92, gap: float = 0.03, detail: float = 0.1,
                page: float = 0.65) -> tuple[float, float, float, float] | None:
    """The box of the picture within surroundings of mostly one colour that hold other
    things (a screenshot's bars and page with text and icons, a caption's band of text,
    letterboxing with a logo), as fractions (left, top, right, bottom) of ``image``'s
    sides; None when there is none, or when it covers more than ``max_content`` or less
    than ``min_content`` of the image.

    The surroundings' colour is the commonest of the image's outermost pixels. A row (a
    column) belongs to them when ``plain`` of its pixels lie within ``tolerance`` (per
    channel) of that colour: a line of text on the page does, a line through the picture
    does not. The picture spans the longest run of the other rows, then of the other
    columns within it, across runs of surroundings shorter than ``gap`` of the side.
    Found on a copy reduced to 256 px. :func:`uniform_borders` trims borders of one
    colour exactly; this finds the picture where the surroundings hold more.
    """
    import cv2
    import numpy as np

    small = np.ascontiguousarray(reduced(image, 256).convert("RGB"))
    height, width = small.shape[:2]
    if min(height, width) < 16:
        return None
    ground = frame_colour(small)
    other = ~near_colour(small, ground, tolerance)
    # Text and icons are thin at this size: an opening removes them and keeps the picture.
    solid = cv2.morphologyEx(other.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0

    def longest_run(busy: np.ndarray) -> tuple[int, int]:
        bridge = max(1, round(gap * len(busy)))
        filled = busy.copy()
        idx = np.flatnonzero(busy)
        for a, b in zip(idx[:-1], idx[1:]):
            if 1 < b - a <= bridge + 1:
                filled[a:b] = True
        edges = np.diff(np.concatenate([[0], filled.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if not len(starts):
            return 0, 0
        longest = int(np.argmax(ends - starts))
        return int(starts[longest]), int(ends[longest])

    top, bottom = longest_run(solid.mean(axis=1) > 1 - plain)
    if bottom - top < min_content * height:
        return None
    left, right = longest_run(solid[top:bottom].mean(axis=0) > 1 - plain)
    if right - left < min_content * width:
        return None
    share = (bottom - top) * (right - left) / (height * width)
    if not min_content <= share <= max_content:
        return None
    # Surroundings of one flat colour are uniform_borders' case (or a photo's own sky):
    # these must hold something, text or icons, that the opening took away: ``detail`` of
    # their rows that hold anything at all (a short post above a blank page is as much a
    # page as a long one).
    outside = np.ones_like(other)
    outside[top:bottom, left:right] = False
    around = np.count_nonzero(outside)
    # (Away from the box's edge, where the picture's own edge pixels lie.)
    away = np.ones_like(other)
    away[max(0, top - 3):bottom + 3, max(0, left - 3):right + 3] = False
    busy_rows = (other & away).any(axis=1)
    thin = np.count_nonzero(other & ~solid & away)
    if not thin or thin < detail * np.count_nonzero(away & busy_rows[:, None]):
        return None
    # ... on a ground of mostly one colour (a page), not a texture's fine detail (fur, grass).
    if np.count_nonzero(~other & outside) < page * around:
        return None
    return refined_box(image, (left / width, top / height, right / width, bottom / height), ground, tolerance, plain)


def refined_box(image: Image.Image, box: tuple[float, float, float, float], ground, tolerance: int,
                plain: float) -> tuple[float, float, float, float]:
    """``box`` (fractions, found on a reduced copy) with each side moved to the exact
    line of ``image`` where the surroundings end: the outermost line, within a few
    reduced pixels of the side, after which no line is at least ``plain`` of
    ``ground``'s colour (within ``tolerance``)."""
    import numpy as np

    w, h = image.size
    reach = math.ceil(2 * max(image.size) / 256) + 2
    x0, y0, x1, y1 = fraction_box(image.size, box)

    def edge(at: int, size: int, across_rows: bool, inward: bool) -> int:
        first, end = max(0, at - reach), min(size, at + reach)
        strip = image.crop((x0, first, x1, end) if across_rows else (first, y0, end, y1))
        lines = np.asarray(strip.convert("RGB"))
        ground_line = near_colour(lines if across_rows else lines.transpose(1, 0, 2), ground, tolerance).mean(
            axis=1) >= plain
        index = np.flatnonzero(ground_line)
        if not len(index):
            return at
        # Inward: the side's outermost picture line follows the last ground line.
        return first + (int(index[-1]) + 1 if inward else int(index[0]))

    top, bottom = edge(y0, h, True, True), edge(y1, h, True, False)
    left, right = edge(x0, w, False, True), edge(x1, w, False, False)
    if bottom - top < (y1 - y0) / 2 or right - left < (x1 - x0) / 2:  # no clear line: keep the coarse box
        return box
    return left / w, top / h, right / w, bottom / h


def fraction_box(size: tuple[int, int], box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """A box given as fractions of the sides, in the pixels of an image of ``size``
    (outward to whole pixels, at least one pixel)."""
    w, h = size
    x0, y0 = int(box[0] * w + 1e-9), int(box[1] * h + 1e-9)  # a fraction of a whole line stays that line
    return x0, y0, max(x0 + 1, math.ceil(box[2] * w - 1e-9)), max(y0 + 1, math.ceil(box[3] * h - 1e-9))


def montage_cut(image: Image.Image, tolerance: int = 12, least: float = 0.2, seam: float = 4.0) -> float:
    """Where two pictures side by side meet, as a fraction of ``image``'s longer side
    (across which :func:`halves` cuts); 0.5 when nowhere is clear. Between ``least`` and
    1 − ``least`` of the side: the middle of the gutter nearest the middle (a run of
    lines each within ``tolerance`` of one grey over 95% of their length), else the
    line where the picture changes most abruptly along all its length (a seam: the
    median step across it at least ``seam`` times the median over all lines). Found on
    a grey copy reduced to 256 px."""
    import numpy as np

    grey = np.asarray(reduced(image, 256).convert("L"), dtype=np.int16)
    if image.width < image.height:
        grey = grey.T  # lines across the longer side are columns
    length = grey.shape[1]
    if length < 16:
        return 0.5
    first, last = max(1, int(least * length)), min(length - 1, int((1 - least) * length))
    median = np.median(grey, axis=0)
    flat = (np.abs(grey - median) <= tolerance).mean(axis=0) >= 0.95
    gutter = np.flatnonzero(flat[first:last]) + first
    if len(gutter):
        runs = np.split(gutter, np.flatnonzero(np.diff(gutter) > 1) + 1)
        middle = min(runs, key=lambda run: abs((run[0] + run[-1]) / 2 - length / 2))
        return float((middle[0] + middle[-1] + 1) / 2 / length)
    steps = np.median(np.abs(np.diff(grey, axis=1)), axis=0)  # steps[i]: between lines i and i + 1
    typical = max(1.0, float(np.median(steps)))
    inner = steps[first - 1:last - 1]
    best = int(np.argmax(inner))
    if inner[best] >= seam * typical:
        return float((best + first) / length)
    return 0.5
