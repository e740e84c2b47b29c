"""Uniform borders (padding, letterboxing, a one-colour frame) are found and trimmed, and
a query is also searched without them, so a padded copy is found by every method."""

from __future__ import annotations

import pytest
from PIL import Image

from robusthash.attacks import transforms
from robusthash.db import ReferenceDB
from robusthash.imaging import uniform_borders


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


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_photos_without_borders_have_none(photos, name):
    assert uniform_borders(photos[name]) is None


def test_flat_images_and_thin_edges_are_no_borders(coffee):
    assert uniform_borders(Image.new("RGB", (300, 200), (40, 40, 40))) is None
    edged = coffee.copy()
    edged.paste((0, 0, 0), (0, 0, 600, 2))  # a 2-px dark edge, not a border
    assert uniform_borders(edged) is None


@pytest.fixture
def coffee(photos):
    return photos["coffee"]


def test_a_padded_copy_is_found_through_its_trimmed_variant(tmp_path, photos):
    ref = ReferenceDB(tmp_path / "refs.sqlite", methods=["forbild", "pdq"])
    originals = {name: tmp_path / f"{name}.png" for name in ("coffee", "chelsea", "rocket")}
    for name, path in originals.items():
        photos[name].save(path)
    ref.add(list(originals.values()))
    padded = transforms.pad(photos["coffee"], 0.15, 255)
    for result in ref.query(padded):
        first = result.matches[0]
        assert first.matched and first.image.source == str(originals["coffee"]), result.method
        assert "borders trimmed" in first.rule
    # Without the variant neither method finds it: the test has teeth.
    plain = ref.examine(padded, variants=False)
    assert not any(m.matched for r in ref.query_examined(plain) for m in r.matches if m.image.source.endswith("coffee.png"))
