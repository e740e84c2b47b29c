"""Realisable adversarial attacks on learned hashers (ARIA, Andriushchenko et al.,
section 3.2): white-box PGD on the model's feature, untargeted (push a copy's hash
away from its original's, Eq. 1) and targeted (pull it onto another image's hash,
Eq. 2), and hash inversion (Eq. 9).

*Realisable* means the perturbation lives where an attacker's file does: in the image's
own pixels, at its own size. Every step goes through what happens to the file before the
model sees it, made differentiable: JPEG at quality 90 (``differentiable_jpeg``: 4:2:0
chroma, 8×8 DCT, the standard quantisation tables, rounding with a cubic
straight-through gradient) and the resize to the model's input (bilinear with
antialiasing, as Pillow's). The result is written as a real JPEG file, and success is
read from the shipped hasher (ONNX) on that file, never from the gradient model.

The gradient model is the shipped safetensors weights in torch (``load_weights``); the
shipped ONNX model is their int8 export, whose hashes differ by about one bit of 128
(docs/models/cmaa.md), so attacks are also a small transfer from one to the other.

Needs torch (``pip install robusthash[train]``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..models.cmaa import median_signs  # noqa: F401 - the attacks' API
from ..models.pgd import PGDConfig, l2_radius, pgd  # noqa: F401 - the attacks' API
from ..runtime import LUMA, MEAN, STD, STRETCH_GAIN, STRETCH_PERCENTILES, check_tone
from .transforms import jpeg

# The IJG tables of the JPEG standard (Annex K), quality 50; ``quant_tables`` scales them.
LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float32).reshape(8, 8)
CHROMA_TABLE = np.full((8, 8), 99, dtype=np.float32)
CHROMA_TABLE[:4, :4] = np.array([17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 99, 47, 66, 99, 99]).reshape(4, 4)


def quant_tables(quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Luma and chroma quantisation tables at ``quality`` (1–100), scaled as libjpeg does."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, not {quality}")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return tuple(torch.from_numpy(np.clip(np.floor((t * scale + 50) / 100), 1, 255))  # type: ignore[return-value]
                 for t in (LUMA_TABLE, CHROMA_TABLE))


def _dct_matrix() -> torch.Tensor:
    k, n = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    d = np.sqrt(2 / 8) * np.cos((2 * n + 1) * k * np.pi / 16)
    d[0] /= np.sqrt(2)
    return torch.from_numpy(d.astype(np.float32))


DCT = _dct_matrix()


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding forward, identity backward (straight-through). Shin and Song's cubic
    round(x) + (x − round(x))³ passes 3(x − round(x))², a quarter on average and none at
    whole numbers, which steers signed steps worse."""
    return x + (torch.round(x) - x).detach()


