#!/usr/bin/env bash
# Sets up .venv with everything worldsim needs. torch==2.13.0 goes first: on these machines that spec
# takes a local CPU wheel, while any looser spec would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[crafter,deepspeed,dev,minetest,sb3,torchrl]"
# The Minetest world's game and display (best effort: only as root with apt; its tests skip without them).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    && ! { PATH="$PATH:/usr/games" command -v minetest && command -v Xvfb; } >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq minetest xvfb; } >/dev/null 2>&1 \
        || echo "note: could not apt-get install minetest xvfb; the Minetest world will be unavailable"
fi
echo "worldsim set up in $(pwd)/.venv"
