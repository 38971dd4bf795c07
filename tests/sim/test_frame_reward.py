"""The frame reward model (worldsim.models.frame_heads): learned from a real store, saved, and read by the simulator."""

import math

import numpy as np
import pytest
import torch

from worldsim.config import CollectConfig, EnvConfig
from worldsim.data.collect import collect
from worldsim.models.frame_heads import (
    FrameHeads,
    FrameHeadsConfig,
    load_frame_heads,
    save_frame_heads,
    train_frame_heads,
)
from worldsim.sim.env import WorldModelEnv


@pytest.fixture(scope="module")
def push_store(tmp_path_factory):
    """The probe world's push task at 32x32: scripted pushes (mostly successes), then random play."""
    path = tmp_path_factory.mktemp("push") / "push.zarr"
    for policy, episodes, seed in (("push", 40, 0), ("random", 20, 100), ("push", 12, 500)):
        collect(CollectConfig(env=EnvConfig(name="probe-push", size=32), out=str(path), episodes=episodes, policy=policy,
                              num_envs=1, vector="sync", seed=seed, progress=False))
    return path


def test_the_reward_of_the_push_task_is_learned_from_frames(push_store):
    torch.set_num_threads(1)
    net, report = train_frame_heads(push_store, steps=300, batch_size=32, holdout=0.15, seed=0)
    held = report["held_out"]
    assert report["reward_values"] == [0.0, 1.0] and report["rare_transitions"] > 20
    paid, unpaid = held["per_value"]["+1"]["predicted"], held["per_value"]["+0"]["predicted"]
    assert held["per_value"]["+1"]["transitions"] >= 3
    assert paid > 4 * unpaid  # the ball over the zone is read from the frame, on episodes it never saw
    assert held["correlation"] > 0.3
    # sampled half from the rare transitions, corrected back to the real rate: the logit shift is log p - log q
    p, q = report["true_prior"][1], report["sampling_prior"][1]
    assert q > 0.4 and p < 0.2
    assert float(net.reward_adjust[1] - net.reward_adjust[0]) == pytest.approx(
        math.log(p / (1 - p)) - math.log(q / (1 - q)), rel=1e-3)


def test_save_load_and_wrong_files(tmp_path):
    net = FrameHeads(FrameHeadsConfig(reward_values=(0.0, 1.0)))
    net.reward_adjust.fill_(-2.0)
    save_frame_heads(tmp_path / "r.safetensors", net, {"note": 1})
    back, extra = load_frame_heads(tmp_path / "r.safetensors")
    assert extra == {"note": 1} and torch.equal(back.reward_adjust, net.reward_adjust)
    frames = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    torch.testing.assert_close(back.predict(frames, frames)[0], net.eval().predict(frames, frames)[0])
    (tmp_path / "x.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_frame_heads(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        load_frame_heads(tmp_path / "missing.safetensors")


def test_the_simulator_takes_reward_and_termination_from_the_frame_model(export_dir, store_path, tmp_path):
    net = FrameHeads(FrameHeadsConfig(reward_values=(0.0, 1.0)))
    with torch.no_grad():  # whatever the frames: each transition pays 1 with probability 0.25 and ends the episode
        for layer in (net.reward, net.termination):
            layer.weight.zero_()
        net.reward.bias.copy_(torch.tensor([0.0, math.log(0.25 / 0.75)]))
        net.termination.bias.fill_(5.0)
    save_frame_heads(tmp_path / "r.safetensors", net)
    env = WorldModelEnv(export_dir, dataset=store_path, reward_model=str(tmp_path / "r.safetensors"), sampling_steps=1,
                        context_frames=2)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(1)
    assert reward == pytest.approx(0.25 * info["frames"].shape[0]) and terminated  # k transitions per step
    env.close()
    with pytest.raises(ValueError, match="reward_model: a frame reward model not found"):
        WorldModelEnv(export_dir, reward_model=str(tmp_path / "missing.safetensors"))
    plain = WorldModelEnv(export_dir, dataset=store_path, sampling_steps=1, context_frames=2)
    plain.reset(seed=0)
    assert plain.step(1)[1] != pytest.approx(0.5)  # without it: the DiT's head
    plain.close()
