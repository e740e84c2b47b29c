"""A SQLite cache of the benchmark's hashes, so that re-running a benchmark, adding a
method or an attack, only computes what is new.

A hash is stored under (image, attack, method):

* image: SHA-256 of the file's bytes, so renaming or moving files keeps their entries;
* attack: the canonical attack spec, the seed it ran with and a fingerprint of the
  attack code, so a changed attack implementation never serves stale copies;
* method: the hasher's name, version and a fingerprint of the module that defines it.

Each entry also keeps the seconds its hash took, measured when it was computed.
"""

from __future__ import annotations

import hashlib
import inspect
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (
    image TEXT NOT NULL,
    attack TEXT NOT NULL,
    method TEXT NOT NULL,
    bits BLOB NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (image, attack, method)
) WITHOUT ROWID
"""


def source_fingerprint(*objects: object) -> str:
    """Short digest of the source files that define ``objects`` (modules, classes, functions)."""
    digest = hashlib.sha256()
    for path in sorted({inspect.getsourcefile(obj) or "" for obj in objects}):  # type: ignore[arg-type]
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class HashCache:
    """Hashes by (image digest, attack id, method id). ``path=None`` keeps nothing."""

    def __init__(self, path: Path | None):
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(SCHEMA)

    def lookup(self, image: str, methods: Iterable[str]) -> dict[tuple[str, str], tuple[bytes, float]]:
        """Every cached (attack, method) → (packed bits, seconds) of one image."""
        if self._db is None:
            return {}
        wanted = list(methods)
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT attack, method, bits, seconds FROM hashes WHERE image = ? AND method IN ({marks})",
            [image, *wanted],
        )
        return {(attack, method): (bits, seconds) for attack, method, bits, seconds in rows}

    def store(self, image: str, entries: Iterator[tuple[str, str, bytes, float]] | list) -> None:
        """Add (attack, method, packed bits, seconds) entries of one image, in one transaction."""
        if self._db is None:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO hashes (image, attack, method, bits, seconds) VALUES (?, ?, ?, ?, ?)",
                [(image, attack, method, bits, seconds) for attack, method, bits, seconds in entries],
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
