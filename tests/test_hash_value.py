"""The Hash value type: packing, hex round trip, Hamming distance, JSON."""

from __future__ import annotations

import numpy as np
import pytest

from robusthash import Hash, MultiHash
from robusthash.hashing import hash_from_dict


def random_bits(n, seed=0):
    return np.random.default_rng(seed).random(n) < 0.5


@pytest.mark.parametrize("nbits", [64, 128, 256, 7, 13])
def test_hex_round_trip(nbits):
    h = Hash.from_bits(random_bits(nbits), "m", "1")
    back = Hash.from_hex(str(h), "m", "1", nbits=nbits)
    assert back == h
    assert np.array_equal(back.bits, h.bits)
    assert len(str(h)) == (nbits + 3) // 4


def test_hex_is_msb_first_like_imagehash():
    import imagehash

    bits = random_bits(64, 3)
    ours = Hash.from_bits(bits)
    theirs = imagehash.ImageHash(bits.reshape(8, 8))
    assert str(ours) == str(theirs)
    assert Hash.from_hex("8000000000000001").bits[[0, 63]].all()


def test_subtraction_is_hamming_distance():
    a_bits = random_bits(256, 1)
    b_bits = a_bits.copy()
    b_bits[[0, 5, 100, 255]] ^= True
    a, b = Hash.from_bits(a_bits, "m", "1"), Hash.from_bits(b_bits, "m", "1")
    assert a - b == 4 == b - a
    assert a.nhd(b) == 4 / 256
    assert a - a == 0


def test_incomparable_hashes_are_refused():
    a = Hash.from_bits(random_bits(64), "phash", "1")
    with pytest.raises(TypeError, match="different lengths"):
        a - Hash.from_bits(random_bits(128), "phash", "1")
    with pytest.raises(ValueError, match="different methods"):
        a - Hash.from_bits(random_bits(64), "dhash", "1")
    with pytest.raises(ValueError, match="different methods or versions"):
        a - Hash.from_bits(random_bits(64), "phash", "2")
    with pytest.raises(TypeError):
        a - "abcd"
    # a hash of unknown method (read from bare hex) compares with anything of its length
    assert a - Hash.from_hex(str(a)) == 0


def test_json_round_trip_and_equality():
    h = Hash.from_bits(random_bits(256, 2), "forbild", "1", reliability=np.ones(256))
    back = Hash.from_json(h.to_json())
    assert back == h and hash(back) == hash(h)
    assert back.method == "forbild" and back.version == "1" and back.nbits == 256
    assert "reliability" not in h.to_json()  # side information is not part of the stored hash
    assert hash_from_dict(h.to_dict()) == h


def test_bad_hex_is_rejected():
    for text in ["", "xyz", "12 34"]:
        with pytest.raises(ValueError):
            Hash.from_hex(text)
    with pytest.raises(ValueError):
        Hash.from_hex("ff", nbits=12)
    with pytest.raises(ValueError):
        Hash(b"\x00\x00", 64)


def test_multihash_round_trip():
    parts = tuple(Hash.from_bits(random_bits(64, s), "crop-resistant", "x") for s in range(3))
    multi = MultiHash(parts, "crop-resistant", "x")
    assert str(multi).count(",") == 2
    back = hash_from_dict(multi.to_dict())
    assert isinstance(back, MultiHash) and back == multi
    single = MultiHash(parts[:1], "crop-resistant", "x")
    assert isinstance(hash_from_dict(single.to_dict()), MultiHash)


def test_the_text_form_keeps_identity_and_side_information(astronaut):
    """Issue 21, item 9: plain hex loses the method, the version and forbild's reliabilities;
    the text form METHOD:VERSION:HEX;EXTRA keeps all of them."""
    from robusthash import get_hasher
    from robusthash.hashing.value import hash_from_text

    for method in ("forbild", "pdq", "phash", "segments"):
        value = get_hasher(method).hash(astronaut)
        text = value.to_text()
        assert text.startswith(f"{method}:{value.version}:{value}")
        back = hash_from_text(text)
        assert back == value and back.same_as(value)
        assert back.method == method and back.version == value.version
    forbild = get_hasher("forbild").hash(astronaut)
    back = Hash.from_hex(forbild.to_text())
    assert np.array_equal(back.extra["reliability"], forbild.extra["reliability"])
    assert back == forbild and Hash.from_hex(str(forbild)) != forbild  # plain hex: the bits alone
    assert Hash.from_hex(str(forbild), forbild.method, forbild.version) == forbild


def test_bad_text_forms_are_refused():
    from robusthash.hashing.value import hash_from_text

    for text in ["forbild:2:", ":2:abcd", "forbild:2:zz", "forbild:2:abcd;{not json", "x:1:ab,cd;[{}]"]:
        with pytest.raises(ValueError):
            hash_from_text(text)
    with pytest.raises(ValueError, match="unknown method"):
        Hash.from_bits(random_bits(8)).to_text()
