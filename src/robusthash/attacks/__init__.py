"""Image attacks: content-preserving transforms used to test robustness.

* :mod:`.transforms`: every attack as a plain function of a PIL image.
* :mod:`.spec`: the spec language, ``apply("RT(30)+JC(70)", im, seed=0)``.
* :mod:`.suites`: CMAA's Tables 1 and 2 exactly, the strong attack, crops, padding.

Codes, parameters, grids and conventions: ``docs/attacks.md``.
"""

from .spec import CODES, Attack, AttackSpecError, Step, apply, parse
from .suites import (
    CROPS,
    FAMILY_ORDER,
    PADDING,
    STRONG,
    SUITES,
    TABLE1,
    TABLE2,
    AttackCase,
    draw_table1_attack,
    strong_attack,
    strong_attack_plan,
    suite,
)
from .transforms import (
    average_filter,
    brightness,
    contrast,
    crop,
    flip,
    gaussian_blur,
    gaussian_filter,
    gaussian_noise,
    gaussian_sigma,
    jpeg,
    median_filter,
    pad,
    posterize,
    resize,
    rotate,
    salt_and_pepper,
    saturation,
    sharpness,
    shear,
    speckle_noise,
    translate,
)

__all__ = [
    "CODES",
    "CROPS",
    "FAMILY_ORDER",
    "PADDING",
    "STRONG",
    "SUITES",
    "TABLE1",
    "TABLE2",
    "Attack",
    "AttackCase",
    "draw_table1_attack",
    "AttackSpecError",
    "Step",
    "apply",
    "average_filter",
    "brightness",
    "contrast",
    "crop",
    "flip",
    "gaussian_blur",
    "gaussian_filter",
    "gaussian_noise",
    "gaussian_sigma",
    "jpeg",
    "median_filter",
    "pad",
    "parse",
    "posterize",
    "resize",
    "rotate",
    "salt_and_pepper",
    "saturation",
    "sharpness",
    "shear",
    "speckle_noise",
    "strong_attack",
    "strong_attack_plan",
    "suite",
    "translate",
]
