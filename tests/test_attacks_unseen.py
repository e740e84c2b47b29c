"""The unseen suite and the codes beyond CMAA's grids: what each does, seeding, and that
training never sees the suite."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robusthash.attacks import (
    FAMILY_ORDER,
    SUITES,
    TABLE1,
    TABLE2,
    UNSEEN,
    AttackSpecError,
    apply,
    parse,
    suite,
)
from robusthash.attacks import transforms as T
from robusthash.attacks.suites import TABLE1_GRID, UNSEEN_GRID, draw_table1_attack, strong_attack_plan

ROOT = Path(__file__).parents[1]
ROBUSTHASH = [sys.executable, "-m", "robusthash.cli"]
NEW_CODES = ("GREY", "GAMMA", "HUE", "CAST", "LETTERBOX", "AFFINE", "PERSP", "TEXT", "EMOJI", "SCREENSHOT",
             "WEBP", "AVIF", "DOWNUP")
needs_avif = pytest.mark.skipif(not T.avif_available(), reason="this Pillow cannot write AVIF")


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im).astype(np.int64)


def flat(rgb, size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, tuple(rgb))


@pytest.fixture(scope="module")
def small(photos) -> Image.Image:
    """64×48: fast, non-square (catches width/height mix-ups), colourful."""
    return photos["astronaut"].resize((64, 48))


# --- the spec language ---

@pytest.mark.parametrize("spec, canonical", [
    ("grey", "GREY"),
    ("GREY(601)", "GREY"),
    ("grey(avg)", "GREY(AVG)"),
    ("GAMMA(2.0)", "GAMMA(2)"),
    ("hue(-90.0)", "HUE(-90)"),
    ("CAST(Orange,0.25)", "CAST(orange,0.25)"),
    ("CAST(#FF8C00,0.2)", "CAST(#ff8c00,0.2)"),
    ("CAST(#ffa500,0.2)", "CAST(orange,0.2)"),  # a colour with a word is written as the word
    ("PAD(0.15,#808080)", "PAD(0.15,grey)"),  # a grey stays a grey level
    ("PAD(0.1,sepia)", "PAD(0.1,sepia)"),
    ("letterbox(16:9,black)", "LETTERBOX(16:9)"),
    ("LETTERBOX(2.390:1.0,white)", "LETTERBOX(2.39:1,white)"),
    ("TR(x,0.4,WHITE)", "TR(X,0.4,white)"),
    ("TR(X,0.4,0)", "TR(X,0.4)"),
    ("RT(120,#3070C0)", "RT(120,#3070c0)"),
    ("affine(12,0.90,0.05,-0.04,8,black)", "AFFINE(12,0.9,0.05,-0.04,8)"),
    ("PERSP(0.3,white)", "PERSP(0.3,white)"),
    ("text(0.1)", "TEXT(0.1)"),
    ("TEXT(0.1,bottom)", "TEXT(0.1)"),
    ("TEXT(0.1,above)", "TEXT(0.1,ABOVE)"),
    ("EMOJI(3,0.10)", "EMOJI(3,0.1)"),
    ("screenshot(phone)", "SCREENSHOT"),
    ("SCREENSHOT(desktop)", "SCREENSHOT(DESKTOP)"),
    ("webp(75)", "WEBP(75)"),
    ("AVIF(40)", "AVIF(40)"),
    ("DOWNUP(0.50)", "DOWNUP(0.5)"),
    ("GREY+BA(0.5)+JC(60)", "GREY+BA(0.5)+JC(60)"),
])
def test_new_codes_parse_to_canonical_form_and_round_trip(spec, canonical):
    attack = parse(spec)
    assert attack.spec == canonical
    assert parse(canonical) == attack


@pytest.mark.parametrize("spec, problem", [
    ("GREY(602)", "GREY luma must be 601 or 709 or AVG"),
    ("GAMMA(0)", "GAMMA g must be a number > 0"),
    ("HUE(400)", "HUE degrees must be a number >= -360 and <= 360"),
    ("CAST(pink,0.2)", "CAST colour must be black, white, grey"),
    ("CAST(#12345,0.2)", "CAST colour must be"),
    ("CAST(red)", "CAST takes 2 arguments"),
    ("LETTERBOX(16/9)", "LETTERBOX aspect must be W:H"),
    ("LETTERBOX(16:0)", "LETTERBOX aspect must be W:H"),
    ("AFFINE(10,0,0,0,0)", "AFFINE scale must be a number > 0"),
    ("AFFINE(10,1,0,0,85)", "AFFINE shear must be a number >= -80 and <= 80"),
    ("PERSP(1)", "PERSP strength must be a number >= 0 and <= 0.95"),
    ("TEXT(0.1,LEFT)", "TEXT position must be TOP or BOTTOM"),
    ("EMOJI(0,0.1)", "EMOJI n must be an integer from 1 to 50"),
    ("SCREENSHOT(TABLET)", "SCREENSHOT style must be PHONE or DESKTOP"),
    ("WEBP(101)", "WEBP quality must be an integer from 1 to 100"),
    ("DOWNUP(1.5)", "DOWNUP scale must be a number > 0 and <= 1"),
    ("TR(X,0.4,pink)", "TR fill must be black, white, grey"),
])
def test_bad_new_specs_name_the_spec_and_the_problem(spec, problem):
    with pytest.raises(AttackSpecError) as info:
        parse(spec)
    assert str(info.value).startswith(f"bad attack spec {spec!r}: ")
    assert problem in str(info.value)


def test_old_specs_read_as_before():
    # PAD's colour and the new fills accept more, but grey specs keep their values and form.
    assert parse("PAD(0.1,7)").steps[0].args == (0.1, 7)
    assert parse("PAD(0.1,white)").steps[0].args == (0.1, 255)
    assert parse("TR(X,0.1)").spec == "TR(X,0.1)" and parse("RT(30)").spec == "RT(30)"


# --- what each attack measurably does ---

def test_grey_gives_equal_channels_with_the_chosen_luma(small):
    for luma in ("601", "709", "AVG"):
        out = pixels(apply(f"GREY({luma})", small))
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all(), luma
    green = flat((0, 200, 0))
    assert pixels(apply("GREY", green))[0, 0, 0] == round(0.587 * 200)
    assert pixels(apply("GREY(709)", green))[0, 0, 0] == round(0.7152 * 200)
    assert pixels(apply("GREY(AVG)", green))[0, 0, 0] == round(200 / 3)


def test_gamma_darkens_mid_grey_and_keeps_the_extremes():
    assert pixels(apply("GAMMA(2)", flat((128, 128, 128))))[0, 0].tolist() == [64, 64, 64]
    assert pixels(apply("GAMMA(0.5)", flat((64, 64, 64))))[0, 0].tolist() == [round(255 * (64 / 255) ** 0.5)] * 3
    for value in (0, 255):
        assert pixels(apply("GAMMA(2.5)", flat((value,) * 3))).max() == value


def test_hue_shift_rotates_colours_and_keeps_greys():
    red = apply("HUE(120)", flat((255, 0, 0)))
    r, g, b = pixels(red)[0, 0]
    assert g > 240 and r < 15 and b < 15  # red → green
    assert pixels(apply("HUE(-120)", flat((255, 0, 0))))[0, 0].argmax() == 2  # red → blue
    assert pixels(apply("HUE(77)", flat((90, 90, 90)))).tolist() == pixels(flat((90, 90, 90))).tolist()
    assert np.abs(pixels(apply("HUE(360)", flat((200, 60, 30)))) - [200, 60, 30]).max() <= 3


def test_colour_cast_blends_with_the_colour(small):
    out = pixels(apply("CAST(blue,0.25)", small))
    expected = np.rint(pixels(small) * 0.75 + np.array([0, 0, 255]) * 0.25)
    assert np.abs(out - expected).max() <= 1
    assert (out[..., 2] >= pixels(small)[..., 2]).all()


@pytest.mark.parametrize("spec, size", [
    ("LETTERBOX(16:9)", (85, 48)),  # narrower than 16:9: bars left and right
    ("LETTERBOX(9:16,white)", (64, 114)),  # wider than 9:16: bars above and below
    ("LETTERBOX(4:3)", (64, 48)),  # already 4:3: unchanged
])
def test_letterbox_gives_the_aspect_with_the_fill_in_the_bars(small, spec, size):
    out = apply(spec, small)
    assert out.size == size
    values = pixels(out)
    fill = 255 if "white" in spec else 0
    left, top = (size[0] - 64) // 2, (size[1] - 48) // 2
    assert np.array_equal(values[top:top + 48, left:left + 64], pixels(small))
    bars = np.ones(size[::-1], bool)
    bars[top:top + 48, left:left + 64] = False
    assert (values[bars] == fill).all()


def test_translation_and_rotation_fill_with_the_colour(small):
    moved = pixels(apply("TR(X,0.4,#ff8c00)", small))
    shift = round(0.4 * 64)
    assert (moved[:, :shift] == [255, 140, 0]).all()
    assert np.array_equal(moved[:, shift:], pixels(small)[:, :64 - shift])
    assert (pixels(apply("TR(Y,-0.4,white)", small))[-round(0.4 * 48):] == 255).all()
    turned = pixels(apply("RT(120,white)", small))
    assert (turned[0, 0] == 255).all() and (turned[-1, -1] == 255).all()  # corners come from outside


def test_affine_matches_rotation_and_shear(photos):
    im = photos["astronaut"].resize((96, 80))
    rotated = np.abs(pixels(apply("AFFINE(30,1,0,0,0)", im)) - pixels(apply("RT(30)", im)))
    assert rotated.mean() < 1.0
    sheared = np.abs(pixels(apply("AFFINE(0,1,0,0,16.699)", im)) - pixels(apply("SHR(X,0.3)", im)))
    assert sheared.mean() < 1.0  # tan(16.699°) = 0.3
    shifted = pixels(apply("AFFINE(0,1,0.25,0,0,white)", im))
    assert np.array_equal(shifted, pixels(apply("TR(X,0.25,white)", im)))
    smaller = pixels(apply("AFFINE(0,0.5,0,0,0,white)", im))
    assert (smaller[:15] == 255).all() and (smaller[:, :20] == 255).all() and not (smaller[40, 48] == 255).all()


def test_perspective_is_seeded_and_moves_the_corners_inwards(small):
    a, b, c = (pixels(apply("PERSP(0.5,white)", small, seed)) for seed in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert all((a[y, x] == 255).all() for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)))
    # Step i draws from default_rng([seed, i]).
    expected = T.perspective(T.flip(small, "H"), 0.5, np.random.default_rng([4, 1]), 255)
    assert np.array_equal(pixels(apply("FL(H)+PERSP(0.5,white)", small, 4)), pixels(expected))
    assert np.array_equal(pixels(apply("PERSP(0)", small)), pixels(small))


def changed(a: Image.Image, b: Image.Image) -> float:
    return float((pixels(a) != pixels(b)).any(axis=2).mean())


def test_captions_change_a_bounded_band_and_are_seeded(photos):
    im = photos["astronaut"].resize((128, 96))
    top, bottom = apply("TEXT(0.1,TOP)", im, 3), apply("TEXT(0.1,BOTTOM)", im, 3)
    assert 0.01 < changed(top, im) < 0.2
    rows = np.flatnonzero((pixels(top) != pixels(im)).any(axis=(1, 2)))
    assert rows.max() < 96 * 0.3  # only the top band
    rows = np.flatnonzero((pixels(bottom) != pixels(im)).any(axis=(1, 2)))
    assert rows.min() > 96 * 0.7
    assert np.array_equal(pixels(top), pixels(apply("TEXT(0.1,TOP)", im, 3)))
    assert not np.array_equal(pixels(top), pixels(apply("TEXT(0.1,TOP)", im, 4)))  # other words
    above = apply("TEXT(0.12,ABOVE)", im, 3)
    bar = round(1.6 * round(0.12 * 96))
    assert above.size == (128, 96 + bar) and np.array_equal(pixels(above)[bar:], pixels(im))
    assert (pixels(above)[:bar] < 128).any() and (pixels(above)[:bar] == 255).mean() > 0.5


def test_stickers_cover_at_most_their_area_and_are_seeded(photos):
    im = photos["astronaut"].resize((128, 96))
    one = apply("EMOJI(1,0.3)", im, 5)
    d = round(0.3 * 96)
    assert 0.2 * d * d / (128 * 96) < changed(one, im) <= d * d / (128 * 96)
    many = apply("EMOJI(5,0.12)", im, 5)
    assert changed(many, im) <= 5 * round(0.12 * 96) ** 2 / (128 * 96)
    assert np.array_equal(pixels(many), pixels(apply("EMOJI(5,0.12)", im, 5)))
    assert not np.array_equal(pixels(many), pixels(apply("EMOJI(5,0.12)", im, 6)))


@pytest.mark.parametrize("style, aspect", [("PHONE", 19.5 / 9), ("DESKTOP", 10 / 16)])
def test_screenshot_frames_the_scaled_picture(small, style, aspect):
    out = apply(f"SCREENSHOT({style})", small)
    assert abs(out.height / out.width - aspect) < 0.05
    assert out.width * out.height > 2 * 64 * 48  # the frame adds a lot around the picture
    assert np.array_equal(pixels(out), pixels(apply(f"SCREENSHOT({style})", small)))  # deterministic
    assert pixels(out)[0, 0].tolist() != pixels(out)[out.height // 2, 0].tolist()  # a bar at the top


@pytest.mark.parametrize("spec", ["WEBP(50)", pytest.param("AVIF(50)", marks=needs_avif)])
def test_reencoding_differs_but_is_close(photos, spec):
    im = photos["astronaut"].resize((96, 80))
    out = apply(spec, im)
    assert out.size == im.size and not np.array_equal(pixels(out), pixels(im))
    assert np.abs(pixels(out) - pixels(im)).mean() < 12
    worse = apply(spec.replace("50", "5"), im)
    assert np.abs(pixels(worse) - pixels(im)).mean() > np.abs(pixels(out) - pixels(im)).mean()


def test_avif_says_what_it_needs_when_pillow_cannot(monkeypatch, small):
    monkeypatch.setattr(T, "avif_available", lambda: False)
    with pytest.raises(RuntimeError, match="Pillow >= 11.3"):
        apply("AVIF(50)", small)


def test_down_up_keeps_the_size_and_loses_detail(photos):
    im = photos["astronaut"].resize((96, 80))
    mild, strong = apply("DOWNUP(0.5)", im), apply("DOWNUP(0.2)", im)
    assert mild.size == strong.size == im.size
    error = [np.abs(pixels(x) - pixels(im)).mean() for x in (mild, strong)]
    assert 0 < error[0] < error[1]
    assert np.array_equal(pixels(apply("DOWNUP(1)", im)), pixels(im))


def test_posterise_to_two_bits_leaves_four_levels(small):
    assert set(np.unique(pixels(apply("PT(2)", small)))) <= {0, 64, 128, 192}


# --- the unseen suite ---

def test_unseen_suite_is_named_and_kept_out_of_all():
    assert suite("unseen") == UNSEEN == SUITES["unseen"]
    assert 40 <= len(UNSEEN) <= 60
    assert not set(UNSEEN) & set(suite("all"))
    assert len({c.spec for c in UNSEEN}) == len(UNSEEN)
    assert all(parse(c.spec).spec == c.spec for c in UNSEEN)  # canonical


def test_unseen_families_are_new_and_ordered():
    families = list(UNSEEN_GRID)
    assert all(len(UNSEEN_GRID[f]) >= 2 for f in families)
    old = {c.family for c in suite("all")}
    assert not set(families) & old  # results never merge with a grid family
    assert FAMILY_ORDER[-len(families):] == tuple(families)
    chains = [parse(spec) for spec in UNSEEN_GRID["CHAIN"]]
    assert all(3 <= len(a.steps) <= 4 for a in chains)


def test_unseen_cases_are_outside_the_grids():
    grid = {c.spec for c in (*TABLE1, *TABLE2)}
    steps_in_grid = {spec for specs in TABLE1_GRID.values() for spec in specs}
    for case in UNSEEN:
        assert case.spec not in grid, case
        steps = parse(case.spec).steps
        if len(steps) == 1:
            assert steps[0].spec not in steps_in_grid, case  # a single step is off the grid
    codes = {step.code for case in UNSEEN for step in parse(case.spec).steps}
    assert set(NEW_CODES) <= codes  # every new family is measured
    # What the goals ask to be measured, each on its own.
    for spec in ("GREY", "BA(0.5)", "PAD(0.15)", "TR(X,0.4)", "PT(2)", "RT(100)", "RT(120)"):
        assert spec in {c.spec for c in UNSEEN}, spec


def test_every_unseen_case_runs_on_a_small_image(small):
    for case in UNSEEN:
        if "AVIF" in case.spec and not T.avif_available():
            continue
        out = parse(case.spec)(small, seed=1)
        assert out.mode == "RGB" and np.asarray(out).dtype == np.uint8, case
        assert not np.array_equal(pixels(out.resize(small.size)), pixels(small)) or out.size != small.size, case


def test_unseen_cases_are_deterministic(small):
    for case in UNSEEN:
        if "AVIF" in case.spec and not T.avif_available():
            continue
        attack = parse(case.spec)
        assert np.array_equal(pixels(attack(small, seed=9)), pixels(attack(small, seed=9))), case


# What the wide training views (models.views, issue 24) leave out on purpose, so that
# part of the unseen suite stays new to every model: codes and the functions behind them.
HELD_OUT_CODES = ("PERSP", "TEXT", "SCREENSHOT", "WEBP", "AVIF", "HUE")
HELD_OUT_FUNCTIONS = ("perspective", "caption", "screenshot", "webp", "avif", "hue_shift")


def code_of(path: Path) -> tuple[set[str], list[str]]:
    """The names a module uses (variables, attributes, imports) and its string constants,
    docstrings left out: prose may say what is held out, code may not use it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    names, strings = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names |= {node.name.rsplit(".", 1)[-1], node.asname or ""}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            strings.append(node.value)
    return names, strings


