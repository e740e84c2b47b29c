"""Learned hashers on onnxruntime: no torch needed to hash.

An ONNX model maps preprocessed images (``robusthash.runtime.preprocess``, the rule it
was trained with) to features u; a hash bit is 1 where u exceeds the median of its
vector (CMAA's Eq. 6), so every hash has exactly half of its bits set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..io import DEFAULT_LIMITS, LoadLimits
from ..runtime import check_tone, onnx_session, preprocess, shipped_model
from .base import BaseHasher, load_for
from .value import Hash

BATCH = 32


# The decoding rule's revision: ".2" is a draft JPEG decode always (before, a full decode
# when another method in the same run needed one).
DECODING = ".2"


class OnnxHasher(BaseHasher):
    """A hasher backed by an exported model file (see ``robusthash.models.export``)."""

    version = "0"
    description = "an exported model on onnxruntime: features, then a bit per feature above their median"
    # Replaced by the model file's own calibration (τ at 1% FPR on the train split) when
    # it carries one; a model without it decides at this fixed NHD.
    threshold = 0.25
    threshold_source = "fixed fallback: the model file carries no calibration"

    def __init__(self, model_path: Path, name: str = "learned", limits: LoadLimits = DEFAULT_LIMITS):
        super().__init__(limits)
        model_path = Path(model_path)
        self.session = onnx_session(model_path)
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "robusthash.config" not in metadata:
            raise ValueError(f"{model_path}: no robusthash configuration in the model's metadata")
        config = json.loads(metadata["robusthash.config"])
        self.name = name
        self.bits = int(config["hash_bits"])
        self.image_size = int(config["img_size"])
        try:  # models exported before the tone rule saw colours
            self.tone = check_tone(config.get("tone", "rgb"))
        except ValueError as exc:
            raise ValueError(f"{model_path}: {exc}") from None
        self.draft_size = self.image_size
        # The file's digest, not its name: a retrained model under the same name must not
        # be served hashes cached for the old one (bench cache, database versions).
        self.version = f"{model_path.stem}-{_digest(model_path)}{DECODING}"
        self.provenance = json.loads(metadata.get("robusthash.provenance", "{}"))
        if "robusthash.threshold" in metadata:
            calibration = json.loads(metadata["robusthash.threshold"])
            self.threshold = float(calibration["nhd"])
            self.threshold_source = calibration.get("source", "calibrated when exported")

    def features(self, images: list[Image.Image]) -> np.ndarray:
        # The int8 models quantise their activations with one scale per tensor, found when
        # they run, over the whole batch: in a batch, an image's hash depended on the other
        # images (2-8 of 128 bits on 8 train photos). Each image runs alone, so that a hash
        # is a function of its own file, whoever hashes it with what.
        return np.concatenate([self.session.run(None, {"images": preprocess(im, self.image_size, self.tone)[None]})[0]
                               for im in images])

    def hash_pil(self, im: Image.Image) -> Hash:
        return self._hashes(self.features([im]))[0]

    def query_variants(self, im: Image.Image) -> list[Hash]:
        """The query's half turn and its uniform borders trimmed. The models learned
        rotations up to ±90° (CMAA's grid); a copy turned further (100°–260°) is, half a
        turn back, within them (benchmarks/turned_variants.py)."""
        turned = self.hash_pil(im.transpose(Image.Transpose.ROTATE_180))
        return [replace(turned, extra={**turned.extra, "variant": "turned 180°"}), *self.border_trimmed(im)]

    # A registered image's crops: three quarters of each side, at the four corners and the
    # centre (about 56% of the area each). The models rank a crop to half the area below
    # 20 other references for 4-22% of such queries; beside these crops, for 0-1%
    # (999 train photos, each with a distractor crop: docs/identify.md).
    CROP_SIDE = 0.75
    CROP_PLACES = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5))
    reference_crop_count = len(CROP_PLACES)

    def reference_crops(self, im: Image.Image) -> list[Hash]:
        width, height = im.size
        w, h = max(1, round(width * self.CROP_SIDE)), max(1, round(height * self.CROP_SIDE))
        crops = [im.crop((round(x * (width - w)), round(y * (height - h)), round(x * (width - w)) + w,
                          round(y * (height - h)) + h)) for x, y in self.CROP_PLACES]
        return self._hashes(self.features(crops))

    def hash_pils(self, images: list[Image.Image]) -> list[Hash]:
        return [h for start in range(0, len(images), BATCH)
                for h in self._hashes(self.features(images[start:start + BATCH]))]

    def hash_many(self, images: Iterable) -> list[Hash]:
        """Decode each image and hash it, ``BATCH`` decoded images held at a time. A bad
        image raises :class:`~robusthash.io.ImageError` naming it."""
        out: list[Hash] = []
        pending: list[Image.Image] = []
        for image in images:
            pending.append(load_for(self, image, self.limits))
            if len(pending) == BATCH:  # decoded images are held one batch at a time
                out += self.hash_pils(pending)
                pending = []
        return out + self.hash_pils(pending)

    def _hashes(self, features: np.ndarray) -> list[Hash]:
        medians = np.median(features, axis=1, keepdims=True)
        return [self.make_hash(row) for row in features > medians]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


CMAA_MODEL = "cmaa-small.onnx"


class CmaaHasher(OnnxHasher):
    """CMAA's 128-bit hash from the model shipped in the package (docs/models/cmaa.md)."""

    name = "cmaa"
    bits = 128
    description = "CMAA: a ViT trained as a contrastive masked autoencoder (int8 ONNX, 96 px); median bits"

    def __init__(self, model_path: Path | None = None, limits: LoadLimits = DEFAULT_LIMITS):
        super().__init__(model_path or shipped_model(CMAA_MODEL), name="cmaa", limits=limits)


ARIA_MODEL = "aria-small.onnx"


class AriaHasher(OnnxHasher):
    """ARIA: the shipped CMAA model fine-tuned with robust contrastive training against
    ℓ∞ perturbations (docs/models/aria.md)."""

    name = "aria"
    bits = 128
    description = "ARIA: cmaa fine-tuned adversarially (ε 4/255, 3 PGD steps; int8 ONNX, 96 px); median bits"

    def __init__(self, model_path: Path | None = None, limits: LoadLimits = DEFAULT_LIMITS):
        super().__init__(model_path or shipped_model(ARIA_MODEL), name="aria", limits=limits)


def hasher_from_model_spec(spec: str) -> BaseHasher:
    """``NAME=PATH.onnx`` → a hasher of that exported model under NAME (any method list
    takes such entries, e.g. ``robusthash bench --methods cmaa,mine=run/model.onnx``)."""
    name, _, path = spec.partition("=")
    if not name or not path.endswith(".onnx"):
        raise ValueError(f"{spec!r}: a model method is NAME=PATH.onnx")
    return OnnxHasher(Path(path), name=name)


__all__ = ["AriaHasher", "CmaaHasher", "OnnxHasher", "hasher_from_model_spec", "shipped_model"]
