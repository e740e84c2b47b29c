"""The service reaches the database only through the store: it imports no driver, and
a database that cannot be used answers 503 (StoreUnavailable), not 500."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import robusthash.service
from robusthash.db import ReferenceDB, Store
from robusthash.service import ServiceConfig, create_app

DRIVERS = {"sqlite3", "psycopg", "psycopg2", "psycopg_pool"}


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_service_imports_no_database_driver():
    modules = sorted(Path(robusthash.service.__file__).parent.rglob("*.py"))
    assert len(modules) > 5  # the routes are found too
    found = {str(p.name): _imported(p) & DRIVERS for p in modules}
    assert not any(found.values()), {name: drivers for name, drivers in found.items() if drivers}


def test_a_locked_database_answers_503_with_retry_after(tmp_path):
    url = str(tmp_path / "ref.sqlite")
    with ReferenceDB(url) as ref:
        ref.set_methods(["dhash"])
    app = create_app(ServiceConfig(db=url, allow_anonymous=True))
    app.state.service.writer.store.execute("PRAGMA busy_timeout = 100")
    holder = Store(url)
    with TestClient(app) as client:
        with holder.write():
            holder.set_meta("busy", "yes")
            removed = client.delete("/v1/images/1")
            assert client.get("/v1/health").status_code == 200  # reading still works (WAL)
        assert removed.status_code == 503, removed.text
        assert removed.headers["Retry-After"] == "5"
        # The driver's words stay in the server's log: they can name hosts, users, files.
        assert removed.json() == {"detail": "database busy or unavailable; retry later"}
        assert client.delete("/v1/images/1").status_code == 404  # unlocked: an ordinary answer
    holder.close()


def test_a_connection_the_server_cut_is_opened_again(fresh_postgres):
    with ReferenceDB(fresh_postgres) as ref:
        ref.set_methods(["dhash"])
    # One reader, so that the requests below go through the connection that was cut.
    app = create_app(ServiceConfig(db=fresh_postgres, allow_anonymous=True, readers=1))
    store = app.state.service.ref.store
    pid = store.execute("SELECT pg_backend_pid()").fetchone()[0]
    admin = Store(fresh_postgres)
    with TestClient(app) as client:
        assert client.get("/v1/health").status_code == 200
        admin.execute("SELECT pg_terminate_backend(?)", (pid,))
        # The dropped connection is opened again and the question asked once more (before,
        # every endpoint answered 503 from then on, until the process was restarted).
        assert client.get("/v1/health").status_code == 200
        assert client.get("/v1/stats").status_code == 200
        assert store.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    admin.close()


@pytest.mark.parametrize("path", ["/v1/health", "/v1/stats"])
def test_the_health_and_stats_routes_answer(tmp_path, path):
    url = str(tmp_path / "ref.sqlite")
    with ReferenceDB(url) as ref:
        ref.set_methods(["dhash"])
    with TestClient(create_app(ServiceConfig(db=url, allow_anonymous=True))) as client:
        answer = client.get(path)
    assert answer.status_code == 200
    assert ("version" in answer.json()) if path.endswith("health") else answer.json()["images"] == 0


def test_a_write_waiting_for_the_lock_never_holds_up_a_query(tmp_path, photos):
    """Another process holds SQLite's write lock: a register waits for it (busy timeout),
    and meanwhile queries answer at once (before, a query waited 29.85 s)."""
    import io
    import threading
    import time

    url = str(tmp_path / "ref.sqlite")
    with ReferenceDB(url) as ref:
        ref.set_methods(["dhash"])
    app = create_app(ServiceConfig(db=url, allow_anonymous=True))
    upload = io.BytesIO()
    photos["astronaut"].resize((128, 128)).save(upload, format="PNG")
    holder = Store(url)
    with TestClient(app) as client:
        done: dict = {}
        with holder.write():
            holder.set_meta("busy", "yes")
            register = threading.Thread(target=lambda: done.setdefault("answer", client.post(
                "/v1/images", files={"file": ("a.png", upload.getvalue())})))
            register.start()
            time.sleep(0.5)  # the register is waiting for the write lock by now
            started = time.monotonic()
            query = client.post("/v1/query", files={"file": ("q.png", upload.getvalue())})
            waited = time.monotonic() - started
            assert query.status_code == 200 and waited < 5, (query.status_code, waited)
            assert "answer" not in done  # the register is still waiting
        register.join(timeout=60)
        assert done["answer"].status_code == 201, done["answer"].text
        assert client.post("/v1/query", files={"file": ("q.png", upload.getvalue())}).json()["verdict"] == "match"
    holder.close()


def test_a_query_is_judged_while_another_is(tmp_path, photos):
    """Queries are judged by several readers at once: while one query holds a reader, the
    next is answered by another (before, one lock made every query wait for the last)."""
    import io

    url = str(tmp_path / "ref.sqlite")
    with ReferenceDB(url) as ref:
        ref.set_methods(["dhash"])
    app = create_app(ServiceConfig(db=url, allow_anonymous=True, readers=2))
    upload = io.BytesIO()
    photos["astronaut"].resize((128, 128)).save(upload, format="PNG")
    with TestClient(app) as client:
        assert client.post("/v1/images", files={"file": ("a.png", upload.getvalue())}).status_code == 201
        with app.state.service.reading() as held:  # a long query holds this reader meanwhile
            answer = client.post("/v1/query", files={"file": ("q.png", upload.getvalue())})
            assert answer.status_code == 200 and answer.json()["verdict"] == "match"
            assert held.stats()["images"] == 1  # each reader sees the committed register


def test_queries_recover_after_a_postgresql_restart(fresh_postgres, restart_postgres, photos):
    import io

    with ReferenceDB(fresh_postgres) as ref:
        ref.set_methods(["dhash"])
    app = create_app(ServiceConfig(db=fresh_postgres, allow_anonymous=True))
    upload = io.BytesIO()
    photos["astronaut"].resize((128, 128)).save(upload, format="PNG")
    with TestClient(app) as client:
        assert client.post("/v1/images", files={"file": ("a.png", upload.getvalue())}).status_code == 201
        restart_postgres()
        codes = [client.get("/v1/health").status_code for _ in range(3)]
        assert codes[0] in (200, 503) and codes[-1] == 200, codes  # degraded at most once, then well
        answer = client.post("/v1/query", files={"file": ("q.png", upload.getvalue())})
        assert answer.status_code == 200 and answer.json()["verdict"] == "match"
        again = io.BytesIO()
        photos["coffee"].resize((128, 128)).save(again, format="PNG")
        assert client.post("/v1/images", files={"file": ("b.png", again.getvalue())}).status_code == 201


def test_a_register_decodes_its_upload_once(tmp_path, photos, monkeypatch):
    """The hashes, the thumbnail and the comparator's copy come from one decoding of a
    PNG (before: three, a second each for a 49-megapixel upload)."""
    import io

    from PIL import Image

    url = str(tmp_path / "ref.sqlite")
    with ReferenceDB(url) as ref:
        ref.set_methods(["dhash", "pdq"])
    app = create_app(ServiceConfig(db=url, allow_anonymous=True))
    upload = io.BytesIO()
    photos["astronaut"].save(upload, format="PNG")
    import robusthash.hashing.base as base
    import robusthash.io as loader

    decoded = []
    real = loader.decode_frame

    def counted(*args, **kwargs):
        decoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "decode_frame", counted)  # decode() and load_pil()
    monkeypatch.setattr(base, "decode_frame", counted)  # DecodedImage
    with TestClient(app) as client:
        answer = client.post("/v1/images", files={"file": ("a.png", upload.getvalue())})
        assert answer.status_code == 201, answer.text
        assert len(decoded) == 1
        image_id = answer.json()["image_id"]
        thumbnail = client.get(f"/v1/images/{image_id}/thumbnail")
    assert thumbnail.status_code == 200 and max(Image.open(io.BytesIO(thumbnail.content)).size) == 256


def test_a_source_a_client_named_is_never_opened(fresh_postgres, tmp_path, photos):
    """With PostgreSQL and no thumbnail folder nothing of an upload is kept, so a
    thumbnail can only come from a registered source file. A client registering through
    the service names its own source: a file on the server with the same bytes must not
    be opened for it, only files inside a folder the operator named (--source-root)."""
    import io

    from PIL import Image

    with ReferenceDB(fresh_postgres) as ref:
        ref.set_methods(["dhash"])
    upload = io.BytesIO()
    photos["coffee"].resize((200, 150)).save(upload, format="PNG")
    on_server = tmp_path / "served" / "coffee.png"
    on_server.parent.mkdir()
    on_server.write_bytes(upload.getvalue())
    other = io.BytesIO()
    photos["astronaut"].resize((200, 200)).save(other, format="PNG")
    (on_server.parent / "astronaut.png").write_bytes(other.getvalue())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "link.png").symlink_to(on_server.parent / "astronaut.png")
    with TestClient(create_app(ServiceConfig(db=fresh_postgres, allow_anonymous=True))) as client:
        named = client.post("/v1/images", files={"file": ("c.png", upload.getvalue())}, data={"source": str(on_server)})
        assert named.status_code == 201, named.text
        answer = client.get(f"/v1/images/{named.json()['image_id']}/thumbnail")
        assert answer.status_code == 404 and "no thumbnail kept" in answer.json()["detail"]
    roots = (outside, on_server.parent)
    with TestClient(create_app(ServiceConfig(db=fresh_postgres, allow_anonymous=True,
                                             source_roots=(outside,)))) as client:
        # A link inside a root to a file outside it leads nowhere either.
        linked = client.post("/v1/images", files={"file": ("d.png", other.getvalue())},
                             data={"source": str(outside / "link.png")})
        assert linked.status_code == 201 and linked.json()["image_id"] != named.json()["image_id"]
        assert client.get(f"/v1/images/{linked.json()['image_id']}/thumbnail").status_code == 404
    with TestClient(create_app(ServiceConfig(db=fresh_postgres, allow_anonymous=True, source_roots=roots))) as client:
        # The operator's own files, registered from where they lie, have thumbnails.
        for image in (named, linked):
            answer = client.get(f"/v1/images/{image.json()['image_id']}/thumbnail")
            assert answer.status_code == 200 and Image.open(io.BytesIO(answer.content)).format == "JPEG"
