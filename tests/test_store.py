"""The store's own API: the meta table, liveness, and StoreUnavailable from real
databases that cannot be used (not a database, locked, unreachable, cut off)."""

from __future__ import annotations

import socket
import sqlite3

import pytest

from robusthash.db import Store, StoreUnavailable


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ref.sqlite")
    return request.getfixturevalue("fresh_postgres")


def test_meta_reads_writes_and_deletes(store_url):
    store = Store(store_url)
    try:
        assert store.meta("schema") == "2" and store.meta("nothing") is None
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
        assert waiter.meta("schema") == "2"  # readers are not blocked (WAL)
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


def test_a_postgresql_connection_cut_off_is_unavailable(fresh_postgres):
    store, admin = Store(fresh_postgres), Store(fresh_postgres)
    pid = store.execute("SELECT pg_backend_pid()").fetchone()[0]
    admin.execute("SELECT pg_terminate_backend(?)", (pid,))
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.meta("schema")
    admin.close()
