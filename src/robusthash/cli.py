"""The ``robusthash`` command line. Thin: parse, call the library, format."""

from __future__ import annotations

import json
import shlex
import sys
from contextlib import ExitStack, contextmanager
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from PIL import Image
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from . import __version__
from .evaluation.bench import BenchConfig, attack_cases, default_cache_path, default_workers, run_bench
from .evaluation.report import write_report
from .files import evenly_spaced, scan_images
from .hashing import Hash, available_methods, get_hasher
from .hashing.base import DecodedImage
from .io import ImageError

# Markdown, not Rich markup, for every command group: help text has brackets (pip install
# 'robusthash[train]', [env: ROBUSTHASH_DB]) that Rich would take for style tags, and
# docstrings wrapped at 88 columns reflow.
HELP_MARKUP = "markdown"
app = typer.Typer(
    help="Identify images by robust hashes: hash and compare, register originals and search them, evaluate and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
)
# Tables piped to a file or pager get a comfortable width instead of Rich's 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, Enum):
    text = "text"
    jsonl = "jsonl"


def _method_names(spec: str, param_hint: str = "--methods") -> list[str]:
    """The comma-separated method names of an option, each checked against the registry."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in available_methods() and "=" not in name]
    if unknown:
        raise typer.BadParameter(f"unknown method {', '.join(map(repr, unknown))}; "
                                 f"available: {', '.join(available_methods())}, or NAME=PATH.onnx for an "
                                 f"exported model", param_hint=param_hint)
    for name in names:
        if "=" in name:  # an exported model: check it loads before any work starts
            try:
                get_hasher(name)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint=param_hint) from None
    return names


def _methods(spec: str) -> list:
    return [get_hasher(name) for name in _method_names(spec, "--method")]


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


DASK_OPTION = typer.Option(
    None, "--dask", help="hash on a Dask cluster: 'local' starts one on this machine, or a scheduler "
    "address such as tcp://scheduler:8786 (needs robusthash[distributed]; docs/distributed.md)",
)
DASK_WORKERS_OPTION = typer.Option(None, "--dask-workers", min=1,
                                   help="worker processes of --dask local (default: one per core)")


@contextmanager
def _cluster(address: Optional[str], workers: Optional[int]):
    """The executor --dask names (None without it); connection problems end the command cleanly."""
    if address is None:
        yield None
        return
    from .cluster import ClusterConfig, dask_executor

    try:
        config = ClusterConfig(address, workers)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dask") from None
    with ExitStack() as stack:
        try:
            executor = stack.enter_context(dask_executor(config))
        except RuntimeError as exc:  # Dask missing, or no scheduler at the address
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None
        yield executor


def _image_files(paths, recursive: bool = True) -> list[Path]:
    """The image files under ``paths``; every file a folder scan skips is reported on
    stderr (in full where it is an image this machine cannot read, else counted)."""
    scan = scan_images(paths, recursive=recursive)
    unreadable = scan.unreadable_images
    for path, why in unreadable:
        err.print(f"skipped {path}: {why}", markup=False)
    others = len(scan.skipped) - len(unreadable)
    if others:
        err.print(f"skipped {others} file(s) that are not images", markup=False)
    return scan.files


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

    Text: 'HEX  PATH' (PDQ adds its quality, 0-100; below 50 it is too weak to match).
    JSONL adds "text", the lossless form METHOD:VERSION:HEX[;SIDE-INFORMATION] that
    Hash.from_hex reads back whole. Unreadable files are reported on stderr and skipped;
    the exit code is 1 if any failed.
    """
    hashers = _methods(method)
    files = _image_files(paths, recursive=recursive)
    failed = 0
    show = err.is_terminal if progress is None else progress
    with _progress(show) as bar:
        task = bar.add_task("hashing", total=len(files))
        for path in files:
            try:
                image = DecodedImage(path)  # read once; decoded once per decoding the methods need
            except ImageError as exc:
                failed += 1
                err.print(f"[red]error:[/red] {exc}", markup=True)
                bar.advance(task)
                continue
            for hasher in hashers:
                try:
                    h = hasher.hash_pil(image.for_hasher(hasher))
                except ImageError as exc:
                    failed += 1
                    err.print(f"[red]error:[/red] {exc}", markup=True)
                    break
                except Exception as exc:  # noqa: BLE001 - one bad image must not stop the batch
                    failed += 1
                    err.print(f"[red]error:[/red] {path}: {hasher.name} failed ({type(exc).__name__}: {exc})")
                    continue
                record = {"path": str(path), "method": hasher.name, "version": hasher.version,
                          "bits": h.nbits, "hash": str(h), "text": h.to_text()}
                quality = h.extra.get("quality") if isinstance(h, Hash) else None
                shown = f"quality {quality:3d}  " if quality is not None else ""
                if quality is not None:
                    record["quality"] = quality
                    if (weak := hasher.weakness(h)):
                        record["weak"] = weak
                label = f"{hasher.name}  " if len(hashers) > 1 else ""
                _emit(fmt, record, f"{h}  {label}{shown}{path}")
            bar.advance(task)
    if failed:
        err.print(f"{failed} of {len(files)} file(s) could not be hashed")
        raise typer.Exit(1)
    if not files:
        err.print("no image files found")
        raise typer.Exit(1)


