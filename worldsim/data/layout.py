"""The row layout of an episode store, and checking an episode against it (no zarr here).

An episode of ``T`` steps is stored as ``T + 1`` rows. Row ``t`` holds

- ``obs[t]``: the observation ``o_t``, uint8 ``(H, W, 3)``;
- ``action[t]``: the packed action that LED TO ``o_t`` (row 0: zeros), with ``has_action[t]``
  False where there is none (row 0 always; every row of action-free video);
- ``reward[t]``: the reward received on arriving at ``o_t`` (row 0: 0);
- ``terminated[t]`` / ``truncated[t]``: the flags of arriving at ``o_t`` (only the last row may be
  True);
- ``state/<key>[t]``: ground-truth state at ``o_t``.

So a model conditions frame ``t`` on ``action[t]``.

`episode_rows` takes an episode the way a collector records it, ``obs`` for the ``T + 1``
observations and ``action`` / ``reward`` / ``terminated`` / ``truncated`` for the ``T`` steps, and
returns it in that row layout, after checking every array against the store's `StoreLayout`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from worldsim.spaces import ActionError, check_packed, pack_action, packed_dim, packed_dtype, space_from_json

FORMAT_VERSION = 1  # the store format this code writes and reads (newer stores are refused)

STATE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class StoreError(ValueError):
    """A path that is not a store, a corrupt or newer store, or data that does not match a store."""


@dataclass(frozen=True)
class StoreLayout:
    """What every row of a store holds: frame size, action space and ground-truth state arrays."""

    frame_size: tuple[int, int]  # (H, W) of every frame
    action_space: spaces.Space | None  # None for action-free stores (imported video)
    state_spec: dict[str, tuple[tuple[int, ...], np.dtype]] = field(default_factory=dict)  # key -> (shape, dtype)

    @property
    def action_dim(self) -> int:
        """D of the packed action array (0 for action-free stores)."""
        return 0 if self.action_space is None else packed_dim(self.action_space)

    @property
    def action_dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.action_space is None else packed_dtype(self.action_space)

    def row_specs(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Per-row shape and dtype of every stored data array, keyed like `EpisodeStore.read`."""
        h, w = self.frame_size
        specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {"obs": ((h, w, 3), np.dtype(np.uint8))}
        if self.action_space is not None:
            specs["action"] = ((self.action_dim,), self.action_dtype)
        specs["has_action"] = ((), np.dtype(bool))
        specs["reward"] = ((), np.dtype(np.float32))
        specs["terminated"] = ((), np.dtype(bool))
        specs["truncated"] = ((), np.dtype(bool))
        for key, (shape, dtype) in self.state_spec.items():
            specs[f"state/{key}"] = (tuple(shape), np.dtype(dtype))
        return specs


