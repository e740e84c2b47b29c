"""Rotation normalisation of the whole picture: by its fill frame, and by the moments
of its brightness (segments.frame)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from robusthash import attacks, get_hasher
from robusthash.segments.frame import find_frame, moment_upright, upright_picture


@pytest.mark.parametrize("expand", [False, True])
@pytest.mark.parametrize("angle", [20, -20, 35, -3])
def test_the_frame_gives_the_angle_and_the_picture_back(photos, angle, expand):
    coffee = photos["coffee"]  # 600 × 400: its lost corners are its own
    turned = coffee.rotate(angle, Image.Resampling.BILINEAR, expand=expand)
    frame = find_frame(turned)
    assert frame is not None and frame.expanded == expand
    assert frame.angle == pytest.approx(angle, abs=0.3)
    assert frame.picture_size == pytest.approx(coffee.size, abs=2)
    upright = upright_picture(turned)
    assert abs(upright.width - coffee.width) <= 2 and abs(upright.height - coffee.height) <= 2
    cmaa = get_hasher("cmaa")
    assert cmaa.hash_pil(upright) - cmaa.hash_pil(coffee) <= 8


def test_no_frame_where_there_is_none(photos):
    coffee = photos["coffee"]
    assert find_frame(coffee) is None and upright_picture(coffee) is None
    assert find_frame(coffee.rotate(0.4, Image.Resampling.BILINEAR)) is None  # below min_angle: upright
    # A plain border that is not a turned rectangle (a letterbox) is no frame.
    letterbox = Image.new("RGB", (600, 500))
    letterbox.paste(coffee, (0, 50))
    assert find_frame(letterbox) is None
    # Black sky meeting a black frame gives no reliable edge: nothing, not a wrong angle.
    sky = Image.new("RGB", (400, 300))
    ImageDraw.Draw(sky).ellipse((150, 100, 250, 200), fill=(255, 255, 200))
    assert find_frame(attacks.rotate(sky, 20)) is None


def galaxy() -> Image.Image:
    """A bright, elongated, lopsided shape on black: an ellipse with a brighter knot at one end."""
    sky = Image.new("RGB", (400, 400))
    draw = ImageDraw.Draw(sky)
    draw.ellipse((110, 170, 290, 230), fill=(120, 120, 160))
    draw.ellipse((230, 180, 280, 220), fill=(255, 240, 200))
    return sky


def window(im: Image.Image) -> np.ndarray:
    return np.asarray(moment_upright(im).convert("L"), dtype=float)


@pytest.mark.parametrize("angle", [20, -35, 90, 170])
def test_moments_turn_a_turned_picture_back_the_same_way(angle):
    # 170°: the major axis alone would leave a half turn; the third moment removes it.
    upright, turned = window(galaxy()), window(galaxy().rotate(angle, Image.Resampling.BILINEAR))
    assert np.abs(upright - turned).mean() < 2
    assert np.abs(upright - window(galaxy().rotate(180))).mean() < 2
    assert np.abs(upright - np.rot90(upright, 2)).mean() > 12  # lopsided: a half turn would show


def test_moments_need_something_above_the_median():
    assert moment_upright(Image.new("RGB", (64, 64), (40, 40, 40))) is None


def test_segments_finds_a_turned_copy_through_its_upright_parts(photos):
    segments = get_hasher("segments")
    coffee = photos["coffee"]
    original, turned = segments.hash_pil(coffee), segments.hash_pil(attacks.rotate(coffee, 35))
    whole = turned.hashes[0] - original.hashes[0]
    result = segments.compare(turned, original)
    assert result.matched and result.hamming < whole
    assert result.details["kind"] == "picture" and result.details["query_part"] in (1, 2)
