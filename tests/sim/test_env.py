"""WorldModelEnv: the Gymnasium contract, determinism, the cache against recomputation, bad inputs."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldsim.sim  # noqa: F401  (registers worldsim/WorldModel-v0)
from worldsim.sim.env import WorldModelEnv
from worldsim.spaces import ActionError
from worldsim.export import ExportError

from tiny_world_model import FRAME, make_export

FAST = {"sampling_steps": 1, "context_frames": 3}


def rollout(env, seed, actions, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    out = [obs]
    rewards = []
    for a in actions:
        obs, r, terminated, truncated, info = env.step(a)
        assert info["frames"].shape == (2, FRAME, FRAME, 3) and np.array_equal(info["frames"][-1], obs)
        out.append(obs)
        rewards.append(r)
    return np.stack(out), np.array(rewards)


def test_check_env_passes(export_dir, store_path):
    env = WorldModelEnv(export_dir, dataset=store_path, **FAST)
    check_env(env, skip_render_check=True)
    env.close()


def test_make_and_spaces_mirror_the_export(export_dir, store_path):
    env = gym.make("worldsim/WorldModel-v0", checkpoint=export_dir, dataset=store_path, **FAST)
    assert env.observation_space == gym.spaces.Box(0, 255, (FRAME, FRAME, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(5)
    obs, info = env.reset(seed=1)
    assert obs.dtype == np.uint8 and info["source"] == "dataset"
    env.close()


def test_same_seed_and_actions_give_the_same_frames(export_dir, store_path):
    env = WorldModelEnv(export_dir, dataset=store_path, **FAST)
    actions = [0, 3, 1, 4, 2]
    a, ra = rollout(env, 7, actions)
    b, rb = rollout(env, 7, actions)
    c, _ = rollout(env, 8, actions)
    assert np.array_equal(a, b) and np.array_equal(ra, rb)
    assert not np.array_equal(a, c)
    env.close()


def test_actions_change_the_frames(export_dir):
    env = WorldModelEnv(export_dir, **FAST)
    start = {"frames": np.full((5, FRAME, FRAME, 3), 100, np.uint8)}
    a, _ = rollout(env, 0, [0, 0, 0], start)
    b, _ = rollout(env, 0, [4, 4, 4], start)
    assert not np.array_equal(a[1:], b[1:])
    env.close()


@pytest.mark.parametrize("scheme,noise", [("autoregressive", 0.0), ("long-range", 0.0), ("long-range", 0.2)])
def test_cached_rollout_equals_recomputed_context(export_dir, scheme, noise):
    # While the whole history fits the budget, the incremental cache is exact: same latents, frames, rewards;
    # with context_noise also for the noised generated frames and their levels.
    kw = dict(FAST, context=scheme, context_budget=12, dtype="float32", context_noise=noise)  # exactness, not bf16
    cached = WorldModelEnv(export_dir, cache="incremental", **kw)
    exact = WorldModelEnv(export_dir, cache="recompute", **kw)
    start = {"frames": np.random.default_rng(0).integers(0, 256, (5, FRAME, FRAME, 3), dtype=np.uint8)}
    actions = [1, 2, 3, 4, 0, 1, 2, 3]
    fa, ra = rollout(cached, 3, actions, start)
    fb, rb = rollout(exact, 3, actions, start)
    za = np.stack([cached._track.latents[i].numpy() for i in sorted(cached._track.latents)])
    zb = np.stack([exact._track.latents[i].numpy() for i in sorted(exact._track.latents)])
    np.testing.assert_allclose(za, zb, atol=1e-4)
    np.testing.assert_allclose(ra, rb, atol=1e-4)
    assert np.abs(fa.astype(int) - fb.astype(int)).max() <= 1
    cached.close()
    exact.close()


def test_context_noise_changes_only_later_steps_and_is_seeded(export_dir):
    start = {"frames": np.random.default_rng(1).integers(0, 256, (5, FRAME, FRAME, 3), dtype=np.uint8)}
    actions = [1, 2, 3, 4]
    frames = {}
    for noise in (0.0, 0.3, 0.3):
        env = WorldModelEnv(export_dir, context_noise=noise, dtype="float32", **FAST)
        frames.setdefault(noise, []).append(rollout(env, 5, actions, start)[0])
        env.close()
    clean, (noisy, again) = frames[0.0][0], frames[0.3]
    np.testing.assert_array_equal(noisy, again)  # a pure function of the seed
    np.testing.assert_array_equal(clean[:2], noisy[:2])  # reset frame and first step: no generated context yet
    assert not np.array_equal(clean[2:], noisy[2:])  # later steps see the first generated frame noised
    with pytest.raises(ValueError, match="context_noise"):
        WorldModelEnv(export_dir, context_noise=1.0, **FAST)


def test_reencoded_context_is_the_encoding_of_the_frames_shown(export_dir):
    """reencode: every context latent is the encoder's reading of the frames the episode showed, context and
    generated alike (one pass over the whole video gives the same); the first generated frames are as without it."""
    import torch

    from worldsim.frames import frames_to_float

    start = {"frames": np.random.default_rng(2).integers(0, 256, (5, FRAME, FRAME, 3), dtype=np.uint8)}
    shown, obs = {}, {}
    for reencode in (False, True):
        env = WorldModelEnv(export_dir, reencode=reencode, dtype="float32", context_budget=12, **FAST)
        first, _ = env.reset(seed=4, options=start)
        video, obs[reencode] = [start["frames"]], [first]
        for a in [1, 2, 3, 4, 0]:
            o, *_, info = env.step(a)
            video.append(info["frames"])
            obs[reencode].append(o)
        shown[reencode] = np.concatenate(video)
        track, sim = env._track, env.sim
        env.close()
    np.testing.assert_array_equal(obs[False][:2], obs[True][:2])  # no generated frame in the context yet
    assert not np.array_equal(obs[False][2:], obs[True][2:])
    with torch.no_grad():
        z = sim.autoencoder.normalize(sim.autoencoder.encode(frames_to_float(torch.from_numpy(shown[True]))[None]).mode())
    context = torch.stack([track.latents[i] for i in sorted(track.latents)])
    assert context.shape[0] == z.shape[1] == 8
    torch.testing.assert_close(context, z[0], rtol=0, atol=1e-4)


def test_memory_stays_within_the_budget(export_dir):
    env = WorldModelEnv(export_dir, context="long-range", context_budget=4, **FAST)
    env.reset(seed=0, options={"frames": np.zeros((FRAME, FRAME, 3), np.uint8)})  # a single image
    for _ in range(10):
        env.step(0)
    assert len(env._track.kv) <= 4 and len(env._track.latents) <= 4
    assert sorted(env._track.kv) == env.sim.scheme.select(env._track.length)
    env.close()


def test_truncation_and_stepping_an_ended_episode(export_dir, tmp_path):
    env = WorldModelEnv(export_dir, max_episode_steps=2, **FAST)
    env.reset(seed=0, options={"frames": np.zeros((3, FRAME, FRAME, 3), np.uint8)})
    assert env.step(0)[3] is False
    assert env.step(0)[3] is True
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)
    env.close()
    ends = WorldModelEnv(make_export(tmp_path / "ends", termination_bias=8.0), **FAST)
    ends.reset(seed=0, options={"frames": np.zeros((3, FRAME, FRAME, 3), np.uint8)})
    _, _, terminated, truncated, _ = ends.step(1)
    assert terminated and not truncated
    with pytest.raises(RuntimeError, match="ended"):
        ends.step(1)
    ends.close()


def test_context_from_frames_with_actions_and_from_a_real_world(export_dir):
    env = WorldModelEnv(export_dir, **FAST)
    frames = np.zeros((5, FRAME, FRAME, 3), np.uint8)
    obs, info = env.reset(seed=0, options={"frames": frames, "actions": [1, 2, 3, 4]})
    assert info["context_frames"] == 3 and np.array_equal(obs, frames[-1])
    obs, info = env.reset(seed=0, options={"real_env": "probe"})
    assert info["source"] == "real_env" and obs.shape == (FRAME, FRAME, 3)
    env.step(0)
    env.close()


def test_bad_inputs_get_clear_errors(export_dir, store_path, tmp_path):
    env = WorldModelEnv(export_dir, **FAST)
    with pytest.raises(ValueError, match="no context"):
        env.reset(seed=0)
    with pytest.raises(ValueError, match="frame size 16x16"):
        env.reset(options={"frames": np.zeros((3, 32, 32, 3), np.uint8)})
    with pytest.raises(ValueError, match="uint8"):
        env.reset(options={"frames": np.zeros((3, FRAME, FRAME, 3), np.float32)})
    with pytest.raises(ValueError, match="T - 1 = 2 actions"):
        env.reset(options={"frames": np.zeros((3, FRAME, FRAME, 3), np.uint8), "actions": [1]})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"frame": 1})
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    env.reset(options={"frames": np.zeros((3, FRAME, FRAME, 3), np.uint8)})
    with pytest.raises(ActionError, match="Discrete\\(5\\)"):
        env.step(7)
    env.close()
    with pytest.raises(ExportError, match="does not exist"):
        WorldModelEnv(tmp_path / "nowhere")
    other = make_export(tmp_path / "other", action_space=gym.spaces.Discrete(3))
    with pytest.raises(ValueError, match="records actions in Discrete\\(5\\)"):
        WorldModelEnv(other, **FAST).reset(options={"dataset": store_path})
    (other / "dit.safetensors").write_bytes(b"garbage")
    with pytest.raises(ExportError, match="dit"):
        WorldModelEnv(other)
    with pytest.raises(TypeError, match="unknown simulator options"):
        WorldModelEnv(export_dir, sampling_step=2)
    with pytest.raises(ValueError, match="unknown context scheme"):
        WorldModelEnv(export_dir, context="fdm")


def _frames_with(export_dir, compile_: bool) -> list[np.ndarray]:
    env = WorldModelEnv(export_dir, compile=compile_, **FAST)
    env.reset(seed=3, options={"frames": np.full((FRAME, FRAME, 3), 90, np.uint8)})
    frames = [env.step(a)[0] for a in (1, 2)]
    env.close()
    return frames


def test_compiled_simulator_gives_the_eager_frames_and_falls_back(export_dir, monkeypatch):
    """sim.compile=true traces the DiT and the streaming decoder with torch.compile (dynamic shapes).

    The "eager" backend runs dynamo's tracing, guards and graph breaks without inductor's minutes of
    C++ compilation; a backend that fails shows the fallback: a warning, then the eager frames.
    """
    import torch._dynamo

    from worldsim.sim import simulator

    eager = _frames_with(export_dir, False)
    monkeypatch.setattr(simulator, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    traced = _frames_with(export_dir, True)

    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(simulator, "COMPILE_BACKEND", broken)
    torch._dynamo.reset()
    with pytest.warns(RuntimeWarning, match="torch.compile of the DiT failed"):
        fallen_back = _frames_with(export_dir, True)
    for a, b, c in zip(eager, traced, fallen_back):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        assert np.array_equal(a, c)


def test_auto_dtype_is_bf16_exactly_where_the_cpu_multiplies_it_natively(export_dir):
    from worldsim.hardware import cpu_has_native_bf16

    env = WorldModelEnv(export_dir, **FAST)
    assert env.sim.autocast == cpu_has_native_bf16()
    env.reset(seed=0, options={"frames": np.full((FRAME, FRAME, 3), 90, np.uint8)})
    obs = env.step(1)[0]
    assert obs.dtype == np.uint8 and obs.shape == (FRAME, FRAME, 3)
    env.close()
    assert not WorldModelEnv(export_dir, dtype="float32", **FAST).sim.autocast


def test_episodes_behave_like_the_imitated_world(tmp_path):
    """Time limit from the real world (in steps of k frames), exactly 0 reward for a world that never pays,
    and the real frame rate for videos (one rendered frame per k real frames)."""
    from tiny_world_model import make_export

    world = {"env_id": "worldsim-real/Probe-v0", "env_kwargs": {"size": FRAME}, "rewarded": False}
    export = make_export(tmp_path / "probe", extra={"world": world, "fps": 15.0})
    env = WorldModelEnv(export, **FAST)
    assert env.sim.max_episode_steps == 32  # the probe world truncates at 64 frames, k = 2
    assert env.metadata["render_fps"] == 7.5
    env.reset(seed=0, options={"frames": np.full((FRAME, FRAME, 3), 90, np.uint8)})
    rewards, truncated, steps = [], False, 0
    while not truncated:
        _, r, terminated, truncated, _ = env.step(1)
        rewards.append(r)
        steps += 1
        assert not terminated
    assert steps == 32 and set(rewards) == {0.0}
    env.close()
    limited = make_export(tmp_path / "limited", extra={"world": {**world, "env_kwargs": {"max_episode_steps": 7}}})
    assert WorldModelEnv(limited, **FAST).sim.max_episode_steps == 4  # ceil(7 / 2)
    assert WorldModelEnv(limited, max_episode_steps=9, **FAST).sim.max_episode_steps == 9  # asked for: kept


def test_frameskip_repeats_the_action_and_adds_the_rewards(export_dir):
    """One step with frameskip=3 is three steps with the action held (TorchRL's GymEnv passes frameskip)."""
    start = {"frames": np.full((FRAME, FRAME, 3), 90, np.uint8)}
    skip = gym.make("worldsim/WorldModel-v0", checkpoint=str(export_dir), frameskip=3, **FAST)
    one = WorldModelEnv(export_dir, **FAST)
    skip.reset(seed=4, options=start)
    one.reset(seed=4, options=start)
    obs, reward, _, _, info = skip.step(2)
    steps = [one.step(2) for _ in range(3)]
    assert np.array_equal(obs, steps[-1][0]) and info["frames"].shape[0] == 3 * one.sim.k
    assert reward == pytest.approx(sum(s[1] for s in steps), abs=1e-5)
    skip.close()
    one.close()


def test_step_after_close_is_refused(export_dir):
    env = WorldModelEnv(export_dir, **FAST)
    env.reset(seed=0, options={"frames": np.full((FRAME, FRAME, 3), 90, np.uint8)})
    env.close()
    with pytest.raises(RuntimeError, match="after close"):
        env.step(0)
    with pytest.raises(RuntimeError, match="reset called after close"):
        env.reset(seed=0, options={"frames": np.full((FRAME, FRAME, 3), 90, np.uint8)})


def test_default_context_budget_is_the_trained_context(tmp_path, export_dir):
    # An export trained on 9-frame windows (k=2: 5 latent frames, 4 of context) attends to 4 frames by default,
    # as in training; an explicit budget wins; an export without a recorded window keeps 16.
    trained = make_export(tmp_path / "w9", extra={"window": 9})
    env = WorldModelEnv(trained, **FAST)
    assert env.sim.scheme.budget == 4
    env.reset(seed=0, options={"frames": np.zeros((FRAME, FRAME, 3), np.uint8)})
    for _ in range(8):
        env.step(0)
    assert len(env._track.kv) <= 4
    env.close()
    assert WorldModelEnv(trained, context_budget=6, **FAST).sim.scheme.budget == 6
    assert WorldModelEnv(export_dir, **FAST).sim.scheme.budget == 16


def test_serving_context_budget_of_the_export_is_the_default(tmp_path):
    """A budget chosen by evaluation (`set_serving`) beats the trained context; an explicit one beats both;
    bad values are refused before anything is written; None removes it again."""
    import json

    from worldsim.export import ExportError, set_serving

    trained = make_export(tmp_path / "w9", extra={"window": 17})  # trained context 8
    assert WorldModelEnv(trained, **FAST).sim.scheme.budget == 8
    assert set_serving(trained, context_budget=3) == {"context_budget": 3}
    env = WorldModelEnv(trained, **FAST)
    assert env.sim.scheme.budget == 3
    env.reset(seed=0, options={"frames": np.zeros((FRAME, FRAME, 3), np.uint8)})
    for _ in range(6):
        env.step(0)
    assert len(env._track.kv) <= 3
    env.close()
    assert WorldModelEnv(trained, context_budget=6, **FAST).sim.scheme.budget == 6
    before = (trained / "config.json").read_text()
    for bad, match in (({"context_budget": 0}, "integer >= 1"), ({"context_budget": 2.5}, "integer >= 1"),
                       ({"budget": 4}, "unknown serving default")):
        with pytest.raises(ValueError, match=match):
            set_serving(trained, **bad)
    assert (trained / "config.json").read_text() == before
    assert set_serving(trained, context_budget=None) == {}
    assert WorldModelEnv(trained, **FAST).sim.scheme.budget == 8
    edited = json.loads(before)
    edited["serving"] = {"context_budget": "four"}
    (trained / "config.json").write_text(json.dumps(edited))
    with pytest.raises(ExportError, match="serving.context_budget is 'four'"):
        WorldModelEnv(trained, **FAST)


def test_serving_reencode_of_the_export_is_the_default(tmp_path):
    """`reencode` served by the export (`set_serving`) is the default; an explicit value beats it; a bad one is
    refused before anything is written; None removes it."""
    from worldsim.export import set_serving

    folder = make_export(tmp_path / "e")
    assert WorldModelEnv(folder, **FAST).sim.reencode is False
    assert set_serving(folder, reencode=True) == {"reencode": True}
    assert WorldModelEnv(folder, **FAST).sim.reencode is True
    assert WorldModelEnv(folder, reencode=False, **FAST).sim.reencode is False
    before = (folder / "config.json").read_text()
    with pytest.raises(ValueError, match="reencode must be true or false"):
        set_serving(folder, reencode=1)
    assert (folder / "config.json").read_text() == before
    assert set_serving(folder, reencode=None) == {}
    assert WorldModelEnv(folder, **FAST).sim.reencode is False


def test_bf16_simulator_uses_the_exact_gelu_and_float32_keeps_the_trained_one(export_dir):
    """On a CPU in bf16 the DiT's tanh-GELU becomes the erf one (4x faster there, within bf16 rounding of it)."""
    import torch

    approximations = {dtype: {m.approximate for m in WorldModelEnv(export_dir, dtype=dtype, **FAST).sim.dit.modules()
                              if isinstance(m, torch.nn.GELU)} for dtype in ("bfloat16", "float32")}
    assert approximations == {"bfloat16": {"none"}, "float32": {"tanh"}}


def test_bf16_simulator_holds_the_dit_weights_in_bf16_and_its_buffers_in_float32(export_dir):
    """Cast once instead of at every call under autocast (the DiT and the decoder); the rotary frequencies (buffers)
    and the encoder keep float32."""
    import torch

    for dtype, weights in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        sim = WorldModelEnv(export_dir, dtype=dtype, **FAST).sim
        assert {p.dtype for p in sim.dit.parameters()} == {weights}
        assert {b.dtype for b in sim.dit.buffers()} == {torch.float32}
        assert {p.dtype for p in sim.autoencoder.decoder.parameters()} == {weights}
        assert {p.dtype for p in sim.autoencoder.encoder.parameters()} == {torch.float32}
