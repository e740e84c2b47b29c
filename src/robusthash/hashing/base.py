"""The hasher protocol, a base class that supplies the common parts, and the registry."""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from ..imaging import PART_PIXELS, cut_out, nested_borders
from ..io import (DEFAULT_LIMITS, DecodedFrame, ImageSource, LoadLimits, decode_frame, describe_source, finish_decode,
                  load_pil, read_bytes)
from .value import Hash, MultiHash

# A query variant's label, by how many frames of uniform borders were trimmed.
TRIMMED = ("borders trimmed", "borders trimmed twice", "borders trimmed 3 times")


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two hashes with one method.

    distance: the method's distance in [0, 1] (normalised Hamming distance for most).
    hamming:  the Hamming distance in bits, where the method has one.
    matched:  the method's decision: same content or not.
    details:  the numbers behind the decision (threshold, weighted distance, rule).
    """

    distance: float
    hamming: int | None
    matched: bool
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Hasher(Protocol):
    name: str
    bits: int
    version: str

    def hash(self, image: ImageSource) -> Hash | MultiHash: ...

    def hash_many(self, images: Iterable[ImageSource]) -> list[Hash | MultiHash]: ...

    def distance(self, a: Any, b: Any) -> float: ...

    def compare(self, a: Any, b: Any, threshold: float | None = None) -> Comparison: ...

    def matches(self, a: Any, b: Any, threshold: float | None = None) -> bool: ...


class BaseHasher(ABC):
    """Loading, batching, Hamming distance and a threshold decision, shared by all hashers.

    A subclass sets ``name``, ``bits``, ``version``, ``description`` and ``threshold``
    (the default NHD decision threshold), optionally ``draft_size`` (the smallest side it
    needs, enabling reduced-size JPEG decoding) and ``input_mode = "L"`` (it needs only
    luma), and implements :meth:`hash_pil`, which must accept RGB images too.
    """

    # A hasher's identity and decision are instance state with class defaults: a model file
    # or a configuration (OnnxHasher, SegmentsHasher) gives each instance its own.
    name: str
    bits: int
    version: str
    description: str = ""
    threshold: float
    threshold_source: str = ""
    multi: bool = False  # hashes are MultiHash (several parts per image)
    draft_size: int | None = None
    input_mode: str = "RGB"
    # Hashes whose ``extra["quality"]`` is below this are too weak to register or match
    # (PDQ: Meta's guidance, 50); None: the method has no quality.
    min_quality: int | None = None
    # A method with its own published rule (forbild's two steps, imagehash's crop-resistant
    # segments) decides by it: a threshold calibrated on a collection does not replace it.
    own_rule: bool = False

    def __init__(self, limits: LoadLimits = DEFAULT_LIMITS):
        self.limits = limits

    @property
    def decision(self) -> str:
        """The default decision rule in a few words."""
        return f"NHD ≤ {self.threshold:.4f} (Hamming ≤ {round(self.threshold * self.bits)})"

    def hash(self, image: ImageSource) -> Hash | MultiHash:
        """Hash any input :func:`robusthash.io.load_image` accepts."""
        return self.hash_pil(load_for(self, image, self.limits))

    @abstractmethod
    def hash_pil(self, im: Image.Image) -> Hash | MultiHash:
        """Hash a PIL image that the loader produced (RGB, or L if ``input_mode`` is L)."""

    def hash_many(self, images: Iterable[ImageSource]) -> list[Hash | MultiHash]:
        return [self.hash(image) for image in images]

    def hash_pils(self, images: list[Image.Image]) -> list[Hash | MultiHash]:
        """Hash decoded images; learned hashers run them through the model in batches."""
        return [self.hash_pil(im) for im in images]

    def make_hash(self, bits: np.ndarray, **extra: Any) -> Hash:
        return Hash.from_bits(bits, self.name, self.version, **extra)

    def distance(self, a: Hash, b: Hash) -> float:
        return a.nhd(b)

    def compare(self, a: Hash, b: Hash, threshold: float | None = None) -> Comparison:
        threshold = self.threshold if threshold is None else threshold
        distance = self.distance(a, b)
        return Comparison(distance, a - b, distance <= threshold, {"threshold": threshold})

    def matches(self, a: Any, b: Any, threshold: float | None = None) -> bool:
        return self.compare(a, b, threshold).matched

    def search_radius(self, threshold: float) -> int:
        """The Hamming radius around a query that holds every hash it can match at ``threshold``."""
        return int(math.floor(threshold * self.bits + 1e-9))

    def decide(self, query: Any, stored: Any, threshold: float, source: str) -> tuple[Comparison, str]:
        """A database's decision on a query against a stored hash, and its rule in words:
        the method's own rule where it has one, else NHD ≤ ``threshold`` (from ``source``)."""
        if self.own_rule:
            comparison = self.compare(query, stored)
            return comparison, comparison.details["rule"]
        comparison = self.compare(query, stored, threshold)
        sign = "≤" if comparison.matched else ">"
        return comparison, f"NHD {comparison.distance:.4f} {sign} {threshold:.4f} ({source})"

    def query_hashes(self, im: Image.Image) -> tuple[Hash | MultiHash, list[Hash | MultiHash]]:
        """A query's hash and every hash it is also searched with: :meth:`query_hash`'s,
        then :meth:`query_variants`'."""
        value, ready = self.query_hash(im)
        return value, ready + self.query_variants(im)

    def query_hash(self, im: Image.Image) -> tuple[Hash | MultiHash, list[Hash | MultiHash]]:
        """A query's hash, and the variants that come with it at no cost of their own
        (PDQ's 7 other turns and flips, from the one DCT that gives its hash), each with
        ``extra["variant"]``; by default none. A query judged as it is given is not
        searched with them: they wait until its variants are asked for."""
        return self.hash_pil(im), []

    def query_variants(self, im: Image.Image) -> list[Hash | MultiHash]:
        """The other hashes a query is searched with that cost work of their own, each
        with ``extra["variant"]`` saying what it is. By default: :meth:`border_trimmed`."""
        return self.border_trimmed(im)

    def border_trimmed(self, im: Image.Image) -> list[Hash]:
        """The query's hash with its uniform borders trimmed (padding, letterboxing, a
        one-colour frame: :func:`~robusthash.imaging.uniform_borders`), when it has any;
        within a frame of borders, another (a picture framed twice:
        :func:`~robusthash.imaging.nested_borders`) gives one more hash, each frame's
        labelled. Only query variants: registered hashes never change, and a trim of a
        picture's own flat margin costs one more search, not a lost match (the outer
        frame's hash is still searched). Methods of several parts per image find the
        picture among their parts instead."""
        boxes = [] if self.multi else nested_borders(im)
        values = [(self.hash_pil(cut_out(im, box, PART_PIXELS)), TRIMMED[min(n, len(TRIMMED) - 1)])
                  for n, box in enumerate(boxes)]
        return [replace(v, extra={**v.extra, "variant": label}) for v, label in values if isinstance(v, Hash)]

    def negative_hash(self, value: Hash | MultiHash) -> Hash | None:
        """The hash this method gives the negative (colours inverted) of the image that
        ``value`` is the hash of, where the hash alone tells it; None (the default) where
        it does not."""
        return None

    # How many :meth:`reference_crops` a registered image gets (stored beside its hash).
    reference_crop_count: int = 0

    def reference_crops(self, im: Image.Image) -> list[Hash]:
        """More hashes of an image being registered, stored beside its own and searched
        with it: a method that ranks a crop of a picture far from the whole (the learned
        ones) finds it through a stored crop instead. A match is still decided by the
        whole image's hash; a crop only brings the reference nearer in the ranking. None
        by default."""
        return []

    def weakness(self, value: Hash | MultiHash, min_quality: int | None = None) -> str | None:
        """Why ``value`` is too weak to register or match (None when it is not): its quality
        is below ``min_quality`` (default: the method's own floor; 0: no floor)."""
        floor = self.min_quality if min_quality is None else min_quality
        quality = value.extra.get("quality") if isinstance(value, Hash) else None
        if floor and quality is not None and quality < floor:
            return f"{self.name} quality {quality} is below {floor} (too little detail for a reliable hash)"
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}@{self.version}, {self.bits} bits>"


