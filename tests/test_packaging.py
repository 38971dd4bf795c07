"""A non-editable install (a wheel) is complete: the CLI finds its configs, worlds and agents from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, unpacked into a folder of its own (dependencies from this venv)."""
    wheels, target = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("site")
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' in-tree build folder: stale files would ship
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(wheels), str(REPO)], capture_output=True, text=True)
    if build.returncode != 0 and "No module named pip" in build.stderr:
        pytest.skip("pip is not available in this interpreter")
    shutil.rmtree(REPO / "build", ignore_errors=True)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("worldsim-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "worldsim/conf/collect.yaml" in names and "worldsim/conf/env/probe.yaml" in names
        assert "worldsim/envs/probe/env.py" in names and "worldsim/agents/random.py" in names
        assert not any(n.startswith(("envs/", "agents/", "conf/")) for n in names)  # nothing top-level but worldsim
        z.extractall(target)
    return target


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_the_installed_cli_works_from_any_folder(installed, tmp_path):
    where = _run(installed, tmp_path, "-c", "import worldsim; print(worldsim.__file__)")
    assert where.returncode == 0 and where.stdout.strip().startswith(str(installed)), where.stderr[-2000:]
    out = _run(installed, tmp_path, "-m", "worldsim.cli", "collect", "env=probe", "episodes=1", "out=probe.zarr",
               "env.max_episode_steps=5", "progress=false")
    assert out.returncode == 0 and "wrote 1 episodes" in out.stdout, out.stderr[-2000:]
    helped = _run(installed, tmp_path, "-m", "worldsim.cli", "train", "--help")
    assert helped.returncode == 0 and "batch_size" in helped.stdout and "Traceback" not in helped.stderr
    # configs list real choices only: the env group offers worlds, not schemas
    bad = _run(installed, tmp_path, "-m", "worldsim.cli", "collect", "env=atari", "out=x.zarr")
    assert bad.returncode == 2 and "env_schema" not in bad.stderr and "crafter" in bad.stderr, bad.stderr
