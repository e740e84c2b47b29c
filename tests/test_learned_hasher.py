"""A CMAA encoder exported to ONNX hashes on onnxruntime exactly as in torch."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from robusthash.hashing.learned import OnnxHasher  # noqa: E402
from robusthash.models.cmaa import CMAA, TINY, median_bits  # noqa: E402
from robusthash.models.export import export_onnx  # noqa: E402
from robusthash.runtime import preprocess  # noqa: E402


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


def test_pil_batches_equal_single_images(exported, photos):
    _, path = exported
    hasher = OnnxHasher(path, name="tiny")
    images = list(photos.values()) * 12  # more than one batch of 32
    assert [str(h) for h in hasher.hash_pils(images)] == [str(hasher.hash_pil(im)) for im in images]


def test_an_exported_model_is_a_method_by_name_and_path(exported, photos, tmp_path):
    from robusthash import get_hasher
    from robusthash.evaluation.bench import BenchConfig, run_bench

    _, path = exported
    hasher = get_hasher(f"mine={path}")
    assert hasher.name == "mine" and hasher.bits == 16
    # the file's digest, then the decoding rule's revision
    assert hasher.version.startswith("tiny-") and len(hasher.version) == len("tiny-") + 12 + len(".2")
    with pytest.raises(ValueError, match="missing.onnx"):
        get_hasher(f"mine={tmp_path / 'missing.onnx'}")
    with pytest.raises(ValueError, match="NAME=PATH.onnx"):
        get_hasher("mine=model.bin")
    files = []
    for name, im in photos.items():
        files.append(tmp_path / f"{name}.png")
        im.save(files[-1])
    result = run_bench(BenchConfig(images=tuple(files), methods=(f"mine={path}", "dhash"), attacks="JC(70)",
                                   workers=1, cache=None))
    assert [m.method for m in result.methods] == ["mine", "dhash"]
    assert result.methods[0].bits == 16


def test_shipped_cmaa_model_recognises_a_copy_and_tells_images_apart(photos):
    from robusthash import attacks, get_hasher

    hasher = get_hasher("cmaa")
    assert hasher.bits == 128 and hasher.version.startswith("cmaa-small-")
    assert 0 < hasher.threshold < 0.5 and "train-split" in hasher.threshold_source
    originals = {name: hasher.hash_pil(im) for name, im in photos.items()}
    assert all(h.bits.sum() == 64 for h in originals.values())
    for name, im in photos.items():
        copy = attacks.parse("JC(70)+RS(0.75)")(im, seed=0)
        distances = {other: hasher.hash_pil(copy).nhd(h) for other, h in originals.items()}
        assert min(distances, key=distances.get) == name  # its own original is the nearest
        assert distances[name] <= hasher.threshold


def test_shipped_aria_model_is_its_own_method_with_its_own_calibration(photos):
    from robusthash import attacks, get_hasher

    aria, cmaa = get_hasher("aria"), get_hasher("cmaa")
    assert aria.bits == 128 and aria.version.startswith("aria-small-") and aria.version != cmaa.version
    assert 0 < aria.threshold < 0.5 and "train-split" in aria.threshold_source
    assert aria.provenance  # the fine-tuning run is recorded in the file
    originals = {name: aria.hash_pil(im) for name, im in photos.items()}
    assert any((originals[n].bits != cmaa.hash_pil(photos[n]).bits).any() for n in photos)  # not cmaa's bits
    for name, im in photos.items():
        copy = aria.hash_pil(attacks.parse("JC(70)+RS(0.75)")(im, seed=0))
        distances = {other: copy.nhd(h) for other, h in originals.items()}
        assert min(distances, key=distances.get) == name and distances[name] <= aria.threshold


def test_aria_ships_torch_weights_for_white_box_attacks(photos):
    from robusthash import get_hasher
    from robusthash.attacks.adversarial import median_signs, shipped_fingerprint, to_tensor

    fingerprint = shipped_fingerprint(jpeg_quality=None, method="aria")
    aria = get_hasher("aria")
    im = photos["coffee"]
    with torch.no_grad():
        bits = median_signs(fingerprint(to_tensor(im)))[0].numpy() > 0
    assert (bits != aria.hash_pil(im).bits).sum() <= 6  # int8 ONNX against the dequantised weights


def test_a_shipped_int8_models_hash_does_not_depend_on_its_batch(photos):
    # The int8 models quantise activations with one scale per run: hashed in a batch, an
    # image's bits moved with the other images' (2-8 of 128 bits), so the bench and a
    # calibration saw other hashes than `hash` gives for the same file.
    from robusthash import get_hasher

    for name in ("cmaa", "aria"):
        hasher = get_hasher(name)
        images = [im.resize((160, 120)) for im in photos.values()]
        assert [str(h) for h in hasher.hash_pils(images)] == [str(hasher.hash_pil(im)) for im in images], name


def test_a_learned_query_is_also_searched_half_a_turn_back(photos):
    from PIL import Image

    from robusthash import get_hasher

    hasher = get_hasher("cmaa")
    im = photos["astronaut"]
    value, variants = hasher.query_hashes(im)
    assert value == hasher.hash_pil(im)
    turned = [v for v in variants if v.extra["variant"] == "turned 180°"]
    assert len(turned) == 1 and turned[0] == hasher.hash_pil(im.transpose(Image.Transpose.ROTATE_180))
    assert hasher.query_variants(im) == variants and hasher.query_hash(im) == (value, [])
    # A copy turned by 160° is, half a turn back, 20° from its original: nearer than as it is.
    copy = im.rotate(160)
    original = hasher.hash_pil(im)
    _, copy_variants = hasher.query_hashes(copy)
    back = next(v for v in copy_variants if v.extra["variant"] == "turned 180°")
    assert back.nhd(original) < hasher.hash_pil(copy).nhd(original)


def test_a_grey_tone_model_sees_a_grey_or_darker_copy_as_its_original(photos, tmp_path):
    from PIL import ImageEnhance, ImageOps

    from robusthash.runtime import MEAN, STD

    im = photos["coffee"]
    colour = preprocess(im, 32, "stretched-grey")
    # The three channels carry one grey picture, which spans the whole range.
    grey = colour * STD[:, None, None] + MEAN[:, None, None]
    assert np.abs(grey[0] - grey[2]).max() < 1e-5 and grey.min() < 0.01 and grey.max() > 0.99
    as_grey = preprocess(ImageOps.grayscale(im), 32, "stretched-grey")
    darker = preprocess(ImageEnhance.Brightness(im).enhance(0.5), 32, "stretched-grey")
    other = preprocess(photos["astronaut"], 32, "stretched-grey")
    change = {name: np.abs(x - colour).mean() for name, x in (("grey", as_grey), ("darker", darker),
                                                               ("other", other))}
    rgb = {name: np.abs(preprocess(x, 32) - preprocess(im, 32)).mean()
           for name, x in (("grey", ImageOps.grayscale(im)), ("darker", ImageEnhance.Brightness(im).enhance(0.5)))}
    assert change["grey"] < 0.02 * change["other"] and change["darker"] < 0.05 * change["other"]
    assert rgb["grey"] > 5 * change["grey"] and rgb["darker"] > 5 * change["darker"]
    with pytest.raises(ValueError, match="tone rule"):
        preprocess(im, 32, "sepia")

    # The rule travels in the model file: its hasher applies it.
    torch.manual_seed(0)
    model = CMAA(replace(TINY, tone="stretched-grey")).eval()
    path = export_onnx(model, tmp_path / "grey.onnx")
    hasher = OnnxHasher(path, name="grey")
    assert hasher.tone == "stretched-grey"
    with torch.no_grad():
        expected = median_bits(model.encoder(torch.from_numpy(colour)[None]))[0].numpy()
    assert np.array_equal(hasher.hash_pil(im).bits, expected)
    # A model file naming a rule there is not is refused when opened, by its name.
    from robusthash.models.export import set_metadata

    config = json.loads(dict(hasher.session.get_modelmeta().custom_metadata_map)["robusthash.config"])
    set_metadata(path, {"robusthash.config": json.dumps({**config, "tone": "sepia"})})
    with pytest.raises(ValueError, match="grey.onnx: unknown tone rule 'sepia'"):
        OnnxHasher(path, name="grey")


def test_the_attacks_input_rule_has_the_tone_rule(photos):
    from robusthash.attacks import adversarial as adv

    im = photos["coffee"]
    ours = adv.model_input(adv.to_tensor(im), 96, "stretched-grey")[0].numpy()
    assert np.abs(ours - preprocess(im, 96, "stretched-grey")).max() < 0.1
    x = adv.to_tensor(im).requires_grad_(True)
    adv.model_input(x, 96, "stretched-grey").sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="tone rule"):
        adv.model_input(x, 96, "sepia")
