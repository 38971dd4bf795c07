"""The `worldsim` command: subcommands configured by Hydra overrides (`key=value`).

Each subcommand composes its YAML from `conf/` on top of a typed schema (worldsim/config.py), turns
it into the dataclass, and hands that to library code. Bad keys and values end with one line
naming the problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

CONF_DIR = Path(__file__).resolve().parent / "conf"  # the repository's conf/, linked into (and installed with) the package

USAGE = """usage: worldsim COMMAND [key=value ...]

commands:
  demo                         the main job: collect Crafter, train autoencoder + DiT briefly, roll out, evaluate (minutes on a CPU)
  collect                      record a policy in a real world:  worldsim collect env=crafter episodes=N policy=random out=PATH
  import-video DIR             mp4 files (+ VPT .jsonl actions) to episodes:  worldsim import-video DIR out=PATH size=64
  info STORE                   episodes, frames, spaces, sizes and compression of an episode store  [--json --verify]
  repair STORE NEW_STORE       copy the intact episodes of a damaged store into a new one (the damaged one is only read)
  presets                      model size presets with parameter counts
  train-vae                    train the autoencoder:  worldsim train-vae data=STORE [model=small steps=N dist.zero_stage=2]
  train                        train the DiT on a trained autoencoder:  worldsim train data=STORE vae=RUN/export [resume=RUN]
  rollout                      the simulator driven by a policy, as mp4 (+ real | sim side by side):  worldsim rollout checkpoint=EXPORT steps=N out=DIR
  play                         drive the simulator with the keyboard in a local web page:  worldsim play checkpoint=EXPORT
  eval                         real vs simulated, action following, probes, look away and back:  worldsim eval checkpoint=EXPORT [world=probe out=runs/eval]
  imagine                      the Dyna loop: collect, continue the world model, train an agent in imagination, score it in the real world:  worldsim imagine [iterations=N out=DIR]

`worldsim COMMAND --help` prints the command's configuration with its defaults.
"""


class CLIError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


@contextlib.contextmanager
def _user_errors(*errors: type[Exception]) -> Iterator[None]:
    """Re-raise an unusable export (ExportError) or one of `errors` as a CLIError, so it ends in one line.

    They come from what the user passed (a wrong or broken export, checkpoint or run), not from bugs.
    ExportError is imported here, not at the top: `worldsim --help` must not pay for torch.
    """
    from worldsim.export import ExportError

    try:
        yield
    except (ExportError, *errors) as e:
        raise CLIError(str(e)) from None


OUTPUT_KEYS = ("out", "run_dir")  # where a command writes: each job of a sweep gets its own


def sweep(args: list[str]) -> list[list[str]]:
    """Hydra multirun (`-m`): the jobs of a sweep (``episodes=1,2``, ``range(...)``, ``choice(...)``), one
    argument list each, in Hydra's order; every job writes to its own output (``out=x.zarr`` -> ``x-0.zarr``, ...)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException as e:
        raise CLIError(str(e).splitlines()[0]) from None
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
               for o in overrides]
    jobs = [list(job) for job in itertools.product(*choices)]
    if len(jobs) == 1:
        return jobs
    return [[_job_output(a, i) for a in job] for i, job in enumerate(jobs)]


def _job_output(arg: str, i: int) -> str:
    key, _, value = arg.partition("=")
    if key.lstrip("+") not in OUTPUT_KEYS or not value:
        return arg
    path = Path(value)
    return f"{key}={path.with_name(f'{path.stem}-{i}{path.suffix}')}"


