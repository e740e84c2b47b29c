"""CMAA: Contrastive Masked Autoencoder with weak-strong Augmentation alignment
(Yang et al., AAAI 2025), one module that reads like the paper, loss by loss.

Three views of each image, each from one weak (Table 1) attack:

* view 1 also gets the strong attack and goes through the encoder E  → u¹;
* view 2 loses 30% of its patches (``random_masking``); its visible patches go through
  E (``forward_encoder``) → u², and a light ViT decoder reconstructs the masked
  patches from its tokens (``forward_decoder``);
* view 3 goes through the momentum encoder E_m, an EMA of E (``_update_momentum_encoder``)
  → u³, which also fills a FIFO memory bank of negatives.

Losses, equal weights (Eq. 7): ``contrastive_loss`` L_C (InfoNCE of u² against u³ and
the bank), ``alignment_loss`` L_D (the strong view's distribution over positive + bank
learns the weak view's), ``reconstruction_loss`` L_R (MSE on masked patches),
``quantization_loss`` L_Q (cosine between u and its median binarisation, through a
straight-through estimator). A hash is the median binarisation of u (``hash_bits``).

Needs torch (the ``train`` extra); inference ships as ONNX and runs without it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CMAAConfig:
    img_size: int = 96
    patch_size: int = 16
    width: int = 192
    depth: int = 6
    heads: int = 3
    proj_hidden: int = 1024
    hash_bits: int = 128  # l
    decoder_width: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.3
    momentum: float = 0.999
    bank_size: int = 2048  # K
    temperature: float = 0.1
    # Which losses train (the paper's Table 8 ablations switch these off).
    use_alignment: bool = True  # L_D
    use_reconstruction: bool = True  # L_R
    use_quantization: bool = True  # L_Q
    # Weight of SSCD's KoLeo entropy term on the hash features (not in the paper; 0: off):
    # it spreads a batch's features apart, against the collapse of v2's first run.
    koleo: float = 0.0
    # Weight of the anchor term (not in the paper; 0: off): views must keep the hash a
    # frozen teacher gives their clean original, so fine-tuning for invariance cannot
    # trade away the teacher's spread (the collapse of v2's wide runs).
    anchor: float = 0.0
    # What the model sees of an image's tones (``runtime.TONES``): part of its input rule,
    # not of the network, so a model may be fine-tuned from one rule to another.
    tone: str = "rgb"

    # The fields above that choose what a run trains, not what the network is.
    LOSSES = ("use_alignment", "use_reconstruction", "use_quantization", "koleo", "anchor")
    INPUT = ("tone",)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


# The paper's model (ViT-S/16 at 224 px), for machines with GPUs; and one that trains
# to a useful model on 2 CPU cores in a few hours.
PAPER = CMAAConfig(img_size=224, patch_size=16, width=384, depth=12, heads=6, proj_hidden=4096,
                   decoder_width=512, decoder_depth=8, decoder_heads=16)
# 96 px (36 tokens) rather than 128 px: a training step is twice as fast on 2 cores,
# and a budget of about an hour sees ~2× more samples. EMA 0.99 instead of the paper's
# 0.999: over a run of a few thousand steps a 0.999 teacher would lag a third of it.
SMALL = CMAAConfig(img_size=96, momentum=0.99)
# For tests and smoke runs only: trains in seconds, learns little.
TINY = CMAAConfig(img_size=32, patch_size=8, width=32, depth=1, heads=2, proj_hidden=32, hash_bits=16,
                  decoder_width=16, decoder_depth=1, decoder_heads=2, bank_size=16)
CONFIGS = {"paper": PAPER, "small": SMALL, "tiny": TINY}


def sincos_position_embedding(width: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, ``(grid*grid, width)`` (as MAE)."""
    if width % 4:
        raise ValueError(f"width {width} must be a multiple of 4 for 2-D sin-cos embeddings")
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                            indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float64) / (width / 4))
    parts = []
    for pos in (xs.flatten(), ys.flatten()):
        angles = pos[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """ViT encoder E: patches → tokens → mean-pooled → projection head → L2-normalised u."""

    def __init__(self, config: CMAAConfig):
        super().__init__()
        c = config
        self.patch_embed = nn.Conv2d(3, c.width, kernel_size=c.patch_size, stride=c.patch_size)
        grid = c.img_size // c.patch_size
        self.register_buffer("pos_embed", sincos_position_embedding(c.width, grid)[None], persistent=False)
        self.blocks = nn.Sequential(*[Block(c.width, c.heads) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.width)
        # FC-BN-ReLU, FC-BN-ReLU, FC (the paper's projection head) to l dimensions.
        self.projection = nn.Sequential(
            nn.Linear(c.width, c.proj_hidden), nn.BatchNorm1d(c.proj_hidden), nn.ReLU(inplace=True),
            nn.Linear(c.proj_hidden, c.proj_hidden), nn.BatchNorm1d(c.proj_hidden), nn.ReLU(inplace=True),
            nn.Linear(c.proj_hidden, c.hash_bits),
        )

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with position embeddings, ``(B, T, width)``."""
        return self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformer over (visible) tokens → (tokens z, normalised feature u)."""
        z = self.norm(self.blocks(tokens))
        u = F.normalize(self.projection(z.mean(dim=1)), dim=1)
        return z, u

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(self.tokens(images))[1]


class Decoder(nn.Module):
    """Light ViT decoder: visible tokens + mask tokens → pixels of every patch."""

    def __init__(self, config: CMAAConfig):
        super().__init__()
        c = config
        self.embed = nn.Linear(c.width, c.decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_width))
        grid = c.img_size // c.patch_size
        self.register_buffer("pos_embed", sincos_position_embedding(c.decoder_width, grid)[None], persistent=False)
        self.blocks = nn.Sequential(*[Block(c.decoder_width, c.decoder_heads) for _ in range(c.decoder_depth)])
        self.norm = nn.LayerNorm(c.decoder_width)
        self.predict = nn.Linear(c.decoder_width, c.patch_size**2 * 3)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, visible: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.embed(visible)
        missing = ids_restore.shape[1] - x.shape[1]
        x = torch.cat([x, self.mask_token.expand(x.shape[0], missing, -1)], dim=1)
        x = torch.gather(x, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[2]))  # back to image order
        return self.predict(self.norm(self.blocks(x + self.pos_embed)))