def test_training_never_draws_the_unseen_suite(monkeypatch):
    from robusthash.models import views

    rng = np.random.default_rng(0)
    table1 = {c.spec for c in TABLE1}
    drawn = {draw_table1_attack(rng) for _ in range(3000)}
    drawn |= {spec for _ in range(300) for spec in strong_attack_plan(rng)}
    assert drawn == table1  # training's attacks are Table 1's, all of them and nothing else
    # The table1 views (the shipped model's) parse Table 1 specs only.
    parsed = []
    monkeypatch.setattr(views, "parse", lambda spec: parsed.append(spec) or parse(spec))
    original = Image.new("RGB", (32, 32), (90, 120, 150))
    for seed in range(200):
        views.three_views(original, np.random.default_rng(seed))
    assert parsed and set(parsed) <= table1
    # No training module names the suite, and none uses a held-out family (code or function).
    held_out = re.compile(r"\b(" + "|".join(HELD_OUT_CODES + HELD_OUT_FUNCTIONS) + r")\b")
    for path in (ROOT / "src" / "robusthash" / "models").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.findall(r"UNSEEN|unseen", text), path.name
        names, strings = code_of(path)
        assert not names & {"UNSEEN", "UNSEEN_GRID", *HELD_OUT_FUNCTIONS}, (path.name, names & set(HELD_OUT_FUNCTIONS))
        found = [s for s in strings if held_out.search(s)]
        assert not found, (path.name, found)


