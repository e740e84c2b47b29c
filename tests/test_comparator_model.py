"""The comparator network (torch): losses, ARIA's inner maximisation, the differentiable
alignment, a tiny training run, ONNX export, and `robusthash explain` on the export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("safetensors")

from robusthash.attacks.adversarial import to_tensor  # noqa: E402
from robusthash.attacks.spec import apply  # noqa: E402
from robusthash.compare import ImageComparator, Kind  # noqa: E402
from robusthash.compare.align import align, sampling_grid  # noqa: E402
from robusthash.evaluation.metrics import heatmap_iou  # noqa: E402
from robusthash.models.comparator import (Comparator, ComparatorConfig, aligned_query, batch_tensors,  # noqa: E402
                                          cell_loss, export_onnx, forward_loss, heatmap_loss, load_weights,
                                          perturb_query, predict, save_weights, train)
from robusthash.models.train_comparator import THRESHOLDS, fit  # noqa: E402
from robusthash.synth.pairs import EDITED_CELL, PairConfig, PairPool, aligned_pairs  # noqa: E402


def small(im: Image.Image, side: int = 240) -> Image.Image:
    im = im.convert("RGB").copy()
    im.thumbnail((side, side))
    return im


def test_the_network_gives_three_classes_and_a_seven_by_seven_heatmap():
    model = Comparator().eval()
    logits, heatmap = model(torch.rand(2, 3, 112, 112), torch.rand(2, 3, 112, 112))
    assert logits.shape == (2, 3) and heatmap.shape == (2, 7, 7)
    with pytest.raises(ValueError):
        ComparatorConfig(image_size=128)


def test_the_heatmap_losses_reward_the_right_cells_and_skip_pairs_without_edits():
    targets = torch.zeros(3, 7, 7)
    targets[:, 2:4, 1:3] = 1.0
    right, wrong = (targets * 2 - 1) * 8, (1 - targets * 2) * 8
    edited = torch.tensor([1, 1, 1])
    assert heatmap_loss(right, targets, edited) < 0.01 < 0.5 < heatmap_loss(wrong, targets, edited)
    assert cell_loss(right, targets, edited) < 0.01 < 1.0 < cell_loss(wrong, targets, edited)
    # a different picture's cells and a non-edited pair's cosine count for nothing
    assert heatmap_loss(wrong, targets, torch.tensor([0, 2, 0])) == 0
    assert cell_loss(wrong, targets, torch.tensor([2, 2, 2])) == 0


@pytest.fixture(scope="module")
def pairs(photos, clipart):
    pool = PairPool([photos[n] for n in ("astronaut", "coffee", "chelsea", "rocket", "camera")], [clipart],
                    PairConfig(side=160))
    return aligned_pairs(pool, 24, 0, 112)


def test_the_inner_maximisation_stays_within_epsilon_and_raises_the_loss(pairs):
    torch.manual_seed(0)
    model = Comparator().eval()
    original, query, labels, targets = batch_tensors(pairs, np.arange(8))
    eps = 8 / 255
    adversarial = perturb_query(model, original, query, labels, targets, eps, 3, seed=0)
    assert (adversarial - query).abs().max() <= eps + 1e-6 and adversarial.min() >= 0 and adversarial.max() <= 1
    with torch.no_grad():
        assert forward_loss(model, original, adversarial, labels, targets) > \
            forward_loss(model, original, query, labels, targets)


def test_the_differentiable_alignment_is_the_one_opencv_applies(photos):
    original = small(photos["astronaut"])
    query = apply("RT(15)+CROP(0.7)+FL(H)", original, 0)
    alignment, pair = align(query, original, 112)
    grid = sampling_grid(alignment, query.size, original.size, 112)
    original_tensor = torch.from_numpy(pair.original.copy()).permute(2, 0, 1)[None].float() / 255
    pixels = to_tensor(query).requires_grad_(True)
    aligned = aligned_query(pixels, original_tensor, grid)
    assert np.abs(aligned[0].detach().permute(1, 2, 0).numpy() * 255 - pair.query).max() < 2.0
    aligned.sum().backward()  # the query's own pixels get gradients
    assert pixels.grad.abs().sum() > 0


def test_a_tiny_training_run_lowers_the_loss_and_exports_what_it_learned(pairs, tmp_path, photos):
    config = ComparatorConfig(steps=40, batch_size=8, lr=3e-3)
    model = train(pairs, tmp_path / "run", config)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 40 and np.mean(losses[-8:]) < np.mean(losses[:8])
    robust = train(pairs, tmp_path / "robust", ComparatorConfig(steps=4, batch_size=4, epsilon=4 / 255), start=model)

    weights = save_weights(robust, tmp_path / "comparator.safetensors")
    again = load_weights(weights)
    original, query, _, _ = batch_tensors(pairs, np.arange(6))
    with torch.no_grad():
        expected = robust(original, query)
        assert torch.allclose(again(original, query)[0], expected[0], atol=1e-5)
    path = export_onnx(robust, tmp_path / "comparator.onnx", {"steps": 4})
    comparator = ImageComparator(path)
    probabilities, heatmaps = comparator.predict(pairs.originals[:6], pairs.queries[:6])
    assert np.allclose(probabilities, torch.softmax(expected[0], 1).numpy(), atol=1e-4)
    assert np.allclose(heatmaps, torch.sigmoid(expected[1]).numpy(), atol=1e-4)
    result = comparator.explain(apply("JC(70)", small(photos["coffee"]), 0), small(photos["coffee"]))
    assert result.label in ("same", "edited", "different") and result.alignment.found
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    json.dumps(result.to_dict())


def test_fit_trains_both_stages_once_and_sets_each_heatmap_threshold_on_the_calibration_pairs(pairs, tmp_path):
    standard = ComparatorConfig(steps=6, batch_size=4)
    robust = ComparatorConfig(steps=2, batch_size=4, epsilon=4 / 255, seed=1)
    calibration = pairs  # in use: fresh pairs; here any pairs with edits serve
    onnx_path = fit(pairs, tmp_path, standard, robust, calibration)
    chosen = json.loads((tmp_path / "calibration.json").read_text())
    edited = calibration.labels == Kind.edited
    truth = calibration.targets[edited] >= EDITED_CELL
    for name, stage in (("comparator-standard", "standard"), ("comparator", "final")):
        model = load_weights(tmp_path / f"{name}.safetensors")
        cut = model.config.heatmap_threshold
        assert cut == chosen[stage]["threshold"] and cut in THRESHOLDS
        _, heatmaps = predict(model, calibration.originals[edited], calibration.queries[edited])
        ious = [heatmap_iou(heatmaps, truth, t) for t in THRESHOLDS]
        assert heatmap_iou(heatmaps, truth, cut) == pytest.approx(max(ious), abs=1e-4)
    comparator = ImageComparator(onnx_path)
    assert comparator.threshold == chosen["final"]["threshold"]
    explanation = comparator.explain_images(*(Image.fromarray(calibration.queries[0]),
                                              Image.fromarray(calibration.originals[0])))
    assert explanation.threshold == comparator.threshold
    assert explanation.edited_cells() == explanation.edited_cells(comparator.threshold)

    logs = {stage: (tmp_path / stage / "log.jsonl").stat().st_mtime_ns for stage in ("standard", "robust")}
    fit(pairs, tmp_path, standard, robust, calibration)  # both stages are there: only calibration runs again
    assert logs == {stage: (tmp_path / stage / "log.jsonl").stat().st_mtime_ns for stage in ("standard", "robust")}
    fit(pairs, tmp_path, standard, ComparatorConfig(steps=3, batch_size=4, epsilon=4 / 255, seed=1), calibration)
    assert (tmp_path / "robust" / "log.jsonl").stat().st_mtime_ns != logs["robust"]  # another recipe: trained again


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("comparator")
    torch.manual_seed(0)
    return export_onnx(Comparator().eval(), folder / "comparator.onnx")


def run(*args):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "robusthash.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_explain_prints_the_answer_and_writes_the_picture(exported, photos, tmp_path):
    original = small(photos["chelsea"], 400)
    original.save(tmp_path / "original.png")
    apply("RT(10)+JC(80)", original, 0).save(tmp_path / "copy.jpg")
    result = run("explain", tmp_path / "copy.jpg", tmp_path / "original.png", "--model", exported,
                 "--out", tmp_path / "why.png")
    assert result.returncode == 0, result.stderr
    assert "aligned on" in result.stdout and "why.png" in result.stdout
    with Image.open(tmp_path / "why.png") as picture:
        assert picture.width > 2 * 300
    result = run("explain", tmp_path / "copy.jpg", tmp_path / "original.png", "--model", exported, "--format", "jsonl",
                 "--no-picture")
    record = json.loads(result.stdout)
    assert record["label"] in ("same", "edited", "different") and len(record["heatmap"]) == 7
    assert record["aligned"] and "picture" not in record


def test_explain_names_a_bad_input_and_a_bad_model(exported, tmp_path, photos):
    photos["coffee"].save(tmp_path / "a.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    result = run("explain", tmp_path / "broken.jpg", tmp_path / "a.png", "--model", exported)
    assert result.returncode == 2 and "broken.jpg" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    result = run("explain", tmp_path / "a.png", tmp_path / "a.png", "--model", tmp_path / "model.onnx")
    assert result.returncode == 2 and "model.onnx" in result.stderr and "Traceback" not in result.stderr
