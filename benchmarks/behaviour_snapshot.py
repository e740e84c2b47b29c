"""A snapshot of what robusthash outputs, to show a refactor changed none of it.

Runs the CLI as a user would on a few train photos: every method's hash (lossless text
form, JSONL), a small bench without its cache (results.json without timings), and a database built
with ``db add`` then asked with ``db query`` about attacked copies. Write a snapshot
before and after a change and compare them::

    python benchmarks/behaviour_snapshot.py --corpus corpus --out /tmp/before.json
    ... change the code ...
    python benchmarks/behaviour_snapshot.py --corpus corpus --out /tmp/after.json
    cmp /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = "forbild,blockhash,pdq,phash,dhash,ahash,whash,crop-resistant,cmaa,aria,segments"
# Timings and paths vary from run to run; everything else must not. The bench's
# "method_ids" and "attack_code" fingerprint the source code (so its cache never serves
# hashes of other code): they change with any edit by design, and are left out too.
VOLATILE = {"seconds", "ms_per_image", "images_per_second", "time", "elapsed", "out", "created", "path",
            "hash_ms", "timing", "wall_s", "cached", "computed", "command", "cache", "attack_ms", "written",
            "method_ids", "attack_code"}


def cli(*args: str) -> str:
    exe = Path(sys.executable).with_name("robusthash")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"robusthash {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def scrub(value):
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE and "time" not in k}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def jsonl(text: str) -> list:
    return [scrub(json.loads(line)) for line in text.splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    listed = (args.corpus / "train.txt").read_text().split()
    photos = [str((args.corpus / p).resolve()) for p in listed[:: max(1, len(listed) // args.photos)][: args.photos]]
    snapshot: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        snapshot["hash"] = jsonl(cli("hash", "-m", METHODS, "--format", "jsonl", *photos))
        copies = []
        for i, photo in enumerate(photos):
            for spec in ("JC(50)", "RT(20)", "CROP(0.7)", "ST(0)+BA(1.3)", "FL(H)"):
                out = work / f"copy{i}-{len(copies)}.png"
                cli("attack", spec, photo, str(out), "--seed", str(i))
                copies.append(str(out))
        snapshot["hash_copies"] = jsonl(cli("hash", "-m", METHODS, "--format", "jsonl", *copies))
        bench_list = work / "bench.txt"
        bench_list.write_text("\n".join(photos) + "\n")
        cli("bench", "--images", str(bench_list), "--attacks", "table1", "--methods", "forbild,pdq,phash,cmaa",
            "--out", str(work / "bench"), "--workers", "2", "--seed", "0", "--no-cache")
        snapshot["bench"] = scrub(json.loads((work / "bench" / "results.json").read_text()))
        db = work / "refs.db"
        cli("db", "init", "--db", str(db), "--methods", "forbild,pdq,cmaa,segments")
        cli("db", "add", "--db", str(db), *photos, "--no-progress")
        snapshot["db_stats"] = cli("db", "stats", "--db", str(db)).replace(str(db), "DB")
        snapshot["db_query"] = jsonl(cli("db", "query", "--db", str(db), *copies, "--format", "jsonl", "-k", "3",
                                         "--details")
                                     .replace(f"{work}/", "WORK/"))
        shutil.rmtree(work / "bench")
    args.out.write_text(json.dumps(snapshot, indent=1, sort_keys=True, default=str) + "\n")
    print(f"{args.out}: {len(snapshot['hash'])} + {len(snapshot['hash_copies'])} hashes, "
          f"{len(snapshot['db_query'])} query answers")


if __name__ == "__main__":
    main()
