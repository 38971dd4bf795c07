"""scripts/one_step_error.py: a composited DiT's one-step frame taken apart on held-out windows of a probe store."""

import json
import subprocess
import sys
from pathlib import Path

from worldsim.cli import compose
from worldsim.data.collect import collect
from worldsim.export import load_export
from worldsim.train.latent_cache import build_cache

from tiny_world_model import make_export

ROOT = Path(__file__).resolve().parents[2]


def test_one_step_error_splits_a_probe_store_by_balls_and_flight(tmp_path):
    store = tmp_path / "probe.zarr"
    collect(compose("collect", [f"out={store}", "env=probe", "env.size=16", "env.max_episode_steps=24", "episodes=8",
                                "progress=false", "vector=sync", "env.kwargs.family=[random,fall_bounce]"]))
    export = make_export(tmp_path / "dit", dit_overrides={"previous_frames": 2, "conv_prior": 8,
                                                          "prior_composite": True})
    build_cache(store, load_export(export)[0]["autoencoder"], progress=False)
    out = tmp_path / "e.json"
    run = subprocess.run([sys.executable, "scripts/one_step_error.py", str(export), str(store), "--windows", "16",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["all"]) == {"truth", "sample", "own", "guess", "copy"}
    assert result["all"]["truth"]["latent_mse"] == 0 and result["all"]["copy"]["latent_mse"] > 0
    assert 0 < result["composite_mask_mean"] < 1
    for group in ("by_balls", "by_flight"):  # every window in exactly one part
        assert sum(r["windows"] for r in result[group].values()) == result["windows"], result[group]
    assert set(result["by_flight"]) == {"free", "event"}  # balls falling freely, and bouncing
    assert "held-out windows" in run.stdout and "balls" in run.stdout
    run = subprocess.run([sys.executable, "scripts/one_step_error.py", str(tmp_path / "none"), str(store)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and run.stderr.startswith("one_step_error:") and run.stderr.count("\n") == 1, run.stderr
