"""The peers' published test vectors against our hashers (tests/golden/peers/): for each
set, how many vectors we reproduce exactly and the largest distance in bits.

    .venv/bin/python benchmarks/peer_vectors.py
"""

from __future__ import annotations

import json
from pathlib import Path

from robusthash import get_hasher
from robusthash.hashing import Hash, MultiHash

PEERS = Path(__file__).resolve().parent.parent / "tests" / "golden" / "peers"


def distances(entry: dict) -> list[int]:
    """Our distance in bits to each expected hash of one vector set (tests/golden/peers/vectors.json)."""
    out = []
    for name, expected in entry["expected"].items():
        path = PEERS / entry["dir"] / name
        if entry["method"] == "pdq-dihedral":
            out += [h - Hash.from_hex(e) for h, e in zip(get_hasher("pdq").hash_dihedral(path), expected)]
        elif entry["method"] == "imagehash":
            for method, text in expected.items():
                value = get_hasher(method).hash(path)
                if isinstance(value, MultiHash):
                    parts = text.split(",")
                    out.append(sum(a - Hash.from_hex(b) for a, b in zip(value.hashes, parts))
                               + 64 * abs(len(parts) - len(value.hashes)))
                else:
                    out.append(value - Hash.from_hex(text))
        else:
            out.append(get_hasher(entry["method"]).hash(path) - Hash.from_hex(expected))
    return out


def main() -> None:
    vectors = json.loads((PEERS / "vectors.json").read_text())
    print("| set | n | exact | max distance (bits) | tolerance |")
    print("|---|---:|---:|---:|---:|")
    for title, entry in vectors.items():
        found = distances(entry)
        print(f"| {title} | {len(found)} | {sum(d == 0 for d in found)} | {max(found)} | {entry['tolerance']} |")


if __name__ == "__main__":
    main()
