"""Reward and termination read from frames: a small CNN beside the simulator (DIAMOND's separate model).

The DiT's own heads read the pooled latent tokens of a frame. Where rewards are sparse they learn a
constant: on the probe world's push task (1% of frames pay), after 2,000 steps continued from the
shipped Probes-v0 with a balanced reward loss, their prediction correlated 0.04 with the real reward
on held-out episodes, and an agent trained in imagination on it scored 0 of 50 in the real world.
What pays there is visible in the frame (the target ball resting over the green zone), so a CNN that
sees the transition (the previous and the new frame, 6 channels) can learn it from the store's real
transitions directly.

Training (`train_frame_heads`) draws half of every batch from the rare transitions (a reward other
than 0, or a termination) and half from all of them, and corrects the logits for that sampling
afterwards (adds log p_c - log q_c, the true class prior over the sampled one: the logit adjustment of
Menon et al. 2021), so the predicted probabilities match the real rates: a policy trained on them
cannot live on rewards the real world never pays. Rewards are classes (the distinct values in the
store, e.g. {0, 1} or Crafter's {-0.1, 0, 0.1, 1}); the predicted reward is the expected value.

    heads, report = train_frame_heads("runs/push.zarr", steps=600)
    save_frame_heads("reward.safetensors", heads)
    env = WorldModelEnv(export, reward_model="reward.safetensors")   # SimConfig.reward_model
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from worldsim.models.tagged import load_tagged, save_tagged, strided_convs

FORMAT = "worldsim-frame-heads-v1"
MAX_CLASSES = 16  # distinct reward values a store may hold


@dataclass(frozen=True)
class FrameHeadsConfig:
    """Shape of the network (stored with the weights)."""

    reward_values: tuple[float, ...]  # the reward classes, sorted
    channels: tuple[int, ...] = (32, 64, 64)  # conv widths; each conv halves the frame (stride 2)
    hidden: int = 128


class FrameHeads(nn.Module):
    """(previous frame, new frame) -> reward class logits and a termination logit, prior-corrected."""

    def __init__(self, cfg: FrameHeadsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers, c_in = strided_convs(6, cfg.channels)  # previous and new frame stacked
        # max-pool: a small object anywhere in the frame (a ball over the zone) must survive the pooling
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c_in, cfg.hidden), nn.SiLU()]
        self.torso = nn.Sequential(*layers)
        self.reward = nn.Linear(cfg.hidden, len(cfg.reward_values))
        self.termination = nn.Linear(cfg.hidden, 1)
        self.register_buffer("values", torch.tensor(cfg.reward_values, dtype=torch.float32))
        # added to the logits at prediction: log true prior - log sampling prior (zeros until trained)
        self.register_buffer("reward_adjust", torch.zeros(len(cfg.reward_values)))
        self.register_buffer("termination_adjust", torch.zeros(()))

    def forward(self, previous: Tensor, new: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (N, H, W, 3) each -> reward logits (N, C), termination logit (N,), as trained (not corrected)."""
        if previous.shape != new.shape or new.ndim != 4 or new.shape[-1] != 3:
            raise ValueError(f"expected two batches of frames (N, H, W, 3), got {tuple(previous.shape)} and {tuple(new.shape)}")
        x = rearrange(torch.cat([previous, new], dim=-1).float() / 255.0, "n h w c -> n c h w")
        h = self.torso(x)
        return self.reward(h), self.termination(h).squeeze(-1)

    @torch.no_grad()
    def predict(self, previous: Tensor, new: Tensor) -> tuple[Tensor, Tensor]:
        """Expected reward (N,) and termination probability (N,) of the transitions, at the real rates."""
        reward_logits, term_logit = self(previous, new)
        probs = torch.softmax(reward_logits + self.reward_adjust, dim=-1)
        return probs @ self.values, torch.sigmoid(term_logit + self.termination_adjust)


def save_frame_heads(path: str | os.PathLike, net: FrameHeads, extra: dict[str, Any] | None = None) -> None:
    """Weights as safetensors, the config (and JSON-able `extra`, e.g. the held-out report) in the metadata."""
    save_tagged(path, net, FORMAT, asdict(net.cfg), extra)


def load_frame_heads(path: str | os.PathLike) -> tuple[FrameHeads, dict[str, Any]]:
    """Read weights written by `save_frame_heads`: (net in eval mode, extra). ValueError for another file."""
    def build(raw: dict[str, Any]) -> FrameHeads:
        return FrameHeads(FrameHeadsConfig(**{**raw, "reward_values": tuple(raw["reward_values"]),
                                              "channels": tuple(raw["channels"])}))

    return load_tagged(path, FORMAT, "a frame reward model", build)


@dataclass
class Transitions:
    """The real transitions of a store: row t with its previous row (same episode)."""

    obs: np.ndarray  # uint8 (N, H, W, 3): every row of the chosen episodes
    rows: np.ndarray  # (M,) rows t > episode start, indexes into obs (obs[t - 1] is the previous frame)
    reward: np.ndarray  # (M,) float32
    terminated: np.ndarray  # (M,) bool


