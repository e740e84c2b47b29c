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

OPSET = 17


def load_trained(run_dir: Path) -> tuple[CMAA, dict]:
    """The model of a training run folder (checkpoint.safetensors + checkpoint.json)."""
    meta = json.loads((run_dir / "checkpoint.json").read_text())
    model = CMAA(CMAAConfig(**meta["model"]))
    tensors = load_file(run_dir / "checkpoint.safetensors")
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
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
