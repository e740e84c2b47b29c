"""The image comparator (Black et al., "Deep image comparator", made robust as in ARIA
section 4.2): an aligned (original, query) pair → same / edited / different, and a 7×7
heatmap of where the query was edited.

Steps, as the papers give them:

* ``encode``: one small CNN for both images (siamese), features at a quarter of the
  input size. Alignment is done before (``robusthash.compare.align``), so features at
  the same place describe the same part of the picture.
* ``fuse``: the two feature maps and their absolute difference, through convolutions
  down to a ``cells`` × ``cells`` map.
* ``heatmap_head`` and ``class_head``: a logit per cell; three class logits from the
  map's mean and max (the max lets one edited cell decide the class).
* ``classification_loss`` (cross-entropy) and ``heatmap_loss`` (1 − cosine similarity
  to the share of each cell edited, on edited pairs), weighted 0.5 / 0.5 as in Black et
  al. and ARIA, plus a per-cell binary cross-entropy on same and edited pairs: cosine
  similarity ignores scale, and a heatmap users read (and IoU) needs cells that mean
  "edited" above 0.5.
* ``perturb_query``: ARIA's inner maximisation, ℓ∞ PGD on the query only (the database
  holds clean originals), 3 steps of ε/2.

Training needs the ``train`` extra; inference runs the ONNX export
(``robusthash.compare.ImageComparator``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .pgd import PGDConfig, pgd
from ..compare import EDITED
from ..compare.align import SamplingGrid
from ..synth.pairs import EDITED_CELL, AlignedPairs
from .loop import run_steps


@dataclass(frozen=True)
class ComparatorConfig:
    image_size: int = 112  # the aligned pair's side; 16 × cells
    cells: int = 7
    trunk: tuple[int, int] = (16, 32)  # siamese encoder widths (at 1/2 and 1/4 size)
    fusion: tuple[int, int, int] = (64, 96, 128)  # at 1/4, 1/8, 1/16 size
    # training
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    classification_weight: float = 0.5
    heatmap_weight: float = 0.5
    cell_weight: float = 0.5
    epsilon: float = 0.0  # ℓ∞ radius of the adversarial training; 0 = standard training
    pgd_steps: int = 3
    # inference: a heatmap cell at or above this is reported (and scored) as edited. Set
    # after training on fresh train pairs (``train_comparator.calibrate``): robust
    # training makes the heatmap less sure of itself, so 0.5 cuts too much of it.
    heatmap_threshold: float = EDITED

    def __post_init__(self) -> None:
        if self.image_size != 16 * self.cells:
            raise ValueError(f"image_size must be 16 × cells ({16 * self.cells}), not {self.image_size}")


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Comparator(nn.Module):
    """(original, query), each N×3×S×S in [0, 1] → (class logits N×3, heatmap logits N×cells×cells)."""

    def __init__(self, config: ComparatorConfig = ComparatorConfig()):
        super().__init__()
        self.config = config
        a, b = config.trunk
        c, d, e = config.fusion
        self.encoder = nn.Sequential(_conv(3, a, 2), _conv(a, a), _conv(a, b, 2), _conv(b, b))
        self.fusion = nn.Sequential(_conv(3 * b, c), _conv(c, d, 2), _conv(d, d), _conv(d, e, 2), _conv(e, e))
        self.heatmap_head = nn.Conv2d(e, 1, 1)
        self.class_head = nn.Linear(2 * e, 3)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder((images - self.mean) / self.std)

    def fuse(self, original: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        both = self.encode(torch.cat([original, query]))
        f_original, f_query = both.chunk(2)
        return self.fusion(torch.cat([f_original, f_query, (f_original - f_query).abs()], 1))

    def forward(self, original: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self.fuse(original, query)
        heatmap = self.heatmap_head(fused)[:, 0]
        pooled = torch.cat([fused.mean((2, 3)), fused.amax((2, 3))], 1)
        return self.class_head(pooled), heatmap


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def heatmap_loss(heatmap: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity between the heatmap and the edited share per cell, on edited
    pairs (label 1) only: the other pairs have no edit to point at."""
    edited = labels == 1
    if not edited.any():
        return heatmap.sum() * 0.0
    predicted = torch.sigmoid(heatmap[edited]).flatten(1)
    return (1 - F.cosine_similarity(predicted, targets[edited].flatten(1), dim=1, eps=1e-6)).mean()


