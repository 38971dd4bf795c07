"""Collection from a real world into a real store: alignment, determinism, resume, bad input."""

import numpy as np
import pytest

from worldsim import envs
from worldsim.cli import compose, main
from worldsim.data.collect import collect
from worldsim.data.store import EpisodeStore, StoreError


def _cfg(out, *extra):
    return compose("collect", [f"out={out}", "env=probe", "env.max_episode_steps=12", "progress=false",
                               "vector=sync", *extra])


def _episodes(path):
    store = EpisodeStore.open(path)
    return [store.episode(i) for i in range(store.num_episodes)]


def test_rows_replay_exactly_in_the_real_world(tmp_path):
    """Row t's action, stepped in the same world reset with seed + j, gives row t's obs, reward and state."""
    out = tmp_path / "probe.zarr"
    collect(_cfg(out, "episodes=3", "num_envs=2", "seed=5"))
    store = EpisodeStore.open(out)
    assert store.num_episodes == 3 and store.env_id == envs.REAL_ENVS["probe"]
    for j in range(3):
        ep = store.episode(j)
        env = envs.make_real_env("probe", size=64, max_episode_steps=12, family="random")
        obs, info = env.reset(seed=5 + j)
        np.testing.assert_array_equal(ep["obs"][0], obs)
        assert not ep["has_action"][0] and ep["has_action"][1:].all()
        for t in range(1, len(ep["obs"])):
            obs, reward, terminated, truncated, info = env.step(int(ep["action"][t, 0]))
            np.testing.assert_array_equal(ep["obs"][t], obs)
            assert ep["reward"][t] == np.float32(reward)
            assert (ep["terminated"][t], ep["truncated"][t]) == (terminated, truncated)
            for key, value in info["state"].items():
                np.testing.assert_array_equal(ep[f"state/{key}"][t], value)
        assert terminated or truncated  # the episode was recorded to its end


def test_same_seed_same_store_whatever_the_parallelism_or_interruption(tmp_path):
    collect(_cfg(tmp_path / "a.zarr", "episodes=4", "num_envs=1"))
    collect(_cfg(tmp_path / "b.zarr", "episodes=4", "num_envs=3"))
    collect(_cfg(tmp_path / "c.zarr", "episodes=1", "num_envs=2"))  # resumed: appends episodes 1..3
    collect(_cfg(tmp_path / "c.zarr", "episodes=3", "num_envs=2"))
    a, b, c = (_episodes(tmp_path / f"{n}.zarr") for n in "abc")
    assert len(a) == len(b) == len(c) == 4
    for ea, eb, ec in zip(a, b, c):
        for key in ea:
            np.testing.assert_array_equal(ea[key], eb[key])
            np.testing.assert_array_equal(ea[key], ec[key])
    assert not np.array_equal(a[0]["obs"], a[1]["obs"])  # different seeds, different worlds


def test_async_vector_env_matches_sync(tmp_path):
    collect(_cfg(tmp_path / "s.zarr", "episodes=2", "num_envs=2"))
    collect(compose("collect", [f"out={tmp_path / 'a.zarr'}", "env=probe", "env.max_episode_steps=12",
                                "progress=false", "vector=async", "episodes=2", "num_envs=2"]))
    for es, ea in zip(_episodes(tmp_path / "s.zarr"), _episodes(tmp_path / "a.zarr")):
        np.testing.assert_array_equal(es["obs"], ea["obs"])
        np.testing.assert_array_equal(es["action"], ea["action"])


def test_a_probe_store_of_several_families(tmp_path):
    """env.kwargs.family as a list: one store holds several probe families, and appending needs the same list."""
    out = tmp_path / "mix.zarr"
    collect(_cfg(out, "episodes=12", "env.kwargs.family=[random,permanence,fall_bounce]"))
    store = EpisodeStore.open(out)
    assert store.attrs["env_kwargs"]["family"] == ["random", "permanence", "fall_bounce"]
    starts = np.concatenate([[0], store.episode_ends[:-1]])
    occluders = store.read("state/occluder_present", 0, store.num_frames)[starts].sum(axis=1)
    balls = store.read("state/present", 0, store.num_frames)[starts].sum(axis=1)
    store.close()
    assert len(set(zip(occluders.tolist(), balls.tolist()))) > 2  # not one family's layout twelve times
    with pytest.raises(StoreError, match="env.kwargs.family"):
        collect(_cfg(out, "episodes=1"))
    collect(_cfg(out, "episodes=2", "env.kwargs.family=[random,permanence,fall_bounce]"))
    assert EpisodeStore.open(out).num_episodes == 14


