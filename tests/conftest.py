"""Shared fixtures: scikit-image's bundled photos and a folder of hostile files made here."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

PHOTO_NAMES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field")


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTO_NAMES}


@pytest.fixture(scope="session")
def astronaut(photos) -> Image.Image:
    return photos["astronaut"]


def jpeg_bytes(im: Image.Image, quality: int = 90, **kwargs) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=quality, **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb in spirit."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def hostile(tmp_path_factory, astronaut) -> Path:
    """A folder of hostile or unusual files, generated here."""
    root = tmp_path_factory.mktemp("hostile")
    small = astronaut.resize((128, 128))
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("this is not an image\n")
    good = jpeg_bytes(small)
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "bomb.png").write_bytes(png_header_claiming(50_000, 50_000))
    small.convert("CMYK").save(root / "cmyk.jpg", quality=90)
    grey16 = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(grey16).save(root / "grey16.png")
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    # A landscape picture stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view").
    upright = Image.new("RGB", (60, 40), (255, 255, 255))
    upright.paste((0, 0, 0), (0, 0, 30, 40))  # left half black when viewed correctly
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(root / "exif_rotated.jpg", exif=exif, quality=95)
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 20, 40))
    rgba.save(root / "transparent.png")
    (root / "good.jpg").write_bytes(good)
    return root
