"""scripts/grow_depth.py (worldsim.train.warm_start.stacked / grow_depth): a trained DiT made deeper near its function."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from worldsim.export import load_export
from worldsim.models.dit import DiT
from worldsim.train.warm_start import grow_depth, stacked

from tiny_world_model import make_export, tiny_models

ROOT = Path(__file__).resolve().parents[2]


def _prediction(dit, x, t, a):
    with torch.no_grad():
        return dit(x, t, actions=a).prediction


def test_stacked_blocks_halve_their_gates_and_stay_close_to_the_trained_dit():
    _, dit = tiny_models(seed=3)
    with torch.no_grad():  # gates of a trained size (0.05 after tiny_models' nudge is too small to tell anything)
        for block in dit.blocks:
            block.adaLN_modulation[-1].bias.add_(0.3)
    depth = dit.config.depth
    deeper = stacked(dit, list(range(depth)))
    assert deeper.config.depth == 2 * depth and len(deeper.blocks) == 2 * depth
    naive = DiT(deeper.config)  # the same copies with the gates kept whole
    naive.load_state_dict({**{n: w for n, w in dit.state_dict().items() if not n.startswith("blocks.")},
                           **{f"blocks.{2 * i + j}.{n}": w for i, b in enumerate(dit.blocks) for j in range(2)
                              for n, w in b.state_dict().items()}})
    torch.manual_seed(0)
    x, t = torch.randn(2, 3, dit.config.latent_channels, 4, 4), torch.rand(2, 3)
    a = torch.randint(0, 5, (2, 3, 2, 1))
    ref = _prediction(dit, x, t, a)
    off_stacked = (_prediction(deeper, x, t, a) - ref).norm() / ref.norm()
    off_naive = (_prediction(naive, x, t, a) - ref).norm() / ref.norm()
    assert off_stacked < 0.35 * off_naive, (off_stacked, off_naive)
    gate = slice(2 * dit.config.dim, 3 * dit.config.dim)
    assert torch.allclose(deeper.blocks[1].adaLN_modulation[-1].bias[gate], 0.5 * dit.blocks[0].adaLN_modulation[-1].bias[gate])


def test_grow_depth_writes_a_deeper_export_and_refuses_bad_blocks(tmp_path):
    export = make_export(tmp_path / "dit")
    depth = load_export(export)[0]["dit"].config.depth
    run = subprocess.run([sys.executable, "scripts/grow_depth.py", str(export), str(tmp_path / "out"), str(depth - 1)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    models, meta = load_export(tmp_path / "out")
    assert models["dit"].config.depth == depth + 1
    assert meta["depth_grown"] == {"from": str(export), "duplicated_blocks": [depth - 1], "depth": depth + 1}
    with pytest.raises(ValueError, match="distinct blocks"):
        grow_depth(export, tmp_path / "a", [depth])
    run = subprocess.run([sys.executable, "scripts/grow_depth.py", str(export), str(tmp_path / "b"), "0", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "grow_depth: duplicate must name distinct blocks" in run.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
