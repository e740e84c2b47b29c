"""CMAA's loss ablation (the paper's Table 8) at one equal training budget.

    .venv/bin/python benchmarks/cmaa_ablation.py --corpus corpus --runs runs/ablation \\
        --steps 400 --batch-size 32 --sample 100 --out results/cmaa-ablation

Trains the small model five times from the same seed and on the same samples, with
(a) L_C + L_Q, (b) + L_D, (c) + L_R, (d) all but L_Q, and all four losses; exports each
to ONNX (int8, as the shipped model) and runs the CMAA protocol (``robusthash bench``,
Tables 1 + 2) on an evenly spaced sample of the corpus test split, all five in one
run. Training resumes where a run folder left off, so the script can be re-run.
Training is on the train split only; the test split is only hashed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from robusthash.evaluation.bench import BenchConfig, run_bench
from robusthash.evaluation.report import write_report
from robusthash.models.export import export_onnx, load_trained, quantize_int8
from robusthash.models.train import ABLATIONS, TrainConfig, read_training_list, train
from robusthash.synth.corpus import Corpus

ORDER = ("a", "b", "c", "d", "full")


def losses(ablation: str) -> str:
    """The losses an ablation trains, e.g. "L_C + L_D + L_Q"."""
    return " + ".join(["L_C"] + [loss for loss, on in zip(("L_D", "L_R", "L_Q"), ABLATIONS[ablation]) if on])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True, help="folder for the five training runs")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sample", type=int, default=100, help="test images to evaluate on")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    assert set(ORDER) == set(ABLATIONS)

    corpus = Corpus(args.corpus)
    photos = read_training_list(corpus.train_list)
    cutouts = sorted((args.corpus / "objects").glob("*.png"))
    models, seconds = {}, {}
    for name in ORDER:
        run = args.runs / f"ablation-{name}"
        config = TrainConfig(model="small", ablation=name, steps=args.steps, batch_size=args.batch_size,
                             checkpoint_every=100)
        start = time.perf_counter()
        train(photos, cutouts, run, config)
        seconds[name] = time.perf_counter() - start
        print(f"trained ({name}) {losses(name)} in {seconds[name]:.0f} s", flush=True)
        model, meta = load_trained(run)
        fp32 = export_onnx(model, run / "model.fp32.onnx", {"ablation": name, "step": meta["step"]})
        models[name] = quantize_int8(fp32, run / "model.onnx")

    tests = corpus.test()
    sample = tests[:: max(1, len(tests) // args.sample)][: args.sample]
    result = run_bench(BenchConfig(images=tuple(sample), attacks="table1,table2",
                                   methods=tuple(f"ablation-{n}={models[n]}" for n in ORDER)))
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(result, args.out, "benchmarks/cmaa_ablation.py (see ablation.md)")
    rows = []
    for name, method in zip(ORDER, result.methods):
        rows.append({"ablation": name, "losses": losses(name), "f1": method.average("f1"),
                     "nhd_r": method.average("nhd_r"), "mu": method.mu, "tau_bits": method.tau_bits,
                     "train_seconds": seconds[name]})
    lines = [f"# CMAA loss ablation (Table 8), {args.steps} steps × batch {args.batch_size} each, "
             f"{len(result.images)} test images, Tables 1 + 2", "",
             "| | losses | avg F1 | avg NHD_r | μ NHD_d | τ (bits) |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| ({r['ablation']}) | {r['losses']} | {r['f1']:.4f} | {r['nhd_r']:.4f} | {r['mu']:.4f} | "
              f"{r['tau_bits']:.0f} |" for r in rows]
    lines += ["", f"Command: `.venv/bin/python benchmarks/cmaa_ablation.py --corpus {args.corpus} --runs {args.runs} "
              f"--steps {args.steps} --batch-size {args.batch_size} --sample {args.sample} --out {args.out}`",
              "Per-attack numbers: report.md in this folder."]
    (args.out / "ablation.md").write_text("\n".join(lines) + "\n")
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
