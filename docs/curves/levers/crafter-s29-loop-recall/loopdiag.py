"""Per-seed look away 4 and back: real displacement, sim vs before, sim vs real return."""
import sys, json, numpy as np
from worldsim.eval.simulated import SimRunner
from worldsim.eval.paired import paired_rollouts
from worldsim.eval.consistency import Loop, return_scores
from worldsim.sim.config import SimConfig
exp, first, steps, w, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
extra = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
cfg = SimConfig(context="autoregressive", context_frames=4, context_budget=budget, sampling_steps=steps, guidance_scale=w, **extra)
runner = SimRunner(exp, cfg, num_envs=8)
seeds = list(range(first, first + 16))
n = 4
p = paired_rollouts("crafter", seeds, 2 * n, runner=runner, size=72, actions=Loop(n, 1, 2).actions(), replace_short=True)
rows = []
for i, ep in enumerate(p.episodes):
    pos = np.asarray(ep.state["player_pos"])
    c = p.context
    before = ep.frames[c - 1]
    left = pos[c - 1 + 2 * n * 1][0] - pos[c - 1][0]
    ret = pos[-1][0] - pos[c - 1][0]
    a = return_scores(before[None], p.real[i, -1][None])["psnr"][0]
    b = return_scores(p.real[i, -1][None], p.sim[i, -1][None])["psnr"][0]
    s = return_scores(before[None], p.sim[i, -1][None])["psnr"][0]
    rows.append((p.seeds[i], int(left), int(ret), a, s, b))
    print(f"{p.seeds[i]} left {left:+d} end {ret:+d} real_vs_before {a:6.2f} sim_vs_before {s:6.2f} sim_vs_real {b:6.2f}")
r = np.array([x[3:] for x in rows])
print("mean", r.mean(0).round(2))
moved = [x for x in rows if x[1] != 0]
print("seeds where real moved away:", len(moved), "sim_vs_real mean", np.mean([x[5] for x in moved]).round(2) if moved else None,
      "| stayed:", np.mean([x[5] for x in rows if x[1] == 0]).round(2))
