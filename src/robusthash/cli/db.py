"""``robusthash db``: the reference database (init, add, query, remove, stats, calibrate),
and what ``serve`` shares with it (``DB_OPTION``, ``_open_db``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import (DASK_OPTION, DASK_WORKERS_OPTION, HELP_MARKUP, Format, _cluster, _image_files, _method_names,
                     _progress, err, needs_extra, out)


db_app = typer.Typer(
    help="The reference database: register originals, then ask whether an image is one of them.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)

DB_OPTION = typer.Option(
    "robusthash.sqlite", "--db", envvar="ROBUSTHASH_DB",
    help="SQLite file, a postgresql:// URL, or milvus://host:port?store=SQLITE_OR_POSTGRESQL (search on a "
    "Milvus server; docs/distributed.md) [env: ROBUSTHASH_DB]",
)


ALLOW_UNINFORMATIVE_OPTION = typer.Option(
    False, "--allow-uninformative",
    help="also register / match images with almost nothing in them (flat colour, tiny, noise), which are "
    "refused by default: every method hashes them to codes that say nothing about the picture")
MIN_QUALITY_OPTION = typer.Option(
    None, "--min-quality", min=0, max=100,
    help="hashes with a quality below this are neither registered nor matched (PDQ's quality, 0-100; "
    "default: Meta's guidance, 50; 0: no floor)")


def _admission(allow_uninformative: bool, min_quality: Optional[int]):
    from ..db import Admission
    from ..information import DEFAULT_RULE

    return Admission(None if allow_uninformative else DEFAULT_RULE, min_quality)


def _database_extras(db: str) -> None:
    """The client libraries a --db URL needs (Milvus, PostgreSQL), checked before it is opened."""
    from ..db.milvus import is_milvus_url, parse_milvus_url

    if is_milvus_url(db):
        needs_extra("milvus", "pymilvus", what="a milvus:// database")
        try:
            db = parse_milvus_url(db).store
        except ValueError:
            return  # reported where the database is opened
    if db.startswith(("postgresql://", "postgres://")):
        needs_extra("postgres", "psycopg", what="a postgresql:// database")


def _open_db(db: str, methods: Optional[str] = None, admission=None):
    from ..db import Admission, ReferenceDB
    from ..db.milvus import is_milvus_url, parse_milvus_url

    try:
        store = parse_milvus_url(db).store if is_milvus_url(db) else db
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    if not store.startswith(("postgresql://", "postgres://")):
        from ..db.store import not_a_database

        why = not_a_database(Path(store))
        if why:
            raise typer.BadParameter(f"{why}; create one with `robusthash db init --db {db}`", param_hint="--db")
    names = _method_names(methods) if methods else None
    _database_extras(db)
    try:
        return ReferenceDB(db, methods=names, admission=admission or Admission())
    except Exception as exc:  # noqa: BLE001 - a connection or schema problem is reported, not a traceback
        err.print(f"error: cannot open {db}: {exc}", markup=False)
        raise typer.Exit(1) from None


@db_app.command("init")
def db_init(
    db: str = DB_OPTION,
    methods: str = typer.Option("forbild", "--methods", "-m", help="methods to register with, comma-separated"),
):
    """Create a database (or update the methods of an existing one)."""
    from ..db import ReferenceDB

    names = _method_names(methods)
    _database_extras(db)
    try:
        ref = ReferenceDB(db)
    except (ValueError, RuntimeError, OSError) as exc:
        err.print(f"error: cannot open {db}: {exc}", markup=False)
        raise typer.Exit(1) from None
    with ref:
        images = ref.store.stats()["images"]
        added, dropped = ref.set_methods(names)
        err.print(f"{db}: registering with {', '.join(names)}", markup=False)
        if added and images:
            err.print(f"{', '.join(added)} added: the {images} image(s) registered before have no {added[0]} hashes "
                      f"yet; run `robusthash db add` on the originals again to hash them (nothing else changes)",
                      markup=False)
        if dropped:
            err.print(f"{', '.join(dropped)} no longer used for new images; the hashes stored are kept and can "
                      f"still be searched with `db query -m {dropped[0]}`", markup=False)


@db_app.command("add")
def db_add(
    paths: List[Path] = typer.Argument(..., help="image files, folders (recursive) or .txt lists"),
    db: str = DB_OPTION,
    meta: Optional[str] = typer.Option(None, "--meta", help='JSON object stored with every image, e.g. \'{"owner": "agency"}\''),
    batch: int = typer.Option(64, "--batch", min=1, help="images per transaction"),
    fmt: Format = typer.Option(Format.text, "--format", help="text summary or one JSON object per file"),
    dask: Optional[str] = DASK_OPTION,
    dask_workers: Optional[int] = DASK_WORKERS_OPTION,
    task_size: int = typer.Option(16, "--task-size", min=1, help="with --dask: files per task"),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."
    ),
    allow_uninformative: bool = ALLOW_UNINFORMATIVE_OPTION,
    min_quality: Optional[int] = MIN_QUALITY_OPTION,
):
    """Register originals (files, folders, .txt lists).

    Bad files are reported and skipped; re-running skips what is already registered
    (same bytes), so an interrupted add can simply be run again, and gives images
    registered before the hashes they lack (a method added with `db init`, a method's new
    version). Images with almost nothing in them are refused; hashes below the quality
    floor (PDQ < 50) are left out. With --dask the hashing runs on a cluster (this process
    reads the files and writes the database)."""
    from ..db.metadata import check_metadata

    try:
        metadata = check_metadata(json.loads(meta) if meta else {}, "--meta")
    except RecursionError:
        raise typer.BadParameter("--meta is nested too deeply", param_hint="--meta") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc) if str(exc).startswith("--meta") else f"--meta is not valid JSON ({exc})",
                                 param_hint="--meta") from None
    files = _image_files(paths)
    show = err.is_terminal if progress is None else progress
    admission = _admission(allow_uninformative, min_quality)
    with _open_db(db, admission=admission) as ref, _cluster(dask, dask_workers) as executor, _progress(show) as bar:
        task = bar.add_task("registering", total=len(files))
        report = ref.add(files, metadata=metadata, batch=batch, executor=executor, task_size=task_size,
                         progress=lambda done, total: bar.update(task, completed=done))
        ref.refresh()
        ref.save_indexes()
    for source, why in report.failed:
        err.print(f"error: {why}", markup=False)
    for source, why in report.partial:
        err.print(f"note: {why}", markup=False)
    if any("cannot be identified" in why for _, why in report.failed):
        err.print("(--allow-uninformative registers such images anyway)", markup=False)
    if fmt is Format.jsonl:
        notes = {source: why for source, why in report.partial}
        for status, entries in (("added", report.added), ("updated", report.updated), ("existing", report.existing)):
            for source, image_id in entries:
                record = {"path": source, "status": status, "image_id": image_id}
                if source in notes:
                    record["note"] = notes[source]
                out.file.write(json.dumps(record) + "\n")
        for source, why in report.failed:
            out.file.write(json.dumps({"path": source, "status": "failed", "error": why}) + "\n")
    updated = f"{len(report.updated)} registered before and given the hashes they lacked, " if report.updated else ""
    err.print(f"{len(report.added)} added, {updated}{len(report.existing)} already registered, "
              f"{len(report.failed)} failed")
    if report.failed:
        raise typer.Exit(1)


@db_app.command("query")
def db_query(
    images: List[Path] = typer.Argument(..., help="images to look up"),
    db: str = DB_OPTION,
    methods: Optional[str] = typer.Option(None, "--methods", "-m", help="default: the database's methods"),
    k: int = typer.Option(5, "-k", min=1, help="with --details: each method lists at least its k nearest"),
    details: bool = typer.Option(False, "--details", help="every candidate checked, and each method's own result"),
    fmt: Format = typer.Option(Format.text, "--format", help="text, or one JSON object per query image"),
    allow_uninformative: bool = ALLOW_UNINFORMATIVE_OPTION,
    min_quality: Optional[int] = MIN_QUALITY_OPTION,
):
    """Is this image one of mine? One verdict per image: match (which original), montage
    (which originals, where in the image), or no match.

    Every method's nearest references are candidates; each is verified against its
    original (local features and geometry; docs/identify.md). A query with almost nothing
    in it (flat colour, tiny, noise) matches nothing. Exit code 0 if every query matched
    something, 1 otherwise (or on a bad file), 2 when a method is not registered here."""
    from ..identify import NO_MATCH, Identifier
    from ..io import ImageError

    failed = unmatched = 0
    with _open_db(db, admission=_admission(allow_uninformative, min_quality)) as ref:
        chosen = _method_names(methods) if methods else None
        problems = [why for why in map(ref.unregistered, chosen or ref.methods) if why]
        if problems:
            for why in problems:
                err.print(f"error: {why}", markup=False)
            raise typer.Exit(2)
        from ..runtime import one_query_at_a_time

        one_query_at_a_time()
        engine = Identifier(ref)
        if engine.calibration_notice:
            err.print(f"warning: {engine.calibration_notice}", markup=False)
        for path in _image_files(images):
            try:
                verdict = engine.identify(path, methods=chosen, k=k)
            except ImageError as exc:
                failed += 1
                err.print(f"error: {exc}", markup=False)
                continue
            unmatched += verdict.verdict == NO_MATCH
            if fmt is Format.jsonl:
                out.file.write(json.dumps(verdict.to_dict(details), ensure_ascii=False) + "\n")
                continue
            _print_verdict(verdict)
            if details:
                _print_candidates(verdict)
                for result in verdict.results:
                    _print_query(result)
    if failed or unmatched:
        raise typer.Exit(1)


def _print_verdict(verdict) -> None:
    from ..identify import MONTAGE, NO_MATCH

    if verdict.verdict == NO_MATCH:
        why = f": the query {verdict.refused}" if verdict.refused else (
            f" ({len(verdict.candidates)} candidate(s) checked, none verified)" if verdict.candidates else "")
        out.print(f"{verdict.query}: no match{why}", markup=False)
        return
    out.print(f"{verdict.query}: {verdict.verdict.upper()}", markup=False)
    for m in verdict.matches:
        where = f" at {m.region} in the query" if verdict.verdict == MONTAGE and m.region else ""
        out.print(f"  {m.image.source}  (image {m.image.id}{where}; {m.reason})", markup=False)


def _print_candidates(verdict) -> None:
    from rich.table import Table

    table = Table("image id", "identified", "score", "reason", "methods that match",
                  title=f"{verdict.query}: candidates", title_justify="left")
    table.add_column("source", overflow="fold")
    for c in verdict.candidates:
        table.add_row(str(c.image.id), "yes" if c.identified else "—", f"{c.score:g}", c.reason,
                      ", ".join(c.evidence.matched_by) or "—", c.image.source)
    out.print(table)


def _print_query(result) -> None:
    verdict = f"MATCH ({len(result.matched)})" if result.matched else "no match"
    if result.refused:
        verdict += f": the query {result.refused}"
    if result.quality is not None:
        verdict += f" (quality {result.quality})"
    if result.montage:
        verdict += ", MONTAGE: several sources through different parts of the query"
    from rich.table import Table

    table = Table("rank", "image id", "NHD", "Hamming", "decision", "rule",
                  title=f"{result.source} — {result.method}: {verdict}", title_justify="left")
    # Sources are long paths: folded onto extra lines, never cut off.
    table.add_column("source", overflow="fold")
    for rank, m in enumerate(result.matches, start=1):
        rule = m.rule if m.query_box is None else f"{m.rule}; query part {m.query_part} at {m.query_box}"
        table.add_row(str(rank), str(m.image.id), f"{m.distance:.4f}", "" if m.hamming is None else str(m.hamming),
                      "match" if m.matched else "—", rule, m.image.source)
    out.print(table)


@db_app.command("remove")
def db_remove(
    image_ids: List[int] = typer.Argument(..., help="image ids (see `db query` or `db stats`)"),
    db: str = DB_OPTION,
):
    """Remove registered images and their hashes."""
    with _open_db(db) as ref:
        removed = ref.remove(image_ids)
        ref.refresh()
        ref.save_indexes()
    err.print(f"removed {removed} of {len(image_ids)} image(s)")
    if removed < len(image_ids):
        raise typer.Exit(1)


@db_app.command("stats")
def db_stats(db: str = DB_OPTION, fmt: Format = typer.Option(Format.text, "--format")):
    """Images, hashes per method, calibrations; and whether the file is sound (SQLite's
    quick_check): a damaged database exits with 1, naming what is wrong."""
    from ..db import StoreUnavailable

    with _open_db(db) as ref:
        problems = ref.store.quick_check()
        try:
            stats = ref.stats() if not problems else None
        except StoreUnavailable as exc:
            problems = [str(exc)]
    if problems:
        err.print(f"error: {db} is damaged: {'; '.join(problems[:5])}"
                  + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                  + ". Restore it from a backup; `robusthash db add` can register the files again.", markup=False)
        raise typer.Exit(1)
    if fmt is Format.jsonl:
        out.file.write(json.dumps(stats) + "\n")
        return
    from rich.table import Table

    out.print(f"{stats['engine']} database, {stats['images']} images; registering with "
              f"{', '.join(stats['registering_with'])}", markup=False)
    table = Table("method", "hashes", "images", "threshold (NHD)", "calibrated")
    for key, entry in stats["methods"].items():
        c = entry["calibration"]
        table.add_row(key, str(entry["hashes"]), str(entry["images"]), f"{c['threshold']:.4f}" if c else "default",
                      f"{c['fpr']:.2%} FPR, {c['pairs']} pairs, {c['computed_at']}" if c else "—")
    out.print(table)
    from ..compare.features import KIND, VERSION

    for entry in stats["features"]:
        older = entry["kind"] == KIND and entry["version"] != VERSION
        out.print(f"local features {entry['kind']}@{entry['version']}: {entry['images']} images, "
                  f"{entry['bytes'] / max(1, entry['images']):,.0f} bytes each"
                  + (f"; this version stores {KIND}@{VERSION}: run `robusthash db add` on their files again "
                     f"(until then they verify as before)" if older else ""), markup=False)


@db_app.command("calibrate")
def db_calibrate(
    db: str = DB_OPTION,
    methods: Optional[str] = typer.Option(None, "--methods", "-m", help="default: the database's methods"),
    fpr: float = typer.Option(0.01, "--fpr", min=1e-6, max=0.5, help="false positive rate between distinct images"),
    engine: bool = typer.Option(False, "--engine", help="calibrate the identification engine (db query's verdict) "
                                "on this collection instead of each method's threshold"),
    queries: int = typer.Option(200, "--queries", min=10, help="--engine: registered files read again as queries"),
    rate: float = typer.Option(1e-6, "--rate", min=1e-12, max=0.1,
                               help="--engine: the false-match rate per reference the verdict is asked to keep"),
):
    """Set each method's threshold at a false positive rate on this collection, or with
    --engine, the identification engine's calibration.

    Thresholds: τ at --fpr over pairs of distinct registered images. forbild keeps its
    two-step rule; its calibrated value is informative.

    --engine: --queries registered images, read again from their files, are asked
    against every other registered image; each signal's tail between distinct images
    and their joint tails are measured and stored, and db query uses them from then on
    instead of the shipped calibration (docs/identify.md). Registered images are taken
    to be distinct pictures. It warns when the collection is too small to measure the
    --rate asked for."""
    if engine:
        _calibrate_engine(db, queries, rate)
        return
    with _open_db(db) as ref:
        for method in (_method_names(methods) if methods else ref.methods):
            try:
                c = ref.calibrate(method, fpr=fpr)
            except ValueError as exc:
                err.print(f"error: {exc}", markup=False)
                raise typer.Exit(1) from None
            out.print(f"{method}: τ = {c.threshold:.4f} NHD ({c.threshold * ref.hashers[method].bits:g} bits) "
                      f"at {c.fpr:.2%} FPR from {c.pairs} pairs of {c.images} images", markup=False)


def _calibrate_engine(db: str, queries: int, rate: float) -> None:
    from ..compare.features import CHECK_VERSION
    from ..identify.calibration import VERIFICATION
    from ..identify.collection import calibrate_collection, too_coarse

    with _open_db(db) as ref, _progress(err.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            measured = calibrate_collection(ref, queries=queries, progress=progress)
        except ValueError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None
    calibration = measured.calibration
    p = calibration.provenance
    out.print(f"engine calibrated on this collection: {p['queries']} queries against {p['references']} references, "
              f"{p['verified_pairs']} distinct pairs verified (standing for {p['verified_pairs_stand_for']:,})",
              markup=False)
    verification = calibration.tail(VERIFICATION, CHECK_VERSION)
    if verification is not None:
        probes = ", ".join(f"{x} inliers {verification.p(x):.1e}" for x in (10, 20, 40))
        out.print(f"verification, rate between distinct images at {probes}", markup=False)
    why = too_coarse(calibration, rate)
    if why:
        err.print(f"warning: this collection is too small to measure a false-match rate of {rate:.0e} per "
                  f"reference: {why}", markup=False)
    for stratum in calibration.strata:
        s = stratum.calibration.provenance
        out.print(f"stratum {stratum.name} (queries less than {stratum.dark_below:.0%} dark): {s['queries']} queries, "
                  f"{s['verified_pairs']} distinct pairs verified, judged by their own tails", markup=False)
        why = too_coarse(stratum.calibration, rate)
        if why:
            err.print(f"warning: stratum {stratum.name} is too small to measure {rate:.0e}: {why}", markup=False)