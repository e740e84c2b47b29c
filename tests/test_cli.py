"""The command line, run as a real process: output formats, bad files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robusthash import attacks, get_hasher

ROBUSTHASH = [sys.executable, "-m", "robusthash.cli"]


def run(*args, check=False):
    env = dict(os.environ, COLUMNS="200")
    result = subprocess.run([*ROBUSTHASH, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "nested").mkdir()
    photos["astronaut"].resize((200, 200)).save(root / "astronaut.jpg", quality=90)
    photos["coffee"].resize((240, 160)).save(root / "nested" / "coffee.png")
    attacks.jpeg(attacks.resize(photos["astronaut"], 0.4), 60).save(root / "copy.jpg")
    (root / "notes.txt").write_text("not an image, and not picked up from a directory")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return root


def test_methods_lists_all(folder):
    result = run("methods", "--format", "jsonl", check=True)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["method"] for r in records} >= {"forbild", "blockhash", "pdq", "phash", "crop-resistant"}
    assert all({"bits", "version", "decision"} <= r.keys() for r in records)


def test_hash_jsonl_reports_bad_files_and_continues(folder):
    result = run("hash", "--method", "forbild", "--format", "jsonl", folder)
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    paths = sorted(Path(r["path"]).name for r in records)
    assert paths == ["astronaut.jpg", "coffee.png", "copy.jpg"]
    assert all(r["method"] == "forbild" and len(r["hash"]) == 64 for r in records)
    assert "broken.jpg" in result.stderr and "1 of 4 file(s) could not be hashed" in result.stderr
    # the CLI gives exactly what the library gives
    astronaut = next(r for r in records if r["path"].endswith("astronaut.jpg"))
    assert astronaut["hash"] == str(get_hasher("forbild").hash(folder / "astronaut.jpg"))


def test_hash_threads_keep_file_order_and_errors(folder):
    """Hashing several files at once changes nothing a user sees: the same lines in the
    files' order, the same error for the bad file, the same exit code."""
    one = run("hash", "-m", "forbild,pdq", "--threads", "1", folder)
    many = run("hash", "-m", "forbild,pdq", "--threads", "3", folder)
    assert one.returncode == many.returncode == 1
    assert one.stdout == many.stdout and len(one.stdout.splitlines()) == 6
    assert [line.split()[-1] for line in many.stdout.splitlines()[::2]] == sorted(
        str(p) for p in folder.rglob("*") if p.suffix in (".jpg", ".png") and p.name != "broken.jpg")
    assert one.stderr == many.stderr and "broken.jpg" in many.stderr


def test_hash_text_several_methods(folder):
    result = run("hash", "-m", "pdq,phash", folder / "astronaut.jpg", check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    # PDQ's quality (issue 21): 0-100, below 50 too weak to match
    assert lines[0].split()[1:] == ["pdq", "quality", "100", str(folder / "astronaut.jpg")]
    assert len(lines[0].split()[0]) == 64 and len(lines[1].split()[0]) == 16


def test_hash_missing_file_and_unknown_method(folder):
    result = run("hash", folder / "nope.jpg")
    assert result.returncode == 1 and "nope.jpg: no such file" in result.stderr
    result = run("hash", "-m", "nope", folder)
    assert result.returncode == 2 and "unknown method" in result.stderr


def test_compare_decides(folder):
    same = run("compare", folder / "astronaut.jpg", folder / "copy.jpg", "--format", "jsonl", check=True)
    record = json.loads(same.stdout)
    assert record["match"] is True and record["method"] == "forbild"
    different = run("compare", folder / "astronaut.jpg", folder / "nested" / "coffee.png", check=True)
    assert "no match" in different.stdout
    bad = run("compare", folder / "astronaut.jpg", folder / "broken.jpg")
    assert bad.returncode == 2 and "broken.jpg" in bad.stderr


def test_demo_runs_on_bundled_photos():
    result = run("demo", "--method", "forbild,pdq", "--format", "jsonl", check=True)
    records = {json.loads(line)["method"]: json.loads(line) for line in result.stdout.splitlines()}
    assert set(records) == {"forbild", "pdq"}
    forbild = records["forbild"]
    # forbild survives mirroring, PDQ does not; both keep distinct photos apart
    assert max(forbild["attacked"]["flip H"]) < 0.05
    assert min(records["pdq"]["attacked"]["flip H"]) > 0.3
    assert min(forbild["distinct"]) > 32 / 256  # no distinct pair is even a forbild candidate
    assert sum(forbild["distinct"]) / len(forbild["distinct"]) > 0.4


def test_help_is_helpful():
    result = run("--help", check=True)
    for command in ("methods", "hash", "compare", "demo"):
        assert command in result.stdout
    # brackets in help are text, not style tags: the extra to install, the environment variable
    assert "robusthash[train]" in result.stdout
    words = run("db", "add", "--help", check=True).stdout.replace("│", " ").split()  # unwrapped
    assert "[env: ROBUSTHASH_DB]" in " ".join(words)