@dataclass(frozen=True)
class DecodeSpec:
    """How a hasher wants a file decoded: at least ``draft_size`` pixels a side (JPEGs are
    then decoded at a reduced scale; None: full size) and in ``mode`` ("RGB", "L", or
    "native": the file's own mode, alpha and bit depth kept, for hashers that follow a
    peer's own conversion)."""

    draft_size: int | None = None
    mode: str = "RGB"


def decode_spec(hasher: BaseHasher) -> DecodeSpec:
    return DecodeSpec(hasher.draft_size, hasher.input_mode)


def load_for(hasher: BaseHasher, image: ImageSource, limits: LoadLimits = DEFAULT_LIMITS) -> Image.Image:
    """``image`` decoded as ``hasher`` wants it (:class:`DecodeSpec`)."""
    spec = decode_spec(hasher)
    return load_pil(image, limits=limits, draft_size=spec.draft_size, mode=spec.mode)


class DecodedImage:
    """One input, read once and decoded once per :class:`DecodeSpec` asked of it.

    Each hasher sees the image decoded exactly as it would be on its own, so a method's
    hash is a function of the file alone, whichever other methods are asked for.
    ``name`` names the input in errors (default: :func:`~robusthash.io.describe_source`).
    """

    def __init__(self, image: ImageSource, limits: LoadLimits = DEFAULT_LIMITS, name: str | None = None):
        self.name = name or describe_source(image)
        self.limits = limits
        self.source: ImageSource = image
        if not isinstance(image, (Image.Image, np.ndarray, bytes)):
            self.source = read_bytes(image, limits)
        self._decoded: dict[DecodeSpec, Image.Image] = {}
        self._frame: DecodedFrame | None = None  # a file's one decode, where it serves every spec

    def for_hasher(self, hasher: BaseHasher) -> Image.Image:
        return self.decoded(decode_spec(hasher))

    def decoded(self, spec: DecodeSpec) -> Image.Image:
        if spec not in self._decoded:
            if isinstance(self.source, bytes):
                # Decoded once where the format allows (all but JPEG, whose decoder scales
                # per spec): the same pixels as a decode per spec, one decode's time.
                frame = self._frame or decode_frame(self.source, self.name, limits=self.limits,
                                                    draft_size=spec.draft_size, mode=spec.mode)
                if frame.reusable:
                    self._frame = frame
                self._decoded[spec] = finish_decode(frame, draft_size=spec.draft_size, mode=spec.mode)
            else:
                self._decoded[spec] = load_pil(self.source, limits=self.limits,
                                               draft_size=spec.draft_size, mode=spec.mode)
        return self._decoded[spec]


