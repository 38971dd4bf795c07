"""Decoding to a palette: colours found in frames, the head's warm start, its loss and latent key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim.frames import frames_to_float
from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder, autoencoder_loss
from worldsim.models.palette import PaletteHead, find_palette, palette_targets, palette_tensor
from worldsim.train.latent_cache import autoencoder_key

PALETTE = ((24, 24, 32), (230, 25, 25), (25, 200, 25), (245, 245, 245))


def drawn_frames(seed: int, frames: int = 5, size: int = 16) -> np.ndarray:
    """uint8 (1, T, H, W, 3): a dark background with a square of another palette colour moving across."""
    rng = np.random.default_rng(seed)
    out = np.empty((1, frames, size, size, 3), np.uint8)
    out[:] = PALETTE[0]
    colour = PALETTE[1 + rng.integers(3)]
    y = rng.integers(0, size - 4)
    for t in range(frames):
        x = (2 * t + rng.integers(0, 3)) % (size - 4)
        out[0, t, y:y + 4, x:x + 4] = colour
    return out


def test_find_palette_lists_the_colours_by_frequency_and_refuses_textures() -> None:
    frames = np.concatenate([drawn_frames(s) for s in range(8)])
    found = find_palette(frames)
    assert found[0] == PALETTE[0] and set(found) <= set(PALETTE) and len(found) >= 3
    textured = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="not drawn from a small palette"):
        find_palette(textured)


def test_palette_targets_pick_the_nearest_colour() -> None:
    colours = palette_tensor(PALETTE)  # (4, 3) in [-1, 1]
    frames = colours[[2, 0, 3, 1]].T.reshape(1, 1, 3, 2, 2) + 0.05  # each pixel one colour, slightly off
    assert palette_targets(frames, PALETTE).flatten().tolist() == [2, 0, 3, 1]


def test_head_starts_as_the_rgb_decoder_snapped_and_keeps_the_latent_key() -> None:
    torch.manual_seed(0)
    plain = VideoAutoencoder(autoencoder_config("cpu")).eval()
    with_palette = VideoAutoencoder(autoencoder_config("cpu", palette=PALETTE)).eval()
    missing = with_palette.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["decoder.palette.correction.bias", "decoder.palette.correction.weight",
                               "decoder.palette.log_sharpness"]
    # decoder-only fields: a DiT trained on the plain autoencoder's latents stays valid
    assert autoencoder_key(with_palette) == autoencoder_key(plain)
    z = torch.randn(1, 3, 8, 4, 4)
    with torch.no_grad():
        rgb = plain.decode(z)  # (1, 5, 3, 16, 16)
        x, logits = with_palette.decoder(z.transpose(1, 2), logits=True)
    # the warm-started logits rank colours by nearness to the plain decoder's RGB output
    assert torch.equal(logits.argmax(dim=1), palette_targets(rgb, PALETTE))
    assert x.shape == rgb.transpose(1, 2).shape and x.abs().max() <= 1.0 + 1e-6


def test_head_at_patch_resolution_equals_the_per_pixel_nearness_and_softmax() -> None:
    """The head works in the decoder's patched layout; its logits and colours are the per-pixel formula's."""
    torch.manual_seed(0)
    head = PaletteHead(PALETTE, feature_channels=5, patch=2)
    torch.nn.init.normal_(head.correction.weight)
    torch.nn.init.normal_(head.correction.bias)
    with torch.no_grad():
        head.log_sharpness.fill_(1.3)
    rgb = torch.randn(2, 3 * 4, 3, 4, 5, requires_grad=True)  # (B, 3 p p, T, h, w), channels (c p1 p2)
    features = torch.randn(2, 5, 3, 4, 5)
    colour, logits = head(rgb, features, logits=True)
    # the reference, at full resolution: -s |x - c|^2 + |x|^2 (the same for every colour) + the correction
    full = head.unfold(rgb)  # (B, 3, T, 8, 10)
    c = palette_tensor(PALETTE)
    corr = head.unfold(torch.nn.functional.conv3d(features, head.correction.weight, head.correction.bias))
    ref = torch.exp(torch.tensor(1.3)) * (2 * torch.einsum("bcthw,kc->bkthw", full, c)
                                      - c.pow(2).sum(-1)[None, :, None, None, None]) + corr
    assert logits.shape == (2, len(PALETTE), 3, 8, 10) and colour.shape == (2, 3, 3, 8, 10)
    assert torch.allclose(logits, ref, atol=1e-4)
    assert torch.allclose(colour, torch.einsum("bkthw,kc->bcthw", ref.softmax(dim=1), c), atol=1e-5)
    assert head(rgb, features)[1] is None  # no logits unless asked
    colour.sum().backward()  # it trains: gradients reach the decoder's output and the head's parameters
    assert rgb.grad.abs().sum() > 0 and head.log_sharpness.grad is not None and head.correction.weight.grad.abs().sum() > 0


def test_palette_loss_trains_the_head_towards_the_true_colours() -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(autoencoder_config("cpu", palette=PALETTE))
    frames = frames_to_float(torch.from_numpy(np.concatenate([drawn_frames(s) for s in range(4)])))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    _, first = autoencoder_loss(model, frames, g)
    for _ in range(60):
        loss, logs = autoencoder_loss(model, frames, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert {"ce", "wrong"} <= set(logs)
    assert logs["ce"] < 0.5 * first["ce"] and logs["wrong"] < first["wrong"]


def test_bad_palettes_are_refused() -> None:
    with pytest.raises(ValueError, match="palette must be"):
        autoencoder_config("cpu", palette=((0, 0, 0),))
    with pytest.raises(ValueError, match="palette must be"):
        autoencoder_config("cpu", palette=((0, 0, 300), (1, 2, 3)))
