"""Hash values, the hasher protocol, the registry, and the classical hashers."""

from .base import BaseHasher, Comparison, Hasher, available_methods, get_hasher, register, shared_hasher
from .value import Hash, MultiHash, hash_from_dict

# Importing the hasher modules registers them, in this order.
from .forbild import ForbildHasher, weighted_distance  # noqa: E402
from .blockhash import BlockHasher  # noqa: E402
from .baselines import (  # noqa: E402
    AhashHasher,
    CropResistantHasher,
    DhashHasher,
    PdqHasher,
    PhashHasher,
    WhashHasher,
)
from .learned import CmaaHasher, OnnxHasher  # noqa: E402

__all__ = [
    "AhashHasher",
    "BaseHasher",
    "BlockHasher",
    "CmaaHasher",
    "Comparison",
    "CropResistantHasher",
    "DhashHasher",
    "ForbildHasher",
    "Hash",
    "Hasher",
    "MultiHash",
    "OnnxHasher",
    "PdqHasher",
    "PhashHasher",
    "WhashHasher",
    "available_methods",
    "get_hasher",
    "hash_from_dict",
    "register",
    "shared_hasher",
    "weighted_distance",
]
