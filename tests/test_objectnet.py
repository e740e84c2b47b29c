"""ObjectNet: synthetic montage samples, the loss, a tiny training run, ONNX export and
the segmenter that runs the exported file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from robusthash.models.objectnet import (ObjectNet, ObjectNetConfig, export_onnx, forward_loss,  # noqa: E402
                                         montage_sample, train)


def cutout(colour) -> Image.Image:
    im = Image.new("RGBA", (80, 60), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse((0, 0, 79, 59), fill=colour + (255,))
    return im


def test_a_sample_is_a_montage_and_the_mask_of_what_was_pasted(photos):
    config = ObjectNetConfig(objects_per_image=(0.0, 1.0, 0.0), jpeg_quality=(95, 96))
    image, mask = montage_sample(photos["coffee"], [cutout((255, 0, 255))], np.random.default_rng(0), config)
    assert image.shape == (128, 128, 3) and mask.shape == (128, 128) and image.dtype == np.float32
    magenta = (image[..., 0] > 0.8) & (image[..., 1] < 0.2) & (image[..., 2] > 0.8)
    assert 0.01 < mask.mean() < 0.6 and (magenta & (mask > 0)).sum() > 0.8 * magenta.sum()
    empty = ObjectNetConfig(objects_per_image=(1.0, 0.0, 0.0))
    assert montage_sample(photos["coffee"], [cutout((0, 0, 0))], np.random.default_rng(0), empty)[1].sum() == 0


def test_the_loss_rewards_the_right_mask():
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:20, 8:20] = 1
    right = forward_loss((masks * 2 - 1) * 10, masks)
    wrong = forward_loss((1 - masks * 2) * 10, masks)
    assert right < 0.05 < 1.5 < wrong


def test_train_export_and_segment(tmp_path, photos):
    from robusthash.segments.segmenter import ObjectNetSegmenter, ObjectNetSegmenterConfig

    for name, im in photos.items():
        im.save(tmp_path / f"{name}.jpg")
        cutout((200, 40, 40)).save(tmp_path / f"{name}-cut.png")
    config = ObjectNetConfig(widths=(4, 8, 8, 8, 8), steps=2, batch_size=2, image_size=64)
    model = train(sorted(tmp_path.glob("*.jpg")), sorted(tmp_path.glob("*-cut.png")), tmp_path / "run", config)
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") == 2
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 96)).shape == (1, 1, 64, 96)
    path = export_onnx(model, tmp_path / "tiny.onnx", {"steps": 2})
    segmenter = ObjectNetSegmenter(ObjectNetSegmenterConfig(model=str(path), probability=0.0))
    masks = segmenter.segment(photos["astronaut"])  # probability 0: the whole image is one region
    assert len(masks) == 1 and masks[0].shape == (512, 512) and masks[0].all()
    with pytest.raises(ValueError, match="at least"):
        ObjectNet((4,))  # one level is no U-Net
    with pytest.raises(ValueError, match="training photos"):
        train([], [], tmp_path / "none", config)


def test_the_cli_refuses_the_test_split(tmp_path):
    from typer.testing import CliRunner

    from robusthash.cli import app

    (tmp_path / "test.txt").write_text("a.jpg\n")
    result = CliRunner().invoke(app, ["train", "objectnet", "--data", str(tmp_path / "test.txt"),
                                      "--objects", str(tmp_path), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and "test" in result.output