def hash_image(hashers: Sequence[BaseHasher], image: ImageSource, limits: LoadLimits = DEFAULT_LIMITS,
               name: str | None = None) -> dict[str, Hash | MultiHash]:
    """Every one of ``hashers``' hash of one input, by name (see :class:`DecodedImage`)."""
    decoded = DecodedImage(image, limits, name)
    return {hasher.name: hasher.hash_pil(decoded.for_hasher(hasher)) for hasher in hashers}


# Where a default threshold has no published value (see benchmarks/default_thresholds.py).
TRAIN_SPLIT_TAU = "τ at 1% FPR, distinct pairs of the corpus train split"

# name → the hasher's class or factory, or "module:attribute" naming it: a family is
# registered without importing it, so `robusthash hash -m forbild` loads neither imagehash
# nor onnxruntime, and the hashing layer never imports the families built on top of it.
_REGISTRY: dict[str, Callable[..., Hasher] | str] = {}
# "PREFIX" → a factory of "PREFIX=ARGUMENT" method specs; "" is the default, "NAME=PATH.onnx".
_SPECS: dict[str, Callable[[str], Hasher] | str] = {}


def register(factory: Callable[..., Hasher] | str, name: str | None = None) -> Callable[..., Hasher] | str:
    """Register a hasher class or factory (or its ``"module:attribute"``, imported on first
    use) under ``name`` (default: the class's ``name``); usable as a decorator."""
    key = name or getattr(factory, "name")
    if key in _REGISTRY and _REGISTRY[key] is not factory:
        raise ValueError(f"a hasher named {key!r} is already registered")
    _REGISTRY[key] = factory
    return factory


def register_spec(prefix: str, factory: Callable[[str], Hasher] | str) -> None:
    """Make ``PREFIX=ARGUMENT`` a method spec: ``factory(spec)`` builds its hasher (e.g.
    ``segments-instances=MODEL.onnx``). Prefix "" takes every other ``NAME=...`` spec."""
    _SPECS[prefix] = factory


def _resolved(target: Callable | str) -> Callable:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def available_methods() -> list[str]:
    """Names of all registered hashers, in registration order."""
    return list(_REGISTRY)


def get_hasher(name: str, **kwargs: Any) -> Hasher:
    """A hasher instance by registry name, e.g. ``get_hasher("forbild")``, or a method spec
    such as ``NAME=PATH.onnx`` (an exported model under NAME)."""
    if "=" in name:
        prefix = name.partition("=")[0]
        return _resolved(_SPECS.get(prefix) or _SPECS[""])(name)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(_REGISTRY)}") from None
    return _resolved(factory)(**kwargs)


_SHARED: dict[str, Hasher] = {}


def shared_hasher(name: str) -> Hasher:
    """One hasher per process and name: worker processes (a process pool, Dask workers) hash
    many tasks, and a learned hasher should load its model once, not once per task."""
    if name not in _SHARED:
        _SHARED[name] = get_hasher(name)
    return _SHARED[name]
