"""``robusthash bench`` (the evaluation protocol, or recall under adversarial attack) and
``demo`` (the same idea on scikit-image's photos, no download)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..cluster import usable_cores
from .common import (DASK_OPTION, DASK_WORKERS_OPTION, Format, _cluster, _image_files, _method_names, _methods,
                     _progress, err, needs_extra, out)


# The default of evaluation.bench that `bench --help` shows, restated so that the CLI
# starts without importing the evaluation stack (scipy, the attacks); keep them in step.
def default_cache_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "robusthash" / "bench-hashes.sqlite"


def demo(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Only these methods (comma-separated)."),
    fmt: Format = typer.Option(Format.text, "--format"),
):
    """Attack scikit-image's bundled photos and show how each hasher copes (no download)."""
    from rich.table import Table

    from ..demo import DEMO_ATTACKS, DEMO_IMAGES, run_demo

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


CLASSICAL = "forbild,blockhash,pdq,phash,dhash,ahash,whash"


def bench(
    images: List[str] = typer.Option(
        ..., "--images", help="image files, folders, or .txt lists (one path per line, relative to the list)"
    ),
    method_names: str = typer.Option(CLASSICAL, "--methods", help="comma-separated methods (see `robusthash methods`)"),
    attack_spec: str = typer.Option(
        "table1,table2", "--attacks",
        help="comma-separated suites (table1, table2, strong, crop, pad, all; unseen, never in all) and/or specs "
             "such as 'RT(30)+JC(70)'",
    ),
    out_dir: Path = typer.Option(..., "--out", help="folder for report.md, results.json and det*.png"),
    sample: Optional[int] = typer.Option(None, "--sample", min=2, help="use N images spread evenly through the list"),
    fpr: float = typer.Option(0.01, "--fpr", min=1e-6, max=0.5, help="false positive rate that fixes τ"),
    seed: int = typer.Option(0, "--seed", help="seed of the random attacks and of the negative pairs"),
    workers: int = typer.Option(usable_cores(), "--workers", min=1, help="processes (default: all cores)"),
    dask: Optional[str] = DASK_OPTION,
    dask_workers: Optional[int] = DASK_WORKERS_OPTION,
    cache: Optional[Path] = typer.Option(None, "--cache", help=f"hash cache (default: {default_cache_path()})"),
    no_cache: bool = typer.Option(False, "--no-cache", help="compute everything, keep nothing"),
    fmt: Format = typer.Option(Format.text, "--format", help="summary as a text table or one JSON object per method"),
    adversarial: bool = typer.Option(
        False, "--adversarial", help="recall under realisable adversarial attack instead (docs/adversarial.md): "
        "--images is one list of originals, --sample of them are queried, the rest are distractors"),
    distractors: List[Path] = typer.Option([], "--distractors", help="with --adversarial: more lists of distractors"),
):
    """Run the evaluation protocol (docs/protocol.md) for several methods side by side.

    Every image gets every attack; every method hashes originals and copies. Reports
    discrimination (μ, σ, τ at --fpr), robustness (NHD_r), F1 at τ, rank-1, DET curves
    and hashing time, laid out like CMAA's Tables 3–7.

    Example: robusthash bench --images corpus/test.txt --sample 400 --out results/classical

    With --adversarial: recall@1 and @10 of each method, clean and under attack (white-box
    PGD for cmaa and aria, surrogate black-box for pdq, phash, blockhash, forbild), e.g.
    robusthash bench --adversarial --images corpus/test.txt --distractors corpus/train.txt
    --sample 100 --methods cmaa,aria,pdq,phash,blockhash,forbild --out results/adversarial
    """
    names = _method_names(method_names)
    if adversarial:
        _adversarial_bench(images, distractors, names, sample or 100, out_dir)
        return
    from ..evaluation.bench import BenchConfig, attack_cases, run_bench
    from ..evaluation.report import write_report
    from ..files import evenly_spaced

    try:
        attack_cases(attack_spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--attacks") from None
    paths = evenly_spaced(_image_files(images), sample)
    if len(paths) < 2:
        raise typer.BadParameter(f"found {len(paths)} image(s) in {' '.join(images)}; the protocol needs at least two",
                                 param_hint="--images")
    needs_extra("plots", "matplotlib", what="robusthash bench")  # the DET curves of the report
    config = BenchConfig(
        images=tuple(paths), methods=tuple(names),
        attacks=attack_spec, fpr=fpr, seed=seed, workers=workers,
        cache=None if no_cache else (cache or default_cache_path()),
    )
    description = f"attacking and hashing ({f'Dask {dask}' if dask else f'{workers} workers'})"
    with _cluster(dask, dask_workers) as executor, _progress(err.is_terminal) as progress:
        task = progress.add_task(description, total=len(paths))
        logged = [-1]

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
            # Without a terminal (CI, nohup, a log file) a bar cannot redraw: a line per 10%.
            # total is 0 when no listed image could be read: run_bench then says so.
            if not err.is_terminal and total and done * 10 // total > logged[0]:
                logged[0] = done * 10 // total
                err.print(f"{description}: {done}/{total} images", markup=False)

        try:
            result = run_bench(config, report, executor=executor)
        except ValueError as exc:
            err.print(f"error: {exc}")
            raise typer.Exit(1) from None
    command = "robusthash " + shlex.join(sys.argv[1:])
    written = write_report(result, out_dir, command=command)
    for path, why in result.skipped.items():
        err.print(f"skipped {path}: {why}", markup=False)
    _bench_summary(result, fmt)
    err.print(f"{len(result.images)} images, {len(result.config['cases'])} attacks, {result.computed} hashes "
              f"computed, {result.cached} cached, {result.seconds:.0f} s")
    out.print("wrote " + ", ".join(str(p) for p in written), markup=False)


def _adversarial_bench(images: list[str], distractors: list[Path], names: list[str], sample: int,
                       out_dir: Path) -> None:
    if len(images) != 1 or not images[0].endswith(".txt") or not Path(images[0]).is_file():
        raise typer.BadParameter("with --adversarial, --images is one .txt list of originals", param_hint="--images")
    needs_extra("train", "torch", what="robusthash bench --adversarial")
    from ..attacks.adversarial import WHITE_BOX
    from ..attacks.surrogates import SURROGATES
    from ..evaluation.adversarial_report import AdversarialBenchConfig, run, write_all

    unattackable = [n for n in names if n not in WHITE_BOX and n not in SURROGATES]
    if unattackable:
        raise typer.BadParameter(f"no adversarial attack for {', '.join(unattackable)}; white-box: "
                                 f"{', '.join(WHITE_BOX)}; black-box: {', '.join(SURROGATES)}", param_hint="--methods")
    config = AdversarialBenchConfig(originals_list=Path(images[0]), originals=sample, methods=tuple(names),
                                    distractor_lists=tuple(distractors))
    result = run(config, progress=lambda line: err.print(line, markup=False))
    written = write_all(result, out_dir, "robusthash " + shlex.join(sys.argv[1:]))
    for method, row in result["methods"].items():
        out.print(f"{method}: recall@1 clean {row['clean']['recall@1']:.3f}, adversarial "
                  f"{row['adversarial']['recall@1']:.3f}", markup=False)
    out.print("wrote " + ", ".join(str(p) for p in written), markup=False)


def _bench_summary(result, fmt: Format) -> None:
    from rich.table import Table

    table = Table("method", "τ (NHD)", "μ", "σ", "NHD_r avg", "F1 avg", "rank-1 avg", "ms/image")
    for m in result.methods:
        averages = {key: m.average(key) for key in ("nhd_r", "f1", "rank1")}
        record = {"method": m.method, "tau": m.tau, "mu": m.mu, "sigma": m.sigma, "ms_per_image": m.ms_per_image,
                  **{f"{k}_avg": v for k, v in averages.items()}}
        if fmt is Format.jsonl:
            out.file.write(json.dumps(record) + "\n")
        else:
            table.add_row(m.method, f"{m.tau:.4f}", f"{m.mu:.4f}", f"{m.sigma:.4f}", f"{averages['nhd_r']:.4f}",
                          f"{averages['f1']:.4f}", f"{averages['rank1']:.4f}", f"{m.ms_per_image:.2f}")
    if fmt is Format.text:
        out.print(table)
