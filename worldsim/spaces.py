"""Action spaces as JSON and actions as fixed-width vectors.

Episode stores and the model both need every action of a run in one dense array. An action from a
supported Gymnasium space is *packed* into a 1-D vector of `packed_dim(space)` numbers:

- ``Discrete(n, start)``: one integer, the index ``a - start`` in ``[0, n)``.
- ``MultiDiscrete(nvec)``: ``len(nvec)`` integers, each ``a_i - start_i``.
- ``Box(shape)``: ``prod(shape)`` floats, row-major.
- ``Dict``: the packed children concatenated in the space's key order.

The packed dtype is int64 when every leaf is discrete and float32 otherwise (small integers are
exact in float32). `unpack_action` inverts `pack_action` exactly for every valid action.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
from gymnasium import spaces

SUPPORTED = "Discrete, MultiDiscrete, Box or Dict of those"


class ActionError(ValueError):
    """An action that does not belong to the recorded action space."""


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A JSON-serialisable description of `space` that `space_from_json` turns back into it."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise TypeError("only 1-D MultiDiscrete spaces are supported")
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "dtype": np.dtype(space.dtype).name,
        }
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": [[k, space_to_json(s)] for k, s in space.spaces.items()]}
    raise TypeError(f"unsupported space {space!r}: worldsim supports {SUPPORTED}")


def space_from_json(d: dict[str, Any]) -> spaces.Space:
    """Inverse of `space_to_json`."""
    kind = d.get("type")
    if kind == "Discrete":
        return spaces.Discrete(d["n"], start=d.get("start", 0))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(d["nvec"], start=d.get("start"))
    if kind == "Box":
        return spaces.Box(
            low=np.asarray(d["low"], dtype=d["dtype"]),
            high=np.asarray(d["high"], dtype=d["dtype"]),
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
        )
    if kind == "Dict":
        return spaces.Dict(OrderedDict((k, space_from_json(s)) for k, s in d["spaces"]))
    raise ValueError(f"unknown space description {d!r}: expected {SUPPORTED}")


def packed_dim(space: spaces.Space) -> int:
    """Length of the vector an action of `space` packs into."""
    if isinstance(space, spaces.Discrete):
        return 1
    if isinstance(space, spaces.MultiDiscrete):
        return int(space.nvec.shape[0])
    if isinstance(space, spaces.Box):
        return int(math.prod(space.shape))
    if isinstance(space, spaces.Dict):
        return sum(packed_dim(s) for s in space.spaces.values())
    raise TypeError(f"unsupported space {space!r}: worldsim supports {SUPPORTED}")


def is_discrete(space: spaces.Space) -> bool:
    """True when every leaf of `space` is Discrete or MultiDiscrete."""
    if isinstance(space, spaces.Dict):
        return all(is_discrete(s) for s in space.spaces.values())
    return isinstance(space, (spaces.Discrete, spaces.MultiDiscrete))


def packed_dtype(space: spaces.Space) -> np.dtype:
    return np.dtype(np.int64) if is_discrete(space) else np.dtype(np.float32)


def check_action(space: spaces.Space, action: Any) -> None:
    """Raise `ActionError` naming the space when `action` is not in it."""
    try:
        ok = space.contains(_as_space_value(space, action))
    except (TypeError, ValueError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise ActionError(f"action {action!r} is not in the action space {space}")


def pack_action(space: spaces.Space, action: Any) -> np.ndarray:
    """Pack one valid action into a vector of shape (packed_dim(space),), dtype packed_dtype(space)."""
    check_action(space, action)
    return _pack(space, action).astype(packed_dtype(space), copy=False)


def _pack(space: spaces.Space, action: Any) -> np.ndarray:
    if isinstance(space, spaces.Discrete):
        return np.array([int(action) - int(space.start)], dtype=np.int64)
    if isinstance(space, spaces.MultiDiscrete):
        return (np.asarray(action, dtype=np.int64) - space.start).reshape(-1)
    if isinstance(space, spaces.Box):
        return np.asarray(action, dtype=np.float32).reshape(-1)
    if isinstance(space, spaces.Dict):
        parts = [_pack(s, action[k]).astype(np.float64) for k, s in space.spaces.items()]
        return np.concatenate(parts) if parts else np.zeros(0)
    raise TypeError(f"unsupported space {space!r}: worldsim supports {SUPPORTED}")


def unpack_action(space: spaces.Space, vector: np.ndarray) -> Any:
    """Inverse of `pack_action` for one vector of shape (packed_dim(space),)."""
    vector = np.asarray(vector)
    if vector.shape != (packed_dim(space),):
        raise ActionError(f"packed action has shape {vector.shape}, expected ({packed_dim(space)},) for {space}")
    if isinstance(space, spaces.Discrete):
        return np.int64(int(vector[0]) + int(space.start))
    if isinstance(space, spaces.MultiDiscrete):
        return (np.rint(vector).astype(np.int64) + space.start).astype(space.dtype)
    if isinstance(space, spaces.Box):
        return vector.astype(space.dtype).reshape(space.shape)
    if isinstance(space, spaces.Dict):
        out, i = OrderedDict(), 0
        for k, s in space.spaces.items():
            n = packed_dim(s)
            out[k] = unpack_action(s, vector[i : i + n])
            i += n
        return out
    raise TypeError(f"unsupported space {space!r}: worldsim supports {SUPPORTED}")


def check_packed(space: spaces.Space, packed: np.ndarray) -> None:
    """Raise `ActionError` if any row of `packed` (shape (N, D)) does not unpack to a valid action."""
    packed = np.asarray(packed)
    if packed.ndim != 2 or packed.shape[1] != packed_dim(space):
        raise ActionError(f"packed actions have shape {packed.shape}, expected (N, {packed_dim(space)}) for {space}")
    for i, row in enumerate(packed):
        try:
            check_action(space, unpack_action(space, row))
        except ActionError:
            raise ActionError(f"action {i} ({row.tolist()}) is outside the action space {space}") from None


def _as_space_value(space: spaces.Space, action: Any) -> Any:
    """Coerce Python scalars and lists to what `space.contains` expects."""
    if isinstance(space, spaces.Discrete):
        if isinstance(action, (bool, np.bool_)) or not np.issubdtype(np.asarray(action).dtype, np.integer):
            raise TypeError("Discrete actions are integers")
        return np.int64(action)
    if isinstance(space, (spaces.MultiDiscrete, spaces.Box)):
        return np.asarray(action, dtype=space.dtype) if np.asarray(action).shape == space.shape else action
    if isinstance(space, spaces.Dict):
        if set(action.keys()) != set(space.spaces.keys()):
            raise KeyError("Dict action keys differ from the space's")
        return OrderedDict((k, _as_space_value(s, action[k])) for k, s in space.spaces.items())
    return action