def read_transitions(store: Any, episodes: list[int]) -> Transitions:
    """All transitions of these episodes of an open `EpisodeStore`."""
    obs, rows, reward, term, offset = [], [], [], [], 0
    for i in episodes:
        sl = store.episode_slice(i)
        n = sl.stop - sl.start
        obs.append(store.read("obs", sl.start, sl.stop))
        rows.append(offset + np.arange(1, n))
        reward.append(store.read("reward", sl.start, sl.stop)[1:])
        term.append(store.read("terminated", sl.start, sl.stop)[1:])
        offset += n
    return Transitions(np.concatenate(obs), np.concatenate(rows), np.concatenate(reward).astype(np.float32),
                       np.concatenate(term).astype(bool))


def train_frame_heads(store_path: str | os.PathLike, steps: int = 600, batch_size: int = 64, lr: float = 1e-3,
                      holdout: float = 0.1, seed: int = 0, progress: Callable[[int], None] | None = None,
                      ) -> tuple[FrameHeads, dict[str, Any]]:
    """Train the frame heads on a store's real transitions; the last `holdout` of its episodes are held out.

    Returns (net in eval mode, report): the classes, the sampling and true priors, training time, and
    the held-out calibration (`evaluate_frame_heads`).
    """
    from worldsim.data.store import EpisodeStore

    with EpisodeStore.open(store_path) as store:
        if "reward" not in store.keys():
            raise ValueError(f"{store_path} holds no rewards to learn from")
        n = store.num_episodes
        held = max(1, int(round(n * holdout))) if n > 1 else 0
        train = read_transitions(store, list(range(n - held)))
        test = read_transitions(store, list(range(n - held, n))) if held else None
    if len(train.rows) == 0:
        raise ValueError(f"{store_path}: no transitions to learn from (every episode is one frame)")
    values = np.unique(np.round(train.reward, 6))
    if len(values) > MAX_CLASSES:
        raise ValueError(f"{store_path}: {len(values)} distinct rewards; the frame model learns at most {MAX_CLASSES} classes")
    net = FrameHeads(FrameHeadsConfig(reward_values=tuple(float(v) for v in values)))
    classes = np.searchsorted(values, np.round(train.reward, 6))
    rare = np.flatnonzero((train.reward != 0) | train.terminated)
    # sampling prior of each class / of termination: half the batch from the rare transitions, half from all
    true_prior = np.bincount(classes, minlength=len(values)) / len(classes)
    rare_prior = np.bincount(classes[rare], minlength=len(values)) / max(len(rare), 1) if len(rare) else true_prior
    half = 0.5 if len(rare) else 0.0
    sample_prior = half * rare_prior + (1 - half) * true_prior
    p_term = train.terminated.mean()
    q_term = half * (train.terminated[rare].mean() if len(rare) else 0) + (1 - half) * p_term
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    obs = torch.from_numpy(train.obs)
    start = time.process_time()
    net.train()
    for step in range(steps):
        k = int(round(batch_size * half))
        pick = np.concatenate([gen.choice(rare, k), gen.integers(0, len(train.rows), batch_size - k)])
        t = torch.from_numpy(train.rows[pick])
        reward_logits, term_logit = net(obs[t - 1], obs[t])
        loss = F.cross_entropy(reward_logits, torch.from_numpy(classes[pick])) + \
            F.binary_cross_entropy_with_logits(term_logit, torch.from_numpy(train.terminated[pick]).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1)
    net.eval()
    eps = 1e-6
    net.reward_adjust.copy_(torch.from_numpy(np.log(true_prior + eps) - np.log(sample_prior + eps)).float())
    if 0 < p_term < 1 and 0 < q_term < 1:
        net.termination_adjust.fill_(float(np.log(p_term / (1 - p_term)) - np.log(q_term / (1 - q_term))))
    report = {"reward_values": [float(v) for v in values], "true_prior": true_prior.tolist(),
              "sampling_prior": sample_prior.tolist(), "termination_rate": float(p_term), "steps": steps,
              "batch_size": batch_size, "train_transitions": int(len(train.rows)), "rare_transitions": int(len(rare)),
              "cpu_seconds": time.process_time() - start}
    if test is not None and len(test.rows):
        report["held_out"] = evaluate_frame_heads(net, test)
    return net, report


def evaluate_frame_heads(net: FrameHeads, data: Transitions, batch_size: int = 256) -> dict[str, Any]:
    """Held-out calibration: predicted against real reward (mean per real value, correlation) and the
    termination head's precision and recall at 0.5."""
    obs = torch.from_numpy(data.obs)
    preds, terms = [], []
    for i in range(0, len(data.rows), batch_size):
        t = torch.from_numpy(data.rows[i:i + batch_size])
        r, p = net.predict(obs[t - 1], obs[t])
        preds.append(r.numpy())
        terms.append(p.numpy())
    pred, term = np.concatenate(preds), np.concatenate(terms) > 0.5
    per_value = {f"{v:+g}": {"transitions": int((data.reward == v).sum()), "predicted": float(pred[data.reward == v].mean())}
                 for v in np.unique(data.reward)}
    corr = float(np.corrcoef(pred, data.reward)[0, 1]) if data.reward.std() > 0 and pred.std() > 0 else None
    hits = int((term & data.terminated).sum())
    return {"transitions": int(len(data.rows)), "real_mean": float(data.reward.mean()), "predicted_mean": float(pred.mean()),
            "correlation": corr, "per_value": per_value, "termination_rate": float(data.terminated.mean()),
            "termination_precision": hits / int(term.sum()) if term.any() else None,
            "termination_recall": hits / int(data.terminated.sum()) if data.terminated.any() else None}
