"""Hash values: a fixed number of packed bits plus the method and version that made them.

Familiar to imagehash users: ``str(h)`` is hex, ``Hash.from_hex`` reads it back and
``a - b`` is the Hamming distance. ``a.nhd(b)`` is the normalised Hamming distance
(Hamming / bits) used by the evaluation protocol.

Two text forms:

* plain hex (``str(h)``): the bits alone, for exchanging hashes with peer tools (PDQ's
  hex is ThreatExchange's, imagehash's is imagehash's);
* the lossless text form (``h.to_text()``, read by :func:`hash_from_text` and by
  ``Hash.from_hex``): ``METHOD:VERSION:HEX``, then, where the hash carries side
  information, ``;`` and a JSON object of it (float arrays as ``{"float32": BASE64}``),
  e.g. ``pdq:pdqhash-0.2.8:fb4e…;{"quality":100}``. A multi-hash joins its parts' hex
  with commas and its side information is a JSON list, one object per part.
"""

from __future__ import annotations

import base64
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
        """Read a hex string; ``nbits`` defaults to 4 bits per hex digit. The lossless
        text form (``METHOD:VERSION:HEX…``, see :meth:`to_text`) is read whole."""
        if ":" in text:
            value = hash_from_text(text)
            if not isinstance(value, Hash):
                raise ValueError(f"a multi-hash, not a hash: {text[:40]!r}")
            return value
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

    def to_text(self) -> str:
        """The lossless text form ``METHOD:VERSION:HEX[;EXTRA-JSON]`` (module docstring)."""
        return _text(self.method, self.version, str(self), dict(self.extra) if self.extra else None)

    def same_as(self, other: Hash) -> bool:
        """Equal, and with equal side information (what :meth:`to_text` keeps)."""
        return self == other and _encode_extra(dict(self.extra)) == _encode_extra(dict(other.extra))


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

    def to_text(self) -> str:
        """The lossless text form ``METHOD:VERSION:HEX,HEX…[;[EXTRA-JSON, …]]``."""
        extras = [dict(h.extra) for h in self.hashes]
        return _text(self.method, self.version, str(self), extras if any(extras) else None)

    def same_as(self, other: MultiHash) -> bool:
        return self == other and all(a.same_as(b) for a, b in zip(self.hashes, other.hashes))


def _text(method: str, version: str, hex_part: str, extra: Any) -> str:
    if not method or not version:
        raise ValueError("a hash of unknown method or version has no lossless text form; use its hex")
    if ":" in method or ";" in version:
        raise ValueError(f"method {method!r} or version {version!r} cannot be written in the text form")
    text = f"{method}:{version}:{hex_part}"
    return text if extra is None else f"{text};{json.dumps(_encode_extra(extra), separators=(',', ':'))}"


def _encode_extra(value: Any) -> Any:
    """Side information as JSON values; float arrays keep every bit as base64 float32."""
    if isinstance(value, dict):
        return {str(k): _encode_extra(v) for k, v in sorted(value.items())}
    if isinstance(value, np.ndarray):
        return {"float32": base64.b64encode(np.ascontiguousarray(value, dtype="<f4").tobytes()).decode()}
    if isinstance(value, (list, tuple)):
        return [_encode_extra(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_extra(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"float32"}:
            return np.frombuffer(base64.b64decode(value["float32"]), dtype="<f4").astype(np.float32)
        return {k: _decode_extra(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_decode_extra(v) for v in value)
    return value


def hash_from_text(text: str) -> Hash | MultiHash:
    """Read the lossless text form (:meth:`Hash.to_text`, :meth:`MultiHash.to_text`)."""
    head, _, extra_json = text.strip().partition(";")
    identity, _, hex_part = head.rpartition(":")
    method, _, version = identity.partition(":")
    if not method or not version or not hex_part:
        raise ValueError(f"not a hash in the text form METHOD:VERSION:HEX: {text[:60]!r}")
    try:
        extra = _decode_extra(json.loads(extra_json)) if extra_json else None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the side information of {text[:40]!r}… is not valid ({exc})") from None
    parts = hex_part.split(",")
    extras = extra if isinstance(extra, tuple) else (extra,) * len(parts) if extra else ({},) * len(parts)
    if len(extras) != len(parts):
        raise ValueError(f"{len(parts)} parts but side information for {len(extras)}")
    hashes = tuple(Hash(h.data, h.nbits, method, version, dict(e or {}))
                   for h, e in zip((Hash.from_hex(p) for p in parts), extras))
    if len(parts) == 1 and not isinstance(extra, tuple):
        return hashes[0]
    return MultiHash(hashes, method, version)


def hash_from_dict(obj: Mapping[str, Any]) -> Hash | MultiHash:
    """Read either kind of hash from its JSON object."""
    return MultiHash.from_dict(obj) if "segments" in obj else Hash.from_dict(obj)
