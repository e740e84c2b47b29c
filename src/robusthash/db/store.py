"""The reference database's tables: the source of truth for registered originals.

One schema, two engines: SQLite (a file, the embedded default) and PostgreSQL
(``postgresql://`` URLs). Everything above this module is engine-agnostic.

* ``images``: one row per registered original, unique by the SHA-256 of its bytes, so
  registering the same file twice (or re-running an interrupted bulk add) never makes
  a duplicate.
* ``hashes``: one or more hashes per image and method (``segment`` numbers the hashes
  of segment hashers; whole-image hashers use segment 0). Ids only grow.
* ``removals``: the ids of deleted hashes, in order, so a search index built earlier
  can catch up (see :mod:`robusthash.db.reference`) instead of being rebuilt.
* ``calibrations``: per method, the threshold at a false positive rate, measured on
  this collection.

Writers are serialised (SQLite's write lock; on PostgreSQL an advisory lock taken by
every writing transaction), so hash ids become visible in increasing order and a
reader that has seen id n has seen every id below it.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

# 2: hashes.quality (PDQ's quality; NULL for methods without one). A version-1 database is
# upgraded in place when opened (one ALTER TABLE).
SCHEMA_VERSION = "2"
IMAGE_COLUMNS = "id, digest, source, metadata, width, height, added_at"
HASH_COLUMNS = "id, image_id, method, version, segment, bits, quality"
WRITER_LOCK = 7_214_001  # PostgreSQL advisory lock key shared by all writers


@dataclass(frozen=True)
class ImageRecord:
    id: int
    digest: str
    source: str
    metadata: dict[str, Any]
    width: int | None
    height: int | None
    added_at: str


@dataclass(frozen=True)
class HashRow:
    """A hash as stored: the database id of the row, its image and its packed bits."""

    id: int
    image_id: int
    method: str
    version: str
    segment: int
    bits: bytes
    quality: int | None = None


@dataclass(frozen=True)
class NewImage:
    """An image to register, already hashed: ``hashes`` maps (method, version, segment) →
    packed bits, ``qualities`` the same keys → the hash's quality, where it has one."""

    digest: str
    source: str
    metadata: dict[str, Any]
    width: int | None
    height: int | None
    hashes: dict[tuple[str, str, int], bytes]
    qualities: dict[tuple[str, str, int], int] = field(default_factory=dict)


# What add_images did with each image.
ADDED, UPDATED, EXISTING = "added", "updated", "existing"