@app.command()
def compare(
    query: Path = typer.Argument(..., help="The copy to check (the query)."),
    original: Path = typer.Argument(..., help="The original it may be a copy of."),
    method: str = typer.Option("forbild", "--method", "-m", help="Method name, or several separated by commas."),
    fmt: Format = typer.Option(Format.text, "--format"),
):
    """Compare two images: distance and the method's match decision.

    QUERY first, then ORIGINAL, as in `explain` and the library (hasher.compare(query,
    original)). For forbild the result does not depend on the order."""
    from .db import examine

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


@app.command()
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
    from .compare import ImageComparator
    from .compare.picture import explanation_picture

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


JPEG_SAVE_QUALITY = 95


@app.command()
def attack(
    spec: str = typer.Argument(..., metavar="SPEC", help="Attack spec, e.g. 'RT(30)+JC(70)'. Quote it in the shell."),
    source: Path = typer.Argument(..., metavar="IN", help="Image to attack (any format the loader reads)."),
    target: Path = typer.Argument(..., metavar="OUT", help="Where to write the result; format from the extension."),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed of the random steps (GN, SN, SPN, SA): same seed, same pixels."
    ),
):
    """Apply an attack spec to one image and save the result.

    Steps are joined with + and applied left to right; what was applied is printed on stderr (for SA, what it drew).

    Saving is itself lossy for JPEG: a .jpg OUT is written at quality 95. Use .png to keep the attacked pixels exactly.

    Examples:

    robusthash attack 'RT(30)+JC(70)' photo.jpg rotated.png

    robusthash attack 'SHR(X,0.2)' photo.jpg sheared.png

    robusthash attack 'CROP(0.8,0,0)+PAD(0.1,white)' photo.jpg framed.png

    robusthash attack SA photo.jpg strong.png --seed 7

    Codes, parameters and CMAA's grids: 'robusthash attacks' and docs/attacks.md.
    """
    from .attacks import AttackSpecError, parse
    from .io import load_pil

    try:
        parsed = parse(spec)
    except AttackSpecError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", markup=True)
        err.print("Run 'robusthash attacks' for the codes and their parameters.")
        raise typer.Exit(2) from None
    suffix = target.suffix.lower()
    if suffix not in Image.registered_extensions():
        err.print(f"[red]error:[/red] {escape(str(target))}: unknown image format for extension {suffix!r}")
        raise typer.Exit(2)
    try:
        image = load_pil(source)
    except ImageError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", markup=True)
        raise typer.Exit(1) from None
    result = parsed(image, seed=seed)
    options = {"quality": JPEG_SAVE_QUALITY} if Image.registered_extensions()[suffix] == "JPEG" else {}
    try:
        result.save(target, **options)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {escape(str(target))}: {escape(str(exc))}", markup=True)
        raise typer.Exit(1) from None
    applied = ", ".join(parsed.plan(seed)) or "nothing (SA drew no attack)"
    err.print(f"applied {applied}  (spec {parsed.spec}, seed {seed})", markup=False)
    saved = f" at JPEG quality {JPEG_SAVE_QUALITY}" if options else ""
    size = f"{result.width}x{result.height}{saved}  (from {image.width}x{image.height})"
    err.print(f"wrote {target}  {size}", markup=False)


def _grid_text(specs: tuple[str, ...]) -> str:
    """CMAA's grid of one Table 1 family, compactly: '0.7 0.8 ...' or 'X|Y × -0.3 ... 0.3'."""
    args = [spec[spec.index("(") + 1 : -1].split(",") for spec in specs]
    if len(args[0]) == 2:  # axis and value
        axes = dict.fromkeys(a[0] for a in args)
        values = dict.fromkeys(a[1] for a in args)
        return f"{'|'.join(axes)} × {' '.join(values)}"
    return " ".join(a[0] for a in args)


def _fraction(text: str, name: str) -> float:
    """'8/255' or '0.5' → a number, for budgets quoted in 8-bit levels."""
    try:
        top, _, bottom = text.partition("/")
        value = float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        raise typer.BadParameter(f"{text!r} is not a number or a fraction such as 8/255", param_hint=name) from None
    if value <= 0:
        raise typer.BadParameter(f"{text!r} must be > 0", param_hint=name)
    return value


