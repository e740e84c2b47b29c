"""CMAA's training views (table1 and wide recipes) and the learned hashers' input rule (no torch needed)."""

from __future__ import annotations

import hashlib

import numpy as np
import PIL
import pytest
from PIL import Image

from robusthash.attacks import transforms as T
from robusthash.attacks.suites import strong_attack
from robusthash.runtime import MEAN, STD, preprocess
from robusthash.models.views import (
    DRAWERS, Sources, ViewConfig, WideAugment, draw_wide_ops, paste_object, random_crop, three_views,
    training_original, weak_view, wide_weak_ops,
)


def test_preprocess_shape_and_scale(astronaut):
    x = preprocess(astronaut, 64)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    white = preprocess(Image.new("RGB", (10, 20), (255, 255, 255)), 8)
    assert np.allclose(white[:, 0, 0], (1 - MEAN) / STD)


def test_random_crops_keep_the_asked_share_of_the_area(astronaut):
    rng = np.random.default_rng(0)
    for _ in range(50):
        crop = random_crop(astronaut, rng, (0.35, 1.0), (3 / 4, 4 / 3))
        share = crop.width * crop.height / (astronaut.width * astronaut.height)
        assert 0.33 <= share <= 1.0
        assert 3 / 4 - 0.02 <= crop.width / crop.height <= 4 / 3 + 0.02 or crop.size == astronaut.size


def test_pasted_objects_cover_part_of_the_photo_and_respect_alpha(astronaut):
    cutout = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    cutout.paste((255, 0, 0, 255), (10, 10, 30, 30))  # an opaque red square in a transparent frame
    composite = paste_object(astronaut, cutout, np.random.default_rng(1), (0.3, 0.3))
    changed = (np.asarray(composite).astype(int) - np.asarray(astronaut).astype(int)).any(axis=2)
    side = round(min(astronaut.size) * 0.3)
    assert 0.2 * side**2 < changed.sum() < 0.3 * side**2  # the red half-size square, not the frame


def test_views_are_reproducible_and_differ_from_each_other(astronaut):
    config = ViewConfig(work_size=96)
    cutouts = [Image.new("RGBA", (20, 20), (0, 255, 0, 255))]

    def sample(seed):
        rng = np.random.default_rng(seed)
        return three_views(training_original(astronaut, rng, config, cutouts), rng)

    first, again = sample(5), sample(5)
    for a, b in zip(first, again):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    arrays = [np.asarray(v.resize((96, 96))) for v in first]
    assert not np.array_equal(arrays[1], arrays[2]) or not np.array_equal(arrays[0], arrays[1])
    assert all(v.mode == "RGB" for v in first)


# --- the recipes: table1 (shipped, unchanged) and wide (v2, issue 24) ---

WIDE = ViewConfig(work_size=48, augment="wide")
GREEN = [Image.new("RGBA", (20, 20), (0, 255, 0, 255))]


def gradient() -> Image.Image:
    y, x = np.mgrid[0:80, 0:120]
    return Image.fromarray(np.stack([x * 2, y * 3, x + y], -1).astype(np.uint8))


def red_donor(rng):
    return Image.new("RGB", (30, 30), (255, 0, 0))


def wide_sample(im, seed, config=WIDE, donor=red_donor):
    rng = np.random.default_rng(seed)
    return three_views(training_original(im, rng, config, GREEN), rng, config, GREEN, donor)


# sha256 of 40 table1 samples of gradient(), computed before the wide recipe existed
# (Pillow 13.0.0, numpy 2.4.6; JPEG and resampling may round differently elsewhere).
TABLE1_CHECKSUM, TABLE1_CHECKSUM_VERSIONS = "763e8ffcf078ee71", ("13.0.0", "2.4.6")


def test_table1_views_are_the_shipped_models_pixels():
    if (PIL.__version__, np.__version__) != TABLE1_CHECKSUM_VERSIONS:
        pytest.skip("the checksum was recorded with other Pillow/numpy versions")
    digest = hashlib.sha256()
    for seed in range(40):
        rng = np.random.default_rng([7, seed])
        original = training_original(gradient(), rng, ViewConfig(work_size=48), GREEN)
        for view in three_views(original, rng):
            digest.update(np.asarray(view).tobytes())
            digest.update(str(view.size).encode())
    assert digest.hexdigest()[:16] == TABLE1_CHECKSUM


def test_table1_views_ignore_cutouts_and_donor_and_follow_cmaas_recipe(astronaut):
    config = ViewConfig(work_size=64)
    assert config.augment == "table1" and config.wide is None  # old checkpoints' views
    original = training_original(astronaut, np.random.default_rng(3), config)
    for seed in range(10):
        plain = three_views(original, np.random.default_rng(seed))
        given = three_views(original, np.random.default_rng(seed), config, GREEN, red_donor)
        rng = np.random.default_rng(seed)
        by_hand = (strong_attack(weak_view(original, rng), rng), weak_view(original, rng), weak_view(original, rng))
        for a, b, c in zip(plain, given, by_hand):
            assert np.array_equal(np.asarray(a), np.asarray(b)) and np.array_equal(np.asarray(a), np.asarray(c))