def cell_loss(heatmap: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-cell binary cross-entropy against the binary truth (``EDITED_CELL``), on same
    and edited pairs; a different picture has no meaningful cells."""
    kept = labels != 2
    if not kept.any():
        return heatmap.sum() * 0.0
    truth = (targets[kept] >= EDITED_CELL).float()
    return F.binary_cross_entropy_with_logits(heatmap[kept], truth)


def forward_loss(model: Comparator, original: torch.Tensor, query: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
    config = model.config
    logits, heatmap = model(original, query)
    return (config.classification_weight * classification_loss(logits, labels)
            + config.heatmap_weight * heatmap_loss(heatmap, targets, labels)
            + config.cell_weight * cell_loss(heatmap, targets, labels))


def perturb_query(model: Comparator, original: torch.Tensor, query: torch.Tensor, labels: torch.Tensor,
                  targets: torch.Tensor, epsilon: float, steps: int, seed: int) -> torch.Tensor:
    """ARIA's inner maximisation: the query within ‖δ‖∞ ≤ ε that maximises the loss
    (PGD from a random start, ``steps`` steps of ε/2; batch-norm statistics frozen)."""
    was_training = model.training
    model.eval()
    config = PGDConfig(eps=epsilon, steps=steps, step_size=epsilon / 2, decay_at=(), jpeg_quality=None, seed=seed)
    adversarial = pgd(lambda q: -forward_loss(model, original, q, labels, targets), query, config)
    model.train(was_training)
    return adversarial


def aligned_query(query: torch.Tensor, original: torch.Tensor, grid: SamplingGrid) -> torch.Tensor:
    """``compare.align.aligned_pair``'s query side in torch, differentiable in the
    query's pixels (1×3×H×W in [0, 1]): mirror, antialiased reduction, bilinear sampling
    of the same grid, the original's pixels (1×3×S×S) where the query has none."""
    if grid.flipped:
        query = query.flip(-1)
    w, h = grid.reduced
    if query.shape[-2:] != (h, w):
        query = F.interpolate(query, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    normalised = torch.from_numpy(np.stack([(grid.map_x + 0.5) / w * 2 - 1, (grid.map_y + 0.5) / h * 2 - 1], -1))
    sampled = F.grid_sample(query, normalised[None].float(), mode="bilinear", padding_mode="border",
                            align_corners=False)
    covered = torch.from_numpy(grid.coverage)[None, None]
    return torch.where(covered, sampled, original)


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """Aligned images N×S×S×3 uint8 → the network's input N×3×S×S in [0, 1]."""
    return torch.tensor(pixels).permute(0, 3, 1, 2).float() / 255  # a copy: aligned arrays may be read-only


def predict(model: Comparator, originals: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the ONNX file gives (``compare.ImageComparator.predict``), from the torch
    model: class probabilities N×3 and heatmaps N×cells×cells in [0, 1]."""
    with torch.no_grad():
        logits, heatmap = model(to_input(originals), to_input(queries))
        return torch.softmax(logits, 1).numpy(), torch.sigmoid(heatmap).numpy()


def batch_tensors(pairs: AlignedPairs, rows: np.ndarray, flip: np.ndarray | None = None):
    """Rows of ``pairs`` as tensors (original, query, labels, targets), pixels in [0, 1];
    rows where ``flip`` is set are mirrored, both images and the truth alike."""
    original, query = to_input(pairs.originals[rows]), to_input(pairs.queries[rows])
    targets = torch.from_numpy(pairs.targets[rows]).float()
    if flip is not None and flip.any():
        f = torch.from_numpy(flip)
        original[f] = original[f].flip(-1)
        query[f] = query[f].flip(-1)
        targets[f] = targets[f].flip(-1)
    return original, query, torch.from_numpy(pairs.labels[rows]).long(), targets


def train(pairs: AlignedPairs, out: Path, config: ComparatorConfig = ComparatorConfig(),
          start: Comparator | None = None, progress: Callable[[int, int, dict], None] | None = None) -> Comparator:
    """Train (from ``start`` when given, e.g. standard training before ARIA's) on
    ``pairs``, each batch drawn at random and mirrored half the time; with
    ``config.epsilon`` > 0 every batch's queries are first perturbed by
    :func:`perturb_query`. Writes ``out/log.jsonl``."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = start if start is not None else Comparator(config)
    model.config = config

    def step_loss(step: int) -> torch.Tensor:
        rows = rng.integers(len(pairs), size=config.batch_size)
        original, query, labels, targets = batch_tensors(pairs, rows, rng.random(config.batch_size) < 0.5)
        if config.epsilon > 0:
            query = perturb_query(model, original, query, labels, targets, config.epsilon, config.pgd_steps,
                                  seed=config.seed * 1_000_003 + step)
        return forward_loss(model, original, query, labels, targets)

    run_steps(model, config.steps, config.lr, step_loss, out, progress)
    (out / "config.json").write_text(json.dumps(asdict(config)))
    return model.eval()


def save_weights(model: Comparator, path: Path, provenance: dict | None = None) -> Path:
    """float32 safetensors with the configuration: the white-box model for attacks and
    the starting point for robust fine-tuning."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"robusthash.config": json.dumps(asdict(model.config)),
                                            "robusthash.provenance": json.dumps(provenance or {})})
    return path


def load_provenance(path: Path) -> dict:
    """What ``save_weights`` recorded of how the weights were made."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata().get("robusthash.provenance", "{}"))


def load_weights(path: Path) -> Comparator:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        stored = json.loads(f.metadata()["robusthash.config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = ComparatorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
    model = Comparator(config)
    model.load_state_dict(tensors, strict=False)
    return model.eval()


class _Probabilities(nn.Module):
    """What the ONNX file computes: class probabilities and the heatmap in [0, 1]."""

    def __init__(self, model: Comparator):
        super().__init__()
        self.model = model

    def forward(self, original: torch.Tensor, query: torch.Tensor):
        logits, heatmap = self.model(original, query)
        return torch.softmax(logits, 1), torch.sigmoid(heatmap)  # as predict() computes them


def export_onnx(model: Comparator, path: Path, provenance: dict | None = None) -> Path:
    import onnx

    model = model.eval()
    size = model.config.image_size
    example = torch.zeros(1, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(_Probabilities(model), (example, example), str(path), input_names=["original", "query"],
                      output_names=["probabilities", "heatmap"],
                      dynamic_axes={"original": {0: "n"}, "query": {0: "n"}, "probabilities": {0: "n"},
                                    "heatmap": {0: "n"}}, opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    metadata = {"robusthash.model": "comparator", "robusthash.config": asdict(model.config),
                "robusthash.provenance": provenance or {}}
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.save(proto, str(path))
    return path
