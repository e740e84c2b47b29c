"""Training the comparator as ARIA does (section 5.4): standard training first, then
fine-tuning with the inner maximisation on the query. Both models are kept: the
standard one is the undefended baseline of the report. Last, each model's heatmap
threshold is chosen on fresh train pairs (``calibrate``).

A run folder holds ``pairs.npz`` (the aligned training pairs, drawn once: alignment
costs more than a training step), ``calibration.npz`` (the fresh pairs), ``standard/``
and ``robust/`` (log.jsonl, config), and the results: ``comparator.onnx`` +
``comparator.safetensors`` (robust) and ``comparator-standard.safetensors``, and
``calibration.json`` (IoU at each cut). A training stage whose output exists is not run
again; calibration always is (a minute).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..compare import Kind
from ..measure import heatmap_iou
from ..synth.pairs import EDITED_CELL, AlignedPairs, PairConfig, PairPool, aligned_pairs
from .comparator import (Comparator, ComparatorConfig, export_onnx, load_provenance, load_weights, predict,
                         save_weights, train)

CALIBRATION_PAIRS = 300  # a third of them edited: the pairs the heatmap threshold is chosen on
THRESHOLDS = tuple(round(0.1 + 0.05 * k, 2) for k in range(17))  # the cuts tried: 0.10 … 0.90


def training_pairs(photos: list[Path], cutouts: list[Path], out: Path, count: int, seed: int, config: ComparatorConfig,
                   workers: int = 2, progress: Callable[[int, int], None] | None = None,
                   name: str = "pairs") -> AlignedPairs:
    """``out/{name}.npz``, drawn from the train photos and cut-outs unless it is already
    there for the same count, seed and size."""
    path, about = out / f"{name}.npz", out / f"{name}.json"
    wanted = {"count": count, "seed": seed, "size": config.image_size, "cells": config.cells,
              "photos": len(photos), "cutouts": len(cutouts)}
    if path.is_file() and about.is_file() and json.loads(about.read_text()) == wanted:
        return AlignedPairs.load(path)
    out.mkdir(parents=True, exist_ok=True)
    pool = PairPool.from_files(photos, cutouts, PairConfig())
    pairs = aligned_pairs(pool, count, seed, config.image_size, config.cells, workers=workers, progress=progress)
    pairs.save(path)
    about.write_text(json.dumps(wanted))
    return pairs


def calibrate(model: Comparator, pairs: AlignedPairs) -> tuple[Comparator, dict[float, float]]:
    """``model`` with its ``heatmap_threshold`` set to the cut of the highest mean IoU on
    the edited ``pairs`` (fresh, clean train pairs; a tie goes to the cut nearer 0.5),
    and the IoU of every cut tried."""
    edited = pairs.labels == Kind.edited
    _, heatmaps = predict(model, pairs.originals[edited], pairs.queries[edited])
    truth = pairs.targets[edited] >= EDITED_CELL
    scores = {cut: heatmap_iou(heatmaps, truth, cut) for cut in THRESHOLDS}
    best = max(THRESHOLDS, key=lambda cut: (round(scores[cut], 4), -abs(cut - 0.5)))
    model.config = replace(model.config, heatmap_threshold=best)
    return model, scores


def _robust_done(path: Path, about: dict) -> bool:
    """Whether ``path`` holds the robust stage ``about`` describes (so it is not trained again)."""
    if not path.is_file():
        return False
    stored = load_provenance(path)
    return all(stored.get(k) == v for k, v in about.items())


def fit(pairs: AlignedPairs, out: Path, standard: ComparatorConfig, robust: ComparatorConfig,
        calibration: AlignedPairs | None = None, progress: Callable[[str, int, int, dict], None] | None = None) -> Path:
    """Standard training, then robust fine-tuning (when ``robust.steps``), then each
    model's heatmap threshold from ``calibration`` (when given); returns the ONNX file
    of the last model."""
    standard_weights, final_weights = out / "comparator-standard.safetensors", out / "comparator.safetensors"
    provenance = {"pairs": len(pairs), "data": "corpus train split + train cut-outs (compare.pairs)"}
    standard_about = {**provenance, "stage": "standard", "steps": standard.steps}
    if standard_weights.is_file():
        model = load_weights(standard_weights)
    else:
        model = train(pairs, out / "standard", standard,
                      progress=lambda s, n, r: progress("standard", s, n, r) if progress else None)
        save_weights(model, standard_weights, standard_about)  # kept should the robust stage be cut short
    final, about = model, standard_about
    if robust.steps and robust.epsilon > 0:
        about = {**provenance, "stage": "robust", "standard_steps": standard.steps, "steps": robust.steps,
                 "epsilon": robust.epsilon, "pgd_steps": robust.pgd_steps}
        if _robust_done(final_weights, about):
            final = load_weights(final_weights)
        else:
            final = train(pairs, out / "robust", replace(robust, trunk=standard.trunk, fusion=standard.fusion),
                          start=copy.deepcopy(model), progress=lambda s, n, r: progress("robust", s, n, r) if progress else None)
    if calibration is not None:
        about = {**about, "calibration_pairs": len(calibration)}
        standard_about = {**standard_about, "calibration_pairs": len(calibration)}
        model, standard_scores = calibrate(model, calibration)
        final, final_scores = (model, standard_scores) if final is model else calibrate(final, calibration)
        (out / "calibration.json").write_text(json.dumps(
            {"pairs": len(calibration), "edited": int((calibration.labels == Kind.edited).sum()),
             "standard": {"threshold": model.config.heatmap_threshold, "iou": standard_scores},
             "final": {"threshold": final.config.heatmap_threshold, "iou": final_scores}}, indent=1))
    save_weights(model, standard_weights, standard_about)
    save_weights(final, final_weights, about)
    return export_onnx(final, out / "comparator.onnx", about)
