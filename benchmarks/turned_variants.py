"""What searching a query also turned by half a turn buys the learned hashes (issue 24,
query normalisation), through ReferenceDB.query as `db query` runs it, on train photos.

    .venv/bin/python benchmarks/turned_variants.py --corpus corpus [--photos 150] [--methods cmaa]

``--photos`` train photos are registered; as many other train photos are kept out.
Queries: each registered photo turned beyond CMAA's grid (which trains ±10° … ±90°) by
110°, 145°, 180°, −115°, −150° and −170°, turned within it (30°, −70°), and two
attacks without a turn (JPEG 50, resize 0.5), so that the variant's cost where there is
nothing to undo shows as well; the kept-out photos under the same attacks, for false
matches. The angles are this benchmark's own, not the unseen suite's. Each query is run
twice, with the variant and without it: per method and query kind, recall@1 (the
registered original is the first answer and matched), and false matches per query.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from robusthash.attacks import parse
from robusthash.db import ReferenceDB
from robusthash.hashing.learned import OnnxHasher
from robusthash.io import load_pil
from variant_report import arguments, both_ways, print_table, tally

KINDS = {"beyond the grid": ("RT(110)", "RT(145)", "RT(180)", "RT(-115)", "RT(-150)", "RT(-170)"),
         "within the grid": ("RT(30)", "RT(-70)"), "no turn": ("JC(50)", "RS(0.5)")}


def main() -> None:
    args, methods, registered, kept_out = arguments(__doc__, 150, "cmaa")
    counts: dict = {}
    with_variant = OnnxHasher.query_hashes

    def without_variant(self, im):
        value, variants = with_variant(self, im)
        return value, [v for v in variants if v.extra.get("variant") != "turned 180°"]

    with tempfile.TemporaryDirectory() as tmp:
        ref = ReferenceDB(Path(tmp) / "refs.sqlite", methods=methods)
        ref.add(registered)
        started = time.perf_counter()

        def queries(photo: Path, seed: int, _: bool) -> dict[str, list]:
            im = load_pil(photo)
            return {kind: [parse(spec)(im, seed=seed) for spec in specs] for kind, specs in KINDS.items()}

        def switch(on: bool) -> None:
            OnnxHasher.query_hashes = with_variant if on else without_variant

        for label, photo, kind, query, on in both_ways(registered, kept_out, queries, switch):
            for result in ref.query(query, methods):
                tally(counts, result, f"{label}: {kind}", on, photo, label == "registered")
        print(f"{len(registered)} registered train photos, {len(kept_out)} kept out; "
              f"{time.perf_counter() - started:.0f} s\n")
    print_table(counts, "the half turn", args.out)


if __name__ == "__main__":
    main()