@app.command("attack-adv")
def attack_adv(
    source: Path = typer.Argument(..., metavar="IN", help="The image to perturb (its hash is what the attack moves)."),
    target_file: Path = typer.Argument(..., metavar="OUT",
                                       help="Where to write the adversarial file (.jpg: JPEG as modelled; .png)."),
    target: Optional[Path] = typer.Option(None, "--target", help="Targeted: pull IN's hash onto this image's hash."),
    invert: bool = typer.Option(False, "--invert", help="Hash inversion: from flat grey, an image with IN's exact hash."),
    method: str = typer.Option("cmaa", "--method", "-m", help="A learned hasher with shipped weights: cmaa, aria."),
    norm: str = typer.Option("linf", "--norm", help="linf or l2"),
    eps: str = typer.Option("8/255", "--eps", help="Budget: per pixel for linf; for l2, for a 224×224 image "
                                                    "(scaled by √(pixels/224²))."),
    steps: int = typer.Option(50, "--steps", min=1, help="PGD iterations (inversion: at most 1000 by default)."),
    step_size: str = typer.Option("4/255", "--step-size", help="linf step, halved at 25%, 50% and 75% of the steps."),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG quality of OUT, modelled in the attack."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random start within the budget."),
    fmt: Format = typer.Option(Format.text, "--format", help="text or one JSON object"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr."),
):
    """White-box adversarial attack on a learned hash (ARIA): PGD in IN's own pixels, through
    a differentiable JPEG and the model's resize; OUT is saved as a real file and hashed
    again, and what the hasher says about OUT is reported.

    Examples:

    robusthash attack-adv photo.jpg evades.jpg                       (untargeted, ε = 8/255)

    robusthash attack-adv photo.jpg collides.jpg --target other.jpg  (targeted)

    robusthash attack-adv photo.jpg evades.jpg --norm l2 --eps 0.5

    robusthash attack-adv photo.jpg inverted.png --invert             (hash inversion)

    Needs torch (pip install 'robusthash[train]'). docs/adversarial.md.
    """
    from .io import load_pil

    if norm not in ("linf", "l2"):
        raise typer.BadParameter(f"{norm!r}: use linf or l2", param_hint="--norm")
    suffix = target_file.suffix.lower()
    if suffix not in (".jpg", ".jpeg", ".png"):
        raise typer.BadParameter(f"{target_file}: OUT must be .jpg, .jpeg or .png", param_hint="OUT")
    if invert and target:
        raise typer.BadParameter("--invert and --target exclude each other", param_hint="--invert")
    budget, step = _fraction(eps, "--eps"), _fraction(step_size, "--step-size")
    try:
        import torch  # noqa: F401

        from .attacks import adversarial as adv
    except ImportError as exc:
        err.print(f"error: adversarial attacks need torch ({exc}); pip install 'robusthash[train]'", markup=False)
        raise typer.Exit(1) from None
    if method not in adv.WHITE_BOX or method not in available_methods():
        raise typer.BadParameter(f"{method!r} has no white-box model here; white-box methods: "
                                 f"{', '.join(m for m in adv.WHITE_BOX if m in available_methods())}",
                                 param_hint="--method")
    try:
        image = load_pil(source)
        wanted = load_pil(target) if target else None
    except ImageError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", markup=True)
        raise typer.Exit(1) from None
    jpeg_quality = quality if suffix in (".jpg", ".jpeg") else None
    hasher = get_hasher(method)
    fingerprint = adv.shipped_fingerprint(jpeg_quality, method)
    x = adv.to_tensor(image)
    total = 1000 if invert and steps == 50 else steps
    with _progress(err.is_terminal if progress is None else progress) as bar:
        task = bar.add_task("attacking", total=total)

        def report(i: int, loss: float) -> None:
            bar.update(task, completed=i, description=f"attacking, loss {loss:.3f}")

        if invert:
            result, taken = adv.invert(fingerprint, x, steps=total, progress=report)
        else:
            config = adv.PGDConfig(norm=norm, eps=budget, steps=steps, step_size=step, jpeg_quality=jpeg_quality,
                                   seed=seed)
            result = (adv.targeted(fingerprint, x, adv.to_tensor(wanted), config, report) if wanted is not None
                      else adv.untargeted(fingerprint, x, config, report))
    try:
        adv.save(result, target_file, jpeg_quality)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {escape(str(target_file))}: {escape(str(exc))}", markup=True)
        raise typer.Exit(1) from None
    saved = hasher.hash(target_file)
    to_source = saved - hasher.hash_pil(image)
    tau = round(hasher.threshold * hasher.bits)
    record: dict = {"source": str(source), "out": str(target_file), "method": method, "threshold_bits": tau,
                    "distance_to_source": to_source, "matches_source": to_source <= tau}
    if invert:
        record |= {"attack": "inversion", "steps": taken, "exact": to_source == 0}
        text = (f"hash inversion → {target_file}: {taken} steps, {method} distance to {source} {to_source} bits"
                + (" (exact)" if to_source == 0 else f" (not exact after {taken} steps)"))
    else:
        # The budget bounds the perturbation before saving; the file also carries JPEG's own error.
        delta, in_file = result - x, adv.to_tensor(load_pil(target_file)) - x
        record |= {"attack": "targeted" if target else "untargeted", "norm": norm, "eps": budget, "steps": steps,
                   "linf_255": round(float(delta.abs().max()) * 255, 2), "l2": round(float(delta.norm()), 3),
                   "psnr_db": round(float(-10 * torch.log10((in_file**2).mean().clamp_min(1e-12))), 2)}
        text = (f"{record['attack']} PGD {norm} ε={eps}, {steps} steps → {target_file}"
                f"{f' (JPEG q{jpeg_quality})' if jpeg_quality else ''}: {method} distance to {source} {to_source} bits "
                f"(τ {tau}: {'still matches' if to_source <= tau else 'no longer matches'})")
        if wanted is not None:
            to_target = saved - hasher.hash_pil(wanted)
            record |= {"target": str(target), "distance_to_target": to_target, "matches_target": to_target <= tau}
            text += f"; to {target} {to_target} bits ({'matches' if to_target <= tau else 'does not match'})"
        text += (f"; perturbation ℓ∞ {record['linf_255']}/255, ℓ2 {record['l2']}; "
                 f"file PSNR {record['psnr_db']} dB against IN")
    _emit(fmt, record, text)


