"""Export a trained CMAA encoder to ONNX for hashing without torch.

The graph maps preprocessed images ``(batch, 3, size, size)`` to the normalised
feature u ``(batch, l)``; the hasher takes the median binarisation (Eq. 6) in numpy.
The model's configuration and provenance travel in the ONNX metadata.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file

from .cmaa import CMAA, CMAAConfig
from .checkpoint import load_weights, model_state, save_weights  # noqa: F401 - export's API

OPSET = 17


def load_trained(run_dir: Path) -> tuple[CMAA, dict]:
    """The model of a training run folder (checkpoint.safetensors + checkpoint.json)."""
    meta = json.loads((run_dir / "checkpoint.json").read_text())
    model = CMAA(CMAAConfig(**meta["model"]))
    tensors = load_file(run_dir / "checkpoint.safetensors")
    model.load_state_dict(model_state(tensors))
    return model.eval(), meta


class _Features(torch.nn.Module):
    def __init__(self, model: CMAA):
        super().__init__()
        self.encoder = model.encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)


def export_onnx(model: CMAA, path: Path, provenance: dict | None = None, threshold: dict | None = None) -> Path:
    """Write the encoder as ONNX (eval mode: BatchNorm uses its running statistics).

    ``threshold``: the model's default decision, e.g. ``{"nhd": 0.3, "source": "τ at 1%
    FPR, train split"}``, stored in the metadata for the hasher."""
    import onnx

    size = model.config.img_size
    module = _Features(model).eval()
    example = torch.zeros(2, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The tracer's notes on attention's shape checks and on the legacy exporter do not
        # apply: the graph is checked against torch by tests/test_learned_hasher.py.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    graph = onnx.load(str(path))
    meta = {"robusthash.config": json.dumps(asdict(model.config)),
            "robusthash.provenance": json.dumps(provenance or {}),
            "robusthash.exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if threshold is not None:
        meta["robusthash.threshold"] = json.dumps(threshold)
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    return path


def set_metadata(path: Path, values: dict[str, str]) -> None:
    """Set (or replace) entries of an ONNX file's metadata, rewriting it atomically."""
    import onnx

    graph = onnx.load(str(path))
    kept = [(p.key, p.value) for p in graph.metadata_props if p.key not in values]
    del graph.metadata_props[:]
    for key, value in kept + list(values.items()):
        graph.metadata_props.add(key=key, value=value)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(graph, str(tmp))
    tmp.replace(path)


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the weights (activations stay float): ~4× smaller and
    faster on CPU. The metadata is carried over explicitly."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    metadata = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    set_metadata(target, metadata | {"robusthash.quantization": "dynamic int8 weights (onnxruntime)"})
    return target


def calibrate(model_path: Path, photos: list[Path], fpr: float = 0.01) -> dict:
    """τ at ``fpr`` over the distinct pairs of ``photos`` (a train list: never the test
    split), hashed by the exported model as the hasher will hash them."""
    import numpy as np

    from ..measure import pairwise_hamming, threshold_at_fpr
    from ..hashing.learned import OnnxHasher

    hasher = OnnxHasher(model_path)
    packed = np.stack([np.frombuffer(h.data, np.uint8) for h in hasher.hash_many(photos)])
    tau_bits = threshold_at_fpr(pairwise_hamming(packed), fpr)
    bits = max(0, int(np.floor(tau_bits)))
    return {"nhd": bits / hasher.bits, "bits": bits, "fpr": fpr, "images": len(photos),
            "source": f"τ at {fpr:.0%} FPR over the distinct pairs of {len(photos)} train-split photos"}


