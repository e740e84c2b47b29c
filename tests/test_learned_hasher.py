"""A CMAA encoder exported to ONNX hashes on onnxruntime exactly as in torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from robusthash.hashing.learned import OnnxHasher  # noqa: E402
from robusthash.models.cmaa import CMAA, TINY, median_bits  # noqa: E402
from robusthash.models.export import export_onnx  # noqa: E402
from robusthash.models.preprocess import preprocess  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = CMAA(TINY)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics, as training does
        for _ in range(3):
            model.encoder(torch.rand(8, 3, 32, 32))
    model.eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", provenance={"steps": 0},
                       threshold={"nhd": 0.2, "source": "test"})
    return model, path


def test_onnx_hashes_equal_torch_hashes(exported, photos):
    model, path = exported
    hasher = OnnxHasher(path, name="tiny")
    assert hasher.bits == 16 and hasher.threshold == 0.2 and hasher.provenance == {"steps": 0}
    for im in photos.values():
        x = torch.from_numpy(preprocess(im, 32))[None]
        with torch.no_grad():
            expected = median_bits(model.encoder(x))[0].numpy()
        assert np.array_equal(hasher.hash_pil(im).bits, expected)
        assert hasher.hash_pil(im).bits.sum() == 8  # median binarisation: half the bits


def test_batches_equal_single_images(exported, photos, tmp_path):
    _, path = exported
    hasher = OnnxHasher(path, name="tiny")
    files = []
    for name, im in photos.items():
        files.append(tmp_path / f"{name}.png")
        im.save(files[-1])
    batch = hasher.hash_many(files)
    assert [str(h) for h in batch] == [str(hasher.hash(f)) for f in files]


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="bad.onnx"):
        OnnxHasher(bad)
