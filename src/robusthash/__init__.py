"""robusthash: content identification with robust image hashes.

Flat and discoverable, in the spirit of imagehash::

    import robusthash as rh
    a = rh.hash_image("original.jpg", "forbild")
    b = rh.hash_image("copy.jpg", "forbild")
    a - b                               # Hamming distance
    rh.get_hasher("forbild").compare(a, b)   # distance, decision and why
"""

from .hashing import (
    BaseHasher,
    Comparison,
    Hash,
    Hasher,
    MultiHash,
    available_methods,
    get_hasher,
    register,
)
from .io import ImageError, LoadLimits, load_image, load_pil

__version__ = "0.1.0"


def _segments_hasher(**kwargs):
    # Imported on first use: the segmenter's scikit-image and SciPy modules would add
    # ~0.3 s to every `import robusthash` (and so to every CLI call).
    from .segments import SegmentsHasher

    return SegmentsHasher(**kwargs)


register(_segments_hasher, "segments")


def hash_image(image, method: str = "forbild"):
    """Hash one image (path, bytes, file object, PIL image or array) with a registered method."""
    return get_hasher(method).hash(image)


__all__ = [
    "BaseHasher",
    "Comparison",
    "Hash",
    "Hasher",
    "ImageError",
    "LoadLimits",
    "MultiHash",
    "available_methods",
    "get_hasher",
    "hash_image",
    "load_image",
    "load_pil",
    "register",
    "__version__",
]