def _blockwise(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """DCT, quantise, round, dequantise, inverse DCT, on the 8×8 blocks of ``plane`` (B, H, W)."""
    b, h, w = plane.shape
    blocks = plane.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coefficients = DCT @ blocks @ DCT.T
    restored = DCT.T @ (round_ste(coefficients / table) * table) @ DCT
    return restored.permute(0, 1, 3, 2, 4).reshape(b, h, w)


def differentiable_jpeg(x: torch.Tensor, quality: int = 90) -> torch.Tensor:
    """JPEG compression and decompression of ``x`` (B, 3, H, W) in [0, 1], differentiable:
    JFIF YCbCr, 4:2:0 chroma (2×2 means, upsampled back), level shift, 8×8 DCT, the
    standard tables at ``quality``. Pillow's encoder at the same quality and 4:2:0 gives
    pixels within a few levels of it (tests/test_adversarial.py)."""
    luma_table, chroma_table = quant_tables(quality)
    _, _, h, w = x.shape
    pad_h, pad_w = (-h) % 16, (-w) % 16
    padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") * 255
    r, g, b = padded[:, 0], padded[:, 1], padded[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    y = _blockwise(y - 128, luma_table) + 128
    chroma = F.avg_pool2d(torch.stack([cb, cr], dim=1), 2)
    chroma = torch.stack([_blockwise(chroma[:, i] - 128, chroma_table) + 128 for i in range(2)], dim=1)
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    cb, cr = chroma[:, 0] - 128, chroma[:, 1] - 128
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1) / 255
    return rgb[:, :, :h, :w].clamp(0, 1)


def model_input(x: torch.Tensor, size: int, tone: str = "rgb") -> torch.Tensor:
    """The learned hashers' input rule (``runtime.preprocess``) in torch: resize to
    ``size`` × ``size`` (bilinear, antialiased as Pillow's), the tone rule, ImageNet
    normalisation. The stretch's percentiles are differentiable (a quantile is an
    interpolation of sorted values), so an attack sees through it."""
    resized = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if check_tone(tone) == "stretched-grey":
        grey = torch.einsum("bchw,c->bhw", resized, torch.from_numpy(LUMA))
        bounds = torch.quantile(grey.flatten(1), torch.tensor(STRETCH_PERCENTILES) / 100, dim=1)
        low = bounds[0][:, None, None]
        span = (bounds[1] - bounds[0]).clamp_min(1.0 / STRETCH_GAIN)[:, None, None]
        resized = ((grey - low) / span).clamp(0, 1)[:, None].expand(-1, 3, -1, -1)
    return (resized - torch.from_numpy(MEAN)[:, None, None]) / torch.from_numpy(STD)[:, None, None]


class Fingerprint(torch.nn.Module):
    """Pixels of a file (B, 3, H, W, in [0, 1]) → what the file's hash is made from: the
    normalised feature u of the encoder, after JPEG (when ``jpeg_quality``) and the resize."""

    def __init__(self, encoder: torch.nn.Module, size: int, jpeg_quality: int | None = 90, tone: str = "rgb"):
        super().__init__()
        self.encoder = encoder.eval()
        self.size, self.tone = size, tone
        self.jpeg_quality = jpeg_quality
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.jpeg_quality:
            pixels = differentiable_jpeg(pixels, self.jpeg_quality)
        return self.encoder(model_input(pixels, self.size, self.tone))


# The learned hashers whose torch weights ship beside their ONNX model: white-box targets.
WHITE_BOX = {"cmaa": "cmaa-small.safetensors", "aria": "aria-small.safetensors"}


def shipped_fingerprint(jpeg_quality: int | None = 90, method: str = "cmaa") -> Fingerprint:
    """A learned hasher's model in torch, from its shipped safetensors weights."""
    from ..runtime import shipped_model
    from ..models.export import load_weights

    if method not in WHITE_BOX:
        raise ValueError(f"{method!r} has no white-box model; white-box methods: {', '.join(WHITE_BOX)}")
    model = load_weights(shipped_model(WHITE_BOX[method]))
    return Fingerprint(model.encoder, model.config.img_size, jpeg_quality, model.config.tone)


def untargeted(fingerprint: Fingerprint, x: torch.Tensor, config: PGDConfig = PGDConfig(),
               progress: Callable[[int, float], None] | None = None,
               original: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1: maximise ‖φ(x + δ) − φ(original)‖², so the copy's hash leaves its
    original's; ``original`` (pixels of any size) defaults to ``x`` itself."""
    with torch.no_grad():
        original = fingerprint(x if original is None else original)
    return pgd(lambda p: -((fingerprint(p) - original) ** 2).sum(), x, config, progress)


def targeted(fingerprint: Fingerprint, x: torch.Tensor, target: torch.Tensor, config: PGDConfig = PGDConfig(),
             progress: Callable[[int, float], None] | None = None) -> torch.Tensor:
    """Eq. 2: minimise ‖φ(x + δ) − φ(target)‖², so the copy's hash becomes ``target``'s."""
    with torch.no_grad():
        wanted = fingerprint(target)
    return pgd(lambda p: ((fingerprint(p) - wanted) ** 2).sum(), x, config, progress)


def invert(fingerprint: Fingerprint, x: torch.Tensor, size: int = 96, steps: int = 1000, beta: float = 10.0,
           lr: float = 0.01, progress: Callable[[int, float], None] | None = None) -> tuple[torch.Tensor, int]:
    """Eq. 9, hash inversion: from a constant grey image, minimise
    ‖tanh(β · (φ(x̂) − median)) − sign(φ(x) − median)‖² over x̂ in [0, 1] (no budget), until
    the hash matches exactly or ``steps`` run out. Returns x̂ and the steps taken.

    Projected Adam rather than signed steps: with signed steps of 1/255 the coffee photo
    stayed 16 bits off after 1000 steps; Adam (lr 0.01, β = 10) matched it exactly in 239.
    β = 50 left 16 bits: the features are ~0.1 in size, and tanh saturates too early."""
    with torch.no_grad():
        signs = median_signs(fingerprint(x))
    guess = torch.full((1, 3, size, size), 0.5, requires_grad=True)
    optimizer = torch.optim.Adam([guess], lr=lr)
    for i in range(steps):
        u = fingerprint(guess)
        if torch.equal(median_signs(u), signs):
            return guess.detach(), i
        loss = ((torch.tanh(beta * (u - u.median(dim=1, keepdim=True).values)) - signs) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            guess.clamp_(0, 1)
        if progress:
            progress(i + 1, loss.item())
    return guess.detach(), steps


def to_tensor(im: Image.Image) -> torch.Tensor:
    """An RGB PIL image as (1, 3, H, W) in [0, 1]."""
    pixels = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None]


def to_image(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in [0, 1] → an RGB PIL image (rounded to 8 bits)."""
    pixels = (x[0].detach().clamp(0, 1).numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return Image.fromarray(pixels)


def published(x: torch.Tensor, jpeg_quality: int | None = 90) -> Image.Image:
    """The 8-bit file an attacker publishes from pixels (1, 3, H, W) in [0, 1], as it
    decodes again: JPEG at ``jpeg_quality`` (the JC attack: Pillow's encoder, 4:2:0, as
    :func:`save` writes it), else the rounded pixels themselves."""
    im = to_image(x)
    return jpeg(im, jpeg_quality) if jpeg_quality else im


def save(x: torch.Tensor, path, jpeg_quality: int | None = 90) -> None:
    """Write the attacked pixels as the file the attacker would publish: JPEG at
    ``jpeg_quality`` with 4:2:0 chroma (what ``differentiable_jpeg`` models), else PNG."""
    im = to_image(x)
    if jpeg_quality:
        im.save(path, format="JPEG", quality=jpeg_quality, subsampling=2)
    else:
        im.save(path, format="PNG")
