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
    register_spec,
)
from .io import ImageError, LoadLimits, load_image, load_pil

__version__ = "0.1.0"


# The per-object family registers here, by name only: it is built on the hashing layer,
# which must not import it (and its scikit-image and SciPy modules cost ~0.3 s to load).
register("robusthash.segments.hasher:SegmentsHasher", "segments")
register_spec("segments-instances", "robusthash.segments.hasher:instance_segments_spec")


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
