"""The CMAA model's steps and losses on a tiny configuration (CPU, seconds)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from robusthash.models.cmaa import CMAA, CMAAConfig, binarize, median_bits, with_losses  # noqa: E402

TINY = CMAAConfig(img_size=32, patch_size=8, width=32, depth=1, heads=2, proj_hidden=32, hash_bits=16,
                  decoder_width=16, decoder_depth=1, decoder_heads=2, bank_size=12)


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 3, 32, 32, generator=g) for _ in range(3)]


def test_random_masking_keeps_seventy_percent_and_restores_order():
    torch.manual_seed(0)
    model = CMAA(TINY)
    tokens = torch.arange(2 * 16 * 4, dtype=torch.float32).reshape(2, 16, 4)
    visible, mask, ids_restore = model.random_masking(tokens)
    assert visible.shape == (2, 11, 4)  # round(16 × 0.7)
    assert mask.sum(dim=1).tolist() == [5, 5]
    for b in range(2):
        kept = tokens[b][mask[b] == 0]
        assert sorted(kept[:, 0].tolist()) == sorted(visible[b, :, 0].tolist())
        assert (ids_restore[b].sort().values == torch.arange(16)).all()


def test_patchify_orders_patches_like_the_tokens():
    model = CMAA(TINY)
    images = torch.rand(1, 3, 32, 32)
    patches = model.patchify(images)
    assert patches.shape == (1, 16, 8 * 8 * 3)
    # patch 5 is row 1, column 1: pixels [8:16, 8:16], channel last
    expected = images[0, :, 8:16, 8:16].permute(1, 2, 0).reshape(-1)
    assert torch.equal(patches[0, 5], expected)


def test_forward_loss_has_every_loss_and_trains():
    torch.manual_seed(0)
    model = CMAA(TINY)
    losses = model.forward_loss(*batch())
    assert set(losses) == {"contrastive", "alignment", "reconstruction", "quantization", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert model.encoder.patch_embed.weight.grad is not None
    assert all(p.grad is None for p in model.momentum_encoder.parameters())


@pytest.mark.parametrize("flags,keys", [
    ((False, False, True), {"contrastive", "quantization"}),
    ((True, False, True), {"contrastive", "alignment", "quantization"}),
    ((False, True, True), {"contrastive", "reconstruction", "quantization"}),
    ((True, True, False), {"contrastive", "alignment", "reconstruction"}),
])
def test_ablations_switch_losses_off(flags, keys):
    model = CMAA(with_losses(TINY, *flags))
    assert set(model.forward_loss(*batch())) == keys | {"total"}


def test_momentum_encoder_follows_the_encoder_slowly():
    model = CMAA(TINY)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.momentum_encoder.parameters()]
    model._update_momentum_encoder()
    for old, new, online in zip(before, model.momentum_encoder.parameters(), model.encoder.parameters()):
        assert torch.allclose(new, 0.999 * old + 0.001 * online)


def test_memory_bank_is_a_fifo():
    model = CMAA(TINY)
    keys = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    model._enqueue(keys)
    model._enqueue(keys[:6])
    assert int(model.bank_ptr) == (8 + 6) % 12
    assert torch.equal(model.bank[8:12], keys[:4]) and torch.equal(model.bank[0:2], keys[4:6])


def test_binarization_is_balanced_and_straight_through():
    torch.manual_seed(0)
    u = torch.randn(4, 16, requires_grad=True)
    f = binarize(u)
    # ±1 up to float rounding: the straight-through form u + (s - u) is s within an ulp of u
    signs = median_bits(u).float() * 2 - 1
    assert torch.allclose(f.detach(), signs, rtol=0, atol=1e-6)
    assert (median_bits(u).sum(dim=1) == 8).all()
    f.sum().backward()
    assert torch.equal(u.grad, torch.ones_like(u))


def test_contrastive_loss_prefers_the_positive():
    model = CMAA(TINY)
    u = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    other = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    assert model.contrastive_loss(u, u) < model.contrastive_loss(u, other)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = CMAA(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    views = batch(8)
    history = []
    for _ in range(40):
        losses = model.forward_loss(*views)
        history.append(losses["reconstruction"].item())
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    assert history[-1] < 0.8 * history[0]
