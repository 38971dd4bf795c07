"""Can whether a Crafter move succeeds be read from the cached latents? A diagnosis for the DiT's action following.

For every latent frame whose two actions include a move, a small convolutional net sees the previous latent frame
(what the DiT has as context) and both actions, and predicts whether the player's cell (`state/player_pos`)
changes over the frame. Its accuracy on held-out episodes, against always guessing the commoner answer, bounds
how well a DiT could know from its context whether to scroll the view.

    python scripts/move_success_probe.py --store runs/pretrained/crafter72.zarr --vae worldsim/pretrained/crafter
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MOVES = (1, 2, 3, 4)  # Crafter's move_left, move_right, move_up, move_down


def examples(store_path: str, cache) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(previous latent frame index, the frame's k actions, moved 0/1, episode) for latent frames with a move."""
    from worldsim.data.store import EpisodeStore

    store = EpisodeStore.open(store_path, "r")
    try:
        if "player_pos" not in store.layout.state_spec:
            raise SystemExit(f"{store_path} records no state/player_pos: it is not a Crafter store from `worldsim collect`")
        rows = store.read_rows(["action", "state/player_pos"], 0, store.num_frames)
    finally:
        store.close()
    act, pos, k = rows["action"].reshape(len(rows["action"]), -1)[:, 0], rows["state/player_pos"], cache.k
    begins = np.concatenate([[0], cache.episode_ends[:-1]])
    prev, acts, moved, episode = [], [], [], []
    for e in range(cache.episodes):
        r0 = int(cache.row_starts[e])
        for i in range(1, int(cache.episode_ends[e] - begins[e])):  # latent frame i ends at row r0 + i k
            a = act[r0 + (i - 1) * k + 1:r0 + i * k + 1]
            if np.isin(a, MOVES).any():
                prev.append(begins[e] + i - 1)
                acts.append(a)
                moved.append(float((pos[r0 + i * k] != pos[r0 + (i - 1) * k]).any()))
                episode.append(e)
    return np.array(prev), np.array(acts), np.array(moved, np.float32), np.array(episode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--vae", required=True, help="the export whose latent cache to read (an autoencoder or DiT export)")
    ap.add_argument("--holdout", type=int, default=20, help="the store's last N episodes are held out")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    from worldsim.export import load_export
    from worldsim.train.latent_cache import open_cache

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cache = open_cache(args.store, load_export(args.vae)[0]["autoencoder"])
    if cache is None:
        raise SystemExit(f"no latent cache of {args.vae} in {args.store}: train a DiT on it once (or scripts/bench_latent_cache.py)")
    prev, acts, moved, episode = examples(args.store, cache)
    held = episode >= cache.episodes - args.holdout
    lat = torch.from_numpy(np.asarray(cache.latents[prev], np.float32))
    onehot = F.one_hot(torch.from_numpy(acts.astype(np.int64)), 17).float().flatten(1)
    y = torch.from_numpy(moved)
    net = nn.Sequential(nn.Conv2d(lat.shape[1] + onehot.shape[1], 64, 3, padding=1), nn.SiLU(),
                        nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.SiLU(), nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1))
    opt = torch.optim.AdamW(net.parameters(), 1e-3)

    def logits(ix: np.ndarray) -> torch.Tensor:
        x = lat[ix]
        return net(torch.cat([x, onehot[ix][:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)).squeeze(1)

    train, test = np.flatnonzero(~held), np.flatnonzero(held)
    base = float(max(y[test].mean(), 1 - y[test].mean()))
    print(f"{len(y)} latent frames with a move ({held.sum()} held out), moved {y.mean():.2f}; "
          f"guessing the commoner answer scores {base:.3f} held out", flush=True)
    curve, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        b = rng.choice(train, 128)
        loss = F.binary_cross_entropy_with_logits(logits(b), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == args.steps:
            with torch.no_grad():
                acc = float(torch.cat([logits(test[i:i + 512]) for i in range(0, len(test), 512)]).gt(0).float()
                            .eq(y[test]).float().mean())
            curve.append({"step": step, "held_out_accuracy": round(acc, 4), "cpu_s": round(time.time() - t0, 1)})
            print(f"step {step}: held-out accuracy {acc:.3f}", flush=True)
    result = {"store": args.store, "vae": args.vae, "examples": int(len(y)), "held_out": int(held.sum()),
              "moved_share": round(float(y.mean()), 4), "held_out_base": round(base, 4), "curve": curve}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
