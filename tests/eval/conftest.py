"""Fixtures of the evaluation tests: a tiny DiT export (random weights, 16x16, Discrete(5), k = 2)."""

from __future__ import annotations

import pytest
from tiny_world_model import make_export


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("export"), perturb=False)  # episodes never end
