"""What the database refuses to register and to match (issue 21, items 3 and 10): images
with almost nothing in them, hashes below their quality floor, methods it does not hold;
and how it tells the user what changed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from robusthash import attacks, get_hasher
from robusthash.db import Admission, ReferenceDB, Store
from robusthash.db.store import NewImage
from robusthash.information import information


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robusthash.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def originals(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("originals")
    paths = []
    for name, im in photos.items():
        paths.append(root / f"{name}.jpg")
        im.save(paths[-1], quality=92)
    return paths


def noise(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (300, 400, 3), dtype=np.uint8))


def ramp() -> Image.Image:
    """A smooth ramp: informative enough for our rule, but PDQ's quality is below 50."""
    return Image.fromarray(np.tile(np.linspace(0, 255, 512)[None, :, None], (384, 1, 3)).astype(np.uint8))


def test_the_information_rule_refuses_noise_flat_and_tiny_images_and_keeps_photos(photos):
    for name, im in photos.items():
        assert information(im).informative, name
        for spec in ("GN(0.1)", "BA(0.3)", "CROP(0.5)", "SPN(0.1)", "JC(10)", "ST(0.5)"):
            assert information(attacks.apply(spec, im, seed=0)).informative, (name, spec)
    assert "noise" in information(noise()).reason
    assert "flat" in information(Image.new("RGB", (300, 200), (40, 90, 200))).reason
    assert "too small" in information(photos["coffee"].resize((24, 16))).reason


def test_noise_and_flat_queries_never_match(tmp_path, originals):
    with ReferenceDB(tmp_path / "ref.sqlite", methods=["cmaa", "forbild", "pdq"]) as ref:
        assert len(ref.add(originals).added) == len(originals)
        for query in (noise(1), noise(2), Image.new("RGB", (256, 256), (128, 128, 128))):
            for result in ref.query(query):
                assert not result.matched and "cannot be identified" in result.refused
                assert result.matches, "the nearest images are still listed"
        # the refusal decides, not the distances: allowed, the same query is judged on its hashes
        allowed = ReferenceDB(tmp_path / "ref.sqlite", admission=Admission(information=None))
        assert all(r.refused is None for r in allowed.query(noise(1)))
        allowed.close()


def test_uninformative_images_are_not_registered_unless_allowed(tmp_path, originals):
    flat, speckle = tmp_path / "flat.png", tmp_path / "noise.png"
    Image.new("RGB", (300, 200), (250, 250, 250)).save(flat)
    noise().save(speckle)
    with ReferenceDB(tmp_path / "ref.sqlite", methods=["forbild"]) as ref:
        report = ref.add([originals[0], flat, speckle])
        assert len(report.added) == 1
        assert [s for s, _ in report.failed] == [str(flat), str(speckle)]
        assert all("cannot be identified" in why for _, why in report.failed)
    with ReferenceDB(tmp_path / "ref.sqlite", admission=Admission(information=None)) as ref:
        assert len(ref.add([flat, speckle]).added) == 2


def test_pdq_below_quality_50_is_neither_registered_nor_matched(tmp_path, originals):
    path = tmp_path / "ramp.png"
    ramp().save(path)
    value = get_hasher("pdq").hash(path)
    assert value.extra["quality"] < 50 and get_hasher("pdq").weakness(value)
    with ReferenceDB(tmp_path / "ref.sqlite", methods=["forbild", "pdq"]) as ref:
        report = ref.add([originals[0], path])
        assert len(report.added) == 2
        assert report.partial == [(str(path), f"{path}: registered without pdq: {get_hasher('pdq').weakness(value)}")]
        stored = {m: n["images"] for m, n in ref.stats()["methods"].items()}
        assert stored == {f"forbild@{get_hasher('forbild').version}": 2, f"pdq@{get_hasher('pdq').version}": 1}
        pdq = ref.query(path, methods=["pdq"])[0]
        assert not pdq.matched and "quality" in pdq.refused and pdq.quality == value.extra["quality"]
        found = ref.query(originals[0], methods=["pdq"])[0]
        assert found.matched and found.matches[0].quality == 100  # stored with the hash, shown with the match
    with ReferenceDB(tmp_path / "ref.sqlite", methods=["forbild", "pdq"], admission=Admission(min_quality=0)) as ref:
        assert len(ref.add([path]).updated) == 1  # the override registers the weak hash
        assert ref.query(path, methods=["pdq"])[0].matched


