"""`worldsim demo`: the whole pipeline on the embedded default world, small enough for a laptop CPU.

    collect  ->  train-vae  ->  train (DiT)  ->  rollout  ->  eval  ->  strip.png + summary.json

Every stage calls the same library function as its own command (`worldsim collect`, `train-vae`,
`train`, `rollout`, `eval`), with sizes chosen so that the whole run takes a few minutes on a
2-core CPU. The models it trains are deliberately brief: the point is to see every part work and
where its outputs land; `gymnasium.make("worldsim/Crafter-v0")` gives the (longer-trained) shipped
model instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

STAGES = ("collect", "train-vae", "train", "rollout", "eval", "strip")


@dataclass
class DemoConfig:
    """`worldsim demo [episodes=N vae_steps=N steps=N ...]`: sizes of every stage."""

    out: str | None = None  # run folder; None: runs/demo/<timestamp>
    world: str = "crafter"  # real world: crafter (the embedded default) | probe
    size: int = 64  # frame height and width
    episodes: int = 12  # episodes collected with `policy`
    max_episode_steps: int = 150  # cap per collected episode (random Crafter agents live ~100-300 steps)
    policy: str = "random"  # collection and rollout policy (agents.POLICIES)
    vae_model: str = "cpu"  # autoencoder preset: "cpu" learns fastest per CPU-second (README, training section)
    vae_steps: int = 300  # autoencoder optimizer steps
    vae_window: int = 5  # frames per autoencoder training window (1 + 2k)
    model: str = "tiny"  # DiT preset
    steps: int = 300  # DiT optimizer steps
    window: int = 9  # frames per DiT training window (1 + 4k: 5 latent frames)
    batch_size: int = 8
    lr: float = 1e-3  # both trainings; high because they are short
    zero_stage: int = 0  # DeepSpeed ZeRO stage of both trainings
    rollout_steps: int = 32  # simulator steps in the rollout video (k frames each)
    sampling_steps: int = 4  # denoising steps per simulated latent frame
    eval_seeds: int = 4  # held-out episodes per comparison in the report
    eval_steps: int = 8  # simulated latent steps per compared episode
    eval_schemes: list[str] = field(default_factory=lambda: ["autoregressive", "long-range"])
    idm_train_steps: int = 60  # the evaluation's inverse-dynamics model, trained on the collected episodes
    strip_frames: int = 8  # columns of the still real-vs-simulated strip
    seed: int = 0
    threads: int = 1  # torch CPU threads; 1 measured 6x faster than 2 on a 2-core CPU shared with another job
    tensorboard: bool = False  # TensorBoard logs of both trainings
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("episodes", "max_episode_steps", "vae_steps", "steps", "batch_size", "rollout_steps",
                     "sampling_steps", "eval_steps", "strip_frames", "idm_train_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_seeds < 2:
            raise ValueError(f"eval_seeds must be >= 2 (confidence intervals need two episodes), got {self.eval_seeds}")
        if self.world not in ("crafter", "probe"):
            raise ValueError(f"world must be crafter or probe (the worlds that run offline), got {self.world!r}")


@dataclass
class DemoResult:
    """Where everything is, and how long each stage took."""

    out: Path
    store: Path  # the collected episode store
    vae_export: Path  # autoencoder export folder
    export: Path  # simulator export folder (DiT + autoencoder): checkpoint=... for rollout/eval/play
    sim_video: Path  # the agent's rollout in the simulator
    side_by_side_video: Path  # real | simulated, same seed and actions
    strip: Path  # PNG: real frames above simulated ones
    report: Path  # the evaluation report (markdown)
    results: Path  # the evaluation results (JSON)
    plots: list[Path]  # the evaluation's PNG plots
    seconds: dict[str, float]  # wall time per stage, plus "total"

    def paths(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if isinstance(v, list) else v)
                for k, v in asdict(self).items()}


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> DemoResult:
    """Run every stage under `cfg.out`; `log` receives one line per stage. Returns where everything is."""
    from worldsim.config import CollectConfig, EnvConfig
    from worldsim.data.collect import collect
    from worldsim.eval.config import EvalConfig
    from worldsim.eval.run import run_eval
    from worldsim.sim.config import SimConfig
    from worldsim.sim.rollout import RolloutConfig, rollout
    from worldsim.train.config import DistConfig, OptimConfig, TrainConfig
    from worldsim.train.trainer import train

    import torch

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out) if cfg.out else Path("runs") / "demo" / time.strftime("%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"demo folder {out} exists and is not empty; choose another out=")
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def stage(i: int, name: str, what: str) -> None:
        log(f"[demo {i}/{len(STAGES)}] {name}: {what}")
        seconds[name] = time.perf_counter()

    def done(name: str) -> None:
        seconds[name] = time.perf_counter() - seconds[name]
        log(f"[demo] {name} took {seconds[name]:.0f} s")

    store = out / f"{cfg.world}.zarr"
    stage(1, "collect", f"{cfg.episodes} {cfg.world} episodes (<= {cfg.max_episode_steps} steps) with a {cfg.policy} policy")
    collected = collect(CollectConfig(env=EnvConfig(name=cfg.world, size=cfg.size, max_episode_steps=cfg.max_episode_steps),
                                      out=str(store), episodes=cfg.episodes, policy=cfg.policy, vector="sync",
                                      seed=cfg.seed, progress=cfg.progress))
    log(f"[demo] {collected.frames} frames in {store}")
    done("collect")

    common = dict(data=str(store), batch_size=cfg.batch_size, seed=cfg.seed, ema_decay=0.99, checkpoint_every=10**9,
                  video_every=0, tensorboard=cfg.tensorboard, progress=cfg.progress,
                  dist=DistConfig(zero_stage=cfg.zero_stage, port=free_port()))
    warmup = lambda steps: OptimConfig(lr=cfg.lr, warmup_steps=min(20, steps // 4))  # noqa: E731
    stage(2, "train-vae", f"autoencoder ({cfg.vae_model}) for {cfg.vae_steps} steps through DeepSpeed ZeRO-{cfg.zero_stage}")
    vae = train(TrainConfig(task="vae", model=cfg.vae_model, window=cfg.vae_window, steps=cfg.vae_steps,
                            optim=warmup(cfg.vae_steps), run_dir=str(out / "vae"), **common))
    done("train-vae")

    stage(3, "train", f"diffusion transformer ({cfg.model}) for {cfg.steps} steps on the autoencoder's latents")
    dit = train(TrainConfig(task="dit", vae=str(vae.export_dir), model=cfg.model, window=cfg.window, steps=cfg.steps,
                            optim=warmup(cfg.steps), run_dir=str(out / "dit"), **common))
    done("train")

    sim = SimConfig(context="long-range", sampling_steps=cfg.sampling_steps)
    stage(4, "rollout", f"a {cfg.policy} agent for {cfg.rollout_steps} steps in the simulator and in the real world")
    rolled = rollout(RolloutConfig(checkpoint=str(dit.export_dir), policy=cfg.policy, steps=cfg.rollout_steps,
                                   out=str(out / "rollout"), seed=cfg.seed, real_env=cfg.world, sim=sim))
    done("rollout")

    stage(5, "eval", f"real vs simulated on {cfg.eval_seeds} held-out seeds, action following, look away and back")
    evaluated = run_eval(EvalConfig(
        checkpoint=str(dit.export_dir), out=str(out / "eval"), world=cfg.world, size=cfg.size, seeds=cfg.eval_seeds,
        steps=cfg.eval_steps, horizons=sorted({1, max(1, cfg.eval_steps // 2), cfg.eval_steps}),
        schemes=list(cfg.eval_schemes), sampling_steps=cfg.sampling_steps, num_envs=cfg.eval_seeds,
        probe_seeds=1, probe_steps=cfg.eval_steps, idm_data=str(store), idm_train_steps=cfg.idm_train_steps,
        loop_lengths=[2], minedojo=False, progress=cfg.progress))
    done("eval")

    stage(6, "strip", "still frames: real above simulated")
    strip = write_strip(rolled.side_by_side_video, out / "strip.png", cfg.strip_frames)
    done("strip")

    seconds["total"] = time.perf_counter() - start
    result = DemoResult(out=out.resolve(), store=store.resolve(), vae_export=Path(vae.export_dir).resolve(),
                        export=Path(dit.export_dir).resolve(), sim_video=rolled.sim_video.resolve(),
                        side_by_side_video=rolled.side_by_side_video.resolve(), strip=strip.resolve(),
                        report=evaluated.markdown_path.resolve(), results=evaluated.json_path.resolve(),
                        plots=sorted(p.resolve() for p in (out / "eval").rglob("*.png")), seconds=seconds)
    (out / "summary.json").write_text(json.dumps({"config": asdict(cfg), **result.paths()}, indent=2))
    return result


def free_port() -> int:
    """A TCP port nothing listens on now: the one-process DeepSpeed rendezvous must not collide with another run."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def strip_image(real: np.ndarray, sim: np.ndarray, columns: int, gap: int = 2) -> np.ndarray:
    """Still strip of `columns` evenly spaced time steps: real frames in the top row, simulated below.

    Args:
        real, sim: uint8 (T, H, W, 3) with the same shape.
    Returns:
        uint8 (2H + gap, columns * (W + gap) - gap, 3) on a white background.
    """
    if real.shape != sim.shape or real.ndim != 4:
        raise ValueError(f"real and simulated frames must both be (T, H, W, 3), got {real.shape} and {sim.shape}")
    t, h, w, _ = real.shape
    idx = np.linspace(0, t - 1, min(columns, t)).round().astype(int)
    canvas = np.full((2 * h + gap, len(idx) * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for j, i in enumerate(idx):
        x = j * (w + gap)
        canvas[:h, x:x + w] = real[i]
        canvas[h + gap:, x:x + w] = sim[i]
    return canvas


def write_strip(side_by_side_mp4: Path, png: Path, columns: int, scale: int = 2) -> Path:
    """Decode a real | simulated side-by-side mp4 (`worldsim rollout`) into a still strip PNG, upscaled `scale` x."""
    from PIL import Image

    from worldsim.video import read_mp4

    video = read_mp4(side_by_side_mp4)  # (T, H, 2W + gap, 3)
    w = (video.shape[2] - 2) // 2  # worldsim.video.side_by_side puts a 2-pixel gap between the strips
    image = strip_image(video[:, :, :w], video[:, :, -w:], columns)
    Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST).save(png)
    return png


def format_result(result: DemoResult) -> str:
    """The closing message: where every artifact is and how long each stage took."""
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items() if k != "total")
    lines = [
        f"[demo] done in {result.seconds['total'] / 60:.1f} min ({times})",
        f"  everything:          {result.out}",
        f"  dataset:             {result.store}",
        f"  simulator export:    {result.export}   (worldsim play checkpoint=... / gymnasium.make('worldsim/WorldModel-v0', checkpoint=...))",
        f"  rollout video:       {result.sim_video}",
        f"  real | simulated:    {result.side_by_side_video}",
        f"  still strip:         {result.strip}",
        f"  evaluation report:   {result.report}",
        f"  evaluation results:  {result.results}",
        f"  plots:               {', '.join(p.name for p in result.plots)} in {result.report.parent / 'plots'}",
        f"  summary:             {result.out / 'summary.json'}",
    ]
    return "\n".join(lines)
