"""The model runtime of the ground floor: where shipped models live, how an ONNX model is
opened (onnxruntime, CPU), and the one input rule of the learned models, shared by
training (torch) and hashing (onnxruntime) so a shipped model sees exactly what it was
trained on.

The input rule: RGB → ``size × size`` (bilinear, aspect ratio not kept: the whole
picture counts) → float32 in [0, 1] → minus ImageNet's channel means, over their
standard deviations → ``(3, size, size)``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

def shipped_model(name: str) -> Path:
    """Path of a model file shipped in the package (``robusthash/data``)."""
    return Path(str(resources.files("robusthash") / "data" / name))


def onnx_session(model_path: Path):
    """An onnxruntime CPU session for ``model_path``; ValueError naming the file when it
    is missing or not a loadable model."""
    import onnxruntime as ort

    if not model_path.is_file():
        raise ValueError(f"{model_path}: no such model file")
    options = ort.SessionOptions()
    # onnxruntime ignores OMP_NUM_THREADS; honouring it lets a process pool (bench)
    # give each worker one core, as it does for BLAS. 0 = onnxruntime's default.
    options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a bad model file gets a message naming it
        raise ValueError(f"{model_path}: not a loadable ONNX model ({exc})") from None


MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(im: Image.Image, size: int) -> np.ndarray:
    """A model input ``(3, size, size)`` float32 from an RGB PIL image."""
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    pixels = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return np.ascontiguousarray(((pixels - MEAN) / STD).transpose(2, 0, 1))