def test_crafter_collection_through_the_command(tmp_path, capsys):
    out = tmp_path / "crafter.zarr"
    assert main(["collect", f"out={out}", "episodes=2", "env.max_episode_steps=20", "progress=false"]) == 0
    assert "wrote 2 episodes" in capsys.readouterr().out
    store = EpisodeStore.open(out)
    assert store.frame_size == (64, 64) and store.num_frames == 2 * 21
    assert store.action_space.n == 17


def test_appending_a_different_world_is_refused_and_loses_nothing(tmp_path):
    out = tmp_path / "probe.zarr"
    collect(_cfg(out, "episodes=1"))
    before = _episodes(out)
    with pytest.raises(StoreError, match="frames are"):
        collect(_cfg(out, "episodes=1", "env.size=32"))
    after = _episodes(out)
    assert len(after) == 1 and all(np.array_equal(before[0][k], after[0][k]) for k in before[0])


def test_appending_with_other_world_arguments_is_refused_naming_both_values(tmp_path):
    out = tmp_path / "probe.zarr"
    collect(_cfg(out, "episodes=1", "env.kwargs.family=random"))
    before = _episodes(out)
    with pytest.raises(StoreError, match=r"cannot append to .*probe.zarr: it was collected with "
                                         r"env.kwargs.family='random', not 'collision'"):
        collect(_cfg(out, "episodes=1", "env.kwargs.family=collision"))
    with pytest.raises(StoreError, match="env.max_episode_steps=12, not 20"):
        collect(_cfg(out, "episodes=1", "env.max_episode_steps=20"))
    after = _episodes(out)
    assert len(after) == 1 and all(np.array_equal(before[0][k], after[0][k]) for k in before[0])
    # the same world with its default family left out (as `worldsim imagine` collects): appended
    from worldsim.config import CollectConfig, EnvConfig

    collect(CollectConfig(env=EnvConfig(name="probe", max_episode_steps=12), out=str(out), episodes=1, num_envs=1,
                          vector="sync", progress=False))
    assert EpisodeStore.open(out).num_episodes == 2


def test_an_argument_the_world_does_not_take_is_named(tmp_path, capsys):
    assert main(["collect", "env=probe", "episodes=1", f"out={tmp_path / 's.zarr'}", "+env.kwargs.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the probe world takes no argument 'bogus'; its arguments are size, family" in err, err
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("override, match", [("episodes=0", "episodes"), ("num_envs=0", "num_envs"),
                                             ("vector=threads", "vector"), ("policy=genius", "policy"),
                                             ("+policy_kwargs.bogus=1", "does not take policy_kwargs")])
def test_bad_settings(tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        collect(_cfg(tmp_path / "x.zarr", override))


def test_a_trained_agent_collects_through_policy_kwargs(tmp_path):
    from gymnasium import spaces

    from worldsim.agents.actor_critic import ActorCritic, ActorCriticNetConfig, save_actor_critic

    weights = tmp_path / "agent.safetensors"
    save_actor_critic(weights, ActorCritic(ActorCriticNetConfig(spaces.Discrete(5).n, (4, 8, 8), hidden=16)))
    out = tmp_path / "agent.zarr"
    collect(_cfg(out, "episodes=2", "policy=actor_critic", f"+policy_kwargs.weights={weights}"))
    assert EpisodeStore.open(out).num_episodes == 2
    assert not (tmp_path / "x.zarr").exists()  # a refused setting wrote nothing


def test_at_most_one_finished_episode_is_ever_uncommitted(tmp_path, monkeypatch):
    import time

    from worldsim.data.collect import _Writer

    store = EpisodeStore.create(tmp_path / "w.zarr", env_id="test", frame_size=(8, 8), fps=10, action_space=None)
    real_append = store.append_episode

    def slow_append(**episode):
        time.sleep(0.2)  # a slow disk: the stepping thread runs ahead of the writer
        return real_append(**episode)

    monkeypatch.setattr(store, "append_episode", slow_append)
    writer = _Writer(store)
    episode = {"obs": np.zeros((3, 8, 8, 3), np.uint8)}
    writer.put(dict(episode))
    writer.put(dict(episode))  # returns only once the first is committed
    assert store.num_episodes == 1 and writer.committed == 1
    writer.close()
    assert store.num_episodes == 2 and writer.committed == 2
    store.close()
