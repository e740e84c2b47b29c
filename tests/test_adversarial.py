"""Realisable adversarial attacks (ARIA): the differentiable file path, PGD's budgets,
and success read from the shipped hasher on the saved file."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from robusthash import get_hasher  # noqa: E402
from robusthash.attacks import adversarial as adv  # noqa: E402
from robusthash.cli import app  # noqa: E402
from robusthash.runtime import preprocess  # noqa: E402


@pytest.fixture(scope="module")
def fingerprint():
    torch.set_num_threads(1)
    return adv.shipped_fingerprint()


@pytest.fixture(scope="module")
def small(photos):
    return photos["astronaut"].resize((160, 160), Image.Resampling.LANCZOS)


def test_quantisation_tables_follow_libjpeg():
    luma, chroma = adv.quant_tables(50)
    assert torch.equal(luma, torch.from_numpy(adv.LUMA_TABLE)) and chroma[0, 0] == 17 and chroma[7, 7] == 99
    assert (adv.quant_tables(100)[0] == 1).all()
    assert adv.quant_tables(90)[0][0, 0] == 3  # floor((16 · 20 + 50) / 100)
    with pytest.raises(ValueError, match="quality"):
        adv.quant_tables(0)


def test_differentiable_jpeg_is_close_to_pillows_and_passes_gradients(photos):
    im = photos["astronaut"]
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=90, subsampling=2)
    real = np.asarray(Image.open(buffer), dtype=float)
    x = adv.to_tensor(im).requires_grad_(True)
    modelled = adv.differentiable_jpeg(x, 90)
    mine = modelled.detach()[0].numpy().transpose(1, 2, 0) * 255
    original = np.asarray(im, dtype=float)
    assert np.abs(mine - real).mean() < 1.0 < np.abs(real - original).mean()  # JPEG's own error is larger
    (grad,) = torch.autograd.grad(modelled.sum(), x)
    assert 0.9 < grad.mean() < 1.1  # rounding passes its gradient straight through


def test_the_model_input_in_torch_is_the_hashers(photos):
    im = photos["coffee"]
    ours = adv.model_input(adv.to_tensor(im), 96)[0].numpy()
    assert np.abs(ours - preprocess(im, 96)).max() < 0.05


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_within_its_budget_and_the_image(norm):
    x = torch.rand(1, 3, 40, 50)
    config = adv.PGDConfig(norm=norm, eps=8 / 255 if norm == "linf" else 0.5, steps=5, jpeg_quality=None)
    target = torch.rand(1, 3, 40, 50)
    result = adv.pgd(lambda p: ((p - target) ** 2).sum(), x, config)
    delta = result - x
    if norm == "linf":
        assert delta.abs().max() <= 8 / 255 + 1e-6
    else:
        assert delta.norm() <= adv.l2_radius(0.5, x.shape) + 1e-5
    assert 0 <= result.min() and result.max() <= 1
    assert ((result - target) ** 2).sum() < ((x - target) ** 2).sum()  # it minimised


def test_pgd_checks_its_configuration():
    with pytest.raises(ValueError, match="norm"):
        adv.PGDConfig(norm="l1")
    with pytest.raises(ValueError, match="eps"):
        adv.PGDConfig(eps=0)


def test_an_untargeted_attack_moves_the_saved_files_hash(fingerprint, small, tmp_path):
    cmaa = get_hasher("cmaa")
    clean, attacked = tmp_path / "clean.jpg", tmp_path / "attacked.jpg"
    small.save(clean, quality=90, subsampling=2)
    x = adv.to_tensor(small)
    result = adv.untargeted(fingerprint, x, adv.PGDConfig(steps=10))
    assert (result - x).abs().max() <= 8 / 255 + 1e-6
    adv.save(result, attacked)
    original = cmaa.hash_pil(small)
    assert cmaa.hash(attacked) - original >= cmaa.hash(clean) - original + 12


def test_a_targeted_attack_pulls_towards_the_target(fingerprint, small, photos):
    target = photos["coffee"].resize((160, 107))
    x, wanted = adv.to_tensor(small), adv.to_tensor(target)
    result = adv.targeted(fingerprint, x, wanted, adv.PGDConfig(steps=10))
    with torch.no_grad():
        goal = adv.median_signs(fingerprint(wanted))
        before = int((adv.median_signs(fingerprint(x)) != goal).sum())
        after = int((adv.median_signs(fingerprint(result)) != goal).sum())
    assert after <= before - 8


def test_inversion_starts_grey_and_moves_towards_the_hash(fingerprint, small):
    x = adv.to_tensor(small)
    with torch.no_grad():
        goal = adv.median_signs(fingerprint(x))
        grey = adv.median_signs(fingerprint(torch.full((1, 3, 96, 96), 0.5)))
    guess, taken = adv.invert(fingerprint, x, steps=15)
    with torch.no_grad():
        reached = adv.median_signs(fingerprint(guess))
    assert taken == 15 and guess.shape == (1, 3, 96, 96)
    assert (reached != goal).sum() < (grey != goal).sum()


def test_the_cli_reports_what_the_hasher_says_about_the_saved_file(small, tmp_path):
    source = tmp_path / "in.png"
    small.save(source)
    runner = CliRunner()
    result = runner.invoke(app, ["attack-adv", str(source), str(tmp_path / "out.jpg"), "--steps", "5",
                                 "--format", "jsonl", "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert record["attack"] == "untargeted" and record["linf_255"] <= 8.0 + 1e-3
    assert record["distance_to_source"] == get_hasher("cmaa").hash(tmp_path / "out.jpg") - get_hasher("cmaa").hash(source)
    for args, message in ((["-m", "pdq"], "no white-box model"), (["--eps", "8/0"], "fraction"),
                          (["--norm", "l1"], "linf or l2")):
        bad = runner.invoke(app, ["attack-adv", str(source), str(tmp_path / "x.jpg"), *args])
        assert bad.exit_code == 2 and message in bad.output
    missing = runner.invoke(app, ["attack-adv", str(tmp_path / "nope.png"), str(tmp_path / "x.jpg")])
    assert missing.exit_code == 1 and "nope.png" in missing.output


@pytest.mark.parametrize("method", ["phash", "pdq", "blockhash", "forbild"])
def test_surrogates_agree_with_the_real_hashers(photos, method):
    from robusthash.attacks.surrogates import surrogate_bits

    hasher = get_hasher(method)
    agreement = [float((surrogate_bits(method, im) == hasher.hash_pil(im).bits).mean())
                 for name, im in photos.items() if name != "camera"]
    assert min(agreement) >= 0.9  # pdq's tent filter is approximated: 0.95–0.97; the others are exact or nearly


def test_the_black_box_attack_queries_the_real_hash_until_it_escapes(photos):
    from robusthash.attacks.surrogates import SurrogateConfig, surrogate_attack

    coffee = photos["coffee"].resize((300, 200))
    pdq = get_hasher("pdq")
    original = pdq.hash_pil(coffee)
    calls = []

    def counted(im):
        calls.append(im)
        return pdq.hash_pil(im)

    found = surrogate_attack("pdq", counted, coffee, original, 31, config=SurrogateConfig(queries=30))
    assert found.success and found.distance > 31 and found.queries == len(calls)
    assert pdq.hash_pil(found.image) - original == found.distance  # what was queried is the published file
    pixels = np.asarray(found.image, dtype=float) - np.asarray(coffee, dtype=float)
    assert np.abs(pixels).mean() < 8  # within ε = 8 levels, plus JPEG's own loss
    with pytest.raises(ValueError, match="no surrogate"):
        surrogate_attack("cmaa", counted, coffee, original, 31)


def test_the_adversarial_bench_runs_end_to_end(tmp_path, photos):
    from robusthash.evaluation.adversarial_report import AdversarialBenchConfig, run, write_markdown

    corpus = tmp_path / "corpus"
    (corpus / "photos").mkdir(parents=True)
    names = []
    for name, im in photos.items():
        im.resize((128, 96)).save(corpus / "photos" / f"{name}.jpg")
        names.append(f"photos/{name}.jpg")
    (corpus / "test.txt").write_text("\n".join(names[:4]))
    (corpus / "train.txt").write_text("\n".join(names[4:]))
    config = AdversarialBenchConfig(originals_list=corpus / "test.txt", originals=2, methods=("cmaa", "phash"),
                                    steps=3, queries=3, unseen=(("l2", 0.5),), unseen_queries=1, targeted_queries=1,
                                    distractor_lists=(corpus / "train.txt",))
    result = run(config, progress=lambda line: None)
    for method in ("cmaa", "phash"):
        row = result["methods"][method]
        assert 0 <= row["adversarial"]["recall@1"] <= row["adversarial"]["recall@10"] <= 1
        assert 0 <= row["attack"]["success"] <= 1
    assert result["methods"]["phash"]["attack"]["mean_queries"] <= 3
    assert "l2 0.5" in result["methods"]["cmaa"]["unseen"]
    for method in ("cmaa", "phash"):
        targeted = result["methods"][method]["targeted"]
        assert targeted["queries"] == 1 and 0 <= targeted["success"] <= 1 and 0 <= targeted["hijacked"] <= 1
    write_markdown(result, tmp_path, "cmd")
    report = (tmp_path / "report.md").read_text()
    assert "| cmaa | white-box PGD |" in report and "## Targeted attacks" in report


def test_recall_counts_ties_against_the_original():
    from robusthash.evaluation.adversarial_report import recall
    from robusthash.hashing.value import Hash

    def h(bits):
        return Hash.from_bits(bits, "t", "1")

    references = [h([0] * 8), h([1] * 8), h([0] * 7 + [1])]
    queries = [h([0] * 8), h([0] * 7 + [1])]
    # query 0 is its original exactly; query 1 sits 1 bit from original 0 and 0 from reference 2
    assert recall(queries, references, [0, 0], ks=(1, 2)) == {"recall@1": 0.5, "recall@2": 1.0}


def test_bench_adversarial_checks_its_inputs(tmp_path):
    runner = CliRunner()
    listed = tmp_path / "originals.txt"
    listed.write_text("a.jpg\n")
    folder = runner.invoke(app, ["bench", "--adversarial", "--images", str(tmp_path), "--out", str(tmp_path / "o")])
    assert folder.exit_code == 2 and "one .txt list" in folder.output
    methods = runner.invoke(app, ["bench", "--adversarial", "--images", str(listed), "--methods", "dhash",
                                  "--out", str(tmp_path / "o")])
    assert methods.exit_code == 2 and "no adversarial attack for dhash" in methods.output


def test_the_black_box_attack_can_spend_its_whole_budget(photos):
    from robusthash.attacks.surrogates import SurrogateConfig, surrogate_attack

    coffee = photos["coffee"].resize((300, 200))
    phash = get_hasher("phash")
    original = phash.hash_pil(coffee)
    stopped = surrogate_attack("phash", phash.hash_pil, coffee, original, 0, config=SurrogateConfig(queries=20))
    full = surrogate_attack("phash", phash.hash_pil, coffee, original, 0,
                            config=SurrogateConfig(queries=20, stop_at_success=False))
    assert stopped.success and full.success and stopped.queries == full.queries  # the first query past τ
    assert full.distance >= stopped.distance and full.distance > 4  # it went on pushing


def test_the_inversion_sheet_is_written(tmp_path, photos):
    from robusthash.evaluation.inversions import main

    (tmp_path / "photos").mkdir()
    photos["coffee"].resize((120, 80)).save(tmp_path / "photos" / "coffee.jpg")
    (tmp_path / "test.txt").write_text("photos/coffee.jpg\n")
    main(["--corpus", str(tmp_path), "--out", str(tmp_path / "sheet.png"), "--photos", "1", "--methods", "cmaa",
          "--steps", "3"])
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.size == (2 * 192, 192 + 32)
    record = json.loads((tmp_path / "sheet.json").read_text())
    assert record == [{"photo": 0, "method": "cmaa", "steps": record[0]["steps"], "bits_off": record[0]["bits_off"]}]
    assert record[0]["steps"] <= 3
