"""CMAA checkpoint I/O (torch): the model's state out of a training checkpoint, and the
compact safetensors weights a trained model is shipped and fine-tuned from."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from .cmaa import CMAA, CMAAConfig


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict out of a checkpoint's tensors (which also hold optimizer buffers)."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


SCALE = ".int8_scale"  # suffix of the per-row scale of an int8 tensor


def save_weights(model: CMAA, path: Path, provenance: dict | None = None) -> Path:
    """The trained encoder and decoder as safetensors, the starting point for fine-tuning
    (e.g. ARIA); the momentum encoder restarts as a copy of the encoder. Matrices are
    stored as int8 with one float32 scale per output row (symmetric), the rest as
    float16: ~5 MB instead of 9.5 MB in float16 (shipped model: 0.95 of 128 bits differ
    from the float32 checkpoint on average, docs/models/cmaa.md)."""
    from safetensors.torch import save_file

    tensors = {}
    for key, value in model.state_dict().items():
        if not key.startswith(("encoder.", "decoder.")):
            continue
        value = value.detach().cpu().float()
        if value.ndim >= 2:
            rows = value.reshape(len(value), -1)
            scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127
            tensors[key] = torch.round(rows / scale[:, None]).to(torch.int8).reshape(value.shape).contiguous()
            tensors[key + SCALE] = scale.contiguous()
        else:
            tensors[key] = value.half().contiguous()
    metadata = {"robusthash.config": json.dumps(asdict(model.config)),
                "robusthash.provenance": json.dumps(provenance or {}),
                "robusthash.weights": "matrices int8 with a float32 scale per output row; vectors float16"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_weights(path: Path) -> CMAA:
    """A CMAA model from :func:`save_weights`' file (float32, dequantised; momentum
    encoder = encoder)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        config = CMAAConfig(**json.loads(f.metadata()["robusthash.config"]))
        stored = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {}
    for key, value in stored.items():
        if key.endswith(SCALE):
            continue
        if key + SCALE in stored:
            scale = stored[key + SCALE].float().reshape(-1, *([1] * (value.ndim - 1)))
            tensors[key] = value.float() * scale
        else:
            tensors[key] = value.float()
    model = CMAA(config)
    missing = model.load_state_dict(tensors, strict=False).missing_keys
    if any(k.startswith(("encoder.", "decoder.")) for k in missing):
        raise ValueError(f"{path}: weights incomplete ({len(missing)} tensors missing)")
    model.momentum_encoder.load_state_dict(model.encoder.state_dict())
    return model.eval()
