"""Peak memory and time of hashing one big image, per method, each in a fresh process.

    .venv/bin/python benchmarks/memory.py                       # every method and image
    .venv/bin/python benchmarks/memory.py --methods pdq,forbild --images flat-100mp-png

For each method and image, a new Python process imports robusthash, builds the hasher,
hashes a tiny image (so model sessions and imports are paid for), records its peak
resident memory as the baseline (``VmHWM``; ``ru_maxrss`` where there is no /proc), then hashes the big file as ``robusthash hash`` does
(``hash_image``: the file read once, decoded as the method asks). Reported: the peak
resident memory above that baseline 
the same per megapixel of the image, and the wall time of the big hash (read, decode,
hash), with ``LoadLimits(max_pixels=--max-pixels)`` (default 150 MP: the default limit
would refuse the 100 MP image). The images are made once under ``--cache`` (default: a
folder in /tmp).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("forbild", "pdq", "blockhash", "phash", "cmaa", "segments")

# name: (width, height, what, file suffix)
IMAGES = {
    "flat-100mp-png": (10_000, 10_000, "one colour", ".png"),
    "noise-25mp-png": (5_000, 5_000, "RGB noise", ".png"),
    "photo-50mp-jpg": (8_650, 5_780, "photo, upscaled, light noise, quality 90", ".jpg"),
}


def make_image(name: str, folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    width, height, _, suffix = IMAGES[name]
    path = folder / f"{name}{suffix}"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp" + suffix)
    if name.startswith("flat"):
        Image.new("RGB", (width, height), (118, 140, 161)).save(tmp)
    elif name.startswith("noise"):
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(tmp, compress_level=1)
    else:
        from skimage import data

        base = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
        rng = np.random.default_rng(0)
        arr = np.asarray(base, dtype=np.int16) + rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(tmp, quality=90)
    tmp.rename(path)
    return path


def peak_rss_kb() -> int:
    """This process's peak resident memory in KiB: ``VmHWM`` on Linux, where
    ``ru_maxrss`` would also count the parent's memory at the time of the fork, else
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(method: str, path: str, max_pixels: int) -> None:
    """Runs in the fresh process: prints one JSON line."""
    from PIL import Image

    from robusthash.hashing import get_hasher
    from robusthash.hashing.base import hash_image
    from robusthash.io import LoadLimits

    limits = LoadLimits(max_pixels=max_pixels)

    hasher = get_hasher(method)
    hash_image([hasher], Image.new("RGB", (64, 64), (90, 20, 200)))
    baseline = peak_rss_kb()
    start = time.perf_counter()
    error = None
    try:
        hash_image([hasher], path, limits)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        error = f"{type(exc).__name__}: {exc}"[:160]
    wall = time.perf_counter() - start
    peak = peak_rss_kb()
    print(json.dumps({"baseline_mb": baseline / 1024, "peak_mb": (peak - baseline) / 1024, "wall_s": wall,
                      "error": error}))


def measure(method: str, path: Path, timeout: float, max_pixels: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, str(path), "--max-pixels", str(max_pixels)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"[:160]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--images", default=",".join(IMAGES))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "robusthash-memory")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--max-pixels", type=int, default=150_000_000,
                        help="LoadLimits.max_pixels for the measurement (the default limit refuses the 100 MP image)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=2, metavar=("IMAGE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make_image(args.make[0], Path(args.make[1]))
        return
    if args.child:
        child(*args.child, args.max_pixels)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    images = [name.strip() for name in args.images.split(",") if name.strip()]
    paths = {}
    for name in images:  # made in a child process too, so this one stays small
        subprocess.run([sys.executable, os.path.abspath(__file__), "--make", name, str(args.cache)], check=True)
        paths[name] = args.cache / f"{name}{IMAGES[name][3]}"
    rows = []
    print("| method | image | MP | file MB | peak above baseline MB | MB per MP | s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        for name in images:
            width, height, _, _ = IMAGES[name]
            mp = width * height / 1e6
            result = measure(method, paths[name], args.timeout, args.max_pixels)
            row = {"method": method, "image": name, "mp": mp, "file_mb": paths[name].stat().st_size / 1e6, **result}
            rows.append(row)
            if result.get("error") and "peak_mb" not in result:
                print(f"| {method} | {name} | {mp:.0f} | {row['file_mb']:.1f} | – | – | {result['error']} |", flush=True)
                continue
            note = f" (error: {result['error']})" if result.get("error") else ""
            print(f"| {method} | {name} | {mp:.0f} | {row['file_mb']:.1f} | {result['peak_mb']:,.0f} | "
                  f"{result['peak_mb'] / mp:.1f} | {result['wall_s']:.2f}{note} |", flush=True)
    measured = [r for r in rows if "peak_mb" in r and not r.get("error")]
    if measured:
        worst = max(measured, key=lambda r: r["peak_mb"] / r["mp"])
        print(f"\nworst peak per megapixel: {worst['peak_mb'] / worst['mp']:.1f} MB/MP "
              f"({worst['method']}, {worst['image']}); largest peak {max(r['peak_mb'] for r in measured):,.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
