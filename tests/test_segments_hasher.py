"""The segments method: whole image + upright objects, closest pair of parts decides."""

from __future__ import annotations

import itertools

from robusthash import attacks, get_hasher
from robusthash.hashing import MultiHash
from robusthash.segments import Background, SegmentsHasher


def test_parts_carry_their_boxes_and_the_whole_image_comes_first(astronaut):
    value = get_hasher("segments").hash_pil(astronaut)
    assert isinstance(value, MultiHash) and len(value) >= 2
    assert value.hashes[0].extra["box"] == (0, 0, astronaut.width, astronaut.height)
    for part in value.hashes[1:]:
        left, top, right, bottom = part.extra["box"]
        assert 0 <= left < right <= astronaut.width and 0 <= top < bottom <= astronaut.height


def test_a_cropped_and_rotated_copy_is_found_through_an_object(photos):
    hasher = get_hasher("segments")
    originals = {name: hasher.hash_pil(im) for name, im in photos.items()}
    found = 0
    for name, im in photos.items():
        copy = hasher.hash_pil(attacks.parse("CROP(0.5,0.3,0.3)+RT(20)")(im, seed=0))
        distances = {other: hasher.distance(copy, h) for other, h in originals.items()}
        found += min(distances, key=distances.get) == name and hasher.matches(copy, originals[name])
    assert found >= len(photos) - 1  # measured on train photos: 88% at crop 50% + 20°
    for a, b in itertools.combinations(originals.values(), 2):
        assert hasher.distance(a, b) > hasher.threshold


def test_the_papers_variant_forbild_with_background_removed(astronaut):
    hasher = SegmentsHasher(object_method="forbild", background=Background.removed)
    value = hasher.hash_pil(astronaut)
    assert hasher.bits == 256 and all(h.nbits == 256 for h in value.hashes)
    assert "forbild" in hasher.version and "removed" in hasher.version
    result = hasher.compare(value, value)
    assert result.matched and result.hamming == 0 and result.details["query_box"] is not None


def record(image_id: int):
    from robusthash.db.store import ImageRecord

    return ImageRecord(image_id, f"d{image_id}", f"src{image_id}", {}, 10, 10, "now")


def test_a_montage_is_two_sources_found_through_different_parts():
    from robusthash.db.reference import Match, QueryResult

    def match(image_id, part, matched=True):
        return Match(record(image_id), "segments", 0.1, 12, matched, "rule", part, (0, 0, 5, 5))

    assert QueryResult("q", "segments", [match(1, 0), match(2, 3)]).montage
    assert not QueryResult("q", "segments", [match(1, 0), match(2, 0)]).montage  # one part: duplicates
    assert not QueryResult("q", "segments", [match(1, 0), match(1, 3)]).montage  # one source
    assert not QueryResult("q", "segments", [match(1, 0), match(2, 3, matched=False)]).montage
    plain = Match(record(1), "pdq", 0.1, 12, True, "rule")
    assert not QueryResult("q", "pdq", [plain, Match(record(2), "pdq", 0.1, 12, True, "rule")]).montage


def test_the_database_reports_which_part_of_the_query_matched(tmp_path, photos):
    from robusthash.db.reference import ReferenceDB

    db = ReferenceDB(tmp_path / "refs.sqlite", methods=["segments"])
    for name, im in photos.items():
        im.save(tmp_path / f"{name}.png")
    db.add(sorted(tmp_path.glob("*.png")))
    query = attacks.parse("CROP(0.5,0.3,0.3)+RT(20)")(photos["astronaut"], seed=0)
    result = db.query(query, ["segments"])[0]
    best = result.matches[0]
    assert best.matched and best.image.source.endswith("astronaut.png") and not result.montage
    assert best.query_part is not None and best.query_box is not None
    record_ = result.to_dict()
    assert record_["montage"] is False and tuple(record_["matches"][0]["query_box"]) == best.query_box


def test_a_montage_records_where_the_object_went(photos):
    import numpy as np
    from PIL import Image, ImageDraw

    from robusthash.segments.montage import paste, random_montage

    cutout = Image.new("RGBA", (100, 50), (0, 0, 0, 0))
    ImageDraw.Draw(cutout).rectangle((0, 0, 99, 49), fill=(255, 0, 0, 255))
    photo = photos["coffee"]  # 600 × 400
    montage, truth = paste(photo, cutout, scale=0.5, angle=0, position=(1.0, 0.0))
    assert truth.box == (400, 0, 600, 100)  # longer side 0.5 × 400, top-right corner
    pixels = np.asarray(montage)
    assert (pixels[10:90, 410:590] == (255, 0, 0)).all() and truth.object_pixels == 200 * 100
    turned, truth = paste(photo, cutout, scale=0.5, angle=90)
    left, top, right, bottom = truth.box
    assert abs((right - left) - 100) <= 2 and abs((bottom - top) - 200) <= 2
    one = random_montage(photo, cutout, np.random.default_rng(3))
    two = random_montage(photo, cutout, np.random.default_rng(3))
    assert one[1] == two[1] and np.array_equal(np.asarray(one[0]), np.asarray(two[0]))
