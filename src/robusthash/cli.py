"""The ``robusthash`` command line. Thin: parse, call the library, format."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .files import iter_image_paths
from .hashing import available_methods, get_hasher
from .hashing.base import load_for
from .io import ImageError

app = typer.Typer(
    help="Identify images by robust hashes: hash, compare, and (soon) register and search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Tables piped to a file or pager get a comfortable width instead of Rich's 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, Enum):
    text = "text"
    jsonl = "jsonl"


def _methods(spec: str) -> list:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    try:
        return [get_hasher(name) for name in names]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--method") from None


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not enabled,
    )


def _emit(fmt: Format, record: dict, text: str) -> None:
    if fmt is Format.jsonl:
        out.file.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        out.print(text, markup=False)


@app.command()
def methods(fmt: Format = typer.Option(Format.text, "--format", help="text table or one JSON object per line")):
    """List the available hashing methods."""
    if fmt is Format.jsonl:
        for name in available_methods():
            h = get_hasher(name)
            record = {"method": name, "bits": h.bits, "version": h.version, "decision": h.decision,
                      "threshold": h.threshold, "threshold_source": h.threshold_source,
                      "description": h.description}
            out.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    table = Table("method", "bits", "version", "default decision", "description")
    for name in available_methods():
        h = get_hasher(name)
        table.add_row(name, str(h.bits), h.version, h.decision, h.description)
    out.print(table)


@app.command("hash")
def hash_command(
    paths: List[Path] = typer.Argument(..., help="Image files or directories (searched recursively)."),
    method: str = typer.Option("forbild", "--method", "-m", help="Method name, or several separated by commas."),
    fmt: Format = typer.Option(Format.text, "--format", help="text: 'HEX  PATH' lines; jsonl: one JSON object per line"),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Descend into subdirectories."),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."
    ),
):
    """Hash images and print one line per image and method.

    Unreadable files are reported on stderr and skipped; the exit code is 1 if any failed.
    """
    hashers = _methods(method)
    files = list(iter_image_paths(paths, recursive=recursive))
    failed = 0
    show = err.is_terminal if progress is None else progress
    with _progress(show) as bar:
        task = bar.add_task("hashing", total=len(files))
        for path in files:
            try:
                image = load_for(hashers, path)  # decoded once for all chosen methods
            except ImageError as exc:
                failed += 1
                err.print(f"[red]error:[/red] {exc}", markup=True)
                bar.advance(task)
                continue
            for hasher in hashers:
                try:
                    h = hasher.hash_pil(image)
                except Exception as exc:  # noqa: BLE001 - one bad image must not stop the batch
                    failed += 1
                    err.print(f"[red]error:[/red] {path}: {hasher.name} failed ({type(exc).__name__}: {exc})")
                    continue
                record = {"path": str(path), "method": hasher.name, "version": hasher.version,
                          "bits": h.nbits, "hash": str(h)}
                label = f"{hasher.name}  " if len(hashers) > 1 else ""
                _emit(fmt, record, f"{h}  {label}{path}")
            bar.advance(task)
    if failed:
        err.print(f"{failed} of {len(files)} file(s) could not be hashed")
        raise typer.Exit(1)
    if not files:
        err.print("no image files found")
        raise typer.Exit(1)


@app.command()
def compare(
    a: Path = typer.Argument(..., help="First image (e.g. the original)."),
    b: Path = typer.Argument(..., help="Second image (e.g. the query)."),
    method: str = typer.Option("forbild", "--method", "-m", help="Method name, or several separated by commas."),
    fmt: Format = typer.Option(Format.text, "--format"),
):
    """Compare two images: distance and the method's match decision."""
    for hasher in _methods(method):
        try:
            # The query (b) is hashed fresh, so its side information drives weighted distances.
            query, reference = hasher.hash(b), hasher.hash(a)
        except ImageError as exc:
            err.print(f"[red]error:[/red] {exc}", markup=True)
            raise typer.Exit(2) from None
        result = hasher.compare(query, reference)
        record = {"a": str(a), "b": str(b), "method": hasher.name, "distance": result.distance,
                  "hamming": result.hamming, "match": result.matched, **result.details}
        verdict = "MATCH" if result.matched else "no match"
        hamming = f"  hamming {result.hamming}/{hasher.bits}" if result.hamming is not None else ""
        rule = result.details.get("rule") or f"threshold {result.details.get('threshold'):.4f}"
        _emit(fmt, record, f"{hasher.name}: distance {result.distance:.4f}{hamming}  {verdict}  ({rule})")


@app.command()
def demo(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Only these methods (comma-separated)."),
    fmt: Format = typer.Option(Format.text, "--format"),
):
    """Attack scikit-image's bundled photos and show how each hasher copes (no download)."""
    from .demo import DEMO_ATTACKS, DEMO_IMAGES, run_demo

    names = [h.name for h in _methods(method)] if method else None
    err.print(f"{len(DEMO_IMAGES)} photos from scikit-image, {len(DEMO_ATTACKS)} attacks each: "
              + ", ".join(DEMO_ATTACKS))
    with err.status("hashing") as status:
        results = run_demo(names, on_step=lambda m: status.update(f"hashing with {m}"))
    if fmt is Format.jsonl:
        for r in results:
            out.file.write(json.dumps({"method": r.method, "attacked": r.attacked, "distinct": r.distinct}) + "\n")
        return
    table = Table(title="Mean distance of attacked copies to their original (matches / images)")
    table.add_column("method", no_wrap=True)
    for attack in DEMO_ATTACKS:
        table.add_column(attack, justify="right")
    table.add_column("distinct images\n(false matches)", justify="right")
    for r in results:
        cells = [f"{sum(d) / len(d):.3f} ({sum(r.attacked_matched[a])}/{len(d)})" for a, d in r.attacked.items()]
        distinct = f"{sum(r.distinct) / len(r.distinct):.3f} ({sum(r.distinct_matched)}/{len(r.distinct)})"
        table.add_row(r.method, *cells, distinct)
    out.print(table)
    out.print("Distances are normalised to 0..1 (0 = identical). A good hasher keeps attacked copies near 0 "
              "and matched, and distinct images near 0.5 with no false matches.")


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"robusthash {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version."),
):
    """robusthash: register original images, then recognise their copies."""


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
