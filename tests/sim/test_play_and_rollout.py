"""The play server headless (a key press changes the action, a frame comes back as PNG) and the rollout command."""

import io
import json
import threading
import time
import urllib.request

import numpy as np
from PIL import Image

from worldsim.sim.config import SimConfig
from worldsim.sim.env import WorldModelEnv
from worldsim.sim.play import PlaySession, encode_png, make_server
from worldsim.sim.rollout import RolloutConfig, rollout
from worldsim.video import read_mp4

from tiny_world_model import FRAME

FAST = {"sampling_steps": 1, "context_frames": 3}


def decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_png_round_trip():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(image)), image)


def test_play_server_takes_keys_and_serves_frames(export_dir):
    env = WorldModelEnv(export_dir, **FAST)
    session = PlaySession(env, seed=0, options={"frames": np.zeros((3, FRAME, FRAME, 3), np.uint8)})
    server = make_server(session, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    session.start()
    try:
        assert b"/frame.png" in urllib.request.urlopen(url + "/").read()
        request = urllib.request.Request(url + "/key", data=json.dumps({"key": "ArrowUp", "down": True}).encode(), method="POST")
        assert urllib.request.urlopen(request).status == 200
        deadline = time.time() + 30
        while time.time() < deadline and not (session.stats()["step"] >= 2 and session.stats()["action"] == 3):
            time.sleep(0.05)
        stats = json.loads(urllib.request.urlopen(url + "/stats").read())
        assert stats["action"] == 3 and stats["step"] >= 2 and stats["fps"] > 0
        frame = decode_png(urllib.request.urlopen(url + "/frame.png").read())
        assert frame.shape == (FRAME, FRAME, 3)
        bad = urllib.request.Request(url + "/key", data=b"nonsense", method="POST")
        try:
            urllib.request.urlopen(bad)
            raise AssertionError("a bad key body must be refused")
        except urllib.error.HTTPError as e:
            assert e.code == 400
        # a header claiming a petabyte body is refused without reading (or allocating) anything
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.putrequest("POST", "/key")
        conn.putheader("Content-Length", str(10**15))
        conn.endheaders()
        assert conn.getresponse().status == 413
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        session.stop()
        env.close()


def test_rollout_writes_sim_and_side_by_side_videos(export_dir, tmp_path):
    cfg = RolloutConfig(checkpoint=str(export_dir), steps=3, out=str(tmp_path), real_env="probe",
                        sim=SimConfig(**FAST))
    result = rollout(cfg)
    assert result.frames == 1 + 3 * 2
    assert read_mp4(result.sim_video).shape == (7, FRAME, FRAME, 3)
    assert read_mp4(result.side_by_side_video).shape[:3] == (7, FRAME, 2 * FRAME + 2)


def test_rollout_command(export_dir, tmp_path, capsys):
    from worldsim.cli import main

    code = main(["rollout", f"checkpoint={export_dir}", "steps=2", f"out={tmp_path}", "real_env=probe",
                 "sim.sampling_steps=1", "sim.context=long-range"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "sim.mp4").is_file() and (tmp_path / "side_by_side.mp4").is_file()
    assert main(["rollout", f"checkpoint={tmp_path / 'none'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["rollout", f"checkpoint={export_dir}", "sim.contxt=x"]) == 2


def test_rollout_continues_a_clip_with_an_action_free_model(tmp_path, capsys):
    from tiny_world_model import make_export

    from worldsim.cli import main
    from worldsim.data.store import EpisodeStore

    export = make_export(tmp_path / "free", action_space=None)
    store = tmp_path / "v.zarr"
    clip = np.random.default_rng(0).integers(0, 256, (20, FRAME, FRAME, 3), dtype=np.uint8)
    with EpisodeStore.create(store, env_id="video", frame_size=(FRAME, FRAME), fps=15, action_space=None) as s:
        s.append_episode(clip[:4])
        s.append_episode(clip)
    cfg = RolloutConfig(checkpoint=str(export), steps=3, out=str(tmp_path / "r"), video_store=str(store), episode=1,
                        sim=SimConfig(**FAST))
    result = rollout(cfg)
    assert result.frames == 5 + 3 * 2  # the 5-frame context (3 latent frames), then 3 steps of 2
    sim = read_mp4(result.sim_video)
    assert sim.shape == (11, FRAME, FRAME, 3) and read_mp4(result.side_by_side_video).shape[:3] == (11, FRAME, 2 * FRAME + 2)
    assert main(["rollout", f"checkpoint={export}", f"video_store={store}", "episode=5", f"out={tmp_path / 'x'}"]) == 2
    assert "holds episodes 0-1" in capsys.readouterr().err
    assert main(["rollout", f"checkpoint={export}", f"video_store={store}", "episode=0", f"out={tmp_path / 'x'}"]) == 2
    assert "has 4 frames; the context needs 7" in capsys.readouterr().err
    assert main(["rollout", f"checkpoint={export}", f"out={tmp_path / 'x'}"]) == 2  # no clip: an env is needed
    assert "action-free model" in capsys.readouterr().err


def test_rollout_finds_the_real_world_in_the_export_when_the_store_has_moved():
    from worldsim.sim.rollout import recorded_world

    moved = {"world": {"env_id": "worldsim-real/Probe-v0", "env_kwargs": {}}, "train": {"data": "/nowhere/probe.zarr"}}
    assert recorded_world(moved) == "probe"
    assert recorded_world({"train": {"data": "/nowhere/probe.zarr"}}) is None  # an old export, its store gone: no world
    assert recorded_world({"world": {"env_id": "someone/Else-v0"}}) is None


def test_rollout_of_a_shipped_model_by_name_finds_its_real_world(tmp_path, capsys):
    """`worldsim rollout checkpoint=probes` (no real_env, no store): the export records the world it imitates."""
    from worldsim.cli import main

    code = main(["rollout", "checkpoint=worldsim/Probes-v0", "steps=1", f"out={tmp_path}", "sim.sampling_steps=1"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "sim.mp4").is_file() and (tmp_path / "side_by_side.mp4").is_file()


def test_play_refuses_an_unknown_world_or_host_before_serving(export_dir, tmp_path):
    """In a child process with a timeout: a play that starts serving instead would never return."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLDSIM_DEBUG", None)
    for extra, words in ((["real_env=bogus"], "real_env='bogus' is not a real world; known: crafter"),
                         (["real_env=probe", "host=bad..host"], "host='bad..host' cannot be resolved")):
        done = subprocess.run([sys.executable, "-m", "worldsim", "play", f"checkpoint={export_dir}", "port=0", *extra],
                              capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert done.returncode == 2 and "open http" not in done.stdout, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_rollout_refuses_a_bad_dataset_or_frame_rate_naming_it(export_dir, tmp_path, capsys):
    from worldsim.cli import main

    base = ["rollout", f"checkpoint={export_dir}", "steps=1", f"out={tmp_path / 'r'}", "real_env=probe",
            "sim.sampling_steps=1"]
    for extra, words in (("dataset=/nonexistent/s.zarr", "dataset=/nonexistent/s.zarr: /nonexistent/s.zarr does not exist"),
                         (f"dataset={tmp_path}", "is not a worldsim episode store"),
                         ("fps=0", "fps must be > 0"), ("fps=-1", "fps must be > 0")):
        assert main([*base, extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "r").exists()  # nothing written


def test_rollout_of_an_export_whose_config_lacks_an_entry_is_one_line(export_dir, tmp_path, capsys):
    import shutil

    from worldsim.cli import main

    config = json.loads((export_dir / "config.json").read_text())
    edited = {"files": {k: v for k, v in config.items() if k != "files"},
              "kind": {k: v for k, v in config.items() if k != "kind"}, "list": []}
    for name, content in edited.items():
        folder = tmp_path / name
        shutil.copytree(export_dir, folder)
        (folder / "config.json").write_text(json.dumps(content))
        assert main(["rollout", f"checkpoint={folder}", "steps=1", f"out={tmp_path / 'r'}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(folder / "config.json") in err, err
