"""Validation metrics: a perfect prediction scores the best value, a wrong one scores worse."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from worldsim.config import CollectConfig, EnvConfig
from worldsim.data.collect import collect
from worldsim.diffusion.objective import schedule
from worldsim.models.ae_presets import autoencoder_config
from worldsim.models.autoencoder import VideoAutoencoder
from worldsim.train.latent_cache import LatentWindowDataset, build_cache
from worldsim.train.validation import (CurveLog, DiTValidator, ValidationConfig, VAEValidator, balls_found,
                                       holdout_episodes)


@pytest.fixture(scope="module")
def probe_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("val") / "probe.zarr"
    env = EnvConfig(name="probe", size=64, max_episode_steps=12, kwargs={"family": "random"})
    collect(CollectConfig(env=env, out=str(path), episodes=4, num_envs=1, vector="sync", progress=False))
    return path


def test_holdout_is_spread_over_the_store_and_refuses_to_hold_out_everything():
    assert holdout_episodes(100, None) == [10, 30, 50, 70, 90]  # spread over every collection in the store
    assert holdout_episodes(4, None) == [2] and holdout_episodes(3, None) == []
    assert holdout_episodes(10, 2) == [2, 7] and holdout_episodes(10, 0) == []
    assert len(set(holdout_episodes(37, 36))) == 36
    assert holdout_episodes(10, [7, 3]) == [3, 7]  # explicit episodes, e.g. to compare runs on the same ones
    with pytest.raises(ValueError, match="must lie in"):
        holdout_episodes(10, [10])
    with pytest.raises(ValueError, match="holdout_episodes=3"):
        holdout_episodes(3, 3)


def test_autoencoder_metrics_perfect_shifted_and_blurred(probe_store):
    cfg = ValidationConfig(windows=4)
    val = VAEValidator(str(probe_store), 5, [2, 3], cfg, torch.device("cpu"))
    perfect = val(lambda frames, sample: (frames, None))
    assert perfect["psnr"] == float("inf") and perfect["balls_found"] == 1.0
    assert perfect["wrong_colour"] == 0.0  # the probe world is drawn with a palette, found in the held-out frames
    shifted = val(lambda frames, sample: (frames.roll(3, dims=-1), None))
    assert shifted["psnr"] < 30 and 0.0 < shifted["wrong_colour"] < 0.5
    nudged = val(lambda frames, sample: (frames + 0.1, None))  # every pixel off, but nearest its own colour
    assert nudged["wrong_colour"] == 0.0 and nudged["psnr"] < 30
    blurred = val(lambda frames, sample: (torch.nn.functional.avg_pool3d(
        frames.transpose(1, 2), (1, 9, 9), 1, (0, 4, 4), count_include_pad=False).transpose(1, 2), None))
    assert blurred["balls_found"] < 0.5  # balls smeared into the background are not found


def test_balls_found_counts_only_fully_visible_balls(probe_store):
    from worldsim.data.store import EpisodeStore
    from worldsim.train.validation import _read_state

    with EpisodeStore.open(probe_store) as s:
        frames = s.read("obs", 0, 13)
        state = _read_state(s, 0, 13)
    found, total = balls_found(frames, state)
    assert total > 0 and found == total
    found, _ = balls_found(np.zeros_like(frames), state)
    assert found == 0


class Oracle:
    """Predicts the v that leads to the true latents; with `follow`, other actions give a shifted frame."""

    def __init__(self, truth: torch.Tensor, true_actions: torch.Tensor, follow: bool, shift: int = 0):
        self.truth, self.true_actions, self.follow, self.shift = truth, true_actions, follow, shift

    def __call__(self, x, t, actions=None, mask=None, frame_index=None):
        x0 = self.truth[:, :x.shape[1]].clone()
        if self.shift:
            x0[:, -1] = x0[:, -1].roll(self.shift, dims=-1)
        if self.follow and actions is not None:
            other = (actions[:, -1] != self.true_actions[:, -1]).flatten(1).any(dim=1)  # (V,)
            x0[other, -1] = x0[other, -1].roll(2, dims=-1)
        alpha, sigma = schedule(t.double())
        alpha, sigma = alpha[:, :, None, None, None].float(), sigma[:, :, None, None, None].float()
        v = torch.where(sigma > 0, (alpha * x - x0) / sigma.clamp_min(1e-8), torch.zeros_like(x))
        return SimpleNamespace(prediction=v)


def test_dit_metrics_perfect_wrong_and_action_following(probe_store):
    from worldsim.pretrained import pretrained_path
    from worldsim.export import load_export

    ae = load_export(pretrained_path("probes"))[0]["autoencoder"].eval()  # decodes probe frames recognisably
    cache = build_cache(probe_store, ae, progress=False)
    data = LatentWindowDataset(cache, probe_store, frames=3, episodes=[2, 3])
    val = DiTValidator(data, str(probe_store), ValidationConfig(windows=6, sample_steps=2, rollout_steps=2), ae,
                       torch.device("cpu"), has_actions=True)
    truth, actions = val.latents, val.actions
    # The AE decoding of the true latents is the best a DiT can do with this autoencoder.
    with torch.no_grad():
        ceiling = val._sample(Oracle(truth, actions, follow=False), actions, val.mask)
    perfect = val(Oracle(truth, actions, follow=False))
    assert perfect["tf_x0_mse"] < 1e-8
    assert perfect["action_sensitivity"] == 0.0 and perfect["action_win"] == 0.5  # ignores actions
    wrong = val(Oracle(truth, actions, follow=False, shift=1))
    assert wrong["tf_x0_mse"] > 0.01 and wrong["next_psnr"] < perfect["next_psnr"]
    follower = val(Oracle(truth, actions, follow=True))
    assert follower["action_sensitivity"] > 0 and follower["action_win"] > 0.5
    assert follower["next_psnr"] == pytest.approx(perfect["next_psnr"])
    # An oracle's rollout is the truth at every step: it scores what one step scores; a wrong one drifts lower.
    assert perfect["rollout_psnr"] == pytest.approx(perfect["next_psnr"], abs=1e-3)
    assert wrong["rollout_psnr"] < perfect["rollout_psnr"]
    assert ceiling.shape[1] == 1 + 2 * 2  # a 3-latent window: all of it decoded
    # The perfect DiT scores exactly the ceiling; repeating the last latent scores the latent copy bar.
    assert perfect["ceiling_psnr"] == pytest.approx(perfect["next_psnr"], abs=1e-3)
    copier = val(Oracle(torch.cat([truth[:, :-1], truth[:, -2:-1]], dim=1), actions, follow=False))
    assert copier["next_psnr"] == pytest.approx(perfect["latent_copy_psnr"], abs=1e-3)
    assert perfect["latent_copy_psnr"] < perfect["ceiling_psnr"]


def test_curve_log_continues_cpu_time_and_drops_lines_past_a_resumed_checkpoint(tmp_path):
    log = CurveLog(tmp_path, 0)
    for step in (10, 20, 30):
        log.write(step, step * 4, {"psnr": float(step)}, 0.1)
    resumed = CurveLog(tmp_path, 20)
    rows = [__import__("json").loads(x) for x in (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20]
    row = resumed.write(30, 120, {"psnr": 1.0}, 0.1)
    assert row["cpu_s"] >= rows[-1]["cpu_s"]
