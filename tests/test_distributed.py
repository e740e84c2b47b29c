"""Hashing on a real Dask cluster (worker processes on this machine): registering gives the
same database as one process, survives a worker killed mid-run without duplicates, and
the benchmark gives the same numbers."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import distributed
import numpy as np
import pytest
from typer.testing import CliRunner

from robusthash.cli import app
from robusthash.cluster import ClusterConfig, dask_executor
from robusthash.db import ReferenceDB
from robusthash.evaluation.bench import BenchConfig, run_bench


@pytest.fixture(scope="module")
def originals(tmp_path_factory, photos) -> list[Path]:
    """60 distinct small photos: crops of the bundled ones at different places and sizes."""
    root = tmp_path_factory.mktemp("originals")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(60):
        im = list(photos.values())[i % len(photos)]
        w, h = im.size
        side = int(rng.integers(min(w, h) // 3, min(w, h)))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        path = root / f"o{i:02d}.jpg"
        im.crop((x, y, x + side, y + side)).resize((192, 192)).save(path, quality=92)
        paths.append(path)
    return paths


def stored(db_path: Path) -> dict[str, list[tuple[str, bytes]]]:
    """digest → its (method, bits) rows, straight from the SQLite file."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT i.digest, h.method, h.bits FROM images i JOIN hashes h ON h.image_id = i.id "
                            "ORDER BY i.digest, h.method").fetchall()
    out: dict[str, list[tuple[str, bytes]]] = {}
    for digest, method, bits in rows:
        out.setdefault(digest, []).append((method, bytes(bits)))
    return out


def serial_db(tmp_path: Path, paths: list[Path], methods: list[str]) -> Path:
    path = tmp_path / "serial.sqlite"
    with ReferenceDB(path, methods=methods) as ref:
        assert not ref.add(paths).failed
    return path


def test_cli_add_on_a_local_cluster_matches_one_process(originals, tmp_path, hostile):
    serial = serial_db(tmp_path, originals[:20], ["pdq", "cmaa"])
    db = tmp_path / "dask.sqlite"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "init", "--db", str(db), "--methods", "pdq,cmaa"]).exit_code == 0
    bad = hostile / "text.png"
    result = runner.invoke(app, ["db", "add", "--db", str(db), "--dask", "local", "--dask-workers", "2",
                                 "--task-size", "3", "--format", "jsonl", *map(str, originals[:20]), str(bad)])
    assert result.exit_code == 1, result.output  # the bad file is reported, the rest registered
    assert str(bad) in result.output and "20 added" in result.output
    assert stored(db) == stored(serial)


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(originals, tmp_path):
    cluster = distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None,
                                       env={"OMP_NUM_THREADS": "1"})
    watcher = distributed.Client(cluster)
    killed: list[int] = []

    def kill_a_busy_worker(done: int, total: int) -> None:
        if killed or done < 4:
            return
        pids = watcher.run(os.getpid)
        busy = max(watcher.processing().items(), key=lambda item: len(item[1]))[0]
        killed.append(pids[busy])
        os.kill(pids[busy], signal.SIGKILL)

    try:
        db = tmp_path / "killed.sqlite"
        with ReferenceDB(db, methods=["cmaa"]) as ref, dask_executor(ClusterConfig(cluster.scheduler_address)) as pool:
            report = ref.add(originals, executor=pool, task_size=2, batch=8, progress=kill_a_busy_worker)
        assert killed, "the run ended before a worker could be killed"
        assert not report.failed and not report.existing
        assert sorted(s for s, _ in report.added) == sorted(map(str, originals))
        assert stored(db) == stored(serial_db(tmp_path, originals, ["cmaa"]))
    finally:
        watcher.close()
        cluster.close()


def test_an_unreachable_scheduler_and_a_bad_address_are_clear_errors(originals, tmp_path):
    port = _closed_port()
    with pytest.raises(RuntimeError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        with dask_executor(ClusterConfig(f"tcp://127.0.0.1:{port}", timeout=1)):
            pass
    db = tmp_path / "r.sqlite"
    runner = CliRunner()
    runner.invoke(app, ["db", "init", "--db", str(db)])
    result = runner.invoke(app, ["db", "add", "--db", str(db), "--dask", "scheduler:8786", str(originals[0])])
    assert result.exit_code == 2 and "--dask must be 'local' or a scheduler address" in result.output


def test_bench_on_a_cluster_gives_the_same_numbers(originals, tmp_path):
    config = BenchConfig(images=tuple(originals[:6]), methods=("phash", "pdq"), attacks="JC(50),RT(30)",
                         workers=1, cache=None)
    serial = run_bench(config)
    with dask_executor(ClusterConfig("local", workers=2)) as pool:
        clustered = run_bench(config, executor=pool)
    for a, b in zip(serial.methods, clustered.methods):
        assert a.tau == b.tau and a.mu == b.mu
        assert [c.nhd_r for c in a.cases] == [c.nhd_r for c in b.cases]


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cluster_config_refuses_nonsense():
    with pytest.raises(ValueError, match="at least one worker"):
        ClusterConfig("local", workers=0)
    with pytest.raises(ValueError, match="retries"):
        ClusterConfig("local", retries=-1)


def test_cli_bench_on_a_local_cluster(originals, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["bench", "--images", str(originals[0].parent), "--sample", "4",
                                      "--methods", "phash", "--attacks", "JC(50)", "--no-cache", "--dask", "local",
                                      "--dask-workers", "2", "--out", str(out), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").exists() and '"method": "phash"' in result.output
