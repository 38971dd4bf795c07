"""MODEL_CARD.md of a shipped model, written from what its training run left behind (nothing typed by hand).

    python -m worldsim.pretrained.card NAME WORK_DIR

reads, under WORK_DIR (scripts/train_pretrained.sh's folder): the episode store ``NAME.zarr``, the run
configs ``NAME-vae/config.json`` and ``NAME-dit/config.json``, the stage wall times ``times.txt`` and
the evaluation ``NAME-eval/results.json``; writes ``worldsim/pretrained/NAME/MODEL_CARD.md`` and copies
the evaluation results beside it as ``eval_results.json``.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from worldsim.eval.report import consistency_table, idm_table
from worldsim.pretrained import PRETRAINED, pretrained_path

HARDWARE = ("a 2-core CPU shared with other jobs (no GPU was available to this training), one thread per process; "
            "the two shipped models trained at the same time, so each had about one core")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run scripts/train_pretrained.sh first")
    return json.loads(path.read_text())


def _times(work: Path, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (work / "times.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == name:
            out[parts[1]] = int(parts[2])  # the last run of a stage wins
    return out


def _params(folder: Path) -> dict[str, int]:
    from safetensors import safe_open

    counts = {}
    for part in ("autoencoder", "dit"):
        with safe_open(str(folder / f"{part}.safetensors"), "pt") as f:
            counts[part] = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
    return counts


def _prod(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _action_following(results: dict[str, Any]) -> list[str]:
    """One honest sentence on whether the simulator follows actions, from the IDM numbers."""
    idm = results.get("idm")
    if not idm or "schemes" not in idm:
        return []
    sim = max(r["sim"] for r in idm["schemes"].values())
    real = next(iter(idm["schemes"].values()))["real"]
    verdict = ("it does not yet follow actions measurably" if sim <= 1.5 * idm["chance"]
               else "it follows actions partly")
    return ["", f"Action following: {verdict} (an inverse-dynamics model recovers {sim:.0%} of actions from simulated "
                f"frames, {real:.0%} from real ones; chance {idm['chance']:.0%})."]


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def eval_tables(results: dict[str, Any]) -> list[str]:
    """Markdown tables of the headline numbers of a `worldsim eval` results.json."""
    lines = ["Real vs simulated on held-out seeds (same seed, same actions), mean over episodes [95% interval]:", "",
             "| context scheme | horizon (latent steps) | PSNR (dB) | SSIM |", "|---|---|---|---|"]
    for scheme, curve in results["real_vs_sim"].items():
        for h, p, s in zip(curve["horizons"], curve["psnr"], curve["ssim"]):
            lines.append(f"| {scheme} | {h} | {p['mean']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}] | "
                         f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] |")
    idm = results.get("idm")
    if idm and "schemes" in idm:
        lines += ["", f"Action following: an inverse-dynamics model trained on real frame pairs (chance {idm['chance']:.3f}) "
                  "guesses the action between consecutive frames:", ""] + idm_table(idm)
    cons = results.get("consistency")
    if cons and "schemes" in cons:
        lines += ["", "Look away and back (PSNR dB / SSIM of the frame on return):", ""] + consistency_table(cons)
    probes = results.get("probes")
    if probes:
        families = list(next(iter(probes.values()))["summary"])
        lines += ["", "Probes scored from generated frames (episodes passed / scored; the real world is the ceiling):", "",
                  "| context scheme | " + " | ".join(families) + " |", "|---|" + "---|" * len(families)]
        for scheme, r in probes.items():
            cells = [f"{r['summary'][f]['passed']}/{r['summary'][f]['scored']}" for f in families]
            lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    return lines


def model_card(name: str, work: Path) -> str:
    """The MODEL_CARD.md text of shipped model `name` from the run under `work`."""
    from worldsim.data.info import describe
    from worldsim.data.store import EpisodeStore

    p = PRETRAINED[name]
    folder = pretrained_path(name)
    meta = _read_json(folder / "config.json")
    vae, dit = _read_json(work / f"{name}-vae" / "config.json"), _read_json(work / f"{name}-dit" / "config.json")
    results = _read_json(work / f"{name}-eval" / "results.json")
    with EpisodeStore.open(work / f"{name}.zarr", mode="r") as store:
        data = describe(store)
    times = _times(work, name)
    params = _params(folder)
    size_mb = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20
    ae, dc = meta["autoencoder_config"], meta["dit_config"]
    ev = results["config"]
    psnr1 = {s: c["psnr"][0]["mean"] for s, c in results["real_vs_sim"].items()}
    lines = [
        f"# {p.env_id}: a learned simulator of `{p.real_env}`", "",
        f"`gymnasium.make(\"{p.env_id}\")` after `import worldsim`; works offline. One step = one latent frame = "
        f"{meta['compression']['temporal']} real frames with the action held; observations are "
        f"{meta['frame_size'][0]}x{meta['frame_size'][1]} RGB; reset takes its context frame from the real "
        f"`{p.real_env}` world (seeded by the env), or pass `dataset=STORE`.", "",
        "**How good it is, honestly:** a small model trained briefly on a CPU. It gets the colours and the coarse "
        f"layout (PSNR {', '.join(f'{s} {v:.1f} dB' for s, v in psnr1.items())} one latent step after a real context "
        "frame) but blurs away small objects (the agent, balls) within a few steps; it is a working default for the "
        "pipeline and for smoke-testing agents, not a faithful simulator. Train longer "
        "(scripts/train_pretrained.sh with larger VAE_STEPS / DIT_STEPS, bigger presets, a GPU) for that.",
        *_action_following(results), "",
        "## Model", "",
        f"- autoencoder: preset `{vae['model']}`, {params['autoencoder']:,} parameters; "
        f"space x{ae['spatial_factor']}, time x{ae['temporal_factor']}, {ae['latent_channels']} latent channels",
        f"- diffusion transformer: preset `{dit['model']}` widened, {params['dit']:,} parameters "
        f"(dim {dc['dim']}, depth {dc['depth']}, heads {dc['heads']}, patch {dc['patch_size']}); reward and termination heads",
        f"- weights: `autoencoder.safetensors` + `dit.safetensors`, {size_mb:.1f} MB, sha256 in config.json", "",
        "## Data", "",
        f"- recipe: `worldsim collect env={p.real_env} policy=random seed=0` (exact arguments in scripts/train_pretrained.sh)",
        f"- {data['episodes']} episodes, {data['frames']:,} frames at {meta['frame_size'][0]}x{meta['frame_size'][1]}, "
        f"{data['fps']:g} fps, actions {data['action_space']}; real world `{data['env_id']}`", "",
        "## Training", "",
        f"- `worldsim train-vae`: {vae['steps']} steps, batch {vae['batch_size']} windows of {vae['window']} frames, "
        f"AdamW lr {vae['optim']['lr']:g} (warm-up {vae['optim']['warmup_steps']}), EMA {vae['ema_decay']}, "
        f"DeepSpeed ZeRO-{vae['dist']['zero_stage']}, seed {vae['seed']}",
        f"- `worldsim train`: {dit['steps']} steps, batch {dit['batch_size']} windows of {dit['window']} frames, "
        f"AdamW lr {dit['optim']['lr']:g} (warm-up {dit['optim']['warmup_steps']}), EMA {dit['ema_decay']}, "
        f"context schemes {dit['context']['schemes']}, DeepSpeed ZeRO-{dit['dist']['zero_stage']}, seed {dit['seed']}",
        f"- hardware: {HARDWARE} ({platform.machine()}, torch on CPU)",
        "- wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()),
        "- reproduce: `bash scripts/train_pretrained.sh " + name + "`", "",
        "## Evaluation", "",
        f"`worldsim eval checkpoint=worldsim/pretrained/{name} world={ev['world']} seeds={ev['seeds']} steps={ev['steps']} "
        f"...` (all arguments in scripts/train_pretrained.sh; full results in eval_results.json), "
        f"{ev['sampling_steps']} denoising steps per latent frame, {ev['context_frames']} context latent frames at most.", "",
        *eval_tables(results), "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in PRETRAINED:
        print(f"usage: python -m worldsim.pretrained.card {{{'|'.join(PRETRAINED)}}} WORK_DIR", file=sys.stderr)
        return 2
    name, work = argv[0], Path(argv[1])
    folder = pretrained_path(name)
    (folder / "MODEL_CARD.md").write_text(model_card(name, work))
    shutil.copyfile(work / f"{name}-eval" / "results.json", folder / "eval_results.json")
    print(f"wrote {folder / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
