"""The identification engine: local features stored at registration, each candidate
verified against its original, one verdict (match, montage, no match)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from robusthash.attacks import parse
from robusthash.compare.features import CHECK_VERSION, LocalFeatures, local_features, verify
from robusthash.db import ReferenceDB
from robusthash.identify import MATCH, MONTAGE, NO_MATCH, Identifier, IdentifyConfig

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


def test_the_first_check_spares_a_different_picture_and_keeps_copies(astronaut, photos):
    from robusthash.compare.features import DEFAULT_FEATURES, worth_matching

    original = local_features(astronaut)
    coffee = local_features(photos["coffee"], query=True)
    assert not worth_matching(coffee.descriptors, original.descriptors)
    assert worth_matching(coffee.descriptors, original.descriptors, replace(DEFAULT_FEATURES, first_check_every=0))
    in_full = replace(DEFAULT_FEATURES, first_check_every=0)
    for spec in ("JC(30)", "CROP(0.5)", "FL(H)", "RS(0.5)"):
        copy = parse(spec)(astronaut, seed=1)
        plain, mirrored = local_features(copy, query=True), local_features(copy, mirrored=True, query=True)
        assert worth_matching((mirrored if spec == "FL(H)" else plain).descriptors, original.descriptors)
        checked, matched = verify(plain, original, mirrored), verify(plain, original, mirrored, in_full)
        assert checked.inliers == matched.inliers >= 50 and checked.flipped == matched.flipped


def test_the_first_check_of_many_originals_in_one_search_answers_as_each_alone(astronaut, photos):
    from robusthash.compare.features import first_check_count, worth_matching, worth_matching_each

    query = local_features(parse("RT(30)")(astronaut, seed=1), query=True)
    originals = [local_features(astronaut)] + [local_features(photos[name]) for name in ("coffee", "chelsea", "rocket")]
    descriptors = [o.descriptors for o in originals] + [originals[0].descriptors[:20], originals[1].descriptors[:1]]
    each = worth_matching_each(query.descriptors, descriptors)
    assert each == [worth_matching(query.descriptors, d) for d in descriptors]
    assert each[0] and not each[1] and each[-2:] == [True, False]  # too few to sample: in full, unless < 2
    assert first_check_count(query.descriptors, originals[0].descriptors) >= 20
    assert worth_matching_each(query.descriptors, []) == []


def test_a_different_picture_is_not_verified(photos):
    coffee, chelsea = photos["coffee"], photos["chelsea"]
    found = verify(local_features(coffee), local_features(chelsea), local_features(coffee, mirrored=True))
    assert found.inliers < 25


def test_a_smooth_picture_is_looked_at_again_at_a_lower_threshold(photos, astronaut):
    """FAST's default threshold finds too few corners in a smooth picture for a turned
    copy to verify; looked at again at a lower one, it verifies. A textured picture keeps
    the features of the default threshold, byte for byte."""
    from robusthash.compare.features import DEFAULT_FEATURES

    default_only = replace(DEFAULT_FEATURES, sparse_share=0)
    assert local_features(astronaut).to_bytes() == local_features(astronaut, default_only).to_bytes()
    smooth = photos["chelsea"].filter(ImageFilter.GaussianBlur(4))
    copy = parse("RT(30)")(smooth, seed=1)

    def checked(config):
        return verify(local_features(copy, config, query=True), local_features(smooth, config),
                      local_features(copy, config, mirrored=True, query=True), config)

    assert len(local_features(smooth, default_only)) < 50 and len(local_features(smooth)) > 250
    assert checked(default_only).inliers < 8 and checked(DEFAULT_FEATURES).inliers >= 50


def test_features_of_an_older_version_are_read_until_the_file_is_added_again(tmp_path, astronaut):
    from robusthash.compare.features import KIND, OLDER_VERSIONS, VERSION

    path = tmp_path / "astronaut.jpg"
    astronaut.save(path, quality=92)
    with ReferenceDB(tmp_path / "refs.sqlite", methods=["pdq"]) as ref:
        (_, image_id), = ref.add([path]).added
        data = ref.store.features([image_id], KIND, VERSION)[image_id]
        with ref.store._conn:
            ref.store._conn.execute("UPDATE features SET version = ?", (OLDER_VERSIONS[0],))
        assert ref.store.features([image_id], KIND, VERSION) == {}
        assert ref.stored_features([image_id]) == {image_id: data}
        verdict = Identifier(ref, IdentifyConfig(calibration=None)).identify(parse("RT(30)")(astronaut, seed=1))
        assert verdict.candidates[0].evidence.verification.inliers >= 50
        stats = subprocess.run([sys.executable, "-m", "robusthash.cli", "db", "stats", "--db",
                                str(tmp_path / "refs.sqlite")], capture_output=True, text=True, check=True,
                               env=dict(os.environ, COLUMNS="200")).stdout
        assert f"{KIND}@{OLDER_VERSIONS[0]}: 1 images" in stats and "db add" in stats
        ref.add([path])  # stores this version's features again
        assert ref.store.features([image_id], KIND, VERSION) == {image_id: data}


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


def test_a_registered_file_queried_with_its_own_bytes_is_that_file(tmp_path):
    """A picture too smooth for keypoints, whose hashes are weak evidence, is still
    itself when queried with its own file (before: "no match", joint rate 9.2e-6); a
    re-encoding of it (other bytes) gets no such evidence."""
    y, x = np.mgrid[0:384, 0:512] / 512.0
    sky = np.stack([90 + 60 * y + 10 * np.sin(3 * x), 140 + 70 * y, 220 + 30 * y - 15 * x], -1)
    path, other = tmp_path / "sky.png", tmp_path / "sky.jpg"
    Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8)).save(path)
    Image.open(path).save(other, quality=95)
    with ReferenceDB(tmp_path / "refs.sqlite", methods=["forbild", "pdq", "cmaa"]) as ref:
        (_, image_id), = ref.add([path]).added
        engine = Identifier(ref)
        verdict = engine.identify(path)
        assert verdict.verdict == MATCH and [m.image.id for m in verdict.matches] == [image_id]
        found = verdict.matches[0]
        assert found.evidence.same_file and found.score > 70 and "same file" in found.reason
        assert found.region == (0, 0, 512, 384) and found.evidence.to_dict()["same_file"] is True
        assert not verdict.variants  # nothing more to look for
        again = engine.identify(other)
        assert not any(c.evidence.same_file for c in again.candidates)
        assert all(c.score < 70 for c in again.candidates)
        # A large JPEG is seen drafted: its region is in the pixels the query is seen in.
        big = tmp_path / "sky-big.jpg"
        Image.open(path).resize((2048, 1536)).save(big, quality=95)
        (_, big_id), = ref.add([big]).added
        found = engine.identify(big).matches[0]
        assert found.image.id == big_id and found.evidence.same_file
        assert found.region == (0, 0, *engine.examine(big).local_features[0].size) != (0, 0, 2048, 1536)


def test_a_negative_is_identified_through_its_negative(registered, photos):
    """A negative's ORB descriptors and learned hashes match nothing of its original
    (before: no match); PDQ's complement (of its turns and flips too) tells the engine to
    look at the query's own negative, where the copy verifies."""
    from PIL import ImageOps

    ref, sources = registered
    engine = Identifier(ref)
    for spec in ("JC(70)", "FL(H)", "RS(0.5)"):
        query = ImageOps.invert(parse(spec)(photos["coffee"], seed=3).convert("RGB"))
        verdict = engine.identify(query)
        assert verdict.verdict == MATCH and verdict.matches[0].image.source == sources["coffee"]
        assert verdict.matches[0].evidence.negative and "negative" in verdict.matches[0].reason
        assert verdict.matches[0].evidence.verification.inliers >= 50
    copy = engine.identify(parse("JC(70)")(photos["coffee"], seed=3))
    assert copy.verdict == MATCH and not any(c.evidence.negative for c in copy.candidates)
    assert Identifier(ref, IdentifyConfig(negatives=False)).identify(query).verdict == NO_MATCH


