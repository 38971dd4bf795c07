"""Look away 4 and back with the walk away given: the simulator's context is the real frames up to the turn (4 context
latents + the 4 latents of the walk away, 15 real frames), then it draws the 4 latents back. Against the fully generated
loop, this tells forgetting (recall from real frames fails too) from drift (the frames it drew on the way away were wrong)."""
import sys, json, numpy as np
from worldsim.eval.simulated import SimRunner
from worldsim.eval.paired import paired_rollouts
from worldsim.eval.consistency import Loop, return_scores
from worldsim.sim.config import SimConfig
exp, first, steps, w, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
n, k = 4, 2
seeds = list(range(first, first + 16))
real = paired_rollouts("crafter", seeds, 2 * n, runner=None, k=k, context=7, size=72, actions=Loop(n, 1, 2).actions(),
                       replace_short=True)
runner = SimRunner(exp, SimConfig(context="autoregressive", context_frames=4 + n, context_budget=budget,
                                  sampling_steps=steps, guidance_scale=w), num_envs=8)
assert runner.context_rows == 7 + n * k
sim = runner.rollout([ep.frames[:runner.context_rows] for ep in real.episodes],
                     [list(ep.actions[:runner.context_rows - 1]) for ep in real.episodes], [[2] * n for _ in real.episodes])
back = np.stack([ep.frames[-1] for ep in real.episodes])
before = np.stack([ep.frames[6] for ep in real.episodes])
s = return_scores(back, sim[:, -1])["psnr"]
b = return_scores(before, sim[:, -1])["psnr"]
print("seeds", real.seeds)
print("sim return vs real return per seed", [round(x, 1) for x in s])
print(f"mean: sim return vs real return {np.mean(s):.2f}; sim return vs before {np.mean(b):.2f}; "
      f"real return vs before {np.mean(return_scores(before, back)['psnr']):.2f}")
