"""Real against simulated probe-world episodes as one image, and what the probe detector saw in each frame.

    python scripts/probe_strip.py EXPORT OUT.png [--families permanence,random] [--seeds 2] [--first-seed 100000]
                                  [--sampling-steps 1]

For each family and scenario seed (held out: `worldsim eval`'s probe seeds) the real world is rolled with the
family's scripted agent and the simulator is given the same context and actions (`worldsim.eval.probe_suite`,
autoregressive, budget 8). The image has two rows per episode, real above simulated, from the last context frame
on. The console lists per generated frame which balls must be seen (fully visible), which are hidden, which the
detector found and their matching pixels: how a ball is lost (faded, merged, stuck at an occluder's edge).
"""

import argparse

import numpy as np
from PIL import Image

from worldsim.eval.probe_suite import PROBE_FAMILIES, ProbeSuiteConfig, real_probe_episodes
from worldsim.eval.probes import ProbeScoreConfig, detect_balls, fully_visible
from worldsim.eval.simulated import SimRunner
from worldsim.sim.config import SimConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("out")
    parser.add_argument("--families", default="permanence,random", help=f"comma-separated, of {', '.join(PROBE_FAMILIES)}")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=100_000)
    parser.add_argument("--sampling-steps", type=int, default=1)
    parser.add_argument("--steps", type=int, default=16, help="latent steps generated")
    args = parser.parse_args()
    families = tuple(args.families.split(","))
    unknown = sorted(set(families) - set(PROBE_FAMILIES))
    if unknown:
        parser.error(f"unknown probe families {unknown}; known: {', '.join(PROBE_FAMILIES)}")
    runner = SimRunner(args.export, SimConfig(context="autoregressive", context_budget=8,
                                              sampling_steps=args.sampling_steps), num_envs=8)
    k, context = runner.k, runner.context_rows
    cfg = ProbeSuiteConfig(families=families, seeds=args.seeds, first_seed=args.first_seed,
                           steps=context - 1 + args.steps * k, size=runner.frame_size[0], context=context, hold=k)
    episodes = real_probe_episodes(cfg)
    sim = runner.rollout([e.episode.frames[:context] for e in episodes], [e.episode.actions[:context - 1] for e in episodes],
                         [[e.episode.actions[context - 1 + j * k] for j in range(args.steps)] for e in episodes])
    score, rows = ProbeScoreConfig(), []
    for e, generated in zip(episodes, sim):
        real, state = e.episode.frames, e.episode.state
        frames = np.concatenate([real[:context], generated])
        det, must = detect_balls(frames, state, score), fully_visible(state, score)
        hidden = np.asarray(state["visible"])[:, np.asarray(state["present"][0], bool)] <= 0
        print(f"{e.family} seed {e.seed}: balls must be seen / hidden / seen (matching pixels) per frame")
        for t in range(context, len(frames)):
            print(f"  frame {t:2d}: {must[t].astype(int)} / {hidden[t].astype(int)} / {det.seen[t].astype(int)} "
                  f"({det.pixels[t]})")
        rows += [np.concatenate(list(real[context - 1:]), axis=1), np.concatenate(list(frames[context - 1:]), axis=1)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out}: real above simulated, {len(episodes)} episodes")


if __name__ == "__main__":
    main()