@pytest.mark.parametrize("background", ["hubble_deep_field", "camera"])
def test_a_picture_pasted_onto_another_photo_is_found_through_the_windows(registered, photos, background):
    """The whole query's hashes resemble the unregistered background, so the pasted
    picture was no candidate; a window of the query brings it, and it verifies."""
    ref, sources = registered
    canvas = photos[background].resize((800, 600)).convert("RGB")
    picture = photos["coffee"]
    scale = 0.45 * 800 / max(picture.size)
    canvas.paste(picture.resize((round(picture.width * scale), round(picture.height * scale))), (400, 250))
    narrow = IdentifyConfig(per_method=1, most_per_method=1, per_variant=0, per_part=0, residual_rounds=0, per_crop=0)
    without = Identifier(ref, replace(narrow, windows=())).identify(canvas)
    assert without.verdict == NO_MATCH and sources["coffee"] not in {c.image.source for c in without.candidates}
    verdict = Identifier(ref, narrow).identify(canvas)
    assert verdict.verdict == MATCH and [m.image.source for m in verdict.matches] == [sources["coffee"]]
    x0, y0, x1, y1 = verdict.matches[0].region
    assert x0 >= 380 and y0 >= 230  # its region is the pasted picture's


def test_a_query_is_judged_by_the_tails_of_its_own_stratum(registered, photos):
    from robusthash.identify.calibration import Calibration, Stratum, shipped_calibration

    ref, sources = registered
    shipped = shipped_calibration()
    every = Calibration(shipped.tails, shipped.provenance)
    copy = parse("JC(40)")(photos["astronaut"], seed=2)  # 20% dark: a light query
    # A light stratum measured to have no calibrated signal: the light query is judged by
    # it (nothing decides), a dark one by the tails of every query.
    empty = Calibration(())
    strict = replace(every, strata=(Stratum("light", 0.6, empty),))
    verdict = Identifier(ref, IdentifyConfig(calibration=strict)).identify(copy)
    assert verdict.verdict == NO_MATCH and verdict.stratum == "light"
    assert verdict.to_dict(details=True)["calibration_stratum"] == "light"
    dark = Image.eval(copy, lambda v: v // 8)  # the same copy, 100% dark
    darkened = Identifier(ref, IdentifyConfig(calibration=strict)).identify(dark)
    assert darkened.stratum is None and darkened.verdict == MATCH
    assert darkened.matches[0].image.source == sources["astronaut"]
    none_light = replace(every, strata=(Stratum("light", 0.1, empty),))  # the copy is no member
    judged = Identifier(ref, IdentifyConfig(calibration=none_light)).identify(copy)
    assert judged.verdict == MATCH and judged.stratum is None


def test_a_query_is_judged_as_given_and_its_variants_searched_only_where_it_is_not_explained(registered, photos):
    ref, sources = registered
    engine, always = Identifier(ref), Identifier(ref, IdentifyConfig(as_given_first=False))
    astronaut = photos["astronaut"]
    # A copy explained as it is given needs no variants; a picture on a page three times
    # its size, rotated and mirrored copies, a crop and an unregistered photo may.
    queries = {"JC(40)": False, "PAD(0.5,white)": True}
    for spec in (*queries, "RT(170)", "FL(H)+JC(60)", "CROP(0.5,1,1)"):
        query = parse(spec)(astronaut, seed=3)
        first, both = engine.identify(query), always.identify(query)
        assert first.verdict == both.verdict == MATCH, spec
        assert [m.image.id for m in first.matches] == [m.image.id for m in both.matches], spec
        assert both.variants and first.to_dict(details=True)["variants_searched"] == first.variants
        if spec in queries:
            assert first.variants == queries[spec], spec
        assert first.matches[0].image.source == sources["astronaut"]
    unregistered = engine.identify(photos["camera"].convert("RGB"))
    assert unregistered.verdict == NO_MATCH and unregistered.variants


def test_variants_looked_for_later_are_those_examined_at_once(registered, photos):
    from robusthash.compare.features import DEFAULT_FEATURES

    ref, _ = registered
    query = parse("PAD(0.3,white)+RT(30)")(photos["chelsea"], seed=4)
    at_once = ref.examine(query, features=DEFAULT_FEATURES)
    given = ref.examine(query, features=DEFAULT_FEATURES, variants=False, query=True)
    assert not given.variants and not given.with_variants and len(given.ready["pdq"]) == 7  # turns and flips
    later = ref.with_variants(given)
    assert later.with_variants and not later.ready
    assert later.hashes == at_once.hashes and later.variants == at_once.variants and len(later.variants["cmaa"]) >= 2
    # The query's own hashes searched before, then its variants alone: the same results.
    first = ref.query_examined(given, k=10, lead=3)
    assert ref.query_examined(later, k=10, lead=3, searched={r.method: r for r in first}) == \
        ref.query_examined(later, k=10, lead=3)


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


def test_a_montage_found_through_the_halves_or_a_second_look(registered, photos):
    # One method and one nearest reference for the whole query: the halves' nearest (the
    # first match explains only part of the query), or the nearest to the part its
    # inliers leave unexplained, bring the montage's other picture; where the whole
    # query brings nothing (no candidate of its own here), the halves bring both.
    ref, sources = registered
    astronaut, coffee = photos["astronaut"], photos["coffee"].resize((480, 320))
    canvas = Image.new("RGB", (astronaut.width + coffee.width, astronaut.height), (255, 255, 255))
    canvas.paste(astronaut, (0, 0))
    canvas.paste(coffee, (astronaut.width, 96))
    config = IdentifyConfig(per_method=1, per_part=0, residual_rounds=0, per_variant=0)
    whole = Identifier(ref, config).identify(canvas, methods=["pdq"], k=1)
    assert whole.verdict == MATCH and len(whole.candidates) == 1
    # A copy the first reference explains whole: its halves are not searched.
    copy = parse("JC(50)")(astronaut, seed=0)
    assert len(Identifier(ref, replace(config, per_part=1)).identify(copy, methods=["pdq"], k=1).candidates) == 1
    for looks in (replace(config, per_part=1), replace(config, per_part=1, most_per_method=0),
                  replace(config, residual_rounds=2)):
        verdict = Identifier(ref, looks).identify(canvas, methods=["pdq"], k=1)
        assert verdict.verdict == MONTAGE
        assert {m.image.source for m in verdict.matches} == {sources["astronaut"], sources["coffee"]}
        regions = {m.image.source: m.region for m in verdict.matches}  # in the query's frame
        assert regions[sources["astronaut"]][2] <= astronaut.width + 10
        x0, y0, x1, y1 = regions[sources["coffee"]]
        assert x0 >= astronaut.width - 10 and y0 >= 96 - 10 and y1 <= 96 + coffee.height + 10


def _bright_and_dark(tmp_path, photos, darkness: float):
    """A database of the astronaut and a darkened camera (``darkness`` of its brightness),
    their files, and the dark picture."""
    dark = Image.fromarray((np.asarray(photos["camera"], dtype=np.float32) * darkness).astype(np.uint8))
    paths = [tmp_path / "astronaut.jpg", tmp_path / "dark.png"]
    photos["astronaut"].save(paths[0], quality=92)
    dark.save(paths[1])
    ref = ReferenceDB(tmp_path / "refs.sqlite", methods=["forbild", "pdq", "cmaa"])
    assert len(ref.add(paths).added) == 2
    return ref, paths, dark


@pytest.mark.parametrize("side, looked_at", [(512, "starved half"), (300, "uncovered side")])
def test_a_dark_picture_beside_a_bright_one_is_verified_with_keypoints_of_its_own(tmp_path, photos, side, looked_at):
    # ORB spends the query's keypoints on the bright picture, and too few are left on the
    # dark one to verify it: its half (side by side, each about half) or the side of the
    # query no identified frame covers (the bright one covering most) is looked at with
    # keypoints of its own.
    astronaut = photos["astronaut"]
    ref, paths, dark = _bright_and_dark(tmp_path, photos, 0.2)
    canvas = Image.new("RGB", (astronaut.width + 16 + side, astronaut.height), (255, 255, 255))
    canvas.paste(astronaut, (0, 0))
    canvas.paste(dark.resize((side, side)), (astronaut.width + 16, (astronaut.height - side) // 2))
    neither = IdentifyConfig(starved_part=0, uncovered_share=2)
    assert Identifier(ref, neither).identify(canvas).verdict == MATCH
    one = replace(neither, starved_part=0.5) if looked_at == "starved half" else replace(neither, uncovered_share=0.15)
    for config in (one, IdentifyConfig()):
        verdict = Identifier(ref, config).identify(canvas)
        assert verdict.verdict == MONTAGE and {m.image.source for m in verdict.matches} == set(map(str, paths))
        region = next(m.region for m in verdict.matches if m.image.source == str(paths[1]))
        assert region[0] >= astronaut.width - 10  # in the query's frame, on the dark picture
    ref.close()


def test_the_uncovered_side_of_a_query():
    from robusthash.compare.features import LocalFeatures, Verification
    from robusthash.db.store import ImageRecord
    from robusthash.identify.engine import Evidence, Identified, uncovered_side

    rng = np.random.default_rng(0)
    points = rng.uniform((0, 0), (800, 400), (1500, 2)).astype(np.float32)
    query = LocalFeatures((800, 400), 1.0, points, np.zeros((1500, 32), np.uint8))

    def named(width: int, height: int, homography: np.ndarray) -> Identified:
        image = ImageRecord(1, "digest", "a.jpg", {}, width, height, "2026-12-07")
        verification = Verification(50, 50, False, homography, (0, 0, 1, 1), 1.0, points[:50])
        return Identified(image, 50.0, True, "", (0, 0, 1, 1), Evidence({}, verification))

    # A picture of 250 x 200 seen at twice its size in the query's top left: the rest
    # right of it is the largest side.
    at_twice = np.diag([0.5, 0.5, 1.0])
    assert uncovered_side(query, [named(250, 200, at_twice)]) == (500, 0, 800, 400)
    assert uncovered_side(query, [named(380, 200, at_twice)]) is None  # 5% of the query is left
    bare = LocalFeatures((800, 400), 1.0, points[points[:, 0] < 500], np.zeros((int((points[:, 0] < 500).sum()), 32),
                                                                            np.uint8))
    assert uncovered_side(bare, [named(250, 200, at_twice)]) is None  # no keypoint there: flat padding
    assert uncovered_side(query, []) is None


def test_a_hole_in_an_identified_picture():
    from robusthash.compare.features import LocalFeatures, Verification
    from robusthash.db.store import ImageRecord
    from robusthash.identify.engine import Evidence, Identified, occluded_region

    rng = np.random.default_rng(0)
    # The reference's own keypoints, 400 x 200, seen at twice its size in the query.
    own = rng.uniform((0, 0), (400, 200), (500, 2)).astype(np.float32)
    original = LocalFeatures((400, 200), 1.0, own, np.zeros((500, 32), np.uint8))
    query = LocalFeatures((800, 400), 1.0, own * 2, np.zeros((500, 32), np.uint8))
    at_twice = np.diag([0.5, 0.5, 1.0])

    def named(matched: np.ndarray) -> Identified:
        image = ImageRecord(1, "digest", "a.jpg", {}, 400, 200, "2026-12-07")
        verification = Verification(len(matched), len(matched), False, at_twice, (0, 0, 800, 400), 1.0, matched * 2)
        return Identified(image, 50.0, True, "", (0, 0, 800, 400), Evidence({}, verification))

    # Most of its keypoints matched, except under an inset over (x 300-500, y 100-300) of the query.
    seen = own[rng.random(len(own)) < 0.8]
    covered = (seen[:, 0] >= 150) & (seen[:, 0] < 250) & (seen[:, 1] >= 50) & (seen[:, 1] < 150)
    x0, y0, x1, y1 = occluded_region(query, [named(seen[~covered])], {1: original})
    assert 250 <= x0 <= 325 and 475 <= x1 <= 550 and 50 <= y0 <= 125 and 275 <= y1 <= 350
    assert occluded_region(query, [named(seen)], {1: original}) is None  # nothing covered
    # Where the picture had no keypoints of its own (a flat part), no inlier is missed.
    flat = ~((own[:, 0] >= 150) & (own[:, 0] < 250) & (own[:, 1] >= 50) & (own[:, 1] < 150))
    bare = LocalFeatures((400, 200), 1.0, own[flat], np.zeros((int(flat.sum()), 32), np.uint8))
    assert occluded_region(query, [named(seen[~covered])], {1: bare}) is None
    assert occluded_region(query, [named(seen[~covered])], {}) is None  # its keypoints unknown


def test_a_dark_inset_is_found_as_a_hole_in_its_host(tmp_path, photos):
    # The inset is too dark for the query's keypoints, which ORB spends on the bright
    # host: no part of the query is unexplained, but the host's own keypoints, mapped
    # into the query, are missed where the inset covers them.
    ref, paths, dark = _bright_and_dark(tmp_path, photos, 0.3)
    host = photos["astronaut"].copy()
    host.paste(dark.resize((200, 200)).rotate(15, expand=True, fillcolor=0), (260, 250))
    assert Identifier(ref, IdentifyConfig(occluded_chance=0)).identify(host).verdict == MATCH
    verdict = Identifier(ref).identify(host)
    assert verdict.verdict == MONTAGE and {m.image.source for m in verdict.matches} == set(map(str, paths))
    x0, y0, x1, y1 = next(m.region for m in verdict.matches if m.image.source == str(paths[1]))
    assert x0 >= 250 and y0 >= 240  # in the query's frame, on the inset
    ref.close()


def test_each_method_offers_at_most_its_nearest(registered, photos):
    # A loose method matches about 1% of distinct references: in a large collection
    # thousands, and each candidate costs a verification.
    ref, sources = registered
    query = parse("JC(40)")(photos["astronaut"], seed=0)
    config = IdentifyConfig(per_method=3, most_per_method=2, per_part=0, residual_rounds=0, per_variant=0)
    verdict = Identifier(ref, config).identify(query, methods=["pdq"], k=3)
    (result,) = verdict.results
    assert len(result.matches) >= 3
    nearest = sorted(result.matches, key=lambda m: m.distance)[:2]
    assert sorted(c.image.id for c in verdict.candidates) == sorted(m.image.id for m in nearest)
    assert verdict.matches[0].image.source == sources["astronaut"]


def test_the_unexplained_part_of_a_query():
    from robusthash.compare.features import LocalFeatures, Verification
    from robusthash.identify.engine import Identified, Evidence, unexplained_region

    rng = np.random.default_rng(0)
    points = rng.uniform((0, 0), (800, 400), (1500, 2)).astype(np.float32)
    query = LocalFeatures((800, 400), 1.0, points, np.zeros((1500, 32), np.uint8))

    def named(inliers: np.ndarray) -> Identified:
        verification = Verification(len(inliers), len(inliers), False, np.eye(3), (0, 0, 1, 1), 1.0, inliers)
        return Identified(None, 50.0, True, "", (0, 0, 1, 1), Evidence({}, verification))  # type: ignore[arg-type]

    left = points[points[:, 0] < 400][::5]
    x0, y0, x1, y1 = unexplained_region(query, [named(left)])
    assert 400 <= x0 <= 500 and x1 >= 780 and y0 <= 20 and y1 >= 380  # the right half, a cell off its inliers
    hole = (np.abs(points[:, 0] - 400) < 200) & (np.abs(points[:, 1] - 200) < 150)
    x0, y0, x1, y1 = unexplained_region(query, [named(points[~hole][::5])])
    assert 200 <= x0 <= 300 and 500 <= x1 <= 600 and 50 <= y0 <= 150 and 250 <= y1 <= 350  # inside the hole
    assert unexplained_region(query, [named(points[::5])]) is None  # all explained
    assert unexplained_region(query, []) is None  # nothing named: no part to look at again


def test_an_inset_is_a_montage_not_the_same_picture(registered, photos):
    ref, sources = registered
    host = photos["astronaut"].copy()
    inset = photos["coffee"].resize((240, 160)).rotate(20, expand=True, fillcolor=(255, 255, 255))
    host.paste(inset, (230, 260))
    verdict = Identifier(ref).identify(host)
    assert {m.image.source for m in verdict.matches} == {sources["astronaut"], sources["coffee"]}
    assert verdict.verdict == MONTAGE
    regions = {m.image.source: m.region for m in verdict.matches}
    x0, y0, x1, y1 = regions[sources["coffee"]]
    assert 220 <= x0 and 250 <= y0 and x1 <= 230 + inset.width + 10 and y1 <= 260 + inset.height + 10


def _tiles(photos, root, count: int) -> list:
    """``count`` distinct files: windows of the test photos, each turned and tinted its own way."""
    paths, names = [], sorted(photos)
    for i in range(count):
        photo = photos[names[i % len(names)]]
        w, h = photo.size
        side = min(w, h) * 2 // 3
        x, y = (i * 37) % (w - side + 1), (i * 53) % (h - side + 1)
        tile = photo.crop((x, y, x + side, y + side)).rotate(90 * (i // len(names)))
        tile = Image.blend(tile, Image.new("RGB", tile.size, ((i * 70) % 256, (i * 30) % 256, 90)), 0.15)
        paths.append(root / f"tile-{i:02d}.jpg")
        tile.save(paths[-1], quality=90)
    return paths


def test_the_engine_is_calibrated_on_the_collection_and_says_when_it_is_too_small(tmp_path, photos):
    from robusthash.identify.collection import KEY, calibrate_collection, collection_calibration, too_coarse

    ref = ReferenceDB(tmp_path / "refs.sqlite", methods=["forbild", "pdq"])
    ref.add(_tiles(photos, tmp_path, 12))
    with pytest.raises(ValueError, match="at least 30"):
        calibrate_collection(ref)
    ref.add(_tiles(photos, tmp_path, 40))
    assert collection_calibration(ref) is None and Identifier(ref).calibration.provenance["split"] == "train"
    measured = calibrate_collection(ref, queries=12)
    stored = collection_calibration(ref)
    assert stored is not None and stored.provenance["split"] == "collection" and stored.provenance["queries"] == 12
    assert {t.signal for t in stored.tails} >= {"verification", "forbild", "pdq", "joint:forbild+pdq+verification"}
    # 9 of the 12 queries drawn are light (the Hubble field's tiles are dark): too few for
    # a stratum of their own, so every query is judged by the tails of every query.
    assert stored.strata == () and stored.for_query(0.1) is stored
    assert len(measured.pairs) == len(measured.inliers) >= 200
    assert Identifier(ref).calibration.provenance == stored.provenance  # db query uses it from now on
    assert Identifier(ref).calibration_notice is None
    assert "fitted lines" in too_coarse(stored, 1e-6)
    # With 20 queries the light ones are a stratum: measured apart, stored, read back.
    strata = calibrate_collection(ref, queries=20).calibration.strata
    assert [s.name for s in strata] == ["light"] and strata[0].calibration.provenance["queries"] >= 10
    stored = collection_calibration(ref)
    assert stored.for_query(0.1).tail("verification", CHECK_VERSION) is not None
    assert stored.for_query(0.1) is not stored and stored.for_query(0.9) is stored
    # Measured with an older check: its inlier tail means nothing now, so the shipped one
    # decides and the user is told to calibrate again.
    older = replace(stored, tails=tuple(replace(t, version="0/1") if t.signal == "verification" else t
                                        for t in stored.tails))
    ref.store.set_meta(KEY, older.to_json())
    engine = Identifier(ref)
    assert engine.calibration.provenance["split"] == "train"
    assert "measured with check 0/1" in engine.calibration_notice and "db calibrate --engine" in engine.calibration_notice
    ref.close()


def test_db_calibrate_engine_reports_and_warns(tmp_path, photos):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "robusthash.cli", *args], capture_output=True, text=True,
                              timeout=300)

    url = str(tmp_path / "refs.sqlite")
    assert cli("db", "init", "--db", url, "--methods", "forbild,pdq").returncode == 0
    assert cli("db", "add", *map(str, _tiles(photos, tmp_path, 10)), "--db", url).returncode == 0
    small = cli("db", "calibrate", "--engine", "--db", url)
    assert small.returncode == 1 and "at least 30 registered images" in small.stderr and "Traceback" not in small.stderr
    assert cli("db", "add", *map(str, _tiles(photos, tmp_path, 36)), "--db", url).returncode == 0
    done = cli("db", "calibrate", "--engine", "--db", url, "--queries", "12")
    assert done.returncode == 0, done.stderr
    # Windows of a few photos overlap: "distinct" pairs that verify, so a heavy, cautious tail.
    assert re.search(r"engine calibrated on this collection: 12 queries against 3\d references", done.stdout)
    assert "warning: this collection is too small to measure a false-match rate of 1e-06" in done.stderr


def test_a_variant_that_brings_nearer_references_does_not_push_out_the_querys_own_nearest(registered, photos):
    # A query variant (here one as near to coffee as coffee's own file) outranks what the
    # query itself found; with one candidate per method, the query's own nearest must
    # still be checked: a cut-out variant's flat surroundings once pushed a crop's
    # original out of cmaa's 20 nearest.
    from robusthash.compare.features import DEFAULT_FEATURES

    ref, sources = registered
    examined = ref.examine(parse("JC(40)")(photos["astronaut"], seed=0), ["pdq"], features=DEFAULT_FEATURES)
    coffee = Identifier(ref).identify(sources["coffee"], methods=["pdq"])
    decoy = replace(ref.examine(sources["coffee"], ["pdq"]).hashes["pdq"], extra={"variant": "a decoy"})
    examined = replace(examined, variants={"pdq": [decoy]})
    alone = IdentifyConfig(per_method=1, most_per_method=1, per_part=0, residual_rounds=0, per_variant=0)
    led = replace(alone, per_variant=1)
    without = Identifier(ref, alone).identify_examined(examined, methods=["pdq"], k=1)
    with_lead = Identifier(ref, led).identify_examined(examined, methods=["pdq"], k=1)
    assert coffee.matches[0].image.source == sources["coffee"]
    assert [c.image.source for c in without.candidates] == [sources["coffee"]]
    assert {c.image.source for c in with_lead.candidates} == {sources["coffee"], sources["astronaut"]}
    assert with_lead.matches[0].image.source == sources["astronaut"]


def test_a_crop_is_found_through_the_crops_stored_beside_a_learned_hash(registered, photos):
    # cmaa ranks a crop to 40% of the area far from its whole picture (here behind
    # another photo); the five crops registered beside each cmaa hash bring it first.
    ref, sources = registered
    version = ref.hashers["cmaa"].version
    assert len(ref.store.image_hashes(1, "cmaa", version)) == 1
    crops = ref.store.image_hashes(1, "cmaa:crops", version)  # their own rows and index
    assert [r.segment for r in crops] == list(range(ref.hashers["cmaa"].reference_crop_count))
    query = parse("CROP(0.4,0,1)")(photos["astronaut"])
    config = IdentifyConfig(per_method=1, most_per_method=1, per_variant=0, per_part=0, residual_rounds=0, per_crop=0,
                            windows=())
    without = Identifier(ref, config).identify(query, methods=["cmaa"], k=1)
    verdict = Identifier(ref, replace(config, per_crop=1)).identify(query, methods=["cmaa"], k=1)
    (result,) = verdict.results
    found = {m.image.source: m for m in result.matches}[sources["astronaut"]]
    assert found.crop_distance is not None and found.crop_distance < found.distance
    assert min(m.distance for m in result.matches if m is not found) < found.distance  # not first as a whole
    assert sources["astronaut"] not in {c.image.source for c in without.candidates}
    assert sources["astronaut"] in {c.image.source for c in verdict.candidates}
    assert verdict.verdict == MATCH and verdict.matches[0].image.source == sources["astronaut"]


def test_an_image_registered_without_crops_gets_them_when_added_again(tmp_path, photos, monkeypatch):
    from robusthash.hashing.learned import OnnxHasher

    path = tmp_path / "astronaut.jpg"
    photos["astronaut"].save(path, quality=92)
    with monkeypatch.context() as before:  # as a robusthash that stored no crops did
        before.setattr(OnnxHasher, "reference_crop_count", 0)
        ref = ReferenceDB(tmp_path / "refs.sqlite", methods=["cmaa"])
        assert len(ref.add([path]).added) == 1
        ref.close()
    ref = ReferenceDB(tmp_path / "refs.sqlite", methods=["cmaa"])
    version = ref.hashers["cmaa"].version
    assert not ref.store.image_hashes(1, "cmaa:crops", version)
    again = ref.add([path])
    assert len(again.updated) == 1 and not again.added
    assert len(ref.store.image_hashes(1, "cmaa", version)) == 1
    assert len(ref.store.image_hashes(1, "cmaa:crops", version)) == 5
    assert len(ref.add([path]).existing) == 1  # complete now: nothing to redo
    ref.close()
