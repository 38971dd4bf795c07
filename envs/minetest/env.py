"""`MinetestEnv`: Minetest 5.6 (the open-source Minecraft-like voxel game) as a real world.

The env owns a running game (`MinetestGame`: its own Xvfb display and a Minetest client with
its singleplayer server) and plays it the way a person would: keys and mouse through XTest,
frames grabbed from the X screen (`XDisplay`). The game runs in real time, so the same seed and
actions replay *nearly* the same episode, not exactly (`scripts/bench_minetest.py` measures how
nearly).

Actions, ``Discrete(12)`` by default. Each step holds its input for ``1 / fps`` seconds (``fps=10``
by default, so a step is 0.1 s of game time), releases the keys and grabs the frame; a mouse button
stays down through a run of steps that ask for it (the game forgets a half-dug node when the
button goes up). Turns are mouse motions, calibrated once per game in degrees per pixel:

====  ===========  ===============================================
 id   name         input
====  ===========  ===============================================
 0    noop         nothing
 1    forward      W                  2  back        S
 3    left         A (strafe)         4  right       D (strafe)
 5    turn_left    yaw +turn_degrees  6  turn_right  yaw -turn_degrees
 7    look_up      pitch -look_degrees 8  look_down  pitch +look_degrees
 9    jump         space
10    dig          left button
11    place        right button (places dirt; the player has 99 at every reset)
====  ===========  ===============================================

``action_space="multidiscrete"`` gives MineDojo-like ``MultiDiscrete([3, 3, 2, 3, 3, 3])``:
forward/back, strafe left/right, jump, turn left/right, look up/down, dig/place (0 is "none"
in each), combined within one step.

Episodes: the game keeps running across resets (start-up takes seconds and world generation
more). ``reset(seed=s)`` draws start candidates (offsets within ``spawn_radius`` of the engine's
own spawn point, and a yaw) from the env's seeded generator; the bridge mod puts the player on
the first with open ground above sea level, generates the area around it, faces the drawn yaw
with pitch 0 and refills health and dirt; the env then waits until the frame and the player are
still. About 1.3 s per reset, 7 s for the first (start-up included; ``docs/bench/minetest.json``).
The map itself comes from ``map_seed``, fixed per env, so ``reset(seed=s)`` gives the same start
in every env with the same ``map_seed``. Blocks dug or placed stay for later episodes of the
same env. Damage is off and time of day is fixed at noon: episodes never terminate; they are
truncated after ``max_episode_steps``.

``info["state"]`` (`MinetestEnv.state_spec`), as last written by the server (every
``server_step`` = 0.05 s, so it can trail the frame by a server step):

- ``pos`` (3,) float32: player position ``(x, y, z)`` in nodes, y up.
- ``yaw`` () float32: degrees in [0, 360), 0 facing +z, growing when turning left.
- ``pitch`` () float32: degrees, positive looking down.

The Debian packages ``minetest`` and ``xvfb`` and the ``minetest`` extra (python-xlib) are needed;
without them the env raises `MinetestUnavailable` / ImportError saying so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

from worldsim.envs.frame_size import LastFrameRender, parse_size
from worldsim.envs.minetest.game import GameConfig, MinetestGame, MinetestUnavailable, find_binary, INSTALL_HINT, wait_for
from worldsim.envs.minetest.xdisplay import XDisplay, import_xlib

ACTION_NAMES = ("noop", "forward", "back", "left", "right", "turn_left", "turn_right",
                "look_up", "look_down", "jump", "dig", "place")
MULTIDISCRETE_NVEC = (3, 3, 2, 3, 3, 3)  # forward/back, left/right, jump, turn, look, dig/place
_KEYS = {"forward": "w", "back": "s", "left": "a", "right": "d", "jump": "space"}
_BUTTONS = {"dig": 1, "place": 3}
SPAWN_CANDIDATES = 32  # start candidates per reset; most (x, z) are water or rivers in mapgen v7


@dataclass
class _Input:
    """What one step holds down: X keysym names, mouse buttons, and a turn/look in multiples of one step."""

    keys: set[str] = field(default_factory=set)
    buttons: set[int] = field(default_factory=set)
    turn: int = 0  # +1 left, -1 right
    look: int = 0  # +1 down, -1 up


def discrete_input(action: int) -> _Input:
    """The input of a `Discrete(12)` action (see the module table)."""
    name = ACTION_NAMES[action]
    if name in _KEYS:
        return _Input(keys={_KEYS[name]})
    if name in _BUTTONS:
        return _Input(buttons={_BUTTONS[name]})
    return _Input(turn={"turn_left": 1, "turn_right": -1}.get(name, 0), look={"look_up": -1, "look_down": 1}.get(name, 0))


def multidiscrete_input(action: np.ndarray) -> _Input:
    """The input of a `MultiDiscrete(MULTIDISCRETE_NVEC)` action; 0 is "none" in every slot."""
    move, strafe, jump, turn, look, use = (int(a) for a in action)
    keys = {k for k, on in (("w", move == 1), ("s", move == 2), ("a", strafe == 1), ("d", strafe == 2),
                            ("space", jump == 1)) if on}
    buttons = {b for b, on in ((1, use == 1), (3, use == 2)) if on}
    return _Input(keys, buttons, turn={0: 0, 1: 1, 2: -1}[turn], look={0: 0, 1: -1, 2: 1}[look])


class MinetestEnv(LastFrameRender, gym.Env):
    """Minetest played through XTest on its own Xvfb display, with the player's pose as ground truth.

    Args:
        size: observation ``(H, W)`` or an int for square frames.
        max_episode_steps: steps after which an episode is truncated.
        fps: steps per second of game time; each action is held for ``1 / fps`` seconds.
        map_seed: Minetest's map seed (the terrain), fixed for the env's lifetime.
        game: the Minetest game (set of mods) to play; the bridge mod places dirt from ``minetest_game``.
        action_space: "discrete" (the 12 actions) or "multidiscrete" (MineDojo-like, combinable).
        turn_degrees: yaw change of one turn action; look_degrees: pitch change of one look action.
        spawn_radius: starts are drawn with ``|x|, |z| <= spawn_radius`` nodes (a larger radius
            means more world generation on early resets).
        window: rendered ``(W, H)``; default the observation size but at least 128 a side.
        render_mode: None or "rgb_array".
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        size: int | tuple[int, int] = 64,
        max_episode_steps: int = 256,
        fps: float = 10.0,
        map_seed: int = 0,
        game: str = "minetest_game",
        action_space: str = "discrete",
        turn_degrees: float = 15.0,
        look_degrees: float = 15.0,
        spawn_radius: int = 96,
        window: tuple[int, int] | None = None,
        render_mode: str | None = None,
    ):
        import_xlib()
        missing = [n for n in ("minetest", "Xvfb") if find_binary(n) is None]
        if missing:
            raise MinetestUnavailable(f"{' and '.join(missing)} not found; {INSTALL_HINT}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if action_space not in ("discrete", "multidiscrete"):
            raise ValueError(f"action_space must be 'discrete' or 'multidiscrete', got {action_space!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size = parse_size(size)
        h, w = self.size
        self.max_episode_steps = int(max_episode_steps)
        self.fps = float(fps)
        self.metadata = {**self.metadata, "render_fps": self.fps}
        self.turn_degrees, self.look_degrees = float(turn_degrees), float(look_degrees)
        self.spawn_radius = int(spawn_radius)
        self.render_mode = render_mode
        self.game_config = GameConfig(game=game, map_seed=int(map_seed), window=tuple(window or (max(128, w), max(128, h))))
        self.action_names = ACTION_NAMES
        self.observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = (spaces.Discrete(len(ACTION_NAMES)) if action_space == "discrete"
                             else spaces.MultiDiscrete(np.array(MULTIDISCRETE_NVEC, np.int64)))
        self.game: MinetestGame | None = None  # started by the first reset, so making an env for its spaces is free
        self._x: XDisplay | None = None
        self._degrees_per_pixel: float | None = None
        self._buttons_down: set[int] = set()  # mouse buttons held through from the last step (dig, place)
        self._seq = 0
        self._frame: np.ndarray | None = None
        self._state_cache: dict[str, np.ndarray] | None = None
        self._t = 0
        self.start_seconds: float | None = None  # wall time of the game's start-up (first reset)
        self.reset_seconds: float | None = None  # wall time of the last reset

    @staticmethod
    def state_spec() -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every array in ``info["state"]``."""
        f32 = np.dtype(np.float32)
        return {"pos": ((3,), f32), "yaw": ((), f32), "pitch": ((), f32)}

    # -- the game -------------------------------------------------------------------------------

    def _start(self) -> None:
        start = time.perf_counter()
        self.game = MinetestGame(self.game_config)
        state_file = self.game.world / "worldsim_state.txt"
        if not wait_for(lambda: state_file.exists() or not self._alive(), self.game_config.start_timeout):
            tail = self.game.log_tail()
            self.close()
            raise MinetestUnavailable(f"Minetest did not start within {self.game_config.start_timeout:.0f} s; {tail}")
        try:
            self.game.check_alive()
        except MinetestUnavailable as e:
            self.close()
            raise MinetestUnavailable(f"Minetest failed to start: {e}") from None
        self._x = XDisplay(self.game.display)
        if not wait_for(self._x.focus_window, 10):
            tail = self.game.log_tail()
            self.close()
            raise MinetestUnavailable(f"no game window appeared on its Xvfb display; {tail}")
        self._codes = {k: self._x.keycode(k) for k in _KEYS.values()}
        self.start_seconds = time.perf_counter() - start

    def _alive(self) -> bool:
        try:
            self.game.check_alive()
            return True
        except MinetestUnavailable:
            return False

    def _command(self, text: str, timeout: float = 60.0) -> None:
        """Send one command to the bridge mod and wait until it reports it done."""
        self._seq += 1
        tmp = self.game.world / "worldsim_cmd.tmp"
        tmp.write_text(f"{self._seq} {text}\n")
        os.replace(tmp, self.game.world / "worldsim_cmd.txt")
        if not wait_for(lambda: self._read_state()[0] >= self._seq or not self._alive(), timeout):
            raise MinetestUnavailable(f"the game did not answer {text.split()[0]!r} within {timeout:.0f} s; "
                                      f"{self.game.log_tail()}")
        self.game.check_alive()

    def _read_state(self) -> tuple[int, dict[str, np.ndarray]]:
        """(last command done, state) from the bridge's state file; the previous state if it cannot be read."""
        try:
            words = (self.game.world / "worldsim_state.txt").read_text().split()
            seq, x, y, z, yaw, pitch = int(words[0]), *(float(v) for v in words[1:6])
        except (OSError, ValueError, IndexError):  # replaced atomically, so only a missing file lands here
            return -1, self._state_cache
        self._state_cache = {"pos": np.array([x, y, z], np.float32), "yaw": np.array(yaw % 360.0, np.float32),
                             "pitch": np.array(pitch, np.float32)}
        return seq, self._state_cache

    def _calibrate_mouse(self) -> None:
        """Measure degrees of yaw per pixel of mouse motion (it depends on the window's field of view)."""
        cx, cy = self._x.width // 2, self._x.height // 2
        pixels = min(40, cx - 1)
        before = float(self._read_state()[1]["yaw"])
        self._x.move_mouse(cx + pixels, cy)
        self._x.flush()
        moved = wait_for(lambda: abs(float(self._read_state()[1]["yaw"]) - before) > 1e-3, 5.0)
        time.sleep(0.2)  # the state file trails the client by up to a server step and a position send
        turned = (before - float(self._read_state()[1]["yaw"]) + 180.0) % 360.0 - 180.0
        if not moved or turned <= 0:
            raise MinetestUnavailable(f"the game did not turn when the mouse moved; {self.game.log_tail()}")
        self._degrees_per_pixel = turned / pixels
        limit = max(abs(self.turn_degrees), abs(self.look_degrees)) / self._degrees_per_pixel
        if limit >= min(cx, cy):
            raise ValueError(f"turn/look of {limit:.0f} pixels does not fit the {self.game_config.window} window; "
                             f"use a larger window or smaller turn_degrees/look_degrees")

    # -- Gymnasium ------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        start = time.perf_counter()
        if self.game is None:
            self._start()
        self.game.check_alive()
        self._release()
        self._wait_still()  # a player still sliding from the last step would carry on after the teleport
        r = self.spawn_radius
        xz = self.np_random.integers(-r, r + 1, (SPAWN_CANDIDATES, 2))
        yaw = self.np_random.uniform(0.0, 360.0, SPAWN_CANDIDATES)
        command = "reset " + " ".join(f"{x} {z} {a:.3f}" for (x, z), a in zip(xz, yaw))
        self._command(command)
        self._frame = self._settled_frame()
        if self._degrees_per_pixel is None:  # once per game, when it draws and takes the mouse; then face the start again
            self._calibrate_mouse()
            self._command(command)
            self._frame = self._settled_frame()
        self._t = 0
        self.reset_seconds = time.perf_counter() - start
        return self._frame.copy(), {"state": self._state()}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}; actions: {self.action_names}")
        self.game.check_alive()
        inp = discrete_input(int(action)) if isinstance(self.action_space, spaces.Discrete) else multidiscrete_input(action)
        before = self._read_state()[1] if inp.turn or inp.look else None  # the view a turn or look must change
        start = time.perf_counter()
        self._hold(inp)
        time.sleep(max(0.0, 1.0 / self.fps - (time.perf_counter() - start)))
        self._release(keep_buttons=inp.buttons)
        self.game.check_alive()
        self._frame = self._grab()
        if before is not None:
            self._wait_view_state(before, inp)
        self._t += 1
        return self._frame.copy(), 0.0, False, self._t >= self.max_episode_steps, {"state": self._state()}

    def _wait_view_state(self, before: dict[str, np.ndarray], inp: _Input, timeout: float = 1.0) -> None:
        """After a turn or look, wait (at most `timeout` s) until the bridge's state shows it: the client reports
        its view a few times a second, so on a busy machine the state could still hold the view before the step.
        A look at the pitch limit changes nothing and is not waited for."""
        turned = bool(inp.turn)
        looked = bool(inp.look) and abs(float(before["pitch"]) + inp.look * self.look_degrees) < 89.0

        def shown() -> bool:
            now = self._read_state()[1]
            return ((not turned or abs(float(now["yaw"]) - float(before["yaw"])) > 1e-3)
                    and (not looked or abs(float(now["pitch"]) - float(before["pitch"])) > 1e-3))

        wait_for(shown, timeout)

    def close(self) -> None:
        """Stop the game and its display; no process is left."""
        if self._x is not None:
            self._x.close()
            self._x = None
        if self.game is not None:
            self.game.stop()
            self.game = None
        self._frame = None

    # -- input and frames -----------------------------------------------------------------------

    def _hold(self, inp: _Input) -> None:
        for key in inp.keys:
            self._x.key(self._codes[key], True)
        for button in _BUTTONS.values():
            if button in inp.buttons and button not in self._buttons_down:
                self._x.button(button, True)
            elif button not in inp.buttons and button in self._buttons_down:
                self._x.button(button, False)
        self._buttons_down = set(inp.buttons)
        if inp.turn or inp.look:
            # The game turns by the pointer's offset from the window centre and re-centres it each frame.
            cx, cy = self._x.width // 2, self._x.height // 2
            dx = -inp.turn * round(self.turn_degrees / self._degrees_per_pixel)
            dy = inp.look * round(self.look_degrees / self._degrees_per_pixel)
            self._x.move_mouse(cx + dx, cy + dy)
        self._x.flush()

    def _release(self, keep_buttons: set[int] = frozenset()) -> None:
        """Release every key, and every mouse button but `keep_buttons`: the game forgets how far a node is
        dug when the button goes up, so a run of dig steps holds it down through their steps."""
        for code in self._codes.values():
            self._x.key(code, False)
        for button in _BUTTONS.values():
            if button not in keep_buttons:
                self._x.button(button, False)
        self._buttons_down = set(keep_buttons)
        self._x.flush()

    def _grab(self) -> np.ndarray:
        frame = self._x.grab()  # (window H, window W, 3)
        h, w = self.size
        if frame.shape[:2] != (h, w):
            frame = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR, reducing_gap=None))
        return frame

    def _settled_frame(self, timeout: float = 15.0, tolerance: float = 0.5) -> np.ndarray:
        """The first frame after a reset that two grabs 0.2 s apart agree on (mean |diff| < tolerance of 255)
        while the player does not move: the player has landed and the area around it is drawn."""
        previous, pos = self._grab(), self._read_state()[1]["pos"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.2)
            self.game.check_alive()
            frame, now = self._grab(), self._read_state()[1]["pos"]
            if np.abs(frame.astype(np.int16) - previous).mean() < tolerance and np.abs(now - pos).max() < 0.01:
                return frame
            previous, pos = frame, now
        return previous

    def _wait_still(self, timeout: float = 3.0, window: float = 0.4) -> None:
        """Wait until the player's position has not changed for `window` seconds (or `timeout` passes).
        The client sends its position a few times a second and a walker needs ~0.4 s to stop."""
        last, since = self._read_state()[1]["pos"], time.monotonic()

        def still() -> bool:
            nonlocal last, since
            now = self._read_state()[1]["pos"]
            if np.abs(now - last).max() > 1e-3:
                last, since = now, time.monotonic()
            return time.monotonic() - since >= window

        wait_for(still, timeout)

    def _state(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._read_state()[1].items()}
