"""Does a DiT's conv prior know its training episodes better than held-out ones (short of data, not of steps)?

    python scripts/prior_fit_gap.py DIT_EXPORT STORE

The prior's guess of the next latent against the true one (mean squared error over 2,048 evenly spread windows) on
the store's training episodes and on its held-out ones (`holdout_episodes`: the split training used), beside copying
the previous latent. Session 16: the probe world's phase-5 prior scored 0.077 on its training episodes against 0.211
held out; Crafter's 0.037 against 0.041.
"""

import sys

import numpy as np
import torch

from worldsim.export import load_export
from worldsim.train.latent_cache import LatentWindowDataset, open_cache
from worldsim.train.validation import holdout_episodes


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    export, store = sys.argv[1:]
    models, _ = load_export(export)
    dit = models.get("dit")
    if dit is None or dit.prior is None:
        sys.exit(f"prior_fit_gap: {export} has no DiT with a conv prior")
    cache = open_cache(store, models["autoencoder"])
    if cache is None:
        sys.exit(f"prior_fit_gap: {store} has no latent cache of this autoencoder (worldsim train builds it)")
    held = holdout_episodes(cache.episodes, None)
    latents = torch.from_numpy(np.asarray(cache.latents[:], np.float32))
    for name, episodes in (("training", [e for e in range(cache.episodes) if e not in set(held)]), ("held-out", held)):
        data = LatentWindowDataset(cache, store, frames=3, episodes=episodes)
        first = torch.from_numpy(data.starts[np.linspace(0, len(data.starts) - 1, min(2048, len(data.starts))).astype(int)])
        with torch.no_grad():
            cond = dit.action_encoder(data.action[first + 2][:, None], data.action_mask[first + 2][:, None])
            guess = dit.prior(latents[first + 1][:, None], latents[first][:, None], cond)[:, 0]
        error = float((guess - latents[first + 2]).pow(2).mean())
        copy = float((latents[first + 1] - latents[first + 2]).pow(2).mean())
        print(f"{name} episodes ({len(episodes)}): prior {error:.4f}, copying the previous latent {copy:.4f}")


if __name__ == "__main__":
    main()
