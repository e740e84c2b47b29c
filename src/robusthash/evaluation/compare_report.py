"""The image comparator on the test split, clean and under realisable attack (issue 8;
ARIA Table 4).

    python -m robusthash.evaluation.compare_report --corpus corpus --out results/comparator

Pairs: ``photos`` test photos spread evenly over test.txt, each giving one pair of each
class (``synth.pairs.draw_pair``: same = a strong attack, edited = one editorial
change of a test cut-out or region then a strong attack, different = another test
photo under a strong attack), photos reduced to 320 px. Every pair goes through the
whole pipeline: ORB/RANSAC alignment, then the network.

Models: the undefended comparator (standard training only) and three ARIA comparators
(then fine-tuned with PGD on the query at ε = 2/255, 4/255 (the shipped one) and 8/255),
from their shipped safetensors weights.

Adversarial: white-box ℓ∞ PGD on the query's own pixels (ε = 8/255, 50 steps, step
4/255 halved at 25/50/75%), through the differentiable JPEG (quality 90), the
antialiased reduction and the alignment grid found on the clean query; the result is
saved as a real JPEG (quality 90), then aligned again from that file and compared. Two
attacks, as in ARIA: on the class (raise the cross-entropy of the true class; every
pair, for AP) and on the heatmap (lower its cosine similarity to the truth; edited
pairs, for IoU).

AP: average precision of each class's probability (one against the rest), averaged
over the three classes. IoU: cells with heat at or above the model's
``heatmap_threshold`` (and, beside it, 0.5) against cells ≥ 25% edited, per edited pair,
averaged. Time: ``compare.ImageComparator.explain`` (alignment + ONNX
network) on pairs of ≤ 1024 px images in memory, 2 cores.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..compare import CLASSES, EDITED, Explanation, ImageComparator, Kind
from ..compare.align import align
from ..files import evenly_spaced, read_image_list
from ..runtime import shipped_model
from ..synth.corpus import Corpus, split_objects
from ..synth.edits import EDITS
from ..synth.pairs import EDITED_CELL, DrawnPair, PairConfig, PairPool, draw_pair, drawn_pair
from .metrics import average_precision, heatmap_iou

EXAMPLES = 2  # edited test pairs drawn for people, per model


@dataclass(frozen=True)
class CompareReportConfig:
    test_list: Path
    objects: Path
    photos: int = 150
    seed: int = 1
    eps: float = 8 / 255
    steps: int = 50
    jpeg_quality: int = 90
    timing_pairs: int = 60
    models: tuple[tuple[str, str], ...] = (("undefended", "comparator-standard.safetensors"),
                                           ("ARIA eps 2/255", "comparator-eps2.safetensors"),
                                           ("ARIA eps 4/255 (shipped)", "comparator.safetensors"),
                                           ("ARIA eps 8/255", "comparator-eps8.safetensors"))
    onnx: str = "comparator.onnx"  # the model timed (what `robusthash explain` runs)


def _model_file(name: str) -> Path:
    """A file of the package's data folder, or a path."""
    return Path(name) if Path(name).is_file() else shipped_model(name)


def eval_pairs(pool: PairPool, count: int, seed: int, size: int) -> list[DrawnPair]:
    """Pairs 0 .. count−1 of ``draw_pair``, aligned, with their truth, kept whole (the
    attacks need the query itself and its grid)."""
    return [drawn_pair(pool, seed, i, size) for i in range(count)]


def class_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    per_class = {name: average_precision(probabilities[:, k], labels == k) for k, name in enumerate(CLASSES)
                 if (labels == k).any()}
    confusion = np.zeros((3, 3), dtype=int)
    np.add.at(confusion, (labels, probabilities.argmax(1)), 1)
    return {"AP": float(np.mean(list(per_class.values()))), "AP_per_class": per_class,
            "accuracy": float((probabilities.argmax(1) == labels).mean()), "confusion": confusion.tolist()}