@app.command("attacks")
def attacks_command(fmt: Format = typer.Option(Format.text, "--format", help="text table or one JSON object per line")):
    """List the attack codes, their parameters, CMAA's Table 1 grids and the named suites."""
    from .attacks import CODES, SUITES
    from .attacks.suites import TABLE1_GRID

    if fmt is Format.jsonl:
        for code in CODES.values():
            params = [{"name": p.name, "rule": p.rule, **({} if p.required else {"default": p.default})}
                      for p in code.params]
            record = {"code": code.code, "title": code.title, "params": params, "random": code.random,
                      "table1": list(TABLE1_GRID.get(code.code, ()))}
            out.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    table = Table("code", "attack", "parameters", "Table 1 grid")
    for code in CODES.values():
        params = "\n".join(f"{p.name}: {p.rule}" + ("" if p.required else f" (default {p.write(p.default)})")
                           for p in code.params)
        grid = _grid_text(TABLE1_GRID[code.code]) if code.code in TABLE1_GRID else ""
        table.add_row(*(Text(cell) for cell in (code.signature(), code.title, params, grid)))  # no markup: [cx]
    out.print(table)
    out.print("Join steps with +, applied left to right: RT(30)+JC(70). Random steps: GN, SN, SPN, SA (use --seed).")
    out.print("Suites: " + ", ".join(f"{name} ({len(cases)})" for name, cases in SUITES.items()), markup=False)


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


CLASSICAL = "forbild,blockhash,pdq,phash,dhash,ahash,whash"


