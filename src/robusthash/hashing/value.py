"""Hash values: a fixed number of packed bits plus the method and version that made them.

Familiar to imagehash users: ``str(h)`` is hex, ``Hash.from_hex`` reads it back and
``a - b`` is the Hamming distance. ``a.nhd(b)`` is the normalised Hamming distance
(Hamming / bits) used by the evaluation protocol.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np


@dataclass(frozen=True, eq=False)
class Hash:
    """A binary hash.

    data:    the bits, packed most significant bit first (``numpy.packbits`` order).
    nbits:   number of bits (the last byte is zero-padded when not a multiple of 8).
    method:  registry name of the hasher that produced it ("" if unknown).
    version: that hasher's output version; hashes of different versions never compare.
    extra:   method-specific side information that is not part of the identity and is
             not needed once stored (e.g. forbild's per-bit reliability, PDQ's quality).
    """

    data: bytes
    nbits: int
    method: str = ""
    version: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.nbits <= 0:
            raise ValueError("a hash needs at least one bit")
        if len(self.data) != (self.nbits + 7) // 8:
            raise ValueError(f"{len(self.data)} bytes cannot hold exactly {self.nbits} bits")

    # construction ----------------------------------------------------------------
    @classmethod
    def from_bits(cls, bits: Iterable[bool] | np.ndarray, method: str = "", version: str = "", **extra: Any) -> Hash:
        arr = np.asarray(bits, dtype=bool).ravel()
        return cls(np.packbits(arr).tobytes(), int(arr.size), method, version, extra)

    @classmethod
    def from_hex(cls, text: str, method: str = "", version: str = "", nbits: int | None = None) -> Hash:
        """Read a hex string; ``nbits`` defaults to 4 bits per hex digit."""
        text = text.strip().lower()
        if text.startswith("0x"):
            text = text[2:]
        if not text or any(c not in "0123456789abcdef" for c in text):
            raise ValueError(f"not a hex hash: {text!r}")
        nbits = 4 * len(text) if nbits is None else nbits
        if not 4 * len(text) - 3 <= nbits <= 4 * len(text):
            raise ValueError(f"{len(text)} hex digits cannot hold exactly {nbits} bits")
        value = int(text, 16) << ((-nbits) % 8)
        return cls(value.to_bytes((nbits + 7) // 8, "big"), nbits, method, version)

    # views -----------------------------------------------------------------------
    @property
    def bits(self) -> np.ndarray:
        """The bits as a bool array of length ``nbits``."""
        return np.unpackbits(np.frombuffer(self.data, dtype=np.uint8), count=self.nbits).astype(bool)

    def __int__(self) -> int:
        return int.from_bytes(self.data, "big") >> ((-self.nbits) % 8)

    def __str__(self) -> str:
        return format(int(self), f"0{(self.nbits + 3) // 4}x")

    def hex(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        label = f"{self.method}@{self.version}" if self.method else "unknown"
        return f"Hash({label}, {self.nbits} bits, {self})"

    def __len__(self) -> int:
        return self.nbits

    # comparison ------------------------------------------------------------------
    def _check_comparable(self, other: object) -> Hash:
        if not isinstance(other, Hash):
            raise TypeError(f"cannot compare a Hash with {type(other).__name__}")
        if self.nbits != other.nbits:
            raise TypeError(f"hashes of different lengths: {self.nbits} and {other.nbits} bits")
        if self.method and other.method and (self.method, self.version) != (other.method, other.version):
            raise ValueError(
                f"hashes of different methods or versions: {self.method}@{self.version} "
                f"and {other.method}@{other.version}"
            )
        return other

    def hamming(self, other: Hash) -> int:
        other = self._check_comparable(other)
        return (int.from_bytes(self.data, "big") ^ int.from_bytes(other.data, "big")).bit_count()

    __sub__ = hamming

    def nhd(self, other: Hash) -> float:
        """Normalised Hamming distance in [0, 1]."""
        return self.hamming(other) / self.nbits

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hash):
            return NotImplemented
        return (self.data, self.nbits, self.method, self.version) == (
            other.data,
            other.nbits,
            other.method,
            other.version,
        )

    def __hash__(self) -> int:
        return hash((self.data, self.nbits, self.method, self.version))

    # serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "version": self.version, "bits": self.nbits, "hash": str(self)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Hash:
        try:
            return cls.from_hex(obj["hash"], obj.get("method", ""), obj.get("version", ""), obj.get("bits"))
        except KeyError as exc:
            raise ValueError(f"hash JSON lacks the field {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Hash:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class MultiHash:
    """Several hashes of one image (e.g. one per segment), compared as a set.

    ``str()`` joins the hex strings with commas, as imagehash does for its multi-hashes.
    """

    hashes: tuple[Hash, ...]
    method: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if not self.hashes:
            raise ValueError("a MultiHash needs at least one hash")

    @property
    def nbits(self) -> int:
        return sum(h.nbits for h in self.hashes)

    def __len__(self) -> int:
        return len(self.hashes)

    def __str__(self) -> str:
        return ",".join(str(h) for h in self.hashes)

    def __repr__(self) -> str:
        return f"MultiHash({self.method}@{self.version}, {len(self.hashes)} hashes)"

    @classmethod
    def from_hex(cls, text: str, method: str = "", version: str = "") -> MultiHash:
        return cls(tuple(Hash.from_hex(part, method, version) for part in text.split(",")), method, version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "version": self.version,
            "bits": self.nbits,
            "segments": len(self.hashes),
            "hash": str(self),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> MultiHash:
        return cls.from_hex(obj["hash"], obj.get("method", ""), obj.get("version", ""))


def hash_from_dict(obj: Mapping[str, Any]) -> Hash | MultiHash:
    """Read either kind of hash from its JSON object."""
    return MultiHash.from_dict(obj) if "segments" in obj else Hash.from_dict(obj)
