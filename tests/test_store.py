"""The store's own API: the meta table, liveness, per-image features, schema upgrades,
and StoreUnavailable from real databases that cannot be used (not a database, locked,
unreachable, cut off)."""

from __future__ import annotations

import os
import socket
import sqlite3

import pytest

from robusthash.db import Store, StoreUnavailable
from robusthash.db.store import ADDED, EXISTING, UPDATED, NewImage


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ref.sqlite")
    return request.getfixturevalue("fresh_postgres")


def test_meta_reads_writes_and_deletes(store_url):
    store = Store(store_url)
    try:
        assert store.meta("schema") == "3" and store.meta("nothing") is None
        store.set_meta("owner", "agency")
        store.set_meta("owner", "another agency")  # replaces
        assert store.meta("owner") == "another agency"
        assert store.setdefault_meta("identity", "first") == "first"
        assert store.setdefault_meta("identity", "second") == "first"  # kept
        assert store.delete_meta("owner") and not store.delete_meta("owner")
        assert store.meta("owner") is None
        store.ping()
    finally:
        store.close()
    reopened = Store(store_url)
    assert reopened.meta("identity") == "first"
    reopened.close()


def test_meta_writes_inside_a_write_are_one_transaction(store_url):
    store = Store(store_url)
    with pytest.raises(KeyError), store.write():
        store.set_meta("a", "1")
        store.set_meta("b", "2")
        raise KeyError("abandoned")
    assert store.meta("a") is None and store.meta("b") is None
    with store.write():
        store.set_meta("a", "1")
        store.set_meta("b", "2")
    assert (store.meta("a"), store.meta("b")) == ("1", "2")
    store.close()


def test_a_file_that_is_not_a_database_is_unavailable(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"these are not the pages of a SQLite database\n" * 200)
    with pytest.raises(StoreUnavailable, match="not a database") as caught:
        Store(path)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_a_database_locked_by_another_writer_is_unavailable(tmp_path):
    url = str(tmp_path / "ref.sqlite")
    holder, waiter = Store(url), Store(url)
    waiter.execute("PRAGMA busy_timeout = 100")  # not the 30 s a real writer would wait
    with holder.write():
        holder.set_meta("busy", "yes")
        with pytest.raises(StoreUnavailable, match="locked"):
            waiter.set_meta("other", "no")
        assert waiter.meta("schema") == "3"  # readers are not blocked (WAL)
        waiter.ping()
    waiter.set_meta("other", "no")  # free again
    assert waiter.meta("other") == "no"
    holder.close()
    waiter.close()


