"""The image comparator's torch-free parts: alignment, editorial edits with their truth,
synthetic pairs, the metrics of its report."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robusthash.attacks.spec import apply
from robusthash.compare import Kind
from robusthash.compare.align import Alignment, align, aligned_pair, estimate, sampling_grid, stretch_homography
from robusthash.evaluation.metrics import average_precision, cell_iou
from robusthash.synth import edits
from robusthash.synth.pairs import Pair, PairConfig, PairPool, aligned_pairs, draw_pair, truth_heatmap


def small(im: Image.Image, side: int = 320) -> Image.Image:
    im = im.convert("RGB").copy()
    im.thumbnail((side, side))
    return im


def difference(pair) -> float:
    return float(np.abs(pair.query.astype(float) - pair.original.astype(float)).mean())


@pytest.mark.parametrize("spec", ["RT(20)+CROP(0.6)", "FL(H)+JC(60)", "RS(0.5)+SHR(X,0.1)"])
def test_alignment_undoes_geometry_so_only_small_differences_remain(photos, spec):
    original = small(photos["astronaut"])
    query = apply(spec, original, 0)
    alignment, pair = align(query, original, 112)
    assert alignment.found and alignment.inliers >= 12
    assert alignment.flipped == ("FL" in spec)
    stretched = aligned_pair(query, original, Alignment(None, False, 0, 0), 112)
    assert difference(pair) < 6 and 2 * difference(pair) < difference(stretched)
    if "CROP" in spec:  # what the crop cut away is not covered, and shows the original there
        assert 0.45 < pair.coverage.mean() < 0.75
        assert np.array_equal(pair.query[~pair.coverage], pair.original[~pair.coverage])


def test_a_different_picture_is_not_aligned_and_is_stretched_onto_the_frame(photos):
    alignment, pair = align(small(photos["coffee"]), small(photos["astronaut"]), 112)
    assert not alignment.found and pair.coverage.all()
    assert pair.query.shape == pair.original.shape == (112, 112, 3)


def test_the_sampling_grid_maps_the_query_onto_the_original_frame(photos):
    original = small(photos["chelsea"])
    grid = sampling_grid(Alignment(None, False, 0, 0), (80, 53), original.size, 112)
    # A query at a quarter size has fewer pixels than the grid: it is not reduced, and spans it.
    assert original.size == (320, 213) and grid.reduced == (80, 53) and grid.coverage.all()
    assert grid.map_x[0, 0] == pytest.approx(80 / 112 / 2 - 0.5, abs=1e-4)
    assert grid.map_x[0, -1] == pytest.approx(79.5 - 80 / 112 / 2, abs=1e-4)
    # The same query at full size is finer than the grid: reduced first (antialiasing).
    fine = sampling_grid(Alignment(stretch_homography((320, 213), (320, 213)), False, 20, 20), original.size,
                         original.size, 112)
    assert fine.reduced[0] < original.width and abs(fine.reduced[0] / fine.reduced[1] - 320 / 213) < 0.05


def test_region_edits_change_only_the_masked_pixels(photos):
    image = small(photos["coffee"])
    rng = np.random.default_rng(3)
    region = edits.random_region(image.size, 0.1, rng)
    assert 0.07 < region.mean() < 0.13
    donor = small(photos["rocket"])
    for edited, mask in (edits.remove_region(image, region), edits.smear_region(image, region, 6.0),
                         edits.replace_region(image, donor, region)):
        changed = np.abs(np.asarray(edited, dtype=int) - np.asarray(image, dtype=int)).max(axis=2) > 0
        assert not changed[~mask].any() and changed[mask].mean() > 0.5


def test_a_pasted_object_is_its_alpha_mask(photos, clipart):
    image = small(photos["coffee"])
    edited, mask = edits.paste_object(image, clipart, 0.4, 10.0, (0.2, 0.7))
    changed = np.abs(np.asarray(edited, dtype=int) - np.asarray(image, dtype=int)).max(axis=2) > 8
    assert 0.03 < mask.mean() < 0.3 and changed[mask].mean() > 0.8 and changed[~mask].mean() < 0.02


def test_cell_fractions_are_the_share_of_each_cell_edited():
    mask = np.zeros((70, 140), dtype=bool)
    mask[:10, :20] = True  # exactly the top-left cell
    mask[30:40, 60:70] = True  # half of the centre cell
    cells = edits.cell_fractions(mask)
    assert cells.shape == (7, 7)
    assert cells[0, 0] == pytest.approx(1.0) and cells[3, 3] == pytest.approx(0.5)
    assert cells.sum() == pytest.approx(1.5, abs=1e-4)


@pytest.fixture(scope="module")
def pool(photos, clipart):
    return PairPool([photos[n] for n in ("astronaut", "coffee", "chelsea", "rocket")], [clipart],
                    PairConfig(side=160))


def test_pairs_come_in_turn_and_are_the_same_however_drawn(pool):
    first = [draw_pair(pool, 7, i) for i in range(6)]
    assert [p.kind for p in first] == [Kind.same, Kind.edited, Kind.different] * 2
    assert first[1].mask.any() and first[1].edit in edits.EDITS and not first[0].mask.any()
    again = draw_pair(pool, 7, 4)
    assert np.array_equal(np.asarray(again.query), np.asarray(first[4].query))
    assert again.attacks == first[4].attacks
    serial = aligned_pairs(pool, 6, 7, 112)
    parallel = aligned_pairs(pool, 6, 7, 112, workers=2)
    assert np.array_equal(serial.queries, parallel.queries) and np.array_equal(serial.labels, parallel.labels)
    assert serial.targets.shape == (6, 7, 7) and serial.targets[serial.labels != Kind.edited].sum() == 0


def test_an_edit_the_query_cropped_away_makes_the_pair_the_same(photos):
    original = small(photos["coffee"], 140)
    mask = np.zeros((original.height, original.width), dtype=bool)
    mask[:20, :20] = True
    pair = Pair(original, original, Kind.edited, mask, "smear")
    coverage = np.ones((112, 112), dtype=bool)
    kind, target = truth_heatmap(pair, coverage)
    assert kind == Kind.edited and target[0, 0] > 0.5
    coverage[:40, :40] = False
    kind, target = truth_heatmap(pair, coverage)
    assert kind == Kind.same and target.sum() == 0


def test_estimate_tries_the_mirror_only_when_needed(photos):
    original = small(photos["rocket"])
    assert not estimate(apply("JC(80)", original, 0), original).flipped
    assert estimate(apply("FL(H)", original, 0), original).flipped


def test_average_precision_matches_its_definition():
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    positive = np.array([1, 0, 1, 0, 1], dtype=bool)
    # thresholds 0.9: R 1/3 P 1; 0.8 (tie enters together): R 2/3 P 2/3; 0.3: R 2/3; 0.1: R 1 P 3/5
    assert average_precision(scores, positive) == pytest.approx(1 / 3 + (1 / 3) * (2 / 3) + (1 / 3) * 0.6)
    assert average_precision(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    with pytest.raises(ValueError):
        average_precision(np.array([0.5]), np.array([False]))


def test_cell_iou():
    a = np.zeros((7, 7), dtype=bool)
    b = a.copy()
    assert cell_iou(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert cell_iou(a, b) == pytest.approx(1 / 3)
