"""The shipped pretrained simulators: registered on `import worldsim`, load offline, step, pass check_env,
and their exports are consistent (config vs weights, sizes, cards, package data)."""

import json
import re
import socket
import tomllib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldsim  # noqa: F401  (registers the envs)
from worldsim.pretrained import PRETRAINED, ROOT, PretrainedError, pretrained_path
from worldsim.spaces import space_from_json
from worldsim.export import load_export, read_export_config

MAX_BYTES = 30 * 2**20
NAMES = list(PRETRAINED)


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the pretrained env tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_import_registers_every_env():
    for env_id in ("worldsim/Crafter-v0", "worldsim/Probes-v0", "worldsim/ProbePush-v0", "worldsim/WorldModel-v0",
                   "worldsim-real/Crafter-v0", "worldsim-real/Probe-v0"):
        assert env_id in gym.registry, env_id


@pytest.mark.parametrize("name", NAMES)
def test_make_step_and_check_env_offline(name, offline):
    p = PRETRAINED[name]
    env = gym.make(p.env_id, sampling_steps=2)
    obs, info = env.reset(seed=3)
    size = {"crafter": 72, "probes": 64, "probe-push": 64}[name]  # Crafter at 72x72: 8-pixel tiles (see its model card)
    assert obs.shape == (size, size, 3) and obs.dtype == np.uint8 and info["source"] == "real_env"
    obs2, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs2) and np.isfinite(reward)
    assert info["frames"].shape[1:] == (size, size, 3)
    assert obs2.std() > 1.0, "the simulator produced a flat frame"
    env.close()
    raw = gym.make(p.env_id, sampling_steps=1).unwrapped
    check_env(raw, skip_render_check=True)  # spaces, seeding and determinism
    raw.close()


@pytest.mark.parametrize("name", NAMES)
def test_shipped_export_config_matches_weights(name):
    folder = pretrained_path(name)
    meta = read_export_config(folder)
    assert meta["kind"] == "dit"
    models, meta = load_export(folder)  # strict: sha256, byte counts and every tensor's name must fit the config
    ae, dit = models["autoencoder"], models["dit"]
    assert dit.config.latent_channels == ae.cfg.latent_channels
    assert dit.config.action_substeps == meta["compression"]["temporal"]
    assert bool(ae.latent_stats_fitted)
    # the action space is the real world's, so agents move between real and simulated unchanged
    real = gym.make(f"worldsim-real/{'Crafter' if PRETRAINED[name].real_env == 'crafter' else 'Probe'}-v0")
    assert space_from_json(meta["action_space"]) == real.action_space
    real.close()


@pytest.mark.parametrize("name", NAMES)
def test_model_card_has_data_training_hardware_and_eval(name):
    folder = pretrained_path(name)
    card = (folder / "MODEL_CARD.md").read_text()
    for section in ("## Data", "## Training", "## Evaluation", "## Learning curves", "episodes", "CPU", "wall time",
                    "PSNR", "| measure | target | measured | met |"):
        assert section in card, section
    for image in re.findall(r"\]\(([^)]+\.png)\)", card):  # every curve the card shows is shipped beside it
        assert (folder / image).resolve().is_file(), image
    results = json.loads((folder / "eval_results.json").read_text())
    psnr = results["real_vs_sim"]["long-range"]["psnr"][0]["mean"]
    assert f"{psnr:.2f}" in card  # the card quotes the evaluation it ships with
    from worldsim.pretrained.card import _serving

    served = _serving(read_export_config(folder))  # a serving default the export carries is on its card
    assert served == [] or served[0].split(" (")[0] in card


def test_the_push_task_simulator_reads_its_reward_from_frames(offline):
    env = gym.make("worldsim/ProbePush-v0", sampling_steps=1)
    assert env.unwrapped.sim.reward_model is not None  # the frame model shipped beside it, not the DiT's heads
    env.reset(seed=0)
    rewards = [env.step(0)[1] for _ in range(3)]  # standing still pays (almost) nothing
    assert all(0 <= r < 0.05 for r in rewards)
    env.close()


def test_total_size_under_30_mb():
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total < MAX_BYTES, f"shipped pretrained files take {total / 2**20:.1f} MB"


def test_package_data_includes_weights_and_cards():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    assert {"*.safetensors", "*.md", "*.json"} <= set(patterns)
    shipped = pyproject["tool"]["setuptools"]["package-data"]["worldsim.pretrained"]  # the model folders
    assert {"*/*.safetensors", "*/*.md", "*/*.json"} <= set(shipped)


def test_unknown_or_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(PretrainedError, match="unknown pretrained model"):
        pretrained_path("minecraft")
    import worldsim.pretrained as pretrained

    monkeypatch.setattr(pretrained, "ROOT", tmp_path)
    with pytest.raises(PretrainedError, match="missing from this installation"):
        pretrained_path("crafter")


def test_card_joins_a_stage_and_its_warm_started_continuation(tmp_path):
    import json

    from worldsim.pretrained.card import _continuation, stage_curve, stage_runs

    base = {"steps": 100, "objective": {"time_sampling": "logit_normal"}, "model_overrides": {"dim": 128}, "run_dir": "a"}
    more = {**base, "steps": 50, "objective": {"time_sampling": "uniform"}, "init_from": "worldsim/pretrained/x",
            "model_overrides": {"dim": 128, "previous_frame": True}, "run_dir": "b"}
    for run, cfg, rows in (("x-dit", base, [(50, 60.0), (100, 120.0)]), ("x-dit2", more, [(25, 30.0), (50, 60.0)])):
        (tmp_path / run).mkdir()
        (tmp_path / run / "config.json").write_text(json.dumps(cfg))
        (tmp_path / run / "validation.jsonl").write_text(
            "".join(json.dumps({"step": s, "cpu_s": c, "next_psnr": 20.0}) + "\n" for s, c in rows))
    assert [r.name for r in stage_runs(tmp_path, "x", "dit")] == ["x-dit", "x-dit2"]
    curve = stage_curve(tmp_path, "x", "dit")
    assert [r["step"] for r in curve] == [50, 100, 125, 150] and [r["cpu_s"] for r in curve] == [60, 120, 150, 180]
    line = _continuation("dit", tmp_path / "x-dit2", more, base)
    assert "50 more steps" in line and "worldsim/pretrained/x" in line
    assert "objective.time_sampling=uniform" in line and "previous_frame" in line and "run_dir" not in line


def test_card_tables_put_the_autoencoder_ceiling_beside_the_simulator():
    from worldsim.pretrained.card import eval_tables

    results = json.loads((pretrained_path("probes") / "eval_results.json").read_text())
    plain = eval_tables(results)
    curve = {"horizons": [1, 16], "psnr": [{"mean": 36.9, "ci95": [34.9, 39.0]}, {"mean": 37.2, "ci95": [34.5, 39.9]}],
             "ssim": [{"mean": 0.997, "ci95": [0.995, 0.998]}, {"mean": 0.996, "ci95": [0.995, 0.998]}]}
    with_ceiling = eval_tables({**results, "autoencoder_ceiling": curve})
    added = [line for line in with_ceiling if line not in plain]
    assert added == ["| autoencoder (the ceiling) | 1 | 36.90 [34.90, 39.00] | 0.997 [0.995, 0.998] |",
                     "| autoencoder (the ceiling) | 16 | 37.20 [34.50, 39.90] | 0.996 [0.995, 0.998] |"]
