import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from tiny_world_model import make_export

ROOT = Path(__file__).resolve().parents[2]


def test_weight_soup_writes_the_mean_dit_with_the_first_autoencoder(tmp_path):
    a, b = make_export(tmp_path / "a", seed=0), make_export(tmp_path / "b", seed=1)
    run = subprocess.run([sys.executable, "scripts/weight_soup.py", str(tmp_path / "soup"), str(a), str(b)],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    soup, wa, wb = (load_file(str(f / "dit.safetensors")) for f in (tmp_path / "soup", a, b))
    differs = [k for k in wa if wa[k].is_floating_point() and not (wa[k] == wb[k]).all()]
    assert differs  # two seeds: the average is not either of them
    for k in differs:
        assert ((soup[k].float() - (wa[k].float() + wb[k].float()) / 2).abs() < 1e-6).all(), k
    assert (tmp_path / "soup" / "autoencoder.safetensors").read_bytes() == (a / "autoencoder.safetensors").read_bytes()
    from worldsim.export import load_export

    load_export(tmp_path / "soup")  # a complete, consistent export
    alone = subprocess.run([sys.executable, "scripts/weight_soup.py", str(tmp_path / "x"), str(a)], cwd=ROOT,
                           capture_output=True, text=True)
    assert alone.returncode != 0 and "at least two exports" in alone.stderr


def test_scroll_diagnosis_reads_whole_tile_shifts():
    """scripts/scroll_diagnosis.py's classifier: a latent rolled by 2 latent pixels (one Crafter tile) in the move's
    direction reads as 1 tile, by 4 as 2, unmoved as 0, in each move's direction."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("scroll_diagnosis", ROOT / "scripts" / "scroll_diagnosis.py")
    diag = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diag)
    previous = torch.randn(8, 18, 18, generator=torch.Generator().manual_seed(0))
    for direction in diag.DIRECTIONS.values():
        for tiles in range(3):
            moved = torch.roll(previous, (2 * tiles * direction[0], 2 * tiles * direction[1]), dims=(-2, -1))
            assert diag.tiles_moved(previous, moved, direction) == tiles
