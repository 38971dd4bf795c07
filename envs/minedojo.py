"""`MineDojoEnv`: real Minecraft through MineDojo, behind the Gymnasium adapter contract.

MineDojo (Fan et al. 2022) is an optional extra (``pip install 'worldsim[minedojo]'``). It runs a
Minecraft client and needs **Java 8 (JDK 1.8)** on PATH, and it downloads Minecraft on first use
(network). When any of that is missing `MineDojoEnv` raises `MineDojoUnavailable` saying what
is needed, before anything else happens.

Following MineDojo's documented API: ``minedojo.make(task_id=..., image_size=(H, W))`` returns an
old-gym env whose observation is a dict with ``obs["rgb"]`` of shape ``(3, H, W)`` uint8 and
whose action space is ``MultiDiscrete([3, 3, 4, 25, 25, 8, 244, 36])`` (forward/back,
left/right, jump/sneak/sprint, camera pitch, camera yaw, functional action, craft argument,
inventory slot argument). This adapter:

- returns ``(H, W, 3)`` frames (`rgb_chw_to_hwc`);
- converts MineDojo's spaces to Gymnasium spaces (`to_gymnasium_space`);
- reports MineDojo's ``done`` (task success, death or the task's own limit) as ``terminated``
  and reaching ``max_episode_steps`` as ``truncated``;
- puts fixed-shape ground truth in ``info["state"]`` (`state_from_obs`, `STATE_SPEC`):
  ``pos`` (3,) float32 (x, y, z), ``yaw`` () float32 and ``pitch`` () float32 in degrees,
  ``life`` () float32 and ``food`` () float32, from MineDojo's ``location_stats`` and
  ``life_stats``.

The conversion functions are pure and tested on arrays shaped like MineDojo's documented output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import gymnasium as gym
import numpy as np
from einops import rearrange
from gymnasium import spaces

from worldsim.envs.frame_size import parse_size

ACTION_NVEC = (3, 3, 4, 25, 25, 8, 244, 36)  # MineDojo's documented MultiDiscrete action space
NOOP_ACTION = np.array([0, 0, 0, 12, 12, 0, 0, 0], np.int64)  # camera bins 12 = no rotation
STATE_SPEC: dict[str, tuple[tuple[int, ...], np.dtype]] = {
    "pos": ((3,), np.dtype(np.float32)),
    "yaw": ((), np.dtype(np.float32)),
    "pitch": ((), np.dtype(np.float32)),
    "life": ((), np.dtype(np.float32)),
    "food": ((), np.dtype(np.float32)),
}
_STATE_SOURCE = {  # state key -> (obs group, key in that group)
    "pos": ("location_stats", "pos"),
    "yaw": ("location_stats", "yaw"),
    "pitch": ("location_stats", "pitch"),
    "life": ("life_stats", "life"),
    "food": ("life_stats", "food"),
}
INSTALL_HINT = (
    "MineDojo needs: pip install 'worldsim[minedojo]', Java 8 (JDK 1.8, e.g. openjdk-8-jdk) as "
    "the `java` on PATH, and network access on first run to download Minecraft"
)


class MineDojoUnavailable(RuntimeError):
    """MineDojo cannot run here: the package, Java 8 or the game itself is missing or broken."""


def rgb_chw_to_hwc(rgb: np.ndarray) -> np.ndarray:
    """MineDojo's ``(3, H, W)`` uint8 frame as ``(H, W, 3)`` uint8 (contiguous)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected a MineDojo frame of shape (3, H, W), got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 MineDojo frame, got {rgb.dtype}")
    return np.ascontiguousarray(rearrange(rgb, "c h w -> h w c"))


def to_gymnasium_space(space: Any) -> spaces.Space:
    """A Gymnasium space equal to an old-gym / MineDojo space, recognised by its attributes.

    MultiDiscrete (``nvec``), Discrete (``n``), Box (``low``/``high``/``shape``/``dtype``) and
    Dict (``spaces``) are supported; anything else raises TypeError naming it.
    """
    if isinstance(space, spaces.Space):
        return space
    if hasattr(space, "nvec"):
        return spaces.MultiDiscrete(np.asarray(space.nvec, np.int64))
    if hasattr(space, "n"):
        return spaces.Discrete(int(space.n))
    if all(hasattr(space, a) for a in ("low", "high", "shape", "dtype")):
        shape = tuple(int(s) for s in space.shape)
        dtype = np.dtype(space.dtype)
        low = np.broadcast_to(np.asarray(space.low, dtype), shape)
        high = np.broadcast_to(np.asarray(space.high, dtype), shape)
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if hasattr(space, "spaces") and isinstance(space.spaces, dict):
        return spaces.Dict({k: to_gymnasium_space(v) for k, v in space.spaces.items()})
    raise TypeError(f"cannot convert {type(space).__name__} {space!r} to a Gymnasium space")


