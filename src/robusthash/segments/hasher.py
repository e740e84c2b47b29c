"""The ``segments`` method: the whole image and each of its objects, hashed alike.

A hash is a :class:`~robusthash.hashing.MultiHash`: first the whole image and the
whole image normalised (turned back upright by its fill frame and by its brightness
moments, ``frame``; with ObjectNet's pasted objects filled in, the photo beneath a
montage), then every object the segmenters find (an object on a plain background,
objects ObjectNet marks as pasted, colour segments; a mask that repeats an earlier one
is skipped), isolated and rotated upright (``objects``), each hashed by the object
hasher (``cmaa`` by default; ``forbild`` as in the paper). Every part keeps its box in
the source image (``extra["box"]``; the whole image's is the full frame). Two images
match when their closest pair of parts is within the threshold, so a cropped, rotated
or montaged copy is found through any object it shares with an original. Why cmaa with
the background kept is the default: docs/segments.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..hashing.base import TRAIN_SPLIT_TAU, BaseHasher, Comparison, get_hasher
from ..hashing.value import Hash, MultiHash
from ..io import DEFAULT_LIMITS, LoadLimits
from .frame import moment_upright, upright_picture
from .objects import MIN_SIDE, Background, fill_in, normalise_object
from .segmenter import (ColourSegmenter, ObjectNetSegmenter, OnnxInstanceSegmenter, PlainBackgroundSegmenter,
                        Segmenter, reduced)

SAME_MASK_IOU = 0.9  # a mask this close to an earlier one adds no part
WORK_SIDE = 512  # longer side of the copy objects are found and cut out on

# Each part ends in one byte that says what it shows. Objects cut out on white (a
# registered cut-out, a pasted object found by ObjectNet) look alike to a learned hash far
# more often than pictures do (1.6% of distinct train cut-out pairs lie within 16 of
# 128 bits, photo pairs 0.4%), so they are compared only with each other, under their
# own, stricter threshold; the kind byte carries this through the database, which
# stores bits only (and puts parts of different kinds 8 bits further apart).
KIND_BYTE = {"picture": 0x00, "object": 0xFF}


def part_kind(background: Background) -> str:
    return "object" if background is Background.removed else "picture"


class SegmentsHasher(BaseHasher):
    name = "segments"
    bits = 136
    multi = True
    # 5: its parts hashed one at a time by the learned model (4 ran them in one batch, and
    # the int8 model's activation scale, one per batch, moved each part's bits with the others).
    version = "5"
    description = ("whole image + each object (plain background, ObjectNet, colour segments; rotated upright), "
                   "hashed with cmaa; closest pair of the same kind decides")
    # Objects' distances are stretched so that one threshold decides both: 16 bits for
    # pictures, 10 for objects. benchmarks/segments_threshold.py (all distinct pairs of
    # 200 train photos and 100 train cut-outs) gives τ at 1% FPR of 16 bits for pictures
    # and 12 for objects; objects are held stricter, at 10 (this rule: 0.72% FPR on those
    # pairs), because at 12 ObjectNet's false objects in photos with nothing pasted
    # (scikit-image's astronaut and cat) already pair.
    # The database recalibrates per collection.
    object_stretch = 18 / 12
    threshold = 16 / 136
    threshold_source = TRAIN_SPLIT_TAU + " (closest pair of parts of one kind)"

    def __init__(self, object_method: str = "cmaa", background: Background = Background.kept,
                 segmenters: Sequence[Segmenter] | None = None, limits: LoadLimits = DEFAULT_LIMITS):
        super().__init__(limits)
        self.objects = get_hasher(object_method)
        self.background = Background(background)
        self.segmenters = tuple(segmenters) if segmenters is not None else (
            PlainBackgroundSegmenter(), ObjectNetSegmenter(), ColourSegmenter())
        self.bits = self.objects.bits + 8
        if object_method != "cmaa":  # calibrated for cmaa; another hasher gets the same share of its bits
            self.object_stretch = 1.0
            self.threshold = round(16 / 128 * self.objects.bits) / self.bits
        kinds = "+".join(type(s).__name__.removesuffix("Segmenter") for s in self.segmenters)
        self.version = f"{SegmentsHasher.version}+{self.objects.name}@{self.objects.version}+{self.background.value}+{kinds}"

    @property
    def decision(self) -> str:
        bits = self.threshold * self.bits
        return (f"closest pair of one kind: pictures ≤ {round(bits)} bits, "
                f"objects ≤ {int(bits / self.object_stretch + 1e-9)} bits")

    def masks(self, im: Image.Image) -> list[tuple[np.ndarray, Background, bool]]:
        """Every segmenter's masks in order, each with how its object is cut out and
        whether it was pasted (``Segmenter.pasted``). A mask that covers an earlier one
        (IoU ≥ 0.9) is dropped; an object on a plain background ends the search, as its
        colour parts would match nothing."""
        found: list[tuple[np.ndarray, Background, bool]] = []
        thumbs: list[np.ndarray] = []
        step = max(1, max(im.size) // 256)  # IoU on a grid of ~256 px is close enough
        for segmenter in self.segmenters:
            background = segmenter.background or self.background
            pasted = bool(getattr(segmenter, "pasted", False))
            for mask in segmenter.segment(im):
                thumb = mask[::step, ::step]
                if any((thumb & t).sum() >= SAME_MASK_IOU * (thumb | t).sum() for t in thumbs):
                    continue
                thumbs.append(thumb)
                found.append((mask, background, pasted))
            if found and isinstance(segmenter, PlainBackgroundSegmenter):
                break
        return found

    def hash_pil(self, im: Image.Image) -> MultiHash:
        # Objects are found and cut out on a copy of at most WORK_SIDE px: the object
        # hasher sees them at 96 px, and rotating and measuring full-size masks was half
        # the time of a 1000 px photo. Boxes are given in the image's own pixels.
        scale = min(1.0, WORK_SIDE / max(im.size))
        work = reduced(im, WORK_SIDE, Image.Resampling.BILINEAR)
        min_side = max(1, round(MIN_SIDE * scale))
        found = self.masks(work)
        parts = [(normalise_object(work, mask, background, min_side), part_kind(background))
                 for mask, background, _ in found]
        parts = [(p, kind) for p, kind in parts if p is not None]
        # The picture is also hashed turned back upright, by its fill frame and by its
        # brightness moments (frame.py), and with pasted objects filled in, as the photo
        # beneath a montage.
        beneath = fill_in(work, [mask for mask, _, pasted in found if pasted])
        normalised = {"frame": upright_picture(work), "moments": moment_upright(work), "beneath": beneath}
        pictures = [("image", im)] + [(what, p) for what, p in normalised.items() if p is not None]
        values = self.objects.hash_pils([p for _, p in pictures] + [p.image for p, _ in parts])
        frame = (0, 0, im.width, im.height)
        # extra["part"] says what each part shows: the image, one of its normalised
        # pictures (frame, moments, beneath), or an object (a mask of a segmenter).
        described = [(what, "picture", frame) for what, _ in pictures]
        described += [("object", kind, _scaled_box(p.box, 1 / scale, im.size)) for p, kind in parts]
        hashes = tuple(self.part_hash(v.bits, kind, box=box, part=what)
                       for v, (what, kind, box) in zip(values, described))
        return MultiHash(hashes, self.name, self.version)

    def part_hash(self, bits: np.ndarray, kind: str, **extra: Any) -> Hash:
        """One part: the object hasher's bits followed by the kind byte."""
        return self.make_hash(np.concatenate([bits, np.unpackbits(np.uint8(KIND_BYTE[kind]))]), kind=kind, **extra)

    def distance(self, a: MultiHash, b: MultiHash) -> float:
        return self._closest(a, b)[0] / self.bits

    def compare(self, a: MultiHash, b: MultiHash, threshold: float | None = None) -> Comparison:
        threshold = self.threshold if threshold is None else threshold
        scaled, i, j = self._closest(a, b)
        kind = kind_of(a.hashes[i])
        details: dict[str, Any] = {"threshold": threshold, "query_part": i, "reference_part": j, "kind": kind,
                                   "query_box": a.hashes[i].extra.get("box")}
        return Comparison(scaled / self.bits, a.hashes[i] - b.hashes[j], scaled / self.bits <= threshold, details)

    def _closest(self, a: MultiHash, b: MultiHash) -> tuple[float, int, int]:
        """(Hamming distance on the pictures' scale, query part, reference part) of the
        closest pair of parts of one kind; parts of different kinds never pair."""
        stretch = {"picture": 1.0, "object": self.object_stretch}
        b_kinds = [kind_of(y) for y in b.hashes]
        best = (float(self.bits), 0, 0)
        for i, x in enumerate(a.hashes):
            kind = kind_of(x)
            for j, y in enumerate(b.hashes):
                if b_kinds[j] == kind:
                    best = min(best, ((x - y) * stretch[kind], i, j))
        return best