def test_the_isolation_check_sees_held_out_code(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text('"""Leaves out perspective."""\nfrom x import T\nop = T.webp\nspec = "PERSP(0.2)"\n')
    names, strings = code_of(sneaky)
    assert "webp" in names and "perspective" not in names and "PERSP(0.2)" in strings


# --- documentation and the command line ---

def test_new_codes_and_the_suite_are_documented():
    text = (ROOT / "docs" / "attacks.md").read_text(encoding="utf-8")
    for code in NEW_CODES:
        assert f"`{code}(" in text or f"`{code}[" in text, code
    section = text[text.index("## Unseen suite"):]
    for case in UNSEEN:
        assert f"`{case.spec}`" in section, case.spec


def run(*args):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([*ROBUSTHASH, *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def test_cli_lists_the_unseen_suite_and_applies_new_codes(tmp_path, small):
    listing = run("attacks")
    assert listing.returncode == 0 and "unseen (59)" in listing.stdout
    assert "LETTERBOX(aspect,[colour])" in listing.stdout
    assert "PERSP, TEXT, EMOJI" in listing.stdout
    jsonl = run("attacks", "--suite", "unseen", "--format", "jsonl").stdout
    records = [json.loads(line) for line in jsonl.splitlines()]
    assert [(r["family"], r["spec"]) for r in records] == [(c.family, c.spec) for c in UNSEEN]
    assert run("attacks", "--suite", "nope").returncode == 2
    source = tmp_path / "in.png"
    small.save(source)
    result = run("attack", "grey+jc(70)", source, tmp_path / "out.png")
    assert result.returncode == 0 and "applied GREY, JC(70)" in result.stderr
    assert np.array_equal(pixels(Image.open(tmp_path / "out.png")), pixels(apply("GREY+JC(70)", small)))