def test_a_methods_new_version_replaces_the_old_hashes_of_an_image(tmp_path, originals):
    url = tmp_path / "ref.sqlite"
    with ReferenceDB(url, methods=["forbild"]) as ref:
        digest = __import__("hashlib").sha256(originals[0].read_bytes()).hexdigest()
        ref.store.add_images([NewImage(digest, str(originals[0]), {}, None, None, {("forbild", "1", 0): bytes(32)})])
        why = ref.unregistered("forbild")
        assert "version 1" in why and "db add" in why
        with pytest.raises(ValueError, match="version 1"):
            ref.query(originals[0])
        report = ref.add([originals[0]])
        assert report.updated == [(str(originals[0]), 1)] and not report.added
        assert ref.store.methods() == [("forbild", get_hasher("forbild").version)]
        assert ref.store.removals("forbild", "1") != []  # the old version's index drops it
        assert ref.query(originals[0])[0].matched


def test_a_version_1_database_is_upgraded_in_place(tmp_path, originals):
    url = tmp_path / "old.sqlite"
    with ReferenceDB(url, methods=["forbild"]) as ref:
        ref.add(originals[:2])
    conn = sqlite3.connect(url)  # make it look as robusthash's schema 1 left it
    conn.execute("ALTER TABLE hashes DROP COLUMN quality")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    store = Store(url)
    assert store.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "3"
    assert store.stats()["images"] == 2 and store.execute("SELECT COUNT(quality) FROM hashes").fetchone()[0] == 0
    store.close()


def test_the_cli_says_what_changed_and_what_is_not_registered(tmp_path, originals):
    url = tmp_path / "cli.sqlite"
    assert _cli("db", "init", "--db", url, "--methods", "forbild").returncode == 0
    assert _cli("db", "add", *originals[:3], "--db", url, "--no-progress").returncode == 0
    changed = _cli("db", "init", "--db", url, "--methods", "forbild,pdq")
    assert "pdq added" in changed.stderr and "db add" in changed.stderr and "3 image(s)" in changed.stderr
    again = _cli("db", "add", *originals[:3], "--db", url, "--no-progress")
    assert again.returncode == 0
    assert "0 added, 3 registered before and given the hashes they lacked, 0 already registered" in again.stderr
    missing = _cli("db", "query", originals[0], "--db", url, "-m", "phash")
    assert missing.returncode == 2 and "phash is not registered in this database" in missing.stderr
    assert missing.stdout == ""
    found = _cli("db", "query", originals[0], "--db", url, "-m", "pdq", "--details")
    assert found.returncode == 0 and "quality 100" in found.stdout


def test_pdq_queries_find_turned_and_flipped_copies(tmp_path, originals, photos):
    """Issue 21, item 5: PDQ is not invariant to rotation or flips; its dihedral hashes are."""
    with ReferenceDB(tmp_path / "ref.sqlite", methods=["pdq"]) as ref:
        ref.add(originals)
        for turn, variant in ((Image.Transpose.ROTATE_90, "rotate-"), (Image.Transpose.FLIP_TOP_BOTTOM, "flip-")):
            copy = photos["chelsea"].transpose(turn)
            plain = get_hasher("pdq").hash(copy) - get_hasher("pdq").hash(originals[3])
            assert plain > 31, "the copy is not found by its plain hash"
            best = ref.query(copy)[0].matched[0]
            assert best.image.source == str(originals[3]) and variant in best.rule