def test_a_statement_at_fault_is_not_an_outage(tmp_path):
    store = Store(tmp_path / "ref.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        store.execute("INSERT INTO meta (key, value) VALUES ('schema', '2')")
    store.close()


def test_an_unreachable_postgresql_server_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(StoreUnavailable):
        Store(f"postgresql://robusthash@127.0.0.1:{port}/postgres?connect_timeout=2")


def test_a_postgresql_connection_cut_off_is_opened_again_with_backoff(fresh_postgres, monkeypatch):
    import time

    import psycopg

    store, admin = Store(fresh_postgres), Store(fresh_postgres)
    pid = store.execute("SELECT pg_backend_pid()").fetchone()[0]
    admin.execute("SELECT pg_terminate_backend(?)", (pid,))
    assert store.meta("schema") is not None  # asked again on a new connection
    assert store.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    # While the server refuses connections: unavailable, and tried again only after a delay.
    tries = []

    def refused():
        tries.append(time.monotonic())
        raise psycopg.OperationalError("connection refused")

    real_connect = store._connect
    monkeypatch.setattr(store, "_connect", refused)
    admin.execute("SELECT pg_terminate_backend(?)", (store.execute("SELECT pg_backend_pid()").fetchone()[0],))
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            store.ping()
    assert len(tries) == 1  # the retry right after the drop; the others wait out the backoff
    monkeypatch.setattr(store, "_connect", real_connect)
    time.sleep(0.6)
    store.ping()  # back
    admin.close()


# --- features: per-image verification data -------------------------------------------

def _image(name: str, features: dict | None = None, hashes: dict | None = None) -> NewImage:
    return NewImage(f"digest-{name}", f"{name}.jpg", {}, 10, 10,
                    {("dhash", "1", 0): bytes(8)} if hashes is None else hashes, features=features or {})


def _feature_rows(store: Store) -> list[tuple]:
    return [tuple(r[:3]) + (bytes(r[3]),) for r in store.execute(
        "SELECT image_id, kind, version, data FROM features ORDER BY image_id, kind").fetchall()]


def test_features_are_stored_and_read_back_byte_exact(store_url):
    every_byte = bytes(range(256)) * 4
    large = os.urandom(300_000)
    store = Store(store_url)
    try:
        (a, added_a), (b, _), (c, _) = store.add_images([
            _image("a", {("sift", "1"): every_byte, ("orb", "2"): b"\x00\x00"}),
            _image("b", {("sift", "1"): large}),
            _image("c"),  # no features
        ])
        assert added_a == ADDED
        # unknown ids and more ids than one chunk of parameters are fine
        found = store.features([c, b, a, *range(10_000, 11_200)], "sift", "1")
        assert found == {a: every_byte, b: large}
        assert all(type(data) is bytes for data in found.values())
        assert store.features([a, b], "orb", "2") == {a: b"\x00\x00"}
        assert store.features([a, b], "sift", "2") == {} and store.features([a], "surf", "1") == {}
        assert store.features([], "sift", "1") == {}
        assert store.feature_kinds() == [("orb", "2", 1, 2), ("sift", "1", 2, len(every_byte) + len(large))]
    finally:
        store.close()
    reopened = Store(store_url)
    assert reopened.features([a, b], "sift", "1") == {a: every_byte, b: large}
    reopened.close()


def test_re_adding_features_keeps_the_same_version_and_replaces_another(store_url):
    store = Store(store_url)
    (image_id, _), = store.add_images([_image("a", {("sift", "1"): b"old", ("orb", "1"): b"orb"})])
    before = _feature_rows(store)
    assert store.add_images([_image("a", {("sift", "1"): b"other bytes, same version"})]) == [(image_id, EXISTING)]
    assert _feature_rows(store) == before  # the same version is left alone
    assert store.add_images([_image("a", {("sift", "2"): b"new", ("orb", "1"): b"orb"})]) == [(image_id, UPDATED)]
    assert store.features([image_id], "sift", "1") == {}  # the old version is gone
    assert store.features([image_id], "sift", "2") == {image_id: b"new"}
    assert store.features([image_id], "orb", "1") == {image_id: b"orb"}
    assert _feature_rows(store) == [(image_id, "orb", "1", b"orb"), (image_id, "sift", "2", b"new")]
    assert store.removals("dhash", "1") == []  # the hashes were not touched
    assert len(store.image_hashes(image_id, "dhash", "1")) == 1
    store.close()


def test_an_image_registered_without_features_gains_them(store_url):
    store = Store(store_url)
    (image_id, _), = store.add_images([_image("a")])
    assert store.add_images([_image("a")]) == [(image_id, EXISTING)]
    assert store.add_images([_image("a", {("sift", "1"): b"kp"})]) == [(image_id, UPDATED)]
    assert store.features([image_id], "sift", "1") == {image_id: b"kp"}
    assert store.add_images([_image("a", {("sift", "1"): b"kp"})]) == [(image_id, EXISTING)]
    store.close()


def test_more_than_one_version_of_a_kind_is_refused_before_anything_is_written(store_url):
    store = Store(store_url)
    with pytest.raises(ValueError, match="more than one version"):
        store.add_images([_image("a"), _image("b", {("sift", "1"): b"x", ("sift", "2"): b"y"})])
    assert store.stats()["images"] == 0 and _feature_rows(store) == []
    store.close()


def test_removing_an_image_removes_its_features(store_url):
    store = Store(store_url)
    (a, _), (b, _) = store.add_images([_image("a", {("sift", "1"): b"a", ("orb", "1"): b"a"}),
                                       _image("b", {("sift", "1"): b"b"})])
    assert store.remove_images([a]) == 1
    assert _feature_rows(store) == [(b, "sift", "1", b"b")]
    assert store.features([a, b], "sift", "1") == {b: b"b"}
    store.close()


def test_stats_count_the_features(store_url):
    store = Store(store_url)
    assert store.stats()["features"] == []
    store.add_images([_image("a", {("sift", "1"): b"12345", ("orb", "3"): b"1"}),
                      _image("b", {("sift", "1"): b"123"}), _image("c")])
    stats = store.stats()
    assert stats["images"] == 3 and stats["methods"] == {"dhash@1": {"hashes": 3, "images": 3}}
    assert stats["engine"] == ("postgresql" if store.is_postgres else "sqlite")
    assert stats["features"] == [{"kind": "orb", "version": "3", "images": 1, "bytes": 1},
                                 {"kind": "sift", "version": "1", "images": 2, "bytes": 8}]
    store.close()


def _old_database(url: str, schema: str) -> None:
    """The tables as robusthash wrote them at ``schema`` 1 or 2 (no features table; no
    hashes.quality at 1), with one image and its hash."""
    postgres = url.startswith("postgresql://")
    serial = "BIGINT GENERATED ALWAYS AS IDENTITY" if postgres else "INTEGER"
    autoincrement = "" if postgres else " AUTOINCREMENT"
    blob = "BYTEA" if postgres else "BLOB"
    quality = ",\n quality INTEGER" if schema == "2" else ""
    statements = [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE images (id {serial} PRIMARY KEY{autoincrement}, digest TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL, metadata TEXT NOT NULL, width INTEGER, height INTEGER, added_at TEXT NOT NULL)""",
        f"""CREATE TABLE hashes (id {serial} PRIMARY KEY{autoincrement},
            image_id BIGINT NOT NULL REFERENCES images(id) ON DELETE CASCADE, method TEXT NOT NULL,
            version TEXT NOT NULL, segment INTEGER NOT NULL, bits {blob} NOT NULL{quality},
            UNIQUE (image_id, method, segment))""",
        "CREATE INDEX hashes_by_method ON hashes (method, version, id)",
        f"""CREATE TABLE removals (seq {serial} PRIMARY KEY{autoincrement}, hash_id BIGINT NOT NULL,
            method TEXT NOT NULL, version TEXT NOT NULL)""",
        """CREATE TABLE calibrations (method TEXT NOT NULL, version TEXT NOT NULL, fpr REAL NOT NULL,
            threshold REAL NOT NULL, pairs BIGINT NOT NULL, images BIGINT NOT NULL, computed_at TEXT NOT NULL,
            PRIMARY KEY (method, version))""",
        f"INSERT INTO meta (key, value) VALUES ('schema', '{schema}'), ('identity', 'old-one')",
        "INSERT INTO images (digest, source, metadata, width, height, added_at) "
        "VALUES ('digest-old', 'old.jpg', '{\"owner\": \"agency\"}', 4, 3, '2024-01-01T00:00:00+00:00')",
        "INSERT INTO hashes (image_id, method, version, segment, bits) "
        "SELECT id, 'dhash', '1', 0, ? FROM images",
    ]
    if postgres:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.replace("?", "%s"), (b"\x01\x02\x03",) if "?" in statement else ())
        return
    conn = sqlite3.connect(url)
    for statement in statements:
        conn.execute(statement, (b"\x01\x02\x03",) if "?" in statement else ())
    conn.commit()
    conn.close()


@pytest.mark.parametrize("schema", ["1", "2"])
def test_an_older_database_gets_the_features_table(store_url, schema):
    _old_database(store_url, schema)
    store = Store(store_url)
    try:
        assert store.meta("schema") == "3" and store.meta("identity") == "old-one"
        assert store.execute("SELECT COUNT(*) FROM features").fetchone()[0] == 0  # the table is there
        old = store.image_by_digest("digest-old")
        assert old is not None and (old.source, old.metadata, old.width, old.height) == ("old.jpg", {"owner": "agency"}, 4, 3)
        (hash_row,) = store.image_hashes(old.id, "dhash", "1")
        assert hash_row.bits == b"\x01\x02\x03" and hash_row.quality is None
        # the old image can gain features, and they go with it
        assert store.add_images([_image("old", {("sift", "1"): b"kp"})]) == [(old.id, UPDATED)]
        assert store.features([old.id], "sift", "1") == {old.id: b"kp"}
        assert store.remove_images([old.id]) == 1 and _feature_rows(store) == []
    finally:
        store.close()


def test_images_first_hashes_are_looked_up_by_image_not_by_scanning_the_method(store_url):
    # The engine reads the first hash of a few candidates; given method and version in
    # SQL, SQLite's planner scanned every hash of the method (a cost growing with the
    # collection) instead of looking the images up.
    store = Store(store_url)
    hashes = {("pdq", "1", 0): bytes(32), ("pdq", "1", 1): b"\x01" * 32, ("dhash", "1", 0): bytes(8)}
    ids = [i for i, _ in store.add_images([_image(str(n), hashes=hashes) for n in range(40)])]
    statements: list[str] = []
    if not store.is_postgres:
        store._conn.set_trace_callback(statements.append)
    first = store.images_hashes(ids[:3], "pdq", "1")
    assert sorted(first) == sorted(ids[:3])
    assert all(r.method == "pdq" and r.version == "1" and r.segment == 0 and r.bits == bytes(32)
               for r in first.values())
    assert store.images_hashes(ids[:2], "pdq", "2") == {}
    if not store.is_postgres:
        store._conn.set_trace_callback(None)
        (select,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")][:1]
        plan = " ".join(str(row[-1]) for row in store._conn.execute(f"EXPLAIN QUERY PLAN {select}"))
        assert "hashes_by_method" not in plan and "image_id" in plan
    store.close()
