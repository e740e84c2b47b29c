"""Uniform borders (padding, letterboxing, a one-colour frame) are found and trimmed, and
a query is also searched without them, so a padded copy is found by every method."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robusthash.attacks import transforms
from robusthash.db import ReferenceDB
from robusthash.imaging import nested_borders, uniform_borders


def test_padding_is_found_on_every_side(astronaut):
    for fill in (0, 255, (128, 128, 128)):
        padded = transforms.pad(astronaut, 0.1, fill)
        border = round(0.1 * 512)
        left, top, right, bottom = uniform_borders(padded)
        assert border <= left <= border + 4 and border <= top <= border + 4
        assert border + 508 <= right <= border + 512 and border + 508 <= bottom <= border + 512


def test_letterbox_trims_only_its_bars(coffee):
    canvas = Image.new("RGB", (600, 520), (0, 0, 0))
    canvas.paste(coffee, (0, 60))
    left, top, right, bottom = uniform_borders(canvas)
    assert left == 0 and right == 600 and 60 <= top <= 66 and 454 <= bottom <= 460


@pytest.mark.parametrize("ratio", [2.0, 2.39])
def test_a_wide_picture_letterboxed_into_a_tall_frame_is_trimmed(coffee, ratio):
    """A 2:1 picture in a 9:16 frame keeps 28% of its height, a 2.39:1 film frame 24%:
    both are trimmed to the picture (at 30%, the least share a border left, neither was)."""
    width = 360
    height = round(width / ratio)
    canvas = Image.new("RGB", (width, round(width * 16 / 9)), (255, 255, 255))
    top = (canvas.height - height) // 2
    canvas.paste(coffee.resize((width, height)), (0, top))
    (left, found_top, right, bottom), = nested_borders(canvas)
    assert (left, right) == (0, width) and abs(found_top - top) <= 2 and abs(bottom - top - height) <= 2


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_photos_without_borders_have_none(photos, name):
    assert uniform_borders(photos[name]) is None
    assert nested_borders(photos[name]) == []


def moved_and_framed(im: Image.Image) -> Image.Image:
    """``im`` at the left of a black slide 200 px wider, on a grey page 40 px round it."""
    slide = Image.new("RGB", (im.width + 200, im.height), (0, 0, 0))
    slide.paste(im.convert("RGB"), (0, 0))
    return transforms.pad(slide, 40 / slide.width, (128, 128, 128))


def test_a_frame_within_a_frame_is_trimmed_in_turn(coffee):
    # Black bars inside a white page: the page first, then the bars.
    canvas = Image.new("RGB", (600, 520), (0, 0, 0))
    canvas.paste(coffee, (0, 60))
    outer, inner = nested_borders(transforms.pad(canvas, 50 / 600, 255))
    assert outer[0] in range(50, 54) and outer[2] in range(646, 651)
    assert inner[0] == outer[0] and inner[1] in range(110, 117) and inner[3] in range(504, 511)
    # Moved within a black slide, on a grey page: the page first, then the slide's black.
    boxes = nested_borders(moved_and_framed(coffee))
    assert len(boxes) == 2
    left, top, right, bottom = boxes[-1]
    assert left in range(40, 44) and top in range(40, 44) and right in range(636, 641) and bottom in range(436, 441)


def test_flat_images_and_thin_edges_are_no_borders(coffee):
    assert uniform_borders(Image.new("RGB", (300, 200), (40, 40, 40))) is None
    edged = coffee.copy()
    edged.paste((0, 0, 0), (0, 0, 600, 2))  # a 2-px dark edge, not a border
    assert uniform_borders(edged) is None


@pytest.fixture
def coffee(photos):
    return photos["coffee"]


def three_registered(tmp_path, photos, methods: list[str]) -> tuple[ReferenceDB, dict]:
    ref = ReferenceDB(tmp_path / "refs.sqlite", methods=methods)
    originals = {name: tmp_path / f"{name}.png" for name in ("coffee", "chelsea", "rocket")}
    for name, path in originals.items():
        photos[name].save(path)
    ref.add(list(originals.values()))
    return ref, originals


def on_ground(im: Image.Image, degrees: float, fill) -> Image.Image:
    """``im`` turned by ``degrees`` on a canvas grown to hold it, the corners ``fill``."""
    return im.convert("RGB").rotate(degrees, expand=True, resample=Image.Resampling.BICUBIC, fillcolor=fill)


@pytest.mark.parametrize("degrees,fill", [(30, (255, 255, 255)), (-125, (0, 0, 0)), (60, (30, 144, 255))])
def test_a_turned_picture_on_its_ground_is_found_and_straightened(coffee, degrees, fill):
    import numpy as np

    from robusthash.imaging import picture_quad, straightened

    turned = on_ground(coffee, degrees, fill)
    corners = picture_quad(turned)
    assert corners is not None
    # The corners lie where the original's corners went, within 4% of the canvas (on
    # black, the picture's own dark corner merges into the ground: 3.5% off).
    w, h = coffee.size
    centre = np.array([w, h]) / 2
    angle = np.radians(degrees)
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])  # counter-clockwise, y down
    expected = (np.array([[0, 0], [w, 0], [w, h], [0, h]]) - centre) @ turn.T + np.array(turned.size) / 2
    found = np.array(corners) * np.array(turned.size)
    nearest = np.linalg.norm(expected[:, None] - found[None], axis=2).min(axis=1)
    assert nearest.max() < 0.04 * max(turned.size), (expected, found)
    upright = straightened(turned, corners)
    # Upright, of the original's size (turned by a multiple of 90° at most), within 5%.
    assert np.allclose(sorted(upright.size), sorted(coffee.size), rtol=0.05), upright.size


@pytest.mark.parametrize("degrees,fill", [(40, (255, 255, 255)), (-135, (255, 255, 255)), (150, (128, 128, 128))])
def test_a_picture_turned_within_its_own_frame_is_found_from_its_cut_corners(coffee, degrees, fill):
    import numpy as np

    from robusthash.imaging import picture_quad, straightened

    turned = coffee.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=fill)  # the frame cuts its corners
    corners = picture_quad(turned)
    assert corners is not None
    w, h = coffee.size
    angle = np.radians(degrees)
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    expected = (np.array([[0, 0], [w, 0], [w, h], [0, h]]) - [w / 2, h / 2]) @ turn.T + [w / 2, h / 2]
    found = np.array(corners) * np.array([w, h])
    assert (found < 0).any() or (found > [w, h]).any()  # corners off the image, where the sides meet
    nearest = np.linalg.norm(expected[:, None] - found[None], axis=2).min(axis=1)
    assert nearest.max() < 0.04 * max(w, h), (expected, found)
    upright = straightened(turned, corners)
    assert np.allclose(sorted(upright.size), sorted(coffee.size), rtol=0.05), upright.size


def test_a_band_of_a_turned_picture_that_the_frame_cuts_through_is_not_a_picture(coffee):
    from robusthash.imaging import picture_quad

    # Turned by 100° on its own landscape canvas: only a slanted band shows, two of its
    # sides along the frame; straightening that band would distort it.
    assert picture_quad(coffee.rotate(100, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))) is None


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_photos_and_upright_padding_have_no_picture_quad(photos, name):
    from robusthash.imaging import picture_quad

    assert picture_quad(photos[name]) is None
    assert picture_quad(transforms.pad(photos[name], 0.15, 255)) is None  # upright: uniform_borders' case
    assert picture_quad(Image.new("RGB", (300, 200), (40, 40, 40))) is None


def screenshot(im: Image.Image) -> Image.Image:
    """``im`` across a phone screen: a bar and lines of text above it, text below."""
    from PIL import ImageDraw, ImageFont

    w = 720
    shown = round(im.height * w / im.width)
    screen = Image.new("RGB", (w, 260 + shown + 420), (255, 255, 255))
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, w, 40), fill=(245, 245, 245))
    draw.ellipse((20, 70, 90, 140), fill=(200, 60, 40))
    font = ImageFont.load_default(size=24)
    for y in [80, 120, 160, 200] + list(range(280 + shown, 260 + shown + 400, 36)):
        draw.text((110 if y < 260 else 20, y), "some words of a post and its comments here", fill=(20, 20, 20), font=font)
    screen.paste(im.convert("RGB").resize((w, shown)), (0, 260))
    return screen


def test_a_picture_among_text_is_cut_out(coffee):
    from robusthash.imaging import content_box

    shot = screenshot(coffee)
    left, top, right, bottom = content_box(shot)
    h = shot.height
    assert left == 0 and right == 1
    assert abs(top * h - 260) < 0.03 * h and abs(bottom * h - (260 + 480)) < 0.03 * h, (top * h, bottom * h)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_photos_and_one_colour_padding_have_no_content_box(photos, name):
    from robusthash.imaging import content_box

    assert content_box(photos[name]) is None
    assert content_box(transforms.pad(photos[name], 0.15, 255)) is None  # one colour: uniform_borders' case


@pytest.mark.parametrize("methods,make_query,variant", [
    (["forbild", "pdq"], lambda im: transforms.pad(im, 0.15, 255), "borders trimmed"),
    (["forbild", "pdq"], moved_and_framed, "borders trimmed twice"),
    (["forbild", "cmaa"], lambda im: on_ground(im, 35, (255, 255, 255)), "picture straightened"),
    (["forbild", "pdq"], screenshot, "picture cut out"),
], ids=["padded", "framed twice", "turned on a ground", "screenshot"])
def test_a_copy_is_found_through_its_query_variant(tmp_path, photos, methods, make_query, variant):
    ref, originals = three_registered(tmp_path, photos, methods)
    query = make_query(photos["coffee"])
    for result in ref.query(query):
        first = result.matches[0]
        assert first.matched and first.image.source == str(originals["coffee"]), result.method
        assert variant in first.rule, first.rule
    # Without the variant neither method finds it: the test has teeth.
    plain = ref.examine(query, variants=False)
    assert not any(m.matched for r in ref.query_examined(plain) for m in r.matches if m.image.source.endswith("coffee.png"))


def test_a_copy_framed_twice_needs_its_inner_frame_trimmed(tmp_path, photos, monkeypatch):
    from robusthash.hashing import base

    ref, originals = three_registered(tmp_path, photos, ["forbild", "pdq"])
    query = moved_and_framed(photos["coffee"])
    every_frame = base.nested_borders
    monkeypatch.setattr(base, "nested_borders", lambda im: every_frame(im, most=1))
    found = [m for r in ref.query(query) for m in r.matches if m.matched]
    assert not any(m.image.source == str(originals["coffee"]) for m in found)  # the outer frame alone: no
    monkeypatch.setattr(base, "nested_borders", every_frame)
    for result in ref.query(query):
        first = result.matches[0]
        assert first.matched and first.image.source == str(originals["coffee"]), result.method


def test_a_montage_is_cut_where_its_pictures_meet(photos):
    from robusthash.imaging import halves, montage_cut

    a, b = photos["astronaut"], photos["coffee"].resize((768, 512))
    gutter = Image.new("RGB", (512 + 16 + 768, 512), (255, 255, 255))
    gutter.paste(a, (0, 0))
    gutter.paste(b, (528, 0))
    assert 512 <= montage_cut(gutter) * gutter.width <= 528
    abutting = Image.new("RGB", (512 + 768, 512))
    abutting.paste(a, (0, 0))
    abutting.paste(b, (512, 0))
    assert abs(montage_cut(abutting) * abutting.width - 512) <= 6
    left, right = halves(abutting, at=512 / abutting.width)
    assert left.size == (512, 512) and right.size == (768, 512)
    for name in ("astronaut", "coffee", "chelsea"):  # one picture: the middle
        assert montage_cut(photos[name]) == 0.5


@pytest.mark.parametrize("size", [(768, 576), (576, 768), (768, 384), (300, 300)])
def test_windows_cover_the_whole_image_and_hold_most_of_any_picture_of_their_size(size):
    from robusthash.imaging import window_boxes

    w, h = size
    boxes = window_boxes(size, (0.4,), 0.75)
    assert len(boxes) == 9 and len(set(boxes)) == 9
    assert all(0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h for x0, y0, x1, y1 in boxes)
    assert {(b[0], b[1]) for b in boxes} >= {(0, 0)} and {(b[2], b[3]) for b in boxes} >= {(w, h)}
    covered = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    # A picture 0.3 of each side, anywhere, has at least 40% of its area within one window
    # (at worst two thirds of each side, midway between two windows).
    for cx in np.linspace(0, 1, 11):
        for cy in np.linspace(0, 1, 11):
            px0, py0, pw, ph = cx * 0.7 * w, cy * 0.7 * h, 0.3 * w, 0.3 * h
            best = max(max(0, min(px0 + pw, b[2]) - max(px0, b[0])) * max(0, min(py0 + ph, b[3]) - max(py0, b[1]))
                       for b in boxes)
            assert best >= 0.4 * pw * ph
