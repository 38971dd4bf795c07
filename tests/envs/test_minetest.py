"""`MinetestEnv` against the real game (Debian packages minetest and xvfb); skipped only where they are absent."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from worldsim.envs.minetest import env as minetest_env
from worldsim.envs.minetest.env import ACTION_NAMES, MinetestEnv, discrete_input, multidiscrete_input
from worldsim.envs.minetest.game import MinetestUnavailable, find_binary

pytest.importorskip("Xlib", reason="python-xlib is not installed: pip install 'worldsim[minetest]'")
MISSING = [n for n in ("minetest", "Xvfb") if find_binary(n) is None]
needs_game = pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not installed (apt-get install minetest xvfb)")


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (in containers nobody may reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


@pytest.fixture(scope="module")
def env():
    env = MinetestEnv(size=64, max_episode_steps=40)
    yield env
    env.close()


def test_missing_binaries_are_named_with_the_debian_packages(monkeypatch):
    monkeypatch.setattr(minetest_env, "find_binary", lambda name: None)
    with pytest.raises(MinetestUnavailable, match="minetest and Xvfb not found.*apt-get install minetest xvfb"):
        MinetestEnv()


def test_action_inputs():
    assert len(ACTION_NAMES) == 12 and ACTION_NAMES[0] == "noop"
    assert discrete_input(1).keys == {"w"} and discrete_input(10).buttons == {1} and discrete_input(11).buttons == {3}
    assert (discrete_input(5).turn, discrete_input(6).turn, discrete_input(7).look, discrete_input(8).look) == (1, -1, -1, 1)
    both = multidiscrete_input(np.array([1, 2, 1, 2, 0, 1]))  # forward + strafe right + jump + turn right + dig
    assert both.keys == {"w", "d", "space"} and both.buttons == {1} and (both.turn, both.look) == (-1, 0)


@needs_game
def test_reset_gives_a_frame_and_the_players_pose(env):
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert obs.std() > 5, "a blank frame: the game draws nothing"
    for key, (shape, dtype) in env.state_spec().items():
        assert info["state"][key].shape == shape and info["state"][key].dtype == dtype
    assert info["state"]["pitch"] == 0


@needs_game
def test_the_same_seed_gives_the_same_start(env):
    _, first = env.reset(seed=3)
    env.step(ACTION_NAMES.index("forward"))
    _, again = env.reset(seed=3)
    np.testing.assert_allclose(again["state"]["pos"], first["state"]["pos"], atol=0.05)
    np.testing.assert_allclose(again["state"]["yaw"], first["state"]["yaw"], atol=0.05)


@needs_game
def test_turning_changes_the_view_and_noop_keeps_it(env):
    obs, info = env.reset(seed=0)
    still = [env.step(0)[0] for _ in range(3)]
    assert max(mean_abs_diff(obs, f) for f in still) < 2.0
    turned, _, _, _, after = env.step(ACTION_NAMES.index("turn_left"))
    assert mean_abs_diff(still[-1], turned) > 4.0
    turn = (after["state"]["yaw"] - info["state"]["yaw"]) % 360
    assert abs(turn - env.turn_degrees) < 1.0


@needs_game
def test_state_follows_forward_movement(env):
    _, info = env.reset(seed=0)
    start, yaw = info["state"]["pos"], np.radians(info["state"]["yaw"])
    for _ in range(8):
        _, _, terminated, truncated, info = env.step(ACTION_NAMES.index("forward"))
        assert not terminated and not truncated
    time.sleep(0.2)  # the state file trails the frame by up to a server step
    moved = env._state()["pos"] - start
    facing = np.array([-np.sin(yaw), np.cos(yaw)])  # (x, z); yaw 0 faces +z and grows turning left
    sideways = np.array([facing[1], -facing[0]])
    along, across = float(moved[[0, 2]] @ facing), float(moved[[0, 2]] @ sideways)
    assert along > 1.0 and abs(across) < 0.3 * along, f"moved {moved} facing {facing}"


@needs_game
def test_digging_holds_the_button_and_placing_puts_a_block(env):
    env.reset(seed=0)
    for _ in range(4):
        before = env.step(ACTION_NAMES.index("look_down"))[0]  # 60 degrees down: the ground within reach
    dug = [env.step(ACTION_NAMES.index("dig"))[0] for _ in range(6)]
    assert mean_abs_diff(before, dug[-1]) > 1.0, "no cracks: the button went up between dig steps"
    placed = [env.step(ACTION_NAMES.index("place"))[0]]
    # the block is drawn at the game's next frame; on a loaded machine that can be a step or two after the click
    placed += [env.step(ACTION_NAMES.index("noop"))[0] for _ in range(3)]
    assert max(mean_abs_diff(dug[-1], frame) for frame in placed) > 10.0


@needs_game
def test_a_game_that_fails_to_start_shows_its_log():
    env = MinetestEnv(game="no_such_game")
    with pytest.raises(MinetestUnavailable, match="failed to start.*log tail.*no_such_game"):
        env.reset(seed=0)
    assert env.game is None


@needs_game
def test_a_killed_game_is_a_clear_error_and_close_leaves_no_process():
    env = MinetestEnv(size=32)
    try:
        env.reset(seed=1)
        pids, folder = env.game.pids, env.game.dir
        assert all(alive(p) for p in pids)
        os.kill(pids[1], signal.SIGKILL)  # the game, not its display
        time.sleep(0.5)
        with pytest.raises(MinetestUnavailable, match="minetest exited .*log tail"):
            env.step(0)
    finally:
        env.close()
    assert not any(alive(p) for p in pids) and not folder.exists()


@needs_game
def test_the_game_dies_with_the_python_process():
    code = ("import sys, time; from worldsim.envs.minetest.env import MinetestEnv; env = MinetestEnv(size=32); "
            "env.reset(seed=0); print(*env.game.pids, flush=True); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in child.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)


@needs_game
def test_eval_on_minetest_reports_the_real_vs_real_floor_and_a_turning_loop(tmp_path):
    from worldsim.eval.config import EvalConfig
    from worldsim.eval.run import run_eval

    cfg = EvalConfig(world="minetest", out=str(tmp_path / "e"), size=32, seeds=2, steps=2, horizons=[1, 2], idm=False,
                     probes=False, minedojo=False, videos=False, loop_lengths=[1], progress=False)
    r = run_eval(cfg).results
    floor = r["real_floor"]
    assert floor["horizons"] == [1, 2] and all(p["mean"] > 10 for p in floor["psnr"])
    assert r["consistency"]["loop"] == {"away": 5, "back": 6}  # turn left, then right
    assert "real vs real (the floor)" in (tmp_path / "e" / "report.md").read_text()