def os_hint(e: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, and what to do."""
    import errno

    what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    hint = {errno.ENOSPC: "free some disk space, then resume or rerun (committed work is kept)",
            errno.EROFS: "the file system is read-only: choose an output folder you can write to",
            errno.EACCES: "no permission: choose an output folder you can write to",
            errno.EPERM: "not permitted: choose an output folder you can write to",
            errno.EADDRINUSE: "the port is in use: choose another (port=0 picks a free one)",
            errno.EADDRNOTAVAIL: "not an address of this machine: choose host=127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"}.get(e.errno)
    return what + (f" ({hint})" if hint else "")


def register_configs() -> None:
    """Register the schemas (typed dataclasses of each layer) that the YAML files under conf/ name first."""
    from hydra.core.config_store import ConfigStore

    from worldsim.config import CollectConfig, ImportVideoConfig
    from worldsim.eval.config import EvalConfig
    from worldsim.sim.play import PlayConfig
    from worldsim.sim.rollout import RolloutConfig
    from worldsim.train.config import TrainConfig

    cs = ConfigStore.instance()
    for name, node in (("collect_schema", CollectConfig), ("import_video_schema", ImportVideoConfig),
                       ("train_schema", TrainConfig), ("eval_schema", EvalConfig), ("rollout_schema", RolloutConfig),
                       ("play_schema", PlayConfig)):
        cs.store(name=name, node=node)


def _check_added_keys(obj: Any, overrides: list[str]) -> None:
    """`+key=value` may add keys only inside free-form dict fields (model_overrides, env.kwargs, policy_kwargs); anywhere
    else the schema has no such field and the value would be dropped without a word."""
    import dataclasses

    for override in overrides:
        if not override.startswith("+") or "=" not in override:
            continue
        node = obj
        for part in override[1:].split("=", 1)[0].lstrip("+").split("."):
            if isinstance(node, dict):
                break  # a free-form dict: any key is fine
            if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
                raise CLIError(f"{override}: there is no field {part!r} here (+ adds keys only inside "
                               "model_overrides, kwargs or policy_kwargs); check the spelling with --help")
            node = getattr(node, part)


def compose(config_name: str, overrides: list[str]) -> Any:
    """Compose conf/<config_name>.yaml with Hydra `overrides` into its typed dataclass."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not CONF_DIR.is_dir():
        raise CLIError(f"config folder {CONF_DIR} is missing: this worldsim installation is broken; reinstall it")
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
        obj = OmegaConf.to_object(cfg)
        _check_added_keys(obj, overrides)
        return obj
    except (HydraException, OmegaConfBaseException) as e:
        reasons, cause = [], e
        while cause is not None:
            lines = [ln.strip() for ln in str(cause).strip().splitlines() if ln.strip()]
            lines = [ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "To append", "Config search path", "provider="))]
            reasons.append(" ".join(lines).rstrip("."))
            cause = cause.__cause__
        raise CLIError(": ".join(dict.fromkeys(r for r in reasons if r))) from None


def _config_help(config_name: str) -> str:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_configs()
    _register_demo_schema()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = hydra_compose(config_name=config_name)
    return OmegaConf.to_yaml(cfg)


def cmd_collect(args: list[str]) -> None:
    """worldsim collect env=crafter episodes=N policy=random out=PATH: record a policy in a real world (appends)."""
    from worldsim.data.collect import collect

    cfg = compose("collect", args)
    result = collect(cfg)
    print(f"wrote {result.episodes} episodes, {result.frames} frames to {result.path} in {result.seconds:.1f} s "
          f"({result.steps / max(result.seconds, 1e-9):.0f} env steps/s); the store now holds {result.total_episodes} episodes")


def cmd_import_video(args: list[str]) -> None:
    """worldsim import-video DIR out=PATH: mp4 files (and VPT .jsonl actions beside them) to episodes."""
    from worldsim.data.import_video import import_videos

    positional = [a for a in args if "=" not in a]
    if len(positional) != 1:
        raise CLIError("import-video takes one folder of .mp4 files: worldsim import-video DIR out=PATH")
    overrides = [a for a in args if "=" in a] + [f"src={positional[0]}"]
    result = import_videos(compose("import_video", overrides))
    print(f"imported {result.videos} videos as {result.episodes} episodes ({result.frames} frames, "
          f"{result.with_actions} with VPT actions) into {result.path}")
    for why in result.skipped:
        print(f"skipped {why}")


def cmd_info(args: list[str]) -> None:
    """worldsim info STORE [--json] [--verify]: episodes, frames, spaces, sizes on disk and compression ratio;
    --verify reads every chunk and names the damaged episodes (exit status 1 when there are any)."""
    from worldsim.data.info import describe, format_info
    from worldsim.data.store import EpisodeStore

    as_json, verify = "--json" in args, "--verify" in args
    paths = [a for a in args if a not in ("--json", "--verify")]
    if len(paths) != 1:
        raise CLIError("info takes one store: worldsim info STORE [--json] [--verify]")
    with EpisodeStore.open(paths[0], mode="r") as store:
        d = describe(store)
        if verify:
            d["problems"] = store.verify(progress=sys.stderr.isatty() and not as_json)
    print(json.dumps(d, indent=2) if as_json else format_info(d))
    if verify and not as_json:
        if d["problems"]:
            damaged = sorted({e for p in d["problems"] for e in p["episodes"]})
            for p in d["problems"]:
                print(f"damaged: {p['array']} rows [{p['rows'][0]}, {p['rows'][1]}) episodes {p['episodes']}: {p['error']}")
            print(f"verify: {len(d['problems'])} damaged chunks in {len(damaged)} episodes: {damaged}")
        else:
            print("verify: every chunk of every committed episode reads back")
    if verify and d["problems"]:
        raise SystemExit(1)


