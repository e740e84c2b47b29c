"""The Milvus backend against a real Milvus server (the embedded standalone build from PyPI):
the index gives HammingIndex's exact answers, and a milvus:// database decides exactly as
the same store searched with FAISS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from robusthash import attacks
from robusthash.cli import app
from robusthash.db import ReferenceDB
from robusthash.db.search import TIE_SLACK
from robusthash.db.milvus import (
    MilvusIndex,
    MilvusLocation,
    collection_name,
    parse_milvus_url,
)

# The database tests of every engine, run again here with a milvus:// database. They live in
# this file because one embedded Milvus server can run per machine, and `make test`
# (--dist loadfile) gives each test file to one test process.
from .test_db import (  # noqa: F401 - collected here, with this file's db_url
    originals,
    test_an_attacked_copy_finds_its_original,
    test_bad_files_are_reported_and_the_rest_registered,
    test_calibration_is_stored_and_decides,
    test_indexes_follow_writes_of_another_process,
    test_registering_twice_adds_nothing,
)
from .test_index import (
    assert_exact,
    check_add_remove_and_re_add,
    clustered_codes,
    flip_bits,
    near_queries,
    random_codes,
)


@pytest.fixture
def db_url(milvus_address, tmp_path) -> str:
    """A real Milvus server searching a SQLite store."""
    return f"milvus://{milvus_address}?store={tmp_path / 'ref.sqlite'}"


_names = iter(range(10**6))


def new_index(address: str, nbits: int, **options) -> MilvusIndex:
    host, port = address.split(":")
    location = MilvusLocation(host, int(port), store="unused", **options)
    return MilvusIndex(location, f"test_{next(_names)}_{nbits}", nbits)


@pytest.mark.parametrize("data", ["random", "clustered"])
@pytest.mark.parametrize("nbits", [64, 256])
def test_exact_against_brute_force(milvus_address, data, nbits):
    rng = np.random.default_rng(nbits)
    make = random_codes if data == "random" else clustered_codes
    codes = make(rng, 3000, nbits)
    ids = rng.choice(100_000, 3000, replace=False)
    index = new_index(milvus_address, nbits)
    index.add(ids, codes)
    assert len(index) == 3000
    queries = np.concatenate([near_queries(rng, codes, 12, nbits // 8), random_codes(rng, 4, nbits)])
    assert_exact(index, ids, codes, queries, radii=(0, 1, nbits // 8, nbits // 4, nbits))


def test_top_k_ties_are_broken_by_smaller_id(milvus_address):
    rng = np.random.default_rng(3)
    base = random_codes(rng, 1, 256)
    codes = np.concatenate([np.repeat(base, 100, axis=0), random_codes(rng, 400, 256)])
    ids = rng.permutation(np.arange(1000, 1500))
    assert 100 > 5 + TIE_SLACK
    index = new_index(milvus_address, 256)
    index.add(ids, codes)
    distances, found = index.search(base, 5)
    np.testing.assert_array_equal(found[0], np.sort(ids[:100])[:5])
    np.testing.assert_array_equal(distances[0], 0)
    assert_exact(index, ids, codes, np.concatenate([base, flip_bits(rng, base[0], 3)[None]]), radii=(0, 3), ks=(5, 150))


def test_radius_is_inclusive_and_k_beyond_the_collection_is_padded(milvus_address):
    rng = np.random.default_rng(4)
    query = random_codes(rng, 1, 256)[0]
    codes = np.array([query, *(flip_bits(rng, query, d) for d in (31, 32, 33))])
    index = new_index(milvus_address, 256)
    assert index.search(query[None], 2)[1].tolist() == [[-1, -1]]  # empty
    index.add(np.array([7, 0, 1, 2]), codes)
    found, distances = index.range_search(query[None], 32)[0]
    assert found.tolist() == [7, 0, 1] and distances.tolist() == [0, 31, 32]
    assert index.range_search(query[None], 0)[0][0].tolist() == [7]
    distances, found = index.search(query[None], 6)
    assert found.tolist() == [[7, 0, 1, 2, -1, -1]] and distances.tolist() == [[0, 31, 32, 33, 257, 257]]


def test_add_remove_and_re_add(milvus_address):
    def build(ids, codes):
        index = new_index(milvus_address, 256)
        index.add(ids, codes)
        return index

    check_add_remove_and_re_add(build)


def test_an_ivf_index_finds_close_copies(milvus_address):
    """BIN_IVF_FLAT is approximate in general; with every list probed it is exact."""
    rng = np.random.default_rng(8)
    codes, ids = clustered_codes(rng, 3000, 128), np.arange(3000)
    index = new_index(milvus_address, 128, index_type="BIN_IVF_FLAT", nlist=16, nprobe=16)
    index.add(ids, codes)
    index.flush()  # sealed and indexed: searched through the IVF lists, not raw
    assert_exact(index, ids, codes, near_queries(rng, codes, 8, 8), radii=(8,), ks=(1, 10))


def test_milvus_urls():
    location = parse_milvus_url(
        "milvus://db.example:19531?index=bin_ivf_flat&nprobe=8&store=postgresql://u@h/db?sslmode=x&a=b")
    assert (location.host, location.port, location.index_type, location.nprobe) == \
        ("db.example", 19531, "BIN_IVF_FLAT", 8)
    assert location.store == "postgresql://u@h/db?sslmode=x&a=b"
    assert parse_milvus_url("milvus://localhost?store=refs.sqlite").port == 19530
    for bad, why in [("milvus://localhost:19530", "needs store="), ("milvus://h:x?store=a", "port"),
                     ("milvus://h?index=HNSW&store=a", "index must be one of"), ("milvus://h?top=1&store=a", "unknown"),
                     ("milvus://h?nprobe=9&nlist=4&store=a", "nprobe")]:
        with pytest.raises(ValueError, match=why):
            parse_milvus_url(bad)
    name = collection_name("0123456789abcdef", "cmaa", "cmaa-small-3e7bd088a060")
    assert name.startswith("robusthash_0123456789ab_cmaa_cmaa_small") and name.replace("_", "").isalnum()
    assert name != collection_name("0123456789abcdef", "cmaa", "cmaa.small.3e7bd088a060")


METHODS = ["pdq", "phash", "forbild"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory, photos) -> Path:
    """A SQLite store with the bundled photos and 40 distractors registered."""
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(1)
    paths = []
    for name, im in photos.items():
        paths.append(root / f"{name}.jpg")
        im.save(paths[-1], quality=92)
    for i in range(40):
        paths.append(root / f"noise-{i}.png")
        base = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        from PIL import Image

        Image.fromarray(base).resize((128, 128), Image.Resampling.BICUBIC).save(paths[-1])
    store = root / "refs.sqlite"
    with ReferenceDB(store, methods=METHODS) as ref:
        ref.set_methods(METHODS)
        assert not ref.add(paths).failed
    return store


def test_decisions_equal_the_faiss_backend(milvus_address, registered, photos):
    url = f"milvus://{milvus_address}?store={registered}"
    queries = [attacks.apply(spec, photos[name], seed=3) for name, spec in
               [("coffee", "RS(0.5)+JC(50)"), ("astronaut", "RT(5)"), ("camera", "CROP(0.8)"), ("rocket", "GN(0.05)")]]
    with ReferenceDB(registered) as faiss_db, ReferenceDB(url) as milvus_db:
        assert milvus_db.methods == METHODS
        for i, query in enumerate(queries):
            for a, b in zip(faiss_db.query(query, k=8, source=f"q{i}"), milvus_db.query(query, k=8, source=f"q{i}")):
                assert a.to_dict() == b.to_dict()
                assert b.matches  # k nearest, matched or not
        assert any(r.matched for r in milvus_db.query(queries[0]))


def test_the_collection_follows_the_store_across_processes_and_is_rebuilt_when_lost(milvus_address, tmp_path, photos):
    store = tmp_path / "refs.sqlite"
    url = f"milvus://{milvus_address}?store={store}"
    names = list(photos)
    files = []
    for name in names:
        files.append(tmp_path / f"{name}.png")
        photos[name].resize((160, 160)).save(files[-1])
    with ReferenceDB(url, methods=["pdq"]) as writer:
        writer.set_methods(["pdq"])
        writer.add(files[1:])
        writer.refresh()
    with ReferenceDB(url) as reader:  # a new process: progress comes from the store's meta table
        state = reader._index("pdq", reader.hashers["pdq"].version)
        assert state.last_hash_id > 0 and len(state.index) == len(files) - 1
        with ReferenceDB(url) as writer:
            writer.add(files[:1])
            writer.remove([writer.store.image_by_digest(_digest(files[2])).id])
        found = reader.query(files[0], methods=["pdq"])[0]
        assert found.matched and found.matches[0].image.source == str(files[0])
        assert not any(m.image.source == str(files[2]) for m in reader.query(files[2], methods=["pdq"])[0].matched)
        state.index.drop()  # the derived index lost: the next database rebuilds it from the store
    with ReferenceDB(url) as again:
        assert again.query(files[3], methods=["pdq"])[0].matches[0].image.source == str(files[3])
        assert len(again._index("pdq", again.hashers["pdq"].version).index) == len(files) - 1


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_with_a_milvus_database(milvus_address, tmp_path, photos):
    path = tmp_path / "coffee.png"
    photos["coffee"].save(path)
    url = f"milvus://{milvus_address}?store={tmp_path / 'refs.sqlite'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "init", "--db", url, "--methods", "pdq"]).exit_code == 0
    assert runner.invoke(app, ["db", "add", "--db", url, str(path)]).exit_code == 0
    copy = tmp_path / "copy.jpg"
    attacks.apply("JC(40)", photos["coffee"], seed=1).save(copy)
    result = runner.invoke(app, ["db", "query", "--db", url, "--format", "jsonl", str(copy)])
    assert result.exit_code == 0 and '"verdict": "match"' in result.output and "coffee.png" in result.output
    closed = tmp_path / "nothing.sqlite"
    result = runner.invoke(app, ["db", "init", "--db", f"milvus://127.0.0.1:1?timeout=1&store={closed}"])
    assert result.exit_code == 1 and "cannot reach Milvus at 127.0.0.1:1" in result.output
    result = runner.invoke(app, ["db", "stats", "--db", "milvus://127.0.0.1:1"])
    assert result.exit_code == 2 and "needs store=" in " ".join(result.output.replace("│", " ").split())


def test_the_service_on_a_milvus_database(milvus_address, tmp_path, photos):
    from fastapi.testclient import TestClient

    from robusthash.service import ServiceConfig, create_app

    from .conftest import jpeg_bytes

    url = f"milvus://{milvus_address}?store={tmp_path / 'refs.sqlite'}"
    with ReferenceDB(url, methods=["pdq"]) as ref:
        ref.set_methods(["pdq"])
    app = create_app(ServiceConfig(db=url, allow_anonymous=True))
    with TestClient(app) as client:
        for name in ("coffee", "rocket"):
            added = client.post("/v1/images", files={"file": (f"{name}.jpg", jpeg_bytes(photos[name]), "image/jpeg")})
            assert added.status_code == 201, added.text
        copy = attacks.apply("RS(0.5)+JC(50)", photos["rocket"], seed=2)
        found = client.post("/v1/query", files={"file": ("q.jpg", jpeg_bytes(copy), "image/jpeg")}).json()
        best = found["results"][0]["matches"][0]
        assert best["matched"] and best["source"] == "rocket.jpg"
    assert (tmp_path / "refs.sqlite.thumbnails").is_dir()  # beside the store, not the Milvus URL