@app.command()
def bench(
    images: List[str] = typer.Option(
        ..., "--images", help="image files, folders, or .txt lists (one path per line, relative to the list)"
    ),
    method_names: str = typer.Option(CLASSICAL, "--methods", help="comma-separated methods (see `robusthash methods`)"),
    attack_spec: str = typer.Option(
        "table1,table2", "--attacks",
        help="comma-separated suites (table1, table2, strong, crop, pad, all) and/or specs such as 'RT(30)+JC(70)'",
    ),
    out_dir: Path = typer.Option(..., "--out", help="folder for report.md, results.json and det*.png"),
    sample: Optional[int] = typer.Option(None, "--sample", min=2, help="use N images spread evenly through the list"),
    fpr: float = typer.Option(0.01, "--fpr", min=1e-6, max=0.5, help="false positive rate that fixes τ"),
    seed: int = typer.Option(0, "--seed", help="seed of the random attacks and of the negative pairs"),
    workers: int = typer.Option(default_workers(), "--workers", min=1, help="processes (default: all cores)"),
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
    try:
        attack_cases(attack_spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--attacks") from None
    paths = evenly_spaced(_image_files(images), sample)
    if len(paths) < 2:
        raise typer.BadParameter(f"found {len(paths)} image(s) in {' '.join(images)}; the protocol needs at least two",
                                 param_hint="--images")
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
            if not err.is_terminal and done * 10 // total > logged[0]:
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
    try:
        from .attacks.surrogates import SURROGATES
        from .evaluation.adversarial_report import AdversarialBenchConfig, run, write_all
    except ImportError as exc:
        err.print(f"error: adversarial attacks need torch ({exc}); pip install 'robusthash[train]'", markup=False)
        raise typer.Exit(1) from None
    from .attacks.adversarial import WHITE_BOX

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


db_app = typer.Typer(
    help="The reference database: register originals, then ask whether an image is one of them.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)
app.add_typer(db_app, name="db")

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
    from .db import Admission
    from .information import DEFAULT_RULE

    return Admission(None if allow_uninformative else DEFAULT_RULE, min_quality)


def _open_db(db: str, methods: Optional[str] = None, admission=None):
    from .db import Admission, ReferenceDB
    from .db.milvus import is_milvus_url, parse_milvus_url

    try:
        store = parse_milvus_url(db).store if is_milvus_url(db) else db
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    if not store.startswith(("postgresql://", "postgres://")) and not Path(store).exists():
        raise typer.BadParameter(f"no database at {store}; create it with `robusthash db init --db {db}`",
                                 param_hint="--db")
    names = _method_names(methods) if methods else None
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
    from .db import ReferenceDB

    names = _method_names(methods)
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
    try:
        metadata = json.loads(meta) if meta else {}
        if not isinstance(metadata, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise typer.BadParameter(f"--meta must be a JSON object ({exc})", param_hint="--meta") from None
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
    k: int = typer.Option(5, "-k", min=1, help="show at least the k nearest (every match is shown)"),
    fmt: Format = typer.Option(Format.text, "--format", help="text table or one JSON object per image and method"),
    allow_uninformative: bool = ALLOW_UNINFORMATIVE_OPTION,
    min_quality: Optional[int] = MIN_QUALITY_OPTION,
):
    """Is this image one of mine? Ranked matches, distances, each method's decision.

    A query with almost nothing in it (flat colour, tiny, noise), or whose hash is below
    its quality floor, matches nothing; its nearest images are still listed.
    Exit code 0 if every query matched something, 1 otherwise (or on a bad file), 2 when
    a method is not registered in the database."""
    failed = unmatched = 0
    with _open_db(db, admission=_admission(allow_uninformative, min_quality)) as ref:
        chosen = _method_names(methods) if methods else None
        problems = [why for why in map(ref.unregistered, chosen or ref.methods) if why]
        if problems:
            for why in problems:
                err.print(f"error: {why}", markup=False)
            raise typer.Exit(2)
        for path in _image_files(images):
            try:
                results = ref.query(path, methods=chosen, k=k)
            except ImageError as exc:
                failed += 1
                err.print(f"error: {exc}", markup=False)
                continue
            unmatched += not any(r.matched for r in results)
            for result in results:
                _print_query(result, fmt)
    if failed or unmatched:
        raise typer.Exit(1)


def _print_query(result, fmt: Format) -> None:
    if fmt is Format.jsonl:
        out.file.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        return
    verdict = f"MATCH ({len(result.matched)})" if result.matched else "no match"
    if result.refused:
        verdict += f": the query {result.refused}"
    if result.quality is not None:
        verdict += f" (quality {result.quality})"
    if result.montage:
        verdict += ", MONTAGE: several sources through different parts of the query"
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
    """Images, hashes per method, calibrations."""
    with _open_db(db) as ref:
        stats = ref.stats()
    if fmt is Format.jsonl:
        out.file.write(json.dumps(stats) + "\n")
        return
    out.print(f"{stats['engine']} database, {stats['images']} images; registering with "
              f"{', '.join(stats['registering_with'])}", markup=False)
    table = Table("method", "hashes", "images", "threshold (NHD)", "calibrated")
    for key, entry in stats["methods"].items():
        c = entry["calibration"]
        table.add_row(key, str(entry["hashes"]), str(entry["images"]), f"{c['threshold']:.4f}" if c else "default",
                      f"{c['fpr']:.2%} FPR, {c['pairs']} pairs, {c['computed_at']}" if c else "—")
    out.print(table)


@db_app.command("calibrate")
def db_calibrate(
    db: str = DB_OPTION,
    methods: Optional[str] = typer.Option(None, "--methods", "-m", help="default: the database's methods"),
    fpr: float = typer.Option(0.01, "--fpr", min=1e-6, max=0.5, help="false positive rate between distinct images"),
):
    """Set each method's threshold at a false positive rate on this collection.

    τ at --fpr over pairs of distinct registered images. forbild keeps its two-step
    rule; its calibrated value is informative."""
    with _open_db(db) as ref:
        for method in (_method_names(methods) if methods else ref.methods):
            try:
                c = ref.calibrate(method, fpr=fpr)
            except ValueError as exc:
                err.print(f"error: {exc}", markup=False)
                raise typer.Exit(1) from None
            out.print(f"{method}: τ = {c.threshold:.4f} NHD ({c.threshold * ref.hashers[method].bits:g} bits) "
                      f"at {c.fpr:.2%} FPR from {c.pairs} pairs of {c.images} images", markup=False)


@app.command()
def serve(
    db: str = DB_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    api_keys: List[str] = typer.Option(
        [], "--api-key", envvar="ROBUSTHASH_API_KEY", show_default=False,
        help="accepted API key; repeat for several [env: ROBUSTHASH_API_KEY, space-separated; "
             "prefer it: command lines are visible to other users]",
    ),
    no_auth: bool = typer.Option(False, "--no-auth", help="serve without API keys (anyone who can connect may "
                                                          "register, query and delete)"),
    methods: Optional[str] = typer.Option(None, "--methods", "-m", help="default: the database's methods"),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001, help="largest request body, in MiB"),
    max_megapixels: float = typer.Option(50.0, "--max-megapixels", min=0.001,
                                         help="largest image (width × height), checked before decoding"),
    rate_limit: int = typer.Option(120, "--rate-limit", min=0, help="requests per minute per API key; 0: no limit"),
    thumbnails: Optional[Path] = typer.Option(None, "--thumbnails",
                                              help="folder for thumbnails of uploads (default: DB.thumbnails/ "
                                                   "for SQLite, none for PostgreSQL)"),
):
    """Serve the database over HTTP: the /v1 API and a page to drop an image on.

    API docs at /docs, the page at /, details in docs/service.md."""
    import uvicorn

    from .service import ServiceConfig, create_app

    keys = tuple(k for entry in api_keys for k in entry.split() if k)
    if not keys and not no_auth:
        raise typer.BadParameter("give an API key (--api-key or $ROBUSTHASH_API_KEY), or --no-auth to serve "
                                 "without one", param_hint="--api-key")
    if keys and no_auth:
        raise typer.BadParameter("--no-auth and an API key (--api-key or $ROBUSTHASH_API_KEY) contradict each "
                                 "other; give one", param_hint="--no-auth")
    if no_auth:
        err.print("warning: --no-auth: anyone who can connect may register, query and delete images", markup=False)
    _open_db(db, methods).close()  # the db commands' checks and messages, before the server starts
    try:
        config = ServiceConfig(
            db=db, methods=tuple(_method_names(methods)) if methods else None,
            api_keys=keys, allow_anonymous=no_auth, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_pixels=int(max_megapixels * 1_000_000), rate_limit=rate_limit, thumbnail_dir=thumbnails,
        )
        service = create_app(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    err.print(f"serving {db} on http://{host}:{port}/ (API docs at /docs)", markup=False)
    uvicorn.run(service, host=host, port=port, log_level="info", server_header=False)


train_app = typer.Typer(help="Train learned hashers (needs the `train` extra: pip install 'robusthash[train]').",
                        no_args_is_help=True, rich_markup_mode=HELP_MARKUP)
app.add_typer(train_app, name="train")


@train_app.command("cmaa")
def train_cmaa(
    data: Path = typer.Option(..., "--data", help="the training list, e.g. corpus/train.txt (test.txt is refused)"),
    objects: Optional[Path] = typer.Option(None, "--objects", help="folder of RGBA cut-outs to composite, e.g. corpus/objects"),
    run_dir: Path = typer.Option(..., "--out", help="run folder: checkpoint.safetensors, checkpoint.json, log.jsonl"),
    model: str = typer.Option("small", "--model", help="small (CPU, hours), paper (ViT-S/16, GPU) or tiny (smoke test)"),
    ablation: str = typer.Option("full", "--ablation", help="full, or CMAA Table 8's a (L_C+L_Q), b (+L_D), c (+L_R), d (no L_Q)"),
    steps: int = typer.Option(20_000, "--steps", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=2),
    lr: float = typer.Option(0.01, "--lr", min=0.0),
    seed: int = typer.Option(0, "--seed"),
    loader_workers: int = typer.Option(1, "--loader-workers", min=0, help="processes making views"),
    checkpoint_every: int = typer.Option(250, "--checkpoint-every", min=1),
):
    """Train CMAA (docs/models/cmaa.md); resumes from --out if it holds a checkpoint."""
    try:
        from .models.train import TrainConfig, read_training_list
        from .models.train import train as run_training
    except ImportError as exc:
        err.print(f"error: training needs torch and safetensors ({exc}); pip install 'robusthash[train]'", markup=False)
        raise typer.Exit(1) from None
    config = TrainConfig(model=model, ablation=ablation, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                         loader_workers=loader_workers, checkpoint_every=checkpoint_every)
    try:
        config.model_config()
        photos = read_training_list(data)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    cutouts = sorted(objects.glob("*.png")) if objects else []
    err.print(f"{len(photos)} photos, {len(cutouts)} cut-outs, model {model}, ablation {ablation}, {steps} steps")
    weights = _with_training_progress(steps, "total",
                                      lambda report: run_training(photos, cutouts, run_dir, config, progress=report))
    out.print(f"wrote {weights}", markup=False)


def _with_training_progress(steps: int, loss: str, run):
    """``run(report)`` under a progress bar (a JSON line every 100 steps when stderr is
    not a terminal); a ValueError from it ends the command with its message."""
    with _progress(err.is_terminal) as bar:
        task = bar.add_task("training", total=steps)

        def report(step: int, total: int, record: dict) -> None:
            bar.update(task, completed=step, description=f"training, loss {record[loss]:.3f}")
            if not err.is_terminal and (step % 100 == 0 or step == total):
                err.print(json.dumps(record), markup=False)

        try:
            return run(report)
        except ValueError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None


def _training_split(data: Path, objects: Optional[Path]) -> tuple[list[Path], list[Path]]:
    """The photos of a training list (the test split is refused) and the train share of
    the cut-outs in ``objects`` (``segments.montage.object_split``)."""
    from .models.train import read_training_list
    from .segments.montage import object_split

    try:
        photos = read_training_list(data)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from None
    cutouts = [p for p in sorted(objects.glob("*.png")) if object_split(p) == "train"] if objects else []
    return photos, cutouts


@train_app.command("aria")
def train_aria(
    data: Path = typer.Option(..., "--data", help="the training list, e.g. corpus/train.txt (test.txt is refused)"),
    objects: Optional[Path] = typer.Option(None, "--objects", help="folder of RGBA cut-outs; only the train share is used"),
    run_dir: Path = typer.Option(..., "--out", help="run folder (resumes from its checkpoint)"),
    init: Optional[Path] = typer.Option(None, "--init", help="weights to fine-tune (default: the shipped cmaa)"),
    eps: str = typer.Option("4/255", "--eps", help="ℓ∞ radius of the inner maximisation"),
    pgd_steps: int = typer.Option(3, "--pgd-steps", min=1, help="PGD steps of the inner maximisation (1 overfits)"),
    steps: int = typer.Option(500, "--steps", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    lr: float = typer.Option(0.005, "--lr", min=0.0),
    seed: int = typer.Option(0, "--seed"),
    loader_workers: int = typer.Option(1, "--loader-workers", min=0),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1),
):
    """Fine-tune CMAA with ARIA's robust contrastive training (docs/adversarial.md):
    each batch's online views are first attacked by a few PGD steps that raise the
    contrastive loss, then all of CMAA's losses train on them."""
    try:
        from .hashing.learned import shipped_model
        from .models.aria import AriaConfig
        from .models.train import TrainConfig
        from .models.train import train as run_training
    except ImportError as exc:
        err.print(f"error: training needs torch and safetensors ({exc}); pip install 'robusthash[train]'", markup=False)
        raise typer.Exit(1) from None
    radius = _fraction(eps, "--eps")
    start = init or shipped_model("cmaa-small.safetensors")
    if not start.is_file():
        raise typer.BadParameter(f"{start}: no such weights file", param_hint="--init")
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, loader_workers=loader_workers,
                         checkpoint_every=checkpoint_every, init=str(start),
                         adversarial=AriaConfig(eps=radius, steps=pgd_steps, step_size=2.5 * radius / pgd_steps))
    photos, cutouts = _training_split(data, objects)
    err.print(f"{len(photos)} photos, {len(cutouts)} train cut-outs, from {start}, ε {eps}, {pgd_steps} PGD steps, "
              f"{steps} steps")
    weights = _with_training_progress(steps, "total",
                                      lambda report: run_training(photos, cutouts, run_dir, config, progress=report))
    out.print(f"wrote {weights}; export with: robusthash export {run_dir} --out aria.onnx --calibrate {data}",
              markup=False)


@train_app.command("objectnet")
def train_objectnet(
    data: Path = typer.Option(..., "--data", help="the training list, e.g. corpus/train.txt (test.txt is refused)"),
    objects: Path = typer.Option(..., "--objects", help="folder of RGBA cut-outs; only the train share is used"),
    onnx_path: Path = typer.Option(..., "--out", help="the ONNX file to write, e.g. objectnet.onnx"),
    steps: int = typer.Option(6000, "--steps", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    seed: int = typer.Option(0, "--seed"),
):
    """Train ObjectNet, the network that marks pasted objects for `segments` (docs/segments.md)."""
    try:
        from .models.objectnet import ObjectNetConfig, export_onnx
        from .models.objectnet import train as run_training
    except ImportError as exc:
        err.print(f"error: training needs torch and onnx ({exc}); pip install 'robusthash[train]'", markup=False)
        raise typer.Exit(1) from None
    photos, cutouts = _training_split(data, objects)
    config = ObjectNetConfig(steps=steps, batch_size=batch_size, seed=seed)
    err.print(f"{len(photos)} photos, {len(cutouts)} train cut-outs, {steps} steps")
    run_dir = onnx_path.with_suffix(".run")
    model = _with_training_progress(steps, "loss",
                                    lambda report: run_training(photos, cutouts, run_dir, config, progress=report))
    export_onnx(model, onnx_path, {"steps": steps, "batch_size": batch_size, "seed": seed,
                                   "data": "corpus train split + train cut-outs (segments.montage.object_split)"})
    out.print(f"wrote {onnx_path} (log in {run_dir})", markup=False)


@train_app.command("comparator")
def train_comparator(
    data: Path = typer.Option(..., "--data", help="the training list, e.g. corpus/train.txt (test.txt is refused)"),
    objects: Path = typer.Option(..., "--objects", help="folder of RGBA cut-outs; only the train share is used"),
    run_dir: Path = typer.Option(..., "--out", help="run folder: pairs, logs, comparator.onnx and weights"),
    pairs: int = typer.Option(12_000, "--pairs", min=3, help="aligned training pairs drawn (a third of each class)"),
    steps: int = typer.Option(3000, "--steps", min=1, help="standard training steps"),
    robust_steps: int = typer.Option(1500, "--robust-steps", min=0, help="robust fine-tuning steps (0: none)"),
    eps: str = typer.Option("8/255", "--eps", help="ℓ∞ radius of the robust fine-tuning"),
    pgd_steps: int = typer.Option(3, "--pgd-steps", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(2, "--workers", min=1, help="processes aligning the training pairs"),
):
    """Train the image comparator (docs/comparator.md): synthetic pairs from the train
    split, standard training, then ARIA's robust fine-tuning against PGD on the query, then
    each model's heatmap threshold on fresh train pairs. Stages already in --out are kept."""
    try:
        from .models.comparator import ComparatorConfig
        from .models.train_comparator import CALIBRATION_PAIRS, fit, training_pairs
    except ImportError as exc:
        err.print(f"error: training needs torch and onnx ({exc}); pip install 'robusthash[train]'", markup=False)
        raise typer.Exit(1) from None
    photos, cutouts = _training_split(data, objects)
    standard = ComparatorConfig(steps=steps, batch_size=batch_size, seed=seed)
    robust = ComparatorConfig(steps=robust_steps, batch_size=batch_size, seed=seed + 1, lr=standard.lr / 3,
                              epsilon=_fraction(eps, "--eps"), pgd_steps=pgd_steps)
    err.print(f"{len(photos)} photos, {len(cutouts)} train cut-outs, {pairs} pairs, {steps} standard + "
              f"{robust_steps} robust steps (ε {eps}, {pgd_steps} PGD steps)")
    with _progress(err.is_terminal) as bar:
        task = bar.add_task("aligning pairs", total=pairs)
        aligned = training_pairs(photos, cutouts, run_dir, pairs, seed, standard, workers,
                                 progress=lambda done, total: bar.update(task, completed=done))
        task = bar.add_task("aligning calibration pairs", total=CALIBRATION_PAIRS)
        calibration = training_pairs(photos, cutouts, run_dir, CALIBRATION_PAIRS, seed + 1, standard, workers,
                                     progress=lambda done, total: bar.update(task, completed=done), name="calibration")
    stages = {"standard": steps, "robust": robust_steps}

    def run(report):
        return fit(aligned, run_dir, standard, robust, calibration,
                   progress=lambda stage, step, total, record: report(step + (steps if stage == "robust" else 0),
                                                                      sum(stages.values()), record))

    model = _with_training_progress(sum(stages.values()) if robust_steps else steps, "loss", run)
    out.print(f"wrote {model} (weights and logs in {run_dir})", markup=False)


@app.command("export")
def export_model(
    run_dir: Path = typer.Argument(..., help="a training run folder (robusthash train cmaa --out)"),
    onnx_path: Path = typer.Option(..., "--out", help="the ONNX file to write, e.g. cmaa-small.onnx"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="also write the weights here (safetensors: int8 matrices with per-row scales, for fine-tuning)"),
    calibrate_on: Optional[Path] = typer.Option(None, "--calibrate", help="train list whose photos set τ at 1% FPR"),
    calibration_images: int = typer.Option(400, "--calibration-images", min=10),
    int8: bool = typer.Option(True, "--int8/--fp32", help="quantise weights to int8 (~4× smaller, faster)"),
):
    """Export a trained model to ONNX for hashing without torch (docs/models/cmaa.md)."""
    try:
        from .models.export import calibrate, export_onnx, load_trained, quantize_int8, save_weights, set_metadata
        from .models.train import read_training_list
    except ImportError as exc:
        err.print(f"error: exporting needs torch and onnx ({exc}); pip install 'robusthash[train]'", markup=False)
        raise typer.Exit(1) from None
    if not (run_dir / "checkpoint.json").is_file():
        raise typer.BadParameter(f"{run_dir} holds no checkpoint", param_hint="RUN_DIR")
    try:
        photos = read_training_list(calibrate_on)[:calibration_images] if calibrate_on else []
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--calibrate") from None
    model, meta = load_trained(run_dir)
    provenance = {"run": run_dir.name, "step": meta["step"], "train": meta["train"],
                  "data": "corpus train split (../shared/corpus/build_corpus.py)"}
    fp32 = onnx_path.with_name(onnx_path.stem + ".fp32.onnx") if int8 else onnx_path
    export_onnx(model, fp32, provenance)
    if int8:
        quantize_int8(fp32, onnx_path)
        fp32.unlink()
    if photos:
        threshold = calibrate(onnx_path, photos)
        set_metadata(onnx_path, {"robusthash.threshold": json.dumps(threshold)})
        err.print(f"τ = {threshold['bits']}/{model.config.hash_bits} bits ({threshold['source']})", markup=False)
    if weights:
        save_weights(model, weights, provenance)
        out.print(f"wrote {weights}", markup=False)
    out.print(f"wrote {onnx_path}", markup=False)


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
