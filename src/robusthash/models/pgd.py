"""Projected gradient descent on pixels (ARIA, section 5.1): the inner maximisation of
robust training (the comparator's ``perturb_query``) and the realisable attacks of
:mod:`robusthash.attacks.adversarial` share it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class PGDConfig:
    """Projected gradient descent as in ARIA's evaluation (section 5.1)."""

    norm: str = "linf"  # "linf" or "l2"
    eps: float = 8 / 255  # ℓ∞: per pixel; ℓ2: for a 224 × 224 image (see ``l2_radius``)
    steps: int = 50
    step_size: float = 4 / 255  # ℓ∞ step; ℓ2 steps are 2.5 · radius / steps (Madry et al.)
    decay_at: tuple[float, ...] = (0.25, 0.5, 0.75)  # the step is halved at these shares of the steps
    jpeg_quality: int | None = 90  # the file is saved as JPEG at this quality (None: PNG)
    seed: int = 0  # the random start within the ball

    def __post_init__(self) -> None:
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', not {self.norm!r}")
        if self.eps <= 0 or self.steps < 1:
            raise ValueError("eps must be > 0 and steps ≥ 1")


def l2_radius(eps: float, shape: torch.Size) -> float:
    """ℓ2 budgets are quoted for 224 × 224 × 3 inputs; a perturbation of the file's own
    pixels gets the same energy per pixel: eps · √(pixels / 224²)."""
    return eps * math.sqrt(shape[-1] * shape[-2] / 224**2)


def _project(delta: torch.Tensor, config: PGDConfig, radius: float) -> torch.Tensor:
    if config.norm == "linf":
        return delta.clamp(-config.eps, config.eps)
    norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * (radius / norm).clamp(max=1.0)[:, None, None, None]


def pgd(objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, config: PGDConfig,
        progress: Callable[[int, float], None] | None = None) -> torch.Tensor:
    """x + δ that *minimises* ``objective`` (a scalar of the perturbed pixels), with
    ‖δ‖ ≤ eps and 0 ≤ x + δ ≤ 1; the best iterate seen is returned."""
    generator = torch.Generator().manual_seed(config.seed)
    radius = l2_radius(config.eps, x.shape) if config.norm == "l2" else config.eps
    step = config.step_size if config.norm == "linf" else 2.5 * radius / config.steps
    start = (torch.rand(x.shape, generator=generator) * 2 - 1) * (config.eps if config.norm == "linf" else 0.0)
    delta = ((x + _project(start, config, radius)).clamp(0, 1) - x).requires_grad_(True)
    best, best_loss = x.clone(), math.inf
    decays = {int(share * config.steps) for share in config.decay_at}
    for i in range(config.steps):
        if i in decays:
            step /= 2
        loss = objective(x + delta)
        if loss.item() < best_loss:
            best, best_loss = (x + delta).detach().clone(), loss.item()
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            if config.norm == "linf":
                delta -= step * grad.sign()
            else:
                delta -= step * grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
            delta.copy_(((x + _project(delta, config, radius)).clamp(0, 1)) - x)
        if progress:
            progress(i + 1, loss.item())
    with torch.no_grad():
        final = objective(x + delta).item()
    return (x + delta).detach() if final < best_loss else best
