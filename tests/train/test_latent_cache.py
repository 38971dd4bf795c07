"""The latent cache: encoded once per autoencoder, exact, extended when the store grows, never stale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_store

from worldsim.data.store import EpisodeStore
from worldsim.frames import frames_to_float
from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.train.latent_cache import (LatentWindowDataset, autoencoder_key, build_cache, encode_episode,
                                         open_cache)
from worldsim.models.latents import latent_actions


def _autoencoder(seed: int = 0) -> VideoAutoencoder:
    torch.manual_seed(seed)
    ae = VideoAutoencoder(autoencoder_config("tiny")).eval()
    for p in ae.parameters():  # nonzero residual branches: the causal reach is the real one
        p.data.add_(0.05 * torch.randn_like(p))
    ae.set_latent_stats(torch.full((4,), 0.1), torch.full((4,), 2.0))
    return ae


def test_chunked_encoding_equals_one_pass(tmp_path):
    store = make_store(tmp_path / "s.zarr", episodes=1, steps=80)
    frames = EpisodeStore.open(store, "r").read("obs", 0, 81)
    ae = _autoencoder()
    with torch.no_grad():
        whole = ae.normalize(ae.encode(frames_to_float(torch.from_numpy(frames))[None]).mode())[0].numpy()
    chunked = encode_episode(ae, frames, torch.device("cpu"), chunk=4, overlap=32)
    assert chunked.shape == whole.shape == (41, 4, 4, 4)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    # Too little overlap is visibly different: the test can tell a wrong chunking from a right one.
    assert np.abs(encode_episode(ae, frames, torch.device("cpu"), chunk=4, overlap=0) - whole).max() > 1e-3


def test_cache_is_keyed_by_the_autoencoder_and_extended_when_the_store_grows(tmp_path):
    store = make_store(tmp_path / "s.zarr", episodes=3, steps=16)
    ae = _autoencoder(0)
    cache = build_cache(store, ae, progress=False)
    assert cache.episodes == 3 and cache.latents.dtype == np.float16
    assert cache.path.name == autoencoder_key(ae)
    first = EpisodeStore.open(store, "r").read("obs", 0, 17)
    expected = encode_episode(ae, first, torch.device("cpu"))
    np.testing.assert_allclose(cache.episode_latents(0).astype(np.float32), expected, atol=2e-2, rtol=1e-2)

    # Another encoder (even one weight changed) or other latent stats: a cache of its own, never stale latents.
    for change in ("encoder", "stats"):
        changed = _autoencoder(0)
        with torch.no_grad():
            if change == "encoder":
                next(changed.encoder.parameters()).view(-1)[0] += 1e-3
            else:
                changed.latent_scale.mul_(1.001)
        assert autoencoder_key(changed) != autoencoder_key(ae), change
    # The decoder does not decide the latents: a fine-tuned decoder keeps the cache (and DiTs trained on it).
    decoder_only = _autoencoder(0)
    with torch.no_grad():
        decoder_only.decoder.conv_out.conv.bias.add_(1e-3)
    assert autoencoder_key(decoder_only) == autoencoder_key(ae)
    # ... nor do the loss weights, nor how a number was written (a preset's 4.0, an override's 4)
    import dataclasses
    restated = _autoencoder(0)
    restated.cfg = dataclasses.replace(restated.cfg, object_weight=int(ae.cfg.object_weight) + 3, kl_weight=0.5,
                                       base_channels=float(ae.cfg.base_channels))
    assert autoencoder_key(restated) == autoencoder_key(ae)
    other = changed
    assert open_cache(store, other) is None
    assert build_cache(store, other, progress=False).path != cache.path

    # The store grows: only the new episode is encoded, the old latents are kept as they were.
    make_more = make_store(tmp_path / "more.zarr", episodes=1, steps=10, seed=5)
    extra = EpisodeStore.open(make_more, "r").episode(0)
    with EpisodeStore.open(store, "a") as s:
        s.append_episode(extra["obs"], extra["action"][1:], extra["reward"][1:], extra["terminated"][1:])
    grown = build_cache(store, ae, progress=False)
    assert grown.episodes == 4 and grown.path == cache.path
    np.testing.assert_array_equal(grown.latents[:int(cache.episode_ends[-1])], cache.latents)
    assert len(grown.episode_latents(3)) == 1 + 10 // 2


def test_latent_windows_line_up_with_rows_actions_and_episodes(tmp_path):
    store = make_store(tmp_path / "s.zarr", episodes=3, steps=16)
    ae = _autoencoder()
    cache = build_cache(store, ae, progress=False)
    data = LatentWindowDataset(cache, store, frames=3, episodes=[0, 2])
    assert len(data) == 2 * (9 - 3 + 1)  # 9 latent frames per 17-row episode, episode 1 left out
    s = EpisodeStore.open(store, "r")
    rows = s.read_rows(["action", "has_action"], 0, s.num_frames)
    for i in (0, 3, len(data) - 1):
        item = data[i]
        first, stop = data.rows(i)
        assert stop - first == 1 + 2 * 2
        # latent frame j >= 1 of a window covers rows first+1+2(j-1) .. first+2j: their actions
        a, m = latent_actions(torch.from_numpy(rows["action"][first:stop])[None],
                              torch.from_numpy(rows["has_action"][first:stop])[None], 2)
        torch.testing.assert_close(item["action"][1:], a[0, 1:])
        assert item["action_mask"][1:].all()
        e = int(np.searchsorted(s.episode_ends, first, side="right"))
        assert e in (0, 2) and stop <= s.episode_ends[e]
    assert not data[0]["action_mask"][0].any()  # an episode's first frame: no action led to it
    with pytest.raises(ValueError, match="no window"):
        LatentWindowDataset(cache, store, frames=20)


def test_windows_where_a_state_rises_from_zero_are_listed_again(tmp_path):
    """reappear/repeat: a window in which the recorded state goes from <= 0 to > 0 between two of its latent frames
    (each read at the latent frame's last row) is listed `repeat` times; every other window once. Checked against
    the rows themselves: the square's column leaving the left wall (0 -> > 0) is the rise here."""
    store = make_store(tmp_path / "s.zarr", episodes=12, steps=24, state=True)
    cache = build_cache(store, _autoencoder(), progress=False)
    plain = LatentWindowDataset(cache, store, frames=3)
    tripled = LatentWindowDataset(cache, store, frames=3, reappear="square_x", repeat=3)
    s = EpisodeStore.open(store, "r")
    xs = s.read("state/square_x", 0, s.num_frames)[:, 0]
    expected = []
    for i in range(len(plain)):
        first, _ = plain.rows(i)
        last = xs[first:first + 5:2]  # rows ending the window's 3 latent frames
        expected.append(bool(((last[:-1] <= 0) & (last[1:] > 0)).any()))
    assert 0 < sum(expected) < len(plain)  # the store has both kinds
    assert tripled.reappear_windows == sum(expected) and len(tripled) == len(plain) + 2 * sum(expected)
    listed = np.bincount(tripled.starts, minlength=int(plain.starts.max()) + 1)[plain.starts]
    np.testing.assert_array_equal(listed, np.where(expected, 3, 1))
    assert LatentWindowDataset(cache, store, frames=3, reappear="square_x").reappear_windows == 0  # repeat 1: as is
    with pytest.raises(ValueError, match="reappear_state='nope'"):
        LatentWindowDataset(cache, store, frames=3, reappear="nope", repeat=2)


@pytest.mark.parametrize("hidden", [1, 2])
def test_whole_hidings_are_the_windows_that_also_show_what_went_in(tmp_path, hidden):
    """hidden=m: only windows where the state is > 0 at some latent frame, then <= 0 for m or more frames, then > 0
    again, checked frame by frame against the rows; a part of the windows with a rise, and only they listed again."""
    store = make_store(tmp_path / "s.zarr", episodes=12, steps=24, state=True)
    cache = build_cache(store, _autoencoder(), progress=False)
    plain = LatentWindowDataset(cache, store, frames=5)
    rises = LatentWindowDataset(cache, store, frames=5, reappear="square_x", repeat=2)
    whole = LatentWindowDataset(cache, store, frames=5, reappear="square_x", repeat=2, hidden=hidden)
    s = EpisodeStore.open(store, "r")
    xs = s.read("state/square_x", 0, s.num_frames)[:, 0]
    expected = []
    for i in range(len(plain)):
        first, _ = plain.rows(i)
        shown = list(xs[first:first + 9:2] > 0)  # the window's 5 latent frames, each at its last row
        expected.append(any(shown[t + 1] and not any(shown[t + 1 - hidden:t + 1]) and any(shown[:t + 1 - hidden])
                            for t in range(hidden - 1, 4)))
    assert 0 < sum(expected) < rises.reappear_windows  # fewer than the rises, but some
    assert whole.reappear_windows == sum(expected) and len(whole) == len(plain) + sum(expected)
    listed = np.bincount(whole.starts, minlength=int(plain.starts.max()) + 1)[plain.starts]
    np.testing.assert_array_equal(listed, np.where(expected, 2, 1))


def test_ball_pixels_weigh_each_visible_ball_by_its_size(tmp_path):
    """ball_weight: 1 off the balls; inside a visible ball's disc 1 + w (median radius / radius)^2, so a small ball
    weighs more per pixel than a big one; hidden balls weigh nothing extra. Checked against the store's own rows."""
    from worldsim.cli import compose
    from worldsim.data.collect import collect
    from worldsim.envs.probe.physics import BOX
    from worldsim.envs.probe.render import world_to_pixel

    out = tmp_path / "probe.zarr"
    collect(compose("collect", [f"out={out}", "env=probe", "env.size=16", "env.max_episode_steps=12", "episodes=6",
                                "progress=false", "vector=sync", "env.kwargs.family=[random,permanence]"]))
    cache = build_cache(out, _autoencoder(), progress=False)
    data = LatentWindowDataset(cache, out, frames=3, ball_weight=2.0)
    assert "ball_pixels" not in LatentWindowDataset(cache, out, frames=3)[0]
    store = EpisodeStore.open(out, "r")
    rows = {k: store.read(f"state/{k}", 0, store.num_frames) for k in ("position", "radius", "present", "visible")}
    reference = float(np.median(rows["radius"][rows["present"]]))
    seen_small = seen_big = False
    for i in range(0, len(data), 3):
        weight = data[i]["ball_pixels"].numpy()  # (3, 1, 4, 4)
        first, _ = data.rows(i)
        assert weight.shape == (3, 1, 4, 4) and weight.min() >= 1.0
        for t in range(3):
            row = first + 2 * t  # the latent frame's last row
            on = rows["present"][row] & (rows["visible"][row] > 0)
            if not on.any():
                assert (weight[t] == 1.0).all()
                continue
            for b in np.flatnonzero(on):
                r, c = (world_to_pixel(rows["position"][row, b], (16, 16), *BOX) / 4).astype(int).clip(0, 3)
                extra = 2.0 * (reference / rows["radius"][row, b]) ** 2
                assert weight[t, 0, r, c] >= 1.0 + extra - 1e-4  # its centre's latent pixel counts it
                seen_small |= rows["radius"][row, b] < reference
                seen_big |= rows["radius"][row, b] > reference
    assert seen_small and seen_big
    with pytest.raises(ValueError, match="ball_weight.*records no position"):
        LatentWindowDataset(build_cache(make_store(tmp_path / "s.zarr", episodes=2, steps=12), _autoencoder(),
                                        progress=False), tmp_path / "s.zarr", frames=3, ball_weight=1.0)
