"""ARIA's robust contrastive training (Andriushchenko et al., section 4.1) for CMAA.

Eq. 6–7: minimise over the weights the contrastive loss *maximised* over ℓ∞-bounded
perturbations of the inputs, keeping the hashing (quantisation) term. Here the inner
maximisation is ``perturb_views``: a few PGD steps on the two views the online encoder
sees (the strong view 1 and view 2), ascending CMAA's contrastive loss L_C of each
against the momentum encoder's view 3 (which, like the memory bank, is a target and is
not perturbed). The outer step is CMAA's own ``forward_loss`` on the perturbed views,
so L_C, L_D, L_R and L_Q all train as before. One PGD step leads to catastrophic
overfitting (the paper, Fig. 5); 2–3 suffice.

Perturbations live in pixel space, [0, 1], at the model's input size: the views are
normalised tensors, so they are un-normalised, perturbed, clipped and re-normalised. A
full-size file's ℓ∞ perturbation reaches the model through an averaging resize, which
never increases ℓ∞, so a model robust at its input is robust to the file's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cmaa import CMAA
from ..runtime import MEAN, STD

_MEAN = torch.from_numpy(MEAN)[:, None, None]
_STD = torch.from_numpy(STD)[:, None, None]


@dataclass(frozen=True)
class AriaConfig:
    eps: float = 4 / 255  # ℓ∞ radius of the inner maximisation, in pixels of [0, 1]
    steps: int = 3  # PGD steps of the inner maximisation
    step_size: float = 2.5 / 3 * 4 / 255  # 2.5 · eps / steps (Madry et al.)

    def __post_init__(self) -> None:
        if self.eps <= 0 or self.steps < 1 or self.step_size <= 0:
            raise ValueError("ARIA needs eps > 0, steps ≥ 1 and step_size > 0")


def to_pixels(view: torch.Tensor) -> torch.Tensor:
    return view * _STD.to(view.device) + _MEAN.to(view.device)


def to_view(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - _MEAN.to(pixels.device)) / _STD.to(pixels.device)


def perturb_views(model: CMAA, view1: torch.Tensor, view2: torch.Tensor, view3: torch.Tensor,
                  config: AriaConfig, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The inner maximisation: views 1 and 2 plus the perturbations (‖δ‖∞ ≤ eps, pixels in
    [0, 1]) that PGD finds to raise L_C(u(view + δ), u3). The model runs in eval mode
    meanwhile, so the attack does not move BatchNorm's running statistics."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        u3 = model.momentum_encoder(view3)
        pixels = [to_pixels(view1), to_pixels(view2)]
    deltas = [((torch.rand(p.shape, generator=generator, device=p.device) * 2 - 1) * config.eps)
              for p in pixels]
    for _ in range(config.steps):
        for d in deltas:
            d.requires_grad_(True)
        loss = sum(model.contrastive_loss(model.encoder(to_view((p + d).clamp(0, 1))), u3)
                   for p, d in zip(pixels, deltas))
        grads = torch.autograd.grad(loss, deltas)
        with torch.no_grad():
            deltas = [(d + config.step_size * g.sign()).clamp(-config.eps, config.eps) for d, g in zip(deltas, grads)]
    model.train(was_training)
    with torch.no_grad():
        return tuple(to_view((p + d).clamp(0, 1)) for p, d in zip(pixels, deltas))  # type: ignore[return-value]
