"""CMAA training: a resumed run equals an uninterrupted one; logs; split guard."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from robusthash.models.train import TrainConfig, read_training_list, train  # noqa: E402
from robusthash.models.views import ViewConfig  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("train")
    paths = []
    for name, im in photos.items():
        path = root / f"{name}.jpg"
        im.resize((96, 96)).save(path)
        paths.append(path)
    cutout = Image.new("RGBA", (30, 30), (0, 0, 0, 0))
    cutout.paste((255, 200, 0, 255), (5, 5, 25, 25))
    cutout.save(root / "object.png")
    return paths, [root / "object.png"]


CONFIG = TrainConfig(model="tiny", steps=4, batch_size=4, checkpoint_every=2, log_every=1, loader_workers=0,
                     views=ViewConfig(work_size=48))


class Interrupted(Exception):
    pass


def stop_after(step_limit):
    def progress(step, total, record):
        if step == step_limit:
            raise Interrupted

    return progress


def test_a_resumed_run_equals_an_uninterrupted_one(data, tmp_path):
    photos, cutouts = data
    straight = train(photos, cutouts, tmp_path / "straight", CONFIG)
    with pytest.raises(Interrupted):
        # Interrupted in step 3, after the step-2 checkpoint: the run resumes from step 2.
        train(photos, cutouts, tmp_path / "resumed", CONFIG, progress=stop_after(3))
    resumed = train(photos, cutouts, tmp_path / "resumed", CONFIG)
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    log = (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4 and '"contrastive"' in log[0]


def test_a_run_stopped_at_a_step_resumes_on_its_schedule(data, tmp_path):
    photos, cutouts = data
    straight = train(photos, cutouts, tmp_path / "straight", CONFIG)
    train(photos, cutouts, tmp_path / "stopped", CONFIG, stop_at=3)
    assert "\"step\": 3" in (tmp_path / "stopped" / "checkpoint.json").read_text()
    train(photos, cutouts, tmp_path / "stopped", CONFIG, stop_at=3)  # run again: already there
    assert "\"step\": 3" in (tmp_path / "stopped" / "checkpoint.json").read_text()
    resumed = train(photos, cutouts, tmp_path / "stopped", CONFIG)
    a, b = load_file(straight), load_file(resumed)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


def test_another_configuration_does_not_resume_silently(data, tmp_path):
    photos, cutouts = data
    train(photos, cutouts, tmp_path / "run", CONFIG)
    with pytest.raises(ValueError, match="another configuration"):
        train(photos, cutouts, tmp_path / "run", TrainConfig(**{**CONFIG.__dict__, "lr": 0.5}))


def test_the_test_split_is_refused(tmp_path):
    (tmp_path / "test.txt").write_text("photos/a.jpg\n")
    with pytest.raises(ValueError, match="test split"):
        read_training_list(tmp_path / "test.txt")
    (tmp_path / "train.txt").write_text("photos/a.jpg\n\n")
    assert read_training_list(tmp_path / "train.txt") == [tmp_path / "photos" / "a.jpg"]


def test_training_leaves_out_the_validation_share(tmp_path, capsys):
    from robusthash.synth.corpus import Corpus, validation_share

    names = [f"extra/photo{i:03d}.jpg" for i in range(40)]
    (tmp_path / "extra_train.txt").write_text("".join(f"{n}\n" for n in names))
    everything = read_training_list(tmp_path / "extra_train.txt")
    assert len(everything) == 40  # no validation list written: every photo trains
    Corpus(tmp_path).write_validation_list()
    with pytest.raises(ValueError, match="validation share"):
        read_training_list(tmp_path / "validation.txt")
    kept = read_training_list(tmp_path / "extra_train.txt")
    assert kept == [tmp_path / n for n in names if not validation_share(n)] and len(kept) < 40
    assert "validation share left out" in capsys.readouterr().err


def test_cli_trains_and_refuses_the_test_split(data, tmp_path):
    import subprocess
    import sys

    photos, cutouts = data
    (tmp_path / "test.txt").write_text("a.jpg\n")
    listing, more = photos[0].parent / "train.txt", photos[0].parent / "extra_train.txt"
    listing.write_text("".join(f"{p.name}\n" for p in photos[1:]))
    more.write_text(f"{photos[0].name}\n")
    run = subprocess.run([sys.executable, "-m", "robusthash.cli", "train", "cmaa", "--data", str(listing),
                          "--data", str(more), "--objects", str(cutouts[0].parent), "--out", str(tmp_path / "run"), "--model", "tiny",
                          "--steps", "2", "--batch-size", "4", "--loader-workers", "0"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "checkpoint.safetensors").exists() and "wrote" in run.stdout
    assert f"{len(photos)} photos" in run.stderr  # both lists

    exported = subprocess.run([sys.executable, "-m", "robusthash.cli", "export", str(tmp_path / "run"),
                               "--out", str(tmp_path / "m.onnx"), "--weights", str(tmp_path / "w.safetensors"),
                               "--calibrate", str(listing)], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    from robusthash.hashing.learned import OnnxHasher
    from robusthash.models.export import load_trained, load_weights

    hasher = OnnxHasher(tmp_path / "m.onnx")
    assert hasher.provenance["step"] == 2 and "train-split" in hasher.threshold_source
    assert not (tmp_path / "m.fp32.onnx").exists()  # the int8 file replaces the float one
    trained, _ = load_trained(tmp_path / "run")
    shipped = load_weights(tmp_path / "w.safetensors")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(trained.encoder(x), shipped.encoder(x), atol=0.02)  # float16 weights
    refused_split = subprocess.run([sys.executable, "-m", "robusthash.cli", "export", str(tmp_path / "run"),
                                    "--out", str(tmp_path / "n.onnx"), "--calibrate", str(tmp_path / "test.txt")],
                                   capture_output=True, text=True, timeout=120)
    assert refused_split.returncode == 2 and "test split" in refused_split.stderr
    refused = subprocess.run([sys.executable, "-m", "robusthash.cli", "train", "cmaa", "--data",
                              str(tmp_path / "test.txt"), "--out", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "test split" in refused.stderr


def test_aria_perturbations_stay_in_budget_and_raise_the_contrastive_loss():
    from robusthash.models.aria import AriaConfig, perturb_views, to_pixels
    from robusthash.models.cmaa import CMAA, CONFIGS

    torch.manual_seed(0)
    model = CMAA(CONFIGS["tiny"]).train()
    size = model.config.img_size
    views = [torch.randn(4, 3, size, size) * 0.5 for _ in range(3)]
    config = AriaConfig(eps=8 / 255, steps=3, step_size=4 / 255)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    v1, v2 = perturb_views(model, *views, config, torch.Generator().manual_seed(0))
    assert model.training  # restored
    for key, value in model.state_dict().items():  # the attack moved no weight and no BatchNorm statistic
        assert torch.equal(value, before[key]), key
    for clean, attacked in ((views[0], v1), (views[1], v2)):
        delta = to_pixels(attacked) - to_pixels(clean).clamp(0, 1)
        assert delta.abs().max() <= 8 / 255 + 1e-5
    model.eval()
    with torch.no_grad():
        u3 = model.momentum_encoder(views[2])
        clean_loss = model.contrastive_loss(model.encoder(views[1]), u3)
        attacked_loss = model.contrastive_loss(model.encoder(v2), u3)
    assert attacked_loss > clean_loss
    with pytest.raises(ValueError):
        AriaConfig(steps=0)


def test_aria_fine_tunes_from_saved_weights_and_resumes(data, tmp_path):
    from robusthash.models.aria import AriaConfig
    from robusthash.models.cmaa import CMAA, CONFIGS
    from robusthash.models.export import load_weights, save_weights

    photos, cutouts = data
    torch.manual_seed(1)
    start = save_weights(CMAA(CONFIGS["tiny"]), tmp_path / "start.safetensors")
    config = TrainConfig(**{**CONFIG.__dict__, "init": str(start), "adversarial": AriaConfig(steps=2)})
    straight = train(photos, cutouts, tmp_path / "straight", config)
    with pytest.raises(Interrupted):
        train(photos, cutouts, tmp_path / "resumed", config, progress=stop_after(2))
    resumed = train(photos, cutouts, tmp_path / "resumed", config)
    a, b = load_file(straight), load_file(resumed)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    # it started from the saved weights: the first logged step's weights are near them, not a fresh init
    plain = train(photos, cutouts, tmp_path / "plain", TrainConfig(**{**CONFIG.__dict__, "init": str(start)}))
    assert not torch.allclose(load_file(plain)["model.encoder.patch_embed.weight"],
                              a["model.encoder.patch_embed.weight"])  # the adversarial views changed training
    initial = load_weights(start).encoder.patch_embed.weight
    assert (a["model.encoder.patch_embed.weight"] - initial).abs().max() < 0.05
    other = CMAA(CONFIGS["small"])
    save_weights(other, tmp_path / "small.safetensors")
    with pytest.raises(ValueError, match="another configuration"):
        train(photos, cutouts, tmp_path / "mismatch",
              TrainConfig(**{**CONFIG.__dict__, "init": str(tmp_path / "small.safetensors")}))


def test_a_checkpoint_from_before_the_augment_option_resumes_as_table1(data, tmp_path):
    import json

    photos, cutouts = data
    with pytest.raises(Interrupted):
        train(photos, cutouts, tmp_path / "run", CONFIG, progress=stop_after(3))  # saved at step 2
    meta_path = tmp_path / "run" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    for key in ("augment", "wide"):  # what checkpoint.json held before issue 24
        del meta["train"]["views"][key]
    meta_path.write_text(json.dumps(meta))
    wide = TrainConfig(**{**CONFIG.__dict__, "views": ViewConfig(work_size=48, augment="wide")})
    with pytest.raises(ValueError, match="another configuration"):
        train(photos, cutouts, tmp_path / "run", wide)
    train(photos, cutouts, tmp_path / "run", CONFIG)
    assert json.loads(meta_path.read_text())["step"] == 4


def test_wide_samples_are_fixed_by_seed_and_number(data):
    from robusthash.models.train import TrainingSamples

    photos, cutouts = data
    config = TrainConfig(**{**CONFIG.__dict__, "views": ViewConfig(work_size=48, augment="wide")})
    samples = TrainingSamples(photos, cutouts, 32, config)
    for k in range(8):  # some of these draw cutmix or mixup from another photo
        again = TrainingSamples(photos, cutouts, 32, config)[k]
        for a, b in zip(samples[k], again):
            assert a.shape == (3, 32, 32) and torch.equal(a, b)
    table1 = TrainingSamples(photos, cutouts, 32, CONFIG)[0]
    assert not all(torch.equal(a, b) for a, b in zip(samples[0], table1))


def test_cli_checks_the_augment_option(tmp_path):
    import subprocess
    import sys

    (tmp_path / "train.txt").write_text("a.jpg\n")
    run = subprocess.run([sys.executable, "-m", "robusthash.cli", "train", "cmaa", "--data",
                          str(tmp_path / "train.txt"), "--out", str(tmp_path / "run"), "--augment", "sscd"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "table1, wide" in run.stderr
    missing = subprocess.run([sys.executable, "-m", "robusthash.cli", "train", "cmaa", "--data",
                              str(tmp_path / "train.txt"), "--out", str(tmp_path / "run"), "--init",
                              str(tmp_path / "none.safetensors")], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "COLUMNS": "300"})
    assert missing.returncode == 2 and "none.safetensors: no such weights file" in missing.stderr


def test_the_koleo_term_spreads_features_and_fine_tunes_from_weights_without_it(data, tmp_path):
    import json

    from robusthash.models.cmaa import CMAA, CONFIGS
    from robusthash.models.export import save_weights

    model = CMAA(CONFIGS["tiny"])
    together = torch.zeros(6, 16) + torch.randn(6, 16) * 0.01  # nearly one point
    apart = torch.eye(16)[:6]
    assert model.entropy_loss(together) > model.entropy_loss(apart)
    photos, cutouts = data
    start = save_weights(CMAA(CONFIGS["tiny"]), tmp_path / "start.safetensors")  # trained without it
    config = TrainConfig(**{**CONFIG.__dict__, "init": str(start), "koleo": 2.0})
    train(photos, cutouts, tmp_path / "run", config)
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert first["total"] == pytest.approx(first["contrastive"] + first["alignment"] + first["reconstruction"]
                                           + first["quantization"] + 2.0 * first["entropy"], rel=1e-4)


def test_the_anchor_term_pulls_views_to_the_teachers_hash_of_their_original(data, tmp_path):
    import json

    from robusthash.models.cmaa import CMAA, CONFIGS
    from robusthash.models.export import save_weights

    model = CMAA(CONFIGS["tiny"])
    codes = torch.sign(torch.randn(6, 16))
    assert model.anchor_loss(codes, codes * 3) < 1e-6 < model.anchor_loss(codes, codes.roll(1, dims=0) * 3)
    with pytest.raises(ValueError, match="needs --init"):
        TrainConfig(**{**CONFIG.__dict__, "anchor": 1.0}).model_config()
    photos, cutouts = data
    start = save_weights(CMAA(CONFIGS["tiny"]), tmp_path / "start.safetensors")
    config = TrainConfig(**{**CONFIG.__dict__, "init": str(start), "anchor": 0.5})
    train(photos, cutouts, tmp_path / "run", config)
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert first["anchor"] > 0
    assert first["total"] == pytest.approx(first["contrastive"] + first["alignment"] + first["reconstruction"]
                                           + first["quantization"] + 0.5 * first["anchor"], rel=1e-4)


def test_a_model_is_fine_tuned_to_another_tone_rule_its_teacher_seeing_colours(data, tmp_path):
    import json

    from robusthash.models.cmaa import CMAA, CONFIGS
    from robusthash.models.export import load_weights, save_weights
    from robusthash.models.train import TrainingSamples
    from robusthash.runtime import MEAN, STD

    photos, cutouts = data
    start = save_weights(CMAA(CONFIGS["tiny"]), tmp_path / "start.safetensors")  # an rgb model
    config = TrainConfig(**{**CONFIG.__dict__, "init": str(start), "anchor": 0.5, "tone": "stretched-grey"})
    samples = TrainingSamples(photos, cutouts, 32, config, teacher_tone="rgb")
    *views, original = (t.numpy() * STD[:, None, None] + MEAN[:, None, None] for t in samples[0])
    for view in views:  # the student sees one grey picture in its three channels
        assert np.abs(view[0] - view[2]).max() < 1e-5
    assert np.abs(original[0] - original[2]).max() > 0.05  # the teacher, its colours
    train(photos, cutouts, tmp_path / "run", config)  # from an rgb model: the network is the same
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["model"]["tone"] == "stretched-grey"
    with pytest.raises(ValueError, match="tone rule"):
        TrainConfig(**{**CONFIG.__dict__, "tone": "sepia"}).model_config()
    assert load_weights(start).config.tone == "rgb"
