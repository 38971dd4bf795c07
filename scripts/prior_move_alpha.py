"""Does Crafter's conv prior commit to a move? On held-out windows whose action is a move, how far its guess goes
from copying the previous latent (0) towards the true next latent (1), split by whether the player truly moved.

    python scripts/prior_move_alpha.py DIT_EXPORT CRAFTER_STORE

alpha = <guess - previous, next - previous> / |next - previous|^2 per window; quantiles 10/25/50/75/90%. Session 16
(`docs/bench/crafter_prior_move_alpha.txt`): moves that succeed median 0.73, blocked moves 0.24: the regression
hedges where it is unsure whether the move succeeds. A committed prior (more than one head) also gets each
head's quantiles and how often the choice falls on it. Session 17 added the ceiling: the alpha of a guess exact
everywhere but in the band of tiles the move brings into view (median 0.88): the prior's 0.73 is 0.15 short of it.
"""

import sys

import numpy as np
import torch
import zarr

from worldsim.export import load_export
from worldsim.train.latent_cache import LatentWindowDataset, open_cache
from worldsim.train.validation import holdout_episodes

MOVES = [1, 2, 3, 4]  # Crafter's move_left, move_right, move_up, move_down


def revealed_band(action: int, size: tuple[int, int], tile: int = 2, world_rows: int = 14) -> torch.Tensor:
    """(h, w) bool: the latent pixels a successful move brings into view, which no earlier frame shows (72 x 72
    frames: 18 x 18 latents, a tile is 2 latent pixels; the world fills the top 14 latent rows, the inventory the rest)."""
    band = torch.zeros(size, dtype=torch.bool)
    if action == 1:
        band[:world_rows, :tile] = True  # move_left: a column enters on the left
    elif action == 2:
        band[:world_rows, -tile:] = True
    elif action == 3:
        band[:tile] = True  # move_up: a row enters at the top
    else:
        band[world_rows - tile:world_rows] = True  # move_down: at the bottom of the world, above the inventory
    return band


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[3].strip())
    export, store = sys.argv[1:]
    models, _ = load_export(export)
    dit = models["dit"]
    cache = open_cache(store, models["autoencoder"])
    if dit.prior is None or cache is None:
        sys.exit("prior_move_alpha: needs a DiT with a conv prior and the store's latent cache of its autoencoder")
    latents = torch.from_numpy(np.asarray(cache.latents[:], np.float32))
    data = LatentWindowDataset(cache, store, frames=3, episodes=holdout_episodes(cache.episodes, None))
    first = torch.from_numpy(data.starts)
    with torch.no_grad():
        cond = dit.action_encoder(data.action[first + 2][:, None], data.action_mask[first + 2][:, None])
        guess = dit.prior(latents[first + 1][:, None], latents[first][:, None], cond)[:, 0]
        guesses, logits = dit.prior.hypotheses(latents[first + 1][:, None], latents[first][:, None], cond)
    prev, nxt = latents[first + 1], latents[first + 2]

    def alpha_of(g: torch.Tensor) -> torch.Tensor:
        delta, moved_by = (nxt - prev).flatten(1), (g - prev).flatten(1)
        return (moved_by * delta).sum(1) / delta.pow(2).sum(1).clamp_min(1e-6)

    alpha = alpha_of(guess)
    heads = [alpha_of(guesses[:, 0, h]) for h in range(guesses.shape[2])] if logits is not None else []
    chosen = logits[:, 0].argmax(-1) if logits is not None else None
    k = cache.k

    def row(latent: int) -> int:  # the store row of a latent frame's last real frame
        e = int(np.searchsorted(cache.episode_ends, latent, side="right"))
        return int(cache.row_starts[e]) + k * (latent - (int(cache.episode_ends[e - 1]) if e else 0))

    pos = np.asarray(zarr.open(f"{store}/data/state/player_pos", mode="r")[:])
    moved = np.array([np.any(pos[row(int(i) + 1)] != pos[row(int(i) + 2)]) for i in first])
    is_move = np.isin(data.action[first + 2].reshape(len(first), -1)[:, 0].long().numpy(), MOVES)
    act = data.action[first + 2].reshape(len(first), -1)[:, 0].long().numpy()
    delta = nxt - prev
    ceiling = [1 - float(delta[i][:, revealed_band(int(act[i]), delta.shape[-2:])].pow(2).sum()
                         / delta[i].pow(2).sum().clamp_min(1e-6)) for i in np.flatnonzero(is_move & moved)]
    print(f"move, moved: alpha of a guess exact but in the band the move reveals: quantiles "
          f"{[round(float(x), 2) for x in np.quantile(ceiling, [0.1, 0.25, 0.5, 0.75, 0.9])]}")
    for name, sel in (("move, moved", is_move & moved), ("move, blocked", is_move & ~moved), ("other, still", ~is_move & ~moved)):
        q = torch.quantile(alpha[torch.from_numpy(sel)], torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
        print(f"{name}: n={int(sel.sum())} alpha quantiles {[round(float(x), 2) for x in q]}")
        for h, a in enumerate(heads):  # a committed prior (ConvPrior heads): each head, and how often it is chosen
            q = torch.quantile(a[torch.from_numpy(sel)], torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
            print(f"  head {h}: chosen {float((chosen[torch.from_numpy(sel)] == h).float().mean()):.0%}, "
                  f"alpha quantiles {[round(float(x), 2) for x in q]}")


if __name__ == "__main__":
    main()