def attacked_query(model, item: DrawnPair, objective: str, config: CompareReportConfig) -> Image.Image:
    """The published (JPEG) query after white-box PGD through the whole differentiable
    pipeline; ``objective`` "class" or "heatmap"."""
    import torch
    import torch.nn.functional as F

    from ..attacks.adversarial import PGDConfig, differentiable_jpeg, pgd, published, to_tensor
    from ..models.comparator import aligned_query, to_input

    original = to_input(item.aligned.original[None])
    label = torch.tensor([item.label])
    target = torch.from_numpy(item.target).flatten()[None]

    def loss(pixels: torch.Tensor) -> torch.Tensor:
        query = aligned_query(differentiable_jpeg(pixels, config.jpeg_quality), original, item.aligned.grid)
        logits, heat = model(original, query)
        if objective == "class":
            return -F.cross_entropy(logits, label)
        return F.cosine_similarity(torch.sigmoid(heat).flatten(1), target, dim=1, eps=1e-6).sum()

    pgd_config = PGDConfig(eps=config.eps, steps=config.steps, jpeg_quality=config.jpeg_quality, seed=config.seed)
    return published(pgd(loss, to_tensor(item.pair.query), pgd_config), config.jpeg_quality)


def realigned(query: Image.Image, item: DrawnPair, size: int) -> np.ndarray:
    _, aligned = align(query, item.pair.original, size)
    return aligned.query


def torch_explanation(model, query: Image.Image, original: Image.Image) -> Explanation:
    """``ImageComparator.explain_images`` with a torch model (for the undefended one,
    which ships no ONNX file)."""
    from ..models.comparator import predict

    alignment, aligned = align(query, original, model.config.image_size)
    probabilities, heatmaps = predict(model, aligned.original[None], aligned.query[None])
    return Explanation.of(probabilities[0], heatmaps[0], alignment, model.config.heatmap_threshold)


