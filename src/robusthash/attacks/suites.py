"""The attack suites: CMAA's Tables 1 and 2 exactly, the strong attack, crops, padding,
and our own unseen suite.

Every case is an :class:`AttackCase` (a family for grouping results, and a canonical
spec for :func:`robusthash.attacks.spec.parse`). Sizes: ``TABLE1`` 120, ``TABLE2`` 36,
``STRONG`` 5, ``CROPS`` 8, ``PADDING`` 5, ``UNSEEN`` 59. Families are ordered as in
CMAA's Table 4, then the unseen suite's (``FAMILY_ORDER``). Grids and meanings:
``docs/attacks.md``.

``UNSEEN`` is the proxy for a hidden robustness check: families and parameters that the
shipped model's training views never draw (they draw Table 1 only); the wide (v2) views
of :mod:`robusthash.models.views` draw their own continuous ranges and hold out PERSP,
TEXT, SCREENSHOT, WEBP, AVIF and HUE entirely. It is
never used in training, tuning or model selection, and ``all`` leaves it out, so only
asking for it by name (``unseen``) runs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..io import to_rgb
from .spec import AttackSpecError, install_strong_attack, parse, split_outside_parentheses


@dataclass(frozen=True)
class AttackCase:
    """One attack of a suite: ``family`` groups results (``"RT"``, ``"H1"``), ``spec`` is canonical."""

    family: str
    spec: str


def _case(family: str, spec: str) -> AttackCase:
    return AttackCase(family, parse(spec).spec)


# --- Table 1: the weak attacks (CMAA) ---
FACTORS = (0.7, 0.8, 0.9, 1.1, 1.2, 1.3)
KERNELS = (3, 5, 7, 9)
NOISE_LEVELS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.2)
QUALITIES = tuple(range(10, 100, 10))
BITS = (4, 5, 6, 7)
SCALES = (0.5, 0.75, 0.9, 1.1, 1.5, 2.0)
ANGLES = tuple(range(-90, 0, 10)) + tuple(range(10, 100, 10))
OFFSETS = (-0.3, -0.2, -0.1, 0.1, 0.2, 0.3)  # shear factors and translation fractions

_TABLE1_SPECS: dict[str, tuple[str, ...]] = {
    **{code: tuple(f"{code}({f})" for f in FACTORS) for code in ("BA", "CA", "ST", "SH")},
    **{code: tuple(f"{code}({k})" for k in KERNELS) for code in ("AF", "MF", "GF")},
    **{code: tuple(f"{code}({v})" for v in NOISE_LEVELS) for code in ("GN", "SN", "SPN")},
    "JC": tuple(f"JC({q})" for q in QUALITIES),
    "PT": tuple(f"PT({b})" for b in BITS),
    "RS": tuple(f"RS({s})" for s in SCALES),
    "RT": tuple(f"RT({a})" for a in ANGLES),
    "FL": ("FL(H)", "FL(V)"),
    **{code: tuple(f"{code}({axis},{v})" for axis in "XY" for v in OFFSETS) for code in ("SHR", "TR")},
}
# family -> its canonical specs, in CMAA's order (the strong attack draws from these)
TABLE1_GRID: dict[str, tuple[str, ...]] = {
    family: tuple(parse(spec).spec for spec in specs) for family, specs in _TABLE1_SPECS.items()
}
TABLE1: tuple[AttackCase, ...] = tuple(
    AttackCase(family, spec) for family, specs in TABLE1_GRID.items() for spec in specs
)


# --- Table 2: the hybrid attacks (CMAA); "(X/Y)" gives one case per axis ---
def _per_axis(family: str, template: str, values: Iterable[tuple]) -> tuple[AttackCase, ...]:
    return tuple(_case(family, template.format(*v, axis=axis)) for v in values for axis in "XY")


TABLE2: tuple[AttackCase, ...] = (
    *(_case("H1", f"RT({a})+JC({q})") for a, q in ((30, 70), (50, 70), (50, 50))),
    *(_case("H2", f"RS({s})+BA({b})") for s, b in ((0.5, 0.8), (2.0, 0.8), (0.5, 1.2), (2.0, 1.2))),
    *_per_axis("H3", "TR({axis},{0})+GN({1})", ((0.1, 0.05), (0.2, 0.05), (0.1, 0.1))),
    *(_case("H4", f"FL({d})+SH({f})") for d, f in (("H", 0.8), ("H", 1.2), ("V", 0.8), ("V", 1.2))),
    *(_case("H5", f"GF({k})+PT({b})+CA({c})") for k, b, c in ((7, 4, 1.2), (5, 8, 1.2), (9, 8, 1.1))),
    *_per_axis("H6", "ST({0})+RT({1})+SHR({axis},{2})", ((0.7, 50, 0.2), (0.8, 50, 0.3), (0.9, 70, 0.1))),
    *_per_axis("H7", "SH({0})+TR({axis},{1})+SN({2})", ((1.2, 0.1, 0.05), (1.1, 0.2, 0.05), (1.2, 0.1, 0.1))),
    *(_case("H8", f"RS({s})+SPN(0.05)+AF({k})") for s, k in ((0.5, 7), (0.5, 9), (2.0, 7), (2.0, 9))),
)

# --- beyond CMAA's tables ---
# SA(v): five strong attacks that differ by the variant mixed into each image's seed.
STRONG: tuple[AttackCase, ...] = tuple(_case("SA", f"SA({v})") for v in range(1, 6))
CROPS: tuple[AttackCase, ...] = (
    *(_case("CROP", f"CROP({a})") for a in (0.5, 0.7, 0.9, 0.95)),
    *(_case("CROP", f"CROP(0.7,{cx},{cy})") for cx, cy in ((0, 0), (1, 0), (0, 1), (1, 1))),
)
PADDING: tuple[AttackCase, ...] = tuple(
    _case("PAD", spec) for spec in ("PAD(0.05)", "PAD(0.1)", "PAD(0.2)", "PAD(0.1,white)", "PAD(0.1,grey)")
)


# --- the unseen suite: never used in training, tuning or model selection ---
# Each family answers a weak spot of the hidden check or a family training never sees;
# every parameter lies outside Table 1's grid and no case is a Table 1 or 2 case
# (docs/attacks.md, "Unseen suite", says why each is here). Changing it after a model
# was selected on anything voids the comparison: fix it before training.
_UNSEEN_SPECS: dict[str, tuple[str, ...]] = {
    "DARK": ("BA(0.5)", "BA(0.35)", "BA(1.6)", "CA(0.5)"),  # the grid's BA is 0.7..1.3
    "GREY": ("GREY", "GREY(709)", "ST(0.1)"),
    "GAMMA": ("GAMMA(0.5)", "GAMMA(1.8)"),
    "HUE": ("HUE(30)", "HUE(-90)"),
    "CAST": ("CAST(orange,0.25)", "CAST(blue,0.2)", "GREY+CAST(sepia,0.35)"),
    "POSTER": ("PT(2)", "PT(3)"),  # the grid's PT is 4..7
    "BORDER": ("PAD(0.15)", "PAD(0.15,white)", "PAD(0.3,grey)", "PAD(0.08,#1e90ff)"),
    "LETTERBOX": ("LETTERBOX(16:9)", "LETTERBOX(9:16,white)", "LETTERBOX(21:9)"),
    "TRANS": ("TR(X,0.4)", "TR(Y,-0.4,white)", "TR(X,-0.15,grey)", "TR(Y,0.25,#ff8c00)"),
    "ROT": ("RT(5)", "RT(-25)", "RT(100)", "RT(120)", "RT(-135,white)"),  # between and beyond the grid's angles
    "AFFINE": ("AFFINE(12,0.9,0.05,-0.04,8)", "AFFINE(-23,1.1,-0.08,0.06,-12)",
               "AFFINE(37,0.8,0.1,0.1,15,white)"),
    "PERSP": ("PERSP(0.3)", "PERSP(0.5,white)"),
    "TEXT": ("TEXT(0.1,TOP)", "TEXT(0.08,BOTH)", "TEXT(0.12,ABOVE)"),
    "EMOJI": ("EMOJI(1,0.3)", "EMOJI(5,0.12)"),
    "SCREEN": ("SCREENSHOT", "SCREENSHOT(DESKTOP)"),
    "WEBP": ("WEBP(75)", "WEBP(25)"),
    "AVIF": ("AVIF(60)", "AVIF(25)"),
    "DOWNUP": ("DOWNUP(0.5)", "DOWNUP(0.2)"),
    "CHAIN": (
        "ST(1.5)+RT(120)+SHR(X,0.25)",  # rotation + shear + saturation beyond H6's
        "ST(0.4)+RT(-100)+SHR(Y,0.35)",
        "GREY+BA(0.5)+JC(60)",
        "PAD(0.15,white)+TR(X,0.4)+JC(75)",
        "RT(15)+CROP(0.8)+HUE(20)+WEBP(50)",
        "TEXT(0.08)+EMOJI(2,0.15)+JC(70)",
        "SCREENSHOT+DOWNUP(0.5)+JC(70)",
        "AFFINE(-8,1.05,0.03,0,5)+GAMMA(1.5)+AVIF(40)",
        "LETTERBOX(16:9)+DOWNUP(0.5)+ST(1.4)+JC(65)",
    ),
}
UNSEEN_GRID: dict[str, tuple[str, ...]] = {
    family: tuple(parse(spec).spec for spec in specs) for family, specs in _UNSEEN_SPECS.items()
}
UNSEEN: tuple[AttackCase, ...] = tuple(
    AttackCase(family, spec) for family, specs in UNSEEN_GRID.items() for spec in specs
)

FAMILY_ORDER: tuple[str, ...] = (
    *TABLE1_GRID, *(f"H{i}" for i in range(1, 9)), "SA", "CROP", "PAD", *UNSEEN_GRID,
)

SUITES: dict[str, tuple[AttackCase, ...]] = {
    "table1": TABLE1,
    "table2": TABLE2,
    "strong": STRONG,
    "crop": CROPS,
    "pad": PADDING,
}
# "all" is the paper's suites and ours of crops and borders; the unseen suite stays out of
# it (and of anything that asks for "all"), so it is only run when asked for by name.
SUITES["all"] = tuple(case for cases in SUITES.values() for case in cases)
SUITES["unseen"] = UNSEEN


def suite(names: str | Iterable[str]) -> tuple[AttackCase, ...]:
    """The cases named by ``names``: suite names and/or raw specs, comma-separated or a list.

    Suite names (case-insensitive): ``table1``, ``table2``, ``strong``, ``crop``, ``pad``,
    ``all`` (the five before) and ``unseen`` (not in ``all``). Anything else is parsed as a
    spec, its family being its first code (``"RT(30)+JC(70)"`` → family ``RT``).
    Duplicate specs are kept once, first wins.
    """
    items = split_outside_parentheses(names, ",") if isinstance(names, str) else list(names)
    cases: dict[str, AttackCase] = {}
    for item in (item.strip() for item in items):
        if not item:
            continue
        if item.lower() in SUITES:
            found = SUITES[item.lower()]
        else:
            try:
                attack = parse(item)
            except AttackSpecError as exc:
                problem = f"neither a suite ({', '.join(SUITES)}) nor a valid spec: {exc.problem}"
                raise AttackSpecError(item, problem) from None
            found = (AttackCase(attack.steps[0].code, attack.spec),)
        for case in found:
            cases.setdefault(case.spec, case)
    return tuple(cases.values())


# --- the strong attack (CMAA: "we randomly select an attack from Table 1 and apply it to
# the image with 50% probability. The process is repeated five times") ---
STRONG_ROUNDS = 5
STRONG_PROBABILITY = 0.5


def strong_attack_plan(rng: np.random.Generator) -> list[str]:
    """Draw a strong attack: the Table 1 specs it applies, in order (0 to 5 of them).

    Five rounds; in each, with probability 0.5, one Table 1 attack is drawn: a family
    (one of the table's 17 rows) uniformly, then one of that family's parameters
    uniformly. Families are drawn first so that rows with many parameters (RT has 18)
    are not favoured over rows with few (FL has 2).
    """
    plan = []
    for _ in range(STRONG_ROUNDS):
        if rng.random() < STRONG_PROBABILITY:
            plan.append(draw_table1_attack(rng))
    return plan


def draw_table1_attack(rng: np.random.Generator) -> str:
    """One random Table 1 attack (a weak attack): a family uniformly, then one of its
    parameters uniformly."""
    families = list(TABLE1_GRID)
    options = TABLE1_GRID[families[rng.integers(len(families))]]
    return options[rng.integers(len(options))]


def strong_attack(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Apply a strong attack: draw :func:`strong_attack_plan` from ``rng``, then apply it.

    Noise attacks in the plan go on drawing from the same ``rng`` (after the plan), so a
    seeded generator fixes both the plan and the noise.
    """
    image = to_rgb(im).copy()  # a new image even when nothing is drawn
    for spec in strong_attack_plan(rng):
        (step,) = parse(spec).steps
        image = step.apply(image, rng)
    return image


install_strong_attack(strong_attack, strong_attack_plan)
