"""`worldsim eval` end to end: real vs real (the ceilings) and a tiny simulator export."""

import json

import av
import pytest
import numpy as np
from PIL import Image

from worldsim.cli import main
from worldsim.eval.config import EvalConfig
from worldsim.eval.plots import line_plot
from worldsim.eval.run import REAL, run_eval

SMALL = dict(seeds=2, steps=4, probe_seeds=1, probe_steps=4, idm_episodes=4, idm_train_steps=20,
             loop_lengths=[2], progress=False)


def test_real_vs_real_report_has_the_ceilings(tmp_path):
    r = run_eval(EvalConfig(out=str(tmp_path / "real"), size=48, **{**SMALL, "probe_steps": 24}))
    res = json.loads(r.json_path.read_text())
    assert res["schemes"] == [REAL]
    assert all(p["mean"] == 100.0 for p in res["real_vs_sim"][REAL]["psnr"])
    copy = [p["mean"] for p in res["copy_baseline"]["psnr"]]  # balls move: repeating the last frame falls behind
    assert 10 < copy[-1] < copy[0] < 100
    for check, s in res["probes"][REAL]["summary"].items():
        assert s["accuracy"] in (1.0, None), check
    cons = res["consistency"]["schemes"][REAL][0]
    assert cons["real_return_vs_before"]["ssim"] == 1.0
    per_seed = cons["psnr_per_seed"]["real_return_vs_before"]  # one per seed, their mean is the mean
    assert len(per_seed) == 2 and abs(sum(per_seed) / 2 - cons["real_return_vs_before"]["psnr"]) < 1e-2
    assert cons["memoryless_vs_real_return"]["psnr"] < 100  # two different seeds: the other one is no memory of this one
    assert "skipped" in res["minecraft"]["minedojo"] and "MineDojo" in res["minecraft"]["minedojo"]["skipped"]
    md = r.markdown_path.read_text()
    assert "memoryless vs real return" in md and "autoencoder_ceiling" not in res  # no model, no autoencoder
    assert "## Probes" in md and "## Look away and back" in md and "**copy (the baseline)**" in md and "| real (ceiling) | push | 1.00 |" in md
    assert res["probes"][REAL]["fall_bounce_strict"] == {"passed": 1, "scored": 1}  # the truth follows itself
    assert "against the true restitution only: real (ceiling) 1/1." in md
    for plot in res["plots"]:
        assert Image.open(tmp_path / "real" / plot).size == (640, 400)
    with av.open(str(tmp_path / "real" / res["videos"][0])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 1 + 4  # context frame + 4 steps


def test_report_from_a_tiny_simulator_export(tiny_export, tmp_path):
    out = tmp_path / "sim"
    r = run_eval(EvalConfig(checkpoint=str(tiny_export), out=str(out), context_frames=2, sampling_steps=1, **SMALL))
    res = r.results
    assert res["schemes"] == ["autoregressive", "long-range", "hierarchical"] and res["frame_size"] == 16
    assert res["context_budget_used"] == 16  # the tiny export records no training window and no serving budget
    assert res["reencode_used"] is False  # nor a serving reencode
    rvs = res["real_vs_sim"]["autoregressive"]
    assert rvs["horizons"] == [1, 4] and rvs["psnr"][0]["mean"] < 40  # random weights: far from real
    assert set(res["probes"]) == {REAL, "autoregressive", "long-range", "hierarchical"}
    assert set(res["idm"]["schemes"]) == set(res["schemes"])
    ceiling = res["autoencoder_ceiling"]  # the real frames through the model's autoencoder, one figure per horizon
    assert ceiling["horizons"] == [1, 4] and all(0 < p["mean"] < 100 for p in ceiling["psnr"])
    assert "**autoencoder (the ceiling)**" in r.markdown_path.read_text()
    assert len(res["videos"]) == 2 * 3 and (out / "plots" / "psnr_vs_scheme.png").exists()
    with av.open(str(out / res["videos"][0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 3 + 4 * 2  # context 1 + (2 - 1) k frames, then 4 steps of k = 2


def test_eval_runs_the_simulator_in_the_dtype_asked_for(tiny_export, tmp_path, capsys):
    # the same seeds in float32 and in bf16 (whatever the CPU: `auto` picks by hardware), recorded in the results
    small = dict(SMALL, schemes=["autoregressive"], probes=False, idm=False, consistency=False, videos=False)
    used = {}
    for dtype in ("float32", "bfloat16"):
        res = run_eval(EvalConfig(checkpoint=str(tiny_export), out=str(tmp_path / dtype), context_frames=2,
                                  sampling_steps=1, dtype=dtype, **small)).results
        used[dtype] = (res["dtype_used"], res["real_vs_sim"]["autoregressive"]["psnr"][0]["mean"])
    assert used["float32"][0] == "float32" and used["bfloat16"][0] == "bfloat16"
    assert used["float32"][1] == pytest.approx(used["bfloat16"][1], abs=1.0)  # same frames, to bf16's rounding
    assert main(["eval", "dtype=fp16", f"out={tmp_path / 'bad'}"]) == 2
    assert "dtype must be one of auto, float32, bfloat16, got 'fp16'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_eval_samples_as_the_simulator_serves_by_default():
    from worldsim.sim.config import SimConfig

    # what `worldsim eval checkpoint=...` scores is what an env built from the export steps like
    cfg = EvalConfig()
    assert (cfg.sampling_steps, cfg.guidance_scale, cfg.context_budget, cfg.reencode, cfg.dtype) == \
        (SimConfig().sampling_steps, SimConfig().guidance_scale, SimConfig().context_budget, SimConfig().reencode,
         SimConfig().dtype)


def test_cli_eval_and_bad_keys(tmp_path, capsys):
    assert main(["eval", "seeds=1", f"out={tmp_path}"]) == 2
    assert "seeds must be >= 2" in capsys.readouterr().err
    assert main(["eval", "sedes=3"]) == 2
    assert "sedes" in capsys.readouterr().err
    args = [f"out={tmp_path / 'cli'}", "size=32", "seeds=2", "steps=2", "probes=false", "idm=false",
            "consistency=false", "videos=false", "progress=false"]
    assert main(["eval", *args]) == 0
    assert (tmp_path / "cli" / "report.md").exists()


def test_line_plot_draws_each_series(tmp_path):
    path = line_plot(tmp_path / "p.png", "t", "x", "y", {"a": ([1, 2, 4], [1.0, 2.0, None]), "b": ([1, 2], [3.0, 0.5])},
                     log_x=True)
    img = np.asarray(Image.open(path))
    blue, orange = (img == [31, 119, 180]).all(-1).sum(), (img == [255, 127, 14]).all(-1).sum()
    assert blue > 50 and orange > 50


def test_bar_plot_draws_bars_in_proportion_and_refuses_ragged_series(tmp_path):
    from worldsim.eval.plots import bar_plot

    path = bar_plot(tmp_path / "b.png", "t", "rate", ["one", "two", "three"],
                    {"a": [1.0, 0.5, 0.0], "b": [0.25, 0.25, 0.25]}, errors={"a": [(0.9, 1.0), (0.4, 0.6), (0.0, 0.1)]})
    img = np.asarray(Image.open(path))
    blue, orange = (img == [31, 119, 180]).all(-1).sum(), (img == [255, 127, 14]).all(-1).sum()
    assert blue > 0 and orange > 0
    assert 0.9 * blue < 2 * orange < 1.1 * blue  # bar lengths 1.5 against 0.75 (minus the legend swatches, equal)
    taller = bar_plot(tmp_path / "c.png", "t", "rate", [f"k{i}" for i in range(22)], {"a": [0.5] * 22})
    assert Image.open(taller).size[1] > Image.open(path).size[1]  # rows grow the image
    with pytest.raises(ValueError, match="one value per category"):
        bar_plot(tmp_path / "d.png", "t", "rate", ["one", "two"], {"a": [1.0]})


def test_loop_plots_from_results(tmp_path):
    from worldsim.envs.crafter import ACHIEVEMENT_KEYS
    from worldsim.imagine import plot_iterations

    def agent(score: float) -> dict:
        return {"score": {"mean": score, "ci95": [score - 0.2, score + 0.2]},
                "return": {"mean": 2 * score, "ci95": [2 * score - 0.3, 2 * score + 0.3]},
                "success": {k: 0.5 for k in ACHIEVEMENT_KEYS}, "episodes": 20}

    results = {"world": "crafter", "random": agent(1.6), "per_iteration": [{"iteration": i + 1, **agent(1.0 + i)} for i in range(3)]}
    paths = plot_iterations(results, tmp_path)
    assert sorted(p.name for p in paths) == ["return_per_iteration.png", "score_per_iteration.png", "success.png"]
    push = {"world": "probe-push", "random": {"return": {"mean": 0.3, "ci95": [0.2, 0.4]}},
            "per_iteration": [{"iteration": 1, "return": {"mean": 0.9, "ci95": [0.8, 1.0]}}]}
    (tmp_path / "push").mkdir()
    assert [p.name for p in plot_iterations(push, tmp_path / "push")] == ["return_per_iteration.png"]
