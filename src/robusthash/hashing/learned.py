"""Learned hashers on onnxruntime: no torch needed to hash.

An ONNX model maps preprocessed images (``robusthash.models.preprocess``, the rule it
was trained with) to features u; a hash bit is 1 where u exceeds the median of its
vector (CMAA's Eq. 6), so every hash has exactly half of its bits set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..io import DEFAULT_LIMITS, LoadLimits
from ..models.preprocess import preprocess
from .base import BaseHasher, load_for
from .value import Hash

BATCH = 32


class OnnxHasher(BaseHasher):
    """A hasher backed by an exported model file (see ``robusthash.models.export``)."""

    version = "0"
    # Replaced by the model file's own calibration (τ at 1% FPR on the train split) when
    # it carries one; a model without it decides at this fixed NHD.
    threshold = 0.25
    threshold_source = "fixed fallback: the model file carries no calibration"

    def __init__(self, model_path: Path, name: str = "learned", limits: LoadLimits = DEFAULT_LIMITS):
        import onnxruntime as ort

        super().__init__(limits)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 0  # onnxruntime's default: all cores
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a bad model file gets a message naming it
            raise ValueError(f"{model_path}: not a loadable ONNX model ({exc})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "robusthash.config" not in metadata:
            raise ValueError(f"{model_path}: no robusthash configuration in the model's metadata")
        config = json.loads(metadata["robusthash.config"])
        self.name = name  # type: ignore[misc]
        self.bits = int(config["hash_bits"])  # type: ignore[misc]
        self.image_size = int(config["img_size"])
        self.draft_size = self.image_size  # type: ignore[misc]
        self.version = f"{name}-{Path(model_path).stem}"  # type: ignore[misc]
        self.provenance = json.loads(metadata.get("robusthash.provenance", "{}"))
        if "robusthash.threshold" in metadata:
            calibration = json.loads(metadata["robusthash.threshold"])
            self.threshold = float(calibration["nhd"])  # type: ignore[misc]
            self.threshold_source = calibration.get("source", "calibrated when exported")  # type: ignore[misc]

    def features(self, images: list[Image.Image]) -> np.ndarray:
        batch = np.stack([preprocess(im, self.image_size) for im in images])
        return self.session.run(None, {"images": batch})[0]

    def hash_pil(self, im: Image.Image) -> Hash:
        return self._hashes(self.features([im]))[0]

    def hash_many(self, images: Iterable) -> list[Hash]:
        """Decode each image, then run the model on batches of ``BATCH``. A bad image
        raises :class:`~robusthash.io.ImageError` naming it."""
        out: list[Hash] = []
        pending: list[Image.Image] = []
        for image in images:
            pending.append(load_for([self], image, self.limits))
            if len(pending) == BATCH:
                out += self._hashes(self.features(pending))
                pending = []
        if pending:
            out += self._hashes(self.features(pending))
        return out

    def _hashes(self, features: np.ndarray) -> list[Hash]:
        medians = np.median(features, axis=1, keepdims=True)
        return [self.make_hash(row) for row in features > medians]


__all__ = ["OnnxHasher"]
