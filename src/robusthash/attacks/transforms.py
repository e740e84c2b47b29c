"""Content-preserving image transforms, each a plain, documented function of a PIL image.

The demo uses a few of them; the full attack suite of the evaluation protocol
(CMAA's Tables 1 and 2, with a spec language) builds on this module.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (1–95, libjpeg's scale) and decode again."""
    buffer = io.BytesIO()
    im.convert("RGB").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def resize(im: Image.Image, scale: float) -> Image.Image:
    """Scale both sides by ``scale`` (bicubic; at least 1 pixel per side)."""
    width, height = im.size
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return im.resize(size, Image.Resampling.BICUBIC)


def gaussian_blur(im: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    return im.filter(ImageFilter.GaussianBlur(radius=sigma))


def rotate(im: Image.Image, degrees: float, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Rotate counter-clockwise by ``degrees`` about the centre, keeping the canvas size.

    Corners that come from outside the image are filled with ``fill`` (black by default,
    as torchvision's rotation does); the parts rotated outside the canvas are lost.
    """
    return im.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=fill)


def flip(im: Image.Image, direction: str = "H") -> Image.Image:
    """Mirror horizontally (``"H"``, left–right) or vertically (``"V"``, top–bottom)."""
    if direction.upper() == "H":
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if direction.upper() == "V":
        return im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    raise ValueError(f"flip direction must be 'H' or 'V', not {direction!r}")
