"""Tests for the causal video autoencoder: shapes, causality, prefix consistency, errors, latent
statistics, and a short real training run."""

from __future__ import annotations


import pytest
import torch

from worldsim.frames import frames_to_float, frames_to_uint8
from worldsim.metrics import psnr
from worldsim.models.ae_presets import AE_PRESETS, autoencoder_config, preset_param_counts
from worldsim.models.autoencoder import (
    AutoencoderConfig,
    VideoAutoencoder,
    autoencoder_loss,
    fit_latent_stats_from_frames,
)
from worldsim.models.distributions import DiagonalGaussian


def make_model(seed: int = 0, **overrides) -> VideoAutoencoder:
    torch.manual_seed(seed)
    return VideoAutoencoder(autoencoder_config("tiny", **overrides)).eval()


def moving_squares(batch: int, frames: int, size: int, seed: int) -> torch.Tensor:
    """Structured videos: coloured squares moving at constant speed on a plain background.

    Returns uint8 ``(batch, frames, size, size, 3)``.
    """
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(batch, frames, size, size, 3, dtype=torch.uint8)
    for b in range(batch):
        bg = torch.randint(0, 256, (3,), generator=g, dtype=torch.uint8)
        out[b] = bg
        for _ in range(2):
            side = int(torch.randint(size // 6, size // 3, (1,), generator=g))
            colour = torch.randint(0, 256, (3,), generator=g, dtype=torch.uint8)
            x0, y0 = torch.randint(0, size - side, (2,), generator=g).tolist()
            vx, vy = torch.randint(-2, 3, (2,), generator=g).tolist()
            for t in range(frames):
                x = min(max(x0 + vx * t, 0), size - side)
                y = min(max(y0 + vy * t, 0), size - side)
                out[b, t, y : y + side, x : x + side] = colour
    return out


@pytest.mark.parametrize("s", [4, 8])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_shapes_for_each_factor(s: int, k: int) -> None:
    mults = (1, 1, 2) if s == 4 else (1, 1, 2, 2)
    model = make_model(spatial_factor=s, temporal_factor=k, channel_mults=mults)
    for t, h, w in [(1, 32, 32), (1 + k, 16, 24), (1 + 2 * k, 48, 80)]:
        frames = torch.rand(2, t, 3, h, w) * 2 - 1
        with torch.no_grad():
            posterior = model.encode(frames)
            recon = model.decode(posterior.sample())
        latent_t = 1 + (t - 1) // k
        assert posterior.mean.shape == (2, latent_t, 4, h // s, w // s)
        assert model.latent_shape(t, h, w) == (latent_t, 4, h // s, w // s)
        assert recon.shape == frames.shape
        assert model.num_frames(latent_t) == t


def test_forward_returns_recon_and_posterior_and_mode_is_deterministic() -> None:
    model = make_model()
    frames = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        recon, posterior = model(frames, sample=False)
        again, _ = model(frames, sample=False)
        g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        s1, _ = model(frames, sample=True, generator=g1)
        s2, _ = model(frames, sample=True, generator=g2)
    assert isinstance(posterior, DiagonalGaussian)
    assert recon.shape == frames.shape
    assert torch.equal(recon, again)
    assert torch.equal(s1, s2)
    assert not torch.equal(s1, recon)  # sampling actually adds noise


@pytest.mark.parametrize("k", [1, 2, 4])
def test_changing_a_frame_changes_no_earlier_latent(k: int) -> None:
    model = make_model(temporal_factor=k)
    t = 1 + 3 * k
    frames = torch.rand(1, t, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        base = model.encode(frames).mean
        for j in range(t):
            changed = frames.clone()
            changed[:, j] = torch.rand(1, 3, 16, 16) * 2 - 1
            z = model.encode(changed).mean
            covering = 0 if j == 0 else 1 + (j - 1) // k  # the latent frame whose group holds frame j
            torch.testing.assert_close(z[:, :covering], base[:, :covering], rtol=0, atol=1e-5)
            assert (z[:, covering] - base[:, covering]).abs().max() > 1e-3  # the test can see a change


@pytest.mark.parametrize("k", [1, 2, 4])
def test_prefix_encode_and_decode_are_prefixes(k: int) -> None:
    model = make_model(temporal_factor=k)
    m = 3
    frames = torch.rand(2, 1 + m * k, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        z = model.encode(frames).mean  # (2, 1 + m, C, 4, 6)
        video = model.decode(z)
        for p in range(1, m + 1):
            prefix_frames = 1 + (p - 1) * k
            zp = model.encode(frames[:, :prefix_frames]).mean
            torch.testing.assert_close(zp, z[:, :p], rtol=0, atol=1e-5)
            torch.testing.assert_close(model.decode(z[:, :p]), video[:, :prefix_frames], rtol=0, atol=1e-5)


def test_single_image_is_a_one_frame_video() -> None:
    model = make_model()
    frames = torch.rand(1, 5, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z_image = model.encode(frames[:, :1]).mean
        z_video = model.encode(frames).mean
    assert z_image.shape == (1, 1, 4, 8, 8)
    torch.testing.assert_close(z_image, z_video[:, :1], rtol=0, atol=1e-5)


def test_bad_sizes_raise_value_errors_naming_the_numbers() -> None:
    model = make_model(temporal_factor=4)
    with pytest.raises(ValueError, match=r"height 30 .*s=4"):
        model.encode(torch.zeros(1, 1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"width 34 .*s=4"):
        model.encode(torch.zeros(1, 1, 3, 32, 34))
    with pytest.raises(ValueError, match=r"T=6 .*k=4.*5 or 9"):
        model.encode(torch.zeros(1, 6, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model.encode(torch.zeros(1, 5, 32, 32, 3))
    with pytest.raises(TypeError, match="frames_to_float"):
        model.encode(torch.zeros(1, 1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"latents must be \(B, T', 4"):
        model.decode(torch.zeros(1, 2, 3, 8, 8))


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="spatial_factor must be one of"):
        AutoencoderConfig(spatial_factor=2)
    with pytest.raises(ValueError, match="temporal_factor must be one of"):
        AutoencoderConfig(temporal_factor=3)
    with pytest.raises(ValueError, match="needs 4 channel_mults"):
        AutoencoderConfig(spatial_factor=8, channel_mults=(1, 2, 2))
    cfg = autoencoder_config("small", temporal_factor=4)
    assert AutoencoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown AutoencoderConfig keys \['latent_chanels'\]"):
        AutoencoderConfig.from_dict({"latent_chanels": 4})


def test_presets_registry_and_param_counts() -> None:
    with pytest.raises(ValueError, match=r"unknown autoencoder preset 'huge'.*base.*small.*tiny"):
        autoencoder_config("huge")
    counts = preset_param_counts()
    assert set(counts) == set(AE_PRESETS)
    assert 0 < counts["tiny"] < counts["small"] < counts["base"]
    assert counts["tiny"] == sum(p.numel() for p in make_model().parameters())


def test_uint8_float_conversion_round_trips() -> None:
    u = moving_squares(2, 3, 16, seed=0)  # (2, 3, 16, 16, 3)
    x = frames_to_float(u)
    assert x.shape == (2, 3, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(frames_to_uint8(x), u)
    assert torch.equal(frames_to_uint8(torch.full((1, 3, 2, 2), 5.0)), torch.full((1, 2, 2, 3), 255, dtype=torch.uint8))


def test_latent_stats_normalise_to_zero_mean_unit_std_and_are_saved() -> None:
    model = make_model()
    frames = frames_to_float(moving_squares(4, 5, 32, seed=1))
    assert not bool(model.latent_stats_fitted)
    with torch.no_grad():
        raw = model.encode(frames).mode()
        model.fit_latent_stats(raw)
        z = model.normalize(raw)  # (4, 3, 4, 8, 8)
    per_channel = z.transpose(1, 2).flatten(2)  # (B, C, ...) so channel stats are per latent channel
    mean = per_channel.transpose(0, 1).flatten(1).mean(1)
    std = per_channel.transpose(0, 1).flatten(1).std(1, correction=0)
    torch.testing.assert_close(mean, torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(model.denormalize(z), raw, atol=1e-5, rtol=0)
    assert not torch.allclose(model.latent_scale, torch.ones(4))  # stats were really fitted
    state = model.state_dict()
    assert {"latent_shift", "latent_scale", "latent_stats_fitted"} <= set(state)
    fresh = make_model(seed=5)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.normalize(raw), z)

    # The streaming version over batches agrees with the one-shot fit.
    other = make_model()
    shift, scale = fit_latent_stats_from_frames(other, [frames[:2], frames[2:]])
    torch.testing.assert_close(shift, model.latent_shift, atol=1e-5, rtol=0)
    torch.testing.assert_close(scale, model.latent_scale, atol=1e-5, rtol=0)




def test_tiny_preset_learns_to_reconstruct_structured_video() -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(autoencoder_config("tiny"))
    data = frames_to_float(moving_squares(16, 3, 32, seed=2))  # (16, 3, 3, 32, 32): 3 frames = 2 latent frames
    held_out = frames_to_float(moving_squares(4, 3, 32, seed=3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)

    def held_out_psnr() -> float:
        with torch.no_grad():
            recon, _ = model(held_out, sample=False)
        return psnr(recon.clamp(-1, 1), held_out, data_range=2.0).mean().item()

    before = held_out_psnr()
    for _ in range(100):
        idx = torch.randint(0, len(data), (2,), generator=g)
        loss, logs = autoencoder_loss(model, data[idx], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    after = held_out_psnr()
    # measured: about 10.7 -> 15.5 dB; predicting each video's mean colour would give about 18 dB
    assert after > before + 3.0, (before, after)
    assert logs["kl"] > 0 and set(logs) >= {"loss", "l1", "mse", "kl", "psnr"}


def test_patched_autoencoder_is_causal_prefix_consistent_and_checks_its_levels() -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(autoencoder_config("cpu")).eval()  # patch 2: convs at 1/2 and 1/4 resolution
    frames = torch.rand(2, 7, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        z = model.encode(frames).mean
        assert z.shape == (2, 4, 8, 4, 6)
        video = model.decode(z)
        assert video.shape == frames.shape
        for p in (1, 2, 3):
            torch.testing.assert_close(model.encode(frames[:, :1 + (p - 1) * 2]).mean, z[:, :p], rtol=0, atol=1e-5)
            torch.testing.assert_close(model.decode(z[:, :p]), video[:, :1 + (p - 1) * 2], rtol=0, atol=1e-5)
        changed = frames.clone()
        changed[:, 3] = 0.0
        zc = model.encode(changed).mean
        torch.testing.assert_close(zc[:, :2], z[:, :2], rtol=0, atol=1e-5)  # frame 3 belongs to latent 2
        assert (zc[:, 2] - z[:, 2]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="patch 2 needs 2 channel_mults"):
        autoencoder_config("cpu", channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match="temporal_factor 4 needs 2 downsampling levels"):
        autoencoder_config("cpu", temporal_factor=4)


def test_object_weights_single_out_small_objects_and_keep_the_loss_scale() -> None:
    from worldsim.models.autoencoder import object_weights

    frames = torch.full((1, 1, 3, 16, 16), -0.8)
    frames[..., 5:7, 5:7] = 0.9  # a 2x2 ball on a plain background
    w = object_weights(frames, 4.0)
    assert w.shape == (1, 1, 1, 16, 16) and w.mean().item() == pytest.approx(1.0)
    assert w[..., 5, 5].item() == pytest.approx(5 * w[..., 0, 0].item())
    assert object_weights(frames, 0.0) is None


@pytest.mark.parametrize("preset,k", [("tiny", 1), ("tiny", 2), ("tiny", 4), ("cpu", 2), ("cpu-palette", 2),
                                      ("cpu-refine", 2)])
def test_streaming_decode_equals_one_pass_and_states_stack(preset: str, k: int) -> None:
    from worldsim.models.autoencoder import split_state, stack_states

    torch.manual_seed(0)
    overrides = {"temporal_factor": k} if preset == "tiny" else {}
    if preset == "cpu-refine":  # the decoder's extra full-resolution blocks stream too
        preset, overrides = "cpu", {"decoder_refine_blocks": 2}
    atol = 1e-5
    if preset == "cpu-palette":  # the palette head reads the last features: it must stream too
        preset, overrides = "cpu", {"palette": ((0, 0, 0), (255, 0, 0), (20, 200, 30), (255, 255, 255))}
        atol = 1e-4  # its logits scale the features' rounding by the sharpness
    model = VideoAutoencoder(autoencoder_config(preset, **overrides)).eval()
    for p in model.parameters():  # nonzero residual branches: every layer's past matters
        p.data.add_(0.05 * torch.randn_like(p))
    z = torch.randn(2, 9, model.cfg.latent_channels, 4, 4)
    with torch.no_grad():
        whole = model.decode(z)  # (2, 1 + 8k, 3, 16, 16)
        head, state = model.decode_stream(z[:, :3])  # a start: 1 + 2k frames
        parts = [head]
        for j in range(3, 9, 2):  # then two latents at a time
            out, state = model.decode_stream(z[:, j:j + 2], state)
            assert out.shape[1] == 2 * k
            parts.append(out)
        torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=0, atol=atol)
        # time-doubling upsamplers took the folded road after the first chunk (`Upsample._folded`)
        from worldsim.models.causal_conv import Upsample
        doubling = [m for m in model.modules() if isinstance(m, Upsample) and m.time]
        assert len(doubling) == {1: 0, 2: 1, 4: 2}[k] and all(m._fold is not None for m in doubling)
        # One video's state, split off and stacked again, decodes the next latent as in the batch.
        nxt = torch.randn(2, 1, model.cfg.latent_channels, 4, 4)
        batched, _ = model.decode_stream(nxt, state)
        alone = [model.decode_stream(nxt[b:b + 1], s)[0] for b, s in enumerate(split_state(state, 2))]
        torch.testing.assert_close(torch.cat(alone), batched, rtol=0, atol=atol)
        torch.testing.assert_close(model.decode_stream(nxt, stack_states(split_state(state, 2)))[0], batched)


@pytest.mark.parametrize("preset,k", [("tiny", 1), ("tiny", 2), ("tiny", 4), ("cpu", 2)])
def test_streaming_encode_equals_one_pass_and_states_stack(preset: str, k: int) -> None:
    """`encode_stream`: a start of 1 + k frames, then k frames at a time, gives the latents of one pass over the whole
    video (the time-halving convolutions keep the frame their next output reads first); states split and stack."""
    from worldsim.models.autoencoder import split_state, stack_states

    torch.manual_seed(0)
    model = VideoAutoencoder(autoencoder_config(preset, **({"temporal_factor": k} if preset == "tiny" else {}))).eval()
    for p in model.parameters():  # nonzero residual branches: every layer's past matters
        p.data.add_(0.05 * torch.randn_like(p))
    frames = torch.rand(2, 1 + 6 * k, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        whole = model.encode(frames)
        head, state = model.encode_stream(frames[:, :1 + k])
        parts = [head.mean]
        for j in range(1 + k, 1 + 6 * k, k):
            out, state = model.encode_stream(frames[:, j:j + k], state)
            assert out.mean.shape[1] == 1
            parts.append(out.mean)
        torch.testing.assert_close(torch.cat(parts, dim=1), whole.mean, rtol=0, atol=1e-5)
        nxt = torch.rand(2, k, 3, 16, 16) * 2 - 1
        batched = model.encode_stream(nxt, state)[0].mean
        alone = [model.encode_stream(nxt[b:b + 1], s)[0].mean for b, s in enumerate(split_state(state, 2))]
        torch.testing.assert_close(torch.cat(alone), batched, rtol=0, atol=1e-5)
        torch.testing.assert_close(model.encode_stream(nxt, stack_states(split_state(state, 2)))[0].mean, batched)
        if k > 1:
            with pytest.raises(ValueError, match=f"m \\* {k}"):
                model.encode_stream(nxt[:, :1], state)


def test_decoder_refine_blocks_start_as_the_identity_and_leave_the_latent_key() -> None:
    """`decoder_refine_blocks`: a decoder deepened by warm start decodes exactly as before, and the latents (so the
    cache and every DiT trained on them) keep their key."""
    from worldsim.train.latent_cache import autoencoder_key

    torch.manual_seed(0)
    base = VideoAutoencoder(autoencoder_config("cpu")).eval()
    for p in base.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    deep = VideoAutoencoder(autoencoder_config("cpu", decoder_refine_blocks=2)).eval()
    missing, unexpected = deep.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("decoder.refine.") for name in missing)
    z = torch.randn(1, 3, base.cfg.latent_channels, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(deep.decode(z), base.decode(z), rtol=0, atol=0)
    assert autoencoder_key(deep) == autoencoder_key(base)
    with pytest.raises(ValueError, match="decoder_refine_blocks"):
        autoencoder_config("cpu", decoder_refine_blocks=-1)
