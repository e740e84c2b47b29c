"""HammingIndex: exact against a brute-force numpy reference, for every kind and edge case."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from robusthash.db.search import TIE_SLACK
from robusthash.db.index import (
    HammingIndex,
    IndexConfig,
    _flip_masks,
    _table_radii,
)

# MIH that always uses its tables: built on every change, never replaced by a scan.
MIH_ALWAYS = IndexConfig(rebuild_min=0, scan_fraction=float("inf"))
KINDS = [("flat", None), ("mih", MIH_ALWAYS), ("mih", IndexConfig(rebuild_min=0))]  # last: scans when cheaper
KIND_IDS = ["flat", "mih-tables", "mih-default"]
# MIH whose tables are built by the first add, after which changes stay pending (delta, tombstones).
MIH_PENDING = IndexConfig(rebuild_min=0, rebuild_fraction=1.0, scan_fraction=float("inf"))
PENDING = [("mih", MIH_PENDING), ("mih", IndexConfig(rebuild_min=0, rebuild_fraction=1.0))]  # the last one scans
PENDING_IDS = ["mih-pending", "mih-pending-scans"]


def random_codes(rng: np.random.Generator, n: int, nbits: int) -> np.ndarray:
    return rng.integers(0, 256, (n, nbits // 8), dtype=np.uint8)


def clustered_codes(rng: np.random.Generator, n: int, nbits: int, centres: int = 20, flip: float = 0.2) -> np.ndarray:
    """Noisy copies of a few centres: unbalanced MIH buckets, many close pairs."""
    centre_bits = rng.random((centres, nbits)) < 0.5
    bits = centre_bits[rng.integers(0, centres, n)] ^ (rng.random((n, nbits)) < flip)
    return np.packbits(bits, axis=1)


def flip_bits(rng: np.random.Generator, code: np.ndarray, count: int) -> np.ndarray:
    bits = np.unpackbits(code)
    bits[rng.choice(len(bits), count, replace=False)] ^= 1
    return np.packbits(bits)


def near_queries(rng: np.random.Generator, codes: np.ndarray, count: int, max_flips: int) -> np.ndarray:
    picks = codes[rng.integers(0, len(codes), count)]
    return np.array([flip_bits(rng, c, int(rng.integers(0, max_flips + 1))) for c in picks])


def brute_distances(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.bitwise_count(codes ^ query).sum(axis=1).astype(np.int64)


def brute_range(ids, codes, query, radius):
    d = brute_distances(codes, query)
    hit = np.flatnonzero(d <= radius)
    order = np.lexsort((ids[hit], d[hit]))
    return ids[hit][order], d[hit][order]


def brute_knn(ids, codes, query, k, nbits):
    d = brute_distances(codes, query)
    order = np.lexsort((ids, d))[:k]
    pad = k - len(order)
    return np.concatenate([d[order], np.full(pad, nbits + 1)]), np.concatenate([ids[order], np.full(pad, -1)])


def assert_exact(index: HammingIndex, ids, codes, queries, radii=(0, 3, 16, 32), ks=(1, 10)) -> None:
    for radius in radii:
        for query, (got_ids, got_d) in zip(queries, index.range_search(queries, radius)):
            want_ids, want_d = brute_range(ids, codes, query, radius)
            np.testing.assert_array_equal(got_ids, want_ids)
            np.testing.assert_array_equal(got_d, want_d)
            assert got_ids.dtype == np.int64 and got_d.dtype == np.int32
    for k in ks:
        distances, found = index.search(queries, k)
        assert distances.shape == found.shape == (len(queries), k)
        assert distances.dtype == np.int32 and found.dtype == np.int64
        for query, got_d, got_ids in zip(queries, distances, found):
            want_d, want_ids = brute_knn(ids, codes, query, k, index.nbits)
            np.testing.assert_array_equal(got_ids, want_ids)
            np.testing.assert_array_equal(got_d, want_d)


def build(kind, config, nbits, ids, codes) -> HammingIndex:
    index = HammingIndex(nbits, kind, config=config)
    index.add(ids, codes)
    return index


# --- exactness ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "config"), KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("data", ["random", "clustered"])
@pytest.mark.parametrize("nbits", [64, 256])
def test_exact_against_brute_force(kind, config, data, nbits):
    rng = np.random.default_rng(nbits)
    make = random_codes if data == "random" else clustered_codes
    codes = make(rng, 3000, nbits)
    ids = np.unique(rng.integers(0, 2**62, 3100))[:3000] if nbits == 64 else rng.choice(100_000, 3000, replace=False)
    rng.shuffle(ids)
    index = build(kind, config, nbits, ids, codes)
    assert index.kind == kind and len(index) == 3000
    queries = np.concatenate([near_queries(rng, codes, 12, nbits // 8), random_codes(rng, 4, nbits)])
    assert_exact(index, ids, codes, queries, radii=(0, 1, nbits // 8, nbits // 4, nbits))


@pytest.mark.parametrize("nbits", [72, 128])
def test_mih_code_lengths_that_are_not_whole_words(nbits):
    rng = np.random.default_rng(1)
    codes, ids = clustered_codes(rng, 1500, nbits), np.arange(1500)
    index = build("mih", MIH_ALWAYS, nbits, ids, codes)
    assert_exact(index, ids, codes, near_queries(rng, codes, 10, nbits // 8), radii=(0, 9, 16))


@pytest.mark.parametrize("tables", [1, 3])
def test_mih_with_fewer_tables_is_still_exact(tables):
    rng = np.random.default_rng(2)
    codes, ids = random_codes(rng, 1000, 128), np.arange(1000)
    config = IndexConfig(rebuild_min=0, scan_fraction=float("inf"), key_bits=8, tables=tables)
    index = build("mih", config, 128, ids, codes)
    assert_exact(index, ids, codes, near_queries(rng, codes, 6, 12), radii=(0, 5, 12), ks=(3,))


def test_top_k_ties_are_broken_by_smaller_id():
    # 100 copies of one code at distance 0, more than FAISS's k + TIE_SLACK: the repair path.
    rng = np.random.default_rng(3)
    base = random_codes(rng, 1, 256)
    codes = np.concatenate([np.repeat(base, 100, axis=0), random_codes(rng, 400, 256)])
    ids = rng.permutation(np.arange(1000, 1500))
    assert 100 > 5 + TIE_SLACK
    for kind, config in KINDS + PENDING:
        index = build(kind, config, 256, ids[::2], codes[::2])  # with PENDING: tied codes in tables and delta
        index.add(ids[1::2], codes[1::2])
        distances, found = index.search(base, 5)
        np.testing.assert_array_equal(found[0], np.sort(ids[:100])[:5])
        np.testing.assert_array_equal(distances[0], 0)
        assert_exact(index, ids, codes, np.concatenate([base, flip_bits(rng, base[0], 3)[None]]), radii=(0, 3), ks=(5, 150))


@pytest.mark.parametrize(("kind", "config"), KINDS, ids=KIND_IDS)
def test_radius_is_inclusive(kind, config):
    rng = np.random.default_rng(4)
    query = random_codes(rng, 1, 256)[0]
    at = [flip_bits(rng, query, d) for d in (31, 32, 33)]
    codes = np.concatenate([np.array(at), random_codes(rng, 2000, 256)])
    index = build(kind, config, 256, np.arange(len(codes)), codes)
    found, distances = index.range_search(query[None], 32)[0]
    assert {0, 1} <= set(found.tolist()) and 2 not in set(found.tolist())
    assert distances.max() == 32


def test_faiss_binary_range_search_is_strict():
    """The reason HammingIndex passes radius + 1 to FAISS: FAISS keeps distance < radius."""
    rng = np.random.default_rng(5)
    query = random_codes(rng, 1, 256)
    codes = np.array([flip_bits(rng, query[0], 7), flip_bits(rng, query[0], 8)])
    flat = faiss.IndexBinaryFlat(256)
    flat.add(codes)
    _, distances, labels = flat.range_search(query, 8)
    assert labels.tolist() == [0] and distances.tolist() == [7]


def test_empty_index_and_k_beyond_the_collection():
    for kind, config in KINDS:
        index = HammingIndex(128, kind, config=config)
        query = np.zeros((2, 16), dtype=np.uint8)
        distances, found = index.search(query, 3)
        assert (found == -1).all() and (distances == 129).all()
        assert all(len(ids) == 0 for ids, _ in index.range_search(query, 128))
        codes = np.zeros((2, 16), dtype=np.uint8)
        codes[1, 0] = 1
        index.add(np.array([9, 4]), codes)
        distances, found = index.search(query, 4)
        assert found.tolist() == [[9, 4, -1, -1]] * 2 and distances.tolist() == [[0, 1, 129, 129]] * 2
        assert len(index.search(np.zeros((0, 16), dtype=np.uint8), 2)[0]) == 0


# --- changes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "config"), KINDS + PENDING, ids=KIND_IDS + PENDING_IDS)
def test_add_remove_and_re_add(kind, config):
    check_add_remove_and_re_add(lambda ids, codes: build(kind, config, 256, ids, codes))


def check_add_remove_and_re_add(build_index) -> None:
    """``build_index(ids, codes)``: a 256-bit index holding them (also tests/test_milvus.py)."""
    rng = np.random.default_rng(6)
    codes, ids = random_codes(rng, 2000, 256), np.arange(2000) * 2
    index = build_index(ids[:1500], codes[:1500])
    index.add(ids[1500:], codes[1500:])
    assert len(index) == 2000
    assert index.remove(np.array([0, 2, 3, 3999, 10**9])) == 2  # ids are even: 3, 3999, 10**9 are unknown
    live = np.ones(2000, dtype=bool)
    live[[0, 1]] = False
    new_codes = random_codes(rng, 3, 256)
    index.add(np.array([2, 10, 3998]), new_codes)  # re-add a removed id, replace a present and a pending one
    codes = codes.copy()
    codes[[1, 5, 1999]] = new_codes
    live[1] = True
    assert len(index) == 1999
    queries = np.concatenate([new_codes, codes[[0, 7, 1600]], near_queries(rng, codes, 4, 20)])
    assert_exact(index, ids[live], codes[live], queries, radii=(0, 20))
    assert index.remove(ids[live]) == 1999 and len(index) == 0
    assert index.search(queries[:1], 1)[1].tolist() == [[-1]]


def test_repeated_id_in_one_batch_keeps_its_last_code():
    rng = np.random.default_rng(7)
    codes = random_codes(rng, 3, 64)
    for kind, config in KINDS:
        index = build(kind, config, 64, np.array([5, 6, 5]), codes)
        assert len(index) == 2
        assert index.range_search(codes, 0)[0][0].tolist() == []
        assert index.range_search(codes[2:], 0)[0][0].tolist() == [5]


def test_auto_switches_to_mih_above_the_threshold_and_back_below_half():
    rng = np.random.default_rng(8)
    codes, ids = random_codes(rng, 400, 128), np.arange(400)
    index = HammingIndex(128, config=IndexConfig(flat_max=200, rebuild_min=0, scan_fraction=float("inf")))
    index.add(ids[:200], codes[:200])
    assert index.kind == "flat"
    index.add(ids[200:201], codes[200:201])
    assert index.kind == "mih" and len(index) == 201
    index.add(ids[201:], codes[201:])
    assert_exact(index, ids, codes, near_queries(rng, codes, 5, 16), radii=(0, 16), ks=(3,))
    index.remove(ids[:301])
    assert index.kind == "mih"  # removals never switch
    index.add(ids[:1], codes[:1])
    assert index.kind == "flat" and len(index) == 100  # at most flat_max // 2
    keep = np.concatenate([ids[:1], ids[301:]])
    assert_exact(index, keep, codes[keep], near_queries(rng, codes[keep], 5, 16), radii=(16,), ks=(3,))


def test_memory_is_measured_from_the_arrays():
    rng = np.random.default_rng(9)
    codes, ids = random_codes(rng, 5000, 256), np.arange(5000)
    flat = build("flat", None, 256, ids, codes)
    assert flat.memory_bytes() == 5000 * (32 + 8)
    mih = build("mih", IndexConfig(rebuild_min=0, key_bits=10, tables=8), 256, ids, codes)
    perms, offsets = 7 * 5000 * 4, 8 * (1024 + 1) * 4
    assert mih.memory_bytes() == 5000 * (32 + 8) + perms + offsets


# --- persistence --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "config"), KINDS + PENDING, ids=KIND_IDS + PENDING_IDS)
def test_save_and_load_round_trip(tmp_path, kind, config):
    rng = np.random.default_rng(10)
    codes, ids = clustered_codes(rng, 1200, 128), np.arange(1200) + 7
    index = build(kind, config, 128, ids[:1000], codes[:1000])
    index.add(ids[1000:1050], codes[1000:1050])  # pending in the delta with MIH_PENDING
    index.remove(ids[:30])
    path = tmp_path / "forbild-1.index"  # no .npz suffix: must be kept as given
    index.save(path)
    assert path.exists() and not (tmp_path / "forbild-1.index.npz").exists()
    loaded = HammingIndex.load(path, nbits=128)
    assert (loaded.kind, len(loaded), loaded.config) == (index.kind, len(index), index.config)
    assert loaded.memory_bytes() == index.memory_bytes()
    queries = near_queries(rng, codes[30:1050], 8, 16)
    assert_exact(loaded, ids[30:1050], codes[30:1050], queries, radii=(0, 16), ks=(5,))
    loaded.add(ids[1050:], codes[1050:])  # the id memory survives: still replaces and appends
    loaded.add(ids[40:41], codes[1100:1101])
    assert len(loaded) == 1200 - 30


def test_load_refuses_what_it_did_not_write(tmp_path):
    rng = np.random.default_rng(11)
    index = build("flat", None, 64, np.arange(10), random_codes(rng, 10, 64))
    good = tmp_path / "good.index"
    index.save(good)
    with pytest.raises(ValueError, match="64-bit"):
        HammingIndex.load(good, nbits=256)
    (tmp_path / "junk").write_bytes(b"not an index at all")
    (tmp_path / "truncated").write_bytes(good.read_bytes()[:200])
    np.save(tmp_path / "array.npy", np.arange(3))
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    arrays = dict(np.load(good))
    np.savez(tmp_path / "future.npz", **{**arrays, "version": np.array(99)})
    np.savez(tmp_path / "damaged.npz", **{**arrays, "flat_codes": arrays["flat_codes"][:, :3]})
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in arrays.items() if k != "flat_ids"})
    messages = {"junk": "readable", "truncated": "readable", "array.npy": "readable", "other.npz": "not a saved",
                "future.npz": "version 99", "damaged.npz": "flat_codes", "missing.npz": "damaged"}
    for name, message in messages.items():
        with pytest.raises(ValueError, match=message):
            HammingIndex.load(tmp_path / name)


# --- validation ---------------------------------------------------------------------------


def test_bad_arguments_are_refused_with_clear_errors():
    index = HammingIndex(128)
    codes = np.zeros((2, 16), dtype=np.uint8)
    bad_calls = {
        "nbits": lambda: HammingIndex(100),
        "kind": lambda: HammingIndex(128, "hnsw"),
        r"shape \(n, 16\)": lambda: index.add(np.arange(2), np.zeros((2, 32), dtype=np.uint8)),
        "uint8": lambda: index.add(np.arange(2), codes.astype(np.int64)),
        "2 ids for 1 codes": lambda: index.add(np.arange(2), codes[:1]),
        "integer": lambda: index.add(np.array([1.0, 2.0]), codes),
        ">= 0": lambda: index.add(np.array([-1, 2]), codes),
        "queries must be": lambda: index.search(codes[0], 1),
        "k must": lambda: index.search(codes, 0),
        "radius must": lambda: index.range_search(codes, -1),
        "key_bits": lambda: IndexConfig(key_bits=30),
    }
    for message, call in bad_calls.items():
        with pytest.raises(ValueError, match=message):
            call()
    assert len(index) == 0


# --- the MIH guarantee itself -------------------------------------------------------------


def test_table_radii_satisfy_the_pigeonhole_bound():
    rng = np.random.default_rng(12)
    for tables in (1, 4, 12, 16):
        for radius in (0, 1, 15, 32, 40):
            lowest, extra = divmod(radius + 1, tables)
            reach = min(lowest if extra else lowest - 1, 16)
            masks, ball = _flip_masks(16, reach)
            sizes = rng.integers(0, 50, (tables, len(masks)))
            radii = _table_radii(sizes, lowest, extra, ball, 16)
            assert radii.max() <= reach
            assert (radii + 1).sum() == radius + 1 or radii.min() == 16  # or every ball is the whole table


def test_flip_masks_are_every_mask_by_popcount():
    masks, ball = _flip_masks(10, 3)
    assert ball.tolist() == [0, 1, 11, 56, 176] and len(set(masks.tolist())) == 176
    assert np.all(np.diff(np.bitwise_count(masks)) >= 0)


def test_one_query_at_a_time_holds_on_every_thread():
    """OpenMP's thread count is a setting of each thread: set in the main thread, a
    service's request threads searched on every core. Each search (the index's, and the
    verification's descriptor matching) applies it to the thread it runs on."""
    import threading

    from robusthash.compare.features import nearest_two
    from robusthash.runtime import one_query_at_a_time

    rng = np.random.default_rng(0)
    codes = random_codes(rng, 50, 64)
    index = HammingIndex(64)
    index.add(np.arange(50), codes)
    descriptors = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    one_query_at_a_time()
    seen = {}

    def ask(name, search):
        search()
        seen[name] = faiss.omp_get_max_threads()

    for name, search in (("search", lambda: index.search(codes[:1], 3)),
                         ("range", lambda: index.range_search(codes[:1], 5)),
                         ("features", lambda: nearest_two(descriptors, descriptors))):
        thread = threading.Thread(target=ask, args=(name, search))
        thread.start()
        thread.join()
    assert seen == {"search": 1, "range": 1, "features": 1}
