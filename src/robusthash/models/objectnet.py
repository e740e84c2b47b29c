"""ObjectNet: a small U-Net that marks objects pasted into a photo (issue 6, montages).

Colour segmentation splits a pasted object into its colour parts, so a montage's object
never comes out whole (docs/segments.md). This network is trained for exactly that
job on synthetic montages: a train-split photo with zero, one or two train-split
cut-outs pasted at a random scale, angle and place, then JPEG-compressed; the target is
the union of the pasted alpha masks. It sees no test photo and no test object
(``synth.corpus.object_split``). Inference runs from ONNX
(``segments.segmenter.ObjectNetSegmenter``); training needs the ``train`` extra.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..synth.montage import paste
from .loop import run_steps


@dataclass(frozen=True)
class ObjectNetConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)  # channels per level; each level halves the size
    image_size: int = 128  # training side; inference takes any size (multiple of 8)
    steps: int = 6000
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    object_scale: tuple[float, float] = (0.2, 0.7)  # longer side over the photo's shorter side
    angle: tuple[float, float] = (-45.0, 45.0)
    objects_per_image: tuple[float, float, float] = (0.1, 0.7, 0.2)  # P(0), P(1), P(2)
    jpeg_quality: tuple[int, int] = (40, 95)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ObjectNet(nn.Module):
    """U-Net: image in [0, 1] (N×3×H×W, H and W multiples of 2^levels) → logits N×1×H×W.

    A stride-2 stem halves the image before the first level: on 2 CPU cores a step
    costs a third of a full-resolution U-Net's, and object masks need no finer grain."""

    def __init__(self, widths: tuple[int, ...] = ObjectNetConfig.widths):
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"a U-Net needs at least two levels, not {widths}")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.down = nn.ModuleList([_block(cin, cout) for cin, cout in zip((widths[0],) + widths[:-1], widths)])
        self.up = nn.ModuleList([_block(wide + narrow, narrow) for wide, narrow in zip(widths[:0:-1], widths[-2::-1])])
        self.head = nn.Conv2d(widths[0], 1, 1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem((images - self.mean) / self.std)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, skips[-2::-1]):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return F.interpolate(self.head(x), size=images.shape[-2:], mode="bilinear", align_corners=False)


def square_crop(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """A random square crop (≥ half the shorter side) brought to ``size``."""
    side = int(rng.integers(min(photo.size) // 2, min(photo.size) + 1))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    return photo.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)


def montage_sample(photo: Image.Image, cutouts: list[Image.Image], rng: np.random.Generator,
                   config: ObjectNetConfig) -> tuple[np.ndarray, np.ndarray]:
    """(image H×W×3 float32 in [0, 1], mask H×W float32): a synthetic montage and where its objects are."""
    image = square_crop(photo, rng, config.image_size)
    mask = np.zeros((config.image_size, config.image_size), dtype=bool)
    count = int(rng.choice(len(config.objects_per_image), p=config.objects_per_image))
    for _ in range(count):
        cutout = cutouts[int(rng.integers(len(cutouts)))]
        image, truth = paste(image, cutout, float(rng.uniform(*config.object_scale)), float(rng.uniform(*config.angle)),
                             (float(rng.uniform()), float(rng.uniform())))
        mask |= truth.mask  # a later object over an earlier one hides part of it: both are "pasted"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(*config.jpeg_quality)))
    image = Image.open(buffer).convert("RGB")
    return np.asarray(image, dtype=np.float32) / 255.0, mask.astype(np.float32)


def forward_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice: Dice keeps small objects from being drowned
    by the background pixels."""
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    probs = torch.sigmoid(logits)
    intersection = (probs * masks).sum((1, 2, 3))
    dice = 1 - (2 * intersection + 1) / (probs.sum((1, 2, 3)) + masks.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def train(photos: list[Path], cutouts: list[Path], out: Path, config: ObjectNetConfig = ObjectNetConfig(),
          progress: Callable[[int, int, dict], None] | None = None) -> ObjectNet:
    """Train from scratch; writes ``out/log.jsonl`` and returns the model (eval mode)."""
    if not photos or not cutouts:
        raise ValueError("ObjectNet needs training photos and RGBA cut-outs")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    # Photos and cut-outs reduced once: a sample is 128 px, the originals are up to 1 MP.
    small_photos = [_reduced(Image.open(p).convert("RGB"), 2 * config.image_size) for p in photos]
    small_cutouts = [_reduced(Image.open(p).convert("RGBA"), 2 * config.image_size) for p in cutouts]
    model = ObjectNet(config.widths)

    def step_loss(step: int) -> torch.Tensor:
        samples = [montage_sample(small_photos[int(rng.integers(len(small_photos)))], small_cutouts, rng, config)
                   for _ in range(config.batch_size)]
        images = torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 3, 1, 2)
        masks = torch.from_numpy(np.stack([s[1] for s in samples]))[:, None]
        return forward_loss(model(images), masks)

    run_steps(model, config.steps, config.lr, step_loss, out, progress)
    (out / "config.json").write_text(json.dumps(asdict(config)))
    return model.eval()


def export_onnx(model: ObjectNet, path: Path, provenance: dict | None = None) -> Path:
    """ONNX with dynamic height and width; metadata records where it came from."""
    import onnx

    model = model.eval()
    example = torch.zeros(1, 3, 128, 128)
    torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    for key, value in {"robusthash.model": "objectnet", **(provenance or {})}.items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.save(proto, str(path))
    return path


def _reduced(im: Image.Image, side: int) -> Image.Image:
    im = im.copy()
    im.thumbnail((side, side), Image.Resampling.BILINEAR)
    return im
