"""Exact Hamming search at scale: HammingIndex against a plain FAISS scan and a NumPy scan.

    .venv/bin/python benchmarks/search.py --sizes 1000000,10000000 --bits 256,128 --queries 200 --out benchmarks/out
    .venv/bin/python benchmarks/search.py --crossover 10000,30000,100000,300000,1000000 --sizes '' --out benchmarks/out

For every (data set, size, code length), in one process:

* data: ``uniform`` random codes, and ``clustered`` codes (noisy copies of 4,000 random
  centres, each code with 20-30% of its bits flipped: unbalanced MIH buckets). Seeded.
* queries: half true near-duplicates (a stored code with 0..r random bits flipped), half
  unrelated (uniform: fresh random codes; clustered: fresh codes from the same centres).
* radius r: 32 for 256-bit codes, 16 for 128-bit codes (the same 12.5% of the bits).
* methods: ``HammingIndex`` MIH (default settings and a leaner setting with fewer tables),
  ``HammingIndex`` flat, FAISS ``IndexBinaryFlat`` used directly, a NumPy popcount scan,
  and FAISS ``IndexBinaryMultiHash`` up to ``--faiss-mih-max`` codes (its top-k is not exact).
* latency: one query per call, methods interleaved query by query (a busy spell of the
  machine hits them alike, and every call finds caches cold from the other methods'
  scans); a query's latency is the least of ``--rounds`` such turns; p50/p99 over all
  queries. queries/s: all queries in one call, best of 3 calls (NumPy above 1 M: 1 call).
* threads: one core for everything (``--threads``: FAISS's OpenMP threads), so the numbers
  compare work per core. HammingIndex and NumPy use one core anyway. On the shared 2-core
  machine FAISS got slower with 2 threads: for one query its OpenMP team waits at a barrier
  per 65,536 codes, and with the other core busy that stalled a 2 ms scan to 140 ms.
  The NumPy scan runs on the first ``--numpy-queries`` queries only above 1 M codes.
* exactness: every result of every method is compared with FAISS IndexBinaryFlat's (range
  hits sorted by (distance, id); top-1 as distance and id; ids ascend with FAISS positions,
  so FAISS's smaller-label ties are smaller-id ties). Any difference fails the run.
* memory: bytes per code measured from the arrays the index holds (FAISS MIH: growth of
  the process's resident memory, it has no arrays to measure).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from robusthash.db.index import HammingIndex, IndexConfig

ID_OFFSET = 10**12  # ids are not positions, but ascend with them
CENTRES = 4000
CHUNK = 1 << 20


# --- data ---------------------------------------------------------------------------------


def uniform_codes(rng: np.random.Generator, n: int, nbits: int) -> np.ndarray:
    return rng.integers(0, 256, (n, nbits // 8), dtype=np.uint8)


def clustered_codes(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """Noisy copies of random centres, each code with its own flip rate in 20-30%."""
    nbits = centres.shape[1] * 8
    centre_bits = np.unpackbits(centres, axis=1)
    out = np.empty((n, nbits // 8), dtype=np.uint8)
    for start in range(0, n, CHUNK // 4):
        rows = min(CHUNK // 4, n - start)
        threshold = rng.integers(round(0.2 * 256), round(0.3 * 256) + 1, rows).astype(np.uint8)
        flips = rng.integers(0, 256, (rows, nbits), dtype=np.uint8) < threshold[:, None]
        out[start : start + rows] = np.packbits(centre_bits[rng.integers(0, len(centres), rows)] ^ flips, axis=1)
    return out


def flip_some_bits(rng: np.random.Generator, codes: np.ndarray, max_flips: int) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        row[rng.choice(bits.shape[1], int(rng.integers(0, max_flips + 1)), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


@dataclass
class Dataset:
    name: str
    nbits: int
    codes: np.ndarray
    queries: np.ndarray
    near: np.ndarray  # which queries are near-duplicates
    radius: int

    @property
    def ids(self) -> np.ndarray:
        return ID_OFFSET + np.arange(len(self.codes), dtype=np.int64)


def make_dataset(name: str, n: int, nbits: int, queries: int) -> Dataset:
    rng = np.random.default_rng([n, nbits, int(name == "clustered")])
    radius = nbits // 8
    if name == "uniform":
        codes = uniform_codes(rng, n, nbits)
        unrelated = uniform_codes(rng, queries - queries // 2, nbits)
    else:
        centres = uniform_codes(rng, CENTRES, nbits)
        codes = clustered_codes(rng, centres, n)
        unrelated = clustered_codes(rng, centres, queries - queries // 2)
    near = flip_some_bits(rng, codes[rng.integers(0, n, queries // 2)], radius)
    order = rng.permutation(queries)  # near-duplicates and unrelated queries mixed
    all_queries = np.concatenate([near, unrelated])[order]
    return Dataset(name, nbits, codes, all_queries, (order < queries // 2), radius)


# --- methods ------------------------------------------------------------------------------

RangeResult = tuple[np.ndarray, np.ndarray]  # ids, distances sorted by (distance, id)
Top1 = tuple[int, int]  # distance, id


class Method:
    """What every compared method offers: exact radius search and top-1, one row per query."""

    name: str
    build_seconds: float
    bytes_per_code: float

    def range_search(self, queries: np.ndarray, radius: int) -> list[RangeResult]: ...
    def top1(self, queries: np.ndarray) -> list[Top1]: ...


class IndexMethod(Method):
    def __init__(self, name: str, data: Dataset, kind: str, config: IndexConfig | None = None):
        self.name = name
        start = time.perf_counter()
        self.index = HammingIndex(data.nbits, kind, config=config)
        self.index.add(data.ids, data.codes)
        self.build_seconds = time.perf_counter() - start
        self.bytes_per_code = self.index.memory_bytes() / len(data.codes)

    def range_search(self, queries, radius):
        return self.index.range_search(queries, radius)

    def top1(self, queries):
        distances, ids = self.index.search(queries, 1)
        return list(zip(distances[:, 0].tolist(), ids[:, 0].tolist()))


def _faiss_ranges(index: faiss.IndexBinary, queries: np.ndarray, radius: int) -> list[RangeResult]:
    limits, distances, labels = index.range_search(queries, radius + 1)  # FAISS: distance < radius
    out = []
    for lo, hi in zip(limits[:-1], limits[1:]):
        ids, d = labels[lo:hi] + ID_OFFSET, distances[lo:hi].astype(np.int32)
        order = np.lexsort((ids, d))
        out.append((ids[order], d[order]))
    return out


class FaissFlat(Method):
    name = "FAISS IndexBinaryFlat"

    def __init__(self, data: Dataset):
        start = time.perf_counter()
        self.index = faiss.IndexBinaryFlat(data.nbits)
        self.index.add(data.codes)
        self.build_seconds = time.perf_counter() - start
        self.bytes_per_code = self.index.xb.size() / len(data.codes)

    def range_search(self, queries, radius):
        return _faiss_ranges(self.index, queries, radius)

    def top1(self, queries):
        distances, labels = self.index.search(queries, 1)
        return list(zip(distances[:, 0].tolist(), (labels[:, 0] + ID_OFFSET).tolist()))


class FaissMultiHash(Method):
    """FAISS's own MIH: ``nhash`` keys of ``b`` bits, ``nflip`` so that radius search is exact."""

    def __init__(self, data: Dataset):
        b = 21
        nhash = data.nbits // 64 * 3
        nflip = -(-(data.radius + 1) // nhash) - 1  # nhash * (nflip + 1) > radius: exact radius search
        self.name = f"FAISS IndexBinaryMultiHash (nhash={nhash}, b={b}, nflip={nflip})"
        rss = _rss_bytes()
        start = time.perf_counter()
        self.index = faiss.IndexBinaryMultiHash(data.nbits, nhash, b)
        self.index.nflip = nflip
        self.index.add(data.codes)
        self.build_seconds = time.perf_counter() - start
        self.bytes_per_code = (_rss_bytes() - rss) / len(data.codes)

    def range_search(self, queries, radius):
        return _faiss_ranges(self.index, queries, radius)

    def top1(self, queries):
        distances, labels = self.index.search(queries, 1)
        ids = np.where(labels[:, 0] >= 0, labels[:, 0] + ID_OFFSET, -1)
        return list(zip(distances[:, 0].tolist(), ids.tolist()))


class NumpyScan(Method):
    """Popcount of XOR over the packed matrix, 64-bit words column by column, in chunks."""

    name = "NumPy popcount scan"

    def __init__(self, data: Dataset):
        self.words = data.codes.view(np.uint64)
        self.build_seconds = 0.0
        self.bytes_per_code = data.codes.nbytes / len(data.codes)

    def distances(self, query: np.ndarray) -> np.ndarray:
        query_words = query.view(np.uint64)
        out = np.empty(len(self.words), dtype=np.uint16)
        for start in range(0, len(self.words), CHUNK):
            block = self.words[start : start + CHUNK]
            total = np.bitwise_count(block[:, 0] ^ query_words[0]).astype(np.uint16)
            for word in range(1, block.shape[1]):
                total += np.bitwise_count(block[:, word] ^ query_words[word])
            out[start : start + CHUNK] = total
        return out

    def range_search(self, queries, radius):
        out = []
        for query in queries:
            d = self.distances(query)
            hits = np.flatnonzero(d <= radius)
            order = np.lexsort((hits, d[hits]))
            out.append((hits[order] + ID_OFFSET, d[hits][order].astype(np.int32)))
        return out

    def top1(self, queries):
        out = []
        for query in queries:
            d = self.distances(query)
            best = int(np.argmin(d))  # first of the ties: smallest id
            out.append((int(d[best]), best + ID_OFFSET))
        return out


def _rss_bytes() -> int:
    """Resident memory, after handing freed heap back to the system so that growth is real."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Timings:
    range_ms: list[float]
    top1_ms: list[float]
    ranges: list[RangeResult]
    tops: list[Top1]
    range_qps: float = 0.0
    top1_qps: float = 0.0


def time_single_queries(methods: list[Method], data: Dataset, limits: dict[str, int], rounds: int) -> dict[str, Timings]:
    """One query per call; the methods take turns on each query, so machine noise hits all alike.

    Each query's time is the least of ``rounds`` turns: it filters out the moments when
    another process had the core. Every turn runs after the other methods' turns, so no
    method finds its caches warmed by its own previous call.
    """
    timings = {m.name: Timings([], [], [], []) for m in methods}
    for position, query in enumerate(data.queries):
        active = [m for m in methods if position < limits.get(m.name, len(data.queries))]
        turns = [[time_one_query(m, query, data.radius) for m in active] for _ in range(rounds)]
        for method, runs in zip(active, zip(*turns)):
            record = timings[method.name]
            record.range_ms.append(min(run[0] for run in runs))
            record.top1_ms.append(min(run[1] for run in runs))
            record.ranges.append(runs[0][2])
            record.tops.append(runs[0][3])
    return timings


def time_one_query(method: Method, query: np.ndarray, radius: int) -> tuple[float, float, RangeResult, Top1]:
    start = time.perf_counter()
    hits = method.range_search(query[None], radius)[0]
    range_ms = 1e3 * (time.perf_counter() - start)
    start = time.perf_counter()
    top = method.top1(query[None])[0]
    return range_ms, 1e3 * (time.perf_counter() - start), hits, top


def time_batches(method: Method, data: Dataset, record: Timings, repeat: int) -> None:
    """Queries/s of all queries in one call, best of ``repeat`` (a busy machine only slows runs down)."""
    queries = data.queries[: len(record.range_ms)]
    record.range_qps = max(len(queries) / seconds(lambda: method.range_search(queries, data.radius)) for _ in range(repeat))
    record.top1_qps = max(len(queries) / seconds(lambda: method.top1(queries)) for _ in range(repeat))


def seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def mismatches(record: Timings, reference: Timings) -> dict[str, int]:
    ranges = sum(
        not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])) for a, b in zip(record.ranges, reference.ranges)
    )
    tops = sum(a != b for a, b in zip(record.tops, reference.tops))
    return {"range": int(ranges), "top1": int(tops), "compared": len(record.ranges)}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def our_methods(data: Dataset) -> list[Callable[[], Method]]:
    lean_tables = 2 * data.nbits // 64  # two thirds of the default 3 keys per 64-bit word
    return [
        lambda: IndexMethod("HammingIndex mih (default)", data, "mih"),
        lambda: IndexMethod(f"HammingIndex mih, tables={lean_tables}", data, "mih", IndexConfig(tables=lean_tables)),
        lambda: IndexMethod("HammingIndex flat", data, "flat"),
    ]


def run_one(name: str, n: int, nbits: int, args: argparse.Namespace) -> list[dict]:
    start = time.perf_counter()
    data = make_dataset(name, n, nbits, args.queries)
    generated = time.perf_counter() - start
    print(f"\n## {name}, {n:,} codes of {nbits} bits, radius {data.radius} (data made in {generated:.1f} s)", flush=True)
    makers = [*our_methods(data), lambda: FaissFlat(data), lambda: NumpyScan(data)]
    if n <= args.faiss_mih_max:
        makers.append(lambda: FaissMultiHash(data))
    methods = []
    for make in makers:
        gc.collect()
        methods.append(make())
        print(f"built {methods[-1].name} in {methods[-1].build_seconds:.1f} s", flush=True)
    limits = {NumpyScan.name: args.numpy_queries} if n > 1_000_000 else {}
    timings = time_single_queries(methods, data, limits, args.rounds)
    for method in methods:
        time_batches(method, data, timings[method.name], 1 if isinstance(method, NumpyScan) and n > 1_000_000 else 3)
    reference = timings[FaissFlat.name]
    rows = []
    for method in methods:
        record = timings[method.name]
        near = data.near[: len(record.range_ms)]
        wrong = mismatches(record, reference)
        rows.append({
            "data": name, "codes": n, "bits": nbits, "radius": data.radius, "method": method.name,
            "build_s": method.build_seconds, "bytes_per_code": method.bytes_per_code,
            "range_p50_ms": percentile(record.range_ms, 50), "range_p99_ms": percentile(record.range_ms, 99),
            "range_near_p50_ms": percentile(list(np.array(record.range_ms)[near]), 50),
            "range_unrelated_p50_ms": percentile(list(np.array(record.range_ms)[~near]), 50),
            "range_qps": record.range_qps,
            "top1_p50_ms": percentile(record.top1_ms, 50), "top1_p99_ms": percentile(record.top1_ms, 99),
            "top1_near_p50_ms": percentile(list(np.array(record.top1_ms)[near]), 50),
            "top1_unrelated_p50_ms": percentile(list(np.array(record.top1_ms)[~near]), 50),
            "top1_qps": record.top1_qps, "queries": len(record.range_ms),
            "hits_per_query": float(np.mean([len(r[0]) for r in record.ranges])),
            "mismatches": wrong,
        })
    print_table(rows)
    del methods, timings, data
    gc.collect()
    return rows


def print_table(rows: list[dict]) -> None:
    """One Markdown table; speed-ups are against FAISS IndexBinaryFlat on the same data."""
    print("\n| codes | data | method | build s | bytes/code | radius p50 / p99 ms | radius q/s | × flat (p50, q/s) "
          "| top-1 p50 / p99 ms | top-1 p50 near / unrelated ms | top-1 q/s | exact |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        flat = next(f for f in rows if f["method"] == FaissFlat.name and (f["codes"], f["data"]) == (r["codes"], r["data"]))
        print(f"| {r['codes'] / 1e6:g} M | {r['data']} | {r['method']} | {r['build_s']:.1f} | {r['bytes_per_code']:.1f} "
              f"| {r['range_p50_ms']:.2f} / {r['range_p99_ms']:.2f} | {r['range_qps']:,.0f} "
              f"| {flat['range_p50_ms'] / r['range_p50_ms']:.1f}×, {r['range_qps'] / flat['range_qps']:.1f}× "
              f"| {r['top1_p50_ms']:.2f} / {r['top1_p99_ms']:.2f} "
              f"| {r['top1_near_p50_ms']:.2f} / {r['top1_unrelated_p50_ms']:.2f} | {r['top1_qps']:,.0f} "
              f"| {exactness(r['mismatches'])} |", flush=True)


def exactness(wrong: dict[str, int]) -> str:
    """'yes' when every result equals FAISS IndexBinaryFlat's, else what differed."""
    if not wrong["range"] and not wrong["top1"]:
        verdict = "yes"
    else:
        verdict = ", ".join(f"{kind} differs for {wrong[kind]}" for kind in ("range", "top1") if wrong[kind])
    return f"{verdict} ({wrong['compared']} q)"


def crossover(sizes: list[int], queries: int) -> list[dict]:
    """flat against MIH (default settings) at small sizes: where auto should switch."""
    print("\n## flat against MIH, uniform 256-bit codes, near-duplicate queries, radius 32")
    print("\n| codes | flat radius p50 ms | MIH radius p50 ms | flat top-1 p50 ms | MIH top-1 p50 ms | MIH bytes/code |")
    print("|---:|---:|---:|---:|---:|---:|")
    rows = []
    for n in sizes:
        data = make_dataset("uniform", n, 256, 2 * queries)
        data.queries, data.near = data.queries[data.near], data.near[data.near]
        methods = [IndexMethod("flat", data, "flat"), IndexMethod("mih", data, "mih", IndexConfig(rebuild_min=0))]
        timings = time_single_queries(methods, data, {}, 2)
        row = {"codes": n, **{f"{m.name}_{op}_p50_ms": percentile(getattr(timings[m.name], f"{op}_ms"), 50)
                              for m in methods for op in ("range", "top1")}, "mih_bytes_per_code": methods[1].bytes_per_code}
        wrong = mismatches(timings["mih"], timings["flat"])
        if wrong["range"] or wrong["top1"]:
            raise SystemExit(f"MIH and flat disagree at {n} codes: {wrong}")
        print(f"| {n:,} | {row['flat_range_p50_ms']:.3f} | {row['mih_range_p50_ms']:.3f} | {row['flat_top1_p50_ms']:.3f} "
              f"| {row['mih_top1_p50_ms']:.3f} | {row['mih_bytes_per_code']:.1f} |", flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated collection sizes ('' for none)")
    parser.add_argument("--bits", default="256,128")
    parser.add_argument("--data", default="uniform,clustered")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--numpy-queries", type=int, default=20, help="NumPy scan queries above 1 M codes")
    parser.add_argument("--faiss-mih-max", type=int, default=1_000_000, help="largest size to build FAISS MIH for")
    parser.add_argument("--crossover", default="", help="also time flat against MIH at these small sizes")
    parser.add_argument("--rounds", type=int, default=2, help="turns per query; its latency is the least")
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads")
    parser.add_argument("--out", type=Path, default=None, help="write search.json here")
    args = parser.parse_args()
    started = time.perf_counter()
    faiss.omp_set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average {load_before:.1f}; FAISS {faiss.__version__} "
          f"({args.threads} thread(s)), NumPy {np.__version__}; HammingIndex and NumPy single-threaded", flush=True)
    rows = [
        row
        for n in (int(s) for s in args.sizes.split(",") if s)
        for nbits in (int(b) for b in args.bits.split(","))
        for name in args.data.split(",")
        for row in run_one(name, n, nbits, args)
    ]
    for nbits in sorted({r["bits"] for r in rows}, reverse=True):
        print(f"\n## All runs, {nbits}-bit codes, radius {nbits // 8}")
        print_table([r for r in rows if r["bits"] == nbits])
    crossing = crossover([int(s) for s in args.crossover.split(",") if s], args.queries) if args.crossover else []
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    load_after = os.getloadavg()[0]
    print(f"\nrun took {time.perf_counter() - started:.0f} s; peak resident memory {peak_gb:.1f} GB; "
          f"load average {load_after:.1f} at the end")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "search.json").write_text(json.dumps(
            {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "faiss": faiss.__version__,
             "numpy": np.__version__, "faiss_threads": args.threads, "load_average": [load_before, load_after], "rows": rows, "crossover": crossing, "peak_rss_gb": peak_gb}, indent=1))
    wrong = [r for r in rows if r["mismatches"]["range"] or (r["mismatches"]["top1"] and "MultiHash" not in r["method"])]
    if wrong:
        raise SystemExit(f"results differ from the FAISS flat scan: {[(r['method'], r['mismatches']) for r in wrong]}")


if __name__ == "__main__":
    main()
