"""The identification engine: local features stored at registration, each candidate
verified against its original, one verdict (match, montage, no match)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robusthash.attacks import parse
from robusthash.compare.features import LocalFeatures, local_features, verify
from robusthash.db import ReferenceDB
from robusthash.identify import MATCH, MONTAGE, NO_MATCH, Identifier

REGISTERED = ("astronaut", "coffee", "chelsea", "rocket")


def test_local_features_round_trip(astronaut):
    features = local_features(astronaut)
    data = features.to_bytes()
    back = LocalFeatures.from_bytes(data)
    assert len(back) == len(features) > 100 and back.size == astronaut.size
    assert np.array_equal(back.descriptors, features.descriptors)
    assert np.abs(back.points - features.points).max() <= 0.25 / features.scale
    assert back.to_bytes() == data
    for bad in (b"", data[:-1], b"XXXX" + data[4:]):
        with pytest.raises(ValueError):
            LocalFeatures.from_bytes(bad)


@pytest.mark.parametrize("spec, flipped", [("JC(30)", False), ("RT(30)", False), ("FL(H)", True),
                                           ("CROP(0.5)", False), ("PAD(0.2)", False), ("ST(0)", False)])
def test_copies_are_verified(astronaut, spec, flipped):
    copy = parse(spec)(astronaut, seed=1)
    found = verify(local_features(copy), local_features(astronaut), local_features(copy, mirrored=True))
    assert found.accepted and found.inliers >= 50 and found.flipped == flipped
    x0, y0, x1, y1 = found.query_box
    assert 0 <= x0 < x1 <= copy.width and 0 <= y0 < y1 <= copy.height


def test_a_different_picture_is_not_verified(photos):
    coffee, chelsea = photos["coffee"], photos["chelsea"]
    found = verify(local_features(coffee), local_features(chelsea), local_features(coffee, mirrored=True))
    assert found.inliers < 25


@pytest.fixture(scope="module")
def registered(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("identify")
    paths = []
    for name in REGISTERED:
        path = root / f"{name}.jpg"
        photos[name].save(path, quality=92)
        paths.append(path)
    ref = ReferenceDB(root / "refs.sqlite", methods=["forbild", "pdq", "cmaa"])
    assert len(ref.add(paths).added) == len(REGISTERED)
    yield ref, {name: str(p) for name, p in zip(REGISTERED, paths)}
    ref.close()


@pytest.mark.parametrize("spec", ["JC(40)", "RT(30)", "FL(V)", "CROP(0.5,1,1)", "PAD(0.2,white)", "RS(0.3)+JC(50)"])
def test_attacked_copies_are_identified(registered, photos, spec):
    ref, sources = registered
    verdict = Identifier(ref).identify(parse(spec)(photos["astronaut"], seed=2))
    assert verdict.verdict == MATCH
    assert verdict.matches[0].image.source == sources["astronaut"]
    assert verdict.matches[0].reason.startswith("identified")
    assert all(m.image.source == sources["astronaut"] for m in verdict.matches)


def test_unregistered_and_uninformative_queries_match_nothing(registered, photos):
    ref, _ = registered
    engine = Identifier(ref)
    unregistered = engine.identify(photos["camera"].convert("RGB"))
    assert unregistered.verdict == NO_MATCH and unregistered.candidates  # candidates were checked, none verified
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    refused = engine.identify(noise)
    assert refused.verdict == NO_MATCH and "cannot be identified" in refused.refused
    flat = engine.identify(Image.new("RGB", (400, 300), (90, 120, 200)))
    assert flat.verdict == NO_MATCH and flat.refused


def test_a_montage_names_both_sources_with_their_regions(registered, photos):
    ref, sources = registered
    astronaut, coffee = photos["astronaut"], photos["coffee"]
    canvas = Image.new("RGB", (astronaut.width + coffee.width + 20, astronaut.height), (255, 255, 255))
    canvas.paste(astronaut, (0, 0))
    canvas.paste(coffee, (astronaut.width + 20, 50))
    verdict = Identifier(ref).identify(canvas)
    assert verdict.verdict == MONTAGE
    regions = {m.image.source: m.region for m in verdict.matches}
    assert set(regions) == {sources["astronaut"], sources["coffee"]}
    assert regions[sources["astronaut"]][2] <= astronaut.width + 10
    assert regions[sources["coffee"]][0] >= astronaut.width + 10


def test_references_without_features_are_not_verified_until_added_again(tmp_path, photos):
    path = tmp_path / "astronaut.jpg"
    photos["astronaut"].save(path, quality=92)
    url = tmp_path / "refs.sqlite"
    with ReferenceDB(url, methods=["forbild", "pdq"], features=None) as old:
        old.add([path])
    copy = parse("RT(30)")(photos["astronaut"], seed=0)  # neither hash holds a rotation
    with ReferenceDB(url) as ref:
        before = Identifier(ref).identify(copy)
        assert before.verdict == NO_MATCH and "no local features stored" in before.candidates[0].reason
        assert len(ref.add([path]).updated) == 1  # the features it lacked
        after = Identifier(ref).identify(copy)
        assert after.verdict == MATCH and after.matches[0].reason.startswith("identified")
