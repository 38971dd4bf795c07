"""MODEL_CARD.md of a shipped model, written from what its training run left behind (nothing typed by hand).

    python -m worldsim.pretrained.card NAME WORK_DIR

reads, under WORK_DIR (scripts/train_pretrained.sh's folder): the episode store ``NAME.zarr``, the run
configs ``NAME-vae/config.json`` and ``NAME-dit/config.json`` with their held-out learning curves
(``validation.jsonl``), the stage wall times ``times.txt`` and the evaluation ``NAME-eval/results.json``;
writes ``worldsim/pretrained/NAME/MODEL_CARD.md``, the learning curves as PNG under ``docs/NAME/``, and
copies the evaluation results beside the card as ``eval_results.json``. Where a target of the fidelity
issue is missed, the card's table says so with the measured number.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from worldsim.eval.report import consistency_table, idm_table
from worldsim.export import served_context_budget, served_reencode
from worldsim.pretrained import PRETRAINED, pretrained_path

HARDWARE = "a 2-core CPU shared with other jobs (no GPU was available to this training), one thread per process"
DOCS = Path(__file__).resolve().parents[2] / "docs"

# The fidelity targets (issue 10), per shipped model: (label, where in the results, comparison, target).
TARGETS: dict[str, list[tuple[str, str, str, float]]] = {
    "probes": [("autoencoder held-out PSNR (dB)", "vae:psnr", ">=", 36.0),
               ("autoencoder: visible balls found", "vae:balls_found", ">=", 0.99),
               ("PSNR at 1 latent step (dB)", "psnr@1", ">=", 30.0),
               ("PSNR at 16 latent steps (dB)", "psnr@16", ">=", 24.0),
               ("IDM accuracy on simulated frames", "idm:sim", ">=", 0.85),
               ("probe: identity (episodes passed)", "probe:identity", ">=", 0.9),
               ("probe: permanence", "probe:permanence", ">=", 0.5),
               ("probe: fall and bounce", "probe:fall_bounce", ">=", 0.5),
               ("probe: collision", "probe:collision", ">=", 0.5),
               ("probe: push", "probe:push", ">=", 0.5)],
    "crafter": [("autoencoder held-out PSNR (dB)", "vae:psnr", ">=", 30.0),
                ("PSNR at 1 latent step (dB)", "psnr@1", ">=", 26.0),
                ("PSNR at 16 latent steps (dB)", "psnr@16", ">=", 20.0),
                ("IDM gap, real - simulated", "idm:gap", "<=", 0.05),
                ("IDM gap on the move actions", "idm:gap_moves", "<=", 0.05)],
}
CURVE_METRICS = {"vae": ("psnr", "balls_found"), "dit": ("next_psnr", "rollout_psnr", "tf_x0_mse", "action_win", "balls_found", "rollout_balls_found")}


def read_curve(run: Path) -> list[dict[str, Any]]:
    """Rows of ``<run>/validation.jsonl`` (empty when the run did not validate)."""
    path = run / "validation.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_runs(work: Path, name: str, stage: str) -> list[Path]:
    """The run folders of a stage in order: ``NAME-STAGE`` and its warm-started continuations ``NAME-STAGE2``, ..."""
    runs = [work / f"{name}-{stage}"]
    n = 2
    while (work / f"{name}-{stage}{n}" / "config.json").is_file():
        runs.append(work / f"{name}-{stage}{n}")
        n += 1
    return runs


def stage_curve(work: Path, name: str, stage: str) -> list[dict[str, Any]]:
    """One learning curve across a stage's runs: a continuation's steps and CPU seconds follow on from the run before."""
    out: list[dict[str, Any]] = []
    for run in stage_runs(work, name, stage):
        rows = read_curve(run)
        step0, cpu0 = (out[-1]["step"], out[-1]["cpu_s"]) if out else (0, 0.0)
        out += [{**r, "step": r["step"] + step0, "cpu_s": r["cpu_s"] + cpu0, "run": run.name} for r in rows]
    return out


def curve_plots(name: str, work: Path) -> list[str]:
    """PNG learning curves (held-out metric against CPU minutes) under docs/NAME/; markdown lines linking them."""
    from worldsim.eval.plots import line_plot

    lines = []
    for stage in ("vae", "dit"):
        rows = stage_curve(work, name, stage)
        for metric in CURVE_METRICS[stage]:
            have = [r for r in rows if metric in r]
            if not have:
                continue
            path = DOCS / name / f"curve_{stage}_{metric}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            line_plot(path, f"{name} {stage}: held-out {metric}", "CPU minutes", metric,
                      {metric: ([r["cpu_s"] / 60 for r in have], [r[metric] for r in have])})
            lines.append(f"![{stage} {metric}](../../../docs/{name}/{path.name})")
    return lines


def measured(key: str, results: dict[str, Any], curves: dict[str, list[dict[str, Any]]]) -> float | None:
    """The number behind a TARGETS key: the last validation of a stage, or an eval result (best scheme)."""
    kind, _, what = key.partition(":")
    if kind in ("vae", "dit"):
        rows = [r for r in curves[kind] if what in r]
        return rows[-1][what] if rows else None
    if kind == "probe":  # the best context scheme's fraction of scored episodes passed
        vals = [r["summary"][what]["accuracy"] for scheme, r in (results.get("probes") or {}).items()
                if not scheme.startswith("real") and r["summary"].get(what, {}).get("accuracy") is not None]
        return max(vals) if vals else None
    if key.startswith("psnr@"):
        h = int(key[5:])
        vals = [c["psnr"][c["horizons"].index(h)]["mean"] for c in results["real_vs_sim"].values() if h in c["horizons"]]
        return max(vals) if vals else None
    idm = results.get("idm", {}).get("schemes")
    if not idm:
        return None
    vals = [v[what] for v in idm.values() if v.get(what) is not None]
    if not vals:
        return None
    return min(vals) if what.startswith("gap") else max(vals)


def judge_discriminates(key: str, results: dict[str, Any]) -> bool:
    """An IDM gap means something only when the IDM reads real frames well above chance (twice chance here)."""
    idm = results.get("idm") or {}
    real_key = "real_moves" if key.endswith("_moves") else "real"
    reals = [v.get(real_key) for v in idm.get("schemes", {}).values() if v.get(real_key) is not None]
    chance = idm.get("chance", 1.0) * (17 / 4 if key.endswith("_moves") else 1)  # moves: 4 of Crafter's 17 actions
    return bool(reals) and max(reals) >= 2 * min(chance, 0.5)


def target_table(name: str, results: dict[str, Any], curves: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| measure | target | measured | met |", "|---|---|---|---|"]
    for label, key, op, target in TARGETS.get(name, []):
        value = measured(key, results, curves)
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        verdict = "n/a" if met is None else ("yes" if met else "no")
        if met is not None and key.startswith("idm:gap") and not judge_discriminates(key, results):
            verdict = "no verdict: the judge reads real frames at chance"
        lines.append(f"| {label} | {op} {target:g} | {_fmt(value, 3)} | {verdict} |")
    return lines


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run scripts/train_pretrained.sh first")
    return json.loads(path.read_text())


def _times(work: Path, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (work / "times.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == name:
            # collections and resumed trainings add up; an evaluation is redone whole, so its last run counts
            out[parts[1]] = int(parts[2]) + (0 if parts[1] == "eval" else out.get(parts[1], 0))
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


def _continuation(stage: str, run: Path, cfg: dict[str, Any], base: dict[str, Any]) -> str:
    """One line on a warm-started continuation of a stage: where it started and what it changed."""
    command = "worldsim train-vae" if stage == "vae" else "worldsim train"
    exported = run / "export" / "config.json"
    steps = _read_json(exported)["train"]["steps"] if exported.is_file() else cfg["steps"]
    changed = ([f"data={cfg['data']} (another store)"] if cfg.get("data") != base.get("data") else []) + [
               f"{k}={_flat(cfg, k)}" for k in sorted(set(_keys(cfg)) | set(_keys(base)))
               if _flat(cfg, k) != _flat(base, k) and k.split(".")[0] not in IGNORED_CHANGES
               and not (_flat(base, k) is None and not _flat(cfg, k))]  # a field newer than the base run, left off
    metric = "psnr" if stage == "vae" else "next_psnr"
    rows = [r for r in read_curve(run) if metric in r]
    curve = (f"; held-out {metric} {rows[0][metric]:.2f} dB at its first validation (step {rows[0]['step']}), "
             f"{rows[-1][metric]:.2f} at its last") if rows else ""
    return (f"- then `{command}` continued for {steps} more steps, warm-started (`init_from`) from "
            f"`{cfg.get('init_from')}`" + (f"; changed: {', '.join(changed)}" if changed else "") + curve)


IGNORED_CHANGES = {"steps", "run_dir", "resume", "init_from", "data", "vae", "name", "out", "progress", "tensorboard", "dist"}


def _keys(cfg: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        if isinstance(v, dict) and k != "model_overrides":
            out += _keys(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def _flat(cfg: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def _overrides(run: dict[str, Any]) -> str:
    over = run.get("model_overrides") or {}
    return "" if not over else " with " + ", ".join(f"{k}={v}" for k, v in over.items())


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def eval_tables(results: dict[str, Any]) -> list[str]:
    """Markdown tables of the headline numbers of a `worldsim eval` results.json."""
    lines = ["Real vs simulated on held-out seeds (same seed, same actions), mean over episodes [95% interval]:", "",
             "| context scheme | horizon (latent steps) | PSNR (dB) | SSIM |", "|---|---|---|---|"]
    rows = list(results["real_vs_sim"].items())
    if results.get("autoencoder_ceiling"):  # the real frames through the autoencoder: what perfect latents draw
        rows.append(("autoencoder (the ceiling)", results["autoencoder_ceiling"]))
    for scheme, curve in rows:
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
    continued = {stage: [(run, _read_json(run / "config.json")) for run in stage_runs(work, name, stage)[1:]]
                 for stage in ("vae", "dit")}
    results = _read_json(work / f"{name}-eval" / "results.json")
    last_dit = (continued["dit"][-1][1] if continued["dit"] else dit)
    store_path = Path(last_dit["data"]) if last_dit.get("data") and Path(last_dit["data"]).exists() else work / f"{name}.zarr"
    with EpisodeStore.open(store_path, mode="r") as store:
        data = describe(store)
    times = _times(work, name)
    params = _params(folder)
    curves = {stage: stage_curve(work, name, stage) for stage in ("vae", "dit")}
    vae_export = work / f"{name}-vae" / "export" / "config.json"
    vae_steps = _read_json(vae_export)["train"]["steps"] if vae_export.is_file() else vae["steps"]
    dit_steps = dit["steps"] if continued["dit"] else meta["train"]["steps"]
    cpu = {stage: rows[-1]["cpu_s"] / 3600 for stage, rows in curves.items() if rows}
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
        "**How good it is, honestly:** a small model trained on a CPU "
        f"(PSNR {', '.join(f'{s} {v:.1f} dB' for s, v in psnr1.items())} one latent step after real context). "
        "Against the fidelity targets (numbers from the runs and the evaluation below):", "",
        *target_table(name, results, curves),
        *_action_following(results), "",
        "## Model", "",
        f"- autoencoder: preset `{vae['model']}`{_overrides(vae)}, {params['autoencoder']:,} parameters; "
        f"space x{ae['spatial_factor']} (patch {ae.get('patch', 1)}), time x{ae['temporal_factor']}, {ae['latent_channels']} latent channels, "
        f"object weight {ae.get('object_weight', 0.0):g}",
        f"- diffusion transformer: preset `{dit['model']}` widened, {params['dit']:,} parameters "
        f"(dim {dc['dim']}, depth {dc['depth']}, heads {dc['heads']}, patch {dc['patch_size']}); reward and termination heads",
        f"- weights: `autoencoder.safetensors` + `dit.safetensors`, {size_mb:.1f} MB, sha256 in config.json",
        *_serving(meta), "",
        "## Data", "",
        f"- recipe: `worldsim collect env={p.real_env}` with the policies, seeds and episode counts in "
        "scripts/train_pretrained.sh",
        f"- {data['episodes']} episodes, {data['frames']:,} frames at {meta['frame_size'][0]}x{meta['frame_size'][1]}, "
        f"{data['fps']:g} fps, actions {data['action_space']}; real world `{data['env_id']}`", "",
        "## Training", "",
        f"- `worldsim train-vae`: {vae_steps} steps, batch {vae['batch_size']} windows of {vae['window']} frames, "
        f"AdamW lr {vae['optim']['lr']:g} (warm-up {vae['optim']['warmup_steps']}), EMA {vae['ema_decay']}, "
        f"DeepSpeed ZeRO-{vae['dist']['zero_stage']}, seed {vae['seed']}",
        f"- `worldsim train`: {dit_steps} steps, batch {dit['batch_size']} windows of {dit['window']} frames, "
        f"AdamW lr {dit['optim']['lr']:g} (warm-up {dit['optim']['warmup_steps']}), EMA {dit['ema_decay']}, "
        f"context schemes {dit['context']['schemes']}, DeepSpeed ZeRO-{dit['dist']['zero_stage']}, seed {dit['seed']}",
        *[_continuation(stage, run, cfg, base) for stage, base in (("vae", vae), ("dit", dit))
          for run, cfg in continued[stage]],
        f"- hardware: {HARDWARE} ({platform.machine()}, torch on CPU)",
        "- wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()),
        "- CPU time (process CPU seconds, validation included): " + ", ".join(
            f"{stage} {hours:.2f} CPU-hours" for stage, hours in cpu.items()),
        "- reproduce: `bash scripts/train_pretrained.sh " + name + "`"
        + (" (phase 2 alone, from the committed phase-1 export: `CONTINUE=1 bash scripts/train_pretrained.sh "
           + name + "`; its held-out windows come from the store the recipe collects, so its first validation "
           "is the phase-1 model scored there)" if any(continued.values()) else ""), "",
        "## Learning curves", "",
        "Held-out validation during training (`validation.jsonl` of each run; `worldsim.train.validation`):", "",
        *curve_plots(name, work), "",
        "## Evaluation", "",
        f"`worldsim eval checkpoint=worldsim/pretrained/{name} world={ev['world']} seeds={ev['seeds']} steps={ev['steps']} "
        f"...` (all arguments in scripts/train_pretrained.sh; full results in eval_results.json), "
        f"{ev['sampling_steps']} denoising steps per latent frame, {ev['context_frames']} latent frames of real context at "
        f"reset, {_budget(ev)}.", "",
        *eval_tables(results), "",
    ]
    return "\n".join(lines)


def _budget(ev: dict[str, Any]) -> str:
    """The simulator context budget an evaluation ran with (results from before the setting existed used 16)."""
    budget = ev.get("context_budget", 16)
    return "the context budget the model trained on" if budget is None else f"a context budget of {budget} latent frames"


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


def _serving(meta: dict) -> list[str]:
    """The card's line on the simulator defaults the export carries (`worldsim.export.set_serving`), if any."""
    budget = served_context_budget(meta, "the card's export")
    lines = [] if budget is None else [
        f"- served with a context budget of {budget} latent frames (`serving` in config.json, chosen by evaluation: "
        "the README's simulator section); `context_budget=N` overrides it"]
    if served_reencode(meta, "the card's export"):
        lines.append("- served with its generated frames re-encoded as context (`serving` in config.json, chosen by "
                     "evaluation: the README's simulator section); `reencode=false` turns it off")
    return lines