def check_state_spec(state_spec: Mapping[str, Any] | None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Normalise ``{key: (shape, dtype)}``; raise StoreError on bad keys, shapes or dtypes."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for key, spec in (state_spec or {}).items():
        if not isinstance(key, str) or not STATE_KEY.match(key):
            raise StoreError(f"state key {key!r} is not a valid name (letters, digits, '_', '.', '-')")
        try:
            shape, dtype = spec
            shape = tuple(int(n) for n in shape)
            dtype = np.dtype(dtype)
        except (TypeError, ValueError) as e:
            raise StoreError(f"state spec for {key!r} must be (shape, dtype), got {spec!r}: {e}") from None
        if any(n < 1 for n in shape):
            raise StoreError(f"state {key!r} has shape {shape}; every dimension must be >= 1")
        if dtype.kind not in "biuf":
            raise StoreError(f"state {key!r} has dtype {dtype}; use a bool, integer or float dtype")
        out[key] = (shape, dtype)
    return out


def episode_rows(
    layout: StoreLayout,
    obs: np.ndarray,
    action: np.ndarray | Sequence[Any] | None = None,
    reward: np.ndarray | Sequence[float] | None = None,
    terminated: np.ndarray | Sequence[bool] | None = None,
    truncated: np.ndarray | Sequence[bool] | None = None,
    state: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Check one episode and return its ``T + 1`` rows per stored array (see the module docstring).

    Args:
        obs: uint8 ``(T + 1, H, W, 3)``, the observations ``o_0 .. o_T``; ``T >= 0``.
        action: the ``T`` actions, ``action[t]`` taken at ``o_t`` and leading to ``o_{t+1}``. Either a
            numpy array already packed, ``(T, D)`` (checked with `check_packed`), or a list of ``T``
            raw actions of the space (each packed with `pack_action`; ``None`` entries mean "no
            action" for that step). ``None``: no actions at all. Must be None for action-free stores.
        reward: ``(T,)`` real numbers; None means zeros.
        terminated / truncated: ``(T,)`` bools, only the last may be True; None means all False.
        state: ``{key: (T + 1, *shape)}`` for exactly the store's state keys.

    Returns:
        ``{key: rows}`` with the keys of ``layout.row_specs()``, each ``(T + 1, ...)`` in the stored dtype.
    """
    specs = layout.row_specs()
    obs = np.asarray(obs)
    if obs.ndim == 0 or obs.shape[0] == 0:
        raise StoreError("empty episode: obs must hold at least one frame, shape (T + 1, H, W, 3)")
    obs_shape, _ = specs["obs"]
    if obs.shape[1:] != obs_shape or obs.dtype != np.uint8:
        raise StoreError(
            f"obs has shape {obs.shape} and dtype {obs.dtype}; expected (T + 1, {', '.join(map(str, obs_shape))}) uint8"
        )
    rows = obs.shape[0]
    steps = rows - 1
    out: dict[str, np.ndarray] = {"obs": obs}

    packed, has = _action_rows(layout, action, steps)
    if layout.action_space is not None:
        out["action"] = packed
    out["has_action"] = has
    out["reward"] = _step_rows("reward", reward, steps, np.float32)
    if not np.all(np.isfinite(out["reward"])):
        raise StoreError("reward holds NaN or infinite values")
    for name, flags in (("terminated", terminated), ("truncated", truncated)):
        out[name] = _step_rows(name, flags, steps, bool)
        early = out[name][1:-1]  # steps 0 .. T - 2
        if early.any():
            first = int(np.flatnonzero(early)[0])
            raise StoreError(f"{name} is True at step {first}, before the episode's last step {steps - 1}")
    out.update(_state_rows(layout, state, rows))
    return out


def _action_rows(layout: StoreLayout, action: Any, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed actions ``(T + 1, D)`` with row 0 empty, and has_action ``(T + 1,)``."""
    space, d = layout.action_space, layout.action_dim
    packed = np.zeros((steps + 1, d), dtype=layout.action_dtype)
    has = np.zeros(steps + 1, dtype=bool)
    if action is None:
        return packed, has
    if space is None:
        raise StoreError("this store is action-free (no action space recorded); append episodes with action=None")
    if isinstance(action, np.ndarray):
        if action.ndim != 2 or action.shape != (steps, d):
            raise StoreError(
                f"packed action array has shape {action.shape}; expected (T, D) = ({steps}, {d}) "
                "(one packed action per step; pass a list for raw actions)"
            )
        kind = "iub" if layout.action_dtype.kind in "iu" else "iubf"
        if action.dtype.kind not in kind:
            raise ActionError(f"packed actions have dtype {action.dtype}; expected {layout.action_dtype}")
        check_packed(space, action)
        packed[1:] = action
        has[1:] = True
        return packed, has
    if not isinstance(action, Sequence) or isinstance(action, (str, bytes)):
        raise StoreError(f"action must be a packed numpy array (T, D) or a list of T raw actions, got {type(action)}")
    if len(action) != steps:
        raise StoreError(f"got {len(action)} actions for an episode of {steps} steps ({steps + 1} frames)")
    for t, a in enumerate(action):
        if a is None:
            continue
        try:
            packed[t + 1] = pack_action(space, a)
        except ActionError as e:
            raise ActionError(f"step {t}: {e}") from None
        has[t + 1] = True
    return packed, has


def _step_rows(name: str, values: Any, steps: int, dtype: Any) -> np.ndarray:
    """``(T,)`` per-step values as ``(T + 1,)`` rows with row 0 zero/False."""
    out = np.zeros(steps + 1, dtype=dtype)
    if values is None:
        return out
    arr = np.asarray(values)
    if arr.shape != (steps,):
        raise StoreError(f"{name} has shape {arr.shape}; expected ({steps},), one value per step")
    if np.dtype(dtype) == np.dtype(bool) and arr.dtype != bool:
        if arr.dtype.kind not in "iu" or not np.isin(arr, (0, 1)).all():
            raise StoreError(f"{name} must be booleans, got dtype {arr.dtype}")
    elif np.dtype(dtype) != np.dtype(bool) and arr.dtype.kind not in "biuf":
        raise StoreError(f"{name} must be real numbers, got dtype {arr.dtype}")
    out[1:] = arr
    return out


def _state_rows(layout: StoreLayout, state: Mapping[str, np.ndarray] | None, rows: int) -> dict[str, np.ndarray]:
    expected = set(layout.state_spec)
    given = set(state or {})
    if given != expected:
        raise StoreError(
            f"state keys {sorted(given)} do not match the store's state keys {sorted(expected)}"
            + (" (pass state=...)" if state is None else "")
        )
    out = {}
    for key, (shape, dtype) in layout.state_spec.items():
        arr = np.asarray(state[key])  # type: ignore[index]
        if arr.shape != (rows, *shape):
            raise StoreError(f"state {key!r} has shape {arr.shape}; expected {(rows, *shape)} (one row per frame)")
        if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
            raise StoreError(f"state {key!r} has dtype {arr.dtype}; the store records {dtype}")
        out[f"state/{key}"] = arr.astype(dtype, copy=False)
    return out


def row_nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Uncompressed bytes of one row of an array."""
    return int(math.prod(shape)) * np.dtype(dtype).itemsize


def check_format(attrs: dict[str, Any], path: Path) -> None:
    """Raise StoreError unless `attrs` are a worldsim store's that this code can read."""
    version = attrs.get("worldsim_format")
    if version is None:
        raise StoreError(f"{path} is a Zarr group but not a worldsim episode store (no worldsim_format attribute)")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StoreError(
            f"{path} has worldsim_format {version!r}, newer than this code's {FORMAT_VERSION}; "
            "upgrade worldsim to read it"
        )
    missing = {"env_id", "action_space", "frame_size", "fps", "committed_episodes"} - set(attrs)
    if missing:
        raise StoreError(f"{path}: store attributes lack {sorted(missing)}; the store is corrupt")


def layout_from_attrs(attrs: dict[str, Any], path: Path) -> StoreLayout:
    """The store's `StoreLayout`, read from its group attributes (StoreError where they are unreadable)."""
    try:
        space = None if attrs["action_space"] is None else space_from_json(attrs["action_space"])
        states = check_state_spec({k: (v["shape"], v["dtype"]) for k, v in attrs.get("state_spec", {}).items()})
        h, w = attrs["frame_size"]
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"{path}: unreadable store attributes ({e}); the store is corrupt") from None
    return StoreLayout((int(h), int(w)), space, states)
