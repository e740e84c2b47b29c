"""``robusthash attack`` (one attack spec on one image), ``attacks`` (the codes) and
``attack-adv`` (white-box adversarial attacks on a learned hash)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import Format, _emit, _fraction, _progress, err, needs_extra, out


JPEG_SAVE_QUALITY = 95


def attack(
    spec: str = typer.Argument(..., metavar="SPEC", help="Attack spec, e.g. 'RT(30)+JC(70)'. Quote it in the shell."),
    source: Path = typer.Argument(..., metavar="IN", help="Image to attack (any format the loader reads)."),
    target: Path = typer.Argument(..., metavar="OUT", help="Where to write the result; format from the extension."),
    seed: int = typer.Option(
        0, "--seed", min=0,
        help="Seed of the random steps (GN, SN, SPN, SA, PERSP, TEXT, EMOJI): same seed, same pixels.",
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

    robusthash attack 'GREY+BA(0.5)+JC(60)' photo.jpg dark.png

    robusthash attack 'TEXT(0.1,BOTH)+EMOJI(3,0.15)' photo.jpg meme.png --seed 2

    Codes, parameters and CMAA's grids: 'robusthash attacks' and docs/attacks.md.
    """
    from PIL import Image

    from ..attacks import AttackSpecError, parse
    from ..io import ImageError, load_pil

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
    from ..hashing import available_methods, get_hasher
    from ..io import ImageError, load_pil

    if norm not in ("linf", "l2"):
        raise typer.BadParameter(f"{norm!r}: use linf or l2", param_hint="--norm")
    suffix = target_file.suffix.lower()
    if suffix not in (".jpg", ".jpeg", ".png"):
        raise typer.BadParameter(f"{target_file}: OUT must be .jpg, .jpeg or .png", param_hint="OUT")
    if invert and target:
        raise typer.BadParameter("--invert and --target exclude each other", param_hint="--invert")
    budget, step = _fraction(eps, "--eps"), _fraction(step_size, "--step-size")
    needs_extra("train", "torch", what="robusthash attack-adv")
    import torch

    from ..attacks import adversarial as adv

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


def attacks_command(
    fmt: Format = typer.Option(Format.text, "--format", help="text table or one JSON object per line"),
    suite_name: Optional[str] = typer.Option(
        None, "--suite", metavar="NAME",
        help="list one suite's cases (family and spec) instead of the codes, e.g. --suite unseen",
    ),
):
    """List the attack codes, their parameters, CMAA's Table 1 grids and the named suites.

    With --suite NAME, the cases of that suite instead (table1, table2, strong, crop, pad, all, unseen).
    The unseen suite is never used in training, tuning or model selection (docs/attacks.md).
    """
    from rich.table import Table
    from rich.text import Text

    from ..attacks import CODES, SUITES
    from ..attacks.suites import TABLE1_GRID

    if suite_name is not None:
        cases = SUITES.get(suite_name.lower())
        if cases is None:
            raise typer.BadParameter(f"{suite_name!r}: suites are {', '.join(SUITES)}", param_hint="--suite")
        if fmt is Format.jsonl:
            for case in cases:
                out.file.write(json.dumps({"family": case.family, "spec": case.spec}) + "\n")
            return
        listing = Table("family", "spec")
        for case in cases:
            listing.add_row(Text(case.family), Text(case.spec))
        out.print(listing)
        out.print(f"{suite_name.lower()}: {len(cases)} cases", markup=False)
        return
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
    random = ", ".join(code.code for code in CODES.values() if code.random)
    out.print(f"Join steps with +, applied left to right: RT(30)+JC(70). Random steps: {random} (use --seed).",
              markup=False)
    out.print("Suites: " + ", ".join(f"{name} ({len(cases)})" for name, cases in SUITES.items()), markup=False)
    out.print("'all' is the five suites before it; 'unseen' is never used in training, tuning or model selection "
              "(robusthash attacks --suite unseen lists it).", markup=False)
