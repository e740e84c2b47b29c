"""Per-object hashing robust to cropping, rotation and montages (Steinebach, Berwanger,
Liu; issue 6, in progress): segment (``segmenter``), isolate and normalise objects
(``objects``), hash the whole image and every object (``hasher``, the ``segments``
method). Matching with a montage flag and the evaluation are to follow."""

from .hasher import SegmentsHasher
from .objects import Background, NormalisedObject, normalise_object, orientation
from .segmenter import ColourSegmenter, ColourSegmenterConfig, Segmenter

__all__ = ["Background", "ColourSegmenter", "ColourSegmenterConfig", "NormalisedObject", "Segmenter",
           "SegmentsHasher", "normalise_object", "orientation"]
