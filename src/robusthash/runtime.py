"""The model runtime of the ground floor: where shipped models live, how an ONNX model is
opened (onnxruntime, CPU), the one input rule of the learned models, shared by
training (torch) and hashing (onnxruntime) so a shipped model sees exactly what it was
trained on, and how many threads a search takes (:func:`one_query_at_a_time`).

The input rule: RGB → ``size × size`` (bilinear, aspect ratio not kept: the whole
picture counts) → float32 in [0, 1] → the model's tone rule (:data:`TONES`) → minus
ImageNet's channel means, over their standard deviations → ``(3, size, size)``.
"""

from __future__ import annotations

import os
import threading
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

_ONE_THREAD = {"asked": False}


class _ThisThread(threading.local):
    searches_on_one = False


_this_thread = _ThisThread()


def one_query_at_a_time() -> None:
    """Search single queries on one thread, in every thread of the process: FAISS's
    OpenMP threads, started for each small search, stall it on a busy machine (50 ms a
    search under load; benchmarks/README.md, search) and take the cores that other
    queries answered at the same time need. For front ends that ask one query at a time
    (``db query``, the service, whose requests run on threads of their own)."""
    _ONE_THREAD["asked"] = True
    searching()


def searching() -> None:
    """Called before a FAISS search: applies :func:`one_query_at_a_time` to the calling
    thread. OpenMP's thread count is a setting of each thread: set once in the main
    thread, the service's request threads still searched on every core (two OpenMP
    threads each on 2 cores: the verification's descriptor matching took twice as long
    from two threads at once)."""
    if _ONE_THREAD["asked"] and not _this_thread.searches_on_one:
        import faiss

        faiss.omp_set_num_threads(1)
        _this_thread.searches_on_one = True


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


# What a model sees of an image's tones (``CMAAConfig.tone``, stored with the model):
# "rgb", its colours as they are; "stretched-grey", its luminance stretched linearly
# over the whole range, the same in the three channels. A copy turned grey then has the
# same input (luminance and the resize are both linear), and a darker, brighter (short
# of clipping) or lower-contrast one nearly so: invariance by construction, where a
# model trained on colour views learned only the grid's. Measured on 40 train photos
# before any training (mean input change over that between distinct photos, rgb →
# stretched-grey): grey 0.130 → 0.004, brightness 0.6 0.384 → 0.008, contrast 0.6
# 0.261 → 0.008, gamma 1.5 0.226 → 0.142, JPEG 30 0.020 → 0.018, noise σ 0.05 0.060 →
# 0.038. Histogram equalisation was tried in its place: with a clip limit it kept half
# of a darkening (0.190), without one it turned noise into 0.568.
TONES = ("rgb", "stretched-grey")
# ITU-R 601 luma, Pillow's own for convert("L").
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# The stretch maps these percentiles of the luminance to 0 and 1: a few specular or
# dead pixels do not set it.
STRETCH_PERCENTILES = (0.5, 99.5)
# The most it multiplies: a nearly flat picture's dithering is not made into a picture.
STRETCH_GAIN = 32.0


def check_tone(tone: str) -> str:
    """``tone`` if it is a tone rule of :data:`TONES`, else a ValueError naming them."""
    if tone not in TONES:
        raise ValueError(f"unknown tone rule {tone!r}; one of {', '.join(TONES)}")
    return tone


def stretched(grey: np.ndarray) -> np.ndarray:
    """``grey`` (values in [0, 1]) stretched linearly so that its
    :data:`STRETCH_PERCENTILES` become 0 and 1, clipped there; by at most
    :data:`STRETCH_GAIN`."""
    low, high = np.percentile(grey, STRETCH_PERCENTILES)
    span = max(float(high - low), 1.0 / STRETCH_GAIN)
    return np.clip((grey - low) / span, 0.0, 1.0).astype(np.float32)


def preprocess(im: Image.Image, size: int, tone: str = "rgb") -> np.ndarray:
    """A model input ``(3, size, size)`` float32 from a PIL image, by the tone rule
    ``tone`` (:data:`TONES`)."""
    check_tone(tone)
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    pixels = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    if tone == "stretched-grey":
        pixels = np.repeat(stretched(pixels @ LUMA)[..., None], 3, axis=2)
    return np.ascontiguousarray(((pixels - MEAN) / STD).transpose(2, 0, 1))
