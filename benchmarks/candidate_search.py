"""The identification engine's candidate search at scale: each method's nearest
references (``IdentifyConfig.most_per_method``, 20) among millions of codes, one core.

    .venv/bin/python benchmarks/candidate_search.py --sizes 1000000,10000000 --queries 200

The engine asks every method for its nearest references, at most 20 (it verifies those,
never a method's thousands of matches), so the search it needs is an exact top-20, not a
range search at a loose method's radius. Its cost depends on how near a query's
neighbours lie, so the codes must be spread as real hashes are, not uniformly:

* **Codes** (128 bits, cmaa's length): ``sign(z · W)`` for ``z`` drawn from a standard
  normal in ``--latent`` dimensions and ``W`` a fixed random 8 × 128 projection: random
  hyperplanes over a low-dimensional picture space. With 8 dimensions the share of
  distinct pairs within 8 / 16 / 26 bits is about 2 × 10⁻⁵ / 6 × 10⁻⁴ / 8 × 10⁻³, against
  cmaa's measured 2.6 × 10⁻⁵ / 4.7 × 10⁻⁴ / 4.6 × 10⁻³ (the shipped calibration's
  distinct-pair tail, ``data/identify-calibration.json``): a tail as heavy as cmaa's,
  a little heavier (more near neighbours: a costlier search). The run measures the
  model's tail on ``--pairs`` pairs and prints it beside cmaa's. Uniform random codes,
  whose nearest neighbours lie 30-40 bits away at 10 M, are the search's worst case and
  are reported too.
* **Queries**: *copies*, a stored code with 0-26 random bits flipped (26: cmaa's decision
  radius), and *unrelated*, fresh codes of the same model.
* **Searches**: ``HammingIndex`` (``auto``: multi-index hashing at this size, exact) and
  FAISS ``IndexBinaryFlat``, one thread, one query per call, each query's time the least
  of 2 turns. Exactness: every top-k's distances equal the flat scan's, else the run
  fails. "Copy in top-k": how often a copy's original is among its k nearest (a property
  of the codes, not of the index: far copies lose to near distinct codes).
* **Projection**: cores for 100 M references at 1,000 queries/s, from the p50 and p99
  cost at the largest size extended with the power law through the two sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import faiss
import numpy as np

from robusthash.db.index import HammingIndex

BITS = 128
CMAA_TAIL = {8: 2.6e-5, 16: 4.7e-4, 26: 4.6e-3}  # the shipped calibration's distinct-pair tail
COPY_FLIPS = 26
TARGET, QPS = 100_000_000, 1000


def latent_codes(count: int, projection: np.ndarray, rng: np.random.Generator, chunk: int = 1_000_000) -> np.ndarray:
    """``count`` packed codes, sign(z · W), z standard normal (``projection`` is W)."""
    parts = []
    for start in range(0, count, chunk):
        z = rng.standard_normal((min(chunk, count - start), projection.shape[0]), dtype=np.float32)
        parts.append(np.packbits(z @ projection > 0, axis=1))
    return np.concatenate(parts)


def uniform_codes(count: int, projection: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (count, BITS // 8), dtype=np.uint8)


def flipped(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        row[rng.choice(BITS, int(rng.integers(0, COPY_FLIPS + 1)), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def tail(make, projection: np.ndarray, pairs: int, rng: np.random.Generator) -> dict[int, float]:
    a, b = make(pairs, projection, rng), make(pairs, projection, rng)
    distances = np.unpackbits(a ^ b, axis=1).sum(axis=1)
    return {bits: float((distances <= bits).mean()) for bits in (4, 8, 16, 26)}


def timed(search, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the least of 2 one-query calls (ms), and the distances found."""
    times = np.full(len(queries), np.inf)
    found = np.zeros((len(queries), k), dtype=np.int64)
    for _ in range(2):
        for i, query in enumerate(queries):
            start = time.perf_counter()
            distances, _ = search(query[None, :], k)
            times[i] = min(times[i], 1e3 * (time.perf_counter() - start))
            found[i] = distances[0]
    return times, found


