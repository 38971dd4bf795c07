"""The package's layers import one way: a new back-edge fails here, with the file and line that made it.

Every import counts, the ones inside functions too (they break the layering just the same; they only
hide it from import time).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "worldsim"

# module prefix -> what it must never import. The base (models, diffusion, data, export, context, and
# the small shared modules) sits below training and simulation, which sit side by side below
# evaluation, which sits below the command line.
BASE = ("worldsim.models", "worldsim.diffusion", "worldsim.data", "worldsim.export", "worldsim.context",
        "worldsim.spaces", "worldsim.frames", "worldsim.hardware", "worldsim.metrics", "worldsim.video", "worldsim.config")
ABOVE_BASE = ("worldsim.train", "worldsim.sim", "worldsim.eval", "worldsim.cli", "worldsim.demo", "worldsim.imagine", "hydra")
RULES = {
    **{prefix: ABOVE_BASE for prefix in BASE},
    "worldsim.train": ("worldsim.sim", "worldsim.cli", "worldsim.demo", "worldsim.imagine", "hydra"),
    "worldsim.sim": ("worldsim.train", "worldsim.eval", "worldsim.cli", "worldsim.demo", "worldsim.imagine", "hydra"),
    "worldsim.eval": ("worldsim.cli", "worldsim.demo", "worldsim.imagine", "hydra"),
    "worldsim.envs": ("worldsim.train", "worldsim.sim", "worldsim.eval", "worldsim.cli", "worldsim.demo", "worldsim.imagine", "hydra"),
}
# The one sanctioned edge upward: validation scores probe-world reconstructions with the probe
# detector, a leaf module that imports only numpy, the probe world's renderer and its box size.
ALLOWED = {("worldsim.train.validation", "worldsim.eval.probes")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out += [(node.lineno, f"{base}.{alias.name}" if base == "worldsim" else base) for alias in node.names]
    return out


def _files() -> list[Path]:
    # the links worldsim/envs -> ../envs and worldsim/agents -> ../agents are followed like installed packages
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def back_edges() -> list[str]:
    found = []
    for path in _files():
        module = _module_name(path)
        rules = [banned for prefix, banned in RULES.items() if module == prefix or module.startswith(prefix + ".")]
        for lineno, imported in _imports(path):
            for banned in (b for r in rules for b in r):
                if (imported == banned or imported.startswith(banned + ".")) and (module, imported) not in ALLOWED:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: {module} imports {imported}")
    return found


def test_no_back_edges():
    assert back_edges() == []


def test_the_scan_sees_function_local_imports(tmp_path, monkeypatch):
    """The check itself can fail: a function-local upward import is caught."""
    bad = PACKAGE / "models" / "_layer_probe_tmp.py"
    bad.write_text("def f():\n    from worldsim.train.trainer import Trainer\n    return Trainer\n")
    try:
        assert any("_layer_probe_tmp.py:2: worldsim.models._layer_probe_tmp imports worldsim.train.trainer" in e
                   for e in back_edges())
    finally:
        bad.unlink()


@pytest.mark.parametrize("module,other", [("worldsim.sim", "worldsim.train"), ("worldsim.train", "worldsim.sim")])
def test_importing_one_side_loads_nothing_of_the_other(module, other):
    code = (f"import sys, {module}, {module}.{'simulator' if module.endswith('sim') else 'trainer'}; "
            f"print([m for m in sys.modules if m == '{other}' or m.startswith('{other}.') or m.startswith('hydra')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
