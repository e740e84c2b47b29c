"""The comparator's numbers on fresh pairs of the *train* split: what the shipped robust
radius was chosen on (the test split is for the report only).

    .venv/bin/python benchmarks/comparator_train_check.py --corpus corpus \
        runs/comparator-eps4/comparator-standard.safetensors runs/comparator-eps4/comparator.safetensors \
        runs/comparator-eps8/comparator.safetensors

Clean: 300 pairs (``draw_pair``, seed 5) from 100 train photos and the train cut-outs,
aligned in bulk. Adversarial: 120 pairs (seed 9) from 40 train photos, attacked as the
report does (``evaluation.compare_report``: realisable ℓ∞ PGD, ε = 8/255, 50 steps; class
attack for AP, heatmap attack for IoU). The pairs are new draws, but their photos were
seen in training.

``--thresholds 0.2 0.3 ...`` adds each model's clean and adversarial IoU with the heatmap
cut at each of them: the operating point a model's ``heatmap_threshold`` is chosen by.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from robusthash.compare import Kind
from robusthash.evaluation.compare_report import CompareReportConfig, attacked_predictions, class_metrics, eval_pairs
from robusthash.evaluation.metrics import heatmap_iou
from robusthash.files import evenly_spaced
from robusthash.models.comparator import load_weights, predict
from robusthash.synth.corpus import Corpus
from robusthash.synth.pairs import EDITED_CELL, PairPool, aligned_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[],
                        help="also print IoU with the heatmap cut at each of these")
    args = parser.parse_args()
    corpus = Corpus(args.corpus)
    train = corpus.train()
    cutouts = corpus.objects("train")

    clean = aligned_pairs(PairPool.from_files(evenly_spaced(train, 100), cutouts), 300, 5, 112, workers=2)
    edited = clean.labels == Kind.edited
    items = eval_pairs(PairPool.from_files(evenly_spaced(train, 40), cutouts), 120, 9, 112)
    labels = np.array([item.label for item in items])
    truth = np.stack([item.target for item in items if item.label == Kind.edited]) >= EDITED_CELL
    clean_truth = clean.targets[edited] >= EDITED_CELL
    config = CompareReportConfig(corpus.train_list, corpus.objects_folder)

    print("| weights | clean AP | clean IoU | adversarial AP | adversarial IoU |")
    print("|---|---|---|---|---|")
    for path in args.weights:
        model = load_weights(path)
        probabilities, heatmaps = predict(model, clean.originals, clean.queries)
        adv_probabilities, adv_heatmaps, _ = attacked_predictions(model, items, config)
        cut = model.config.heatmap_threshold
        print(f"| {path} (cut at {cut:.2f}) | {class_metrics(probabilities, clean.labels)['AP']:.3f} | "
              f"{heatmap_iou(heatmaps[edited], clean_truth, cut):.3f} | "
              f"{class_metrics(adv_probabilities, labels)['AP']:.3f} | {heatmap_iou(adv_heatmaps, truth, cut):.3f} |",
              flush=True)
        for threshold in args.thresholds:
            print(f"|   cut at {threshold:.2f} | | {heatmap_iou(heatmaps[edited], clean_truth, threshold):.3f} | "
                  f"| {heatmap_iou(adv_heatmaps, truth, threshold):.3f} |", flush=True)


if __name__ == "__main__":
    main()
