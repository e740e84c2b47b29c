"""Ingest rate of the reference database: registering files with `ReferenceDB.add`
(what `robusthash db add` runs), against hashing the same files without storing them.

    .venv/bin/python benchmarks/ingest.py --corpus corpus [--images 1000] [--methods forbild,pdq]
        [--postgres postgresql://user@127.0.0.1:5432/db]

Rows, same files, one process: hashing only (decode once, hash with each method: the
floor), and
`add` into a fresh SQLite file (and a fresh PostgreSQL database if a server URL is
given). The ratio to hashing only is the database's cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from robusthash import get_hasher
from robusthash.db import ReferenceDB
from robusthash.hashing.base import hash_image
from robusthash.synth.corpus import Corpus


def hash_only(files: list[Path], methods: list[str]) -> float:
    hashers = [get_hasher(m) for m in methods]
    start = time.perf_counter()
    for path in files:
        hash_image(hashers, path)  # as `add` does
    return time.perf_counter() - start


def add(url: str, files: list[Path], methods: list[str]) -> float:
    with ReferenceDB(url, methods=methods) as ref:
        start = time.perf_counter()
        report = ref.add(files)
        seconds = time.perf_counter() - start
    assert len(report.added) == len(files), report.failed[:3]
    return seconds


def fresh_postgres(server: str) -> str:
    import psycopg

    name = f"ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--methods", default="forbild,pdq")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=None, help="URL of a PostgreSQL server to measure too")
    args = parser.parse_args()
    names = Corpus(args.corpus).train()
    files = names[:: max(1, len(names) // args.images)][: args.images]
    methods = args.methods.split(",")
    hash_only(files[:20], methods)  # warm-up
    rows: dict[str, float] = {}
    # Interleaved rounds, best of each: a slow spell of the machine hits every row alike.
    for _ in range(args.repeat):
        timings = {"hashing only (no database)": hash_only(files, methods)}
        with tempfile.TemporaryDirectory() as tmp:
            timings["db add, SQLite"] = add(str(Path(tmp) / "ingest.sqlite"), files, methods)
        if args.postgres:
            timings["db add, PostgreSQL"] = add(fresh_postgres(args.postgres), files, methods)
        rows = {label: min(seconds, rows.get(label, seconds)) for label, seconds in timings.items()}
    floor = rows["hashing only (no database)"]
    print(f"{len(files)} train files, methods {', '.join(methods)}, one process, best of {args.repeat}\n")
    print("| row | images/s | × hashing only |")
    print("|---|---:|---:|")
    for label, seconds in rows.items():
        print(f"| {label} | {len(files) / seconds:.1f} | {floor / seconds:.2f} |")


if __name__ == "__main__":
    main()
