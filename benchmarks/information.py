"""How the information rule (robusthash.information) treats real photos, their attacked
copies, and images with nothing in them: the fraction refused, and the measures' low tail.

    .venv/bin/python benchmarks/information.py --images corpus/train.txt --sample 200

Real photos and every attack of the grid (Tables 1 + 2, strong, crops, padding) should be
refused never; flat colours, tiny images and noise always.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from robusthash import attacks
from robusthash.files import evenly_spaced, iter_image_paths
from robusthash.information import information
from robusthash.io import load_pil


def empty_images(seed: int = 0) -> dict[str, Image.Image]:
    rng = np.random.default_rng(seed)
    images = {}
    for i in range(20):
        images[f"uniform noise {i}"] = Image.fromarray(rng.integers(0, 256, (384, 512, 3), dtype=np.uint8))
        images[f"gaussian noise {i}"] = Image.fromarray(
            np.clip(rng.normal(128, 10 + 5 * i, (300, 300, 3)), 0, 255).astype(np.uint8))
        images[f"flat {i}"] = Image.new("RGB", (400, 300), tuple(int(v) for v in rng.integers(0, 256, 3)))
        images[f"tiny {i}"] = Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).resize((24, 16))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="an image list (e.g. corpus/train.txt)")
    parser.add_argument("--sample", type=int, default=200, help="photos to attack with the whole grid")
    args = parser.parse_args()

    paths = list(iter_image_paths([args.images]))
    photos = [information(load_pil(p, draft_size=128), size=Image.open(p).size) for p in paths]
    refused = [(p, i.reason) for p, i in zip(paths, photos) if not i.informative]
    contrast = np.array([i.contrast for i in photos])
    structure = np.array([i.structure for i in photos])
    print(f"{len(paths)} photos: {len(refused)} refused")
    for path, reason in refused:
        print(f"  {path}: {reason}")
    print(f"  contrast  min {contrast.min():.2f}  0.1% {np.percentile(contrast, 0.1):.2f}  1% {np.percentile(contrast, 1):.2f}")
    print(f"  structure min {structure.min():.3f}  0.1% {np.percentile(structure, 0.1):.3f}  "
          f"1% {np.percentile(structure, 1):.3f}")

    cases = attacks.suite("all")
    copies = refused_copies = 0
    worst: dict[str, float] = {}
    for path in evenly_spaced(paths, args.sample):
        im = load_pil(path, draft_size=512)
        for case in cases:
            copy = attacks.apply(case.spec, im, seed=0)
            info = information(copy)
            copies += 1
            worst[case.family] = min(worst.get(case.family, 1.0), info.structure)
            if not info.informative:
                refused_copies += 1
                print(f"  refused copy: {path} {case.spec}: {info.reason}")
    print(f"{copies} attacked copies ({len(cases)} attacks × {min(args.sample, len(paths))} photos): "
          f"{refused_copies} refused")
    print("  lowest structure per family: " + ", ".join(f"{f} {v:.2f}" for f, v in sorted(worst.items())))

    empty = empty_images()
    kept = [name for name, im in empty.items() if information(im).informative]
    print(f"{len(empty)} images with nothing in them (noise, flat, tiny): {len(empty) - len(kept)} refused")
    for name in kept:
        print(f"  not refused: {name}")


if __name__ == "__main__":
    main()