def _scaled_box(box: tuple[int, int, int, int], factor: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    left, top, right, bottom = (round(v * factor) for v in box)
    return max(0, left), max(0, top), min(size[0], right), min(size[1], bottom)


def kind_of(part: Hash) -> str:
    """A part's kind, from its last byte (stored parts carry no extras)."""
    return "object" if part.data[-1] == KIND_BYTE["object"] else "picture"


def instance_segments_spec(spec: str) -> SegmentsHasher:
    """The method spec ``segments-instances=MODEL.onnx`` (registered by ``robusthash``)."""
    _, _, path = spec.partition("=")
    if not path.endswith(".onnx"):
        raise ValueError(f"{spec!r}: a model method is NAME=PATH.onnx")
    return instance_segments_hasher(Path(path))


def instance_segments_hasher(model: Path, score: float = 0.20, **kwargs: Any) -> SegmentsHasher:
    """``segments-instances=MODEL.onnx``: ``segments`` with the user's instance-segmentation
    network (ONNX, Mask R-CNN's export layout; ``OnnxInstanceSegmenter``) in place of
    ObjectNet. The version carries the model file's SHA-256, so hashes from another model
    never mix."""
    instances = OnnxInstanceSegmenter(model, score)
    hasher = SegmentsHasher(segmenters=(PlainBackgroundSegmenter(), instances, ColourSegmenter()), **kwargs)
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:12]
    hasher.name = "segments-instances"
    hasher.version = f"{hasher.version}@{digest}@{score:g}"
    hasher.description = "segments with the user's instance-segmentation network (ONNX) in place of ObjectNet"
    return hasher
