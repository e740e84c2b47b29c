"""``robusthash methods``, ``hash`` and ``compare``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..cluster import usable_cores
from .common import Format, _emit, _image_files, _methods, _progress, err, ordered_map, out


def methods(fmt: Format = typer.Option(Format.text, "--format", help="text table or one JSON object per line")):
    """List the available hashing methods."""
    from ..hashing import available_methods, get_hasher

    if fmt is Format.jsonl:
        for name in available_methods():
            h = get_hasher(name)
            record = {"method": name, "bits": h.bits, "version": h.version, "decision": h.decision,
                      "threshold": h.threshold, "threshold_source": h.threshold_source,
                      "description": h.description}
            out.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    from rich.table import Table

    table = Table("method", "bits", "version", "default decision", "description")
    for name in available_methods():
        h = get_hasher(name)
        table.add_row(name, str(h.bits), h.version, h.decision, h.description)
    out.print(table)


def hash_command(
    paths: List[Path] = typer.Argument(..., help="Image files or directories (searched recursively)."),
    method: str = typer.Option("forbild", "--method", "-m", help="Method name, or several separated by commas."),
    fmt: Format = typer.Option(Format.text, "--format", help="text: 'HEX  PATH' lines; jsonl: one JSON object per line"),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Descend into subdirectories."),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="files hashed at once (default: one per core; decoding and "
        "resizing run outside Python's lock, so threads use every core)",
    ),
):
    """Hash images and print one line per image and method.

    Text: 'HEX  PATH' (PDQ adds its quality, 0-100; below 50 it is too weak to match).
    JSONL adds "text", the lossless form METHOD:VERSION:HEX[;SIDE-INFORMATION] that
    Hash.from_hex reads back whole. Unreadable files are reported on stderr and skipped;
    the exit code is 1 if any failed. Lines come in the order of the files, whatever
    --threads is.
    """
    from ..hashing import Hash

    hashers = _methods(method)
    files = _image_files(paths, recursive=recursive)
    failed = 0
    show = err.is_terminal if progress is None else progress
    with _progress(show) as bar:
        task = bar.add_task("hashing", total=len(files))
        for path, results in ordered_map(lambda path: _hash_file(path, hashers), files, threads or usable_cores()):
            for hasher, h in results:
                if isinstance(h, Exception):
                    from rich.markup import escape

                    failed += 1
                    err.print(f"[red]error:[/red] {escape(str(h))}", markup=True)
                    continue
                quality = h.extra.get("quality") if isinstance(h, Hash) else None
                shown = f"quality {quality:3d}  " if quality is not None else ""
                label = f"{hasher.name}  " if len(hashers) > 1 else ""
                if fmt is Format.jsonl:
                    record = {"path": str(path), "method": hasher.name, "version": hasher.version,
                              "bits": h.nbits, "hash": str(h), "text": h.to_text()}
                    if quality is not None:
                        record["quality"] = quality
                        if (weak := hasher.weakness(h)):
                            record["weak"] = weak
                    _emit(fmt, record, "")
                else:
                    out.file.write(f"{h}  {label}{shown}{path}\n")
            bar.advance(task)
    if failed:
        err.print(f"{failed} of {len(files)} file(s) could not be hashed")
        raise typer.Exit(1)
    if not files:
        err.print("no image files found")
        raise typer.Exit(1)


def _hash_file(path: Path, hashers: list) -> tuple[Path, list]:
    """(path, [(hasher, its hash or the error that stopped it)]): read once, decoded once
    per decoding the methods need. A file that cannot be read or decoded stops at its
    first error; a hasher that fails otherwise does not stop the others."""
    from ..hashing.base import DecodedImage
    from ..io import ImageError

    try:
        image = DecodedImage(path)
    except ImageError as exc:
        return path, [(None, exc)]
    results: list = []
    for hasher in hashers:
        try:
            results.append((hasher, hasher.hash_pil(image.for_hasher(hasher))))
        except ImageError as exc:
            results.append((hasher, exc))
            break
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the batch
            results.append((hasher, RuntimeError(f"{path}: {hasher.name} failed ({type(exc).__name__}: {exc})")))
    return path, results


def compare(
    query: Path = typer.Argument(..., help="The copy to check (the query)."),
    original: Path = typer.Argument(..., help="The original it may be a copy of."),
    method: str = typer.Option("forbild", "--method", "-m", help="Method name, or several separated by commas."),
    fmt: Format = typer.Option(Format.text, "--format"),
):
    """Compare two images: distance and the method's match decision.

    QUERY first, then ORIGINAL, as in `explain` and the library (hasher.compare(query,
    original)). For forbild the result does not depend on the order."""
    from ..db import examine
    from ..io import ImageError

    hashers = _methods(method)
    try:
        examined = [examine(path, hashers) for path in (query, original)]
    except ImageError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        raise typer.Exit(2) from None
    empty = [f"{path.name} cannot be identified: {e.information.reason}"
             for path, e in zip((query, original), examined) if not e.information.informative]
    for hasher in hashers:
        hashes = [e.hashes[hasher.name] for e in examined]
        result = hasher.compare(*hashes)
        # Too little in either image, or a hash too weak: no confident answer, whatever the distance.
        refused = "; ".join(empty + [w for w in map(hasher.weakness, hashes) if w])
        matched = result.matched and not refused
        record = {"query": str(query), "original": str(original), "method": hasher.name, "distance": result.distance,
                  "hamming": result.hamming, **result.details, "match": matched, "refused": refused or None}
        verdict = "MATCH" if matched else "no match"
        hamming = f"  hamming {result.hamming}/{hasher.bits}" if result.hamming is not None else ""
        rule = result.details.get("rule") or f"threshold {result.details.get('threshold'):.4f}"
        rule += f"; not a match: {refused}" if refused else ""
        _emit(fmt, record, f"{hasher.name}: distance {result.distance:.4f}{hamming}  {verdict}  ({rule})")

