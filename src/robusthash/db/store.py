"""The reference database's tables: the source of truth for registered originals.

One schema, two engines: SQLite (a file, the embedded default) and PostgreSQL
(``postgresql://`` URLs). Everything above this module is engine-agnostic.

* ``images``: one row per registered original, unique by the SHA-256 of its bytes, so
  registering the same file twice (or re-running an interrupted bulk add) never makes
  a duplicate.
* ``hashes``: one or more hashes per image and method (``segment`` numbers the hashes
  of segment hashers; whole-image hashers use segment 0). Ids only grow.
* ``features``: per image and kind, the data a pairwise verification against the
  registered original needs (e.g. local feature keypoints and descriptors), an opaque
  blob derived at registration like the hashes, of one version per kind.
* ``removals``: the ids of deleted hashes, in order, so a search index built earlier
  can catch up (see :mod:`robusthash.db.reference`) instead of being rebuilt.
* ``calibrations``: per method, the threshold at a false positive rate, measured on
  this collection.
* ``meta``: key → text (the schema version, the database's identity, its methods, a
  Milvus index's progress), read and written with :meth:`Store.meta` and
  :meth:`Store.set_meta`.

Nothing outside this module issues SQL or sees a driver's exceptions: a database that
cannot be reached, is locked for too long or is not a database raises
:class:`StoreUnavailable`.

Writers are serialised (SQLite's write lock; on PostgreSQL an advisory lock taken by
every writing transaction), so hash ids become visible in increasing order and a
reader that has seen id n has seen every id below it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

# 2: hashes.quality (PDQ's quality; NULL for methods without one). 3: the features table.
# An older database is upgraded in place when opened (version 1: one ALTER TABLE; both: the
# new table).
SCHEMA_VERSION = "3"
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
    packed bits, ``qualities`` the same keys → the hash's quality, where it has one, and
    ``features`` maps (kind, version) → the image's verification data of that kind (an
    opaque blob, e.g. local feature keypoints and descriptors; at most one version per
    kind)."""

    digest: str
    source: str
    metadata: dict[str, Any]
    width: int | None
    height: int | None
    hashes: dict[tuple[str, str, int], bytes]
    qualities: dict[tuple[str, str, int], int] = field(default_factory=dict)
    features: dict[tuple[str, str], bytes] = field(default_factory=dict)


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


RECONNECT_FIRST, RECONNECT_MOST = 0.5, 30.0  # seconds between tries to reach a lost PostgreSQL server


class StoreUnavailable(RuntimeError):
    """The database cannot be reached, stayed locked by another writer too long, or is
    broken (not a database, corrupt). The server's condition, not the caller's fault:
    retrying later may work. Its message is the driver's; the driver's exception is
    its ``__cause__``."""


