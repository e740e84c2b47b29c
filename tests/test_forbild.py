"""forbild: mirroring, quadrant medians, weighted distance and the paper's decision rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from robusthash import attacks
from robusthash.hashing import Hash, get_hasher, weighted_distance
from robusthash.hashing.forbild import forbild_bits, mirror_brightest_top_left


def test_brightest_quadrant_goes_top_left():
    grid = np.zeros((16, 16))
    grid[8:, 8:] = 200  # brightest quadrant bottom right
    mirrored = mirror_brightest_top_left(grid)
    assert mirrored[:8, :8].mean() == 200 and mirrored[8:, 8:].mean() == 0


def test_each_quadrant_has_half_its_bits_set():
    rng = np.random.default_rng(0)
    grid = rng.random((16, 16)) * 255
    grid[:8, :8] += 1000  # one very bright quadrant: a global median would set all its bits
    bits, reliability = forbild_bits(grid)
    quads = bits.reshape(2, 8, 2, 8).transpose(0, 2, 1, 3).reshape(4, 64)
    assert quads.sum(axis=1).tolist() == [32, 32, 32, 32]
    assert reliability.shape == (256,) and (reliability >= 0).all()


def test_weighted_distance_follows_the_paper():
    bits = np.zeros(256, dtype=bool)
    bits[:128] = True
    reliability = np.full(256, 10.0)
    reliability[:4] = 1.0  # four unreliable bits
    query = Hash.from_bits(bits, "forbild", "1", reliability=reliability)
    flipped = bits.copy()
    flipped[:4] ^= True
    reference = Hash.from_bits(flipped, "forbild", "1")
    # (mean 1² over 4 differing bits) / (mean 10² over 252 identical bits) × 4 × 1000
    assert weighted_distance(query, reference) == pytest.approx(1 / 100 * 4 * 1000)
    assert weighted_distance(query, query) == 0
    assert weighted_distance(Hash.from_hex(str(query)), reference) is None
    flat = Hash.from_bits(bits, "forbild", "1", reliability=np.zeros(256))
    assert math.isinf(weighted_distance(flat, reference))


def decision_case(hamming, reliability_of_differing):
    bits = np.zeros(256, dtype=bool)
    bits[::2] = True
    reliability = np.full(256, 10.0)
    reliability[:hamming] = reliability_of_differing
    query = Hash.from_bits(bits, "forbild", "1", reliability=reliability)
    other = bits.copy()
    other[:hamming] ^= True
    return get_hasher("forbild").compare(query, Hash.from_bits(other, "forbild", "1"))


def test_decision_rule():
    assert decision_case(8, 10.0).matched  # Hamming ≤ 8 always matches
    assert not decision_case(9, 10.0).matched  # weighted = 9000, far above 16
    assert decision_case(20, 0.2).matched  # unreliable bits only: weighted = 0.0004*20*1000 = 8
    assert not decision_case(33, 0.01).matched  # not a candidate, however unreliable
    case = decision_case(20, 0.2)
    assert case.details["weighted_distance"] == pytest.approx(8.0)
    assert "weighted distance" in case.details["rule"]


def test_real_copies_match_and_distinct_photos_do_not(photos):
    hasher = get_hasher("forbild")
    hashes = {name: hasher.hash(im) for name, im in photos.items()}
    for name, im in photos.items():
        query = hasher.hash(attacks.jpeg(attacks.resize(im, 0.7), 40))
        assert hasher.compare(query, hashes[name]).matched
        for other in photos:
            if other != name:
                assert not hasher.compare(query, hashes[other]).matched, (name, other)


def test_draft_decoding_barely_changes_the_hash(photos):
    import io

    hasher = get_hasher("forbild")
    for im in photos.values():
        big = im.resize((im.width * 2, im.height * 2))
        buffer = io.BytesIO()
        big.save(buffer, format="JPEG", quality=92)
        drafted = hasher.hash(buffer.getvalue())  # decoded at 1/4 or 1/8 scale
        full = hasher.hash_pil(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        assert drafted - full <= 6


def test_the_weighted_distance_is_symmetric_when_both_hashes_are_fresh(photos):
    """Issue 21: 991.8 one way and 2250.3 the other; now one number for the pair."""
    from robusthash import attacks, get_hasher

    hasher = get_hasher("forbild")
    original = hasher.hash(photos["chelsea"])
    copy = hasher.hash(attacks.apply("RT(10)+JC(30)", photos["chelsea"], seed=0))
    assert original - copy > 0
    assert weighted_distance(original, copy) == weighted_distance(copy, original)
    assert hasher.compare(original, copy).details == hasher.compare(copy, original).details
    # against a registered hash (no reliabilities), the query's own are used, as in the paper
    stored = Hash.from_hex(str(original), "forbild", hasher.version)
    assert weighted_distance(copy, stored) is not None
