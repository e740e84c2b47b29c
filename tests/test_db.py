"""The reference database on SQLite and on a real PostgreSQL server: registering,
finding attacked copies, keeping indexes in step, calibration, crash safety, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from robusthash import attacks
from robusthash.db import Admission, ReferenceDB, Store, StoreUnavailable

METHODS = ("forbild", "pdq", "phash")


def synthetic_images(count: int, size: int = 96, seed: int = 0) -> list[Image.Image]:
    """Distinct smooth random pictures (blurred noise), enough for calibration."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        noise = rng.random((size, size, 3))
        smooth = ndimage.gaussian_filter(noise, sigma=(6, 6, 0))
        smooth = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-9)
        images.append(Image.fromarray((smooth * 255).astype(np.uint8)))
    return images


@pytest.fixture(scope="module")
def originals(tmp_path_factory, photos) -> list[Path]:
    root = tmp_path_factory.mktemp("originals")
    paths = []
    for name, im in photos.items():
        path = root / f"{name}.jpg"
        im.save(path, quality=92)
        paths.append(path)
    for i, im in enumerate(synthetic_images(20)):
        path = root / f"synthetic-{i:02d}.png"
        im.save(path)
        paths.append(path)
    return paths


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """Every engine (tests/test_milvus.py runs these tests again on a Milvus server)."""
    if request.param == "sqlite":
        return str(tmp_path / "ref.sqlite")
    return request.getfixturevalue("fresh_postgres")


def make_db(url: str) -> ReferenceDB:
    # The synthetic pictures are smooth blurs, most below PDQ's quality floor of 50; these
    # tests are about registering and searching, so every hash is kept (the floor:
    # tests/test_admission.py).
    ref = ReferenceDB(url, admission=Admission(min_quality=0))
    ref.set_methods(METHODS)
    return ref


def test_a_database_made_through_the_api_is_opened_again_with_the_methods_it_holds(tmp_path, originals):
    """ReferenceDB(url, methods=...) records no methods; opened again without them (as
    `db query` opens it), it searched with forbild alone though it held pdq's and cmaa's
    hashes."""
    url = str(tmp_path / "api.sqlite")
    with ReferenceDB(url, methods=["pdq", "cmaa"]) as ref:
        ref.add(originals[:2])
        assert ref.store.meta("methods") is None
    with ReferenceDB(url) as ref:
        assert sorted(ref.methods) == ["cmaa", "pdq"]
        assert {r.method for r in ref.query(originals[0])} == {"cmaa", "pdq"}
    with ReferenceDB(url) as ref:
        ref.set_methods(["forbild"])  # recorded methods still win
    with ReferenceDB(url) as ref:
        assert ref.methods == ["forbild"]
    with ReferenceDB(str(tmp_path / "empty.sqlite")) as ref:
        assert ref.methods == ["forbild"]  # nothing held: the default


def test_an_attacked_copy_finds_its_original(db_url, originals, photos, tmp_path):
    with make_db(db_url) as ref:
        report = ref.add(originals)
        assert len(report.added) == len(originals) and not report.failed
        copy = attacks.apply("RS(0.5)+JC(50)", photos["coffee"], seed=1)
        for result in ref.query(copy, source="copy"):
            best = result.matches[0]
            assert best.image.source.endswith("coffee.jpg"), result.method
            assert best.matched and best.hamming is not None
        unrelated = synthetic_images(1, seed=99)[0]
        assert not any(r.matched for r in ref.query(unrelated))


def test_registering_twice_adds_nothing(db_url, originals):
    with make_db(db_url) as ref:
        ref.add(originals[:5])
        again = ref.add(originals)
        assert len(again.existing) == 5 and len(again.added) == len(originals) - 5
        stats = ref.stats()
        assert stats["images"] == len(originals)
        assert all(entry["hashes"] == len(originals) for entry in stats["methods"].values())


