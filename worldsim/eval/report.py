"""The evaluation report: results.json, report.md, PNG plots and mp4 strips in one folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.eval.paired import Paired
from worldsim.eval.plots import line_plot
from worldsim.video import side_by_side, write_mp4


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_report(results: dict[str, Any], paired: dict[str, Paired], out: Path, videos: bool = True) -> tuple[Path, Path]:
    """Write results.json, plots/*.png, videos/*.mp4 and report.md under `out`; returns the JSON and markdown paths."""
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    results["plots"] = _plots(results, out / "plots")
    results["videos"] = _videos(paired, out / "videos") if videos else []
    json_path = out / "results.json"
    json_path.write_text(json.dumps(_json_safe(results), indent=2))
    md_path = out / "report.md"
    md_path.write_text(markdown(results))
    return json_path, md_path


def _plots(results: dict[str, Any], folder: Path) -> list[str]:
    paths = []
    rvs = results["real_vs_sim"]
    schemes = list(rvs)
    for metric, unit in (("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
        curves = {s: (r["curve"]["step"], r["curve"][metric]) for s, r in rvs.items()}
        paths.append(line_plot(folder / f"{metric}_vs_horizon.png", f"real vs simulated: {metric.upper()} per latent step",
                               "horizon (latent steps)", unit, curves, log_x=True))
        by_h = {}
        for s_i, (s, r) in enumerate(rvs.items()):
            for h, v in zip(r["horizons"], r[metric]):
                by_h.setdefault(f"h={h}", ([], []))
                by_h[f"h={h}"][0].append(s_i)
                by_h[f"h={h}"][1].append(v["mean"])
        paths.append(line_plot(folder / f"{metric}_vs_scheme.png", f"{metric.upper()} against context scheme",
                               "context scheme", unit, by_h, x_ticks=schemes))
    probes = results.get("probes")
    if probes:
        series = {name: (list(range(1, len(s["fall_bounce_error_px"]) + 1)), s["fall_bounce_error_px"])
                  for name, s in probes.items() if s.get("fall_bounce_error_px")}
        if series:
            paths.append(line_plot(folder / "fall_bounce_error_vs_horizon.png", "free fall and bounce: trajectory error",
                                   "horizon (frames)", "median error (px)", series, log_x=True))
        checks = ["identity", "permanence", "fall_bounce", "collision", "push"]
        acc = {name: (list(range(len(checks))), [s["summary"].get(c, {}).get("accuracy") for c in checks])
               for name, s in probes.items()}
        paths.append(line_plot(folder / "probe_accuracy.png", "probe accuracy per family", "family", "accuracy",
                               acc, x_ticks=checks))
    cons = results.get("consistency", {}).get("schemes")
    if cons:
        series = {s: ([r["n"] for r in rows], [r["sim_return_vs_before"]["psnr"] for r in rows]) for s, rows in cons.items()}
        first = next(iter(cons.values()))
        series["real world"] = ([r["n"] for r in first], [r["real_return_vs_before"]["psnr"] for r in first])
        paths.append(line_plot(folder / "consistency_psnr.png", "look away and back: return frame vs frame before",
                               "steps away (latent)", "PSNR (dB)", series, log_x=True))
    idm = results.get("idm", {}).get("schemes")
    if idm:
        series = {"real frames": (list(range(len(idm))), [v["real"] for v in idm.values()]),
                  "simulated frames": (list(range(len(idm))), [v["sim"] for v in idm.values()])}
        paths.append(line_plot(folder / "idm_accuracy_vs_scheme.png", "action following: IDM accuracy",
                               "context scheme", "accuracy", series, x_ticks=list(idm)))
    return [str(Path("plots") / Path(p).name) for p in paths]


def _videos(paired: dict[str, Paired], folder: Path, episodes: int = 2) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for scheme, p in paired.items():
        sim = p.sim if p.sim is not None else p.real
        for i in range(min(episodes, len(p.real))):
            ctx = p.episodes[i].frames[:p.context]
            strip = side_by_side(np.concatenate([ctx, p.real[i]]), np.concatenate([ctx, sim[i]]))
            name = f"{scheme.replace(' ', '_').replace('(', '').replace(')', '')}_{i}.mp4"
            write_mp4(folder / name, strip, scale=4)
            names.append(str(Path("videos") / name))
    return names


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def horizon_table(r: dict[str, Any]) -> list[str]:
    """Markdown rows of a `per_horizon` result: PSNR and SSIM with their 95% intervals per horizon."""
    lines = ["| horizon | PSNR (dB) | SSIM |", "|---|---|---|"]
    for h, p, s in zip(r["horizons"], r["psnr"], r["ssim"]):
        lines.append(f"| {h} | {p['mean']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}] | "
                     f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] |")
    return lines


def idm_table(idm: dict[str, Any]) -> list[str]:
    """Markdown rows of the action-following results: accuracy of the IDM on real and simulated frames per scheme."""
    moves = "move_actions" in idm
    head = "| context scheme | accuracy on real | on simulated | gap |"
    lines = [head + (" moves: real | moves: simulated | moves: gap |" if moves else ""),
             "|---|---|---|---|" + ("---|---|---|" if moves else "")]
    for scheme, v in idm["schemes"].items():
        row = f"| {scheme} | {v['real']:.3f} | {v['sim']:.3f} | {v['gap']:.3f} |"
        if moves:
            row += " " + " | ".join(_fmt(v[key], 3) for key in ("real_moves", "sim_moves", "gap_moves")) + " |"
        lines.append(row)
    if moves:
        lines.append(f"\n(moves: pairs whose action is one of {idm['move_actions']}, which change the frame in nearly every state)")
    return lines


def consistency_table(cons: dict[str, Any]) -> list[str]:
    """Markdown rows of look-away-and-back: PSNR / SSIM of the frame on return, per scheme and steps away."""
    lines = ["| context scheme | steps away | real: return vs before | sim: return vs before | sim vs real return "
             "| memoryless vs real return |", "|---|---|---|---|---|---|"]
    for scheme, rows in cons["schemes"].items():
        for r in rows:
            cells = [f"{r[key]['psnr']:.2f} / {r[key]['ssim']:.3f}" if key in r else "n/a" for key in
                     ("real_return_vs_before", "sim_return_vs_before", "sim_return_vs_real_return",
                      "memoryless_vs_real_return")]
            lines.append(f"| {scheme} | {r['n']} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The report as markdown text (tables per measurement, links to plots and videos)."""
    cfg = results["config"]
    lines = ["# worldsim evaluation", ""]
    lines.append(f"Model: `{cfg['checkpoint']}`" if cfg["checkpoint"] else
                 "No model given: every measurement compares the real world with itself (the ceilings).")
    if results.get("footage_only"):  # an action-free model: no world was played
        lines += [f"Footage: `{cfg['video_store']}` at {results['frame_size']}x{results['frame_size']}; up to "
                  f"{cfg['seeds']} clips continued {cfg['steps']} latent steps with no actions.", ""]
    else:
        lines += [f"World: {cfg['world']} at {results['frame_size']}x{results['frame_size']}; {cfg['seeds']} held-out "
                  f"seeds from {cfg['first_seed']}; {cfg['steps']} latent steps.", ""]
        if results.get("seeds_replaced"):
            r = results["seeds_replaced"]
            lines += [f"Seeds {r['short']} end before the comparison does (the real episode is over) and were replaced "
                      f"by {r['by']}.", ""]
    if results["real_vs_sim"]:
        lines += ["## Real vs simulated", "", "Mean over episodes (95% interval) at each horizon, in latent steps.", ""]
    for scheme, r in results["real_vs_sim"].items():
        lines += [f"**{scheme}**", ""] + horizon_table(r) + [""]
    copy = results.get("copy_baseline")
    if copy:
        lines += ["**copy (the baseline)**: the last context frame repeated; a simulator must beat this to say more than "
                  "\"nothing changes\".", ""] + horizon_table(copy) + [""]
    ceiling = results.get("autoencoder_ceiling")
    if ceiling:
        lines += ["**autoencoder (the ceiling)**: the real frames encoded and decoded by the simulator's autoencoder; "
                  "no simulator draws closer to the real world than its perfect latents.", ""] + horizon_table(ceiling) + [""]
    floor = results.get("real_floor")
    if floor:
        lines += ["**real vs real (the floor)**: the same seeds and actions played again; this world runs in real time, "
                  "so its replays differ and no simulator can be judged closer than this.", ""] + horizon_table(floor) + [""]
    idm = results.get("idm")
    if idm:
        lines += ["## Action following (inverse dynamics)", ""]
        if "skipped" in idm:
            lines += [f"Skipped: {idm['skipped']}", ""]
        else:
            lines += [f"IDM trained on {idm['train_pairs']} real frame pairs; chance is {idm['chance']:.2f}.", ""]
            lines += idm_table(idm) + [""]
    probes = results.get("probes")
    if probes:
        lines += ["## Probes (probe world)", "", "Accuracy per check over episodes, 95% Wilson interval; "
                  "`real (ceiling)` scores the real frames and must be 1.", "",
                  "| frames | check | accuracy | 95% interval | scored | no event |", "|---|---|---|---|---|---|"]
        for name, suite in probes.items():
            for check, s in suite["summary"].items():
                lines.append(f"| {name} | {check} | {_fmt(s['accuracy'])} | [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] | "
                             f"{s['scored']} | {s['no_event']} |")
        lines += ["", "fall_bounce passes frames that follow the physics under any restitution of the scenario's "
                  "range (frames before the first floor hit cannot show it); against the true restitution only: "
                  + ", ".join(f"{name} {suite['fall_bounce_strict']['passed']}/{suite['fall_bounce_strict']['scored']}"
                              for name, suite in probes.items() if "fall_bounce_strict" in suite) + ".", ""]
    cons = results.get("consistency")
    if cons:
        lines += ["## Look away and back", ""]
        if "skipped" in cons:
            lines += [f"Skipped: {cons['skipped']}", ""]
        else:
            lines += [f"Action {cons['loop']['away']} for n latent steps, then {cons['loop']['back']} for n; PSNR (dB) / "
                      "SSIM of the frame on return. The memoryless reference is the mean of the other seeds' real returns: "
                      "a simulator that forgot everything and drew the typical view would score that.", ""]
            lines += consistency_table(cons) + [""]
    mc = results.get("minecraft", {})
    lines += ["## Minecraft", ""]
    for key, v in mc.items():
        if "skipped" in v:
            lines.append(f"- {key}: skipped. {v['skipped']}")
        else:
            for s, r in v["schemes"].items():
                lines.append(f"- {key}, {s}: PSNR " + ", ".join(f"h={h}: {p['mean']:.2f}" for h, p in zip(r["horizons"], r["psnr"])))
    lines.append("")
    if results.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {k}: {v}" for k, v in results["skipped"].items()] + [""]
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in results.get("plots", [])] + [""]
    if results.get("videos"):
        lines += ["## Videos (context, then real | simulated)", ""] + [f"- [{Path(v).name}]({v})" for v in results["videos"]] + [""]
    lines.append(f"Took {results.get('seconds', 0):.1f} s.")
    return "\n".join(lines) + "\n"
