"""The hasher protocol, a base class that supplies the common parts, and the registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from ..io import DEFAULT_LIMITS, ImageSource, LoadLimits, load_pil
from .value import Hash, MultiHash


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

    name: ClassVar[str]
    bits: ClassVar[int]
    version: ClassVar[str]
    description: ClassVar[str] = ""
    threshold: ClassVar[float]
    threshold_source: ClassVar[str] = ""
    multi: ClassVar[bool] = False  # hashes are MultiHash (several parts per image)
    draft_size: ClassVar[int | None] = None
    input_mode: ClassVar[str] = "RGB"

    def __init__(self, limits: LoadLimits = DEFAULT_LIMITS):
        self.limits = limits

    @property
    def decision(self) -> str:
        """The default decision rule in a few words."""
        return f"NHD ≤ {self.threshold:.4f} (Hamming ≤ {round(self.threshold * self.bits)})"

    def hash(self, image: ImageSource) -> Hash | MultiHash:
        """Hash any input :func:`robusthash.io.load_image` accepts."""
        return self.hash_pil(load_for([self], image, self.limits))

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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}@{self.version}, {self.bits} bits>"


def load_for(hashers: Sequence[BaseHasher], image: ImageSource, limits: LoadLimits = DEFAULT_LIMITS) -> Image.Image:
    """Decode ``image`` once so that every one of ``hashers`` can hash it: at the largest
    size and in the richest mode any of them needs (RGB unless all need only luma)."""
    draft_size, mode = decode_options(hashers)
    return load_pil(image, limits=limits, draft_size=draft_size, mode=mode)


def decode_options(hashers: Sequence[BaseHasher]) -> tuple[int | None, str]:
    """(draft size, mode) that serve every one of ``hashers``."""
    drafts = [h.draft_size for h in hashers]
    mode = "L" if all(h.input_mode == "L" for h in hashers) else "RGB"
    return (None if None in drafts else max(drafts)), mode


# Where a default threshold has no published value (see benchmarks/default_thresholds.py).
TRAIN_SPLIT_TAU = "τ at 1% FPR, distinct pairs of the corpus train split"

_REGISTRY: dict[str, Callable[..., Hasher]] = {}


def register(factory: Callable[..., Hasher], name: str | None = None) -> Callable[..., Hasher]:
    """Register a hasher class (or factory) under its ``name``; usable as a decorator."""
    key = name or getattr(factory, "name")
    if key in _REGISTRY and _REGISTRY[key] is not factory:
        raise ValueError(f"a hasher named {key!r} is already registered")
    _REGISTRY[key] = factory
    return factory


def available_methods() -> list[str]:
    """Names of all registered hashers, in registration order."""
    return list(_REGISTRY)


def get_hasher(name: str, **kwargs: Any) -> Hasher:
    """A hasher instance by registry name, e.g. ``get_hasher("forbild")``, or an exported
    model given as ``NAME=PATH.onnx``."""
    if "=" in name:
        from .learned import hasher_from_model_spec

        return hasher_from_model_spec(name)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(_REGISTRY)}") from None
    return factory(**kwargs)


_SHARED: dict[str, Hasher] = {}


def shared_hasher(name: str) -> Hasher:
    """One hasher per process and name: worker processes (a process pool, Dask workers) hash
    many tasks, and a learned hasher should load its model once, not once per task."""
    if name not in _SHARED:
        _SHARED[name] = get_hasher(name)
    return _SHARED[name]
