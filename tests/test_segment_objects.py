"""Object isolation and rotation normalisation (Steinebach, Berwanger, Liu, 4.2)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from robusthash.segments.objects import Background, normalise_object, orientation


def scene(angle: float) -> tuple[Image.Image, np.ndarray]:
    """A grey canvas with an elongated, asymmetric object (an ellipse with a dark cap at
    one end) rotated by ``angle`` degrees counter-clockwise about the canvas centre."""
    size = 300
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.ellipse((120, 50, 180, 250), fill=(220, 180, 40, 255))
    draw.ellipse((130, 60, 170, 110), fill=(30, 60, 200, 255))
    layer = layer.rotate(angle, Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size, size), (90, 120, 90))
    canvas.paste(layer, (0, 0), layer)
    return canvas, np.asarray(layer)[:, :, 3] > 127


@pytest.mark.parametrize("angle", [0, 20, -35, 60])
def test_the_orientation_follows_the_rotation(angle):
    _, mask = scene(angle)
    assert orientation(mask) == pytest.approx(angle, abs=1.5)


def grey(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("L").resize((40, 100), Image.Resampling.BOX), dtype=float)


@pytest.mark.parametrize("background", list(Background))
@pytest.mark.parametrize("angle", [20, -20, 45])
def test_a_rotated_object_comes_out_as_the_upright_one(angle, background):
    upright = normalise_object(*scene(0), background=background)
    turned = normalise_object(*scene(angle), background=background)
    assert upright is not None and turned is not None
    assert turned.angle == pytest.approx(-angle, abs=1.5)
    w0, h0 = upright.image.size
    w1, h1 = turned.image.size
    assert abs(w1 - w0) <= 4 and abs(h1 - h0) <= 4  # the tight box of the upright object
    a, b = grey(upright.image), grey(turned.image)
    # The same picture, or the same turned by half (an axis has no direction): ForBild's
    # mirroring makes the two equal for hashing.
    error = min(np.abs(a - b).mean(), np.abs(a - b[::-1, ::-1]).mean())
    assert error < 6, error
    assert np.abs(a - np.full_like(a, a.mean())).mean() > 20  # not trivially flat


def test_removed_background_is_white_and_kept_background_is_the_photo():
    removed = normalise_object(*scene(0), background=Background.removed)
    kept = normalise_object(*scene(0), background=Background.kept)
    corner = (1, 1)
    assert removed.image.getpixel(corner) == (255, 255, 255)
    assert kept.image.getpixel(corner) == (90, 120, 90)
    filled = normalise_object(*scene(30), background=Background.filled)
    pixels = np.asarray(filled.image).reshape(-1, 3).astype(int)
    background = np.abs(pixels - (90, 120, 90)).sum(axis=1) < 30
    white = (pixels > 245).all(axis=1)
    assert not background.any() and not white.any()  # every pixel comes from the object


def test_small_and_empty_objects_are_discarded():
    image = Image.new("RGB", (200, 200))
    mask = np.zeros((200, 200), bool)
    assert normalise_object(image, mask) is None
    mask[10:60, 10:49] = True  # 49 px wide: below the paper's 50 × 50
    assert normalise_object(image, mask) is None
    mask[10:60, 10:60] = True
    assert normalise_object(image, mask) is not None
    with pytest.raises(ValueError, match="does not fit"):
        normalise_object(image, mask[:100])


def test_fill_in_takes_a_pasted_object_off_the_picture():
    from robusthash.segments.objects import fill_in

    picture = Image.new("RGB", (200, 100), (40, 120, 200))
    ImageDraw.Draw(picture).rectangle((0, 50, 199, 99), fill=(30, 160, 40))  # sky over grass
    montage = picture.copy()
    ImageDraw.Draw(montage).ellipse((80, 30, 130, 80), fill=(250, 0, 0))  # pasted over the horizon
    mask = np.zeros((100, 200), dtype=bool)
    mask[30:81, 80:131] = np.asarray(Image.new("L", (200, 100)).crop((0, 0, 51, 51))) == 0  # the object's box
    filled = np.asarray(fill_in(montage, [mask]), dtype=int)
    assert np.abs(filled - np.asarray(picture, dtype=int)).max(axis=2).mean() < 1  # sky and grass again
    assert (np.abs(filled - (250, 0, 0)).max(axis=2) > 100).all()  # no red left
    assert fill_in(montage, []) is None
    assert fill_in(montage, [np.ones((100, 200), dtype=bool)]) is None  # nothing around it to fill from
