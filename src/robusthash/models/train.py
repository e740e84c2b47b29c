"""Training CMAA (``robusthash train cmaa``): resumable, logged, on GPU when present.

Samples are numbered globally: sample k of a run is drawn from photo
``permutation(seed, epoch)[k mod n]`` with the generator ``default_rng([seed, k])``, so
a run resumed from a checkpoint at step s sees exactly the samples an uninterrupted
run would have. Checkpoints are safetensors (weights, bank, optimizer buffers) plus a
JSON file (step, configs); nothing is pickled.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ..files import read_image_list
from ..io import ImageError, load_pil
from ..synth.corpus import Corpus, refuse_test_split
from .aria import AriaConfig, perturb_views
from .cmaa import CMAA, CONFIGS, CMAAConfig, cosine_schedule, median_signs, with_losses
from ..runtime import check_tone, preprocess
from .checkpoint import load_weights, model_state
from .views import ViewConfig, three_views, training_original

# The paper's Table 8: which of L_D, L_R, L_Q train besides L_C.
ABLATIONS = {
    "full": (True, True, True),
    "a": (False, False, True),  # L_C + L_Q
    "b": (True, False, True),  # + L_D
    "c": (False, True, True),  # + L_R
    "d": (True, True, False),  # all but L_Q
}


@dataclass(frozen=True)
class TrainConfig:
    model: str = "small"
    ablation: str = "full"
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 0.01  # SGD, momentum 0.9, weight decay 1e-4, cosine to 0 (the paper's)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    loader_workers: int = 1
    views: ViewConfig = field(default_factory=ViewConfig)
    # Fine-tuning: start from these weights (``export.save_weights``' file), not from scratch.
    init: str | None = None
    # ARIA: the inner maximisation over ℓ∞-bounded perturbations (models.aria); None trains plain CMAA.
    adversarial: AriaConfig | None = None
    # Weight of the KoLeo entropy term (CMAAConfig.koleo); 0: the paper's losses only.
    koleo: float = 0.0
    # Weight of the anchor term (CMAAConfig.anchor); its teacher is the frozen ``init`` model.
    anchor: float = 0.0
    # The model's tone rule (CMAAConfig.tone, runtime.TONES); an ``init`` model of another
    # rule is fine-tuned to this one.
    tone: str = "rgb"

    def model_config(self) -> CMAAConfig:
        if self.model not in CONFIGS:
            raise ValueError(f"unknown model config {self.model!r}; choose from {', '.join(CONFIGS)}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablation!r}; choose from {', '.join(ABLATIONS)}")
        if self.anchor and not self.init:
            raise ValueError("the anchor term needs --init: its teacher is the model fine-tuned from")
        return replace(with_losses(CONFIGS[self.model], *ABLATIONS[self.ablation]), koleo=self.koleo,
                       anchor=self.anchor, tone=check_tone(self.tone))


def read_training_list(path: Path) -> list[Path]:
    """Photos of a train list (one path per line, relative to the list). The corpus's
    test and validation lists are refused (``synth.corpus.refuse_test_split``), and the
    photos of a validation list beside it are left out (they choose between models)."""
    photos = read_image_list(refuse_test_split(path))
    held = {p.resolve() for p in Corpus(path.parent).validation()}
    kept = [p for p in photos if p.resolve() not in held]
    if len(kept) < len(photos):
        print(f"{path}: {len(photos) - len(kept)} photos of the validation share left out", file=sys.stderr)
    return kept


class TrainingSamples(torch.utils.data.Dataset):
    """Sample k → three views (float32 tensors) of training original k, preprocessed by
    the model's input rule, and the original itself where the run has an anchor term,
    preprocessed by its teacher's rule (``teacher_tone``: the teacher hashes it)."""

    def __init__(self, photos: list[Path], cutouts: list[Path], image_size: int, config: TrainConfig,
                 teacher_tone: str = "rgb"):
        if not photos:
            raise ValueError("no training photos")
        self.photos, self.cutout_paths = photos, cutouts
        self.image_size, self.config, self.teacher_tone = image_size, config, teacher_tone
        self._cutouts: list[Image.Image] | None = None

    def __len__(self) -> int:
        return 2**62  # samples are numbered, not enumerated (see the module docstring)

    def photo_for(self, k: int) -> Path:
        n = len(self.photos)
        order = np.random.default_rng([self.config.seed, k // n]).permutation(n)
        return self.photos[order[k % n]]

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._cutouts is None:  # loaded lazily, once per loader process
            self._cutouts = [Image.open(p).convert("RGBA") for p in self.cutout_paths]
        rng = np.random.default_rng([self.config.seed, k])
        views = self.config.views
        original = training_original(self.load(self.photo_for(k)), rng, views, self._cutouts)
        made = three_views(original, rng, views, self._cutouts, self.another_original)
        inputs = [preprocess(v, self.image_size, self.config.tone) for v in made]
        if self.config.anchor:
            inputs.append(preprocess(original, self.image_size, self.teacher_tone))
        return tuple(torch.from_numpy(x) for x in inputs)

    def load(self, path: Path) -> Image.Image:
        try:
            return load_pil(path, draft_size=self.config.views.work_size * 2)
        except ImageError:
            # A broken photo must not end a run of hours: it becomes one flat grey sample.
            return Image.new("RGB", (64, 64), (128, 128, 128))

    def another_original(self, rng: np.random.Generator) -> Image.Image:
        """A training original of a photo picked by ``rng``, for the wide views' cutmix and
        mixup (loaded only when a view draws one; ``rng`` is the sample's, so a seed fixes it)."""
        photo = self.load(self.photos[int(rng.integers(len(self.photos)))])
        return training_original(photo, rng, self.config.views)


class SequentialFrom(torch.utils.data.Sampler):
    """Sample numbers ``start, start+1, …`` (resuming continues the sequence)."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


Progress = Callable[[int, int, dict], None]


def train(photos: list[Path], cutouts: list[Path], out: Path, config: TrainConfig,
          progress: Progress | None = None, device: str | None = None, stop_at: int | None = None) -> Path:
    """Train (or resume) into ``out``; returns the final checkpoint's weights file.
    ``stop_at``: end this call after that step, checkpointed (the schedule is still
    ``config.steps``'; a later call resumes), as a run cut short by its budget is."""
    out.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model = CMAA(config.model_config()).to(device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    step, random_state = load_checkpoint(out, model, optimizer, config)
    if stop_at is not None and step >= stop_at:
        return out / "checkpoint.safetensors"  # stopped there already: nothing to do
    if step == 0 and config.init:
        start_from(model, Path(config.init))
    teacher, teacher_tone = frozen_teacher(Path(config.init), device) if config.anchor else (None, "rgb")
    samples = TrainingSamples(photos, cutouts, model.config.img_size, config, teacher_tone)
    loader = torch.utils.data.DataLoader(
        samples, batch_size=config.batch_size, num_workers=config.loader_workers,
        sampler=SequentialFrom(step * config.batch_size, config.steps * config.batch_size),
        persistent_workers=config.loader_workers > 0,
    )
    model.train()
    log = (out / "log.jsonl").open("a")
    started, seen = time.perf_counter(), 0
    batches = iter(loader)  # takes a seed from the stream, as it did when the run began
    if random_state is not None:
        torch.set_rng_state(random_state)
    for views in batches:
        lr = cosine_schedule(step, config.steps, config.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        views = [v.to(device) for v in views]
        codes = None
        if teacher is not None:
            with torch.no_grad():
                codes = median_signs(teacher(views.pop()))
        if config.adversarial:
            generator = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + step)
            views[0], views[1] = perturb_views(model, *views, config.adversarial, generator)
        losses = model.forward_loss(*views, anchor_codes=codes)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        step += 1
        seen += len(views[0])
        record = {"step": step, "lr": lr, **{k: round(v.item(), 5) for k, v in losses.items()},
                  "images_per_s": round(seen / (time.perf_counter() - started), 2)}
        if step % config.log_every == 0 or step == config.steps:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if progress:
            progress(step, config.steps, record)
        if step % config.checkpoint_every == 0 or step == config.steps or step == stop_at:
            save_checkpoint(out, model, optimizer, config, step)
        if step == stop_at:
            break
    log.close()
    return out / "checkpoint.safetensors"


def start_from(model: CMAA, weights: Path) -> None:
    """Load ``export.save_weights``' file into ``model`` (same configuration), the
    momentum encoder as a copy of the encoder: the start of a fine-tuning run."""
    trained = load_weights(weights)
    # The losses a run trains with and the input rule it trains to are its own; the
    # network must be the same.
    own = {name: getattr(model.config, name) for name in (*CMAAConfig.LOSSES, *CMAAConfig.INPUT)}
    if replace(trained.config, **own) != model.config:
        raise ValueError(f"{weights} holds a model of another configuration than this run's")
    model.load_state_dict(trained.state_dict())


def frozen_teacher(weights: Path, device: str) -> tuple[torch.nn.Module, str]:
    """The encoder of ``weights``, frozen, in eval mode: the anchor term's teacher; and
    its tone rule, by which it sees the originals."""
    model = load_weights(weights)
    encoder = model.encoder.to(device).eval()
    for p in encoder.parameters():
        p.requires_grad = False
    return encoder, model.config.tone


def save_checkpoint(out: Path, model: CMAA, optimizer: torch.optim.Optimizer, config: TrainConfig, step: int) -> None:
    """Weights, bank and optimizer buffers (safetensors) and the step (JSON), each
    written to a temporary name and renamed, so a kill never leaves half a checkpoint."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, p in enumerate(p for p in model.parameters() if p.requires_grad):
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"optimizer.{i}.momentum_buffer"] = buffer.detach().cpu().contiguous()
    # The random stream (masks, the bank's start) goes on where it stopped: a resumed
    # run is the uninterrupted one.
    tensors["rng.cpu"] = torch.get_rng_state()
    meta = {"step": step, "train": _jsonable(config), "model": asdict(model.config)}
    save_file(tensors, out / "checkpoint.safetensors.tmp")
    (out / "checkpoint.json.tmp").write_text(json.dumps(meta, indent=1))
    (out / "checkpoint.safetensors.tmp").replace(out / "checkpoint.safetensors")
    (out / "checkpoint.json.tmp").replace(out / "checkpoint.json")


def load_checkpoint(out: Path, model: CMAA, optimizer: torch.optim.Optimizer,
                    config: TrainConfig) -> tuple[int, torch.Tensor | None]:
    """Resume from ``out`` if it holds a checkpoint of the same configuration: the step,
    and the random state it was saved with (None from a checkpoint made before that was
    kept: such a run resumes on the seed's stream)."""
    weights, meta_path = out / "checkpoint.safetensors", out / "checkpoint.json"
    if not weights.exists() or not meta_path.exists():
        return 0, None
    meta = json.loads(meta_path.read_text())
    stored = _with_defaults(meta["train"], _jsonable(TrainConfig()))
    if stored != _jsonable(replace(config, loader_workers=stored["loader_workers"])):
        raise ValueError(f"{out} holds a checkpoint of another configuration; use another folder")
    tensors = load_file(weights)
    device = next(model.parameters()).device
    model.load_state_dict(model_state(tensors))
    params = [p for p in model.parameters() if p.requires_grad]
    for i, p in enumerate(params):
        buffer = tensors.get(f"optimizer.{i}.momentum_buffer")
        if buffer is not None:
            optimizer.state[p]["momentum_buffer"] = buffer.to(device)
    return int(meta["step"]), tensors.get("rng.cpu")


def _jsonable(config: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))


def _with_defaults(stored: dict, defaults: dict) -> dict:
    """``stored`` (a checkpoint's config) with the fields it predates set to their
    defaults: a run saved before ``views.augment`` existed resumes as a table1 run."""
    filled = dict(stored)
    for key, value in defaults.items():
        if key not in filled:
            filled[key] = value
        elif isinstance(value, dict) and isinstance(filled[key], dict):
            filled[key] = _with_defaults(filled[key], value)
    return filled
