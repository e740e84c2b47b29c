"""``robusthash explain``: what was edited between a copy and its original."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import Format, _emit, err


def explain(
    query: Path = typer.Argument(..., help="The copy found (e.g. a query that matched)."),
    original: Path = typer.Argument(..., help="The original it matched."),
    picture: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="PNG to write (default: QUERY-vs-ORIGINAL.png in the current folder)"),
    no_picture: bool = typer.Option(False, "--no-picture", help="only print the answer"),
    model: Optional[Path] = typer.Option(None, "--model", help="a comparator ONNX file (default: the shipped one)"),
    fmt: Format = typer.Option(Format.text, "--format"),
):
    """What was edited: same picture (only non-editorial changes), edited (and where:
    a 7×7 heatmap over the original), or a different picture. Aligns the query to the
    original first (crops, rotations, flips). Writes a PNG with the heatmap overlaid."""
    from ..compare import ImageComparator
    from ..compare.picture import explanation_picture

    try:
        comparator = ImageComparator(model)
        query_im, original_im = comparator.load(query), comparator.load(original)
    except ValueError as exc:  # ImageError is one; a bad model file is the other
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    result = comparator.explain_images(query_im, original_im)
    record = {"query": str(query), "original": str(original), **result.to_dict()}
    if not no_picture:
        target = picture or Path(f"{query.stem}-vs-{original.stem}.png")
        explanation_picture(query_im, original_im, result).save(target)
        record["picture"] = str(target)
    cells = ", ".join(f"r{r}c{c}" for r, c in result.edited_cells())
    text = (f"{result.label} (p {result.probabilities[result.label]:.2f})"
            + (f"; edited cells (row, column of 7×7 over the original; heat ≥ {result.threshold:.2f}): "
               f"{cells or 'none'}"
               if result.label == "edited" else "")
            + ("; aligned" + (" after mirroring" if result.alignment.flipped else "")
               + f" on {result.alignment.inliers} points" if result.alignment.found else "; no geometric match")
            + (f"; picture {record['picture']}" if "picture" in record else ""))
    _emit(fmt, record, text)
