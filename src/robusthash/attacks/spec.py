"""The attack spec language: ``RT(30)+JC(70)``, ``SHR(X,0.2)``, ``CROP(0.8,0.1,0.9)``, ``SA``.

Grammar (whitespace anywhere between tokens is ignored, codes and words are
case-insensitive)::

    spec  := term ("+" term)*          applied left to right
    term  := CODE | CODE "(" [arg ("," arg)*] ")"
    arg   := number | word             e.g. 30, -0.1, 2.0, X, H, white, #ff8c00, 16:9

Trailing parameters that have a default may be left out (``CROP(0.8)`` is centred,
``PAD(0.1)`` is black). The canonical form (``Attack.spec``) writes codes and axis or
direction words in upper case, colour words in lower case, numbers in their shortest
form (``2.0`` → ``2``) and leaves out trailing parameters equal to their default.

Seeding: ``attack(im, seed)`` gives every random step (GN, SN, SPN, SA, PERSP, TEXT,
EMOJI) its own generator, ``numpy.random.default_rng([seed, index])`` with ``index``
the step's position in the spec (``[seed, index, variant]`` for ``SA(variant)``), so a
result depends only on the seed, the spec and the image. Colours (fills, borders,
casts) are black/white/grey or a grey level, a colour word (``red``, ``sepia``, ...)
or ``#rrggbb``. Codes, parameters and grids: ``docs/attacks.md``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..io import to_rgb
from . import transforms


class AttackSpecError(ValueError):
    """A spec string that cannot be parsed; the message names the spec and the problem."""

    def __init__(self, spec: str, problem: str):
        self.spec = spec
        self.problem = problem
        super().__init__(f"bad attack spec {spec!r}: {problem}")


_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One parameter of a code: how to read it from a token and how to write it back."""

    name: str
    rule: str  # what a valid value is, in words: shown in errors and listings
    read: Callable[[str], Any]  # token -> value, or raises ValueError
    write: Callable[[Any], str]
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def _number_text(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _real(name: str, low: float = -math.inf, high: float = math.inf, *, above_low: bool = False,
          default: Any = _REQUIRED) -> Param:
    """A finite real number in [low, high], or in (low, high] with ``above_low``."""
    bounds = []
    if not math.isinf(low):
        bounds.append(f"{'>' if above_low else '>='} {_number_text(low)}")
    if not math.isinf(high):
        bounds.append(f"<= {_number_text(high)}")
    rule = f"a number {' and '.join(bounds)}" if bounds else "a number"

    def read(token: str) -> float:
        value = float(token)
        if not math.isfinite(value) or not low <= value <= high or (above_low and value == low):
            raise ValueError
        return value

    return Param(name, rule, read, _number_text, default)


def _integer(name: str, low: int, high: int | None = None, *, odd: bool = False,
             default: Any = _REQUIRED) -> Param:
    """An integer in [low, high] (no upper bound when ``high`` is None), odd if asked."""
    kind = "an odd integer" if odd else "an integer"
    rule = f"{kind} >= {low}" if high is None else f"{kind} from {low} to {high}"

    def read(token: str) -> int:
        value = float(token)
        if not value.is_integer() or value < low or (high is not None and value > high) or (odd and value % 2 == 0):
            raise ValueError
        return int(value)

    return Param(name, rule, read, str, default)


def _word(name: str, words: tuple[str, ...], default: Any = _REQUIRED) -> Param:
    """One of a few words, written in upper case."""

    def read(token: str) -> str:
        if token.upper() not in words:
            raise ValueError
        return token.upper()

    return Param(name, " or ".join(words), read, str, default)


GREY_NAMES = {"black": 0, "grey": 128, "gray": 128, "white": 255}


def _grey(name: str, default: int) -> Param:
    """A grey level 0..255, or black (0), grey/gray (128), white (255)."""

    def read(token: str) -> int:
        if token.lower() in GREY_NAMES:
            return GREY_NAMES[token.lower()]
        value = float(token)
        if not value.is_integer() or not 0 <= value <= 255:
            raise ValueError
        return int(value)

    def write(value: int) -> str:
        return {0: "black", 128: "grey", 255: "white"}.get(value, str(value))

    return Param(name, "black, white, grey or a grey level 0..255", read, write, default)


# Colour words beyond the greys (fills, borders, casts), and how canonical specs write them.
COLOUR_NAMES = {
    "red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "cyan": (0, 255, 255), "magenta": (255, 0, 255), "orange": (255, 165, 0), "sepia": (112, 66, 20),
}
_HEX = re.compile(r"#([0-9a-fA-F]{6})")


def _colour(name: str, default: Any = _REQUIRED) -> Param:
    """Any colour: a grey as :func:`_grey` reads it (kept an int, so grey specs read as
    before), a colour word of :data:`COLOUR_NAMES` or ``#rrggbb`` (an RGB triple)."""

    def read(token: str) -> int | tuple[int, int, int]:
        word = token.lower()
        if word in COLOUR_NAMES:
            return COLOUR_NAMES[word]
        match = _HEX.fullmatch(token)
        if match:
            rgb = tuple(int(match.group(1)[i : i + 2], 16) for i in (0, 2, 4))
            return rgb[0] if rgb[0] == rgb[1] == rgb[2] else rgb
        return _grey(name, 0).read(token)

    def write(value: int | tuple[int, int, int]) -> str:
        if isinstance(value, int):
            return _grey(name, 0).write(value)
        named = {rgb: word for word, rgb in COLOUR_NAMES.items()}
        return named.get(tuple(value), "#{:02x}{:02x}{:02x}".format(*value))

    rule = f"black, white, grey, a grey level 0..255, {', '.join(COLOUR_NAMES)} or #rrggbb"
    return Param(name, rule, read, write, default)


def _aspect(name: str) -> Param:
    """An aspect ratio ``W:H`` of two positive numbers (``16:9``, ``2.39:1``)."""

    def read(token: str) -> tuple[float, float]:
        parts = token.split(":")
        if len(parts) != 2:
            raise ValueError
        width, height = (float(p) for p in parts)
        if not all(math.isfinite(v) and v > 0 for v in (width, height)):
            raise ValueError
        return width, height

    return Param(name, "W:H, two positive numbers (16:9)", read, lambda v: f"{_number_text(v[0])}:{_number_text(v[1])}")


@dataclass(frozen=True)
class Code:
    """One attack code: its meaning, parameters and the transform that applies it."""

    code: str
    title: str
    params: tuple[Param, ...]
    function: Callable[..., Image.Image]  # function(im, *args) or, if random, function(im, *args, rng)
    random: bool = False

    @property
    def required(self) -> int:
        return sum(p.required for p in self.params)

    def signature(self) -> str:
        names = [p.name if p.required else f"[{p.name}]" for p in self.params]
        return f"{self.code}({','.join(names)})" if names else self.code


# The strong attack draws from Table 1, whose specs this module parses: suites defines it
# and installs it here (importing the attacks package imports suites, so it always has).
_STRONG: dict[str, Callable] = {}


def install_strong_attack(attack: Callable, plan: Callable) -> None:
    """Give ``SA`` its attack ``(im, rng) → im`` and its ``plan(rng) → specs``."""
    _STRONG.update(attack=attack, plan=plan)


def _strong_attack(im: Image.Image, variant: int, rng: np.random.Generator) -> Image.Image:
    # The variant is already mixed into rng (Step.rng).
    return _STRONG["attack"](im, rng)


def _perspective(im: Image.Image, strength: float, fill: Any, rng: np.random.Generator) -> Image.Image:
    # The spec passes parameters in order and the generator last.
    return transforms.perspective(im, strength, rng, fill)


_FACTOR = _real("factor", 0.0)
_KERNEL = _integer("size", 1, odd=True)
_VARIANCE = _real("variance", 0.0)
_AXIS = _word("axis", ("X", "Y"))

CODES: dict[str, Code] = {c.code: c for c in (
    Code("BA", "brightness ×factor (ImageEnhance.Brightness)", (_FACTOR,), transforms.brightness),
    Code("CA", "contrast ×factor (ImageEnhance.Contrast)", (_FACTOR,), transforms.contrast),
    Code("ST", "saturation ×factor (ImageEnhance.Color)", (_FACTOR,), transforms.saturation),
    Code("SH", "sharpness ×factor (ImageEnhance.Sharpness)", (_FACTOR,), transforms.sharpness),
    Code("AF", "average (box) filter, size×size", (_KERNEL,), transforms.average_filter),
    Code("MF", "median filter, size×size", (_KERNEL,), transforms.median_filter),
    Code("GF", "Gaussian filter, size×size, OpenCV's sigma for the size", (_KERNEL,), transforms.gaussian_filter),
    Code("GN", "Gaussian noise, variance on the 0..1 scale", (_VARIANCE,), transforms.gaussian_noise, random=True),
    Code("SN", "speckle noise img+img·n, variance of n", (_VARIANCE,), transforms.speckle_noise, random=True),
    Code("SPN", "salt & pepper, fraction of values replaced", (_real("amount", 0.0, 1.0),),
         transforms.salt_and_pepper, random=True),
    Code("JC", "JPEG compression at quality", (_integer("quality", 1, 100),), transforms.jpeg),
    Code("PT", "posterization to bits per channel", (_integer("bits", 1, 8),), transforms.posterize),
    Code("RS", "resizing by scale (bicubic, not resized back)", (_real("scale", 0.0, 10.0, above_low=True),),
         transforms.resize),
    Code("RT", "rotation by degrees, counter-clockwise, canvas kept, corners fill",
         (_real("degrees"), _colour("fill", 0)), transforms.rotate),
    Code("FL", "flip H (left-right) or V (top-bottom)", (_word("direction", ("H", "V")),), transforms.flip),
    Code("SHR", "shear about the centre, x' = x + factor·(y - cy)", (_AXIS, _real("factor")), transforms.shear),
    Code("TR", "translation by a fraction of the width/height, + = right/down, uncovered strip fill",
         (_AXIS, _real("fraction", -1.0, 1.0), _colour("fill", 0)), transforms.translate),
    Code("SA", "strong attack: 5 times, with probability 0.5, a random Table 1 attack",
         (_integer("variant", 0, default=0),), _strong_attack, random=True),
    Code("CROP", "crop keeping a fraction of the area at position (cx, cy)",
         (_real("area", 0.0, 1.0, above_low=True), _real("cx", 0.0, 1.0, default=0.5),
          _real("cy", 0.0, 1.0, default=0.5)), transforms.crop),
    Code("PAD", "border on each side, border × the longer side wide",
         (_real("border", 0.0, 1.0), _colour("colour", 0)), transforms.pad),
    # Beyond CMAA's grids: the codes the unseen suite (suites.UNSEEN) is made of.
    Code("GREY", "greyscale, R = G = B = luma (601: PIL's convert('L'), 709, AVG: mean)",
         (_word("luma", ("601", "709", "AVG"), default="601"),), transforms.greyscale),
    Code("GAMMA", "gamma, v -> 255·(v/255)^g; g > 1 darkens mid-tones", (_real("g", 0.0, 10.0, above_low=True),),
         transforms.gamma),
    Code("HUE", "hue rotated by degrees (HSV, as torchvision's adjust_hue)", (_real("degrees", -360.0, 360.0),),
         transforms.hue_shift),
    Code("CAST", "colour cast: blend with a flat colour by strength", (_colour("colour"), _real("strength", 0.0, 1.0)),
         transforms.colour_cast),
    Code("LETTERBOX", "bars of colour around the picture to the frame aspect W:H",
         (_aspect("aspect"), _colour("colour", 0)), transforms.letterbox),
    Code("AFFINE", "affine about the centre: rotation°, scale, shift tx,ty (fractions), x-shear°",
         (_real("degrees"), _real("scale", 0.0, 10.0, above_low=True), _real("tx", -1.0, 1.0),
          _real("ty", -1.0, 1.0), _real("shear", -80.0, 80.0), _colour("fill", 0)), transforms.affine),
    Code("PERSP", "random perspective: corners moved inwards by up to strength·half the side",
         (_real("strength", 0.0, 0.95), _colour("fill", 0)), _perspective, random=True),
    Code("TEXT", "caption of random words, size × the height (TOP BOTTOM BOTH MIDDLE over it; ABOVE on a bar)",
         (_real("size", 0.0, 0.5, above_low=True), _word("position", transforms.CAPTION_POSITIONS, default="BOTTOM")),
         transforms.caption, random=True),
    Code("EMOJI", "n stickers (smiley, star, heart), each size × the shorter side, at random places",
         (_integer("n", 1, 50), _real("size", 0.0, 1.0, above_low=True)), transforms.stickers, random=True),
    Code("SCREENSHOT", "the picture scaled inside a PHONE app screen or a DESKTOP browser window",
         (_word("style", transforms.SCREENSHOT_STYLES, default="PHONE"),), transforms.screenshot),
    Code("WEBP", "WebP re-encoding at quality", (_integer("quality", 1, 100),), transforms.webp),
    Code("AVIF", "AVIF re-encoding at quality (Pillow >= 11.3 with libavif)", (_integer("quality", 1, 100),),
         transforms.avif),
    Code("DOWNUP", "resize by scale, then back to the original size (bicubic)",
         (_real("scale", 0.0, 1.0, above_low=True),), transforms.down_up),
)}


@dataclass(frozen=True)
class Step:
    """One term of a spec: a code and its (complete, validated) arguments."""

    code: str
    args: tuple

    @property
    def spec(self) -> str:
        params = CODES[self.code].params
        shown = list(zip(params, self.args))
        while shown and not shown[-1][0].required and shown[-1][1] == shown[-1][0].default:
            shown.pop()  # trailing defaults are left out of the canonical form
        return f"{self.code}({','.join(p.write(v) for p, v in shown)})" if shown else self.code

    @property
    def random(self) -> bool:
        return CODES[self.code].random

    def rng(self, seed: int, index: int) -> np.random.Generator:
        """The generator this step uses as step ``index`` of an attack run with ``seed``."""
        mixed = [seed, index, *self.args] if self.code == "SA" else [seed, index]
        return np.random.default_rng(mixed)

    def apply(self, im: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        """Apply to ``im``; random steps need ``rng``."""
        if self.random:
            if rng is None:
                raise ValueError(f"{self.spec} is random and needs a numpy Generator")
            return CODES[self.code].function(im, *self.args, rng)
        return CODES[self.code].function(im, *self.args)


@dataclass(frozen=True)
class Attack:
    """A parsed spec: ``attack(im, seed)`` applies its steps left to right.

    ``spec`` is the canonical string (``str(attack)`` too); ``steps`` the parsed terms.
    """

    steps: tuple[Step, ...]
    spec: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("an Attack needs at least one step")
        object.__setattr__(self, "spec", "+".join(step.spec for step in self.steps))

    def __str__(self) -> str:
        return self.spec

    def __call__(self, im: Image.Image, seed: int = 0) -> Image.Image:
        """Apply to ``im`` (converted to RGB first); deterministic for a given ``seed`` (>= 0)."""
        _check_seed(seed)
        image = to_rgb(im)
        for index, step in enumerate(self.steps):
            image = step.apply(image, step.rng(seed, index) if step.random else None)
        return image

    def plan(self, seed: int = 0) -> list[str]:
        """The concrete steps ``attack(im, seed)`` applies: each ``SA`` replaced by what it drew."""
        _check_seed(seed)
        concrete = []
        for index, step in enumerate(self.steps):
            concrete += _STRONG["plan"](step.rng(seed, index)) if step.code == "SA" else [step.spec]
        return concrete


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")


_TERM = re.compile(r"([A-Za-z]+)\s*(?:\((.*)\))?", re.DOTALL)


def split_outside_parentheses(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses (so ``SHR(X,0.2)`` stays whole)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parse_term(term: str, spec: str) -> Step:
    match = _TERM.fullmatch(term.strip())
    if not match:
        raise AttackSpecError(spec, f"cannot read {term.strip()!r}: expected CODE or CODE(arg,...)")
    code, inside = match.group(1).upper(), match.group(2)
    if code not in CODES:
        raise AttackSpecError(spec, f"unknown code {match.group(1)!r}; known codes: {', '.join(CODES)}")
    definition = CODES[code]
    tokens = [t.strip() for t in inside.split(",")] if inside is not None and inside.strip() else []
    if any(not t or "(" in t or ")" in t for t in tokens):
        raise AttackSpecError(spec, f"cannot read the arguments of {term.strip()!r}")
    if not definition.required <= len(tokens) <= len(definition.params):
        low, high = definition.required, len(definition.params)
        wanted = f"{low} argument{'s' * (low != 1)}" if low == high else f"{low} to {high} arguments"
        raise AttackSpecError(spec, f"{code} takes {wanted}, {definition.signature()}; got {len(tokens)}")
    args = []
    for param, token in zip(definition.params, tokens + [None] * (len(definition.params) - len(tokens))):
        if token is None:
            args.append(param.default)
            continue
        try:
            args.append(param.read(token))
        except ValueError:
            raise AttackSpecError(spec, f"{code} {param.name} must be {param.rule}, got {token!r}") from None
    return Step(code, tuple(args))


def parse(spec: str) -> Attack:
    """Parse a spec such as ``"RT(30)+JC(70)"``; raises :class:`AttackSpecError` if it is bad."""
    if not isinstance(spec, str) or not spec.strip():
        raise AttackSpecError(str(spec), "empty spec; expected e.g. RT(30)+JC(70)")
    if spec.count("(") != spec.count(")"):
        raise AttackSpecError(spec, "unbalanced parentheses")
    terms = split_outside_parentheses(spec, "+")
    if any(not term.strip() for term in terms):
        raise AttackSpecError(spec, "empty term (a '+' with nothing on one side)")
    return Attack(tuple(_parse_term(term, spec) for term in terms))


def apply(spec: str, im: Image.Image, seed: int = 0) -> Image.Image:
    """Parse ``spec`` and apply it to ``im`` with ``seed``."""
    return parse(spec)(im, seed)
