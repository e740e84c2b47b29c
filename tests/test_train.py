"""CMAA training: a resumed run equals an uninterrupted one; logs; split guard."""

from __future__ import annotations

from pathlib import Path

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
        train(photos, cutouts, tmp_path / "resumed", CONFIG, progress=stop_after(2))
    resumed = train(photos, cutouts, tmp_path / "resumed", CONFIG)
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    log = (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4 and '"contrastive"' in log[0]


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


def test_cli_trains_and_refuses_the_test_split(data, tmp_path):
    import subprocess
    import sys

    photos, cutouts = data
    (tmp_path / "test.txt").write_text("a.jpg\n")
    listing = photos[0].parent / "train.txt"
    listing.write_text("".join(f"{p.name}\n" for p in photos))
    run = subprocess.run([sys.executable, "-m", "robusthash.cli", "train", "cmaa", "--data", str(listing),
                          "--objects", str(cutouts[0].parent), "--out", str(tmp_path / "run"), "--model", "tiny",
                          "--steps", "2", "--batch-size", "4", "--loader-workers", "0"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "checkpoint.safetensors").exists() and "wrote" in run.stdout

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
