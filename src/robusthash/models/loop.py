"""The supervised loop the small networks share (ObjectNet, the comparator)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch


def run_steps(model: torch.nn.Module, steps: int, lr: float, step_loss: Callable[[int], torch.Tensor], out: Path,
              progress: Callable[[int, int, dict], None] | None = None) -> None:
    """``steps`` steps of AdamW (weight decay 1e-4) under a one-cycle schedule (10%
    warm-up to ``lr``); ``step_loss(step)`` gives step's loss (1-based). A JSON line per
    step goes to ``out/log.jsonl``; ``progress(step, steps, record)`` is called after each."""
    out.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    model.train()
    started = time.time()
    with open(out / "log.jsonl", "w") as log:
        for step in range(1, steps + 1):
            loss = step_loss(step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            record = {"step": step, "loss": round(loss.item(), 4), "seconds": round(time.time() - started, 1)}
            log.write(json.dumps(record) + "\n")
            if progress:
                progress(step, steps, record)
