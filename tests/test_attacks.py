"""The attack suite: exact grids, the spec language, seeding, and what each attack measurably does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage
from skimage.util import random_noise

from robusthash import attacks
from robusthash.attacks import (
    CROPS,
    FAMILY_ORDER,
    PADDING,
    STRONG,
    TABLE1,
    TABLE2,
    AttackCase,
    AttackSpecError,
    apply,
    parse,
    strong_attack_plan,
    suite,
)

ROBUSTHASH = [sys.executable, "-m", "robusthash.cli"]


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im).astype(np.int64)


def flat(value: int, size=(128, 128)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


@pytest.fixture(scope="module")
def small(photos) -> Image.Image:
    """A small non-square photo: fast, and catches width/height mix-ups."""
    return photos["astronaut"].resize((72, 56))


@pytest.fixture(scope="module")
def noisy() -> Image.Image:
    """Random pixels: every value differs from its neighbours, so filters are tested hard."""
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8))


# --- the grids ---

def test_table1_is_cmaa_table1_exactly():
    assert len(TABLE1) == 120
    by_family: dict[str, list[str]] = {}
    for case in TABLE1:
        by_family.setdefault(case.family, []).append(case.spec)
    factors = ["0.7", "0.8", "0.9", "1.1", "1.2", "1.3"]
    noise = ["0.01", "0.02", "0.03", "0.04", "0.05", "0.1", "0.2"]
    offsets = ["-0.3", "-0.2", "-0.1", "0.1", "0.2", "0.3"]
    expected = {
        **{c: [f"{c}({f})" for f in factors] for c in ("BA", "CA", "ST", "SH")},
        **{c: [f"{c}({k})" for k in (3, 5, 7, 9)] for c in ("AF", "MF", "GF")},
        **{c: [f"{c}({v})" for v in noise] for c in ("GN", "SN", "SPN")},
        "JC": [f"JC({q})" for q in range(10, 100, 10)],
        "PT": ["PT(4)", "PT(5)", "PT(6)", "PT(7)"],
        "RS": ["RS(0.5)", "RS(0.75)", "RS(0.9)", "RS(1.1)", "RS(1.5)", "RS(2)"],
        "RT": [f"RT({d})" for d in [*range(-90, 0, 10), *range(10, 100, 10)]],
        "FL": ["FL(H)", "FL(V)"],
        **{c: [f"{c}({a},{o})" for a in "XY" for o in offsets] for c in ("SHR", "TR")},
    }
    assert by_family == expected
    assert [len(v) for v in by_family.values()] == [6, 6, 6, 6, 4, 4, 4, 7, 7, 7, 9, 4, 6, 18, 2, 12, 12]


def test_table2_is_cmaa_table2_exactly():
    assert len(TABLE2) == 36
    specs = {}
    for case in TABLE2:
        specs.setdefault(case.family, []).append(case.spec)
    xy = lambda template, values: [template.format(*v, a=a) for v in values for a in "XY"]  # noqa: E731
    assert specs == {
        "H1": ["RT(30)+JC(70)", "RT(50)+JC(70)", "RT(50)+JC(50)"],
        "H2": ["RS(0.5)+BA(0.8)", "RS(2)+BA(0.8)", "RS(0.5)+BA(1.2)", "RS(2)+BA(1.2)"],
        "H3": xy("TR({a},{0})+GN({1})", [(0.1, 0.05), (0.2, 0.05), (0.1, 0.1)]),
        "H4": ["FL(H)+SH(0.8)", "FL(H)+SH(1.2)", "FL(V)+SH(0.8)", "FL(V)+SH(1.2)"],
        "H5": ["GF(7)+PT(4)+CA(1.2)", "GF(5)+PT(8)+CA(1.2)", "GF(9)+PT(8)+CA(1.1)"],
        "H6": xy("ST({0})+RT({1})+SHR({a},{2})", [(0.7, 50, 0.2), (0.8, 50, 0.3), (0.9, 70, 0.1)]),
        "H7": xy("SH({0})+TR({a},{1})+SN({2})", [(1.2, 0.1, 0.05), (1.1, 0.2, 0.05), (1.2, 0.1, 0.1)]),
        "H8": ["RS(0.5)+SPN(0.05)+AF(7)", "RS(0.5)+SPN(0.05)+AF(9)", "RS(2)+SPN(0.05)+AF(7)", "RS(2)+SPN(0.05)+AF(9)"],
    }


def test_other_suites_and_family_order():
    assert [c.spec for c in STRONG] == ["SA(1)", "SA(2)", "SA(3)", "SA(4)", "SA(5)"]
    assert {c.family for c in CROPS} == {"CROP"} and {c.family for c in PADDING} == {"PAD"}
    assert FAMILY_ORDER[:17] == ("BA", "CA", "ST", "SH", "AF", "MF", "GF", "GN", "SN", "SPN",
                                 "JC", "PT", "RS", "RT", "FL", "SHR", "TR")
    assert FAMILY_ORDER[17:28] == ("H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8", "SA", "CROP", "PAD")
    every = suite("all")
    assert {c.family for c in every} == set(FAMILY_ORDER[:28])  # then the unseen suite's
    assert {c.family for c in suite("unseen")} == set(FAMILY_ORDER[28:])
    assert all(parse(c.spec).spec == c.spec for c in every)  # every suite spec is canonical
    assert len({c.spec for c in every}) == len(every) == 120 + 36 + 5 + 8 + 5


def test_suite_accepts_names_lists_and_raw_specs():
    assert suite("table1,table2") == TABLE1 + TABLE2
    assert suite(["Table2", "strong"]) == TABLE2 + STRONG
    assert suite("crop, SHR(X,0.25), rt(45)+jc(80)")[-2:] == (
        AttackCase("SHR", "SHR(X,0.25)"), AttackCase("RT", "RT(45)+JC(80)"))
    assert suite("table1,RT(30)") == TABLE1  # duplicates kept once
    with pytest.raises(AttackSpecError, match="tabel1.*neither a suite"):
        suite("tabel1")


# --- the spec language ---

@pytest.mark.parametrize("spec, canonical", [
    ("RT(30)+JC(70)", "RT(30)+JC(70)"),
    ("  rt( 30.0 ) +  jc(70)", "RT(30)+JC(70)"),
    ("shr(x,0.20)", "SHR(X,0.2)"),
    ("TR(Y,-0.1)", "TR(Y,-0.1)"),
    ("fl(h)", "FL(H)"),
    ("RS(2.0)", "RS(2)"),
    ("GN(1e-2)", "GN(0.01)"),
    ("CROP(0.8)", "CROP(0.8)"),
    ("CROP(0.8,0.5,0.5)", "CROP(0.8)"),
    ("CROP(0.8,0.1,0.9)", "CROP(0.8,0.1,0.9)"),
    ("PAD(0.1,black)", "PAD(0.1)"),
    ("PAD(0.1,WHITE)", "PAD(0.1,white)"),
    ("PAD(0.1,128)", "PAD(0.1,grey)"),
    ("PAD(0.1,7)", "PAD(0.1,7)"),
    ("sa", "SA"),
    ("SA(0)", "SA"),
    ("SA(3)+GF(5)+PT(8)", "SA(3)+GF(5)+PT(8)"),
])
def test_parse_gives_canonical_spec_and_round_trips(spec, canonical):
    attack = parse(spec)
    assert attack.spec == str(attack) == canonical
    assert parse(str(attack)) == attack
    assert len(attack.steps) == canonical.count("+") + 1


@pytest.mark.parametrize("spec, problem", [
    ("", "empty spec"),
    ("XX(3)", "unknown code 'XX'; known codes: BA, CA"),
    ("RT(1,2,3)", "RT takes 1 to 2 arguments, RT(degrees,[fill]); got 3"),
    ("JC(1,2)", "JC takes 1 argument, JC(quality); got 2"),
    ("FL", "FL takes 1 argument"),
    ("CROP(0.5,0.1,0.1,0.1)", "CROP takes 1 to 3 arguments"),
    ("JC(0)", "JC quality must be an integer from 1 to 100, got '0'"),
    ("JC(70.5)", "JC quality must be an integer"),
    ("PT(9)", "PT bits must be an integer from 1 to 8"),
    ("CROP(1.5)", "CROP area must be a number > 0 and <= 1"),
    ("AF(4)", "AF size must be an odd integer"),
    ("SPN(1.2)", "SPN amount must be a number >= 0 and <= 1"),
    ("GN(-0.1)", "GN variance must be a number >= 0"),
    ("RT(nan)", "RT degrees must be a number"),
    ("SHR(Z,0.1)", "SHR axis must be X or Y"),
    ("PAD(0.1,pink)", "PAD colour must be black, white, grey"),
    ("RT(30)++JC(70)", "empty term"),
    ("RT(30", "unbalanced parentheses"),
    ("RT30", "cannot read 'RT30'"),
    ("JC(70,)", "cannot read the arguments"),
])
def test_bad_specs_name_the_spec_and_the_problem(spec, problem):
    with pytest.raises(AttackSpecError) as info:
        parse(spec)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"bad attack spec {spec!r}: ")
    assert problem in str(info.value)


def test_apply_converts_to_rgb_and_returns_a_new_image(small):
    grey = small.convert("L")
    assert np.array_equal(pixels(apply("FL(H)", grey)), pixels(apply("FL(H)", grey.convert("RGB"))))
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert pixels(apply("FL(H)", transparent)).min() == 255  # alpha on white, as the loader does
    empty_plan_seed = next(seed for seed in range(100) if not parse("SA").plan(seed))
    out = apply("SA", small, seed=empty_plan_seed)
    assert out is not small and np.array_equal(pixels(out), pixels(small))


# --- seeding ---

def test_same_seed_same_pixels_different_seed_different_noise(small):
    for spec in ("GN(0.01)", "SN(0.05)", "SPN(0.05)", "SA(2)", "TR(X,0.1)+GN(0.05)"):
        attack = parse(spec)
        first = pixels(attack(small, seed=11))
        assert np.array_equal(first, pixels(attack(small, seed=11))), spec
    for spec in ("GN(0.01)", "SN(0.05)", "SPN(0.05)"):
        assert not np.array_equal(pixels(apply(spec, small, 1)), pixels(apply(spec, small, 2))), spec


def test_each_random_step_has_its_own_generator(small):
    # Step i draws from default_rng([seed, i]): adding a deterministic step in front changes
    # the step's index, adding one behind changes nothing.
    expected = attacks.gaussian_noise(small, 0.01, np.random.default_rng([5, 0]))
    assert np.array_equal(pixels(apply("GN(0.01)", small, 5)), pixels(expected))
    assert np.array_equal(pixels(apply("GN(0.01)+FL(H)", small, 5)), pixels(attacks.flip(expected, "H")))
    second = attacks.gaussian_noise(attacks.flip(small, "H"), 0.01, np.random.default_rng([5, 1]))
    assert np.array_equal(pixels(apply("FL(H)+GN(0.01)", small, 5)), pixels(second))


def test_negative_seed_is_refused(small):
    with pytest.raises(ValueError, match="seed"):
        parse("GN(0.01)")(small, seed=-1)


# --- what each attack measurably does ---

@pytest.mark.parametrize("var", [0.01, 0.02])
def test_gaussian_noise_has_the_requested_variance(var):
    grey = flat(128, (256, 256))
    delta = (pixels(apply(f"GN({var})", grey, seed=3)) - 128) / 255.0
    assert abs(delta.mean()) < 0.002
    assert delta.var() == pytest.approx(var, rel=0.03)


def test_speckle_noise_scales_with_the_value():
    grey = flat(128, (256, 256))
    relative = (pixels(apply("SN(0.02)", grey, seed=3)) - 128) / 128.0
    assert relative.var() == pytest.approx(0.02, rel=0.03)
    assert pixels(apply("SN(0.2)", flat(0), seed=3)).max() == 0  # black stays black


@pytest.mark.parametrize("amount", [0.01, 0.1, 0.2])
def test_salt_and_pepper_replaces_the_requested_fraction(amount):
    out = pixels(apply(f"SPN({amount})", flat(128, (256, 256)), seed=4))
    changed = out != 128
    assert changed.mean() == pytest.approx(amount, rel=0.05)
    assert set(np.unique(out[changed])) == {0, 255}
    assert (out[changed] == 255).mean() == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("mode, function, keyword, value", [
    ("gaussian", attacks.gaussian_noise, "var", 0.05),
    ("speckle", attacks.speckle_noise, "var", 0.1),
    ("s&p", attacks.salt_and_pepper, "amount", 0.05),
])
def test_noise_draws_equal_scikit_images_random_noise(small, mode, function, keyword, value):
    ours = pixels(function(small, value, np.random.default_rng(9)))
    theirs = random_noise(np.asarray(small), mode=mode, rng=np.random.default_rng(9), **{keyword: value})
    assert np.array_equal(ours, np.rint(theirs * 255))


@pytest.mark.parametrize("bits", [1, 4, 5, 6, 7, 8])
def test_posterize_leaves_2_to_the_bits_levels(bits):
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (4, 1))).convert("RGB")
    levels = np.unique(pixels(apply(f"PT({bits})", ramp)))
    assert len(levels) == 2**bits
    assert np.all(levels % 2 ** (8 - bits) == 0)


def test_flip_twice_is_identity(small):
    for direction in "HV":
        assert np.array_equal(pixels(apply(f"FL({direction})+FL({direction})", small)), pixels(small))
    assert np.array_equal(pixels(apply("FL(H)", small)), pixels(small)[:, ::-1])
    assert np.array_equal(pixels(apply("FL(V)", small)), pixels(small)[::-1])


def test_rotation_by_90_is_counter_clockwise(photos):
    square = photos["astronaut"].resize((64, 64))
    assert np.array_equal(pixels(apply("RT(90)", square)), np.rot90(pixels(square)))
    assert np.array_equal(pixels(apply("RT(-90)", square)), np.rot90(pixels(square), k=-1))
    rotated = pixels(apply("RT(45)", flat(200, (64, 64))))
    assert rotated[0, 0].max() == 0 and rotated[32, 32].min() == 200  # corners black, centre kept


def test_translation_shifts_by_the_fraction_and_fills_black(small):
    width, height = small.size
    out = pixels(apply("TR(X,0.1)", small))
    dx = round(0.1 * width)
    assert np.array_equal(out[:, dx:], pixels(small)[:, : width - dx])
    assert out[:, :dx].max() == 0
    up = pixels(apply("TR(Y,-0.2)", small))
    dy = round(0.2 * height)
    assert np.array_equal(up[: height - dy], pixels(small)[dy:]) and up[height - dy :].max() == 0


def centroid(im: Image.Image) -> tuple[float, float]:
    weights = pixels(im)[:, :, 0].astype(float)
    ys, xs = np.indices(weights.shape) + 0.5  # pixel centres
    return (weights * xs).sum() / weights.sum(), (weights * ys).sum() / weights.sum()


def test_shear_moves_points_as_documented():
    canvas = np.zeros((100, 120, 3), np.uint8)
    canvas[80:84, 20:24] = 255  # a block centred at (22, 82); the image centre is (60, 50)
    block = Image.fromarray(canvas)
    assert centroid(apply("SHR(X,0.2)", block)) == pytest.approx((22 + 0.2 * (82 - 50), 82), abs=0.01)
    assert centroid(apply("SHR(Y,-0.3)", block)) == pytest.approx((22, 82 - 0.3 * (22 - 60)), abs=0.01)
    assert apply("SHR(X,0.3)", block).size == block.size


@pytest.mark.parametrize("area", [0.5, 0.7, 0.9, 0.95])
def test_crop_keeps_the_area_fraction(small, area):
    width, height = small.size
    out = apply(f"CROP({area})", small)
    assert abs(out.width - width * area**0.5) <= 0.5 and abs(out.height - height * area**0.5) <= 0.5
    left, top = round((width - out.width) / 2), round((height - out.height) / 2)
    assert np.array_equal(pixels(out), pixels(small)[top : top + out.height, left : left + out.width])


def test_crop_position(small):
    out = apply("CROP(0.5,0,0)", small)
    assert np.array_equal(pixels(out), pixels(small)[: out.height, : out.width])
    out = apply("CROP(0.5,1,1)", small)
    assert np.array_equal(pixels(out), pixels(small)[-out.height :, -out.width :])


def test_pad_adds_a_border_of_the_longer_side_on_each_side(small):
    width, height = small.size  # 72 × 56
    out = apply("PAD(0.1,white)", small)
    border = round(0.1 * max(width, height))
    assert out.size == (width + 2 * border, height + 2 * border)
    arr = pixels(out)
    assert arr[:border].min() == 255 and arr[:, -border:].min() == 255
    assert np.array_equal(arr[border:-border, border:-border], pixels(small))
    assert pixels(apply("PAD(0.2,grey)", small))[0, 0].tolist() == [128, 128, 128]


@pytest.mark.parametrize("size", [3, 5, 9])
def test_median_filter_equals_pils_median_on_the_mirrored_image(noisy, size):
    r = size // 2
    mirrored = np.pad(np.asarray(noisy), ((r, r), (r, r), (0, 0)), mode="reflect")
    reference = np.asarray(Image.fromarray(mirrored).filter(ImageFilter.MedianFilter(size)))[r:-r, r:-r]
    assert np.array_equal(np.asarray(apply(f"MF({size})", noisy)), reference)


def test_median_filter_is_banded_without_seams():
    tall = Image.fromarray(np.random.default_rng(2).integers(0, 256, (300, 7, 3), dtype=np.uint8))
    r = 2
    mirrored = np.pad(np.asarray(tall), ((r, r), (r, r), (0, 0)), mode="reflect")
    reference = np.asarray(Image.fromarray(mirrored).filter(ImageFilter.MedianFilter(5)))[r:-r, r:-r]
    assert np.array_equal(np.asarray(attacks.median_filter(tall, 5)), reference)


@pytest.mark.parametrize("size", [3, 7, 17])  # 17: sums beyond 16 bits
def test_average_filter_is_the_rounded_exact_mean(noisy, size):
    exact = ndimage.uniform_filter(np.asarray(noisy).astype(float), size=(size, size, 1), mode="mirror")
    assert np.abs(pixels(apply(f"AF({size})", noisy)) - exact).max() <= 0.5 + 1e-6
    assert np.array_equal(pixels(apply(f"AF({size})", flat(255, (20, 20)))), pixels(flat(255, (20, 20))))


def test_gaussian_filter_uses_opencvs_sigma(noisy):
    assert [round(attacks.gaussian_sigma(k), 6) for k in (3, 5, 7, 9)] == [0.8, 1.1, 1.4, 1.7]
    sigma = attacks.gaussian_sigma(5)
    exact = ndimage.gaussian_filter(np.asarray(noisy).astype(float), sigma=(sigma, sigma, 0), mode="mirror",
                                    truncate=2 / sigma)  # radius 2: the 5 taps
    assert np.abs(pixels(apply("GF(5)", noisy)) - exact).max() <= 0.5 + 1e-3


def test_enhancements_move_in_the_documented_direction(small):
    assert pixels(apply("BA(1.3)", small)).mean() > pixels(small).mean() > pixels(apply("BA(0.7)", small)).mean()
    assert pixels(apply("CA(1.3)", small)).std() > pixels(small).std() > pixels(apply("CA(0.7)", small)).std()
    saturation = lambda im: np.ptp(pixels(im), axis=2).mean()  # noqa: E731
    assert saturation(apply("ST(1.3)", small)) > saturation(small) > saturation(apply("ST(0.7)", small))
    assert np.array_equal(pixels(apply("BA(1)+CA(1)+ST(1)+SH(1)", small)), pixels(small))


def test_jpeg_and_resize(small):
    assert apply("RS(0.5)", small).size == (36, 28) and apply("RS(2)", small).size == (144, 112)
    error = lambda q: np.abs(pixels(apply(f"JC({q})", small)) - pixels(small)).mean()  # noqa: E731
    assert error(10) > error(90) > 0


# --- the strong attack ---

def test_strong_attack_plan_is_reproducible_and_draws_table1():
    table1 = {case.spec for case in TABLE1}
    lengths = []
    for seed in range(200):
        plan = strong_attack_plan(np.random.default_rng(seed))
        assert plan == strong_attack_plan(np.random.default_rng(seed))
        assert set(plan) <= table1
        lengths.append(len(plan))
    assert min(lengths) == 0 and max(lengths) == 5
    assert np.mean(lengths) == pytest.approx(2.5, abs=0.3)


def test_strong_attack_applies_its_plan(small):
    for seed in range(4):
        plan = parse("SA(1)").plan(seed)
        assert 0 <= len(plan) <= 5 and plan == parse("SA(1)").plan(seed)
        rng = parse("SA(1)").steps[0].rng(seed, 0)
        strong_attack_plan(rng)  # the plan's draws come first, the noise after
        expected = small
        for spec in plan:
            expected = parse(spec).steps[0].apply(expected, rng)
        assert np.array_equal(pixels(apply("SA(1)", small, seed)), pixels(expected))
    assert any(parse("SA(1)").plan(s) != parse("SA(2)").plan(s) for s in range(4))  # variants differ


def test_plan_lists_the_concrete_steps():
    assert parse("RT(30)+JC(70)").plan(0) == ["RT(30)", "JC(70)"]
    sa = parse("SA(2)").steps[0]
    assert parse("FL(H)+SA(2)").plan(7) == ["FL(H)", *strong_attack_plan(sa.rng(7, 1))]


# --- every case runs ---

def test_every_case_runs_and_returns_rgb_uint8(small):
    tiny = small.resize((40, 30))
    for case in (*TABLE1, *TABLE2, *STRONG, *CROPS, *PADDING):
        out = parse(case.spec)(tiny, seed=1)
        assert out.mode == "RGB", case
        assert np.asarray(out).dtype == np.uint8 and np.asarray(out).ndim == 3


def test_attacks_survive_tiny_images():
    for size in ((1, 1), (2, 3), (5, 1)):
        im = flat(90, size)
        for spec in ("MF(9)", "AF(9)", "GF(9)", "SHR(X,0.3)", "TR(Y,0.3)", "RT(30)", "CROP(0.5)", "RS(0.5)", "SA(3)"):
            assert parse(spec)(im).mode == "RGB"


# --- the command line ---

def run(*args):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([*ROBUSTHASH, *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def test_cli_attack_writes_what_the_library_gives(tmp_path, small):
    source = tmp_path / "in.png"
    small.save(source)
    result = run("attack", "rt(30) + gn(0.01)", source, tmp_path / "out.png", "--seed", 5)
    assert result.returncode == 0, result.stderr
    assert "applied RT(30), GN(0.01)" in result.stderr and "seed 5" in result.stderr
    assert np.array_equal(pixels(Image.open(tmp_path / "out.png")), pixels(apply("RT(30)+GN(0.01)", small, 5)))
    strong = run("attack", "SA(3)", source, tmp_path / "strong.jpg", "--seed", 2)
    assert strong.returncode == 0 and "quality 95" in strong.stderr
    drawn = ", ".join(parse("SA(3)").plan(2)) or "nothing"
    assert f"applied {drawn}" in strong.stderr


def test_cli_attack_errors(tmp_path, small):
    source = tmp_path / "in.png"
    small.save(source)
    bad_spec = run("attack", "JC(0)", source, tmp_path / "out.png")
    assert bad_spec.returncode == 2 and "bad attack spec 'JC(0)'" in bad_spec.stderr
    assert not (tmp_path / "out.png").exists()
    missing = run("attack", "JC(50)", tmp_path / "nope.png", tmp_path / "out.png")
    assert missing.returncode == 1 and "nope.png" in missing.stderr
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    broken = run("attack", "JC(50)", tmp_path / "broken.jpg", tmp_path / "out.png")
    assert broken.returncode == 1 and "broken.jpg" in broken.stderr


def test_every_code_is_documented():
    text = (Path(__file__).parents[1] / "docs" / "attacks.md").read_text(encoding="utf-8")
    for code in attacks.CODES:
        assert f"`{code}(" in text or f"`{code}[" in text, code


def test_cli_lists_the_attacks():
    text = run("attacks")
    assert text.returncode == 0
    assert "SHR(axis,factor)" in text.stdout and "table1 (120)" in text.stdout and "unseen (59)" in text.stdout
    records = [json.loads(line) for line in run("attacks", "--format", "jsonl").stdout.splitlines()]
    assert [r["code"] for r in records] == list(attacks.CODES)
    assert sum(len(r["table1"]) for r in records) == 120