def attacked_predictions(model, items: list[DrawnPair], config: CompareReportConfig, keep: frozenset = frozenset(),
                         progress=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The model on every pair's class-attacked query (probabilities N×3) and on each
    edited pair's heatmap-attacked query (heatmaps E×cells×cells), each saved as JPEG and
    aligned again; and the class-attacked files of the pairs in ``keep``."""
    from ..models.comparator import predict

    size = model.config.image_size
    edited = [k for k, item in enumerate(items) if item.label == Kind.edited]
    originals = np.stack([item.aligned.original for item in items])
    attacked, published = [], {}
    started = time.time()
    for k, item in enumerate(items):
        adversarial = attacked_query(model, item, "class", config)
        if k in keep:
            published[k] = adversarial
        attacked.append(realigned(adversarial, item, size))
        if progress and (k + 1) % 50 == 0:
            progress(f"class attack {k + 1}/{len(items)} ({time.time() - started:.0f} s)")
    probabilities, _ = predict(model, originals, np.stack(attacked))
    heat_attacked = [realigned(attacked_query(model, items[k], "heatmap", config), items[k], size) for k in edited]
    _, heatmaps = predict(model, originals[edited], np.stack(heat_attacked))
    return probabilities, heatmaps, published


def run(config: CompareReportConfig, progress=lambda line: print(line, flush=True)) -> dict:
    from ..models.comparator import load_weights, predict

    photos = evenly_spaced(read_image_list(config.test_list), config.photos)
    cutouts = split_objects(config.objects, "test")
    pool = PairPool.from_files(photos, cutouts, PairConfig())
    models = {name: load_weights(_model_file(file)) for name, file in config.models}
    size = next(iter(models.values())).config.image_size
    started = time.time()
    items = eval_pairs(pool, 3 * len(photos), config.seed, size)
    progress(f"{len(items)} test pairs aligned in {time.time() - started:.0f} s")
    labels = np.array([item.label for item in items])
    originals = np.stack([item.aligned.original for item in items])
    edited = [k for k, item in enumerate(items) if item.label == Kind.edited]
    truth = np.stack([items[k].target for k in edited]) >= EDITED_CELL
    result = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
              "pairs": len(items), "labels": np.bincount(labels, minlength=3).tolist(),
              "aligned_share": {name: float(np.mean([item.alignment.found for item in items if item.label == k]))
                                for k, name in enumerate(CLASSES)},
              "edits": {e: sum(1 for k in edited if items[k].pair.edit == e) for e in EDITS},
              "models": {}}
    clean_queries = np.stack([item.aligned.query for item in items])
    for name, model in models.items():
        cut = model.config.heatmap_threshold

        def iou(heatmaps: np.ndarray) -> dict:
            return {"IoU": heatmap_iou(heatmaps, truth, cut), "IoU_at_0.5": heatmap_iou(heatmaps, truth, EDITED)}

        probabilities, heatmaps = predict(model, originals, clean_queries)
        row = {"heatmap_threshold": cut, "clean": {**class_metrics(probabilities, labels), **iou(heatmaps[edited])}}
        started = time.time()
        adv_probabilities, adv_heatmaps, published = attacked_predictions(
            model, items, config, frozenset(edited[:EXAMPLES]), lambda line, name=name: progress(f"{name}: {line}"))
        row["adversarial"] = {**class_metrics(adv_probabilities, labels), **iou(adv_heatmaps)}
        row["attack_seconds_per_pair"] = (time.time() - started) / (len(items) + len(edited))
        result["models"][name] = row
        progress(f"{name}: clean AP {row['clean']['AP']:.3f} IoU {row['clean']['IoU']:.3f}; "
                 f"adversarial AP {row['adversarial']['AP']:.3f} IoU {row['adversarial']['IoU']:.3f}")
        result.setdefault("example_pictures", {})[name] = {
            k: {"clean": torch_explanation(model, items[k].pair.query, items[k].pair.original),
                "adversarial": torch_explanation(model, published[k], items[k].pair.original),
                "adversarial_query": published[k], "pair": items[k].pair} for k in published}
    result["timing"] = timing(config, photos)
    return result


def timing(config: CompareReportConfig, photos: list[Path]) -> dict:
    """Seconds per pair for the shipped comparator (ONNX) on ≤ 1024 px pairs in memory."""
    pool = PairPool.from_files(photos[: config.timing_pairs], split_objects(config.objects, "test")[:20],
                               PairConfig(side=1024))
    comparator = ImageComparator(_model_file(config.onnx))
    pairs = [draw_pair(pool, config.seed + 1, i) for i in range(config.timing_pairs)]
    comparator.explain(pairs[0].query, pairs[0].original)  # warm-up: session, OpenCV
    seconds = []
    for pair in pairs:
        started = time.perf_counter()
        comparator.explain(pair.query, pair.original)
        seconds.append(time.perf_counter() - started)
    return {"pairs": len(pairs), "median_ms": 1000 * float(np.median(seconds)),
            "mean_ms": 1000 * float(np.mean(seconds)), "p90_ms": 1000 * float(np.percentile(seconds, 90))}


def write_examples(result: dict, out: Path) -> list[str]:
    """Pictures of the first edited test pairs, for each model: on the clean query and on
    its class-attacked JPEG (``compare.picture``)."""
    from ..compare.picture import explanation_picture

    written = []
    (out / "examples").mkdir(parents=True, exist_ok=True)
    for name, examples in result.pop("example_pictures", {}).items():
        for k, example in examples.items():
            pair = example["pair"]
            for tag, query in (("clean", pair.query), ("adversarial", example["adversarial_query"])):
                # JPEG: a dozen photo PNGs would weigh megabytes in the repository.
                slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                path = out / "examples" / f"pair{k:03d}-{pair.edit}-{slug}-{tag}.jpg"
                explanation_picture(query, pair.original, example[tag]).save(path, quality=90)
                written.append(str(path.relative_to(out)))
    return written


def write_markdown(result: dict, out: Path, command: str) -> None:
    rows = []
    for name, row in result["models"].items():
        clean, adv = row["clean"], row["adversarial"]
        rows.append(f"| {name} | {clean['AP']:.3f} | {clean['IoU']:.3f} | {adv['AP']:.3f} | {adv['IoU']:.3f} | "
                    f"{row['heatmap_threshold']:.2f} | {clean['IoU_at_0.5']:.3f} | {adv['IoU_at_0.5']:.3f} | "
                    f"{clean['accuracy']:.3f} | {adv['accuracy']:.3f} |")
    per_class = []
    for name, row in result["models"].items():
        for condition in ("clean", "adversarial"):
            aps = row[condition]["AP_per_class"]
            per_class.append(f"| {name} | {condition} | " + " | ".join(f"{aps[c]:.3f}" for c in CLASSES) + " |")
    confusions = []
    for name, row in result["models"].items():
        for condition in ("clean", "adversarial"):
            matrix = row[condition]["confusion"]
            confusions.append(f"| {name} | {condition} | " + " | ".join(
                "/".join(str(v) for v in matrix[k]) for k in range(3)) + " |")
    timing = result["timing"]
    config = result["config"]
    lines = [
        "# Image comparator: same / edited / different and where (issue 8)",
        "",
        f"Command: `{command}`",
        "",
        f"{result['pairs']} test pairs from {config['photos']} test photos (corpus/test.txt) and the test "
        f"cut-outs: {result['labels'][0]} same, {result['labels'][1]} edited, {result['labels'][2]} different "
        f"(an edit mostly cropped away by the query's non-editorial change counts as same). Edits: "
        + ", ".join(f"{k} {v}" for k, v in result["edits"].items()) + ". Alignment found a homography for "
        + ", ".join(f"{v:.0%} of {k}" for k, v in result["aligned_share"].items()) + " pairs.",
        "",
        f"Adversarial: white-box ℓ∞ PGD, ε = {config['eps'] * 255:.0f}/255, {config['steps']} steps, through "
        f"the differentiable JPEG (q{config['jpeg_quality']}), reduction and alignment grid; saved as JPEG, "
        "then aligned again and compared. AP under the class attack (all pairs), IoU under the heatmap attack "
        "(edited pairs). IoU counts the cells at or above each model's heatmap threshold (chosen on train "
        "pairs when it was made: `models.train_comparator.calibrate`) against the cells ≥ 25% edited; the "
        "IoU with the cut at 0.5 is shown beside it.",
        "",
        "| comparator | clean AP | clean IoU | adversarial AP | adversarial IoU | heatmap threshold | "
        "clean IoU at 0.5 | adversarial IoU at 0.5 | clean accuracy | adversarial accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "ARIA Table 4 (PSBattles, their comparator): undefended 96.4% / 58.1% → 0.6% / 5.1%; "
        "ARIA ε = 8/255: 95.5% / 55.9% → 90.7% / 44.9%. Goals here: AP ≥ 0.95 clean, ≥ 0.90 adversarial; "
        "IoU ≥ 0.55 clean, ≥ 0.45 adversarial.",
        "",
        "## AP per class (one against the rest)",
        "",
        "| comparator | queries | " + " | ".join(CLASSES) + " |",
        "|---|---|---|---|---|",
        *per_class,
        "",
        "## Confusion (rows: truth same / edited / different; each cell: predicted same/edited/different)",
        "",
        "| comparator | queries | same | edited | different |",
        "|---|---|---|---|---|",
        *confusions,
        "",
        "## Time",
        "",
        f"`compare.ImageComparator.explain` (alignment + ONNX network), {timing['pairs']} pairs of ≤ 1024 px "
        f"images in memory: median {timing['median_ms']:.0f} ms, mean {timing['mean_ms']:.0f} ms, "
        f"90th percentile {timing['p90_ms']:.0f} ms per pair (goal ≤ 100 ms).",
        "",
        "## Examples",
        "",
        *[f"![{p}]({p})" for p in result.get("pictures", [])],
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (test.txt, objects/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=CompareReportConfig.photos)
    parser.add_argument("--steps", type=int, default=CompareReportConfig.steps)
    parser.add_argument("--timing-pairs", type=int, default=CompareReportConfig.timing_pairs)
    args = parser.parse_args(argv)
    corpus = Corpus(args.corpus)
    config = CompareReportConfig(corpus.test_list, corpus.objects_folder, photos=args.photos,
                                 steps=args.steps, timing_pairs=args.timing_pairs)
    result = run(config)
    args.out.mkdir(parents=True, exist_ok=True)
    result["pictures"] = write_examples(result, args.out)
    command = "python -m robusthash.evaluation.compare_report " + " ".join(sys.argv[1:] if argv is None else argv)
    (args.out / "report.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, args.out, command)


if __name__ == "__main__":
    main()
