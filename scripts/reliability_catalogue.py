"""Reliability catalogue: bad inputs, damaged stores and exports, API misuse, kills and a read-only disk,
run against worldsim the way a demanding user would meet them; measures, asserts nothing.

    .venv/bin/python scripts/reliability_catalogue.py [--quick] [--out docs/bench/reliability.json] [--seed 0]
                                                      [--families config,damage,...] [--kills N] [--keep]

Every case runs in a fresh temporary folder, mostly as a subprocess of the real CLI (`worldsim ...`),
and ends in one of the OUTCOMES below: clear (a one-line refusal), ok (success where success is right),
traceback, accepted (bad input taken silently), unclear (refused, but not in one line naming the
problem), fail (success was right and did not come).

A case that touches an existing store also records `data_intact` (every episode that read before the
command reads identically after; for a store that did not open, every file byte for byte) and
`files_unchanged` (sha256 of every file of the store, latent caches aside, the same before and after).

Families:
    config     bad config values for every command (types, ranges, unknown keys, missing values, paths)
    damage     a store with a deleted or garbled chunk, truncated metadata, a lost commit counter, ...,
               under `info`, `info --verify`, `collect` (append) and `repair`
    export     corrupt copies of a DiT export (edited config.json, swapped or truncated weights) under `rollout`
    env        misuse of WorldModelEnv / WorldModelVectorEnv, in process
    kill       SIGKILL of a collector at a random time, then a resume compared with an uninterrupted
               collection; SIGKILL of a training run, then resume=RUN
    readonly   a store on a tmpfs remounted read-only (needs root; skipped otherwise)

Prints a table (one row per family) and every case that is neither clear nor ok; writes every case to JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from worldsim.data.store import EpisodeStore

REPO = Path(__file__).resolve().parents[1]
WORLDSIM = Path(sys.executable).with_name("worldsim")  # the venv's console script: the real CLI
TRACEBACK = "Traceback (most recent call last)"
OUTCOMES = {
    "clear": "refused (non-zero exit) with one last stderr line naming the problem, no traceback",
    "ok": "success where success is the right answer",
    "traceback": "a Python traceback was printed (in process: an exception of an unexpected type)",
    "accepted": "bad input accepted silently (exit 0, or still running at the timeout, where it should refuse)",
    "unclear": "refused, but the last line is not the CLI's one-line error or does not name the problem",
    "fail": "success was the right answer and did not come (or came with wrong data)",
}
FAMILIES = ("config", "damage", "export", "env", "kill", "readonly")
KILL_EPISODES = 40  # episodes of the collector that is killed


# ---------------------------------------------------------------- running commands

@dataclass
class Outcome:
    """What a finished (or timed-out) command left behind."""

    rc: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.stdout or TRACEBACK in self.stderr

    @property
    def last_line(self) -> str:
        """The last non-empty line of stderr, else of stdout."""
        return last_line(self.stderr) or last_line(self.stdout)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def child_env() -> dict[str, str]:
    """The environment of every command: one thread per op, no debug mode that re-raises errors."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    for key in ("WORLDSIM_DEBUG", "HYDRA_FULL_ERROR"):
        env.pop(key, None)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 180) -> Outcome:
    """Run `worldsim ARGS` in `cwd` in its own process group; kill the group at the timeout."""
    start = time.perf_counter()
    p = subprocess.Popen([str(WORLDSIM), *args], cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc: int | None = p.returncode
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, err = p.communicate()
        rc = None
    return Outcome(rc, out, err, time.perf_counter() - start)


def kill_group(p: subprocess.Popen) -> None:
    """SIGKILL the process group this script started for `p` (the command and its worker processes)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def shown(args: list[str]) -> str:
    return "worldsim " + " ".join(args)


# ---------------------------------------------------------------- judging

def names_problem(line: str, mention: tuple[str, ...]) -> bool:
    """Whether the error line names one of `mention` (a key as written or with spaces, or a value)."""
    low = line.lower()
    return not mention or any(m.lower() in low or m.lower().replace("_", " ") in low for m in mention)


def judge_refusal(o: Outcome, command: str, mention: tuple[str, ...] = ()) -> tuple[str, str]:
    """Outcome and note for a command that should refuse."""
    if o.traceback:
        return "traceback", "a Python traceback was printed"
    if o.timed_out:
        return "accepted", f"still running after {o.seconds:.0f} s: it started instead of refusing"
    if o.rc == 0:
        return "accepted", "exit 0"
    line = last_line(o.stderr)
    if not line.startswith(f"worldsim {command}: error:"):
        return "unclear", f"exit {o.rc}, but the last stderr line is not the one-line error"
    if not names_problem(line, mention):
        return "unclear", f"the error does not name {' or '.join(mention)}"
    return "clear", ""


def judge_success(o: Outcome, command: str) -> tuple[str, str]:
    """Outcome and note for a command that should succeed."""
    if o.traceback:
        return "traceback", "a Python traceback was printed"
    if o.timed_out:
        return "fail", f"still running after {o.seconds:.0f} s"
    if o.rc != 0:
        return "fail", f"exit {o.rc}: a valid command was refused"
    return "ok", ""


def judge(o: Outcome, command: str, expect: str, mention: tuple[str, ...] = ()) -> tuple[str, str]:
    """expect: "refuse", "succeed", or "either" (success and a clear refusal are both right)."""
    if expect == "succeed" or (expect == "either" and o.rc == 0 and not o.traceback):
        return judge_success(o, command)
    return judge_refusal(o, command, mention)


# ---------------------------------------------------------------- store fingerprints

def file_hashes(path: Path) -> dict[str, str]:
    """sha256 of every file under `path` (latent caches and zarr temporaries aside)."""
    if not path.exists():
        return {}
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file() and "latents" not in f.relative_to(path).parts
            and not f.name.endswith(".partial")}


def episode_digests(path: Path) -> dict[int, str] | None:
    """sha256 of every readable committed episode (all arrays); None when the store does not open."""
    try:
        store = EpisodeStore.open(path, "r")
    except Exception:  # noqa: BLE001 - a damaged store: compared file by file instead
        return None
    digests = {}
    with store:
        for i in range(store.num_episodes):
            try:
                arrays = store.episode(i)
            except Exception:  # noqa: BLE001 - a damaged episode is simply not compared
                continue
            h = hashlib.sha256()
            for key in sorted(arrays):
                h.update(key.encode())
                h.update(np.ascontiguousarray(arrays[key]).tobytes())
            digests[i] = h.hexdigest()
    return digests


@dataclass
class Snapshot:
    files: dict[str, str]
    episodes: dict[int, str] | None

    @classmethod
    def of(cls, path: Path) -> Snapshot:
        return cls(file_hashes(path), episode_digests(path))


def compare(before: Snapshot, after: Snapshot) -> tuple[bool, bool]:
    """(data intact, files unchanged) of a store between two snapshots."""
    files_unchanged = before.files == after.files
    if before.episodes is None:  # it did not open: its files are what there is to keep
        intact = all(after.files.get(k) == v for k, v in before.files.items())
    else:
        intact = after.episodes is not None and all(after.episodes.get(i) == d for i, d in before.episodes.items())
    return intact, files_unchanged


# ---------------------------------------------------------------- records

@dataclass
class Record:
    """One case of the catalogue, as it appears in the JSON."""

    family: str
    name: str
    command: str
    expect: str
    outcome: str
    rc: int | None
    seconds: float
    last_line: str
    note: str = ""
    data_intact: bool | None = None
    files_unchanged: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Catalogue:
    """Collects records, prints one line per case as it ends, and hands out fresh case folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.records: list[Record] = []

    def folder(self, family: str) -> Path:
        d = self.root / family / f"{len(self.records):04d}"
        d.mkdir(parents=True)
        return d

    def add(self, record: Record) -> None:
        self.records.append(record)
        intact = "" if record.data_intact is None else f" intact={record.data_intact}"
        print(f"[{len(self.records):3d}] {record.family:8} {record.outcome:9} {record.seconds:5.1f}s{intact}  {record.name}"
              + (f"  -- {record.note}" if record.note else ""), flush=True)


# ---------------------------------------------------------------- fixtures

@dataclass
class Fixtures:
    """Inputs built once: a 3-episode probe store, a 40-episode reference store, exports, videos."""

    root: Path
    store: Path  # 3 probe episodes, never written to after it is built
    reference: Path  # KILL_EPISODES probe episodes collected without interruption
    vae: Path  # autoencoder export (seed 0)
    vae_other: Path  # autoencoder export trained with another seed: different weights, same architecture
    dit: Path  # DiT export on `vae`
    videos: Path  # a folder with one valid mp4
    bad_videos: Path  # a folder with one .mp4 that is not a video

    def paths(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def train_args(data: Path, run_dir: Path, seed: int = 0, steps: int = 5) -> list[str]:
    """A tiny training run's overrides (train-vae and train take the same)."""
    return [f"data={data}", "model=tiny", f"steps={steps}", "window=3", "batch_size=2", f"run_dir={run_dir}",
            f"seed={seed}", "progress=false", "validation.every=0", "video_every=0", "tensorboard=false"]


def build(args: list[str], cwd: Path, what: str) -> None:
    o = run_cli(args, cwd, timeout=600)
    if o.rc != 0:
        sys.exit(f"could not build the fixture {what}: {shown(args)}\n{o.stdout}\n{o.stderr}")


def make_fixtures(root: Path) -> Fixtures:
    from worldsim.video import write_mp4

    d = root / "fixtures"
    d.mkdir(parents=True)
    store, reference = d / "s.zarr", d / "reference.zarr"
    build(["collect", "env=probe", "episodes=3", f"out={store}", "progress=false"], d, "store")
    build(["collect", "env=probe", f"episodes={KILL_EPISODES}", f"out={reference}", "progress=false"], d, "reference store")
    train_store = d / "train.zarr"  # training writes latent caches into its store: not into `store`
    shutil.copytree(store, train_store)
    build(["train-vae", *train_args(train_store, d / "vae")], d, "autoencoder")
    build(["train-vae", *train_args(train_store, d / "vae-other", seed=1, steps=2)], d, "second autoencoder")
    build(["train", f"vae={d / 'vae' / 'export'}", *train_args(train_store, d / "dit")], d, "DiT")
    videos, bad_videos = d / "videos", d / "bad-videos"
    videos.mkdir()
    bad_videos.mkdir()
    with EpisodeStore.open(store) as s:
        write_mp4(videos / "clip.mp4", s.episode(0)["obs"][:20], fps=15)
    (bad_videos / "clip.mp4").write_bytes(os.urandom(4096))
    return Fixtures(d, store, reference, d / "vae" / "export", d / "vae-other" / "export", d / "dit" / "export",
                    videos, bad_videos)


# ---------------------------------------------------------------- CLI cases

@dataclass
class CliCase:
    """One CLI invocation. Strings may name {d} (the case folder) and the fixtures ({store}, {dit}, ...)."""

    family: str
    name: str
    args: list[str]
    expect: str = "refuse"  # refuse | succeed | either
    mention: tuple[str, ...] = ()  # words one of which the error line must contain
    prepare: Callable[[Path, Fixtures], None] | None = None  # builds the case's inputs in {d}
    store: str | None = None  # path (template) of a store whose data must stay intact
    timeout: float = 180
    check: Callable[[Path, Fixtures, Outcome], tuple[str, str, dict]] | None = None  # replaces `judge`


def run_cli_case(cat: Catalogue, fx: Fixtures, case: CliCase, extra: dict[str, str] | None = None) -> None:
    """Prepare the case's folder, snapshot its store, run the command, judge it, compare the store."""
    d = cat.folder(case.family)
    values = {**fx.paths(), **(extra or {}), "d": str(d)}
    args = [a.format(**values) for a in case.args]
    if case.prepare:
        case.prepare(d, fx)
    store = Path(case.store.format(**values)) if case.store else None
    before = Snapshot.of(store) if store else None
    o = run_cli(args, d, case.timeout)
    if case.check:
        outcome, note, details = case.check(d, fx, o)
    else:
        outcome, note = judge(o, args[0], case.expect, tuple(m.format(**values) for m in case.mention))
        details = {}
    intact = unchanged = None
    if store:
        intact, unchanged = compare(before, Snapshot.of(store))
    cat.add(Record(case.family, case.name, shown(args), case.expect, outcome, o.rc, round(o.seconds, 2),
                   o.last_line[:300], note, intact, unchanged, details))


def copy_store(d: Path, fx: Fixtures) -> None:
    shutil.copytree(fx.store, d / "s.zarr")


def existing_file(d: Path, fx: Fixtures) -> None:
    (d / "file.txt").write_text("not a store\n")


def store_and_file(d: Path, fx: Fixtures) -> None:
    copy_store(d, fx)
    existing_file(d, fx)
    (d / "empty").mkdir()


# Base overrides per command: cheap and valid; each bad value replaces (or, with None, removes) one key.
BASES: dict[str, dict[str, str]] = {
    "collect": {"env": "probe", "episodes": "1", "num_envs": "1", "progress": "false", "out": "{d}/new.zarr"},
    "train-vae": {"data": "{d}/s.zarr", "model": "tiny", "steps": "2", "window": "3", "batch_size": "2",
                  "run_dir": "{d}/run", "progress": "false", "validation.every": "0", "video_every": "0",
                  "tensorboard": "false"},
    "train": {"data": "{d}/s.zarr", "vae": "{vae}", "model": "tiny", "steps": "2", "window": "3", "batch_size": "2",
              "run_dir": "{d}/run", "progress": "false", "validation.every": "0", "video_every": "0",
              "tensorboard": "false"},
    "eval": {"checkpoint": "{dit}", "out": "{d}/eval", "seeds": "2", "steps": "2", "horizons": "[1]",
             "schemes": "[autoregressive]", "probes": "false", "idm": "false", "consistency": "false",
             "videos": "false", "progress": "false", "num_envs": "2"},
    "rollout": {"checkpoint": "{dit}", "steps": "2", "out": "{d}/ro"},
    "play": {"checkpoint": "{dit}", "port": "0"},
    "import-video": {"": "{videos}", "out": "{d}/v.zarr", "progress": "false"},  # "": the positional folder
}

# (key, bad value), value None: the key is left out (a missing required value); or a dict of several changes,
# the first of them the bad one.
BAD_VALUES: dict[str, list[tuple[str, str | None] | dict[str, str | None]]] = {
    "collect": [
        ("episodes", "-1"), ("episodes", "0"), ("episodes", "abc"), ("episodes", "1.5"), ("seed", "-5"),
        ("seed", "abc"), ("num_envs", "0"), ("num_envs", "-2"), ("vector", "bogus"), ("policy", "bogus"),
        ("fps", "0"), ("fps", "-1"), ("fps", "nan"), ("env", "env_schema"), ("env", "bogus"), ("env.size", "0"),
        ("env.size", "-8"), ("env.max_episode_steps", "0"), ("env.max_episode_steps", "-1"),
        ("env.kwargs.family", "bogus"), ("+policy_kwargs.bogus", "1"), ("progress", "maybe"), ("foo", "1"),
        ("+foo", "1"), ("out", None), ("out", ""), ("out", "{d}/file.txt"), ("out", "{d}/file.txt/s.zarr"),
    ],
    "train-vae": [
        ("steps", "0"), ("steps", "-1"), ("steps", "1.5"), ("batch_size", "0"), ("batch_size", "-2"), ("window", "0"),
        ("window", "2"), ("model", "bogus"), ("data", None), ("data", "/nonexistent/s.zarr"), ("data", "{d}/file.txt"),
        ("data", "{d}/empty"), ("optim.lr", "-1"), ("optim.lr", "nan"), ("optim.lr", "abc"), ("grad_accum", "0"),
        ("checkpoint_every", "0"), ("keep_checkpoints", "-1"), ("log_every", "0"), ("seed", "-5"),
        ("dist.port", "99999"), ("dist.port", "-1"), ("dist.zero_stage", "7"), ("dist.precision", "fp8"),
        ("frame_skip", "0"), ("holdout_episodes", "-1"), {"holdout_episodes": "-1", "validation.every": "1"},
        {"holdout_episodes": "5", "validation.every": "1"}, ("resume", "/nonexistent/run"),
        ("resume", "{d}/empty"), ("run_dir", "{d}/file.txt"), ("ema_decay", "1.5"), ("num_workers", "-1"),
        ("+model_overrides.bogus", "3"), ("task", "bogus"), ("foo", "1"), ("+foo", "1"),
    ],
    "train": [
        ("vae", None), ("vae", "/nonexistent/export"), ("vae", "{d}/empty"), ("window", "4"),
        ("steps", "0"), ("objective.context_prob", "2"), ("objective.context_noise_max", "1.5"),
        ("objective.time_sampling", "bogus"), ("context.schemes", "[bogus]"), ("context.budget", "0"),
        ("init_from", "/nonexistent/run"),
    ],
    "eval": [
        ("checkpoint", "/nonexistent/export"), ("checkpoint", "{vae}"), ("seeds", "0"), ("seeds", "-1"), ("steps", "0"),
        ("horizons", "[0]"), ("horizons", "[]"), ("schemes", "[bogus]"), ("sampling_steps", "0"),
        ("guidance_scale", "nan"), ("context_noise", "1.5"), ("context_noise", "-0.1"), ("num_envs", "0"),
        ("world", "bogus"), ("world", "crafter"), ("size", "-1"), ("first_seed", "-5"), ("device", "bogus"),
        ("context_frames", "0"), ("loop_lengths", "[0]"), ("out", "{d}/file.txt"), ("foo", "1"),
    ],
    "rollout": [
        ("checkpoint", None), ("checkpoint", "/nonexistent/export"), ("checkpoint", "{vae}"), ("checkpoint", "{d}/empty"),
        ("steps", "0"), ("steps", "-1"), ("seed", "-5"), ("sim.sampling_steps", "0"), ("sim.guidance_scale", "nan"),
        ("sim.context_noise", "1.5"), ("sim.context", "bogus"), ("sim.context_budget", "0"), ("sim.sampler", "bogus"),
        ("sim.device", "bogus"), ("sim.dtype", "fp8"), ("sim.frameskip", "0"), ("sim.max_episode_steps", "0"),
        ("sim.shift", "0"), ("policy", "bogus"), ("real_env", "bogus"), ("dataset", "/nonexistent/s.zarr"),
        ("fps", "0"), ("fps", "-1"), ("out", "{d}/file.txt"), ("+foo", "1"),
    ],
    "play": [
        ("port", "99999"), ("port", "-1"), ("port", "abc"), ("host", "bad..host"), ("checkpoint", None),
        ("checkpoint", "/nonexistent/export"), ("seed", "-5"), ("sim.sampling_steps", "0"),
        ("sim.guidance_scale", "nan"), ("real_env", "bogus"), ("dataset", "/nonexistent/s.zarr"), ("foo", "1"),
    ],
    "import-video": [
        ("", None), ("", "/nonexistent/videos"), ("", "{d}/empty"), ("", "{bad_videos}"), ("out", None),
        ("out", "{d}/file.txt"), ("size", "0"), ("size", "-1"), ("max_frames", "0"), ("max_frames", "1"), ("fps", "0"),
        ("fps", "-1"), ("actions", "bogus"), ("on_error", "bogus"), ("square", "maybe"), ("foo", "1"),
    ],
}

# Valid uses beyond each command's base: (command, name, changes); they should succeed.
CONTROLS: list[tuple[str, str, dict[str, str]]] = [
    ("train", "vae=a DiT export (documented: its autoencoder is used)", {"vae": "{dit}"}),
]

# Appending to an existing 64x64 probe store (family random) with settings that do not match it: (name, changes, expect).
APPENDS: list[tuple[str, dict[str, str], str]] = [
    ("collect: append env=probe-push to a probe store", {"env": "probe-push"}, "refuse"),
    ("collect: append env=crafter to a probe store", {"env": "crafter"}, "refuse"),
    ("collect: append env.size=32 to a 64x64 store", {"env.size": "32"}, "refuse"),
    ("collect: append env.kwargs.family=collision to a family=random store", {"env.kwargs.family": "collision"}, "refuse"),
    ("control: collect appends to a store", {}, "succeed"),
]

# Positional commands: (name, args, expect).
POSITIONAL: list[tuple[str, list[str], str]] = [
    ("info: no store", ["info"], "refuse"),
    ("info: two stores", ["info", "{d}/s.zarr", "{d}/s.zarr"], "refuse"),
    ("info: nonexistent path", ["info", "/nonexistent/s.zarr"], "refuse"),
    ("info: an existing file", ["info", "{d}/file.txt"], "refuse"),
    ("info: an empty folder", ["info", "{d}/empty"], "refuse"),
    ("info: an export folder", ["info", "{dit}"], "refuse"),
    ("info: unknown flag", ["info", "{d}/s.zarr", "--bogus"], "refuse"),
    ("repair: one path", ["repair", "{d}/s.zarr"], "refuse"),
    ("repair: three paths", ["repair", "{d}/s.zarr", "{d}/a.zarr", "{d}/b.zarr"], "refuse"),
    ("repair: target exists", ["repair", "{d}/s.zarr", "{d}/empty"], "refuse"),
    ("repair: target is the source", ["repair", "{d}/s.zarr", "{d}/s.zarr"], "refuse"),
    ("repair: target is an existing file", ["repair", "{d}/s.zarr", "{d}/file.txt"], "refuse"),
    ("repair: target under a file", ["repair", "{d}/s.zarr", "{d}/file.txt/new.zarr"], "refuse"),
    ("repair: nonexistent source", ["repair", "/nonexistent/s.zarr", "{d}/new.zarr"], "refuse"),
    ("repair: source is not a store", ["repair", "{d}/empty", "{d}/new.zarr"], "refuse"),
    ("unknown command", ["bogus"], "refuse"),
    ("control: info", ["info", "{d}/s.zarr", "--verify"], "succeed"),
    ("control: repair of an intact store", ["repair", "{d}/s.zarr", "{d}/new.zarr"], "succeed"),
]


def args_of(command: str, changes: dict[str, str | None]) -> list[str]:
    """The command's base overrides with `changes` applied ("" is the positional argument)."""
    merged = {**BASES[command], **changes}
    positional = [v for k, v in merged.items() if k == "" and v is not None]
    return [command, *positional, *(f"{k}={v}" for k, v in merged.items() if k != "" and v is not None)]


def mention_of(key: str, value: str | None) -> tuple[str, ...]:
    """What a good error names: the key (its last part), or a non-numeric value of three characters or more
    (without list brackets; a path, or the path in its way: its parent). Templates such as {d} are filled
    in when the case runs."""
    words = [key.lstrip("+").split(".")[-1]] if key else []
    value = (value or "").strip("[]")
    if len(value) >= 3 and not value.lstrip("-").replace(".", "").isdigit():
        words.append(value)
        if "/" in value:
            words.append(value.rsplit("/", 1)[0])
    return tuple(w for w in words if w)


def label_of(changes: dict[str, str | None]) -> str:
    return " ".join(f"{k or 'DIR'}={v}" if v is not None else f"{k or 'DIR'} missing" for k, v in changes.items())


def config_cases() -> list[CliCase]:
    cases = []
    for command, bad in BAD_VALUES.items():
        timeout = 40 if command == "play" else 180  # a play that starts serving runs until killed
        store = "{d}/s.zarr" if command.startswith("train") else None  # training reads (and caches into) it
        controls = [] if command == "play" else [("", {})]  # a valid play serves until it is stopped: no control
        controls += [(name, changes) for c, name, changes in CONTROLS if c == command]
        for name, changes in controls:
            cases.append(CliCase("config", f"control: {command} {name}".strip(), args_of(command, changes),
                                 expect="succeed", prepare=store_and_file, store=store))
        for entry in bad:
            changes = entry if isinstance(entry, dict) else dict([entry])
            key, value = next(iter(changes.items()))
            cases.append(CliCase("config", f"{command}: {label_of(changes)}", args_of(command, changes),
                                 mention=mention_of(key, value), prepare=store_and_file, store=store, timeout=timeout))
    for name, changes, expect in APPENDS:  # the error should say it cannot append (and why)
        cases.append(CliCase("config", name, args_of("collect", {**changes, "out": "{d}/s.zarr"}), expect=expect,
                             mention=("append",), prepare=store_and_file, store="{d}/s.zarr"))
    cases.append(CliCase("config", "play: port in use", args_of("play", {"port": "{port}"}), mention=("in use",),
                         prepare=store_and_file, timeout=40))
    for name, args, expect in POSITIONAL:
        cases.append(CliCase("config", name, args, expect=expect, prepare=store_and_file,
                             store="{d}/s.zarr" if "{d}/s.zarr" in args else None))
    return cases


# ---------------------------------------------------------------- damaged stores

@dataclass
class Damage:
    """One way a store gets damaged; `rows` are the rows whose data it destroys (None: metadata only)."""

    name: str
    apply: Callable[[Path], None]
    rows: tuple[int, int] | None = None
    benign: bool = False  # a state a killed writer legitimately leaves: every command should just work


def delete(rel: str) -> Callable[[Path], None]:
    def apply(store: Path) -> None:
        target = store / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return apply


def garble(rel: str) -> Callable[[Path], None]:
    """Flip 16 bytes in the middle of a file (a chunk's checksum then fails)."""
    def apply(store: Path) -> None:
        data = bytearray((store / rel).read_bytes())
        start = max(0, len(data) // 2 - 8)
        for i in range(start, min(len(data), start + 16)):
            data[i] ^= 0xFF
        (store / rel).write_bytes(bytes(data))
    return apply


def truncate(rel: str) -> Callable[[Path], None]:
    def apply(store: Path) -> None:
        data = (store / rel).read_bytes()
        (store / rel).write_bytes(data[: len(data) // 2])
    return apply


def edit_attrs(**changes: Any) -> Callable[[Path], None]:
    """Change (value `...` removes) attributes of the root zarr.json, as a hand edit or a bad tool would."""
    def apply(store: Path) -> None:
        meta = json.loads((store / "zarr.json").read_text())
        for key, value in changes.items():
            if value is ...:
                meta["attributes"].pop(key, None)
            else:
                meta["attributes"][key] = value
        (store / "zarr.json").write_text(json.dumps(meta))
    return apply


def stray_partial(store: Path) -> None:
    (store / "data" / "obs" / "c.9.0.0.0.partial").write_bytes(os.urandom(100))


ALL_ROWS = (0, 1 << 30)
DAMAGES = [
    Damage("obs chunk 1 deleted", delete("data/obs/c.1.0.0.0"), rows=(32, 64)),
    Damage("obs chunk 1 garbled", garble("data/obs/c.1.0.0.0"), rows=(32, 64)),
    Damage("last obs chunk garbled", garble("data/obs/c.6.0.0.0"), rows=(192, 224)),
    Damage("action chunk deleted", delete("data/action/c.0.0"), rows=ALL_ROWS),
    Damage("action chunk garbled", garble("data/action/c.0.0"), rows=ALL_ROWS),
    Damage("reward chunk deleted", delete("data/reward/c.0"), rows=ALL_ROWS),
    Damage("obs folder deleted", delete("data/obs"), rows=ALL_ROWS),
    Damage("episode_ends chunk deleted", delete("meta/episode_ends/c.0")),
    Damage("episode_ends chunk garbled", garble("meta/episode_ends/c.0")),
    Damage("root zarr.json truncated", truncate("zarr.json")),
    Damage("obs zarr.json truncated", truncate("data/obs/zarr.json"), rows=ALL_ROWS),
    Damage("committed_episodes removed", edit_attrs(committed_episodes=...)),
    Damage("committed_episodes=7 (past the index)", edit_attrs(committed_episodes=7)),
    Damage("committed_episodes='two'", edit_attrs(committed_episodes="two")),
    Damage("killed writer's tail (committed_episodes=2 of 3)", edit_attrs(committed_episodes=2), benign=True),
    Damage("stray .partial temporary", stray_partial, benign=True),
]


def episodes_touched(fx: Fixtures, rows: tuple[int, int] | None) -> list[int]:
    """Episodes of the pristine store whose rows overlap `rows`."""
    if rows is None:
        return []
    with EpisodeStore.open(fx.store) as s:
        ends = s.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    return [int(e) for e in np.flatnonzero((starts < rows[1]) & (ends > rows[0]))]


def damaged_store(damage: Damage) -> Callable[[Path, Fixtures], None]:
    def prepare(d: Path, fx: Fixtures) -> None:
        copy_store(d, fx)
        damage.apply(d / "s.zarr")
    return prepare


def check_verify(damage: Damage) -> Callable[[Path, Fixtures, Outcome], tuple[str, str, dict]]:
    """`info --verify`: exit 1 naming exactly the damaged episodes; metadata damage may be refused (exit 2)."""
    def check(d: Path, fx: Fixtures, o: Outcome) -> tuple[str, str, dict]:
        expected = episodes_touched(fx, damage.rows)
        if damage.benign:
            return (*judge_success(o, "info"), {})
        if o.traceback:
            return "traceback", "a Python traceback was printed", {}
        if o.rc == 1:
            line = last_line(o.stdout)
            named = json.loads(line.rsplit(": ", 1)[1]) if line.startswith("verify:") else None
            details = {"named_episodes": named, "damaged_episodes": expected}
            if named is None:
                return "unclear", "exit 1 without the verify summary line", details
            if damage.rows is not None and sorted(named) != expected:
                return "unclear", f"names episodes {named}, the damage touches {expected}", details
            return "clear", "", details
        outcome, note = judge_refusal(o, "info", (str(d / "s.zarr"),))
        if outcome == "accepted":
            note = f"--verify exit 0: the damage to episodes {expected} went unnoticed"
        return outcome, note, {"damaged_episodes": expected}
    return check


def check_repair(damage: Damage) -> Callable[[Path, Fixtures, Outcome], tuple[str, str, dict]]:
    """`repair`: success with every untouched episode copied, byte for byte, into a store that verifies;
    a clear refusal counts as clear (some damage leaves nothing to rebuild from)."""
    def check(d: Path, fx: Fixtures, o: Outcome) -> tuple[str, str, dict]:
        if o.rc != 0 or o.traceback:
            return (*judge_refusal(o, "repair", (str(d / "s.zarr"),)), {})
        with EpisodeStore.open(fx.store) as s:
            everything = list(range(s.num_episodes))
        committed = 2 if "tail" in damage.name else len(everything)
        touched = episodes_touched(fx, damage.rows)
        expected = [e for e in everything[:committed] if e not in touched]
        summary = re.search(r"repair: \d+ of (\d+) episodes .*; boundaries from (.*?); ", o.stdout)
        if summary is None:
            return "fail", "exit 0 without the repair summary line", {}
        dropped = {int(e): why for e, why in re.findall(r"dropped episode (\d+): (.*)", o.stdout)}
        kept = [e for e in range(int(summary.group(1))) if e not in dropped]
        pristine = episode_digests(fx.store)
        copied = episode_digests(d / "new.zarr") or {}
        with EpisodeStore.open(d / "new.zarr") as new:
            problems = new.verify()
        details = {"kept": kept, "expected_kept": expected, "dropped": dropped, "index": summary.group(2)}
        if problems:
            return "fail", f"the repaired store does not verify: {problems[0]['error']}", details
        if [copied.get(j) for j in range(len(kept))] != [pristine[e] for e in kept]:
            return "fail", "a copied episode differs from the original", details
        if kept != expected:
            return "fail", f"kept episodes {kept}, the intact ones are {expected}", details
        return "ok", "", details
    return check


def damage_cases() -> list[CliCase]:
    cases = []
    for damage in DAMAGES:
        prepare = damaged_store(damage)
        index_damage = damage.rows is None and not damage.benign
        common = dict(family="damage", prepare=prepare, store="{d}/s.zarr", mention=("{d}/s.zarr",))  # names the store
        cases += [
            CliCase(name=f"{damage.name}: info", args=["info", "{d}/s.zarr"],
                    expect="succeed" if damage.benign else "refuse" if index_damage else "either", **common),
            CliCase(name=f"{damage.name}: info --verify", args=["info", "{d}/s.zarr", "--verify"],
                    expect="succeed" if damage.benign else "refuse", check=check_verify(damage), **common),
            CliCase(name=f"{damage.name}: collect (append)",
                    args=["collect", "env=probe", "episodes=1", "num_envs=1", "progress=false", "out={d}/s.zarr"],
                    expect="succeed" if damage.benign else "refuse" if index_damage else "either", **common),
            CliCase(name=f"{damage.name}: repair", args=["repair", "{d}/s.zarr", "{d}/new.zarr"],
                    expect="either", check=check_repair(damage), **common),
        ]
    return cases


# ---------------------------------------------------------------- corrupt exports

def export_copy(corrupt: Callable[[Path, Fixtures], None]) -> Callable[[Path, Fixtures], None]:
    def prepare(d: Path, fx: Fixtures) -> None:
        shutil.copytree(fx.dit, d / "export")
        corrupt(d / "export", fx)
    return prepare


def edit_config(change: Callable[[dict], None]) -> Callable[[Path, Fixtures], None]:
    def corrupt(export: Path, fx: Fixtures) -> None:
        config = json.loads((export / "config.json").read_text())
        change(config)
        (export / "config.json").write_text(json.dumps(config, indent=2))
    return corrupt


def rehash(export: Path, name: str) -> None:
    """Make config.json's recorded size and sha256 of weight file `name` match the file (a careful forger)."""
    config = json.loads((export / "config.json").read_text())
    entry = config["files"][name]
    data = (export / entry["path"]).read_bytes()
    entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (export / "config.json").write_text(json.dumps(config, indent=2))


def swap_autoencoder(update_hashes: bool) -> Callable[[Path, Fixtures], None]:
    def corrupt(export: Path, fx: Fixtures) -> None:
        shutil.copy(fx.vae_other / "autoencoder.safetensors", export / "autoencoder.safetensors")
        if update_hashes:
            rehash(export, "autoencoder")
    return corrupt


def cut(name: str, update_hashes: bool, garbage: bool = False) -> Callable[[Path, Fixtures], None]:
    """Truncate weight file `name` to half (or replace it by random bytes)."""
    def corrupt(export: Path, fx: Fixtures) -> None:
        path = export / f"{name}.safetensors"
        data = path.read_bytes()
        path.write_bytes(os.urandom(len(data)) if garbage else data[: len(data) // 2])
        if update_hashes:
            rehash(export, name)
    return corrupt


def remove(rel: str) -> Callable[[Path, Fixtures], None]:
    return lambda export, fx: (export / rel).unlink()


def replace_text(rel: str, text: str) -> Callable[[Path, Fixtures], None]:
    return lambda export, fx: (export / rel).write_text(text)


def set_key(path: str, value: Any) -> Callable[[dict], None]:
    """A dotted key of config.json set to `value` (`...` removes it)."""
    def change(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for p in parents:
            node = node[p]
        node.pop(last, None) if value is ... else node.__setitem__(last, value)
    return change


EXPORT_CORRUPTIONS: list[tuple[str, Callable[[Path, Fixtures], None]]] = [
    ("frame_size edited to [32, 32]", edit_config(set_key("frame_size", [32, 32]))),
    ("frame_size edited to [64]", edit_config(set_key("frame_size", [64]))),
    ("frame_size edited to 'abc'", edit_config(set_key("frame_size", "abc"))),
    ("dit_config.depth edited", edit_config(set_key("dit_config.depth", 4))),
    ("dit_config.bogus added", edit_config(set_key("dit_config.bogus", 1))),
    ("autoencoder_config.latent_channels edited", edit_config(set_key("autoencoder_config.latent_channels", 8))),
    ("action_space edited to Discrete(7)", edit_config(set_key("action_space", {"type": "Discrete", "n": 7, "start": 0}))),
    ("latent_scale of the wrong length", edit_config(set_key("latent_scale", [1.0, 1.0, 1.0]))),
    ("latent_scale values changed", edit_config(set_key("latent_scale", [1.0, 1.0, 1.0, 1.0]))),
    ("latent_scale NaN", edit_config(set_key("latent_scale", [float("nan")] * 4))),
    ("files entry removed", edit_config(set_key("files", ...))),
    ("kind removed", edit_config(set_key("kind", ...))),
    ("format edited", edit_config(set_key("format", "other"))),
    ("version 2", edit_config(set_key("version", 2))),
    ("autoencoder from another export", swap_autoencoder(update_hashes=False)),
    ("autoencoder from another export, checksums updated", swap_autoencoder(update_hashes=True)),
    ("dit.safetensors truncated", cut("dit", update_hashes=False)),
    ("dit.safetensors truncated, checksums updated", cut("dit", update_hashes=True)),
    ("dit.safetensors random bytes, checksums updated", cut("dit", update_hashes=True, garbage=True)),
    ("autoencoder.safetensors truncated", cut("autoencoder", update_hashes=False)),
    ("autoencoder.safetensors truncated, checksums updated", cut("autoencoder", update_hashes=True)),
    ("dit.safetensors missing", remove("dit.safetensors")),
    ("config.json missing", remove("config.json")),
    ("config.json truncated", lambda export, fx: truncate("config.json")(export)),
    ("config.json empty", replace_text("config.json", "")),
    ("config.json a JSON list", replace_text("config.json", "[]")),
]


def export_cases() -> list[CliCase]:
    return [CliCase("export", f"rollout: {name}", ["rollout", "checkpoint={d}/export", "steps=2", "out={d}/ro"],
                    prepare=export_copy(corrupt)) for name, corrupt in EXPORT_CORRUPTIONS]


# ---------------------------------------------------------------- env API misuse (in process)

def env_checks(fx: Fixtures, dataset: str) -> list[tuple[str, Callable[[], Any]]]:
    """(name, action) pairs; each action misuses the env API once."""
    from worldsim.sim.env import WorldModelEnv
    from worldsim.sim.vector_env import WorldModelVectorEnv

    def env(**kw: Any) -> WorldModelEnv:
        return WorldModelEnv(str(fx.dit), dataset=dataset, **kw)

    def reset_env() -> WorldModelEnv:
        e = env()
        e.reset(seed=0)
        return e

    def vec(n: int = 2, reset: bool = True) -> WorldModelVectorEnv:
        v = WorldModelVectorEnv(n, str(fx.dit), dataset=dataset)
        if reset:
            v.reset(seed=0)
        return v

    def closed(make: Callable[[], Any]) -> Any:
        e = make()
        e.close()
        return e

    checks: list[tuple[str, Callable[[], Any]]] = [
        ("env: step before reset", lambda: env().step(0)),
        ("env: step after close", lambda: closed(reset_env).step(0)),
        ("env: reset after close", lambda: closed(reset_env).reset(seed=0)),
        ("env: render_mode='human'", lambda: env(render_mode="human")),
        ("env: unknown option bogus=1", lambda: env(bogus=1)),
        ("env: sampling_steps=0", lambda: env(sampling_steps=0)),
        ("env: guidance_scale=nan", lambda: env(guidance_scale=float("nan"))),
        ("env: checkpoint that does not exist", lambda: WorldModelEnv("/nonexistent/export", dataset=dataset)),
        ("env: dataset that does not exist", lambda: WorldModelEnv(str(fx.dit), dataset="/nonexistent/s.zarr").reset(seed=0)),
        ("env: reset(seed=-1)", lambda: env().reset(seed=-1)),
        ("env: reset(options={'bogus': 1})", lambda: env().reset(seed=0, options={"bogus": 1})),
    ]
    for label, action in [("7", 7), ("-1", -1), ("2.5", 2.5), ("'left'", "left"), ("None", None), ("[1, 2]", [1, 2]),
                          ("np.int64(9)", np.int64(9))]:
        checks.append((f"env: action {label} for Discrete(5)", lambda a=action: reset_env().step(a)))
    checks += [
        ("vec: num_envs=0", lambda: vec(0, reset=False)),
        ("vec: step before reset", lambda: vec(reset=False).step(np.zeros(2, dtype=np.int64))),
        ("vec: step with a scalar", lambda: vec().step(3)),
        ("vec: step with 3 actions for 2 envs", lambda: vec().step(np.array([0, 1, 2]))),
        ("vec: action 9 in a batch", lambda: vec().step(np.array([0, 9]))),
        ("vec: action -1 in a batch", lambda: vec().step(np.array([-1, 0]))),
        ("vec: step after close", lambda: closed(vec).step(np.zeros(2, dtype=np.int64))),
        ("vec: reset with 3 seeds for 2 envs", lambda: vec(reset=False).reset(seed=[0, 1, 2])),
        ("vec: reset_mask of the wrong shape", lambda: vec().reset(options={"reset_mask": np.ones(3, dtype=bool)})),
    ]
    return checks


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exception types a user of the API is meant to catch: deliberate errors, not crashes."""
    import gymnasium

    from worldsim.data.store import StoreError
    from worldsim.export import ExportError

    return ValueError, TypeError, RuntimeError, gymnasium.error.Error, ExportError, StoreError


def run_env_cases(cat: Catalogue, fx: Fixtures, quick: bool) -> None:
    import torch

    torch.set_num_threads(1)
    folder = cat.folder("env")
    dataset = folder / "s.zarr"
    shutil.copytree(fx.store, dataset)
    before = Snapshot.of(dataset)
    expected = expected_errors()
    for name, action in select(env_checks(fx, str(dataset)), quick, 4):
        start = time.perf_counter()
        try:
            action()
            outcome, note, line = "accepted", "no exception", ""
        except expected as e:
            line = f"{type(e).__name__}: {e}"
            one_line = len(str(e).strip().splitlines()) == 1
            outcome, note = ("clear", "") if one_line else ("unclear", "the message is not one line")
        except Exception as e:  # noqa: BLE001 - what the catalogue is looking for
            line = f"{type(e).__name__}: {e}"
            outcome, note = "traceback", f"unexpected exception type {type(e).__name__}"
        intact, unchanged = compare(before, Snapshot.of(dataset))
        cat.add(Record("env", name, f"python: {name}", "refuse", outcome, None, round(time.perf_counter() - start, 2),
                       line.strip().splitlines()[-1][:300] if line.strip() else "", note, intact, unchanged))


# ---------------------------------------------------------------- kills

def committed_now(store: Path) -> int | None:
    """committed_episodes of the store's root zarr.json right now (None if absent or mid-rename)."""
    try:
        return int(json.loads((store / "zarr.json").read_text())["attributes"]["committed_episodes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def kill_when(args: list[str], cwd: Path, due: Callable[[float], bool], cap: float = 300) -> tuple[bool, float, str]:
    """Start `worldsim ARGS` and SIGKILL its process group as soon as `due(seconds since start)` is true.

    `due` is polled every 20 ms (it may also watch the files the command writes). Returns (killed: False
    when the command finished first, seconds it ran, its output)."""
    log = cwd / "killed.log"
    start = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen([str(WORLDSIM), *args], cwd=cwd, env=child_env(), stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        while p.poll() is None and not due(time.perf_counter() - start) and time.perf_counter() - start < cap:
            time.sleep(0.02)
        killed = p.poll() is None
        if killed:
            kill_group(p)
    return killed, time.perf_counter() - start, log.read_text()


@dataclass
class KillReport:
    """What one collector kill left, and what its resume made of it."""

    kill_after_s: float
    killed: bool
    committed_seen_before_kill: int
    committed_after_kill: int | None  # None: the store did not open
    uncommitted_rows_left: int | None
    partial_files_left: int
    verify: Outcome | None
    resume: Outcome | None
    final: dict[int, str]

    def problems(self, reference: dict[int, str]) -> list[str]:
        found = []
        if self.committed_after_kill is None:
            found.append("the store does not open after the kill")
        elif self.lost:
            found.append(f"{self.lost} committed episodes lost")
        if self.verify is not None and self.verify.rc != 0:
            found.append(f"--verify exit {self.verify.rc}: {self.verify.last_line}")
        if self.resume is not None and self.resume.rc != 0:
            found.append(f"resume exit {self.resume.rc}: {self.resume.last_line}")
        if self.final != reference:
            found.append(f"after the resume the store ({len(self.final)} episodes) differs from an uninterrupted collection")
        return found

    @property
    def lost(self) -> int | None:
        """Episodes seen committed before the kill that the store no longer holds."""
        if self.committed_after_kill is None:
            return None
        return max(0, self.committed_seen_before_kill - self.committed_after_kill)


def collector_kill(cat: Catalogue, fx: Fixtures, delay: float, reference: dict[int, str]) -> None:
    """SIGKILL a collector after `delay` s, inspect the store, resume it, compare with the reference."""
    d = cat.folder("kill")
    store = d / "k.zarr"
    base = ["collect", "env=probe", f"out={store}", "progress=false"]
    seen = [0]

    def due(t: float) -> bool:
        seen[0] = max(seen[0], committed_now(store) or 0)
        return t >= delay

    killed, ran, log = kill_when([*base, f"episodes={KILL_EPISODES}"], d, due)
    committed = uncommitted = None
    if not store.exists():
        committed = 0  # killed before the store was created (it appears by an atomic rename)
    elif episode_digests(store) is not None:
        with EpisodeStore.open(store) as s:
            committed, uncommitted = s.num_episodes, s.uncommitted_rows
    verify = run_cli(["info", str(store), "--verify"], d) if store.exists() else None
    resume = None
    if committed is not None and committed < KILL_EPISODES:
        resume = run_cli([*base, f"episodes={KILL_EPISODES - committed}"], d)
    report = KillReport(delay, killed, seen[0], committed, uncommitted,
                        len(list(store.rglob("*.partial"))) if store.exists() else 0, verify, resume,
                        episode_digests(store) or {})
    problems = report.problems(reference)
    traceback = TRACEBACK in log or any(o is not None and o.traceback for o in (verify, resume))
    details = {k: v for k, v in asdict(report).items() if k not in ("verify", "resume", "final")}
    details.update(ran_s=round(ran, 2), committed_episodes_lost=report.lost,
                   verify_rc=verify.rc if verify else None, resume_rc=resume.rc if resume else None,
                   resumed_with_episodes=KILL_EPISODES - committed if resume else None,
                   final_episodes=len(report.final), final_equals_uninterrupted=report.final == reference)
    last = (resume or verify).last_line if (resume or verify) else last_line(log)
    state = "killed" if killed else "had finished"
    cat.add(Record("kill", f"collector SIGKILL at {delay:.2f} s ({state}; {committed} committed)",
                   shown([*base, f"episodes={KILL_EPISODES}"]), "succeed",
                   "traceback" if traceback else "fail" if problems else "ok", resume.rc if resume else None,
                   round(ran + (resume.seconds if resume else 0), 2), last[:300], "; ".join(problems),
                   report.lost == 0 and report.final == reference if report.lost is not None else False, None, details))


def latest_checkpoint(run: Path) -> str | None:
    """The tag in the run's checkpoints/latest, None before the first checkpoint."""
    try:
        return (run / "checkpoints" / "latest").read_text().strip() or None
    except OSError:
        return None


def training_kill(cat: Catalogue, fx: Fixtures, rng: random.Random) -> None:
    """SIGKILL a training run a random moment after its first checkpoint; resume=RUN must then finish it."""
    d = cat.folder("kill")
    data, run, steps = d / "s.zarr", d / "run", 40
    shutil.copytree(fx.store, data)
    args = ["train-vae", *train_args(data, run, steps=steps), "checkpoint_every=2"]
    extra = round(rng.uniform(0.0, 1.5), 2)
    first: list[float] = []

    def due(t: float) -> bool:
        if not first and latest_checkpoint(run):
            first.append(t)
        return bool(first) and t - first[0] >= extra

    killed, ran, log = kill_when(args, d, due)
    at_kill = latest_checkpoint(run)
    resume_args = [*(a for a in args if not a.startswith("run_dir=")), f"resume={run}"]
    resume = run_cli(resume_args, d, timeout=600)
    outcome, note = judge_success(resume, "train-vae")
    if TRACEBACK in log:
        outcome, note = "traceback", "the killed run printed a traceback"
    elif outcome == "ok" and f"trained to step {steps}" not in resume.stdout:
        outcome, note = "fail", f"the resumed run did not reach step {steps}"
    resumed = next((ln for ln in (resume.stdout + resume.stderr).splitlines() if "resumed from" in ln), None)
    details = {"killed": killed, "kill_after_first_checkpoint_s": extra, "ran_s": round(ran, 2),
               "latest_checkpoint_at_kill": at_kill, "resumed_line": resumed, "resume_command": shown(resume_args)}
    cat.add(Record("kill", f"train-vae SIGKILL {extra:.2f} s after its first checkpoint ({at_kill}), then resume=RUN",
                   shown(args), "succeed", outcome, resume.rc, round(ran + resume.seconds, 2), resume.last_line[:300],
                   note, None, None, details))


# ---------------------------------------------------------------- read-only file system

def readonly_cases() -> list[CliCase]:
    """Cases on a read-only mount {ro} holding a store (s.zarr) and a DiT export (export)."""
    ro = dict(family="readonly", mention=("read-only",), prepare=store_and_file, store="{ro}/s.zarr", timeout=120)
    ok = {**ro, "mention": ()}
    collect = ["collect", "env=probe", "episodes=1", "num_envs=1", "progress=false"]
    return [
        CliCase(name="collect: append to a read-only store", args=[*collect, "out={ro}/s.zarr"], **ro),
        CliCase(name="collect: create on a read-only disk", args=[*collect, "out={ro}/new.zarr"], **ro),
        CliCase(name="import-video: out on a read-only disk", args=["import-video", "{videos}", "out={ro}/v.zarr",
                                                                    "progress=false"], **ro),
        CliCase(name="repair: target on a read-only disk", args=["repair", "{ro}/s.zarr", "{ro}/new.zarr"], **ro),
        CliCase(name="train-vae: run_dir on a read-only disk",
                args=["train-vae", *train_args(Path("{ro}/s.zarr"), Path("{ro}/run"), steps=2)], **ro),
        CliCase(name="train: data on a read-only disk (latent cache)", expect="either",
                args=["train", "vae={vae}", *train_args(Path("{ro}/s.zarr"), Path("{d}/run"), steps=2)], **ok),
        CliCase(name="rollout: out on a read-only disk", args=["rollout", "checkpoint={dit}", "steps=2", "out={ro}/ro"], **ro),
        CliCase(name="eval: out on a read-only disk", args=["eval", *(f"{k}={v}" for k, v in BASES["eval"].items()
                                                                      if k != "out"), "out={ro}/eval"], **ro),
        CliCase(name="rollout: export on a read-only disk (control)", expect="succeed",
                args=["rollout", "checkpoint={ro}/export", "steps=2", "out={d}/ro"], **ok),
        CliCase(name="info --verify: a read-only store (control)", expect="succeed",
                args=["info", "{ro}/s.zarr", "--verify"], **ok),
    ]


def mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def run_readonly(cat: Catalogue, fx: Fixtures, cases: list[CliCase]) -> str | None:
    """Run `cases` against a tmpfs remounted read-only; returns why they were skipped, or None."""
    point = cat.root / "readonly-mount"
    point.mkdir()
    made = mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(point))
    if made.returncode != 0:
        return f"mount -t tmpfs failed: {made.stderr.strip()}"
    try:
        shutil.copytree(fx.store, point / "s.zarr")
        shutil.copytree(fx.dit, point / "export")
        remount = mount("-o", "remount,ro", str(point))
        if remount.returncode != 0:
            return f"remount read-only failed: {remount.stderr.strip()}"
        for case in cases:
            run_cli_case(cat, fx, case, {"ro": str(point)})
            if cat.records[-1].outcome == "clear" and cat.records[-1].seconds > 30:
                cat.records[-1].note = f"refused only after {cat.records[-1].seconds:.0f} s"
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)
    return None


# ---------------------------------------------------------------- the run

def select(items: list, quick: bool, n: int) -> list:
    """All items, or with --quick `n` of them spread evenly over the list."""
    if not quick or len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def listening_port() -> socket.socket:
    """A socket listening on a free local port, so that a server asked for that port meets EADDRINUSE."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def summarise(records: list[Record]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for r in records:
        row = summary.setdefault(r.family, {"cases": 0, **{o: 0 for o in OUTCOMES}, "data_checked": 0, "data_intact": 0})
        row["cases"] += 1
        row[r.outcome] += 1
        if r.data_intact is not None:
            row["data_checked"] += 1
            row["data_intact"] += int(r.data_intact)
    return summary


def print_report(summary: dict[str, dict[str, Any]], records: list[Record]) -> None:
    header = ["family", "cases", *OUTCOMES, "data intact"]
    rows = [[family, row["cases"], *(row[o] for o in OUTCOMES),
             f"{row['data_intact']}/{row['data_checked']}" if row["data_checked"] else "-"]
            for family, row in summary.items()]
    totals = ["total", *(sum(r[i] for r in rows) for i in range(1, len(header) - 1)),
              f"{sum(s['data_intact'] for s in summary.values())}/{sum(s['data_checked'] for s in summary.values())}"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, totals)]
    print()
    for row in (header, *rows, totals):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    flagged = [r for r in records if r.outcome not in ("clear", "ok") or r.data_intact is False]
    print(f"\n{len(flagged)} cases neither clear nor ok (or with data not intact):")
    for r in flagged:
        intact = " DATA NOT INTACT" if r.data_intact is False else ""
        print(f"- [{r.family}] {r.name}: {r.outcome}{intact}" + (f" ({r.note})" if r.note else ""))
        print(f"    $ {r.command}")
        print(f"    > {r.last_line}")


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_catalogue(cat: Catalogue, families: list[str], quick: bool, kills: int, rng: random.Random) -> dict[str, Any]:
    """The chosen families in turn; returns notes for the JSON (e.g. why a family was skipped)."""
    fx = make_fixtures(cat.root)
    print(f"fixtures ready in {cat.root}", flush=True)
    notes = {}
    if "config" in families:
        with listening_port() as busy:
            for case in select(config_cases(), quick, 10):
                run_cli_case(cat, fx, case, {"port": str(busy.getsockname()[1])})
    if "damage" in families:
        for case in select(damage_cases(), quick, 6):
            run_cli_case(cat, fx, case)
    if "export" in families:
        for case in select(export_cases(), quick, 4):
            run_cli_case(cat, fx, case)
    if "env" in families:
        run_env_cases(cat, fx, quick)
    if "kill" in families:
        reference = episode_digests(fx.reference)
        for _ in range(kills):
            collector_kill(cat, fx, round(rng.uniform(0.5, 6.0), 2), reference)
        training_kill(cat, fx, rng)
    if "readonly" in families:
        skipped = run_readonly(cat, fx, select(readonly_cases(), quick, 3))
        if skipped:
            notes["readonly_skipped"] = skipped
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "bench" / "reliability.json"))
    parser.add_argument("--quick", action="store_true", help="about 30 cases and 5 kills (a few minutes)")
    parser.add_argument("--kills", type=int, default=None, help="collector kills (default 20, 5 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder of every case")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated subset of {','.join(FAMILIES)}")
    args = parser.parse_args()
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    kills = args.kills if args.kills is not None else 5 if args.quick else 20

    start, load_before, commit = time.perf_counter(), uptime(), git_commit()
    cat = Catalogue(Path(tempfile.mkdtemp(prefix="worldsim-reliability-")))
    try:
        notes = run_catalogue(cat, families, args.quick, kills, random.Random(args.seed))
    finally:
        if not args.keep:
            shutil.rmtree(cat.root, ignore_errors=True)
    summary = summarise(cat.records)
    print_report(summary, cat.records)
    wall = time.perf_counter() - start
    result = {
        # the library is imported live from the checkout: a commit landing during the run shows as two commits
        "meta": {"commit_at_start": commit, "commit_at_end": git_commit(), "quick": args.quick, "seed": args.seed, "collector_kills": kills,
                 "wall_s": round(wall, 1), "uptime_before": load_before, "uptime_after": uptime(),
                 "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "families": families, "outcomes": OUTCOMES, **notes},
        "summary": summary,
        "cases": [asdict(r) for r in cat.records],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{len(cat.records)} cases in {wall:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
