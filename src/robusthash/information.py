"""Is there enough in an image to identify it by? Flat colour, tiny and pure-noise images
are not: every method hashes them to codes that say nothing about the picture (a flat
image hashes to a fixed pattern; noise to codes scattered at random, some of which fall
within a learned method's threshold of unrelated photos). Such an image is refused for
registering and for matching, by every method, unless the caller overrides it.

Measured on a 64×64 box reduction (a draft decode is enough):

* ``contrast``: the largest standard deviation of the three colour channels, grey levels;
  below ``min_contrast`` the image is flat.
* ``structure``: the lag-1 autocorrelation of the luma, the smaller of the horizontal and
  vertical one. Photos, paintings and drawings are smooth at this scale (train split of
  the corpus: median 0.90, minimum 0.12), per-pixel noise is not (about 0).
* the image's own size (from its header): a side below ``min_side`` pixels is too small.

The defaults sit far below every photo of the corpus's train split (contrast ≥ 5.5,
structure ≥ 0.12); ``benchmarks/information.py`` measures them on any image list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

REDUCED = 64


@dataclass(frozen=True)
class InformationRule:
    """When an image has too little in it to be identified (see the module docstring)."""

    min_side: int = 32
    min_contrast: float = 2.0
    min_structure: float = 0.05


DEFAULT_RULE = InformationRule()


@dataclass(frozen=True)
class Information:
    width: int
    height: int
    contrast: float
    structure: float
    reason: str | None  # why the image cannot be identified; None when it can

    @property
    def informative(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict:
        return asdict(self)


def information(im: Image.Image, size: tuple[int, int] | None = None,
                rule: InformationRule = DEFAULT_RULE) -> Information:
    """Measure ``im`` (any mode; ``size``: its size before a reduced decode, if any)."""
    width, height = size or im.size
    rgb = np.asarray(im.convert("RGB").resize((REDUCED, REDUCED), Image.Resampling.BOX), dtype=np.float64)
    contrast = float(rgb.reshape(-1, 3).std(axis=0).max())
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    centred = luma - luma.mean()
    variance = float((centred * centred).mean())
    if variance < 1e-9:
        structure = 0.0
    else:
        across = float((centred[:, 1:] * centred[:, :-1]).mean()) / variance
        down = float((centred[1:, :] * centred[:-1, :]).mean()) / variance
        structure = min(across, down)
    reason = None
    if min(width, height) < rule.min_side:
        reason = f"too small to identify ({width}×{height} pixels; at least {rule.min_side} a side)"
    elif contrast < rule.min_contrast:
        reason = f"flat: almost no contrast (σ {contrast:.1f} grey levels < {rule.min_contrast:g})"
    elif structure < rule.min_structure:
        reason = (f"no structure, like random noise (neighbouring pixels correlate {structure:.2f} "
                  f"< {rule.min_structure:g})")
    return Information(width, height, round(contrast, 3), round(structure, 4), reason)
