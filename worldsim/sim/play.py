"""`worldsim play`: a person drives the simulator with the keyboard, in a local web page.

Standard library only: `http.server` serves a page that sends key presses (POST /key) and shows
the newest frame (GET /frame.png) with the frames per second (GET /stats). A background thread
steps the env continuously with the action of the key held down (no key: the no-op action), so
the simulator runs in real time at whatever speed the machine allows. Episodes that end restart
from the same reset options.
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import MISSING
from PIL import Image

from worldsim.config import check_port, check_seed
from worldsim.sim.config import SimConfig

# Crafter's action order (noop, left, right, up, down, do, sleep, ...): arrows/WASD move, space acts.
DEFAULT_KEYS = {"ArrowLeft": 1, "a": 1, "ArrowRight": 2, "d": 2, "ArrowUp": 3, "w": 3, "ArrowDown": 4, "s": 4,
                " ": 5, "Enter": 6, **{str(i): i for i in range(10)}}

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>worldsim play</title>
<style>body{background:#111;color:#ddd;font-family:monospace;text-align:center}
img{width:512px;image-rendering:pixelated;border:1px solid #444}</style></head><body>
<h3>worldsim play: arrows / WASD move, space acts, digits pick an action</h3>
<img id="f" src="/frame.png"><div id="s">starting...</div>
<script>
const send = (key, down) => fetch('/key', {method: 'POST', body: JSON.stringify({key: key, down: down})});
document.addEventListener('keydown', e => { if (!e.repeat) send(e.key, true); });
document.addEventListener('keyup', e => send(e.key, false));
async function loop() {
  const img = new Image(); img.src = '/frame.png?' + Date.now();
  await img.decode().catch(() => {}); document.getElementById('f').src = img.src;
  const s = await (await fetch('/stats')).json();
  document.getElementById('s').textContent =
    `${s.fps.toFixed(1)} frames/s | step ${s.step} | episode ${s.episode} | reward ${s.reward.toFixed(2)} | action ${s.action}`;
  setTimeout(loop, 30);
}
loop();
</script></body></html>"""


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (8-bit RGB), by Pillow's C encoder: cheap enough for every frame served."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class PlayConfig:
    """`worldsim play checkpoint=EXPORT`."""

    checkpoint: str = MISSING  # a DiT export folder
    host: str = "127.0.0.1"  # local only by default
    port: int = 8765  # 0: any free port
    seed: int = 0
    dataset: str | None = None  # context store; default: the export's training store
    real_env: str | None = None  # or a real world for the context (e.g. crafter)
    sim: SimConfig = field(default_factory=SimConfig)

    def __post_init__(self) -> None:
        check_port(self.port)
        check_seed(self.seed)


MAX_BODY = 1024  # bytes of a POST /key body the play server reads at most


class PlaySession:
    """The env, the held key and the newest frame, stepped by a background thread."""

    def __init__(self, env: gym.Env, seed: int = 0, options: dict[str, Any] | None = None,
                 keys: dict[str, int] | None = None) -> None:
        self.env, self.options, self.keys = env, options, keys or DEFAULT_KEYS
        self.noop = 0 if isinstance(env.action_space, gym.spaces.Discrete) else None
        self.lock = threading.Lock()
        self.held: str | None = None
        obs, _ = env.reset(seed=seed, options=options)
        self.png, self.step_count, self.episode, self.reward = encode_png(obs), 0, 0, 0.0
        self.fps, self.action = 0.0, self.noop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="worldsim-play")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def press(self, key: str, down: bool) -> None:
        with self.lock:
            self.held = key if down else (None if self.held == key else self.held)

    def _action(self) -> Any:
        with self.lock:
            key = self.held
        if key in self.keys and self.env.action_space.contains(self.keys[key]):
            return self.keys[key]
        return self.noop if self.noop is not None else self.env.action_space.sample() * 0

    def _run(self) -> None:
        frames_per_step = None
        while not self._stop.is_set():
            action = self._action()
            start = time.perf_counter()
            obs, reward, terminated, truncated, info = self.env.step(action)
            frames_per_step = len(info.get("frames", [obs]))
            png = encode_png(obs)
            elapsed = max(time.perf_counter() - start, 1e-6)
            with self.lock:
                self.png, self.action = png, action
                self.step_count += 1
                self.reward += float(reward)
                self.fps = 0.8 * self.fps + 0.2 * frames_per_step / elapsed if self.fps else frames_per_step / elapsed
            if terminated or truncated:
                obs, _ = self.env.reset(options=self.options)
                with self.lock:
                    self.png, self.episode, self.step_count, self.reward = encode_png(obs), self.episode + 1, 0, 0.0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"fps": self.fps, "step": self.step_count, "episode": self.episode, "reward": self.reward,
                    "action": None if self.action is None else np.asarray(self.action).tolist()}


