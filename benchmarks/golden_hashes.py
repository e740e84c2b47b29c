"""Write the golden hashes of our own methods (tests/golden/ours/hashes.json), which
tests/test_golden_ours.py checks in `make test`.

Run it only together with a method's version bump (a deliberate change of its output),
and commit the JSON in the same commit:

    .venv/bin/python benchmarks/golden_hashes.py
"""

from __future__ import annotations

import json
from pathlib import Path

from robusthash.hashing import available_methods, get_hasher

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "ours"
IMAGES = sorted(p.name for p in GOLDEN.iterdir() if p.suffix in (".jpg", ".png"))


def golden_hashes() -> dict[str, dict[str, str]]:
    """{method: {image file: the hash's text form}} for every registered method."""
    return {method: {name: get_hasher(method).hash(GOLDEN / name).to_text().split(";")[0] for name in IMAGES}
            for method in available_methods()}


if __name__ == "__main__":
    target = GOLDEN / "hashes.json"
    target.write_text(json.dumps(golden_hashes(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}")
