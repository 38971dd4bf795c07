"""Where a simulator stops showing its actions: python scripts/idm_by_horizon.py CHECKPOINT [--world W] [--first-seed S] [--out F]

The evaluation's inverse-dynamics judge (trained on real random play, as `worldsim eval` trains it) reads the
actions (Crafter: the four moves) from frame pairs at every position of paired real / simulated rollouts, and from
the autoencoder's reconstructions of the real frames. Each latent step decodes two frames: the first pair of a step
crosses from the frame before it, the second stays inside the latent. Printed per latent step and per episode (which
episodes the simulator loses its actions in); the means and the tables as JSON.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from worldsim import envs
from worldsim.eval.idm import IDMConfig, frame_pairs, idm_accuracy, random_play_pairs, train_idm
from worldsim.eval.paired import paired_rollouts
from worldsim.eval.run import VISIBLE_ACTIONS, idm_frames
from worldsim.eval.simulated import SimRunner
from worldsim.export import load_export
from worldsim.frames import frames_to_float, frames_to_uint8
from worldsim.sim.config import SimConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--world", default="crafter", choices=("crafter", "probe"))
    ap.add_argument("--first-seed", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16, help="latent steps rolled after the context")
    ap.add_argument("--idm-episodes", type=int, default=48)
    ap.add_argument("--idm-steps", type=int, default=600)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--sampling-steps", type=int, default=1)
    ap.add_argument("--out", default="bench_results/idm_by_horizon.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runner = SimRunner(args.checkpoint, SimConfig(context="autoregressive", context_budget=args.budget,
                                                  sampling_steps=args.sampling_steps), num_envs=8)
    size = runner.frame_size[0]
    p = paired_rollouts(args.world, list(range(args.first_seed, args.first_seed + args.seeds)), args.steps,
                        runner=runner, size=size, replace_short=True)
    env = envs.make_real_env(args.world, size=size)
    try:
        pairs, actions = random_play_pairs(env, args.idm_episodes, idm_frames(args.steps, p.k), p.k)
    finally:
        env.close()
    judge = train_idm(pairs, actions, int(env.action_space.n), IDMConfig(steps=args.idm_steps))
    ae = load_export(args.checkpoint)[0]["autoencoder"]
    whole = np.stack([ep.frames[:p.context + p.real.shape[1]] for ep in p.episodes])
    with torch.no_grad():
        recon = frames_to_uint8(ae.decode(ae.encode(frames_to_float(torch.from_numpy(whole))).mean)).numpy()
    before = np.stack([ep.frames[p.context - 1] for ep in p.episodes])[:, None]
    labels = np.array([[a for a in acts for _ in range(p.k)] for acts in p.actions])
    only = VISIBLE_ACTIONS.get(args.world)  # None: every action counts
    table, episodes = {}, {}
    for name, frames in (("real", p.real), ("reconstructed", recon[:, p.context:]), ("simulated", p.sim)):
        frames = np.concatenate([before, frames], 1)
        table[name] = [idm_accuracy(judge, *frame_pairs(frames[:, t:t + 2], labels[:, t:t + 1]), only=only)
                       for t in range(labels.shape[1])]
        episodes[name] = [idm_accuracy(judge, *frame_pairs(frames[e:e + 1], labels[e:e + 1]), only=only)
                          for e in range(len(frames))]
    k = p.k
    read = "moves" if only else "actions"
    print(f"{read} read per episode (seed: " + " / ".join(episodes) + ")")
    for e, seed in enumerate(p.seeds):
        print(f"{seed}: " + " / ".join(f"{episodes[n][e]:.2f}" for n in episodes))
    print(f"{read} read per latent step (frame pairs 1..{k} of the step): " + "   ".join(table))
    for j in range(args.steps):
        print(f"{j + 1:3d}  " + "   ".join("/".join(f"{table[n][k * j + i]:.2f}" for i in range(k)) for n in table))
    means = {n: {"all": float(np.nanmean(v)), **{f"pair_{i + 1}": float(np.nanmean(v[i::k])) for i in range(k)},
                 "first_4_steps": float(np.nanmean(v[:4 * k])), "after_4_steps": float(np.nanmean(v[4 * k:]))}
             for n, v in table.items()}
    for n, m in means.items():
        print(f"{n}: " + ", ".join(f"{key} {val:.3f}" for key, val in m.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "seeds": p.seeds, "k": k, "world": args.world,
                                          "means": means,
                                          "per_episode": {n: [None if np.isnan(x) else x for x in v] for n, v in episodes.items()},
                                          "per_pair": {n: [None if np.isnan(x) else x for x in v] for n, v in table.items()}}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
