"""The benchmark protocol end to end on a tiny collection: numbers recomputed by hand,
the cache, the pool, bad inputs and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from robusthash import attacks, load_pil
from robusthash.evaluation.bench import BenchConfig, attack_cases, case_seed, derangement, run_bench
from robusthash.evaluation.hashcache import file_digest
from robusthash.evaluation.report import write_report

ATTACKS = "JC(50),FL(H),RT(30)"


@pytest.fixture(scope="module")
def collection(tmp_path_factory, photos) -> list[Path]:
    root = tmp_path_factory.mktemp("collection")
    paths = []
    for name, im in photos.items():
        path = root / f"{name}.png"
        im.resize((160, 160 * im.height // im.width)).save(path)
        paths.append(path)
    return paths


def config(paths, tmp_path, **changes) -> BenchConfig:
    base = BenchConfig(images=tuple(paths), methods=("forbild", "phash"), attacks=ATTACKS, workers=1,
                       cache=tmp_path / "cache.sqlite")
    return replace(base, **changes)


def case(result, method, spec):
    m = next(m for m in result.methods if m.method == method)
    return next(c for c in m.cases if c.spec == spec)


def test_nhd_r_equals_a_direct_computation(collection, tmp_path):
    result = run_bench(config(collection, tmp_path))
    expected = []
    for path in collection:
        original = load_pil(path)
        copy = attacks.parse("JC(50)")(original, seed=case_seed(0, file_digest(path), "JC(50)"))
        expected.append((imagehash.phash(original) - imagehash.phash(copy)) / 64)
    assert case(result, "phash", "JC(50)").nhd_r == pytest.approx(np.mean(expected))


def test_known_behaviour_of_the_methods_shows(collection, tmp_path):
    result = run_bench(config(collection, tmp_path))
    # ForBild mirrors the brightest quadrant to the top left, so a flip barely moves it;
    # phash has no such step and a flip scrambles about half its bits.
    assert case(result, "forbild", "FL(H)").nhd_r < 0.1
    assert case(result, "phash", "FL(H)").nhd_r > 0.25
    assert case(result, "phash", "JC(50)").nhd_r < case(result, "phash", "RT(30)").nhd_r
    for m in result.methods:
        assert 0.3 < m.mu < 0.7
        assert m.tau < m.mu
        jc = next(c for c in m.cases if c.spec == "JC(50)")
        assert jc.rank1 == 1.0 and jc.f1 > 0.9


def test_cache_serves_a_rerun_and_only_new_methods_are_computed(collection, tmp_path):
    first = run_bench(config(collection, tmp_path))
    n_hashes = len(collection) * 4 * 2  # (original + 3 copies) × 2 methods
    assert (first.computed, first.cached) == (n_hashes, 0)
    again = run_bench(config(collection, tmp_path))
    assert (again.computed, again.cached) == (0, n_hashes)
    assert [c.nhd_r for c in again.methods[0].cases] == [c.nhd_r for c in first.methods[0].cases]
    more = run_bench(config(collection, tmp_path, methods=("forbild", "phash", "dhash")))
    assert more.computed == len(collection) * 4


def test_the_pool_gives_the_same_numbers_as_one_process(collection, tmp_path):
    serial = run_bench(config(collection, tmp_path, cache=None))
    pooled = run_bench(config(collection, tmp_path, cache=None, workers=2))
    for a, b in zip(serial.methods, pooled.methods):
        assert a.tau == b.tau and a.mu == b.mu
        assert [c.nhd_r for c in a.cases] == [c.nhd_r for c in b.cases]


def test_bad_and_duplicate_files_are_reported_and_skipped(collection, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    duplicate = tmp_path / "same.png"
    duplicate.write_bytes(collection[0].read_bytes())
    missing = tmp_path / "missing.png"
    result = run_bench(config([*collection, broken, duplicate, missing], tmp_path, cache=None))
    assert len(result.images) == len(collection)
    assert set(result.skipped) == {str(broken), str(duplicate), str(missing)}
    assert "broken.jpg" in result.skipped[str(broken)]
    assert "same bytes" in result.skipped[str(duplicate)]


def test_methods_without_a_fixed_length_hash_are_refused(collection, tmp_path):
    with pytest.raises(ValueError, match="crop-resistant"):
        run_bench(config(collection, tmp_path, methods=("crop-resistant",)))


def test_attack_cases_come_once_in_the_order_asked():
    cases = attack_cases("table2,JC(70),RT(30)+JC(70)")
    specs = [c.case.spec for c in cases]
    assert len(specs) == len(set(specs)) == 36 + 1
    assert cases[0].group == "table2" and cases[-1].group == "custom"


def test_all_means_every_suite_each_in_its_own_group():
    groups = {c.group for c in attack_cases("all")}
    assert groups == {"table1", "table2", "strong", "crop", "pad"}


def test_unseen_is_its_own_group_reported_beside_the_grid_with_its_average(collection, tmp_path):
    from robusthash.attacks.suites import UNSEEN_GRID

    cases = attack_cases("FL(H),unseen")
    assert {c.group for c in cases[1:]} == {"unseen"} and len(cases) == 1 + 59
    result = run_bench(config(collection[:3], tmp_path, attacks="FL(H),unseen", cache=None))
    assert result.groups["unseen"] == list(UNSEEN_GRID)
    report = (write_report(result, tmp_path / "out")[0]).read_text()
    section = report[report.index("*unseen suite"):]
    rows = [line.split(" | ")[0].strip("| ") for line in section.splitlines() if line.startswith("| ")][1:]
    assert rows[:len(UNSEEN_GRID) + 1] == [*UNSEEN_GRID, "**Unseen avg.**"]
    forbild = next(m for m in result.methods if m.method == "forbild")
    assert forbild.average("f1", list(UNSEEN_GRID)) == pytest.approx(
        np.mean([forbild.family_means("f1")[f] for f in UNSEEN_GRID]))


def test_derangement_has_no_fixed_points():
    for n in (2, 3, 10, 400):
        partner = derangement(n, seed=7)
        assert (partner != np.arange(n)).all() and partner.min() >= 0 and partner.max() < n


def test_report_files_and_numbers(collection, tmp_path):
    result = run_bench(config(collection, tmp_path))
    written = write_report(result, tmp_path / "out", command="robusthash bench ...")
    names = {p.name for p in written}
    assert {"report.md", "results.json", "det.png", "det-custom.png"} <= names
    with Image.open(tmp_path / "out" / "det.png") as im:
        assert im.size[0] > 300
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| τ ↑ (NHD at the FPR) |" in report and "forbild" in report and "robusthash bench ..." in report
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    phash = next(m for m in data["methods"] if m["method"] == "phash")
    assert phash["families"]["nhd_r"]["JC"] == pytest.approx(case(result, "phash", "JC(50)").nhd_r)
    det = phash["det"]["pooled"]
    assert det["fpr"][-1] == 1.0 and det["fnr"][-1] == 0.0
    assert np.all(np.diff(det["fpr"]) >= 0) and np.all(np.diff(det["fnr"]) <= 0)


def test_cli_bench(collection, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in collection))
    out = tmp_path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "robusthash.cli", "bench", "--images", str(listing), "--methods", "forbild,ahash",
         "--attacks", "JC(50),FL(V)", "--out", str(out), "--workers", "1", "--cache", str(tmp_path / "c.sqlite")],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (out / "report.md").exists() and (out / "det.png").exists()
    assert "report.md" in run.stdout


def test_cli_bench_names_an_unknown_method(collection, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "robusthash.cli", "bench", "--images", str(collection[0].parent), "--methods",
         "forbild,nosuch", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2
    assert "nosuch" in run.stderr
