"""`worldsim imagine`: the whole Dyna loop on a tiny real export and the real probe world, and its resume."""

from __future__ import annotations

import json

import pytest
from tiny_world_model import make_export

from worldsim.data.store import EpisodeStore
from worldsim.imagine import ImagineConfig, run_imagine

TINY = dict(world="probe", collect_episodes=2, max_episode_steps=12, world_model_steps=2, window=5, batch_size=2,
            agent_steps=16, num_envs=2, imagination_horizon=3, eval_episodes=2, threads=1, progress=False)


def test_the_loop_collects_trains_imagines_scores_and_resumes(tmp_path):
    export = make_export(tmp_path / "export")
    out = tmp_path / "loop"
    lines: list[str] = []
    first = run_imagine(ImagineConfig(checkpoint=str(export), out=str(out), iterations=1, **TINY), log=lines.append)
    state = json.loads((out / "loop.json").read_text())
    it = state["iterations"][0]
    assert set(it) >= {"collect", "world", "agent", "eval"}
    assert it["collect"]["episodes"] == 2 and it["world"]["steps"] == 2
    assert (out / "agent_1.safetensors").exists() and (out / "world" / "export" / "config.json").exists()
    assert first["random"]["episodes"] == 2 and first["imagination"]["episodes"] == 2
    assert set(first["imagination"]["return"]) == {"mean", "ci95"}
    assert json.loads((out / "results.json").read_text())["per_iteration"][0]["iteration"] == 1
    assert list((out / "tensorboard").iterdir()) and (out / "return_per_iteration.png").exists()
    stamp = (out / "agent_1.safetensors").stat().st_mtime_ns

    # Asking for more iterations resumes: iteration 1 is kept, iteration 2 collects with its agent and continues
    # the world-model run to twice the steps.
    lines.clear()
    second = run_imagine(ImagineConfig(checkpoint=str(export), out=str(out), iterations=2, **TINY), log=lines.append)
    assert (out / "agent_1.safetensors").stat().st_mtime_ns == stamp
    assert not any("[imagine 1/2]" in line and "collect" in line for line in lines)
    assert any("[imagine 2/2] collect" in line and "agent of iteration 1" in line for line in lines)
    with EpisodeStore.open(out / "probe.zarr") as store:
        assert store.num_episodes == 4
    assert [r["world"]["steps"] for r in second["per_iteration"]] == [2, 4]
    assert second["random"] == first["random"]  # scored once

    # Other settings on the same folder are refused, in one line naming them.
    with pytest.raises(ValueError, match="collect_episodes"):
        run_imagine(ImagineConfig(checkpoint=str(export), out=str(out), iterations=2, **{**TINY, "collect_episodes": 3}))


def test_the_loop_with_a_frame_reward_model_trains_it_each_iteration(tmp_path):
    export = make_export(tmp_path / "export")
    out = tmp_path / "loop"
    settings = {**TINY, "world": "probe-push", "collect_episodes": 3, "reward_model": "frames", "reward_model_steps": 5}
    run_imagine(ImagineConfig(checkpoint=str(export), out=str(out), iterations=1, **settings), log=lambda _: None)
    it = json.loads((out / "loop.json").read_text())["iterations"][0]
    assert it["reward"]["weights"] == str(out / "reward_1.safetensors") and it["reward"]["steps"] == 5
    assert (out / "reward_1.safetensors").exists() and "eval" in it


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="world must be crafter, probe or probe-push"):
        ImagineConfig(world="minedojo")
    with pytest.raises(ValueError, match="reward_model must be dit or frames"):
        ImagineConfig(reward_model="oracle")
    with pytest.raises(ValueError, match="eval_episodes must be >= 2"):
        ImagineConfig(eval_episodes=1)