def cmd_repair(args: list[str]) -> None:
    """worldsim repair STORE NEW_STORE [--json]: copy every intact committed episode of a damaged store into a
    new one (the damaged store is only read); the episode boundaries are rebuilt from the rows if its index is lost."""
    from worldsim.data.integrity import repair

    as_json = "--json" in args
    paths = [a for a in args if a != "--json"]
    if len(paths) != 2:
        raise CLIError("repair takes the damaged store and a new path: worldsim repair STORE NEW_STORE [--json]")
    result = repair(paths[0], paths[1], progress=sys.stderr.isatty() and not as_json)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for e, why in result["dropped"].items():
        print(f"dropped episode {e}: {why}")
    print(f"repair: {len(result['kept'])} of {result['episodes']} episodes ({result['frames']} frames) copied to "
          f"{result['out']}; boundaries from {result['index']}; {result['source']} was not changed")


def cmd_presets(args: list[str]) -> None:
    """worldsim presets: the model size presets with their parameter counts."""
    from worldsim.models.ae_presets import AE_PRESETS, autoencoder_config, preset_param_counts
    from worldsim.models.presets import preset_table

    counts = preset_param_counts()
    ae_rows = []
    for name in AE_PRESETS:
        c = autoencoder_config(name)
        ae_rows.append({"preset": name, "space x": c.spatial_factor, "time x": c.temporal_factor,
                        "latent channels": c.latent_channels, "parameters": counts[name]})
    for title, rows in (("autoencoder", ae_rows), ("diffusion transformer", preset_table())):
        print(f"{title} presets")
        keys = list(rows[0])
        widths = [max(len(str(k)), *(len(_fmt(r[k])) for r in rows)) for k in keys]
        print("  " + "  ".join(str(k).ljust(w) for k, w in zip(keys, widths)))
        for r in rows:
            print("  " + "  ".join(_fmt(r[k]).ljust(w) for k, w in zip(keys, widths)))
        print()


def _fmt(v: Any) -> str:
    if isinstance(v, int) and v >= 10_000:
        return f"{v / 1e6:.2f}M"
    return str(v)


def _register_demo_schema() -> None:
    from hydra.core.config_store import ConfigStore

    from worldsim.demo import DemoConfig
    from worldsim.imagine import ImagineConfig

    ConfigStore.instance().store(name="demo_schema", node=DemoConfig)
    ConfigStore.instance().store(name="imagine_schema", node=ImagineConfig)


def cmd_demo(args: list[str]) -> None:
    """worldsim demo [episodes=N vae_steps=N steps=N ...]: collect, train-vae, train, rollout, eval on Crafter, in minutes."""
    from worldsim.demo import format_result, run_demo

    _register_demo_schema()
    cfg = compose("demo", args)
    with _user_errors():
        result = run_demo(cfg)
    print(format_result(result))


def cmd_imagine(args: list[str]) -> None:
    """worldsim imagine [checkpoint=crafter iterations=N out=DIR ...]: collect -> world model -> agent in imagination -> real score, repeated (resumes)."""
    from worldsim.imagine import run_imagine

    _register_demo_schema()
    cfg = compose("imagine", args)
    with _user_errors():
        result = run_imagine(cfg)
    last = result["imagination"]
    if last is not None:
        print(f"[imagine] in the real {result['world']} world: agent trained in imagination return "
              f"{last['return']['mean']:.2f}, random {result['random']['return']['mean']:.2f}"
              + (f"; score {last['score']['mean']:.2f}% against {result['random']['score']['mean']:.2f}%" if "score" in last else ""))


def _run_training(config_name: str, args: list[str]) -> None:
    from worldsim.train.engine import CheckpointError
    from worldsim.train.trainer import NonFiniteLossError, train

    # The deepspeed launcher appends --local_rank=N; the rank comes from the environment instead.
    cfg = compose(config_name, [a for a in args if not a.startswith("--local_rank")])
    with _user_errors(CheckpointError, NonFiniteLossError):
        result = train(cfg)
    if result.interrupted:
        if os.environ.get("RANK", "0") == "0":
            print(f"interrupted at step {result.step}; checkpoint saved; continue with resume={result.run_dir}", file=sys.stderr)
        raise SystemExit(130)
    where = f"; export in {result.export_dir}" if result.export_dir else ""
    if os.environ.get("RANK", "0") == "0":
        loss = result.logs.get("loss")
        done = f"loss {loss:.4f}" if loss is not None and math.isfinite(loss) else "no new steps"
        print(f"trained to step {result.step} ({done}); run folder {result.run_dir}{where}")


