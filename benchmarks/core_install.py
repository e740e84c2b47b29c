"""The core install works on its own: build the wheel, install it into a fresh venv with
the core dependencies only, and use it there.

    .venv/bin/python benchmarks/core_install.py [--keep DIR]

Checks, each a command run in the fresh venv on scikit-image's bundled photos (saved as
JPEG files, so no corpus is needed):

* no extra's package is installed (fastapi, uvicorn, psycopg, matplotlib, torch, dask,
  pymilvus);
* ``robusthash hash`` (forbild, pdq, cmaa), ``db init``, ``db add``, ``db query`` work,
  and the query finds the original of a resized copy;
* each command that needs an extra fails with one line naming its ``pip install``:
  ``serve``, ``bench``, ``train cmaa``, ``--db postgresql://``,
  ``--db milvus://``, ``--dask``.

Needs the package registry (pip installs the core dependencies). Prints one line per
check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRA_MODULES = ["fastapi", "uvicorn", "multipart", "psycopg", "matplotlib", "torch", "dask", "pymilvus"]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        checks = check_core_install(work)
    failed = [name for name, ok, _ in checks if not ok]
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}" + (f"\n      {detail}" if detail else ""))
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    sys.exit(1 if failed else 0)


def check_core_install(work: Path) -> list[tuple[str, bool, str]]:
    wheels = work / "wheel"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], work)
    if built.returncode:
        return [("build the wheel", False, built.stderr.strip()[-500:])]
    wheel = next(wheels.glob("robusthash-*.whl"))
    env = work / "venv"
    venv.create(env, with_pip=True, clear=True)
    python, cli = env / "bin" / "python", env / "bin" / "robusthash"
    installed = run([str(python), "-m", "pip", "install", "-q", str(wheel)], work)
    checks = [(f"install {wheel.name} with its core dependencies", installed.returncode == 0,
               installed.stderr.strip()[-500:] if installed.returncode else "")]
    if installed.returncode:
        return checks
    present = run([str(python), "-c", "import importlib.util as u; print(' '.join(m for m in "
                   f"{EXTRA_MODULES!r} if u.find_spec(m)))"], work).stdout.split()
    checks.append(("no extra's package installed", not present, f"installed: {' '.join(present)}" if present else ""))

    photos = work / "photos"
    made = run([str(python), "-c", MAKE_PHOTOS, str(photos)], work)
    checks.append(("write test photos (scikit-image's bundled images)", made.returncode == 0, made.stderr[-300:]))
    if made.returncode:
        return checks

    def works(name: str, command: list[str], expect: str = "") -> None:
        result = run(command, work)
        ok = result.returncode == 0 and expect in result.stdout + result.stderr
        checks.append((name, ok, "" if ok else (result.stdout + result.stderr).strip()[-500:]))

    def needs(name: str, command: list[str], extra: str) -> None:
        result = run(command, work)
        hint = f"pip install 'robusthash[{extra}]'"
        message = result.stderr.strip()
        ok = result.returncode != 0 and hint in message and len(message.splitlines()) == 1
        checks.append((f"{name} names {hint}", ok, "" if ok else message[-500:]))

    db = str(work / "ref.sqlite")
    works("robusthash hash -m forbild,pdq,cmaa", [str(cli), "hash", "-m", "forbild,pdq,cmaa", str(photos / "originals")])
    works("robusthash db init", [str(cli), "db", "init", "--db", db, "--methods", "forbild,pdq"])
    works("robusthash db add", [str(cli), "db", "add", str(photos / "originals"), "--db", db], "added")
    answered = run([str(cli), "db", "query", str(photos / "copy.jpg"), "--db", db, "--format", "jsonl"], work)
    answers = [json.loads(line) for line in answered.stdout.splitlines() if line.strip()]
    found = len(answers) == 1 and answers[0]["verdict"] == "match" and \
        answers[0]["matches"][0]["source"].endswith("astronaut.jpg")
    checks.append(("robusthash db query: a resized copy's verdict is a match, with its original first",
                   answered.returncode == 0 and found, "" if found else (answered.stdout + answered.stderr)[-500:]))
    query = str(photos / "copy.jpg")
    needs("robusthash serve", [str(cli), "serve", "--db", db], "serve")
    needs("robusthash bench", [str(cli), "bench", "--images", str(photos / "originals"), "--methods", "forbild",
                                "--out", str(work / "bench")], "plots")
    needs("robusthash train cmaa", [str(cli), "train", "cmaa", "--data", str(photos / "originals"),
                                    "--out", str(work / "run")], "train")
    needs("--db postgresql://", [str(cli), "db", "query", query, "--db", "postgresql://localhost/robusthash"], "postgres")
    needs("--db milvus://", [str(cli), "db", "query", query, "--db", f"milvus://localhost:19530?store={db}"], "milvus")
    needs("--dask", [str(cli), "db", "add", str(photos / "originals"), "--db", db, "--dask", "local"], "distributed")
    return checks


MAKE_PHOTOS = """\
import sys
from pathlib import Path
import skimage.data
from PIL import Image

root = Path(sys.argv[1])
(root / "originals").mkdir(parents=True, exist_ok=True)
for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
    Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(root / "originals" / f"{name}.jpg", quality=95)
with Image.open(root / "originals" / "astronaut.jpg") as im:
    im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(root / "copy.jpg", quality=80)
"""


if __name__ == "__main__":
    main()
