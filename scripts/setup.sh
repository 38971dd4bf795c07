#!/usr/bin/env bash
# Sets up .venv with everything worldsim needs. torch==2.13.0 goes first: on these machines that spec
# takes a local CPU wheel, while any looser spec would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[crafter,deepspeed,dev,sb3,torchrl]"
echo "worldsim set up in $(pwd)/.venv"
