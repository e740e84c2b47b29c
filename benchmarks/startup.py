"""Start-up and end-to-end speed of the ``robusthash`` command, against Python's own start
and against a Python loop of imagehash's ``phash`` over the same files, in one run.

    .venv/bin/python ../shared/corpus/build_corpus.py corpus      # once, ~40 s
    .venv/bin/python benchmarks/startup.py --corpus corpus [--images 600] [--rounds 7]

Three commands, each a fresh process timed wall-clock from spawn to exit:

* ``python -c pass``: the interpreter's own start, the floor every command pays;
* ``robusthash hash -m forbild ONE.jpg``: the CLI's start-up is its time minus the floor;
* ``robusthash hash -m forbild FILES...`` against ``python peer_loop.py FILES...``, a
  script that opens each file with Pillow and prints ``imagehash.phash`` of it: both end
  to end, both printing one line per file to a pipe. The CLI hashes on one thread per
  core by default; it is also timed with ``--threads 1``, like for like with the loop.

Rounds are interleaved (each round runs every command once), so a busy spell slows all
of them alike; the table gives the best round of each, and the ratio is also taken
within each round (median and range). The load average at the start is recorded: the
goals are stated for an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from robusthash.files import evenly_spaced, read_image_list

PEER_LOOP = """\
import sys
import imagehash
from PIL import Image

for path in sys.argv[1:]:
    with Image.open(path) as im:
        print(imagehash.phash(im), path)
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (build_corpus.py)")
    parser.add_argument("--images", type=int, default=600, help="JPEGs for the end-to-end run")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    listed = [p for p in read_image_list(args.corpus / "train.txt") if p.suffix.lower() in (".jpg", ".jpeg")]
    files = [str(p) for p in evenly_spaced(listed, args.images)]
    if len(files) < args.images:
        sys.exit(f"only {len(files)} JPEGs in {args.corpus / 'train.txt'}, asked for {args.images}")
    cli = str(Path(sys.executable).parent / "robusthash")
    with tempfile.TemporaryDirectory() as tmp:
        peer = Path(tmp) / "peer_loop.py"
        peer.write_text(PEER_LOOP)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "robusthash hash -m forbild (1 file)": [cli, "hash", "-m", "forbild", files[0]],
            f"robusthash hash -m forbild ({len(files)} files)": [cli, "hash", "-m", "forbild", *files],
            f"imagehash.phash loop ({len(files)} files)": [sys.executable, str(peer), *files],
            f"robusthash hash -m forbild --threads 1 ({len(files)} files)": [cli, "hash", "-m", "forbild",
                                                                            "--threads", "1", *files],
        }
        load = os.getloadavg()
        for command in commands.values():  # warm the page cache and the bytecode caches
            timed(command)
        rounds: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                rounds[name].append(timed(command))

    names = list(commands)
    floor, one, ours, theirs, single = (rounds[n] for n in names)
    best = {name: min(times) for name, times in rounds.items()}
    startup = [o - f for o, f in zip(one, floor)]
    ratios = [t / o for t, o in zip(theirs, ours)]
    single_ratios = [t / o for t, o in zip(theirs, single)]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in load],
        "files": len(files),
        "rounds": args.rounds,
        "best_s": {name: round(t, 4) for name, t in best.items()},
        "startup_over_python_s": {"best": round(best[names[1]] - best[names[0]], 4),
                                  "median": round(statistics.median(startup), 4)},
        "end_to_end_ratio": {"best_of_each": round(best[names[3]] / best[names[2]], 3),
                             "median_paired": round(statistics.median(ratios), 3),
                             "range_paired": [round(min(ratios), 3), round(max(ratios), 3)]},
        "end_to_end_ratio_one_thread": {"best_of_each": round(best[names[3]] / best[names[4]], 3),
                                        "median_paired": round(statistics.median(single_ratios), 3)},
    }
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in load)}  ({result['machine']})")
    print(f"| command | best of {args.rounds} (s) |\n|---|---:|")
    for name, t in best.items():
        print(f"| {name} | {t:.3f} |")
    print(f"start-up over `python -c pass`: best {result['startup_over_python_s']['best']:.3f} s, "
          f"median {result['startup_over_python_s']['median']:.3f} s")
    e2e = result["end_to_end_ratio"]
    print(f"end to end, imagehash loop ÷ robusthash CLI: {e2e['best_of_each']:.2f}× best of each, "
          f"median {e2e['median_paired']:.2f}× paired (range {e2e['range_paired'][0]:.2f}–{e2e['range_paired'][1]:.2f})")
    one_thread = result["end_to_end_ratio_one_thread"]
    print(f"  with --threads 1: {one_thread['best_of_each']:.2f}× best of each, median {one_thread['median_paired']:.2f}× paired")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