class CMAA(nn.Module):
    """The CMAA model: encoder, momentum encoder, decoder, memory bank and losses."""

    def __init__(self, config: CMAAConfig = SMALL):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.momentum_encoder = copy.deepcopy(self.encoder)
        for p in self.momentum_encoder.parameters():
            p.requires_grad = False
        self.decoder = Decoder(config)
        bank = F.normalize(torch.randn(config.bank_size, config.hash_bits), dim=1)
        self.register_buffer("bank", bank)
        self.register_buffer("bank_ptr", torch.zeros((), dtype=torch.long))

    # --- the paper's steps -----------------------------------------------------------

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → ``(B, T, p*p*3)`` patch pixels, in token order."""
        p = self.config.patch_size
        b, c, h, w = images.shape
        x = images.reshape(b, c, h // p, p, w // p, p)
        return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)

    def random_masking(self, tokens: torch.Tensor, generator: torch.Generator | None = None):
        """Keep a random (1 − m) of each image's tokens (MAE): returns the visible tokens,
        the mask (1 = masked, in image order) and the permutation that restores order."""
        b, t, d = tokens.shape
        keep = int(round(t * (1 - self.config.mask_ratio)))
        noise = torch.rand(b, t, device=tokens.device, generator=generator)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        visible = torch.gather(tokens, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(b, t, device=tokens.device)
        mask[:, :keep] = 0
        return visible, torch.gather(mask, 1, ids_restore), ids_restore

    def forward_encoder(self, images: torch.Tensor, mask: bool = False):
        """u (and, for a masked view, its visible tokens, mask and restore order)."""
        tokens = self.encoder.tokens(images)
        if not mask:
            return self.encoder.encode(tokens)[1], None, None, None
        visible, patch_mask, ids_restore = self.random_masking(tokens)
        z, u = self.encoder.encode(visible)
        return u, z, patch_mask, ids_restore

    def forward_decoder(self, z: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, ids_restore)

    @torch.no_grad()
    def _update_momentum_encoder(self) -> None:
        m = self.config.momentum
        for online, target in zip(self.encoder.parameters(), self.momentum_encoder.parameters()):
            target.mul_(m).add_(online.detach(), alpha=1 - m)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """FIFO memory bank of momentum features."""
        n, size = keys.shape[0], self.bank.shape[0]
        idx = (self.bank_ptr + torch.arange(n, device=keys.device)) % size
        self.bank[idx] = keys
        self.bank_ptr.copy_((self.bank_ptr + n) % size)

    def _logits(self, u: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """Similarities of u to its positive (column 0) and to the bank, over τ."""
        pos = (u * positive).sum(dim=1, keepdim=True)
        neg = u @ self.bank.clone().detach().T
        return torch.cat([pos, neg], dim=1) / self.config.temperature

    def contrastive_loss(self, u2: torch.Tensor, u3: torch.Tensor) -> torch.Tensor:
        """L_C (Eq. 1): InfoNCE, the positive u³ among the bank's negatives."""
        logits = self._logits(u2, u3)
        return F.cross_entropy(logits, torch.zeros(len(u2), dtype=torch.long, device=u2.device))

    def alignment_loss(self, u1: torch.Tensor, u2: torch.Tensor, u3: torch.Tensor) -> torch.Tensor:
        """L_D (Eq. 3), weak-strong alignment: −Σ p(·|u²) log p(·|u¹) over positive +
        bank. The weak view's distribution is the target (detached), so the strong view
        learns the weak view's discrimination."""
        target = F.softmax(self._logits(u2, u3), dim=1).detach()
        return -(target * F.log_softmax(self._logits(u1, u3), dim=1)).sum(dim=1).mean()

    def reconstruction_loss(self, images: torch.Tensor, predicted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L_R (Eq. 4): mean squared error on the masked patches only."""
        per_patch = ((predicted - self.patchify(images)) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)

    def quantization_loss(self, *features: torch.Tensor) -> torch.Tensor:
        """L_Q (Eq. 5): 1 − cos(u, f) with f the median binarisation of u (±1),
        through a straight-through estimator; summed over the views given."""
        return sum((1 - F.cosine_similarity(u, binarize(u), dim=1)).mean() for u in features)

    def entropy_loss(self, *features: torch.Tensor) -> torch.Tensor:
        """KoLeo (Sablayrolles et al. 2019, as SSCD uses it): −mean log of each feature's
        distance to its nearest neighbour in the batch, on the unit sphere; averaged over
        the views given."""
        total = 0.0
        for u in features:
            x = F.normalize(u, dim=1)
            distances = torch.cdist(x, x) + torch.eye(len(x), device=x.device) * 1e3
            total = total - torch.log(distances.min(dim=1).values + 1e-8).mean()
        return total / len(features)

    def anchor_loss(self, codes: torch.Tensor, *features: torch.Tensor) -> torch.Tensor:
        """1 − cos(u, c) of each view's u against c, the teacher's hash (±1) of the view's
        clean original: L_Q's form, with the teacher's hash of the original in place of
        the view's own. The targets are fixed and as spread as the teacher's hashes, so
        they cannot collapse together; averaged over the views given."""
        return sum((1 - F.cosine_similarity(u, codes, dim=1)).mean() for u in features) / len(features)

    def forward_loss(self, view1_strong: torch.Tensor, view2: torch.Tensor, view3: torch.Tensor,
                     anchor_codes: torch.Tensor | None = None) -> dict:
        """All losses of one batch (Eq. 7); ``total`` is what training minimises.
        ``anchor_codes``: the teacher's ±1 hashes of the views' originals, for the anchor term."""
        u1, _, _, _ = self.forward_encoder(view1_strong)
        u2, z2, mask, ids_restore = self.forward_encoder(view2, mask=True)
        with torch.no_grad():
            self._update_momentum_encoder()
            u3 = self.momentum_encoder(view3)
        losses = {"contrastive": self.contrastive_loss(u2, u3)}
        if self.config.use_alignment:
            losses["alignment"] = self.alignment_loss(u1, u2, u3)
        if self.config.use_reconstruction:
            losses["reconstruction"] = self.reconstruction_loss(view2, self.forward_decoder(z2, ids_restore), mask)
        if self.config.use_quantization:
            losses["quantization"] = self.quantization_loss(u1, u2)
        losses["total"] = sum(losses.values())
        if self.config.koleo:
            losses["entropy"] = self.entropy_loss(u1, u2)
            losses["total"] = losses["total"] + self.config.koleo * losses["entropy"]
        if self.config.anchor:
            if anchor_codes is None:
                raise ValueError("the anchor term needs the teacher's hashes of the originals")
            losses["anchor"] = self.anchor_loss(anchor_codes, u1, u2)
            losses["total"] = losses["total"] + self.config.anchor * losses["anchor"]
        self._enqueue(u3)
        return losses

    @torch.no_grad()
    def hash_bits(self, images: torch.Tensor) -> torch.Tensor:
        """The l-bit hashes (bool) of a batch: u above its own median (Eq. 6)."""
        return median_bits(self.encoder(images))


def median_bits(u: torch.Tensor) -> torch.Tensor:
    """Bit j is 1 where u_j exceeds the median of the vector (Eq. 6)."""
    return u > u.median(dim=1, keepdim=True).values


def median_signs(u: torch.Tensor) -> torch.Tensor:
    """The hash as ±1: +1 where u exceeds its median (:func:`median_bits`), else −1."""
    return median_bits(u).float() * 2 - 1


def binarize(u: torch.Tensor) -> torch.Tensor:
    """±1 median binarisation in the forward pass, identity gradient backward (STE)."""
    return u + (median_signs(u) - u).detach()


def with_losses(config: CMAAConfig, alignment: bool, reconstruction: bool, quantization: bool) -> CMAAConfig:
    """A configuration for one of the paper's Table 8 ablations."""
    return replace(config, use_alignment=alignment, use_reconstruction=reconstruction, use_quantization=quantization)


def cosine_schedule(step: int, total: int, base_lr: float) -> float:
    """Cosine decay to 0 over ``total`` steps (the paper's schedule)."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
