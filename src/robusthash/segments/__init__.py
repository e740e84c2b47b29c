"""Per-object hashing robust to cropping, rotation and montages (Steinebach, Berwanger,
Liu; issue 6, in progress): isolate and normalise objects (``objects``); segmentation,
hashing and matching are to follow."""

from .objects import Background, NormalisedObject, normalise_object, orientation

__all__ = ["Background", "NormalisedObject", "normalise_object", "orientation"]
