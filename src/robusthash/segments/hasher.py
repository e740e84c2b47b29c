"""The ``segments`` method: the whole image and each of its objects, hashed alike.

A hash is a :class:`~robusthash.hashing.MultiHash`: first the whole image, then every
object the segmenter finds, isolated and rotated upright (``objects``), each hashed by
the object hasher (``cmaa`` by default; ``forbild`` as in the paper). Every part keeps
its box in the source image (``extra["box"]``; the whole image's is the full frame).
Two images match when their closest pair of parts is within the threshold, so a
cropped, rotated or montaged copy is found through any object it shares with an
original. Why cmaa with the background kept is the default: docs/segments.md.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from ..hashing.base import TRAIN_SPLIT_TAU, BaseHasher, Comparison, get_hasher
from ..hashing.value import Hash, MultiHash
from ..io import DEFAULT_LIMITS, LoadLimits
from .objects import Background, normalise_object
from .segmenter import ColourSegmenter, Segmenter


class SegmentsHasher(BaseHasher):
    # Registered as `segments` by robusthash/__init__.py, lazily.
    name = "segments"
    bits = 128
    multi = True
    version = "1"
    description = "whole image + each object (colour segments, rotated upright), hashed with cmaa; closest pair decides"
    # τ at 1% FPR over the closest-part distances of distinct train photos
    # (benchmarks/segments_threshold.py); the database recalibrates per collection.
    threshold = 0.125  # 16 of 128 bits, 200 photos
    threshold_source = TRAIN_SPLIT_TAU + " (closest pair of parts)"

    def __init__(self, object_method: str = "cmaa", background: Background = Background.kept,
                 segmenter: Segmenter | None = None, limits: LoadLimits = DEFAULT_LIMITS):
        super().__init__(limits)
        self.objects = get_hasher(object_method)
        self.background = Background(background)
        self.segmenter = segmenter or ColourSegmenter()
        self.bits = self.objects.bits  # type: ignore[misc]
        self.version = f"1+{self.objects.name}@{self.objects.version}+{self.background.value}"  # type: ignore[misc]

    def hash_pil(self, im: Image.Image) -> MultiHash:
        parts = [normalise_object(im, mask, self.background) for mask in self.segmenter.segment(im)]
        parts = [p for p in parts if p is not None]
        values = self.objects.hash_pils([im] + [p.image for p in parts])
        boxes = [(0, 0, im.width, im.height)] + [p.box for p in parts]
        hashes = tuple(self.make_hash(v.bits, box=box) for v, box in zip(values, boxes))
        return MultiHash(hashes, self.name, self.version)

    def distance(self, a: MultiHash, b: MultiHash) -> float:
        return self._closest(a, b)[0] / self.bits

    def compare(self, a: MultiHash, b: MultiHash, threshold: float | None = None) -> Comparison:
        threshold = self.threshold if threshold is None else threshold
        hamming, i, j = self._closest(a, b)
        details: dict[str, Any] = {"threshold": threshold, "query_part": i, "reference_part": j,
                                   "query_box": a.hashes[i].extra.get("box")}
        return Comparison(hamming / self.bits, hamming, hamming / self.bits <= threshold, details)

    @staticmethod
    def _closest(a: MultiHash, b: MultiHash) -> tuple[int, int, int]:
        return min((x - y, i, j) for i, x in enumerate(a.hashes) for j, y in enumerate(b.hashes))
