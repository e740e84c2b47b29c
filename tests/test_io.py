"""The loader: hostile files get a clear error naming them, unusual ones the documented conversion."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from robusthash.io import ImageError, LoadLimits, load_image, load_pil

from .conftest import jpeg_bytes, sof_patched


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
    # PNG has no reduced decoding: it is reduced right after decoding, by an integer
    # factor that keeps at least draft_size a side (512 // 64 = 8)
    buffer = io.BytesIO()
    astronaut.save(buffer, format="PNG")
    assert load_pil(buffer.getvalue(), draft_size=64).size == (64, 64)
    assert load_pil(buffer.getvalue(), draft_size=100).size == (103, 103)  # factor 5, ceil(512 / 5)
    assert load_pil(buffer.getvalue()).size == (512, 512)
    assert load_pil(buffer.getvalue(), draft_size=300).size == (512, 512)  # factor 1


def test_reduction_after_decoding_is_box_averaging(astronaut):
    buffer = io.BytesIO()
    astronaut.save(buffer, format="PNG")
    for mode in ("RGB", "L"):
        small = load_pil(buffer.getvalue(), draft_size=128, mode=mode)
        reference = load_pil(buffer.getvalue(), mode=mode).reduce(4)
        assert small.mode == mode and small.size == (128, 128)
        assert np.abs(np.asarray(small, dtype=np.int16) - np.asarray(reference, dtype=np.int16)).max() <= 1
    # native mode is never reduced (its hashers follow a peer's own decoding)
    assert load_pil(buffer.getvalue(), draft_size=128, mode="native").size == (512, 512)


def test_reduction_of_palette_16bit_and_alpha_images():
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (400, 300, 4), dtype=np.uint8), "RGBA")
    for im in (rgba, rgba.convert("RGB").convert("P"), rgba.convert("1"), rgba.convert("LA"),
               Image.fromarray(rng.integers(0, 65536, (400, 300), dtype=np.uint16))):
        buffer = io.BytesIO()
        im.save(buffer, format="PNG")
        for mode in ("RGB", "L"):
            out = load_pil(buffer.getvalue(), draft_size=100, mode=mode)
            assert out.mode == mode and out.size == (100, 134)  # factor 3


def test_exif_rotation_applies_to_the_reduced_image():
    im = Image.new("RGB", (400, 200), (255, 255, 255))
    im.paste((0, 0, 0), (0, 0, 200, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", exif=exif)
    full, small = load_pil(buffer.getvalue()), load_pil(buffer.getvalue(), draft_size=50)
    assert full.size == (200, 400) and small.size == (50, 100)
    assert np.array_equal(np.asarray(full.reduce(4)), np.asarray(small))


def test_strip_conversion_equals_one_pass(monkeypatch):
    """Conversions run strip by strip (to keep only the output full size); the result is
    that of converting the whole image at once."""
    import robusthash.io as rio
    from robusthash import imaging

    rng = np.random.default_rng(2)
    rgba = Image.fromarray(rng.integers(0, 256, (130, 70, 4), dtype=np.uint8), "RGBA")
    grey16 = Image.fromarray(rng.integers(0, 65536, (130, 70), dtype=np.uint16))
    palette = rgba.convert("RGB").convert("P")
    palette.info["transparency"] = 3
    for im in (rgba, grey16, palette, rgba.convert("LA"), rgba.convert("RGB").convert("CMYK")):
        for mode in ("RGB", "L"):
            monkeypatch.setattr(imaging, "STRIP_PIXELS", 1 << 30)
            whole = np.asarray(rio.convert(im, mode))
            monkeypatch.setattr(imaging, "STRIP_PIXELS", 7 * 70)  # 7 rows a strip, and a ragged last one
            assert np.array_equal(whole, np.asarray(rio.convert(im, mode))), (im.mode, mode)


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_claiming_more_than_it_holds_is_refused(astronaut, progressive):
    good = jpeg_bytes(astronaut.resize((128, 128)), progressive=progressive)
    patched = sof_patched(good, 9000, 11000)
    for draft_size, mode in ((None, "RGB"), (128, "L"), (96, "RGB"), (None, "native")):
        with pytest.raises(ImageError, match=r"corrupt JPEG: its header claims 9000x11000 pixels") as info:
            load_pil(patched, draft_size=draft_size, mode=mode)
        assert "bytes of coded data" in str(info.value)
    # within the pixel limit too (48 MP), and with the limit raised
    with pytest.raises(ImageError, match="claims 8000x6000 pixels"):
        load_pil(sof_patched(good, 8000, 6000))
    with pytest.raises(ImageError, match="claims 9000x11000 pixels"):
        load_pil(patched, limits=LoadLimits(max_pixels=150_000_000))
    # cut short as well: the same rule, or Pillow's own truncation error
    for data in (patched[: len(patched) // 2], good[: len(good) // 2]):
        with pytest.raises(ImageError, match="corrupt"):
            load_pil(data)


def test_genuine_flat_jpegs_pass_the_coded_data_rule():
    """The bound (1 bit per 8×8 block) against the smallest genuine files there are:
    one colour, optimised Huffman tables, progressive or not; libjpeg's are about 2×."""
    from robusthash.io import check_jpeg_data

    for size in ((8, 8), (1000, 700), (4000, 3000)):
        for mode, colour in (("RGB", (128, 128, 128)), ("L", 0), ("CMYK", (0, 0, 0, 255))):
            im = Image.new(mode, size, colour)
            for options in ({"optimize": True}, {"progressive": True, "optimize": True},
                            {"subsampling": 0, "optimize": True, "progressive": True}, {"quality": 1}):
                data = jpeg_bytes(im, **options)
                check_jpeg_data(data, "flat.jpg")
    assert load_pil(jpeg_bytes(Image.new("RGB", (4000, 3000), (9, 9, 9)), optimize=True)).size == (4000, 3000)


