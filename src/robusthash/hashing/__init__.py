"""Hash values, the hasher protocol, the registry, and the classical and learned hashers.

The hashers are registered by ``"module:class"`` and imported on first use, so naming
one method loads that method's dependencies only (imagehash, pdqhash, onnxruntime).
"""

from .base import (BaseHasher, Comparison, Hasher, available_methods, get_hasher, register, register_spec,
                   shared_hasher)
from .value import Hash, MultiHash, hash_from_dict

# Registration order is the order `robusthash methods` lists them in.
_BUILT_IN = {
    "forbild": "robusthash.hashing.forbild:ForbildHasher",
    "blockhash": "robusthash.hashing.blockhash:BlockHasher",
    "pdq": "robusthash.hashing.baselines:PdqHasher",
    "phash": "robusthash.hashing.baselines:PhashHasher",
    "dhash": "robusthash.hashing.baselines:DhashHasher",
    "ahash": "robusthash.hashing.baselines:AhashHasher",
    "whash": "robusthash.hashing.baselines:WhashHasher",
    "crop-resistant": "robusthash.hashing.baselines:CropResistantHasher",
    "cmaa": "robusthash.hashing.learned:CmaaHasher",
    "aria": "robusthash.hashing.learned:AriaHasher",
}
for _name, _target in _BUILT_IN.items():
    register(_target, _name)
register_spec("", "robusthash.hashing.learned:hasher_from_model_spec")

# The hasher classes, imported when first asked for (``robusthash.hashing.PdqHasher``).
_CLASSES = {
    "ForbildHasher": "forbild", "weighted_distance": "forbild", "BlockHasher": "blockhash",
    "PdqHasher": "baselines", "PhashHasher": "baselines", "DhashHasher": "baselines",
    "AhashHasher": "baselines", "WhashHasher": "baselines", "CropResistantHasher": "baselines",
    "CmaaHasher": "learned", "AriaHasher": "learned", "OnnxHasher": "learned",
}


def __getattr__(name: str):
    if name in _CLASSES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_CLASSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AhashHasher",
    "AriaHasher",
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
    "register_spec",
    "shared_hasher",
    "weighted_distance",
]