def observation_space_for(size: tuple[int, int]) -> spaces.Box:
    """The adapter's observation space: ``(H, W, 3)`` uint8 frames."""
    return spaces.Box(0, 255, (size[0], size[1], 3), np.uint8)


def state_from_obs(obs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Fixed-shape ground truth (`STATE_SPEC`) from a MineDojo observation dict."""
    out = {}
    for key, (group, name) in _STATE_SOURCE.items():
        try:
            value = obs[group][name]
        except (KeyError, TypeError) as e:
            raise ValueError(f"MineDojo observation lacks obs[{group!r}][{name!r}]") from e
        shape, dtype = STATE_SPEC[key]
        arr = np.asarray(value, dtype)
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"obs[{group!r}][{name!r}] has {arr.size} values, expected shape {shape}")
        out[key] = arr.reshape(shape)
    return out


def java_major_version(version_text: str) -> int | None:
    """The major Java version in ``java -version`` output ("1.8.0_392" -> 8, "17.0.15" -> 17)."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if m is None:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_java(java: str = "java") -> None:
    """Raise `MineDojoUnavailable` unless `java` runs and is Java 8."""
    exe = shutil.which(java)
    if exe is None:
        raise MineDojoUnavailable(f"no Java found ({java!r} is not on PATH). {INSTALL_HINT}")
    try:
        done = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MineDojoUnavailable(f"could not run {exe} -version: {e}. {INSTALL_HINT}") from e
    version = java_major_version(done.stderr + done.stdout)
    if version != 8:
        found = "an unrecognised version" if version is None else f"Java {version}"
        raise MineDojoUnavailable(f"MineDojo needs Java 8 but {exe} is {found}. {INSTALL_HINT}")


def import_minedojo():
    """The `minedojo` module, or `MineDojoUnavailable` saying how to install it."""
    try:
        import minedojo
    except ImportError as e:
        raise MineDojoUnavailable(f"the 'minedojo' package is not installed ({e}). {INSTALL_HINT}") from e
    return minedojo


class MineDojoEnv(gym.Env):
    """A MineDojo task as a Gymnasium env with ``(H, W, 3)`` frames.

    Args:
        task_id: a MineDojo task id, e.g. "open-ended" or "harvest_milk".
        size: frame ``(H, W)`` or an int for square frames (MineDojo's ``image_size``).
        max_episode_steps: truncate after this many steps.
        java: the Java executable to check (must be Java 8).
        render_mode: None or "rgb_array".
        **make_kwargs: passed on to ``minedojo.make``.

    Raises:
        MineDojoUnavailable: minedojo is not installed, Java 8 is missing, or the game fails to start.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task_id: str = "open-ended",
        size: int | tuple[int, int] = 64,
        max_episode_steps: int = 1000,
        java: str = "java",
        render_mode: str | None = None,
        **make_kwargs: Any,
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size = parse_size(size)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        minedojo = import_minedojo()
        check_java(java)
        try:
            self._env = minedojo.make(task_id=task_id, image_size=self.size, **make_kwargs)
        except Exception as e:  # the game itself failed: say so instead of a deep traceback
            raise MineDojoUnavailable(f"minedojo.make({task_id!r}) failed: {e}. {INSTALL_HINT}") from e
        self.observation_space = observation_space_for(self.size)
        self.action_space = to_gymnasium_space(self._env.action_space)
        self._frame: np.ndarray | None = None
        self._t = 0

    @staticmethod
    def state_spec() -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every array in ``info["state"]``."""
        return dict(STATE_SPEC)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None and hasattr(self._env, "seed"):
            self._env.seed(int(seed))
        obs = self._env.reset()
        self._t = 0
        self._frame = rgb_chw_to_hwc(obs["rgb"])
        return self._frame.copy(), {"state": state_from_obs(obs)}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, done, info = self._env.step(np.asarray(action))
        self._t += 1
        self._frame = rgb_chw_to_hwc(obs["rgb"])
        truncated = self._t >= self.max_episode_steps and not done
        return self._frame.copy(), float(reward), bool(done), bool(truncated), {**info, "state": state_from_obs(obs)}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()