def test_bad_files_are_reported_and_the_rest_registered(db_url, originals, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    missing = tmp_path / "missing.png"
    with make_db(db_url) as ref:
        report = ref.add([originals[0], bad, missing, originals[1]], batch=1)
        assert [s for s, _ in report.added] == [str(originals[0]), str(originals[1])]
        assert {s for s, _ in report.failed} == {str(bad), str(missing)}
        assert "bad.jpg" in dict(report.failed)[str(bad)]


def test_indexes_follow_writes_of_another_process(db_url, originals, photos):
    with make_db(db_url) as writer, ReferenceDB(db_url) as reader:
        writer.add(originals[1:])
        assert not reader.query(photos["astronaut"], methods=["pdq"])[0].matched  # index built now, without it
        writer.add(originals[:1])
        found = reader.query(photos["astronaut"], methods=["pdq"])[0]
        assert found.matched and found.matches[0].image.source.endswith("astronaut.jpg")
        writer.remove([found.matches[0].image.id])
        again = reader.query(photos["astronaut"], methods=["pdq"])[0]
        assert not any(m.image.source.endswith("astronaut.jpg") for m in again.matches)


def test_saved_indexes_are_loaded_and_caught_up(tmp_path, originals, photos):
    url = str(tmp_path / "ref.sqlite")
    with make_db(url) as ref:
        ref.add(originals[1:])
        ref.refresh()
        written = ref.save_indexes()
    assert len(written) == 2 * len(METHODS)
    with make_db(url) as ref:
        ref.add(originals[:1])  # after the save: the loaded index must catch up
        pdq = ref.hashers["pdq"]
        state = ref.index_home.open("pdq", pdq.version, pdq.bits)
        assert len(state.index) == len(originals) - 1 and state.last_hash_id > 0
        assert ref.query(photos["astronaut"], methods=["pdq"])[0].matched
    # an index saved for another database is never used
    other = str(tmp_path / "other.sqlite")
    with make_db(other) as ref:
        for path in written:
            (Path(f"{other}.index") / path.name).parent.mkdir(exist_ok=True)
            (Path(f"{other}.index") / path.name).write_bytes(path.read_bytes())
        pdq = ref.hashers["pdq"]
        state = ref.index_home.open("pdq", pdq.version, pdq.bits)
        assert len(state.index) == 0 and state.progress == (0, 0)


def test_calibration_is_stored_and_decides(db_url, originals):
    with make_db(db_url) as ref:
        ref.add(originals)
        calibration = ref.calibrate("phash", fpr=0.05)
        n = len(originals)
        assert calibration.pairs == n * (n - 1) // 2 and calibration.images == n
        threshold, source = ref.threshold(ref.hashers["phash"])
        assert threshold == calibration.threshold and "calibrated" in source
        result = ref.query(originals[3], methods=["phash"])[0]
        assert "calibrated" in result.matches[0].rule
        with pytest.raises(ValueError, match="at least 20"):
            make_db(db_url + "x" if db_url.endswith(".sqlite") else db_url).calibrate("dhash")


def test_readers_are_not_blocked_by_a_writer(tmp_path, originals, photos):
    url = str(tmp_path / "ref.sqlite")
    with make_db(url) as ref:
        ref.add(originals)
    writer = Store(url)
    with writer.write():  # a long write transaction holds SQLite's write lock
        writer.execute("INSERT INTO meta (key, value) VALUES ('busy', 'yes')")
        with ReferenceDB(url) as reader:
            assert reader.query(photos["camera"], methods=["forbild"])[0].matched
    writer.close()


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robusthash.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def many_files(tmp_path_factory, photos) -> Path:
    """120 distinct, fairly large files, so that a bulk add takes a few seconds."""
    root = tmp_path_factory.mktemp("many")
    base = np.asarray(photos["astronaut"].resize((900, 900)))
    for i in range(120):
        pixels = base.copy()
        pixels[i // 30, i % 30] = (i, 255 - i, 7)  # one pixel differs: distinct bytes and digests
        Image.fromarray(pixels).save(root / f"copy-{i:03d}.png", compress_level=1)
    return root


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_killed_bulk_add_leaves_a_consistent_database_and_a_rerun_completes(engine, many_files, tmp_path, request):
    url = str(tmp_path / "ref.sqlite") if engine == "sqlite" else request.getfixturevalue("fresh_postgres")
    assert _cli("db", "init", "--db", url, "--methods", "forbild,pdq").returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "robusthash.cli", "db", "add", str(many_files), "--db", url,
                                "--batch", "7"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store(url)
    deadline = time.time() + 120
    while time.time() < deadline and store.stats()["images"] < 10:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    store.close()
    store = Store(url)
    images = store.stats()["images"]
    assert 0 < images < 120, "the kill should land in the middle of the add"
    assert images % 7 == 0, "only whole batches are committed"
    per_image = store.execute("SELECT image_id, COUNT(*) FROM hashes GROUP BY image_id").fetchall()
    assert len(per_image) == images and all(n == 2 for _, n in per_image)
    store.close()
    rerun = _cli("db", "add", str(many_files), "--db", url)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{120 - images} added, {images} already registered, 0 failed" in rerun.stderr
    store = Store(url)
    assert store.stats()["images"] == 120
    assert store.execute("SELECT COUNT(*) FROM hashes").fetchone()[0] == 240
    store.close()


def test_cli_db_workflow(tmp_path, originals, photos):
    url = str(tmp_path / "cli.sqlite")
    assert _cli("db", "query", str(originals[0]), "--db", url).returncode == 2  # no database yet
    init = _cli("db", "init", "--db", url, "--methods", "forbild,phash")
    assert init.returncode == 0, init.stderr
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    add = _cli("db", "add", *map(str, originals), str(bad), "--db", url, "--meta", '{"owner": "test"}')
    assert add.returncode == 1 and "bad.png" in add.stderr
    assert f"{len(originals)} added" in add.stderr
    copy = tmp_path / "copy.jpg"
    attacks.apply("JC(60)+BA(1.1)", photos["rocket"]).save(copy, quality=90)
    query = _cli("db", "query", str(copy), "--db", url, "--format", "jsonl")
    assert query.returncode == 0, query.stderr
    [record] = [json.loads(line) for line in query.stdout.splitlines()]  # one verdict per query
    assert record["verdict"] == "match" and record["matches"][0]["source"].endswith("rocket.jpg")
    assert record["matches"][0]["metadata"] == {"owner": "test"}
    assert record["matches"][0]["reason"].startswith("identified")
    detailed = json.loads(_cli("db", "query", str(copy), "--db", url, "--format", "jsonl", "--details").stdout)
    assert {r["method"] for r in detailed["methods"]} == {"forbild", "phash"}
    assert all(r["matched"] and r["matches"][0]["source"].endswith("rocket.jpg") for r in detailed["methods"])
    unknown = _cli("db", "query", str(copy), "--db", url, "--methods", "nosuch")
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr
    text = _cli("db", "query", str(copy), "--db", url)
    assert text.returncode == 0 and text.stdout.startswith(f"{copy}: MATCH") and "rocket.jpg" in text.stdout
    calibrate = _cli("db", "calibrate", "--db", url, "--methods", "phash")
    assert calibrate.returncode == 0 and "τ =" in calibrate.stdout
    stats = json.loads(_cli("db", "stats", "--db", url, "--format", "jsonl").stdout)
    assert stats["images"] == len(originals)
    image_id = record["matches"][0]["image_id"]
    assert _cli("db", "remove", str(image_id), "--db", url).returncode == 0
    after = _cli("db", "query", str(copy), "--db", url, "--format", "jsonl")
    assert after.returncode == 1
    assert all(r["verdict"] == "no match" for r in map(json.loads, after.stdout.splitlines()))


def test_a_query_decides_only_the_nearest_matches_it_is_asked_for(tmp_path, photos):
    # Twelve near-copies of one photo: forbild matches every one. The engine asks for
    # the nearest few only; their order is the index's, nearest first.
    ref = ReferenceDB(tmp_path / "ref.sqlite", methods=["forbild"])
    base = photos["astronaut"].resize((128, 128))
    paths = []
    for i in range(12):
        path = tmp_path / f"near-{i:02d}.png"
        attacks.parse(f"BA({1 + 0.01 * (i + 1):g})")(base, seed=0).save(path)
        paths.append(path)
    assert len(ref.add(paths).added) == 12
    value = ref.examine(base, ["forbild"]).hashes["forbild"]
    every = ref.query_hash(value, k=1)
    assert sum(m.matched for m in every.matches) == 12
    nearest = ref.query_hash(value, k=1, most=4)
    assert len(nearest.matches) == 4 and all(m.matched for m in nearest.matches)
    assert [m.distance for m in nearest.matches] == sorted(m.distance for m in every.matches)[:4]
    ref.close()


def test_metadata_that_cannot_be_stored_is_refused_before_anything_is(tmp_path, originals):
    from robusthash.db.metadata import MetadataError, check_metadata

    ref = ReferenceDB(tmp_path / "ref.sqlite", methods=["forbild"])
    deep: dict = {}
    inner = deep
    for _ in range(40):
        inner["a"] = {}
        inner = inner["a"]
    for bad, why in ((deep, "nested more than 16 levels"), ({"a": "\ud800"}, "lone surrogate"),
                     ({"a": "x\x00"}, "NUL"), ({"a": float("nan")}, "not a JSON number"),
                     ({"k" * 300: 1}, "longer than 256"), ([1], "must be a JSON object")):
        with pytest.raises(MetadataError, match=why):
            ref.add(originals[:1], metadata=bad)
    assert ref.stats()["images"] == 0
    assert check_metadata({"owner": "agency", "tags": ["a", {"b": 1.5}], "n": None}) == \
        {"owner": "agency", "tags": ["a", {"b": 1.5}], "n": None}
    ref.close()
    url = str(tmp_path / "cli.sqlite")
    for meta, why in (('{"a": "\\ud800"}', "lone surrogate"), ('{"a": ' + "[" * 255 + "]" * 255 + "}", "nested"),
                      ("[1]", "must be a JSON object"), ("{", "not valid JSON")):
        add = _cli("db", "add", str(originals[0]), "--db", url, "--meta", meta, env={**os.environ, "COLUMNS": "400"})
        assert add.returncode == 2 and why in add.stderr and "Traceback" not in add.stderr, (meta, add.stderr)


def test_read_commands_never_write_and_a_damaged_file_is_named(tmp_path, originals):
    wide = {**os.environ, "COLUMNS": "400"}
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    stats = _cli("db", "stats", "--db", str(empty), env=wide)
    assert stats.returncode == 2 and "an empty file, not a robusthash database" in stats.stderr
    assert empty.stat().st_size == 0  # no schema written into it
    for name, make in (("foreign", lambda p: __import__("sqlite3").connect(p).execute("CREATE TABLE t (x)")),):
        path = tmp_path / f"{name}.sqlite"
        make(str(path))
        before = path.read_bytes()
        answer = _cli("db", "query", str(originals[0]), "--db", str(path), env=wide)
        assert answer.returncode == 2 and "without robusthash's tables" in answer.stderr
        assert path.read_bytes() == before
    url = tmp_path / "ref.sqlite"
    ref = ReferenceDB(url, methods=["forbild"])
    ref.add(originals)
    ref.close()
    assert _cli("db", "stats", "--db", str(url), env=wide).returncode == 0
    data = bytearray(url.read_bytes())
    page = 4096
    rng = np.random.default_rng(0)
    for p in range(2, len(data) // page, 3):  # random bytes over every third page after the first
        data[p * page + 100: p * page + 600] = rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
    url.write_bytes(bytes(data))
    damaged = _cli("db", "stats", "--db", str(url), env=wide)
    assert damaged.returncode == 1 and f"{url} is damaged" in damaged.stderr and "Traceback" not in damaged.stderr


def test_a_rerun_does_not_hash_what_is_registered_whole(tmp_path, originals, monkeypatch):
    from robusthash.db import reference

    ref = ReferenceDB(tmp_path / "ref.sqlite", methods=["forbild"])
    first = ref.add(originals[:4])
    assert len(first.added) == 4
    hashed = []
    real = reference.ingest
    monkeypatch.setattr(reference, "ingest", lambda data, source, *a, **k: hashed.append(source) or real(data, source, *a, **k))
    again = ref.add(originals[:6])
    assert sorted(s for s, _ in again.existing) == sorted(map(str, originals[:4])) and len(again.added) == 2
    assert sorted(hashed) == sorted(map(str, originals[4:6]))  # only the new files were hashed
    ref.close()
    # A method added since: the registered files lack its hashes, so they are hashed again.
    hashed.clear()
    more = ReferenceDB(tmp_path / "ref.sqlite", methods=["forbild", "phash"])
    assert len(more.add(originals[:6]).updated) == 6 and len(hashed) == 6
    more.close()


def test_an_add_digests_each_file_once(tmp_path, originals, monkeypatch):
    # Before: once to find a registered file, once more to register a new one.
    from robusthash.db import ingest, reference

    digested = []
    real = ingest.file_digest

    def counted(data):
        digested.append(1)
        return real(data)

    monkeypatch.setattr(reference, "file_digest", counted)
    monkeypatch.setattr(ingest, "file_digest", counted)
    with ReferenceDB(tmp_path / "ref.sqlite", methods=["forbild"]) as ref:
        assert len(ref.add(originals[:3]).added) == 3
    assert len(digested) == 3


def _tiles(photos, root: Path, start: int, count: int) -> list[Path]:
    """Distinct small files cut from the bundled photos."""
    paths = []
    names = sorted(photos)
    for i in range(start, start + count):
        im = photos[names[i % len(names)]]
        x, y = (i * 37) % (im.width - 96), (i * 53) % (im.height - 96)
        path = root / f"tile-{i:03d}.png"
        im.crop((x, y, x + 96, y + 96)).resize((128, 128)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("fault", ["restored database", "older index file"])
def test_an_index_ahead_of_its_database_is_rebuilt_not_trusted(tmp_path, photos, fault, caplog):
    # Before: the saved index said it had followed the store to hash id N; a database
    # restored from a backup reused ids up to N for new rows, and catching up from N
    # skipped them: 20 of 20 new images never matched, while db stats counted them.
    url = tmp_path / "ref.sqlite"
    with ReferenceDB(url, methods=["phash"]) as ref:
        ref.add(_tiles(photos, tmp_path, 0, 10))
        ref.refresh()
        ref.save_indexes()
    backup = url.read_bytes()  # closed: the WAL is checkpointed into the file
    older_index = {p.name: p.read_bytes() for p in Path(f"{url}.index").iterdir()}
    with ReferenceDB(url, methods=["phash"]) as ref:
        ref.add(_tiles(photos, tmp_path, 10, 20))
        ref.refresh()
        ref.save_indexes()
    if fault == "restored database":
        url.write_bytes(backup)  # the 20 later rows are gone; the index still holds them
        added = _tiles(photos, tmp_path, 100, 20)
        with ReferenceDB(url, methods=["phash"]) as ref:
            assert len(ref.add(added).added) == 20  # ids reused: those the index holds
    else:
        for name, data in older_index.items():  # the index file overwritten by an older one, not its JSON
            if name.endswith(".index"):
                (Path(f"{url}.index") / name).write_bytes(data)
        added = _tiles(photos, tmp_path, 10, 20)
    with caplog.at_level("WARNING", logger="robusthash.db"), ReferenceDB(url, methods=["phash"]) as ref:
        found = [ref.query(p, methods=["phash"], k=1)[0].matches[0].image.source == str(p) for p in added]
        assert all(found), f"{sum(found)} of {len(found)} found"
    assert "does not match the database" in caplog.text and "rebuilding it" in caplog.text


def test_a_damaged_database_is_named_before_an_index_is_built_from_it(tmp_path, originals):
    # Random bytes in the pages of the hash table: before, the index was built from
    # whatever rows could still be read, and queries answered a wrong "no match".
    url = tmp_path / "ref.sqlite"
    with ReferenceDB(url, methods=["forbild"]) as ref:
        ref.add(originals)
    first = ReferenceDB(url)
    size = first.store.execute("PRAGMA page_size").fetchone()[0]
    pages = [int(r[0]) for r in first.store.execute("SELECT pageno FROM dbstat WHERE name = 'hashes'").fetchall()]
    first.close()
    data = bytearray(url.read_bytes())
    for page in pages:  # the hash table's pages, overwritten with random bytes
        start = (page - 1) * size
        data[start:start + size] = np.random.default_rng(page).integers(0, 256, size, dtype=np.uint8).tobytes()
    url.write_bytes(bytes(data))
    with ReferenceDB(url) as ref:
        with pytest.raises(StoreUnavailable, match=f"{url}.*(is damaged|malformed)"):
            ref.query(originals[0])
    answer = _cli("db", "query", str(originals[0]), "--db", str(url), env={**os.environ, "COLUMNS": "400"})
    assert answer.returncode == 1 and str(url) in answer.stderr and "Traceback" not in answer.stderr, answer.stderr


def test_a_truncated_wal_is_said_and_what_survives_is_still_found(tmp_path, photos, caplog):
    """A copy of a database taken while it was open (a crash, a careless backup), its WAL
    cut short: SQLite keeps the transactions whose frames are whole, the later images are
    gone. Before, nothing said so, and the saved index, ahead of the database, hid the
    images registered afterwards. Now the index is named as not matching and rebuilt, and
    every image the database still holds, or gets afterwards, is found."""
    import shutil

    url = tmp_path / "live" / "ref.sqlite"
    url.parent.mkdir()
    first, later = _tiles(photos, tmp_path, 0, 10), _tiles(photos, tmp_path, 10, 20)
    with ReferenceDB(url, methods=["phash"]) as ref:
        ref.add(first)
        ref.store.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the first ten are in the file itself
        wal = Path(f"{url}-wal")
        assert wal.stat().st_size == 0
        ref.add(later)  # these live in the WAL only until the next checkpoint
        ref.refresh()
        ref.save_indexes()
        copy = tmp_path / "copy" / "ref.sqlite"
        copy.parent.mkdir()
        shutil.copy(url, copy)
        shutil.copytree(f"{url}.index", f"{copy}.index")
        frames = wal.read_bytes()
    assert len(frames) > 32 + 4096
    Path(f"{copy}-wal").write_bytes(frames[: len(frames) // 3])  # cut inside the later transaction
    added = _tiles(photos, tmp_path, 100, 5)
    with caplog.at_level("WARNING", logger="robusthash.db"), ReferenceDB(copy, methods=["phash"]) as ref:
        survived = {r.source for r in ref.store.images(range(1, 100)).values()}
        assert survived >= set(map(str, first)) and not survived & set(map(str, later))
        assert len(ref.add(added).added) == 5
        for path in first + added:
            assert ref.query(path, methods=["phash"], k=1)[0].matches[0].image.source == str(path), path
    assert "does not match the database" in caplog.text and "rebuilding it" in caplog.text