def run(size: int, make, projection: np.ndarray, queries: int, k: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    codes = make(size, projection, rng)
    ids = np.arange(size, dtype=np.int64)
    picked = rng.choice(size, queries // 2, replace=False)
    asked = {"copies": flipped(codes[picked], rng), "unrelated": make(queries - queries // 2, projection, rng)}
    rows = []
    start = time.perf_counter()
    ours = HammingIndex(BITS)
    ours.add(ids, codes)
    ours_build = time.perf_counter() - start
    flat = faiss.IndexBinaryFlat(BITS)
    start = time.perf_counter()
    flat.add(codes)
    flat_build = time.perf_counter() - start
    for name, search, build, memory in (
            ("HammingIndex (exact)", ours.search, ours_build, ours.memory_bytes()),
            ("FAISS IndexBinaryFlat (exact)", flat.search, flat_build, codes.nbytes)):
        row = {"codes": size, "search": name, "kind": ours.kind if name.startswith("Hamming") else "flat",
               "build_s": build, "bytes_per_code": memory / size}
        for kind, batch in asked.items():
            times, distances = timed(search, batch, k)
            row[f"{kind}_p50_ms"] = float(np.percentile(times, 50))
            row[f"{kind}_p99_ms"] = float(np.percentile(times, 99))
            row[f"{kind}_distances"] = distances
        rows.append(row)
    reference = rows[1]
    for row in rows:
        row["exact"] = all(np.array_equal(row[f"{kind}_distances"], reference[f"{kind}_distances"]) for kind in asked)
        if not row["exact"]:
            raise SystemExit(f"{row['search']} at {size:,} codes: top-{k} differs from the flat scan")
    # Is the copy's original among its k nearest? Its distance is at most the k-th's.
    original = np.unpackbits(asked["copies"] ^ codes[picked], axis=1).sum(axis=1)
    for row in rows:
        row["copy_in_top_k"] = float((original <= row["copies_distances"][:, -1]).mean())
        row["copy_original_bits_mean"] = float(original.mean())
        for kind in asked:
            row[f"{kind}_kth_bits_median"] = float(np.median(row.pop(f"{kind}_distances")[:, -1]))
    return rows


def project(rows: list[dict], key: str) -> tuple[float, float]:
    """(exponent, ms at TARGET) from the two largest sizes' ``key``."""
    (small, large) = sorted(rows, key=lambda r: r["codes"])[-2:]
    exponent = math.log(large[key] / small[key]) / math.log(large["codes"] / small["codes"])
    exponent = min(1.0, max(0.0, exponent))
    return exponent, large[key] * (TARGET / large["codes"]) ** exponent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=20, help="nearest references per method (most_per_method)")
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=2_000_000, help="distinct pairs the model's tail is measured on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/candidate_search.json"))
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    projection = np.random.default_rng(args.seed).standard_normal((args.latent, BITS)).astype(np.float32)
    sizes = [int(s) for s in args.sizes.split(",")]
    model_tail = tail(latent_codes, projection, args.pairs, np.random.default_rng(args.seed + 1))
    print("distinct pairs within b bits, model / cmaa: "
          + ", ".join(f"{b}: {p:.1e} / {CMAA_TAIL.get(b, float('nan')):.1e}" for b, p in model_tail.items()))
    results: dict = {"command": "benchmarks/candidate_search.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": f"{platform.machine()}, {platform.node()}", "k": args.k, "model_tail": model_tail,
        "cmaa_tail": CMAA_TAIL, "data": {}}
    for data, make in (("cmaa-like", latent_codes), ("uniform", uniform_codes)):
        rows = []
        for size in sizes:
            rows += run(size, make, projection, args.queries, args.k, args.seed + size)
            print(json.dumps(rows[-2:], indent=None))
        projections = {}
        for name in {r["search"] for r in rows}:
            mine = [r for r in rows if r["search"] == name]
            worst = [{"codes": r["codes"], "p50": max(r["copies_p50_ms"], r["unrelated_p50_ms"]),
                      "p99": max(r["copies_p99_ms"], r["unrelated_p99_ms"])} for r in mine]
            projections[name] = {q: project(worst, q) for q in ("p50", "p99")} if len(sizes) > 1 else {}
        results["data"][data] = {"rows": rows, "projection": projections}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print_tables(results)


def print_tables(results: dict) -> None:
    for data, found in results["data"].items():
        print(f"\n**{data} codes, top-{results['k']}**\n")
        print("| codes | search | build s | bytes/code | copies p50 / p99 ms | unrelated p50 / p99 ms "
              "| k-th neighbour bits (copies / unrelated) | copy in top-k | exact |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
        for r in found["rows"]:
            print(f"| {r['codes']:,} | {r['search']}, {r['kind']} | {r['build_s']:.1f} | {r['bytes_per_code']:.1f} "
                  f"| {r['copies_p50_ms']:.2f} / {r['copies_p99_ms']:.2f} "
                  f"| {r['unrelated_p50_ms']:.2f} / {r['unrelated_p99_ms']:.2f} "
                  f"| {r['copies_kth_bits_median']:.0f} / {r['unrelated_kth_bits_median']:.0f} "
                  f"| {r['copy_in_top_k']:.3f} | {'yes' if r['exact'] else 'no'} |")
        for name, p in found["projection"].items():
            if p:
                print(f"\n{name}: cost ∝ codes^{p['p50'][0]:.2f}; at {TARGET:,} codes {p['p50'][1]:.1f} ms p50 "
                      f"({math.ceil(p['p50'][1] * QPS / 1000)} cores at {QPS:,} queries/s), {p['p99'][1]:.1f} ms p99")


if __name__ == "__main__":
    main()