@pytest.mark.parametrize("prefix, reason", [
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF image: no Pillow plugin"),
    (b"\xff\x0a\xfa\x7f", "JPEG XL image"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
])
def test_unreadable_image_formats_are_named(prefix, reason):
    with pytest.raises(ImageError, match=reason):
        load_pil(prefix + b"\x00" * 64)


def test_our_limit_applies_below_pillows_guard():
    # 11000 x 10000 = 110 MP: under Pillow's own guard (179 MP), over our default (50 MP).
    from .conftest import png_header_claiming

    with pytest.raises(ImageError, match="LoadLimits.max_pixels"):
        load_image(png_header_claiming(11_000, 10_000))


def test_endless_device_is_bounded_not_a_hang():
    # /dev/zero never ends; the byte limit must stop the read.
    with pytest.raises(ImageError, match="exceeds the limit"):
        load_image("/dev/zero", limits=LoadLimits(max_bytes=1 << 20))


def test_a_file_is_decoded_once_for_every_spec_with_the_same_pixels(hostile, astronaut, monkeypatch):
    from robusthash.hashing.base import DecodedImage, DecodeSpec
    from robusthash.io import decode

    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = io.BytesIO()
    astronaut.resize((300, 200)).save(rotated, format="PNG", exif=exif)
    pal = io.BytesIO()
    astronaut.resize((90, 90)).convert("P").save(pal, format="PNG", transparency=3)
    files = {"exif png": rotated.getvalue(), "palette png": pal.getvalue(),
             **{name: (hostile / name).read_bytes() for name in ("grey16.png", "transparent.png", "animated.gif",
                                                                 "cmyk.jpg", "exif_rotated.jpg")}}
    specs = [DecodeSpec(None, "RGB"), DecodeSpec(None, "native"), DecodeSpec(64, "RGB"), DecodeSpec(32, "L"),
             DecodeSpec(None, "L"), DecodeSpec(16, "native")]
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    for name, data in files.items():
        once = DecodedImage(data, name=name)
        for spec in specs:
            got = once.decoded(spec)
            want = decode(data, name, draft_size=spec.draft_size, mode=spec.mode)
            assert got.mode == want.mode and got.size == want.size, (name, spec)
            assert np.array_equal(np.asarray(got), np.asarray(want)), (name, spec)
        opened.clear()
        for spec in specs:
            DecodedImage(data, name=name).decoded(spec)  # a fresh one per spec: one decode each
        per_spec = len(opened)
        opened.clear()
        shared = DecodedImage(data, name=name)
        for spec in specs:
            shared.decoded(spec)
        # One decode for every spec, but a colour or grey JPEG: libjpeg decodes it at a
        # reduced scale (and luma only) per spec, each time cheaper than the whole.
        assert per_spec == len(specs) and len(opened) == (len(specs) if name == "exif_rotated.jpg" else 1), name


@pytest.mark.parametrize("mode", ["RGBA", "LA", "RGB"])
def test_box_reduced_is_pillows_reduce_strip_by_strip(monkeypatch, mode):
    """Pillow reduces RGBA and LA through a full-size premultiplied copy (0.2 GB at 50 MP);
    box_reduced does it a strip of whole blocks at a time, to the same pixels."""
    from robusthash import imaging

    monkeypatch.setattr(imaging, "STRIP_PIXELS", 3000)  # many strips
    rng = np.random.default_rng(7)
    for width, height, factor in [(301, 257, 3), (100, 100, 7), (64, 33, 2)]:
        pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        im = Image.fromarray(pixels, "RGBA").convert(mode)
        for box in (None, (10, 5, width - 3, height - 7)):
            expected = im.reduce(factor, box) if box else im.reduce(factor)
            got = imaging.box_reduced(im, factor, box)
            assert got.mode == expected.mode and got.size == expected.size
            assert np.array_equal(np.asarray(got), np.asarray(expected)), (width, height, factor, box)