@dataclass(frozen=True)
class Calibration:
    method: str
    version: str
    fpr: float
    threshold: float  # NHD
    pairs: int
    images: int
    computed_at: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """Tables of the reference database on SQLite or PostgreSQL.

    ``url``: a file path (SQLite, created if missing) or a ``postgresql://`` URL.
    """

    def __init__(self, url: str | Path):
        self.url = str(url)
        self.is_postgres = self.url.startswith(("postgresql://", "postgres://"))
        self._conn = self._connect()
        self._create_schema()

    # --- connection and dialect ---------------------------------------------------

    def _connect(self):
        if self.is_postgres:
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        path = Path(self.url)
        if path.parent and not path.parent.exists():
            raise FileNotFoundError(f"folder of the database does not exist: {path.parent}")
        # isolation_level=None: we issue BEGIN ourselves, so a batch is one transaction.
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
        return conn

    def _sql(self, statement: str) -> str:
        """Statements are written with ``?`` placeholders; psycopg wants ``%s``."""
        return statement.replace("?", "%s") if self.is_postgres else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._sql(statement), params)

    def _executemany(self, statement: str, rows: list[Sequence[Any]]) -> None:
        if self.is_postgres:
            with self._conn.cursor() as cursor:
                cursor.executemany(self._sql(statement), rows)
        else:
            self._conn.executemany(statement, rows)

    @contextmanager
    def write(self) -> Iterator[None]:
        """One writing transaction: all of it lands, or none of it."""
        if self.is_postgres:
            with self._conn.transaction():
                self.execute("SELECT pg_advisory_xact_lock(?)", (WRITER_LOCK,))
                yield
            return
        self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _create_schema(self) -> None:
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY" if self.is_postgres else "INTEGER"
        autoincrement = "" if self.is_postgres else " AUTOINCREMENT"  # SQLite: never reuse ids
        blob = "BYTEA" if self.is_postgres else "BLOB"
        statements = [
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            f"""CREATE TABLE IF NOT EXISTS images (
                id {serial} PRIMARY KEY{autoincrement},
                digest TEXT NOT NULL UNIQUE,
                source TEXT NOT NULL,
                metadata TEXT NOT NULL,
                width INTEGER,
                height INTEGER,
                added_at TEXT NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS hashes (
                id {serial} PRIMARY KEY{autoincrement},
                image_id BIGINT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                method TEXT NOT NULL,
                version TEXT NOT NULL,
                segment INTEGER NOT NULL,
                bits {blob} NOT NULL,
                quality INTEGER,
                UNIQUE (image_id, method, segment))""",
            "CREATE INDEX IF NOT EXISTS hashes_by_method ON hashes (method, version, id)",
            f"""CREATE TABLE IF NOT EXISTS removals (
                seq {serial} PRIMARY KEY{autoincrement},
                hash_id BIGINT NOT NULL,
                method TEXT NOT NULL,
                version TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS calibrations (
                method TEXT NOT NULL,
                version TEXT NOT NULL,
                fpr REAL NOT NULL,
                threshold REAL NOT NULL,
                pairs BIGINT NOT NULL,
                images BIGINT NOT NULL,
                computed_at TEXT NOT NULL,
                PRIMARY KEY (method, version))""",
        ]
        if self._schema_version() == SCHEMA_VERSION:
            return  # opening an existing database writes nothing, so it never waits for a writer
        with self.write():
            for statement in statements:
                self.execute(statement)
            found = self.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if found is None:
                self.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif found[0] == "1":
                self.execute("ALTER TABLE hashes ADD COLUMN quality INTEGER")
                self.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            elif found[0] != SCHEMA_VERSION:
                raise RuntimeError(f"{self.url}: schema version {found[0]}, this robusthash reads {SCHEMA_VERSION}")

    def _schema_version(self) -> str | None:
        table = ("SELECT to_regclass('meta') IS NOT NULL" if self.is_postgres
                 else "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
        if not self.execute(table).fetchone()[0]:
            return None
        row = self.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._conn.close()

    # --- writing --------------------------------------------------------------------

    def add_images(self, images: Sequence[NewImage]) -> list[tuple[int, str]]:
        """Register a batch in one transaction; returns (image id, what happened) per image:
        ``ADDED`` (a new image), ``UPDATED`` (registered before; hashes it lacked were added,
        e.g. of a method added since or of a method's new version) or ``EXISTING``.

        An image already registered (same digest) keeps its row and metadata; only the
        hashes it does not have yet are added, so a re-run completes an interrupted one. A
        method's hashes of an older version are replaced by the new version's (and logged
        as removed, so the old version's index drops them).
        """
        results = []
        with self.write():
            for image in images:
                row = self.execute("SELECT id FROM images WHERE digest = ?", (image.digest,)).fetchone()
                image_id = self._insert_image(image) if row is None else int(row[0])
                held = {(m, v, s): int(i) for i, m, v, s in self.execute(
                    "SELECT id, method, version, segment FROM hashes WHERE image_id = ?", (image_id,))}
                new = {key: bits for key, bits in image.hashes.items() if key not in held}
                versions = {(m, v) for m, v, _ in new}
                renewed = {m for m, _ in versions}
                stale = [(i, m, v) for (m, v, _), i in held.items() if m in renewed and (m, v) not in versions]
                if stale:
                    self._executemany("INSERT INTO removals (hash_id, method, version) VALUES (?, ?, ?)", stale)
                    self._executemany("DELETE FROM hashes WHERE id = ?", [(i,) for i, _, _ in stale])
                if new:
                    self._executemany(
                        "INSERT INTO hashes (image_id, method, version, segment, bits, quality) VALUES (?, ?, ?, ?, ?, ?)",
                        [(image_id, m, v, s, bits, image.qualities.get((m, v, s))) for (m, v, s), bits in new.items()])
                results.append((image_id, ADDED if row is None else UPDATED if new else EXISTING))
        return results

    def _insert_image(self, image: NewImage) -> int:
        params = (image.digest, image.source, json.dumps(image.metadata, ensure_ascii=False),
                  image.width, image.height, _now())
        statement = "INSERT INTO images (digest, source, metadata, width, height, added_at) VALUES (?, ?, ?, ?, ?, ?)"
        if self.is_postgres:
            return int(self.execute(statement + " RETURNING id", params).fetchone()[0])
        return int(self.execute(statement, params).lastrowid)

    def remove_images(self, image_ids: Iterable[int]) -> int:
        """Delete images and their hashes, logging the hash ids for the indexes."""
        removed = 0
        with self.write():
            for image_id in image_ids:
                hashes = self.execute("SELECT id, method, version FROM hashes WHERE image_id = ?", (image_id,)).fetchall()
                if hashes:
                    self._executemany("INSERT INTO removals (hash_id, method, version) VALUES (?, ?, ?)",
                                      [tuple(h) for h in hashes])
                cursor = self.execute("DELETE FROM images WHERE id = ?", (image_id,))
                removed += cursor.rowcount
        return removed

    def save_calibration(self, calibration: Calibration) -> None:
        with self.write():
            self.execute("DELETE FROM calibrations WHERE method = ? AND version = ?",
                         (calibration.method, calibration.version))
            self.execute(
                "INSERT INTO calibrations (method, version, fpr, threshold, pairs, images, computed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (calibration.method, calibration.version, calibration.fpr, calibration.threshold,
                 calibration.pairs, calibration.images, calibration.computed_at),
            )

    # --- reading --------------------------------------------------------------------

    def image(self, image_id: int) -> ImageRecord | None:
        row = self.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        return None if row is None else _image_record(row)

    def images(self, image_ids: Iterable[int]) -> dict[int, ImageRecord]:
        return {r.id: r for r in map(_image_record, self._rows_by_id(f"SELECT {IMAGE_COLUMNS} FROM images", image_ids))}

    def image_by_digest(self, digest: str) -> ImageRecord | None:
        row = self.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE digest = ?", (digest,)
        ).fetchone()
        return None if row is None else _image_record(row)

    def hashes(self, method: str, version: str, after_id: int = 0, batch: int = 100_000) -> Iterator[list[HashRow]]:
        """Hash rows of one method with id > ``after_id``, in id order, in batches."""
        last = after_id
        while True:
            rows = self.execute(
                f"SELECT {HASH_COLUMNS} FROM hashes WHERE method = ? AND version = ? AND id > ? ORDER BY id LIMIT ?",
                (method, version, last, batch),
            ).fetchall()
            if not rows:
                return
            yield [_hash_row(r) for r in rows]
            last = int(rows[-1][0])

    def hash_rows(self, hash_ids: Iterable[int]) -> dict[int, HashRow]:
        return {r.id: r for r in map(_hash_row, self._rows_by_id(f"SELECT {HASH_COLUMNS} FROM hashes", hash_ids))}

    def _rows_by_id(self, select: str, ids: Iterable[int], chunk: int = 500) -> Iterator[Sequence[Any]]:
        """Rows whose id is in ``ids``, asked for in chunks (SQL parameter lists are bounded)."""
        wanted = sorted(set(int(i) for i in ids))
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            yield from self.execute(f"{select} WHERE id IN ({','.join('?' * len(part))})", part)

    def image_hashes(self, image_id: int, method: str, version: str) -> list[HashRow]:
        """Every hash of one image and method, by segment."""
        rows = self.execute(
            f"SELECT {HASH_COLUMNS} FROM hashes WHERE image_id = ? AND method = ? AND version = ? ORDER BY segment",
            (image_id, method, version),
        ).fetchall()
        return [_hash_row(r) for r in rows]

    def removals(self, method: str, version: str, after_seq: int = 0) -> list[tuple[int, int]]:
        """(seq, hash id) of hashes of one method removed after ``after_seq``."""
        rows = self.execute(
            "SELECT seq, hash_id FROM removals WHERE method = ? AND version = ? AND seq > ? ORDER BY seq",
            (method, version, after_seq),
        ).fetchall()
        return [(int(s), int(h)) for s, h in rows]

    def last_removal(self) -> int:
        row = self.execute("SELECT MAX(seq) FROM removals").fetchone()
        return int(row[0] or 0)

    def calibration(self, method: str, version: str) -> Calibration | None:
        row = self.execute(
            "SELECT method, version, fpr, threshold, pairs, images, computed_at FROM calibrations "
            "WHERE method = ? AND version = ?", (method, version),
        ).fetchone()
        return None if row is None else Calibration(row[0], row[1], float(row[2]), float(row[3]), int(row[4]),
                                                    int(row[5]), row[6])

    def stats(self) -> dict[str, Any]:
        images = int(self.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        per_method = {
            f"{m}@{v}": {"hashes": int(n), "images": int(k)}
            for m, v, n, k in self.execute(
                "SELECT method, version, COUNT(*), COUNT(DISTINCT image_id) FROM hashes GROUP BY method, version "
                "ORDER BY method, version"
            )
        }
        return {"engine": "postgresql" if self.is_postgres else "sqlite", "images": images, "methods": per_method}

    def methods(self) -> list[tuple[str, str]]:
        return [(m, v) for m, v in self.execute("SELECT DISTINCT method, version FROM hashes ORDER BY method, version")]


def _hash_row(r: Sequence[Any]) -> HashRow:
    return HashRow(int(r[0]), int(r[1]), r[2], r[3], int(r[4]), bytes(r[5]), None if r[6] is None else int(r[6]))


def _image_record(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(int(row[0]), row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])