def test_the_augment_is_checked_and_wide_gets_its_ranges():
    with pytest.raises(ValueError, match="augment"):
        ViewConfig(augment="sscd")
    assert ViewConfig(augment="wide").wide == WideAugment()
    narrow = WideAugment(rotation=10.0)
    assert ViewConfig(augment="wide", wide=narrow).wide is narrow


def test_wide_views_are_reproducible_work_size_rgb_and_vary(astronaut):
    first, again = wide_sample(astronaut, 5), wide_sample(astronaut, 5)
    for a, b in zip(first, again):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    samples = [wide_sample(astronaut, seed) for seed in range(20)]
    for views in samples:
        assert all(v.mode == "RGB" and v.size == (48, 48) for v in views)
    view2s = {np.asarray(views[1]).tobytes() for views in samples}
    assert len(view2s) == 20  # every seed draws another view
    dark = sum(np.asarray(v).max() < 20 for views in samples for v in views)
    assert dark <= 3  # not black frames


def test_wide_chains_cover_every_family_and_operation():
    w, sources = WideAugment(), Sources(GREEN, red_donor)
    rng = np.random.default_rng(0)
    names, lengths, grey = [], [], 0
    for _ in range(300):
        weak = wide_weak_ops(rng, w, sources)
        grey += any(name == "colour/greyscale" for name, _ in weak)
        lengths.append(len(weak) - any(name == "colour/greyscale" for name, _ in weak))
        names += [name for name, _ in weak + draw_wide_ops(rng, w, w.strong_ops, sources)]
    expected = {f"{family}/{op}" for family, ops in DRAWERS.items() for op in ops} | {"colour/greyscale"}
    assert set(names) == expected  # every operation is drawn, and nothing else
    assert set(lengths) == {1, 2, 3}
    assert 0.08 < grey / 300 < 0.25  # greyscale for ~15% of views
    families = {family: sum(name.startswith(family + "/") for name in names) for family in DRAWERS}
    assert families["geometry"] > families["mix"] > 0


def test_wide_overlays_fall_back_to_shapes_without_cutouts():
    w = WideAugment(families=(("overlay", 1.0),))
    rng = np.random.default_rng(1)
    names = {name for _ in range(50) for name, _ in draw_wide_ops(rng, w, (1, 1), Sources([], None))}
    assert names == {"overlay/shapes"}


def test_wide_cutmix_and_mixup_take_the_donors_pixels(astronaut):
    only_mix = ViewConfig(work_size=48, augment="wide", wide=WideAugment(families=(("mix", 1.0),)))
    asked = []

    def donor(rng):
        asked.append(int(rng.integers(1000)))
        return red_donor(rng)

    reddish = wide_sample(astronaut, 2, only_mix, donor)
    assert asked  # the donor was asked, with a generator drawn from the sample's
    bluish = wide_sample(astronaut, 2, only_mix, lambda rng: Image.new("RGB", (30, 30), (0, 0, 255)))
    for red, blue in zip(reddish, bluish):  # the same operations, only the donor differs
        redness = [np.asarray(v).astype(float).mean(axis=(0, 1)) @ np.array([1, 0, -1]) for v in (red, blue)]
        assert redness[0] > redness[1] + 10  # a red patch, or red blended in
    asked_again = []
    wide_sample(astronaut, 2, only_mix, lambda rng: asked_again.append(int(rng.integers(1000))) or red_donor(rng))
    assert asked_again == asked
    for view in wide_sample(astronaut, 2, only_mix, None):  # no donor: the view's own pixels
        assert view.size == (48, 48)


HELD_OUT = ("perspective", "caption", "screenshot", "webp", "avif", "hue_shift")


def test_wide_views_never_use_the_held_out_transforms(astronaut, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a held-out transform was used in training views")

    for name in HELD_OUT:
        monkeypatch.setattr(T, name, forbidden)
    for seed in range(300):
        wide_sample(astronaut, seed)


def test_blend_draws_table1_views_for_most_samples_and_mild_wide_ones_for_the_rest(astronaut):
    config = ViewConfig(work_size=48, augment="blend")
    assert config.wide_share == 0.3 and config.wide.weak_ops == (1, 1)
    assert all(name != "mix" for name, _ in config.wide.families)
    original = training_original(astronaut, np.random.default_rng(0), ViewConfig(work_size=48))
    wide = 0
    for seed in range(60):
        blended = three_views(original, np.random.default_rng(seed), config, GREEN, red_donor)
        rng = np.random.default_rng(seed)
        drawn_wide = rng.random() < config.wide_share  # the sample's first draw picks the recipe
        table1 = three_views(original, rng, ViewConfig(work_size=48))
        same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(blended, table1))
        assert same != drawn_wide
        assert not drawn_wide or all(view.size == (48, 48) and view.mode == "RGB" for view in blended)
        wide += drawn_wide
    assert 8 <= wide <= 30
    with pytest.raises(ValueError, match="wide_share"):
        ViewConfig(augment="blend", wide_share=1.5)
