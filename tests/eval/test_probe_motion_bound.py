"""scripts/probe_motion_bound.py: the least error any predictor of a free-flying probe ball's next frames can make."""

import json
import subprocess
import sys


def test_bound_tightens_with_context_and_stays_under_the_autoencoder(tmp_path):
    out = tmp_path / "bound.json"
    run = subprocess.run([sys.executable, "scripts/probe_motion_bound.py", "--balls", "3", "--context", "1", "4",
                          "--samples", "60", "--autoencoder-psnr", "38.0", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    one, four = result["context"]["1"], result["context"]["4"]
    assert one["balls"] == four["balls"] == 3
    # one frame shows where the ball is, not where it goes: the velocity is known only to the sampling box (a pixel
    # a frame); four frames pin it to a small fraction of that
    assert one["posterior_sd_median"]["vx_px_per_frame"] > 0.3
    assert four["posterior_sd_median"]["vx_px_per_frame"] < 0.1
    assert four["mse_alone"] < one["mse_alone"]
    # the autoencoder's own error is added: the bound is under the autoencoder's figure, and above the 1-frame bound
    assert one["psnr"] < four["psnr"] < 38.0
    assert "PSNR alone" in run.stdout


def test_bad_arguments_are_one_line(tmp_path):
    run = subprocess.run([sys.executable, "scripts/probe_motion_bound.py", "--balls", "0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].startswith("probe_motion_bound:")