def cmd_train_vae(args: list[str]) -> None:
    """worldsim train-vae data=STORE ...: train the autoencoder (one process, or under torchrun / deepspeed)."""
    _run_training("train_vae", args)


def cmd_train(args: list[str]) -> None:
    """worldsim train data=STORE vae=EXPORT ...: train the DiT with reward/termination heads on the autoencoder's latents."""
    _run_training("train", args)


def cmd_eval(args: list[str]) -> None:
    """worldsim eval checkpoint=EXPORT ...: evaluate a simulator (without checkpoint: the real world against itself)."""
    from worldsim.eval.run import run_eval

    cfg = compose("eval", args)
    with _user_errors():
        result = run_eval(cfg)
    print(f"report: {result.markdown_path} (results {result.json_path}, plots and videos beside it)")


def cmd_rollout(args: list[str]) -> None:
    """worldsim rollout checkpoint=EXPORT policy=random steps=N out=DIR: sim.mp4 and, with a real world, side_by_side.mp4."""
    from worldsim.sim.rollout import rollout

    with _user_errors():
        result = rollout(compose("rollout", args))
    print(f"wrote {result.sim_video} ({result.frames} frames, {result.frames / max(result.seconds, 1e-9):.1f} frames/s)")
    if result.side_by_side_video is not None:
        print(f"wrote {result.side_by_side_video} (real {result.real_env} | simulated, same seed and actions)")


def cmd_play(args: list[str]) -> None:
    """worldsim play checkpoint=EXPORT [port=8765]: drive the simulator with the keyboard in a local web page."""
    from worldsim.sim.play import play

    with _user_errors():
        play(compose("play", args))


COMMANDS: dict[str, tuple[Callable[[list[str]], None], str | None]] = {
    "demo": (cmd_demo, "demo"),
    "collect": (cmd_collect, "collect"),
    "import-video": (cmd_import_video, "import_video"),
    "info": (cmd_info, None),
    "repair": (cmd_repair, None),
    "presets": (cmd_presets, None),
    "train-vae": (cmd_train_vae, "train_vae"),
    "train": (cmd_train, "train"),
    "eval": (cmd_eval, "eval"),
    "rollout": (cmd_rollout, "rollout"),
    "play": (cmd_play, "play"),
    "imagine": (cmd_imagine, "imagine"),
}


def main(argv: list[str] | None = None) -> int:
    """`worldsim COMMAND key=value ...`; also the entry of launchers (`python -m worldsim.cli`).

    The deepspeed launcher puts ``--local_rank=N`` before the command; it is dropped (the rank is read
    from the environment), so ``deepspeed --num_gpus 2 --module worldsim.cli train ...`` works, as does
    ``torchrun --nproc_per_node 2 -m worldsim.cli train ...``.
    """
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("--local_rank")]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("--version", "-V", "version"):
        from worldsim import __version__

        print(f"worldsim {__version__}")
        return 0
    name, args = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"worldsim {name}: error: unknown command {name!r}; the commands are {', '.join(COMMANDS)} "
              "(`worldsim --help` describes them)", file=sys.stderr)
        return 2
    handler, config_name = COMMANDS[name]
    multirun = any(a in ("-m", "--multirun") for a in args)
    args = [a for a in args if a not in ("-m", "--multirun")]
    if "--help" in args or "-h" in args:
        print((handler.__doc__ or "").strip() or USAGE)
        if config_name:
            print(f"\nconfiguration (override with key=value):\n{_config_help(config_name)}")
        return 0
    from worldsim.data.store import StoreError
    from worldsim.hardware import MissingDependencyError
    from worldsim.spaces import ActionError

    try:
        jobs = sweep(args) if multirun else [args]
        for i, job in enumerate(jobs):
            if multirun:
                print(f"[worldsim {name} -m] job {i + 1}/{len(jobs)}: {' '.join(job)}", flush=True)
            handler(job)
    except (CLIError, StoreError, ActionError, ValueError, MissingDependencyError) as e:
        if os.environ.get("WORLDSIM_DEBUG"):
            raise
        print(f"worldsim {name}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine refused: disk full, read-only or forbidden path, port in use, ...
        if os.environ.get("WORLDSIM_DEBUG"):
            raise
        print(f"worldsim {name}: error: {os_hint(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nworldsim {name}: interrupted; completed episodes are saved", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
