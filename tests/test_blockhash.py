"""blockhash against the reference implementation.

The project's published test vectors (testdata/*.jpg with their hashes) are not
reachable from this machine (no network beyond the package registries), so the
oracle is the reference implementation itself, commonsmachinery's blockhash-python
(PyPI package ``phash-blockhashio``, import name ``blockhash``), run on the same
images: scikit-image's photos at many sizes, including sizes that do not divide
by 16 (fractional block weights) and sizes that do (the "even" code path).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robusthash.hashing import get_hasher
from robusthash.hashing.blockhash import axis_weights

reference = pytest.importorskip("blockhash.core")

SIZES = [(512, 512), (333, 217), (160, 160), (97, 131), (17, 16), (16, 33), (250, 31)]


@pytest.mark.parametrize("size", SIZES)
def test_matches_reference_bit_for_bit(photos, size):
    hasher = get_hasher("blockhash")
    for name, im in photos.items():
        resized = im.resize(size, Image.Resampling.BILINEAR)
        assert str(hasher.hash(resized)) == reference.blockhash(resized, 16), (name, size)


def test_matches_reference_on_flat_and_half_images():
    hasher = get_hasher("blockhash")
    white = Image.new("RGB", (100, 70), "white")
    half = white.copy()
    half.paste((0, 0, 0), (0, 0, 50, 70))
    for im in (white, half, Image.new("RGB", (64, 64))):
        assert str(hasher.hash(im)) == reference.blockhash(im, 16)


@pytest.mark.parametrize("n", [16, 17, 31, 100, 333, 1023])
def test_axis_weights_conserve_every_pixel(n):
    weights = axis_weights(n, 16)
    assert np.allclose(weights.sum(axis=0), 1.0)  # each pixel counted exactly once in total
    assert np.allclose(weights.sum(axis=1), n / 16)  # each block covers 1/16 of the axis


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_valued_in_strips_the_sums_are_the_whole_images(photos, monkeypatch, mode):
    """A large upload is valued a strip of rows at a time (memory); the block sums must
    be exactly those of the whole image at once, whatever the strip size."""
    from robusthash import imaging
    from robusthash.hashing import blockhash

    im = photos["astronaut"].resize((523, 389), Image.Resampling.BILINEAR)
    if mode == "RGBA":
        alpha = Image.fromarray((np.arange(523 * 389).reshape(389, 523) % 7 == 0).astype(np.uint8) * 255)
        im = im.copy()
        im.putalpha(alpha)
    else:
        im = im.convert(mode)
    whole = blockhash.value_sums(blockhash.pixel_values(np.asarray(blockhash.reference_mode(im))))
    for strip in (1, 523 * 10, 523 * 97 + 5):
        monkeypatch.setattr(imaging, "STRIP_PIXELS", strip)
        strips = blockhash.image_sums(im)
        assert np.array_equal(strips[0], whole[0]) and strips[1] == whole[1], strip
    if mode != "P":  # the reference's core refuses palette images (its CLI converts them)
        assert str(get_hasher("blockhash").hash(im)) == reference.blockhash(im, 16)
