"""Would denoising a noisy query before ORB verify more noisy copies? A probe for the
engine's misses under Gaussian noise (docs/identify.md, "What stays short").

    .venv/bin/python benchmarks/noisy_queries.py --corpus corpus --photos 40

Each of ``--photos`` train photos (evenly spread over the split) is attacked with every
one of ``ATTACKS``, saved as JPEG quality 90 and verified against its own original's
stored features (:func:`robusthash.compare.features.verify`, the query and its mirror
image), with the query's keypoints found three ways:

- ``plain``: as the engine does (the grey copy at 768 px);
- ``blur``: the same copy after a 5×5 Gaussian blur (σ 1);
- ``small+blur``: a Gaussian blur (σ 2) and the keypoints found at 384 px, 1,000 of them.

Printed per attack: the query's noise estimate (Immerkær 1996, on the 768 px grey copy:
it tells noisy queries apart, so a denoising pass could be kept for them), the median
inliers of each way, and the share of copies under 20 inliers (with the plain way, with
the other way, and with the better of the two, as a pass run only on noisy queries and
kept where it verifies better would give).
"""

from __future__ import annotations

import argparse
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from robusthash.attacks import parse
from robusthash.compare.features import DEFAULT_FEATURES, FeatureConfig, local_features, verify
from robusthash.db.ingest import FEATURES_DECODE, QUERY_FEATURES_DECODE
from robusthash.files import evenly_spaced
from robusthash.hashing.base import DecodedImage
from robusthash.synth.corpus import Corpus

ATTACKS = ("GN(0.05)", "GN(0.1)", "TR(Y,0.1)+GN(0.05)", "TR(X,0.2)+GN(0.1)", "SPN(0.05)", "RS(0.5)", "CROP(0.7)",
           "JC(50)", "RT(30)", "BA(0.7)")


def noise_sigma(grey: Image.Image) -> float:
    """Immerkær's estimate of the standard deviation of Gaussian noise in a grey image."""
    import cv2

    pixels = np.asarray(grey, dtype=np.float64)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = cv2.filter2D(pixels, -1, kernel)[1:-1, 1:-1]
    h, w = pixels.shape
    return float(np.sqrt(np.pi / 2) * np.abs(response).sum() / (6 * (w - 2) * (h - 2)))


def inliers(grey: Image.Image, original, config: FeatureConfig) -> int:
    return verify(local_features(grey, config, query=True), original,
                  local_features(grey, config, mirrored=True, query=True), config).inliers


def blurred(grey: Image.Image, sigma: float, size: int = 0) -> Image.Image:
    import cv2

    return Image.fromarray(cv2.GaussianBlur(np.asarray(grey), (size, size), sigma))


def under(inliers_found: np.ndarray, least: int = 20) -> str:
    """The share of copies that verify with fewer than ``least`` inliers."""
    return f"{np.mean(inliers_found < least):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("corpus"))
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()
    small = replace(DEFAULT_FEATURES, query_side=384, query_features=1000)
    rows: dict[str, list[tuple[float, int, int, int]]] = {a: [] for a in ATTACKS}
    for i, path in enumerate(evenly_spaced(Corpus(args.corpus).train(), args.photos)):
        original = local_features(DecodedImage(path).decoded(FEATURES_DECODE))
        photo = Image.open(path).convert("RGB")
        for spec in ATTACKS:
            buffer = io.BytesIO()
            parse(spec)(photo, seed=i).save(buffer, format="JPEG", quality=90)
            grey = DecodedImage(buffer.getvalue()).decoded(QUERY_FEATURES_DECODE)
            rows[spec].append((noise_sigma(grey), inliers(grey, original, DEFAULT_FEATURES),
                               inliers(blurred(grey, 1.0, 5), original, DEFAULT_FEATURES),
                               inliers(blurred(grey, 2.0), original, small)))
    print("| attack | noise σ (median) | inliers: plain / blur / small+blur (medians) | under 20: plain | blur | "
          "better of plain, blur | small+blur | better of plain, small+blur |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec, found in rows.items():
        r = np.array(found, dtype=np.float64)
        print(f"| `{spec}` | {np.median(r[:, 0]):.1f} | {np.median(r[:, 1]):.0f} / {np.median(r[:, 2]):.0f} / "
              f"{np.median(r[:, 3]):.0f} | {under(r[:, 1])} | {under(r[:, 2])} | {under(np.maximum(r[:, 1], r[:, 2]))} | "
              f"{under(r[:, 3])} | {under(np.maximum(r[:, 1], r[:, 3]))} |")


if __name__ == "__main__":
    main()
