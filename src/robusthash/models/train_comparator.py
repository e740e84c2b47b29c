"""Training the comparator as ARIA does (section 5.4): standard training first, then
fine-tuning with the inner maximisation on the query. Both models are kept: the
standard one is the undefended baseline of the report.

A run folder holds ``pairs.npz`` (the aligned training pairs, drawn once: alignment
costs more than a training step), ``standard/`` and ``robust/`` (log.jsonl, config),
and the results: ``comparator.onnx`` + ``comparator.safetensors`` (robust) and
``comparator-standard.safetensors``. A stage whose output exists is not run again.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..compare.pairs import AlignedPairs, PairConfig, PairPool, aligned_pairs
from .comparator import ComparatorConfig, export_onnx, load_weights, save_weights, train


def training_pairs(photos: list[Path], cutouts: list[Path], out: Path, count: int, seed: int, config: ComparatorConfig,
                   workers: int = 2, progress: Callable[[int, int], None] | None = None) -> AlignedPairs:
    """``out/pairs.npz``, drawn from the train photos and cut-outs unless it is already
    there for the same count, seed and size."""
    path, about = out / "pairs.npz", out / "pairs.json"
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


def fit(pairs: AlignedPairs, out: Path, standard: ComparatorConfig, robust: ComparatorConfig,
        progress: Callable[[str, int, int, dict], None] | None = None) -> Path:
    """Standard training, then robust fine-tuning (when ``robust.steps``); returns the
    ONNX file of the last model."""
    standard_weights = out / "comparator-standard.safetensors"
    provenance = {"pairs": len(pairs), "data": "corpus train split + train cut-outs (compare.pairs)"}
    if standard_weights.is_file():
        model = load_weights(standard_weights)
    else:
        model = train(pairs, out / "standard", standard,
                      progress=lambda s, n, r: progress("standard", s, n, r) if progress else None)
        save_weights(model, standard_weights, {**provenance, "stage": "standard", "steps": standard.steps})
    final, about = model, {**provenance, "stage": "standard", "steps": standard.steps}
    if robust.steps and robust.epsilon > 0:
        final = train(pairs, out / "robust", replace(robust, trunk=standard.trunk, fusion=standard.fusion), start=model,
                      progress=lambda s, n, r: progress("robust", s, n, r) if progress else None)
        about = {**provenance, "stage": "robust", "standard_steps": standard.steps, "steps": robust.steps,
                 "epsilon": robust.epsilon, "pgd_steps": robust.pgd_steps}
    save_weights(final, out / "comparator.safetensors", about)
    return export_onnx(final, out / "comparator.onnx", about)
