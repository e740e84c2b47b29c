"""What was edited between a query and its matched original (issue 8).

``ImageComparator`` aligns the query to the original (:mod:`.align`: ORB + RANSAC
homography, flips tried), then runs the comparator network (ONNX, trained by
``robusthash.models.comparator``) on the aligned pair: same picture (only
non-editorial changes), edited, or a different picture, and a 7×7 heatmap over the
original of where it was edited. :mod:`.picture` draws it for people.

    >>> from robusthash.compare import explain
    >>> result = explain("copy.jpg", "original.jpg")
    >>> result.label, result.probabilities["edited"], result.edited_cells()

No torch is needed: the network runs on onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import DEFAULT_LIMITS, ImageSource, LoadLimits, load_pil
from .align import AlignConfig, Alignment, align


class Kind(IntEnum):
    """The comparator's classes, in the order of its outputs."""

    same = 0
    edited = 1
    different = 2


CLASSES: tuple[str, ...] = tuple(kind.name for kind in Kind)

MODEL = "comparator.onnx"
# Both images are read at most this large: alignment works on 384 px copies and the
# network on 112 px ones, so more pixels only cost decoding time.
WORK_SIDE = 768
# A heatmap cell at or above the model's ``heatmap_threshold`` is reported as edited;
# this is the cut of a model file that carries none.
EDITED = 0.5


@dataclass(frozen=True)
class Explanation:
    """The comparator's answer for one (query, original) pair."""

    label: str  # "same", "edited" or "different"
    probabilities: dict[str, float]
    heatmap: np.ndarray  # cells × cells in [0, 1], over the original (row 0 at the top)
    alignment: Alignment = field(repr=False)
    threshold: float = EDITED  # the model's cut: cells at or above it are the edited ones

    @classmethod
    def of(cls, probabilities: np.ndarray, heatmap: np.ndarray, alignment: Alignment,
           threshold: float = EDITED) -> "Explanation":
        """The answer from one pair's network outputs (class probabilities, heatmap)."""
        return cls(CLASSES[int(np.argmax(probabilities))], {name: float(p) for name, p in zip(CLASSES, probabilities)},
                   heatmap, alignment, threshold)

    def edited_cells(self, threshold: float | None = None) -> list[tuple[int, int]]:
        """(row, column) of the cells at or above ``threshold`` (default: the model's)."""
        cut = self.threshold if threshold is None else threshold
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(self.heatmap >= cut))]

    def to_dict(self) -> dict:
        return {"label": self.label, "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
                "heatmap": np.round(self.heatmap.astype(float), 3).tolist(), "edited_cells": self.edited_cells(),
                "threshold": self.threshold,
                "aligned": self.alignment.found, "flipped": self.alignment.flipped,
                "inliers": self.alignment.inliers}


class ImageComparator:
    """The shipped comparator (or ``model_path``), ready to compare pairs."""

    def __init__(self, model_path: Path | None = None, align_config: AlignConfig = AlignConfig(),
                 limits: LoadLimits = DEFAULT_LIMITS):
        from ..runtime import onnx_session, shipped_model

        self.model_path = Path(model_path) if model_path else shipped_model(MODEL)
        self.session = onnx_session(self.model_path)
        metadata = self.session.get_modelmeta().custom_metadata_map
        if metadata.get("robusthash.model") != "comparator":
            raise ValueError(f"{self.model_path}: not a robusthash comparator model")
        config = json.loads(metadata["robusthash.config"])
        self.size = int(config["image_size"])
        self.cells = int(config["cells"])
        self.threshold = float(config.get("heatmap_threshold", EDITED))
        self.provenance = json.loads(metadata.get("robusthash.provenance", "{}"))
        self.align_config = align_config
        self.limits = limits

    def load(self, source: ImageSource) -> Image.Image:
        from ..imaging import reduced

        return reduced(load_pil(source, limits=self.limits, draft_size=WORK_SIDE), WORK_SIDE,
                       Image.Resampling.BILINEAR)

    def predict(self, originals: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned pairs (N×S×S×3 uint8 each) → class probabilities N×3 and heatmaps N×cells×cells."""
        def tensor(pixels: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0

        probabilities, heatmaps = self.session.run(None, {"original": tensor(originals), "query": tensor(queries)})
        return probabilities, heatmaps

    def explain(self, query: ImageSource, original: ImageSource) -> Explanation:
        return self.explain_images(self.load(query), self.load(original))

    def explain_images(self, query: Image.Image, original: Image.Image) -> Explanation:
        """:meth:`explain` of two images already read by :meth:`load` (callers that
        also draw them need them anyway)."""
        alignment, pair = align(query, original, self.size, self.align_config)
        probabilities, heatmaps = self.predict(pair.original[None], pair.query[None])
        return Explanation.of(probabilities[0], heatmaps[0], alignment, self.threshold)


_DEFAULT: ImageComparator | None = None


def explain(query: ImageSource, original: ImageSource) -> Explanation:
    """Compare ``query`` with ``original`` using the shipped comparator."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ImageComparator()
    return _DEFAULT.explain(query, original)


__all__ = ["Explanation", "ImageComparator", "explain", "CLASSES", "EDITED", "Kind"]
