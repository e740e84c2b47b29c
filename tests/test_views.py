"""CMAA's training views and the learned hashers' input rule (no torch needed)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from robusthash.runtime import MEAN, STD, preprocess
from robusthash.models.views import ViewConfig, paste_object, random_crop, three_views, training_original


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
