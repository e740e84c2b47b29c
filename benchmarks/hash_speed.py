"""Hashing throughput of every hasher, decode included, on the same JPEGs, in one run.

    .venv/bin/python ../shared/corpus/build_corpus.py corpus      # once, ~40 s
    .venv/bin/python benchmarks/hash_speed.py --corpus corpus [--images 200] [--repeat 3]

Each row hashes the same files from disk (read + decode + hash), single process
(the learned hasher's onnxruntime uses both cores, as it does for users),
best of ``--repeat`` passes after a warm-up; the passes of all rows are interleaved,
and forbild's ratio to phash is also taken within each pass (median and range). Besides our registry's hashers it
times the peer libraries called the way their users call them (``PIL.Image.open`` then
``imagehash.phash`` / ``pdqhash.compute``), and ``forbild`` decoding full-size RGB, to
measure what reduced-size luma decoding buys. Ratios are against
imagehash's own ``phash``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from robusthash import available_methods, get_hasher, load_pil

REFERENCE = "imagehash.phash (peer, plain)"


def peer_phash(path: Path) -> object:
    with Image.open(path) as im:
        return imagehash.phash(im)


def peer_pdq(path: Path) -> object:
    with Image.open(path) as im:
        return pdqhash.compute(np.asarray(im.convert("RGB")))


FORBILD = get_hasher("forbild")


def forbild_full_decode(path: Path) -> object:
    return FORBILD.hash_pil(load_pil(path, draft_size=None, mode="RGB"))


def time_pass(fn: Callable[[list[Path]], object], files: list[Path]) -> float:
    start = time.perf_counter()
    fn(files)
    return time.perf_counter() - start


def each(fn: Callable[[Path], object]) -> Callable[[list[Path]], object]:
    return lambda files: [fn(path) for path in files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="output folder of build_corpus.py")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write results as JSON here")
    args = parser.parse_args()

    # The train split, so that nothing here ever looks at the test images; evenly spaced
    # through the (sorted) list so that every source of the corpus is represented.
    names = [n for n in (args.corpus / "train.txt").read_text().split() if n.lower().endswith((".jpg", ".jpeg"))]
    files = [args.corpus / n for n in names[:: max(1, len(names) // args.images)][: args.images]]
    sizes = [Image.open(f).size for f in files]
    megapixels = float(np.mean([w * h for w, h in sizes])) / 1e6

    candidates: dict[str, Callable[[Path], object]] = {}
    for method in available_methods():
        candidates[method] = each(get_hasher(method).hash)
    # The learned hasher's batch path: decode each file, then the model on 32 at a time.
    candidates["cmaa, batches of 32 (hash_many)"] = get_hasher("cmaa").hash_many
    candidates["forbild, full-size RGB decoding"] = each(forbild_full_decode)
    candidates[REFERENCE] = each(peer_phash)
    candidates["pdqhash.compute (peer, plain)"] = each(peer_pdq)

    for fn in candidates.values():
        time_pass(fn, files[:10])  # warm-up: imports, caches
    # Rounds interleave the candidates, so a slow spell of the machine hits all of them alike.
    best = {label: float("inf") for label in candidates}
    paired = []  # forbild's speed over phash's within each round: the machine's state cancels
    for round_ in range(args.repeat):
        seconds = {label: time_pass(fn, files) for label, fn in candidates.items()}
        best = {label: min(best[label], seconds[label]) for label in candidates}
        paired.append(seconds[REFERENCE] / seconds["forbild"])
        print(f"round {round_ + 1}/{args.repeat}: forbild {paired[-1]:.2f}× phash", flush=True)
    rates = {label: len(files) / seconds for label, seconds in best.items()}

    reference = rates[REFERENCE]
    print()
    print(f"{len(files)} JPEGs of the corpus train split, mean {megapixels:.2f} MP; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one process; best of {args.repeat}.")
    print()
    print("| hasher | images/s | × imagehash phash |")
    print("|---|---:|---:|")
    for label, rate in rates.items():
        print(f"| {label} | {rate:.1f} | {rate / reference:.2f} |")
    print(f"\nforbild ÷ imagehash phash within each round: median {np.median(paired):.2f}× "
          f"(range {min(paired):.2f}–{max(paired):.2f}, {len(paired)} rounds).")
    draft_gain = rates["forbild"] / rates["forbild, full-size RGB decoding"]
    changed = np.array([FORBILD.hash(f) - forbild_full_decode(f) for f in files])
    print(f"\nReduced-size luma JPEG decoding speeds forbild up {draft_gain:.2f}×; it changes "
          f"{changed.mean():.2f} of 256 bits on average (90th percentile {np.percentile(changed, 90):.0f}, "
          f"max {changed.max()}).")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "hash_speed.json").write_text(json.dumps(
            {"images": len(files), "mean_megapixels": megapixels, "images_per_second": rates,
             "forbild_over_phash_per_round": paired,
             "forbild_bits_changed_by_reduced_decoding": changed.tolist()}, indent=2))


if __name__ == "__main__":
    main()
