"""Scale: ingest and query throughput against the number of Dask workers, search cost per
core, and a projection of the hardware for 100 M and 1 B references at 1,000 queries/s.

    .venv/bin/python benchmarks/scale.py --corpus corpus --images 300 --workers 1,2 \
        --search-sizes 1000000,10000000 --milvus-size 1000000 --out results/scale

Measured, one run, same files for every row:

* **ingest**: ``ReferenceDB.add`` of ``--images`` corpus test photos into a fresh SQLite
  database, hashing in this process (no Dask: the baseline), then on a local Dask cluster
  of 1 and 2 single-threaded worker processes (``--dask local``). images/s and the ratio
  to the in-process baseline.
* **query**: a strong attack of each of those photos (JPEG files), hashed the same three
  ways (a Dask task hashes ``--task-size`` files, as ``db add`` does) and searched in the
  database just built (``ReferenceDB.query_hash``: index search + decision). queries/s.
* **search per core**: ``HammingIndex`` (MIH, exact) and FAISS ``IndexBinaryFlat`` over
  ``--search-sizes`` random 128-bit codes (``cmaa``'s length), one thread, radius at the
  ``cmaa`` threshold and top-10; near-duplicate queries (range hits + top-10, the query
  path of a match) and unrelated ones (top-10 only, nothing in range). With
  ``--milvus-size``: the same codes in a real Milvus server (embedded standalone, this
  machine) with ``BIN_FLAT`` (exact) and ``BIN_IVF_FLAT`` (recall reported).
* **projection**: hashing cores = 1,000 / (queries/s of one worker); search cores from the
  per-core cost of a query (range + top-10) extrapolated to 100 M and 1 B codes (flat:
  linear in the codes; MIH: the power law through the two measured sizes), memory from
  the measured bytes per code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import as_completed
from pathlib import Path

import faiss
import numpy as np

from robusthash.attacks import suites
from robusthash.cluster import ClusterConfig, dask_executor
from robusthash.db import ReferenceDB
from robusthash.db.index import HammingIndex
from robusthash.db.ingest import file_digest, ingest_batch
from robusthash.files import evenly_spaced, iter_image_paths
from robusthash.hashing import Hash, get_hasher
from robusthash.io import DEFAULT_LIMITS, load_pil

QPS_TARGET = 1000
TARGETS = (100_000_000, 1_000_000_000)


# --- ingest and query through the database ----------------------------------------------------


def make_queries(files: list[Path], folder: Path) -> list[Path]:
    """A strong attack (CMAA's, drawn from Table 1) of each photo, saved as JPEG."""
    queries = []
    for i, path in enumerate(files):
        out = folder / f"query-{i:04d}.jpg"
        suites.strong_attack(load_pil(path), np.random.default_rng(i)).save(out, quality=90)
        queries.append(out)
    return queries


def ingest(files: list[Path], methods: list[str], workers: int | None, task_size: int, db: Path) -> float:
    with ReferenceDB(db, methods=methods) as ref:
        ref.set_methods(methods)
        start = time.perf_counter()
        if workers is None:
            report = ref.add(files)
        else:
            with dask_executor(ClusterConfig("local", workers=workers)) as pool:
                warm(pool, files[:workers], methods)
                start = time.perf_counter()
                report = ref.add(files, executor=pool, task_size=task_size)
        seconds = time.perf_counter() - start
    if report.failed or len(report.added) != len(files):
        raise SystemExit(f"ingest failed: {report.failed[:3]}")
    return len(files) / seconds


def encoded_file(path: Path) -> tuple[str, bytes, str]:
    """What ``ingest_batch`` takes of a file: its name, bytes and digest."""
    data = path.read_bytes()
    return str(path), data, file_digest(data)


def warm(pool, files: list[Path], methods: list[str]) -> None:
    """Load every worker's models before the clock starts (once per worker process)."""
    encoded = [encoded_file(p) for p in files]
    for future in [pool.submit(ingest_batch, [item], methods, DEFAULT_LIMITS, {}) for item in encoded]:
        future.result()


def query(queries: list[Path], originals: list[Path], methods: list[str], workers: int | None, task_size: int,
          db: Path) -> tuple[float, int]:
    """queries/s hashing on ``workers`` Dask workers (None: this process) and searching here;
    and how many (query, method) searches matched the query's original."""
    with ReferenceDB(db) as ref:
        ref.refresh()
        matched = 0

        def search(results) -> None:
            nonlocal matched
            for source, new in results:
                if isinstance(new, str):
                    raise SystemExit(f"query failed: {new}")
                original = str(originals[int(Path(source).stem.split("-")[1])])
                for (method, version, _), bits in new.hashes.items():
                    found = ref.query_hash(Hash(bits, ref.hashers[method].bits, method, version), k=1, source=source)
                    matched += any(m.image.source == original for m in found.matched)

        chunks = [[encoded_file(p) for p in queries[i:i + task_size]]
                  for i in range(0, len(queries), task_size)]
        if workers is None:
            start = time.perf_counter()
            for chunk in chunks:
                search(ingest_batch(chunk, methods, DEFAULT_LIMITS, {}))
        else:
            with dask_executor(ClusterConfig("local", workers=workers)) as pool:
                warm(pool, queries[:workers], methods)
                start = time.perf_counter()
                futures = [pool.submit(ingest_batch, chunk, methods, DEFAULT_LIMITS, {}) for chunk in chunks]
                for future in as_completed(futures):
                    search(future.result())
        seconds = time.perf_counter() - start
    return len(queries) / seconds, matched


# --- search per core ------------------------------------------------------------------------------


def near(rng: np.random.Generator, codes: np.ndarray, count: int, radius: int) -> np.ndarray:
    picks = codes[rng.integers(0, len(codes), count)].copy()
    bits = np.unpackbits(picks, axis=1)
    for row in bits:
        row[rng.choice(bits.shape[1], int(rng.integers(0, radius + 1)), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def per_query_ms(fn, queries: np.ndarray) -> float:
    """Median ms of one query per call (best of two turns per query)."""
    times = []
    for q in queries:
        best = math.inf
        for _ in range(2):
            start = time.perf_counter()
            fn(q[None, :])
            best = min(best, time.perf_counter() - start)
        times.append(best * 1000)
    return float(np.median(times))


def build_index(name: str, ids: np.ndarray, codes: np.ndarray, radius: int):
    """(range search, top-10, bytes per code) of one method over ``codes``."""
    if name.startswith("FAISS"):
        flat = faiss.IndexBinaryFlat(codes.shape[1] * 8)
        flat.add(codes)
        # FAISS's range is strict: radius + 1 keeps distance <= radius.
        return (lambda q: flat.range_search(q, radius + 1)), (lambda q: flat.search(q, 10)), float(codes.shape[1])
    index = HammingIndex(codes.shape[1] * 8, "mih")
    index.add(ids, codes)
    return ((lambda q: index.range_search(q, radius)), (lambda q: index.search(q, 10)),
            index.memory_bytes() / len(codes))


def search_rows(sizes: list[int], radius: int, queries: int, milvus_size: int | None, seed: int = 0) -> list[dict]:
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    rows = []
    largest = max(sizes + ([milvus_size] if milvus_size else []))
    codes = rng.integers(0, 256, (largest, 16), dtype=np.uint8)
    for n in sizes:
        ids = np.arange(n, dtype=np.int64)
        near_q, far_q = near(rng, codes[:n], queries, radius), rng.integers(0, 256, (queries, 16), dtype=np.uint8)
        for name in ("HammingIndex mih (exact)", "FAISS IndexBinaryFlat (exact)"):
            start = time.perf_counter()
            range_fn, knn_fn, bytes_per_code = build_index(name, ids, codes[:n], radius)
            built = time.perf_counter() - start
            match_ms = per_query_ms(lambda q: (range_fn(q), knn_fn(q)), near_q)
            miss_ms = per_query_ms(knn_fn, far_q)
            rows.append({"codes": n, "method": name, "build_s": built, "bytes_per_code": bytes_per_code,
                         "match_ms": match_ms, "miss_ms": miss_ms})
            print(json.dumps(rows[-1]), flush=True)
    if milvus_size:
        rows += milvus_rows(codes[:milvus_size], radius, queries, rng)
    return rows


def milvus_rows(codes: np.ndarray, radius: int, queries: int, rng: np.random.Generator) -> list[dict]:
    from robusthash.db.milvus import MilvusIndex, MilvusLocation, start_embedded

    rows = []
    n = len(codes)
    ids = np.arange(n, dtype=np.int64)
    near_q, far_q = near(rng, codes, queries, radius), rng.integers(0, 256, (queries, 16), dtype=np.uint8)
    exact = HammingIndex(128, "mih")
    exact.add(ids, codes)
    with tempfile.TemporaryDirectory(prefix="scale-milvus-") as root:
        server = start_embedded(root)
        try:
            # nprobe is a search parameter: one IVF collection serves every nprobe.
            for index_type, options in [("BIN_FLAT", {}), ("BIN_IVF_FLAT", {"nlist": 1024, "nprobe": 16}),
                                        ("BIN_IVF_FLAT", {"nlist": 1024, "nprobe": 128})]:
                location = MilvusLocation("127.0.0.1", server.listen_port, "unused", index_type, **options)
                start = time.perf_counter()
                index = MilvusIndex(location, f"scale_{index_type.lower()}", 128)
                if index.created:
                    index.add(ids, codes)
                    index.flush()
                built = time.perf_counter() - start
                match_ms = per_query_ms(lambda q: (index.range_search(q, radius), index.search(q, 10)), near_q)
                miss_ms = per_query_ms(lambda q: index.search(q, 10), far_q)
                found = sum(set(index.range_search(q[None], radius)[0][0].tolist())
                            == set(exact.range_search(q[None], radius)[0][0].tolist()) for q in near_q)
                detail = f"nlist {options['nlist']}, nprobe {options['nprobe']}" if options else "exact"
                label = f"Milvus {index_type} ({detail})"
                rows.append({"codes": n, "method": label, "build_s": built, "bytes_per_code": None,
                             "match_ms": match_ms, "miss_ms": miss_ms, "range_complete": found / len(near_q)})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
    return rows


# --- projection ---------------------------------------------------------------------------------------


def projection(query_rate_per_worker: float, search: list[dict]) -> list[dict]:
    """Cores and memory for TARGETS references at QPS_TARGET queries/s, per search method
    measured at two or more sizes (flat: linear; MIH: power law through the measured sizes)."""
    out = []
    by_method: dict[str, list[dict]] = {}
    for row in search:
        if row["bytes_per_code"] is not None:
            by_method.setdefault(row["method"], []).append(row)
    hashing_cores = QPS_TARGET / query_rate_per_worker
    for method, rows in by_method.items():
        rows = sorted(rows, key=lambda r: r["codes"])
        if len(rows) < 2:
            continue
        cost = [max(r["match_ms"], r["miss_ms"]) for r in rows]
        (n0, t0), (n1, t1) = (rows[0]["codes"], cost[0]), (rows[-1]["codes"], cost[-1])
        exponent = 1.0 if "Flat" in method else math.log(t1 / t0) / math.log(n1 / n0)
        for target in TARGETS:
            ms = t1 * (target / n1) ** exponent
            out.append({"references": target, "method": method, "exponent": exponent, "ms_per_query": ms,
                        "search_cores": QPS_TARGET * ms / 1000, "hashing_cores": hashing_cores,
                        "memory_gb": rows[-1]["bytes_per_code"] * target / 1e9})
    return out


def write(out: Path, args, ingest_rows, query_rows, search, project) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"ingest": ingest_rows, "query": query_rows, "search": search,
                                                  "projection": project, "args": vars(args)}, indent=1, default=str))
    lines = [
        "# Scale: Dask workers, search per core, projection", "",
        f"Command: `.venv/bin/python benchmarks/scale.py {' '.join(args.argv)}`  ",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
        f"{time.strftime('%Y-%m-%d')}; methods {', '.join(args.methods)}; {args.images} corpus test photos.", "",
        "## Ingest (`db add`) and query, against Dask workers", "",
        "| hashing on | ingest images/s | × in-process | queries/s | × in-process | queries matched |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base_i, base_q = ingest_rows[0]["per_s"], query_rows[0]["per_s"]
    for i, q in zip(ingest_rows, query_rows):
        lines.append(f"| {i['label']} | {i['per_s']:.1f} | {i['per_s'] / base_i:.2f} | {q['per_s']:.1f} | "
                     f"{q['per_s'] / base_q:.2f} | {q['matched']}/{args.images} |")
    lines += ["", f"## Search per core (128-bit codes, radius {args.radius}, top-10, one thread)", "",
              "| codes | method | build s | bytes/code | match ms (range + top-10) | miss ms (top-10) "
              "| range complete |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    for r in search:
        bpc = f"{r['bytes_per_code']:.1f}" if r["bytes_per_code"] is not None else "server"
        complete = f"{r['range_complete']:.2%}" if "range_complete" in r else "exact"
        lines.append(f"| {r['codes']:,} | {r['method']} | {r['build_s']:.1f} | {bpc} | {r['match_ms']:.2f} | "
                     f"{r['miss_ms']:.2f} | {complete} |")
    lines += ["", f"## Projection: {QPS_TARGET:,} queries/s", "",
              "Search cost per query: the costlier of a match and a miss, measured at the largest size and "
              "extrapolated with the exponent through the two sizes (flat: 1). A database query runs a range "
              "search and, with fewer than k matches, a top-k search. Hashing cores: 1,000 / the 1-worker "
              "query rate. Memory: the index's bytes per code (FAISS flat: codes only; ids live in the store).",
              "",
              "| references | search method | cost ∝ codes^x | ms/query/core | search cores | hashing cores | "
              "index memory GB |", "|---:|---|---:|---:|---:|---:|---:|"]
    for p in project:
        lines.append(f"| {p['references']:,} | {p['method']} | {p['exponent']:.2f} | {p['ms_per_query']:.1f} | "
                     f"{p['search_cores']:.0f} | {p['hashing_cores']:.0f} | {p['memory_gb']:.1f} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--methods", default="cmaa")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--task-size", type=int, default=16)
    parser.add_argument("--search-sizes", default="1000000,10000000")
    parser.add_argument("--milvus-size", type=int, default=0)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    args.methods = args.methods.split(",")
    args.radius = int(math.floor(get_hasher("cmaa").threshold * 128 + 1e-9))
    files = evenly_spaced(list(iter_image_paths([str(args.corpus / "test.txt")])), args.images)
    ingest_rows, query_rows = [], []
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        queries = make_queries(files, Path(tmp))
        for workers in [None, *map(int, args.workers.split(","))]:
            label = "this process (no Dask)" if workers is None else f"Dask, {workers} worker(s)"
            db = Path(tmp) / f"ref-{workers}.sqlite"
            ingest_rows.append({"label": label, "workers": workers,
                                "per_s": ingest(files, args.methods, workers, args.task_size, db)})
            rate, matched = query(queries, files, args.methods, workers, args.task_size, db)
            query_rows.append({"label": label, "workers": workers, "per_s": rate, "matched": matched})
            print(json.dumps([ingest_rows[-1], query_rows[-1]]), flush=True)
    sizes = [int(s) for s in args.search_sizes.split(",") if s]
    search = search_rows(sizes, args.radius, args.queries, args.milvus_size or None)
    one_worker = next(q["per_s"] for q in query_rows if q["workers"] == 1)
    write(args.out, args, ingest_rows, query_rows, search, projection(one_worker, search))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
