"""The loop, tally and table shared by the query-variant benchmarks (border_variants.py,
turned_variants.py, picture_variants.py): each query searched with a variant and without
it, per method and query kind, recall@1 and false matches per query."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from robusthash.files import evenly_spaced
from robusthash.synth.corpus import Corpus

Counts = dict[tuple[str, str, bool], dict[str, int]]


def arguments(doc: str, photos: int, methods: str, more: Callable[[argparse.ArgumentParser], None] | None = None
              ) -> tuple[argparse.Namespace, list[str], list[Path], list[Path]]:
    """The benchmarks' options (``more`` adds a benchmark's own); their methods; and the
    train photos to register and to keep out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if more is not None:
        more(parser)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=photos)
    parser.add_argument("--methods", default=methods)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    train = evenly_spaced(Corpus(args.corpus).train(), 2 * args.photos)
    return args, args.methods.split(","), train[0::2], train[1::2]


def both_ways(registered: list[Path], kept_out: list[Path],
              queries: Callable[[Path, int, bool], dict[str, list[Any]]],
              switch: Callable[[bool], None]) -> Iterator[tuple[str, Path, str, Any, bool]]:
    """Every query of every registered and kept-out photo (``queries(photo, seed,
    registered)``: kind → queries) twice, with the variant switched on and off
    (``switch``): (label, photo, kind, query, on). The variant is left on."""
    try:
        for label, photos in (("registered", registered), ("unregistered", kept_out)):
            for seed, photo in enumerate(photos):
                for kind, asked in queries(photo, seed, label == "registered").items():
                    for query in asked:
                        for on in (True, False):
                            switch(on)
                            yield label, photo, kind, query, on
    finally:
        switch(True)


def count(counts: Counts, method: str, kind: str, with_variant: bool, found: bool, false: int) -> None:
    row = counts.setdefault((method, kind, with_variant), {"queries": 0, "recall@1": 0, "false": 0})
    row["queries"] += 1
    row["recall@1"] += found
    row["false"] += false


def tally(counts: Counts, result, kind: str, with_variant: bool, photo: Path, registered: bool) -> None:
    """Count one method's result for a query made from ``photo`` (its original when
    ``registered``): recall@1 is the original first and matched; a false match is any
    other matched reference."""
    first = result.matches[0] if result.matches else None
    count(counts, result.method, kind, with_variant,
          bool(registered and first and first.matched and first.image.source == str(photo)),
          sum(m.matched and m.image.source != str(photo) for m in result.matches))


def tally_verdict(counts: Counts, verdict, kind: str, with_variant: bool, photo: Path, registered: bool) -> None:
    """:func:`tally` for each method's own result of an engine's verdict, and for the
    engine as method ``engine``: recall@1 is the original named first; a false match is
    any other reference named."""
    for result in verdict.results:
        tally(counts, result, kind, with_variant, photo, registered)
    names = [m.image.source for m in verdict.matches]
    count(counts, "engine", kind, with_variant, registered and bool(names) and names[0] == str(photo),
          sum(name != str(photo) for name in names))


def print_table(counts: Counts, variant: str, out: Path | None = None) -> None:
    """The markdown table (and, with ``out``, its rows as JSON)."""
    print(f"| method | queries | n | recall@1 with {variant} | without | false matches / query with | without |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for (method, kind, with_variant), row in sorted(counts.items()):
        if not with_variant:
            continue
        other = counts[(method, kind, False)]
        n = row["queries"]
        rows.append({"method": method, "queries": kind, "n": n, "recall@1": row["recall@1"] / n,
                     "recall@1_without": other["recall@1"] / n, "false_per_query": row["false"] / n,
                     "false_per_query_without": other["false"] / n})
        recall = f"{row['recall@1'] / n:.3f} | {other['recall@1'] / n:.3f}" if kind.startswith("registered") else "— | —"
        print(f"| {method} | {kind} | {n} | {recall} | {row['false'] / n:.3f} | {other['false'] / n:.3f} |")
    if out:
        out.write_text(json.dumps(rows, indent=1) + "\n")
