"""Are the learned reward and termination heads right about the real world?

A policy trained in imagination maximises the reward head, so a head that overestimates one action's
reward tenfold (what sank the first imagination-trained Crafter agent) is found here before an agent
exploits it. The heads are read as the simulator reads them: on clean latent frames of real held-out
episodes, teacher-forced, with the actions that were really taken. Reported against the real summed
reward and termination of each latent frame:

- reward: mean real and predicted, mean squared error, correlation; predicted mean per real value
  (reliability: a calibrated head predicts about the real value in each bin); predicted against real
  mean per action (the per-action bias an agent would exploit);
- termination: real and predicted rate (probability > 0.5), mean probability, precision, recall.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from worldsim.data.store import EpisodeStore
from worldsim.export import load_export
from worldsim.models.latents import latent_actions, latent_rewards, latent_terminated, num_real_frames
from worldsim.train.latent_cache import encode_episode
from worldsim.train.validation import holdout_episodes

WINDOW = 9  # latent frames per teacher-forced forward (the shipped DiTs train on 9); frame 0 of each is context only


@torch.no_grad()
def head_predictions(checkpoint: str | os.PathLike, store_path: str | os.PathLike, episodes: list[int],
                     window: int = WINDOW) -> dict[str, np.ndarray]:
    """Per latent frame of the episodes: real and predicted reward and termination, and the frame's last action.

    Returns float arrays "reward", "reward_pred", "terminated", "termination_prob" and "action" (the
    packed first component of the frame's last sub-step action; -1 where it has none), one entry per
    latent frame that had at least one earlier frame in its window.
    """
    models, meta = load_export(checkpoint)
    ae, dit = models["autoencoder"].eval(), models["dit"].eval()
    if dit.reward_head is None and dit.termination_head is None:
        raise ValueError(f"{checkpoint}: the DiT has neither a reward nor a termination head")
    k = ae.cfg.temporal_factor
    out: dict[str, list[np.ndarray]] = {key: [] for key in ("reward", "reward_pred", "terminated", "termination_prob", "action")}
    with EpisodeStore.open(store_path, "r") as store:
        for e in episodes:
            sl = store.episode_slice(e)
            rows = store.read_rows(["obs", "action", "has_action", "reward", "terminated"], sl.start, sl.stop)
            z = torch.from_numpy(encode_episode(ae, rows["obs"], torch.device("cpu")))  # (T', C, h, w)
            used = num_real_frames(len(z), k)
            one = {key: torch.from_numpy(np.ascontiguousarray(rows[key][:used]))[None]
                   for key in ("action", "has_action", "reward", "terminated")}
            act, mask = latent_actions(one["action"].reshape(1, used, -1).float(), one["has_action"], k)
            reward, term = latent_rewards(one["reward"], k)[0], latent_terminated(one["terminated"], k)[0]
            for s in range(0, max(1, len(z) - 1), window - 1):
                e1 = min(len(z), s + window)
                if e1 - s < 2:
                    break
                pred = dit(z[None, s:e1], torch.zeros(1, e1 - s), act[:, s:e1], mask[:, s:e1])
                if pred.reward is not None:
                    out["reward_pred"].append(pred.reward[0, 1:].float().numpy())
                if pred.termination_logit is not None:
                    out["termination_prob"].append(torch.sigmoid(pred.termination_logit[0, 1:].float()).numpy())
                out["reward"].append(reward[s + 1:e1].numpy())
                out["terminated"].append(term[s + 1:e1].numpy())
                last = act[0, s + 1:e1, -1, 0].numpy()
                out["action"].append(np.where(mask[0, s + 1:e1, -1].numpy(), last, -1))
    return {key: np.concatenate(v).astype(np.float64) if v else np.zeros(0) for key, v in out.items()}


def calibration_report(p: dict[str, np.ndarray], action_names: list[str] | None = None) -> dict[str, Any]:
    """Summary of `head_predictions` (see the module docstring)."""
    report: dict[str, Any] = {"frames": int(len(p["reward"]))}
    if len(p["reward_pred"]):
        real, pred = p["reward"], p["reward_pred"]
        corr = float(np.corrcoef(real, pred)[0, 1]) if real.std() > 0 and pred.std() > 0 else None
        bins = {}
        for value in np.unique(np.round(real, 1)):
            sel = np.round(real, 1) == value
            bins[f"{value:+.1f}"] = {"frames": int(sel.sum()), "predicted": float(pred[sel].mean())}
        actions = {}
        for a in np.unique(p["action"]):
            if a < 0:
                continue
            sel = p["action"] == a
            name = action_names[int(a)] if action_names and int(a) < len(action_names) else str(int(a))
            actions[name] = {"frames": int(sel.sum()), "real": float(real[sel].mean()), "predicted": float(pred[sel].mean())}
        report["reward"] = {"real_mean": float(real.mean()), "predicted_mean": float(pred.mean()),
                            "mse": float(np.mean((pred - real) ** 2)), "correlation": corr,
                            "by_real_value": bins, "by_action": actions}
    if len(p["termination_prob"]):
        real, prob = p["terminated"] > 0.5, p["termination_prob"]
        said = prob > 0.5
        report["termination"] = {
            "real_rate": float(real.mean()), "predicted_rate": float(said.mean()), "mean_probability": float(prob.mean()),
            "precision": float((said & real).sum() / said.sum()) if said.any() else None,
            "recall": float((said & real).sum() / real.sum()) if real.any() else None}
    return report


def calibrate(checkpoint: str | os.PathLike, store_path: str | os.PathLike, episodes: list[int] | None = None,
              action_names: list[str] | None = None) -> dict[str, Any]:
    """Report of the heads on `episodes` of the store; default: the episodes training holds out by default."""
    if episodes is None:
        with EpisodeStore.open(store_path, "r") as store:
            episodes = holdout_episodes(store.num_episodes, None)
    report = calibration_report(head_predictions(checkpoint, store_path, episodes), action_names)
    return {"checkpoint": str(checkpoint), "store": str(store_path), "episodes": list(episodes), **report}
