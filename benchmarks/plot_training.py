"""Loss curves of a training run (its log.jsonl) as a PNG.

    .venv/bin/python benchmarks/plot_training.py runs/cmaa-small/log.jsonl results/cmaa/training.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LOSSES = ("contrastive", "alignment", "reconstruction", "quantization", "total", "loss")


def main() -> None:
    log, out = Path(sys.argv[1]), Path(sys.argv[2])
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in LOSSES:
        if name in records[0]:
            ax.plot(steps, [r[name] for r in records], label=name, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{log.parent.name}: losses every {steps[1] - steps[0]} steps")
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
