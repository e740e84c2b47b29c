"""The shipped learned hashers under realisable attack on the *train* split: what a new
ARIA model is judged on before it replaces the shipped one (the test split is for
``make results-adversarial`` only).

    .venv/bin/python benchmarks/aria_train_check.py --corpus corpus [--originals 50] [--methods aria]

It is ``evaluation.adversarial_report`` with train photos as originals and the rest of
train.txt (and a crop of each) as distractors: clean and adversarial recall@1/@10 under
white-box ℓ∞ 8/255 PGD, saved as JPEG. It evaluates the weights installed in
``src/robusthash/data``; export a candidate there and compare (git keeps the old one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robusthash.evaluation.adversarial_report import AdversarialBenchConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--originals", type=int, default=50)
    parser.add_argument("--methods", default="aria")
    args = parser.parse_args()
    config = AdversarialBenchConfig(originals_list=args.corpus / "train.txt", originals=args.originals,
                                    methods=tuple(args.methods.split(",")), unseen=(), targeted_queries=0)
    result = run(config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"{args.originals} train originals\n| method | clean R@1 | clean R@10 | adversarial R@1 | adversarial R@10 "
          "| attack success |\n|---|---:|---:|---:|---:|---:|")
    for method, row in result["methods"].items():
        print(f"| {method} | {row['clean']['recall@1']:.3f} | {row['clean']['recall@10']:.3f} | "
              f"{row['adversarial']['recall@1']:.3f} | {row['adversarial']['recall@10']:.3f} | "
              f"{row['attack']['success']:.3f} |")


if __name__ == "__main__":
    main()
