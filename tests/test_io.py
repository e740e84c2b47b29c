"""The loader: hostile files get a clear error naming them, unusual ones the documented conversion."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from robusthash.io import ImageError, LoadLimits, load_image, load_pil

from .conftest import jpeg_bytes


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty.jpg", "empty input"),
        ("text.png", "not a recognised image format"),
        ("truncated.jpg", "corrupt or truncated"),
        ("bomb.png", "exceeds the limit"),
        ("missing.jpg", "no such file"),
    ],
)
def test_bad_files_raise_image_error_naming_the_file(hostile, name, reason):
    path = hostile / name
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.source == str(path)
    assert reason in str(info.value)
    assert str(path) in str(info.value)


def test_bomb_is_refused_before_decoding(hostile):
    # The file is a few dozen bytes; refusing it must not try to allocate 7.5 GB.
    data = (hostile / "bomb.png").read_bytes()
    assert len(data) < 200
    with pytest.raises(ImageError, match="refused before decoding"):
        load_image(data)


def test_pixel_limit_is_configurable(astronaut):
    with pytest.raises(ImageError, match="exceeds the limit"):
        load_image(jpeg_bytes(astronaut), limits=LoadLimits(max_pixels=512 * 511))
    assert load_image(jpeg_bytes(astronaut), limits=LoadLimits(max_pixels=512 * 512)).shape == (512, 512, 3)


def test_byte_limit(hostile):
    with pytest.raises(ImageError, match="bytes exceeds the limit"):
        load_image(hostile / "good.jpg", limits=LoadLimits(max_bytes=100))


def test_directory_is_an_error(hostile):
    with pytest.raises(ImageError, match="directory"):
        load_image(hostile)


def test_cmyk_jpeg_becomes_rgb(hostile, astronaut):
    rgb = load_image(hostile / "cmyk.jpg")
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
    reference = np.asarray(astronaut.resize((128, 128)), dtype=np.float64)
    assert np.abs(rgb - reference).mean() < 12  # the same picture, not inverted or garbled


def test_16bit_png_scales_to_8bit(hostile):
    rgb = load_image(hostile / "grey16.png")
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[-1, -1].tolist() == [255, 255, 255]
    assert (rgb[:, :, 0] == rgb[:, :, 1]).all()
    # 0..65535 maps linearly onto 0..255 (divided by 257), not clipped
    assert abs(int(rgb[32, 0, 0]) - round(65535 * (32 * 64) / (64 * 64 - 1) / 257)) <= 1


def test_animated_gif_gives_first_frame(hostile):
    rgb = load_image(hostile / "animated.gif")
    assert rgb.shape == (32, 32, 3)
    assert rgb[16, 16].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(hostile):
    rgb = load_image(hostile / "exif_rotated.jpg")
    assert rgb.shape == (40, 60, 3)  # landscape again, as a viewer shows it
    assert rgb[20, 5].mean() < 40 and rgb[20, 55].mean() > 215  # left half black


def test_alpha_is_composited_on_white(hostile):
    rgb = load_image(hostile / "transparent.png")
    assert rgb[20, 5].tolist() == [255, 0, 0]
    assert rgb[20, 35].tolist() == [255, 255, 255]


def test_palette_with_transparency(hostile):
    im = Image.open(hostile / "transparent.png").convert("P")
    im.info["transparency"] = im.getpixel((35, 20))
    rgb = load_image(im)
    assert rgb[20, 35].tolist() == [255, 255, 255]


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "file", "pil", "array"])
def test_every_source_kind_gives_the_same_pixels(hostile, kind):
    path = hostile / "good.jpg"
    source = {
        "path": path,
        "str": str(path),
        "bytes": path.read_bytes(),
        "file": io.BytesIO(path.read_bytes()),
        "pil": Image.open(path),
        "array": np.asarray(Image.open(path).convert("RGB")),
    }[kind]
    assert np.array_equal(load_image(source), load_image(path))


def test_array_conversions():
    grey = np.full((4, 5), 7, dtype=np.uint8)
    assert load_image(grey).shape == (4, 5, 3)
    assert load_image(np.ones((4, 5), dtype=bool))[0, 0].tolist() == [255, 255, 255]
    assert load_image(np.full((4, 5, 3), 0.5))[0, 0].tolist() == [128, 128, 128]
    assert load_image(np.full((4, 5, 3), 65535, dtype=np.uint16))[0, 0].tolist() == [255, 255, 255]
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)  # fully transparent black -> white
    assert load_image(rgba)[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(ImageError, match="not an image"):
        load_image(np.zeros((4, 5, 2)))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((4, 5), np.nan))
    with pytest.raises(ImageError, match="no pixels"):
        load_image(np.zeros((0, 5, 3), dtype=np.uint8))


def test_unsupported_source_type():
    with pytest.raises(ImageError, match="unsupported input type"):
        load_image(12345)


def test_text_mode_file_object(hostile):
    with open(hostile / "text.png", "r") as fh, pytest.raises(ImageError, match="binary mode"):
        load_image(fh)


def test_draft_decoding_reduces_jpeg_and_keeps_content(astronaut):
    big = astronaut.resize((1024, 1024))
    data = jpeg_bytes(big)
    full = load_pil(data)
    small = load_pil(data, draft_size=64)
    assert full.size == (1024, 1024)
    assert small.size == (128, 128)  # libjpeg scaled by 1/8, still >= 64 on each side
    reference = np.asarray(full.resize((128, 128), Image.Resampling.BOX), dtype=np.float64)
    assert np.abs(np.asarray(small, dtype=np.float64) - reference).mean() < 3


def test_draft_never_goes_below_the_requested_size(astronaut):
    data = jpeg_bytes(astronaut.resize((300, 90)))
    assert min(load_pil(data, draft_size=64).size) >= 64
    # PNG has no reduced decoding: the size is unchanged
    buffer = io.BytesIO()
    astronaut.save(buffer, format="PNG")
    assert load_pil(buffer.getvalue(), draft_size=64).size == (512, 512)


def test_our_limit_applies_below_pillows_guard():
    # 11000 x 10000 = 110 MP: under Pillow's own guard (179 MP), over our default 100 MP.
    from .conftest import png_header_claiming

    with pytest.raises(ImageError, match="LoadLimits.max_pixels"):
        load_image(png_header_claiming(11_000, 10_000))


def test_endless_device_is_bounded_not_a_hang():
    # /dev/zero never ends; the byte limit must stop the read.
    with pytest.raises(ImageError, match="exceeds the limit"):
        load_image("/dev/zero", limits=LoadLimits(max_bytes=1 << 20))
