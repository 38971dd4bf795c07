"""scripts/look_away_by_seed.py on the shipped Crafter simulator and the real Crafter: per seed, full loop and walk given."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, "scripts/look_away_by_seed.py", *args], cwd=ROOT, capture_output=True, text=True)


def test_each_seed_is_scored_with_the_real_walk_and_with_the_walk_given(tmp_path):
    results = {}
    for mode in ("full", "given"):
        out = tmp_path / f"{mode}.json"
        done = run("worldsim/pretrained/crafter", "--seeds", "2", "--n", "1", "--context-frames", "2", "--num-envs", "2",
                   "--out", str(out), *(["--walk-given"] if mode == "given" else []))
        assert done.returncode == 0, done.stderr
        results[mode] = json.loads(out.read_text())
        assert "mean" in done.stdout and "sim vs real" in done.stdout and "memoryless" in done.stdout
    full, given = results["full"], results["given"]
    assert [r["seed"] for r in full["seeds"]] == [r["seed"] for r in given["seeds"]] == [100_000, 100_001]
    assert given["walk_given"] and not full["walk_given"]
    for a, b in zip(full["seeds"], given["seeds"]):
        assert a["real_return_vs_before"] == b["real_return_vs_before"]  # the same real loops
        assert len(a["away"]) == 2 and a["away"] == b["away"] and a["end"] == b["end"]  # player_pos read: (x, y) tiles
        assert abs(a["away"][0]) <= 2  # n = 1 latent step of k = 2 moves left
        assert 0 < a["sim_return_vs_real_return"] <= 100
        assert a["memoryless_vs_real_return"] == b["memoryless_vs_real_return"] < 100  # the same real loops: the same reference
    # The frames differ: the walk away was drawn in one run and real in the other.
    assert any(a["sim_return_vs_before"] != b["sim_return_vs_before"] for a, b in zip(full["seeds"], given["seeds"]))


def test_bad_arguments_are_one_clear_line():
    done = run("worldsim/pretrained/crafter", "--n", "0")
    assert done.returncode == 2 and "--n, --seeds and --context-frames must be >= 1" in done.stderr