def _outage_errors(is_postgres: bool) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(the driver's exceptions that mean the database is unavailable, those among them
    that are the statement's fault instead and pass through unchanged)."""
    if is_postgres:
        import psycopg

        return (psycopg.OperationalError, psycopg.InterfaceError), ()
    # DatabaseError: "file is not a database", "database disk image is malformed".
    return (sqlite3.OperationalError, sqlite3.DatabaseError), (
        sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError, sqlite3.NotSupportedError)


def not_a_database(path: Path) -> str | None:
    """Why the SQLite file ``path`` holds no robusthash database, looked at read-only (a
    command other than ``db init`` must not write a schema into an empty or foreign
    file), or None."""
    if not path.exists():
        return f"no database at {path}"
    if path.is_dir() or path.stat().st_size == 0:
        return f"{path} is {'a folder' if path.is_dir() else 'an empty file'}, not a robusthash database"
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    except sqlite3.DatabaseError as exc:
        return f"{path} cannot be read as a database ({exc})"
    return None if found else f"{path} is an SQLite file without robusthash's tables"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """Tables of the reference database on SQLite or PostgreSQL.

    ``url``: a file path (SQLite, created if missing) or a ``postgresql://`` URL.
    """

    def __init__(self, url: str | Path):
        self.url = str(url)
        self.is_postgres = self.url.startswith(("postgresql://", "postgres://"))
        self._outages, self._faults = _outage_errors(self.is_postgres)
        self._writing = 0  # depth of nested write() blocks; only the outermost is a transaction
        self._conn = None
        # A PostgreSQL connection the server dropped (a restart) is opened again, at most
        # once per delay, the delay doubling from RECONNECT_FIRST to RECONNECT_MOST seconds.
        self._next_reconnect, self._reconnect_delay = 0.0, RECONNECT_FIRST
        with self._reachable():
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

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """The driver's outage errors as :class:`StoreUnavailable`; a PostgreSQL
        connection found broken is opened again first (:meth:`_reconnect`)."""
        try:
            self._reconnect()
            yield
        except self._outages as exc:
            if isinstance(exc, self._faults):
                raise
            raise StoreUnavailable(f"{self.where}: {exc}") from exc

    @property
    def where(self) -> str:
        """The database named for people: the SQLite file, or the PostgreSQL URL without
        its password."""
        if not self.is_postgres:
            return self.url
        return re.sub(r"(://[^:/@]+):[^@]*@", r"\1@", self.url)

    def _dropped(self) -> bool:
        """Whether this is a PostgreSQL connection the server dropped, outside a write (a
        transaction cannot move to another connection)."""
        conn = self._conn
        return self.is_postgres and conn is not None and not self._writing and bool(conn.closed or conn.broken)

    def _reconnect(self, at_once: bool = False) -> None:
        """Open a new connection in place of a dropped PostgreSQL one, with backoff
        between failed tries (``at_once``: the first try after a drop, whatever the
        backoff). Without it, after a server restart every request answered 503 until
        the process was restarted too."""
        if not self._dropped():
            return
        now = time.monotonic()
        if now < self._next_reconnect and not at_once:
            raise StoreUnavailable(f"the connection to the database was lost; next try in "
                                   f"{self._next_reconnect - now:.1f} s")
        try:
            self._conn = self._connect()
        except Exception:
            self._next_reconnect = now + self._reconnect_delay
            self._reconnect_delay = min(RECONNECT_MOST, 2 * self._reconnect_delay)
            raise
        self._next_reconnect, self._reconnect_delay = 0.0, RECONNECT_FIRST

    def _sql(self, statement: str) -> str:
        """Statements are written with ``?`` placeholders; psycopg wants ``%s``."""
        return statement.replace("?", "%s") if self.is_postgres else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """One statement (``?`` placeholders); the driver's cursor. For this module and
        for tests: everything else uses the methods below."""
        with self._reachable():
            return self._conn.execute(self._sql(statement), params)

    def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Every row of a query, fetched while outages are still reported as such. Outside
        a write, a query whose connection the server dropped (a restart: a dropped
        connection shows only when used) is asked once more on a new connection."""
        with self._reachable():
            try:
                return self._conn.execute(self._sql(statement), params).fetchall()
            except self._outages as exc:
                if isinstance(exc, self._faults) or not self._dropped():
                    raise
            self._reconnect(at_once=True)
            return self._conn.execute(self._sql(statement), params).fetchall()

    def _row(self, statement: str, params: Sequence[Any] = ()) -> Sequence[Any] | None:
        """The first row of a query, or None."""
        rows = self._rows(statement, params)
        return rows[0] if rows else None

    def _executemany(self, statement: str, rows: list[Sequence[Any]]) -> None:
        with self._reachable():
            if self.is_postgres:
                with self._conn.cursor() as cursor:
                    cursor.executemany(self._sql(statement), rows)
            else:
                self._conn.executemany(statement, rows)

    @contextmanager
    def write(self) -> Iterator[None]:
        """One writing transaction: all of it lands, or none of it. A ``write`` inside
        another is part of the outer one."""
        if self._writing:
            self._writing += 1
            try:
                yield
            finally:
                self._writing -= 1
            return
        if self.is_postgres:  # a dropped connection is found, and opened again, before the transaction, not in it
            self._rows("SELECT 1")
        self._writing = 1
        try:
            with self._reachable(), self._transaction():
                yield
        finally:
            self._writing = 0

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self.is_postgres:
            with self._conn.transaction():
                self._conn.execute(self._sql("SELECT pg_advisory_xact_lock(?)"), (WRITER_LOCK,))
                yield
            return
        self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def ping(self) -> None:
        """A cheap round trip; raises :class:`StoreUnavailable` when the database does not answer."""
        self._rows("SELECT 1")

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
            f"""CREATE TABLE IF NOT EXISTS features (
                image_id BIGINT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                version TEXT NOT NULL,
                data {blob} NOT NULL,
                PRIMARY KEY (image_id, kind))""",
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
            found = self.meta("schema")
            if found is None:
                self.set_meta("schema", SCHEMA_VERSION)
            elif found in ("1", "2"):  # the features table was created above
                if found == "1":
                    self.execute("ALTER TABLE hashes ADD COLUMN quality INTEGER")
                self.set_meta("schema", SCHEMA_VERSION)
            elif found != SCHEMA_VERSION:
                raise RuntimeError(f"{self.url}: schema version {found}, this robusthash reads {SCHEMA_VERSION}")

    def _schema_version(self) -> str | None:
        table = ("SELECT to_regclass('meta') IS NOT NULL" if self.is_postgres
                 else "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
        return self.meta("schema") if self._rows(table)[0][0] else None

    def close(self) -> None:
        with self._reachable():
            self._conn.close()

    # --- the meta table -------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        row = self._row("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        with self.write():
            self.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def setdefault_meta(self, key: str, value: str) -> str:
        """The value under ``key``; ``value`` is stored first if there is none. Of writers
        racing to set it, one wins and all get the winner's value."""
        with self.write():
            self.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
            stored = self.meta(key)
        assert stored is not None
        return stored

    def delete_meta(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        with self.write():
            return self.execute("DELETE FROM meta WHERE key = ?", (key,)).rowcount > 0

    # --- writing --------------------------------------------------------------------

    def add_images(self, images: Sequence[NewImage]) -> list[tuple[int, str]]:
        """Register a batch in one transaction; returns (image id, what happened) per image:
        ``ADDED`` (a new image), ``UPDATED`` (registered before; hashes or features it lacked
        were added, e.g. of a method added since or of a method's new version) or
        ``EXISTING``.

        An image already registered (same digest) keeps its row and metadata; only the
        hashes it does not have yet are added, so a re-run completes an interrupted one. A
        method's hashes of an older version are replaced by the new version's (and logged
        as removed, so the old version's index drops them). Features likewise: a kind the
        image lacks is added, a kind held at another version is replaced by the new
        version's data, a kind held at the same version is left as it is.
        """
        for image in images:
            kinds = [kind for kind, _ in image.features]
            if len(kinds) != len(set(kinds)):
                raise ValueError(f"{image.source}: more than one version of a feature kind: {sorted(image.features)}")
        results = []
        with self.write():
            for image in images:
                row = self._row("SELECT id FROM images WHERE digest = ?", (image.digest,))
                image_id = self._insert_image(image) if row is None else int(row[0])
                held = {(m, v, s): int(i) for i, m, v, s in self._rows(
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
                gained = self._add_features(image_id, image.features) if image.features else False
                results.append((image_id, ADDED if row is None else UPDATED if new or gained else EXISTING))
        return results

    def complete(self, digest: str, hashes: Sequence[tuple[str, str, int]],
                 feature: tuple[str, str] | None) -> int | None:
        """The id of the image registered with ``digest`` if it holds, for every (method,
        version, rows) of ``hashes``, at least that many rows of that method and version
        (a hash and the crops stored beside it) and, when given, ``feature`` (kind,
        version): a re-run of an add has nothing to give it. Else None."""
        row = self._row("SELECT id FROM images WHERE digest = ?", (digest,))
        if row is None:
            return None
        image_id = int(row[0])
        held = {(m, v): int(n) for m, v, n in self._rows(
            "SELECT method, version, COUNT(*) FROM hashes WHERE image_id = ? GROUP BY method, version", (image_id,))}
        if any(held.get((m, v), 0) < rows for m, v, rows in hashes):
            return None
        if feature is not None and self._row("SELECT 1 FROM features WHERE image_id = ? AND kind = ? AND version = ?",
                                             (image_id, *feature)) is None:
            return None
        return image_id

    def _add_features(self, image_id: int, features: dict[tuple[str, str], bytes]) -> bool:
        """Store the features of kinds the image lacks or holds at another version (those
        replaced); whether any were written."""
        held = {kind: version for kind, version in self._rows(
            "SELECT kind, version FROM features WHERE image_id = ?", (image_id,))}
        fresh = [(image_id, k, v, data) for (k, v), data in features.items() if held.get(k) != v]
        if fresh:
            self._executemany(
                "INSERT INTO features (image_id, kind, version, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (image_id, kind) DO UPDATE SET version = excluded.version, data = excluded.data",
                fresh)
        return bool(fresh)

    def _insert_image(self, image: NewImage) -> int:
        params = (image.digest, image.source, json.dumps(image.metadata, ensure_ascii=False),
                  image.width, image.height, _now())
        statement = "INSERT INTO images (digest, source, metadata, width, height, added_at) VALUES (?, ?, ?, ?, ?, ?)"
        if self.is_postgres:
            return int(self._rows(statement + " RETURNING id", params)[0][0])
        return int(self.execute(statement, params).lastrowid)

    def remove_images(self, image_ids: Iterable[int]) -> int:
        """Delete images, their hashes (logging the hash ids for the indexes) and their
        features (ON DELETE CASCADE; SQLite's foreign keys are on for every connection)."""
        removed = 0
        with self.write():
            for image_id in image_ids:
                hashes = self._rows("SELECT id, method, version FROM hashes WHERE image_id = ?", (image_id,))
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
        row = self._row(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)
        )
        return None if row is None else _image_record(row)

    def images(self, image_ids: Iterable[int]) -> dict[int, ImageRecord]:
        return {r.id: r for r in map(_image_record, self._rows_by_id(f"SELECT {IMAGE_COLUMNS} FROM images", image_ids))}

    def image_by_digest(self, digest: str) -> ImageRecord | None:
        row = self._row(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE digest = ?", (digest,)
        )
        return None if row is None else _image_record(row)

    def hashes(self, method: str, version: str, after_id: int = 0, batch: int = 100_000) -> Iterator[list[HashRow]]:
        """Hash rows of one method with id > ``after_id``, in id order, in batches."""
        last = after_id
        while True:
            rows = self._rows(
                f"SELECT {HASH_COLUMNS} FROM hashes WHERE method = ? AND version = ? AND id > ? ORDER BY id LIMIT ?",
                (method, version, last, batch),
            )
            if not rows:
                return
            yield [_hash_row(r) for r in rows]
            last = int(rows[-1][0])

    def hashes_up_to(self, method: str, version: str, last_id: int, newest: int) -> tuple[int, list[HashRow]]:
        """How many hash rows of one method have ids up to ``last_id``, and the ``newest``
        of them (highest ids): what a saved index that followed the store that far must
        hold (:meth:`ReferenceDB._disagreement`)."""
        count = int(self._row("SELECT COUNT(*) FROM hashes WHERE method = ? AND version = ? AND id <= ?",
                              (method, version, last_id))[0])
        rows = self._rows(f"SELECT {HASH_COLUMNS} FROM hashes WHERE method = ? AND version = ? AND id <= ? "
                          "ORDER BY id DESC LIMIT ?", (method, version, last_id, newest))
        return count, [_hash_row(r) for r in rows]

    def hash_rows(self, hash_ids: Iterable[int]) -> dict[int, HashRow]:
        return {r.id: r for r in map(_hash_row, self._rows_by_id(f"SELECT {HASH_COLUMNS} FROM hashes", hash_ids))}

    def _rows_by_id(self, select: str, ids: Iterable[int], chunk: int = 500, *, column: str = "id",
                    where: str = "", params: Sequence[Any] = ()) -> Iterator[Sequence[Any]]:
        """Rows whose ``column`` is in ``ids``, asked for in chunks (SQL parameter lists are
        bounded); ``where`` (with its ``params``) narrows them further."""
        wanted = sorted(set(int(i) for i in ids))
        condition = f"{where} AND " if where else ""
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            yield from self._rows(f"{select} WHERE {condition}{column} IN ({','.join('?' * len(part))})",
                                  [*params, *part])

    def features(self, image_ids: Iterable[int], kind: str, version: str) -> dict[int, bytes]:
        """image id → its features of ``kind`` at ``version``, for those of ``image_ids``
        that hold them (an image without them, or with another version, is left out)."""
        rows = self._rows_by_id("SELECT image_id, data FROM features", image_ids, column="image_id",
                                where="kind = ? AND version = ?", params=(kind, version))
        return {int(i): bytes(data) for i, data in rows}

    def feature_kinds(self) -> list[tuple[str, str, int, int]]:
        """(kind, version, images holding it, total bytes of their data), by kind and version."""
        return [(k, v, int(n), int(size)) for k, v, n, size in self._rows(
            "SELECT kind, version, COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM features "
            "GROUP BY kind, version ORDER BY kind, version")]

    def images_hashes(self, image_ids: Iterable[int], method: str, version: str) -> dict[int, HashRow]:
        """Each of these images' first hash (segment 0) of one method and version, by image id."""
        # Method and version are picked out here, not in SQL: given them, SQLite's planner
        # scanned every hash of the method (hashes_by_method) instead of looking the
        # images up, a cost that grew with the collection (2.5 ms a call at 3,000 images).
        rows = self._rows_by_id(f"SELECT {HASH_COLUMNS} FROM hashes", image_ids, column="image_id",
                                where="segment = 0")
        return {r.image_id: r for r in map(_hash_row, rows) if r.method == method and r.version == version}

    def image_hashes(self, image_id: int, method: str, version: str) -> list[HashRow]:
        """Every hash of one image and method, by segment."""
        rows = self._rows(
            f"SELECT {HASH_COLUMNS} FROM hashes WHERE image_id = ? AND method = ? AND version = ? ORDER BY segment",
            (image_id, method, version),
        )
        return [_hash_row(r) for r in rows]

    def removals(self, method: str, version: str, after_seq: int = 0) -> list[tuple[int, int]]:
        """(seq, hash id) of hashes of one method removed after ``after_seq``."""
        rows = self._rows(
            "SELECT seq, hash_id FROM removals WHERE method = ? AND version = ? AND seq > ? ORDER BY seq",
            (method, version, after_seq),
        )
        return [(int(s), int(h)) for s, h in rows]

    def last_removal(self) -> int:
        row = self._row("SELECT MAX(seq) FROM removals")
        return int(row[0] or 0)

    def calibration(self, method: str, version: str) -> Calibration | None:
        row = self._row(
            "SELECT method, version, fpr, threshold, pairs, images, computed_at FROM calibrations "
            "WHERE method = ? AND version = ?", (method, version),
        )
        return None if row is None else Calibration(row[0], row[1], float(row[2]), float(row[3]), int(row[4]),
                                                    int(row[5]), row[6])

    def quick_check(self) -> list[str]:
        """What SQLite's ``PRAGMA quick_check`` finds wrong (damaged pages, broken
        b-trees), [] when sound; PostgreSQL checksums its own pages, so []. A damaged
        file otherwise answers queries with rows silently missing."""
        if self.is_postgres:
            return []
        try:
            found = [str(r[0]) for r in self._rows("PRAGMA quick_check")]
        except StoreUnavailable as exc:  # a file too damaged to check at all
            return [str(exc)]
        return [] if found == ["ok"] else found

    def stats(self) -> dict[str, Any]:
        images = int(self._rows("SELECT COUNT(*) FROM images")[0][0])
        per_method = {
            f"{m}@{v}": {"hashes": int(n), "images": int(k)}
            for m, v, n, k in self._rows(
                "SELECT method, version, COUNT(*), COUNT(DISTINCT image_id) FROM hashes GROUP BY method, version "
                "ORDER BY method, version"
            )
        }
        features = [{"kind": k, "version": v, "images": n, "bytes": size} for k, v, n, size in self.feature_kinds()]
        return {"engine": "postgresql" if self.is_postgres else "sqlite", "images": images, "methods": per_method,
                "features": features}

    def methods(self) -> list[tuple[str, str]]:
        """Every (method, version) stored, in order. Each is one seek in the index on
        (method, version, id): every query asks (is its method searchable here?), and a
        SELECT DISTINCT reads the whole index, 5 ms a call at 80,000 hashes and growing
        with the collection. (A row-value seek, (method, version) > (?, ?), was 0.7 ms in
        SQLite 3.40: two plain seeks are 5 µs each.)"""
        first = "SELECT method, version FROM hashes {} ORDER BY method, version LIMIT 1"
        found: list[tuple[str, str]] = []
        row = self._row(first.format(""))
        while row is not None:
            found.append((row[0], row[1]))
            row = self._row(first.format("WHERE method = ? AND version > ?"), (row[0], row[1])) or \
                self._row(first.format("WHERE method > ?"), (row[0],))
        return found


def _hash_row(r: Sequence[Any]) -> HashRow:
    return HashRow(int(r[0]), int(r[1]), r[2], r[3], int(r[4]), bytes(r[5]), None if r[6] is None else int(r[6]))


def _image_record(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(int(row[0]), row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])
