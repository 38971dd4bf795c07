"""The real worlds, each behind the same Gymnasium adapter contract.

Every env here is a `gymnasium.Env` with declared spaces, ``(H, W, 3)`` uint8 RGB observations
at a configurable ``size`` (default 64), seeding through ``reset(seed=...)``, ``terminated``
separate from ``truncated``, and ground truth in ``info["state"]``: a dict of numpy arrays whose
shapes and dtypes are fixed per env instance, described by ``env.state_spec()``.

Importing this package is cheap: the worlds are registered with Gymnasium by entry-point
strings and each world's module (and optional dependency) is imported only when it is made.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym

REAL_ENVS: dict[str, str] = {
    "crafter": "worldsim-real/Crafter-v0",
    "probe": "worldsim-real/Probe-v0",
    "probe-push": "worldsim-real/ProbePush-v0",
    "minedojo": "worldsim-real/MineDojo-v0",
    "minetest": "worldsim-real/Minetest-v0",
}
_ENTRY_POINTS = {
    "crafter": "worldsim.envs.crafter:CrafterEnv",
    "probe": "worldsim.envs.probe.env:ProbeWorldEnv",
    "probe-push": "worldsim.envs.probe.task:ProbePushTaskEnv",
    "minedojo": "worldsim.envs.minedojo:MineDojoEnv",
    "minetest": "worldsim.envs.minetest.env:MinetestEnv",
}

for _name, _id in REAL_ENVS.items():
    if _id not in gym.registry:
        # No max_episode_steps here: each env truncates itself, so no TimeLimit wrapper is added.
        gym.register(id=_id, entry_point=_ENTRY_POINTS[_name])


def make_real_env(name: str, **kwargs) -> gym.Env:
    """Make a real world by short name ("crafter", "probe", "minedojo", "minetest"); kwargs go to its env.

    Raises:
        ValueError: unknown name, or an argument the world does not take.
    """
    if name not in REAL_ENVS:
        raise ValueError(f"unknown real env {name!r}; known: {', '.join(REAL_ENVS)}")
    spec = gym.spec(REAL_ENVS[name])
    if "max_episode_steps" in kwargs:
        # gym.make keeps this name for a TimeLimit wrapper, which cannot lengthen the world's own limit (a probe
        # episode asked for 70 steps ended at its default 64): each world truncates itself, so it goes to the world
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, "max_episode_steps": kwargs.pop("max_episode_steps")})
    try:
        return gym.make(spec, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        takes = constructor_defaults(name)
        unknown = sorted(set(kwargs) - set(takes))
        raise ValueError(f"the {name} world takes no argument {', '.join(map(repr, unknown)) or str(e).split(' was raised')[0]}; "
                         f"its arguments are {', '.join(takes)}") from None


def constructor_defaults(name: str) -> dict:
    """The keyword defaults of real world `name`'s constructor (e.g. probe: size 64, family "random"), read from
    its class without making the world; {} for an unknown name."""
    import importlib
    import inspect

    if name not in _ENTRY_POINTS:
        return {}
    module, cls = _ENTRY_POINTS[name].split(":")
    params = inspect.signature(getattr(importlib.import_module(module), cls).__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self" and p.default is not inspect.Parameter.empty}


def episode_limit(env_id: str, env_kwargs: dict | None = None) -> int | None:
    """The step at which the real world `env_id` truncates with these constructor kwargs (its own default
    when they do not set ``max_episode_steps``), read from the env class without making the world; None
    for a world that is not ours or has no limit."""
    import importlib
    import inspect

    if (env_kwargs or {}).get("max_episode_steps") is not None:
        return int(env_kwargs["max_episode_steps"])
    name = real_env_name(env_id)
    if name is None:
        return None
    module, cls = _ENTRY_POINTS[name].split(":")
    param = inspect.signature(getattr(importlib.import_module(module), cls).__init__).parameters.get("max_episode_steps")
    return None if param is None or param.default in (inspect.Parameter.empty, None) else int(param.default)


def real_env_name(env_id: str | None) -> str | None:
    """The short name ("crafter", ...) of the real world registered as `env_id`; None for any other id."""
    return next((name for name, gid in REAL_ENVS.items() if gid == env_id), None)


__all__ = ["REAL_ENVS", "constructor_defaults", "episode_limit", "make_real_env", "real_env_name"]