def make_server(session: PlaySession, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for `session` (not yet serving); port 0 picks a free port (``server.server_address``)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet: one request per frame
            pass

        def _send(self, body: bytes, kind: str, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/":
                self._send(PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/frame.png":
                with session.lock:
                    png = session.png
                self._send(png, "image/png")
            elif path == "/stats":
                self._send(json.dumps(session.stats()).encode(), "application/json")
            else:
                self._send(b"not found", "text/plain", 404)

        def do_POST(self) -> None:
            if self.path != "/key":
                return self._send(b"not found", "text/plain", 404)
            try:
                length = int(self.headers.get("Content-Length", 0))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:  # a key event is a few bytes; never allocate what a header claims
                return self._send(b'{"error": "request body must be 0-1024 bytes"}', "application/json", 413)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                session.press(str(body["key"]), bool(body.get("down", True)))
            except (ValueError, KeyError, TypeError):
                return self._send(b'{"error": "expected {\\"key\\": KEY, \\"down\\": true|false}"}', "application/json", 400)
            self._send(b"{}", "application/json")

    return ThreadingHTTPServer((host, port), Handler)


def check_host(host: str, port: int) -> None:
    """ValueError naming `host` when it does not resolve to an address to listen on."""
    import socket

    if host == "":  # every interface, as for socket.bind
        return
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        why = e.strerror if isinstance(e, socket.gaierror) else "not a valid host name"
        raise ValueError(f"host={host!r} cannot be resolved to an address to listen on ({why}): use a name or address "
                         "of this machine, e.g. host=127.0.0.1 (this machine only) or host=0.0.0.0 (every interface)") from None


def play(cfg: PlayConfig) -> None:
    """Serve until Ctrl-C."""
    from worldsim.sim.env import WorldModelEnv
    from worldsim.sim.rollout import _training_store, recorded_world
    from worldsim.export import read_export_config

    from worldsim.pretrained import resolve_checkpoint

    check_host(cfg.host, cfg.port)  # before the model loads
    cfg.checkpoint = resolve_checkpoint(cfg.checkpoint)  # a shipped model may be named (probes, worldsim/Probes-v0)
    meta = read_export_config(cfg.checkpoint)
    dataset = cfg.dataset or _training_store(meta)
    real_env = cfg.real_env or (None if dataset else recorded_world(meta))  # no store here: the recorded world gives context
    env = WorldModelEnv(cfg.checkpoint, dataset=dataset, real_env=real_env, config=cfg.sim)
    try:
        session = PlaySession(env, cfg.seed)
        try:
            server = make_server(session, cfg.host, cfg.port)
        except OSError as e:  # the address cannot be bound: name it (the CLI adds what to do)
            raise OSError(e.errno, e.strerror, f"host={cfg.host} port={cfg.port}") from None
    except BaseException:
        env.close()
        raise
    session.start()
    host, port = server.server_address[:2]
    print(f"worldsim play: open http://{host}:{port}/ in a browser (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        session.stop()
        env.close()
