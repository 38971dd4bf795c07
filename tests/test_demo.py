"""`worldsim demo` end to end at a reduced size: real collection, the real trainer (DeepSpeed), a real
rollout and a real evaluation report; then every promised artifact is checked for validity."""

import json

import numpy as np
import pytest
from PIL import Image

from worldsim.cli import main
from worldsim.demo import DemoConfig, strip_image
from worldsim.export import load_export
from worldsim.video import read_mp4

SMALL = ["episodes=2", "max_episode_steps=40", "vae_steps=4", "steps=4", "batch_size=2", "rollout_steps=3",
         "eval_steps=2", "eval_schemes=[long-range]", "idm_train_steps=5", "strip_frames=4",
         "progress=false"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", f"out={out}", *SMALL]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_demo_writes_every_artifact(demo):
    out, summary = demo
    for key in ("store", "vae_export", "export", "sim_video", "side_by_side_video", "strip", "report", "results"):
        assert (out / summary[key]).exists(), key
    assert summary["plots"], "the evaluation wrote no plots"
    for plot in summary["plots"]:
        with Image.open(plot) as im:
            assert im.size[0] > 50 and im.size[1] > 50
    assert set(summary["seconds"]) == {"collect", "train-vae", "train", "rollout", "eval", "strip", "total"}


def test_demo_videos_decode(demo):
    _, summary = demo
    sim = read_mp4(summary["sim_video"])  # PyAV
    both = read_mp4(summary["side_by_side_video"])
    # 3 steps of k=2 frames after the context frame, at the model's 64x64
    assert sim.shape == (1 + 3 * 2, 64, 64, 3)
    assert both.shape[1:] == (64, 2 * 64 + 2, 3) and both.shape[0] >= 2
    assert sim.std() > 0  # not a blank video


def test_demo_report_has_metrics(demo):
    _, summary = demo
    results = json.loads(open(summary["results"]).read())
    curve = results["real_vs_sim"]["long-range"]
    assert curve["horizons"] == [1, 2]
    for metric, lo, hi in (("psnr", 0.0, 100.0), ("ssim", -1.0, 1.0)):
        means = [h["mean"] for h in curve[metric]]
        assert len(means) == 2 and all(lo <= m <= hi for m in means), (metric, means)
    assert set(results["idm"]["schemes"]["long-range"]) >= {"real", "sim", "gap"}
    assert "PSNR" in open(summary["report"]).read()


def test_demo_exports_load_and_match_the_collected_world(demo):
    _, summary = demo
    models, meta = load_export(summary["export"])
    assert set(models) == {"autoencoder", "dit"}
    assert meta["frame_size"] == [64, 64] and meta["action_space"]["type"] == "Discrete"
    with Image.open(summary["strip"]) as im:  # 4 columns of 64 px + 2 px gaps, two rows, upscaled 2x
        assert im.size == (2 * (4 * 66 - 2), 2 * (2 * 64 + 2))


def test_demo_refuses_a_used_folder(demo, capsys):
    out, _ = demo
    assert main(["demo", f"out={out}", *SMALL]) == 2
    assert "not empty" in capsys.readouterr().err


def test_demo_config_errors():
    with pytest.raises(ValueError, match="eval_seeds"):
        DemoConfig(eval_seeds=1)
    with pytest.raises(ValueError, match="world"):
        DemoConfig(world="minedojo")
    assert main(["demo", "vae_stepz=3"]) == 2  # unknown key: one line, no run


def test_strip_image_layout():
    real = np.zeros((10, 4, 5, 3), np.uint8)
    sim = np.full((10, 4, 5, 3), 100, np.uint8)
    real[9] = 7  # the last frame must be the last column
    img = strip_image(real, sim, columns=3, gap=1)
    assert img.shape == (2 * 4 + 1, 3 * 6 - 1, 3)
    assert (img[:4, :5] == 0).all() and (img[5:, :5] == 100).all()
    assert (img[:4, -5:] == 7).all() and (img[4] == 255).all()
    with pytest.raises(ValueError, match="same shape|must both"):
        strip_image(real, sim[:5], columns=3)
