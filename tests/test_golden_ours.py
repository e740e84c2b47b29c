"""Golden hashes of our own methods on a few vendored files (tests/golden/ours/, made from
scikit-image's bundled photos: JPEG, PNG, a large JPEG, 16-bit grey, alpha). A change to a
method's output fails here unless its version is bumped and the goldens are rewritten
with it (benchmarks/golden_hashes.py) in the same commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robusthash.hashing import Hash, MultiHash, available_methods, get_hasher
from robusthash.hashing.value import hash_from_text

GOLDEN = Path(__file__).parent / "golden" / "ours"
EXPECTED = json.loads((GOLDEN / "hashes.json").read_text())
# onnxruntime's float kernels differ between CPU instruction sets, and a learned hash is
# the sign of a feature against the median: a feature at the median may land either side
# on another machine. Classical methods are exact.
LEARNED_TOLERANCE = {"cmaa": 2, "aria": 2, "segments": 2}


def test_every_method_has_goldens():
    assert set(EXPECTED) == set(available_methods())


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_a_methods_output_is_unchanged_unless_its_version_is_bumped(method):
    hasher = get_hasher(method)
    for name, text in EXPECTED[method].items():
        golden = hash_from_text(text)
        assert golden.version == hasher.version, (
            f"{method}'s version is {hasher.version}, the goldens are of {golden.version}: after a deliberate "
            f"change, rewrite them with benchmarks/golden_hashes.py in the same commit")
        value = hasher.hash(GOLDEN / name)
        parts = zip(value.hashes, golden.hashes) if isinstance(value, MultiHash) else [(value, golden)]
        if isinstance(value, MultiHash):
            assert len(value.hashes) == len(golden.hashes), (method, name)
        for ours, theirs in parts:
            assert isinstance(ours, Hash)
            distance = ours - theirs
            assert distance <= LEARNED_TOLERANCE.get(method, 0), (
                f"{method}@{hasher.version} on {name}: {distance} bits from the golden hash without a version bump")
