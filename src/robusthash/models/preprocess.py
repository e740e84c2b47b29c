"""The one input rule of the learned hashers, shared by training (torch) and hashing
(onnxruntime), so a shipped model sees exactly what it was trained on.

RGB → ``size × size`` (bilinear, aspect ratio not kept: the whole picture counts) →
float32 in [0, 1] → minus ImageNet's channel means, over their standard deviations →
``(3, size, size)``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(im: Image.Image, size: int) -> np.ndarray:
    """A model input ``(3, size, size)`` float32 from an RGB PIL image."""
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    pixels = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return np.ascontiguousarray(((pixels - MEAN) / STD).transpose(2, 0, 1))
