"""The service under a bounded mixed load, then a consistency check (issue 25).

    .venv/bin/python benchmarks/service_load.py --corpus corpus --seconds 60 --clients 8

A SQLite database is filled with ``--references`` train photos (``robusthash db add``,
512 px JPEGs), and ``robusthash serve`` is started on it. Then, all at once, for
``--seconds``:

* ``--clients`` threads ask ``POST /v1/query`` with attacked copies of registered
  photos (a JPEG re-encoding, a crop, a brightness change, in turn), one request at a
  time each;
* one thread registers new photos through ``POST /v1/images``;
* a ``robusthash db add`` process registers another ``--db-add`` photos into the same
  database, as an operator's bulk load would.

Afterwards: every photo registered through the service (201 or 200) and by ``db add``
must be in the database (by digest), counted once, and found by a query of its own
bytes. Reported: queries per second, their latency (p50, p99), every non-2xx answer by
status, and the images lost. Train photos only; nothing is tuned here.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image

from robusthash.attacks import parse
from robusthash.db import ReferenceDB
from robusthash.synth.corpus import Corpus

KEY = "load-benchmark-key-0123456789"
ATTACKS = ("JC(60)", "CROP(0.8)", "BA(1.2)+JC(80)")


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    im.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def small(path: Path, side: int = 512) -> Image.Image:
    im = Image.open(path)
    im.thumbnail((side, side))
    return im.convert("RGB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("corpus"))
    parser.add_argument("--references", type=int, default=300)
    parser.add_argument("--db-add", type=int, default=100, help="photos a concurrent `db add` registers")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--methods", default="forbild,pdq,cmaa")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/service_load.json"))
    args = parser.parse_args()
    photos = Corpus(args.corpus).train()
    registered, bulk = photos[: args.references], photos[args.references: args.references + args.db_add]
    uploads = photos[args.references + args.db_add:]
    robusthash = [sys.executable, "-m", "robusthash.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = root / "refs.sqlite"
        files = []
        for i, path in enumerate(registered + bulk):
            files.append(root / f"{i:05d}.jpg")
            files[-1].write_bytes(jpeg(small(path)))
        first, later = files[: len(registered)], files[len(registered):]
        subprocess.run([*robusthash, "db", "init", "--db", str(db), "--methods", args.methods], check=True,
                       capture_output=True)
        subprocess.run([*robusthash, "db", "add", *map(str, first), "--db", str(db)], check=True, capture_output=True)
        queries = [jpeg(parse(ATTACKS[i % len(ATTACKS)])(small(p), seed=i)) for i, p in enumerate(registered)]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(root / "server.log", "wb")
        server = subprocess.Popen([*robusthash, "serve", "--db", str(db), "--port", str(port), "--rate-limit", "0"],
                                  env={**os.environ, "ROBUSTHASH_API_KEY": KEY}, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        headers = {"X-API-Key": KEY}
        statuses: Counter = Counter()
        latencies: list[float] = []
        sent_uploads: dict[str, tuple[int, bytes]] = {}  # digest -> (image id, bytes)
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds

        def ask(worker: int) -> None:
            with httpx.Client(timeout=120) as client:
                n = worker
                while time.monotonic() < deadline:
                    body = queries[n % len(queries)]
                    started = time.perf_counter()
                    answer = client.post(f"{url}/v1/query", headers=headers, files={"file": ("q.jpg", body)})
                    with lock:
                        statuses[f"query {answer.status_code}"] += 1
                        if answer.status_code == 200:
                            latencies.append(time.perf_counter() - started)
                    n += args.clients

        def register() -> None:
            with httpx.Client(timeout=120) as client:
                for path in uploads:
                    if time.monotonic() >= deadline:
                        return
                    data = jpeg(small(path))
                    answer = client.post(f"{url}/v1/images", headers=headers, files={"file": (path.name, data)})
                    with lock:
                        statuses[f"register {answer.status_code}"] += 1
                        if answer.status_code in (200, 201):
                            sent_uploads[hashlib.sha256(data).hexdigest()] = (answer.json()["image_id"], data, path.name)

        started = time.monotonic()
        bulk_add = subprocess.Popen([*robusthash, "db", "add", *map(str, later), "--db", str(db)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threads = [threading.Thread(target=ask, args=(w,)) for w in range(args.clients)]
        threads.append(threading.Thread(target=register))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        bulk_add.wait(timeout=600)
        # Consistency: everything acknowledged is stored once, and found by its own bytes.
        with httpx.Client(timeout=120) as client:
            not_found: dict[str, str] = {}  # photo -> what the query of its own bytes answered
            for digest, (image_id, data, name) in sent_uploads.items():
                record = client.get(f"{url}/v1/images/{image_id}", headers=headers)
                answer = client.post(f"{url}/v1/query", headers=headers, files={"file": ("again.jpg", data)})
                if not (record.status_code == 200 and record.json()["digest"] == digest
                        and answer.status_code == 200 and image_id in answer.json()["matched_image_ids"]):
                    not_found[name] = f"record {record.status_code}, query {answer.status_code}: " \
                                      f"{json.dumps(answer.json())[:2000]}"
        server.terminate()
        server.wait(timeout=60)
        with ReferenceDB(db) as ref:
            stored = {r[0] for r in ref.store.execute("SELECT digest FROM images").fetchall()}
            images = ref.stats()["images"]
        expected = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files} | set(sent_uploads)
        lost = len(expected - stored)
    summary = {
        "references_before": len(first), "db_add_files": len(later), "clients": args.clients,
        "seconds": round(elapsed, 1), "queries": len(latencies),
        "queries_per_s": round(len(latencies) / elapsed, 1),
        "query_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "query_p99_ms": round(1000 * sorted(latencies)[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
        "registered_through_the_service": len(sent_uploads), "found_again": len(sent_uploads) - len(not_found),
        "not_found_again": not_found,
        "db_add_exit": bulk_add.returncode, "images_stored": images, "images_expected": len(expected),
        "lost": lost, "answers": dict(statuses),
        "errors": sum(n for k, n in statuses.items() if not k.endswith((" 200", " 201"))),
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    for key, value in summary.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
