"""``robusthash train`` (cmaa, aria, objectnet, comparator) and ``export`` (a trained model
to ONNX): the commands that need the `train` extra (torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import HELP_MARKUP, _fraction, _progress, err, needs_extra, out


train_app = typer.Typer(help="Train learned hashers (needs the `train` extra: pip install 'robusthash[train]').",
                        no_args_is_help=True, rich_markup_mode=HELP_MARKUP)


@train_app.command("cmaa")
def train_cmaa(
    data: list[Path] = typer.Option(..., "--data", help="a training list, e.g. corpus/train.txt (test.txt is "
                                    "refused); repeat it to train on several (corpus/extra_train.txt)"),
    objects: Optional[Path] = typer.Option(None, "--objects", help="folder of RGBA cut-outs to composite, e.g. "
                                           "corpus/objects; only the train share is used"),
    run_dir: Path = typer.Option(..., "--out", help="run folder: checkpoint.safetensors, checkpoint.json, log.jsonl"),
    init: Optional[Path] = typer.Option(None, "--init", help="weights to fine-tune (a weights file of 'robusthash "
                                        "export --weights', e.g. the shipped cmaa's); default: from scratch"),
    model: str = typer.Option("small", "--model", help="small (CPU, hours), paper (ViT-S/16, GPU) or tiny (smoke test)"),
    ablation: str = typer.Option("full", "--ablation", help="full, or CMAA Table 8's a (L_C+L_Q), b (+L_D), c (+L_R), d (no L_Q)"),
    steps: int = typer.Option(20_000, "--steps", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=2),
    lr: float = typer.Option(0.01, "--lr", min=0.0),
    seed: int = typer.Option(0, "--seed"),
    loader_workers: int = typer.Option(1, "--loader-workers", min=0, help="processes making views"),
    checkpoint_every: int = typer.Option(250, "--checkpoint-every", min=1),
    koleo: float = typer.Option(0.0, "--koleo", min=0.0,
                                help="weight of SSCD's KoLeo entropy term on the hash features (spreads them; "
                                     "0: CMAA's four losses only)"),
    anchor: float = typer.Option(0.0, "--anchor", min=0.0,
                                 help="weight of the anchor term: 1 - cos between each view's features and the --init "
                                      "model's hash (±1) of its clean original (needs --init; 0: off)"),
    stop_at: Optional[int] = typer.Option(None, "--stop-at", min=1,
                                          help="end after this step, checkpointed, on --steps' schedule (a later "
                                               "run resumes); e.g. to cut a run short and export it"),
    tone: str = typer.Option("rgb", "--tone",
                             help="what the model sees of tones: rgb (colours as they are, the shipped model's) or "
                                  "stretched-grey (luminance, stretched over the whole range: a grey, darker or "
                                  "lower-contrast copy looks nearly the same); an --init model of another rule is "
                                  "fine-tuned to it"),
    augment: str = typer.Option("table1", "--augment",
                                help="training views: table1 (one CMAA Table 1 attack per view, the shipped "
                                     "model's) or wide (v2: chains of colour, geometry, filter, overlay and "
                                     "cutmix operations over continuous ranges; docs/models/cmaa.md) or blend (table1 views, and "
                                     "milder wide ones for 30% of samples: fine-tuning the shipped model)"),
):
    """Train CMAA (docs/models/cmaa.md); resumes from --out if it holds a checkpoint."""
    needs_extra("train", "torch", "safetensors", what="robusthash train cmaa")
    from ..models.train import TrainConfig
    from ..models.train import train as run_training
    from ..models.views import ViewConfig
    if init is not None and not init.is_file():
        raise typer.BadParameter(f"{init}: no such weights file", param_hint="--init")
    try:
        config = TrainConfig(model=model, ablation=ablation, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                             loader_workers=loader_workers, checkpoint_every=checkpoint_every,
                             views=ViewConfig(augment=augment), init=str(init) if init else None, koleo=koleo,
                             anchor=anchor, tone=tone)
        config.model_config()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    photos, cutouts = _training_split(data, objects)
    err.print(f"{len(photos)} photos, {len(cutouts)} train cut-outs, model {model}, ablation {ablation}, "
              f"{augment} views, {tone} tones, {steps} steps" + (f", from {init}" if init else ""))
    weights = _with_training_progress(steps, "total",
                                      lambda report: run_training(photos, cutouts, run_dir, config, progress=report,
                                                                  stop_at=stop_at))
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


def _training_split(data: Path | list[Path], objects: Optional[Path]) -> tuple[list[Path], list[Path]]:
    """The photos of one or more training lists (the test split is refused) and the train
    share of the cut-outs in ``objects`` (``synth.corpus.split_objects``)."""
    from ..models.train import read_training_list
    from ..synth.corpus import split_objects

    try:
        photos = [p for listed in ([data] if isinstance(data, Path) else data) for p in read_training_list(listed)]
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from None
    cutouts = split_objects(objects, "train") if objects else []
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
    needs_extra("train", "torch", "safetensors", what="robusthash train aria")
    from ..hashing.learned import shipped_model
    from ..models.aria import AriaConfig
    from ..models.train import TrainConfig
    from ..models.train import train as run_training
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
    needs_extra("train", "torch", "onnx", what="robusthash train objectnet")
    from ..models.objectnet import ObjectNetConfig, export_onnx
    from ..models.objectnet import train as run_training
    photos, cutouts = _training_split(data, objects)
    config = ObjectNetConfig(steps=steps, batch_size=batch_size, seed=seed)
    err.print(f"{len(photos)} photos, {len(cutouts)} train cut-outs, {steps} steps")
    run_dir = onnx_path.with_suffix(".run")
    model = _with_training_progress(steps, "loss",
                                    lambda report: run_training(photos, cutouts, run_dir, config, progress=report))
    export_onnx(model, onnx_path, {"steps": steps, "batch_size": batch_size, "seed": seed,
                                   "data": "corpus train split + train cut-outs (synth.corpus.object_split)"})
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
    needs_extra("train", "torch", "onnx", what="robusthash train comparator")
    from ..models.comparator import ComparatorConfig
    from ..models.train_comparator import CALIBRATION_PAIRS, fit, training_pairs
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


def export_model(
    run_dir: Path = typer.Argument(..., help="a training run folder (robusthash train cmaa --out)"),
    onnx_path: Path = typer.Option(..., "--out", help="the ONNX file to write, e.g. cmaa-small.onnx"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="also write the weights here (safetensors: int8 matrices with per-row scales, for fine-tuning)"),
    calibrate_on: Optional[Path] = typer.Option(None, "--calibrate", help="train list whose photos set τ at 1% FPR"),
    calibration_images: int = typer.Option(400, "--calibration-images", min=10),
    int8: bool = typer.Option(True, "--int8/--fp32", help="quantise weights to int8 (~4× smaller, faster)"),
):
    """Export a trained model to ONNX for hashing without torch (docs/models/cmaa.md)."""
    needs_extra("train", "torch", "onnx", what="robusthash export")
    from ..models.export import calibrate, export_onnx, load_trained, quantize_int8, save_weights, set_metadata
    from ..models.train import read_training_list
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
