"""Time of the image comparator per pair, by stage, against hashing the same pair.

    .venv/bin/python benchmarks/compare_speed.py --corpus corpus --pairs 60 --repeat 3

Pairs: ``synth.pairs.draw_pair`` on train photos (reduced to 1024 px) and train
cut-outs, a third of each class, as JPEG files (quality 90) on disk. Timed per pair,
one process, best of ``--repeat`` passes:

- explain: ``ImageComparator.explain`` from the two files (load, align, network);
- its stages: loading both files, the alignment (features + RANSAC + resampling), the
  ONNX network;
- the peer step it follows: hashing both files with ``cmaa`` (``hash_image``), what a
  match costs before anyone asks what changed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from robusthash.compare import ImageComparator
from robusthash.compare.align import align
from robusthash.files import evenly_spaced
from robusthash.hashing import get_hasher
from robusthash.synth.corpus import Corpus
from robusthash.synth.pairs import PairConfig, PairPool, draw_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    corpus = Corpus(args.corpus)
    photos = evenly_spaced(corpus.train(), args.pairs)
    cutouts = corpus.objects("train")[:20]
    pool = PairPool.from_files(photos, cutouts, PairConfig(side=1024))
    comparator = ImageComparator()
    hasher = get_hasher("cmaa")
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i in range(args.pairs):
            pair = draw_pair(pool, 11, i)
            query, original = Path(folder) / f"{i}-query.jpg", Path(folder) / f"{i}-original.jpg"
            pair.query.save(query, quality=90)
            pair.original.save(original, quality=90)
            files.append((query, original))
        comparator.explain(*files[0])  # warm-up: sessions, OpenCV
        hasher.hash(files[0][0])
        best: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for k, (query, original) in enumerate(files):
                times = {}
                started = time.perf_counter()
                comparator.explain(query, original)
                times["explain"] = time.perf_counter() - started
                started = time.perf_counter()
                q, o = comparator.load(query), comparator.load(original)
                times["load"] = time.perf_counter() - started
                started = time.perf_counter()
                _, aligned = align(q, o, comparator.size, comparator.align_config)
                times["align"] = time.perf_counter() - started
                started = time.perf_counter()
                comparator.predict(aligned.original[None], aligned.query[None])
                times["network"] = time.perf_counter() - started
                started = time.perf_counter()
                hasher.hash(query), hasher.hash(original)
                times["cmaa hash of both"] = time.perf_counter() - started
                for name, seconds in times.items():
                    runs = best.setdefault(name, [float("inf")] * len(files))
                    runs[k] = min(runs[k], seconds)
    hashing = statistics.median(best["cmaa hash of both"])
    print(f"{args.pairs} pairs, best of {args.repeat} passes, ms per pair")
    print("| step | median ms | mean ms | 90th pct ms | median ÷ cmaa hash of both |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in best.items():
        ordered = sorted(runs)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        print(f"| {name} | {1000 * statistics.median(runs):.1f} | {1000 * statistics.mean(runs):.1f} | "
              f"{1000 * p90:.1f} | {statistics.median(runs) / hashing:.2f} |")


if __name__ == "__main__":
    main()
