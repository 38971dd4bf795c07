"""`MinetestGame`: one Xvfb display and one Minetest client+server on it, owned by this process.

The game is the Debian package ``minetest`` (5.6, with ``minetest_game``) run under ``xvfb``. A
game starts in a fresh world directory inside a temporary folder: ``world.mt`` (game
``minetest_game``, sqlite backend), the bridge mod (``bridge.lua``) as a world mod, and a config
file with everything that would make frames differ for reasons other than the player (sound,
clouds, fog, particles, minimap, HUD, day-night cycle, focus pause) turned off and the server
bound to 127.0.0.1 on a free port.

Both processes die with their owner: each is started with ``PR_SET_PDEATHSIG`` (SIGKILL when the
thread that started it exits), and `MinetestGame.stop` is registered with ``weakref.finalize``,
which runs on ``close()``, on garbage collection and at interpreter exit.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

_BRIDGE = Path(__file__).with_name("bridge.lua")
INSTALL_HINT = "install the Debian packages: apt-get install minetest xvfb"
PLAYER = "worldsim"  # bridge.lua looks the player up by this name


class MinetestUnavailable(RuntimeError):
    """Minetest cannot run here: a binary is missing, or the game did not start or has died."""


@dataclass(frozen=True)
class GameConfig:
    """How the game is run; the defaults keep frames about the player and the CPU cost small."""

    game: str = "minetest_game"  # the game (set of mods) the world is played in, as Debian's minetest-data installs it
    map_seed: int = 0  # Minetest's fixed_map_seed: the terrain
    window: tuple[int, int] = (128, 128)  # rendered (W, H); observations are resized from this
    viewing_range: int = 40  # nodes; the default 190 costs far more CPU for pixels a 64x64 frame loses
    mouse_sensitivity: float = 0.5  # degrees of turn per pixel of mouse motion
    server_step: float = 0.05  # seconds per server step: how often the bridge reads commands and writes state
    fps_max: int = 30  # the client's frame cap, focused or not (nothing on Xvfb has focus)
    start_timeout: float = 120.0  # seconds to wait for the first world state


def find_binary(name: str) -> str | None:
    """`name` on PATH or in /usr/games (where Debian puts minetest, often not on PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/games")


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that started it exits (Linux prctl)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config_text(cfg: GameConfig, port: int) -> str:
    w, h = cfg.window
    settings = {
        "name": PLAYER, "bind_address": "127.0.0.1", "port": port, "server_announce": "false",
        "screen_w": w, "screen_h": h, "autosave_screensize": "false", "fullscreen": "false",
        "fixed_map_seed": cfg.map_seed, "mg_name": "v7",
        "enable_sound": "false", "enable_clouds": "false", "enable_3d_clouds": "false",
        "enable_fog": "false", "enable_particles": "false", "enable_minimap": "false",
        "show_debug": "false", "enable_shaders": "false", "smooth_lighting": "true",
        "pause_on_lost_focus": "false", "fps_max": cfg.fps_max, "fps_max_unfocused": cfg.fps_max,
        "viewing_range": cfg.viewing_range, "mouse_sensitivity": cfg.mouse_sensitivity,
        "camera_smoothing": 0, "cinematic": "false", "invert_mouse": "false",
        "dedicated_server_step": cfg.server_step, "time_speed": 0,
        "enable_damage": "false", "creative_mode": "false", "give_initial_stuff": "false",
        "enable_client_modding": "false", "show_statusline_on_connect": "false", "recent_chat_messages": 2,
    }
    return "".join(f"{k} = {v}\n" for k, v in settings.items())


class MinetestGame:
    """A running Minetest on its own Xvfb display; `stop` (idempotent) ends both and removes the world."""

    def __init__(self, cfg: GameConfig):
        missing = [n for n in ("minetest", "Xvfb") if find_binary(n) is None]
        if missing:
            raise MinetestUnavailable(f"{' and '.join(missing)} not found; {INSTALL_HINT}")
        self.cfg = cfg
        self.dir = Path(tempfile.mkdtemp(prefix="worldsim-minetest-"))
        self.world = self.dir / "world"
        self.log_path = self.dir / "minetest.log"
        self._procs: list[subprocess.Popen] = []  # shared with the finalizer, which must not hold self
        self._finalizer = weakref.finalize(self, _stop, self._procs, self.dir)
        try:
            self._write_world()
            self.display = self._start_xvfb()
            self._start_minetest()
        except BaseException:
            self.stop()
            raise

    def _write_world(self) -> None:
        mod = self.world / "worldmods" / "worldsim_bridge"
        mod.mkdir(parents=True)
        (self.world / "world.mt").write_text(f"gameid = {self.cfg.game}\nbackend = sqlite3\n"
                                             "player_backend = sqlite3\nauth_backend = sqlite3\nmod_storage_backend = sqlite3\n")
        (mod / "mod.conf").write_text("name = worldsim_bridge\ndescription = worldsim's command and state files\n")
        shutil.copy(_BRIDGE, mod / "init.lua")
        self.port = _free_udp_port()
        (self.dir / "minetest.conf").write_text(_config_text(self.cfg, self.port))

    def _start_xvfb(self) -> str:
        """Start Xvfb on a display number it picks itself (-displayfd), so envs never race for one."""
        w, h = self.cfg.window
        read_fd, write_fd = os.pipe()
        try:
            with open(self.dir / "xvfb.log", "wb") as log:
                self._procs.append(subprocess.Popen(
                    [find_binary("Xvfb"), "-displayfd", str(write_fd), "-screen", "0", f"{w}x{h}x24",
                     "-nolisten", "tcp", "-noreset"],
                    pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    preexec_fn=_die_with_parent))
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        if not number.isdigit():
            raise MinetestUnavailable(f"Xvfb did not start: {self._tail(self.dir / 'xvfb.log')}")
        return f":{number}"

    def _start_minetest(self) -> None:
        env = {**os.environ, "DISPLAY": self.display, "HOME": str(self.dir)}
        env.pop("WAYLAND_DISPLAY", None)
        with open(self.dir / "minetest.stderr", "wb") as log:
            self._procs.append(subprocess.Popen(
                [find_binary("minetest"), "--go", "--world", str(self.world), "--name", PLAYER, "--password", "",
                 "--port", str(self.port),
                 "--config", str(self.dir / "minetest.conf"), "--logfile", str(self.log_path)],
                cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=_die_with_parent))

    @property
    def pids(self) -> list[int]:
        """Process ids of Xvfb and the game, in that order (for tests and for killing)."""
        return [p.pid for p in self._procs]

    def check_alive(self) -> None:
        """Raise `MinetestUnavailable` with the log's tail if the game or Xvfb has exited."""
        for name, proc in zip(("Xvfb", "minetest"), self._procs):
            if proc.poll() is not None:
                raise MinetestUnavailable(f"{name} exited (code {proc.returncode}); {self.log_tail()}")

    def log_tail(self, lines: int = 6) -> str:
        """The last lines of the game's log (of its stderr when the log is empty), on one line."""
        log = self.log_path if self.log_path.exists() and self.log_path.stat().st_size else self.dir / "minetest.stderr"
        return f"log tail ({log}): " + self._tail(log, lines)

    @staticmethod
    def _tail(path: Path, lines: int = 6) -> str:
        try:
            text = path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return f"(no {path.name})"
        return " / ".join(text) if text else f"({path.name} is empty)"

    def stop(self) -> None:
        """End both processes (SIGTERM, then SIGKILL after 5 s) and delete the world folder."""
        self._finalizer()


def _stop(procs: list[subprocess.Popen], folder: Path) -> None:
    for proc in reversed(procs):  # the game first, then its display
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


def wait_for(condition, timeout: float, poll: float = 0.05) -> bool:
    """Call `condition()` every `poll` seconds until it is true (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return bool(condition())
