"""The classical colour segmenter finds object-sized regions, deterministically."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from robusthash.segments.segmenter import ColourSegmenter, ColourSegmenterConfig


def shapes() -> tuple[Image.Image, list[np.ndarray]]:
    image = Image.new("RGB", (400, 300), (235, 235, 225))
    truth = []
    for box, colour, kind in [((30, 40, 170, 200), (200, 30, 30), "ellipse"),
                              ((220, 60, 370, 150), (30, 60, 190), "rectangle"),
                              ((200, 180, 330, 280), (40, 150, 60), "ellipse")]:
        getattr(ImageDraw.Draw(image), kind)(box, fill=colour)
        layer = Image.new("L", image.size, 0)
        getattr(ImageDraw.Draw(layer), kind)(box, fill=255)
        truth.append(np.asarray(layer) > 0)
    return image, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_each_shape_is_one_segment():
    image, truth = shapes()
    masks = ColourSegmenter().segment(image)
    assert all(m.shape == (300, 400) and m.dtype == bool for m in masks)
    for shape in truth:
        assert max(iou(shape, m) for m in masks) > 0.9
    assert [m.sum() for m in masks] == sorted((m.sum() for m in masks), reverse=True)


def test_segments_are_deterministic_and_survive_jpeg():
    image, truth = shapes()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=40)
    copy = Image.open(buffer).convert("RGB")
    segmenter = ColourSegmenter()
    first, again, jpeg = segmenter.segment(image), segmenter.segment(image), segmenter.segment(copy)
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again))
    for shape in truth:
        assert max(iou(shape, m) for m in jpeg) > 0.9


def test_limits_and_degenerate_images():
    image, _ = shapes()
    assert len(ColourSegmenter(ColourSegmenterConfig(max_segments=2)).segment(image)) == 2
    for flat in [Image.new("RGB", (1, 1)), Image.new("RGB", (300, 5), "white"), Image.new("RGB", (64, 64), (9, 9, 9))]:
        masks = ColourSegmenter().segment(flat)  # no error; a flat image has no object-sized region < 60%
        assert all(m.shape == (flat.height, flat.width) for m in masks)


def test_an_object_on_a_plain_background_is_one_mask(astronaut):
    from robusthash.segments.segmenter import PlainBackgroundSegmenter

    image, truth = shapes()  # three shapes on a plain cream background
    masks = PlainBackgroundSegmenter().segment(image)
    assert len(masks) == 1 and masks[0].shape == (300, 400)
    assert iou(masks[0], truth[0] | truth[1] | truth[2]) > 0.95
    assert PlainBackgroundSegmenter().segment(astronaut) == []  # a photo has no plain border
    assert PlainBackgroundSegmenter().segment(Image.new("RGB", (50, 50), "white")) == []  # nothing on it


def test_the_shipped_objectnet_marks_pasted_objects(photos, clipart):
    from robusthash.synth.montage import paste
    from robusthash.segments.segmenter import ObjectNetSegmenter

    segmenter = ObjectNetSegmenter()
    ious = []
    for photo in (photos["coffee"], photos["chelsea"]):
        for scale, angle, position in [(0.5, 0, (0.2, 0.3)), (0.4, 25, (0.9, 0.8)), (0.6, -15, (0.5, 0.5))]:
            montage, truth = paste(photo, clipart, scale, angle, position)
            best = max((iou(truth.mask, m) for m in segmenter.segment(montage)), default=0.0)
            assert best > truth.mask.mean()  # better than marking the whole frame
            ious.append(best)
    # Measured 0.65 on 60 train montages with corpus cut-outs (docs/models/objectnet.md);
    # on the busy astronaut photo it finds nothing, a known weakness.
    assert np.mean(ious) > 0.5
    assert all(m.mean() < 0.05 for m in segmenter.segment(photos["coffee"]))  # nothing pasted: little marked


class TinyInstanceNet:
    """A randomly initialised network with Mask R-CNN's ONNX layout: three instances,
    the first two with full-size masks, the third with a 28 × 28 box grid."""

    @staticmethod
    def export(path, grid: bool):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
                self.score = torch.nn.Linear(3, 3)

            def forward(self, image):
                features = self.conv(image[None])[0]  # 3 × H × W
                h, w = image.shape[1], image.shape[2]
                scale = torch.stack([w, h, w, h]).to(torch.float32)
                boxes = torch.tensor([[0.1, 0.1, 0.6, 0.7], [0.3, 0.2, 0.9, 0.9], [0.0, 0.5, 0.5, 1.0]]) * scale
                scores = torch.sigmoid(self.score(features.mean((1, 2))))
                masks = torch.sigmoid(features)[:, None]
                if grid:
                    masks = torch.nn.functional.interpolate(masks, size=(28, 28))
                return boxes, torch.zeros(3, dtype=torch.int64), scores, masks

        torch.manual_seed(0)
        torch.onnx.export(Net(), (torch.rand(3, 64, 80),), str(path), input_names=["image"],
                          output_names=["boxes", "labels", "scores", "masks"],
                          dynamic_axes={"image": {1: "h", 2: "w"}}, opset_version=17, dynamo=False)
        return path


def test_an_instance_network_from_onnx_gives_masks_above_its_score(tmp_path):
    import pytest

    pytest.importorskip("torch")
    from robusthash.segments.segmenter import OnnxInstanceSegmenter

    with pytest.raises(ValueError, match="none.onnx"):
        OnnxInstanceSegmenter(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx"):
        OnnxInstanceSegmenter(tmp_path / "junk.onnx")
    image, _ = shapes()
    for grid in (False, True):
        model = TinyInstanceNet.export(tmp_path / f"tiny-{grid}.onnx", grid)
        masks = OnnxInstanceSegmenter(model, score=0.0).segment(image)  # random weights: any masks, right form
        assert masks and all(m.shape == (300, 400) and m.dtype == bool and m.any() for m in masks)
        assert [m.sum() for m in masks] == sorted((m.sum() for m in masks), reverse=True)
        if grid:  # a box's 28 × 28 grid is stretched into its box, never beyond
            boxes = [(40, 30, 240, 210), (120, 60, 360, 270), (0, 150, 200, 300)]

            def inside(m, box):
                left, top, right, bottom = box
                outside = m.copy()
                outside[max(0, top - 2):bottom + 2, max(0, left - 2):right + 2] = False
                return not outside.any()

            assert all(any(inside(m, box) for box in boxes) for m in masks)
        assert OnnxInstanceSegmenter(model, score=1.01).segment(image) == []


def test_segments_instances_is_a_method_given_its_model(tmp_path, astronaut):
    import pytest

    pytest.importorskip("torch")
    from robusthash import get_hasher

    model = TinyInstanceNet.export(tmp_path / "tiny.onnx", grid=False)
    hasher = get_hasher(f"segments-instances={model}")
    value = hasher.hash_pil(astronaut)
    assert hasher.name == "segments-instances" and value.method == "segments-instances"
    assert len(value) >= 2 and hasher.compare(value, value).matched
    other = TinyInstanceNet.export(tmp_path / "other.onnx", grid=True)
    assert get_hasher(f"segments-instances={other}").version != hasher.version  # the model is in the version
    with pytest.raises(ValueError, match="missing.onnx"):
        get_hasher(f"segments-instances={tmp_path / 'missing.onnx'}")
