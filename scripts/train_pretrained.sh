#!/usr/bin/env bash
# Reproduces the pretrained models shipped in worldsim/pretrained/ (crafter, probes), with the project's
# own commands only: worldsim collect -> worldsim train-vae -> worldsim train -> worldsim eval (+ rollout
# for the README strip), then writes each MODEL_CARD.md from what the run left behind.
#
#   bash scripts/train_pretrained.sh [crafter] [probes]     (default: both)
#
# Work happens under runs/pretrained/; the DiT export (it carries its autoencoder) is copied to
# worldsim/pretrained/<name>/, its card and eval results beside it, plots and strips to docs/. The
# sizes below are what the shipped models were trained with on a shared 2-core CPU (no GPU); raise
# them on a bigger machine (VAE_STEPS=..., DIT_STEPS=... in the environment). Stage wall times go
# to <work>/times.txt and into the cards.
set -euo pipefail
cd "$(dirname "$0")/.."
WS=${WORLDSIM:-.venv/bin/worldsim}
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK:-runs/pretrained}
VAE_STEPS=${VAE_STEPS:-300}
DIT_STEPS=${DIT_STEPS:-400}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread per process: steadier on a shared 2-core CPU
export MASTER_PORT=${MASTER_PORT:-29517}      # the one-process DeepSpeed rendezvous; away from the default 29500
mkdir -p "$WORK" docs

timed() {  # timed NAME STAGE command...: run it, append "NAME STAGE SECONDS" to times.txt
  local name=$1 stage=$2; shift 2
  local t0; t0=$(date +%s)
  "$@"
  echo "$name $stage $(( $(date +%s) - t0 ))" >> "$WORK/times.txt"
}

train_world() {  # train_world NAME ENV COLLECT_ARGS...
  local name=$1 env=$2; shift 2
  local store=$WORK/$name.zarr
  [ -d "$store" ] || timed "$name" collect $WS collect env="$env" out="$store" seed=0 progress=false "$@"
  # A finished stage (its export exists) is kept when the script is run again; FRESH=1 redoes it.
  [ "${FRESH:-0}" = 1 ] && rm -rf "$WORK/$name-vae" "$WORK/$name-dit"
  [ -f "$WORK/$name-vae/export/config.json" ] || { rm -rf "$WORK/$name-vae"; timed "$name" train-vae $WS train-vae data="$store" run_dir="$WORK/$name-vae" model=tiny \
    window=5 batch_size=8 steps="$VAE_STEPS" optim.lr=1e-3 optim.warmup_steps=30 ema_decay=0.99 \
    checkpoint_every=100000 video_every=0 tensorboard=false progress=false; }
  [ -f "$WORK/$name-dit/export/config.json" ] || { rm -rf "$WORK/$name-dit"; timed "$name" train $WS train data="$store" vae="$WORK/$name-vae/export" run_dir="$WORK/$name-dit" \
    model=tiny +model_overrides.dim=128 +model_overrides.depth=4 +model_overrides.heads=2 \
    window=17 batch_size=8 steps="$DIT_STEPS" optim.lr=1e-3 optim.warmup_steps=30 ema_decay=0.99 \
    'context.schemes=[autoregressive,long-range,hierarchical]' \
    checkpoint_every=50 keep_checkpoints=1 video_every=0 tensorboard=false; }
  local dest=worldsim/pretrained/$name
  rm -rf "$dest/autoencoder.safetensors" "$dest/dit.safetensors" "$dest/config.json"
  mkdir -p "$dest"
  cp "$WORK/$name-dit/export/"* "$dest/"
}

evaluate() {  # evaluate NAME WORLD: worldsim eval on the shipped export, the card, plots and a strip for the README
  local name=$1 world=$2
  rm -rf "$WORK/$name-eval" "$WORK/$name-rollout"
  timed "$name" eval $WS eval checkpoint="worldsim/pretrained/$name" world="$world" out="$WORK/$name-eval" \
    seeds=4 steps=16 'horizons=[1,4,16]' num_envs=4 probe_seeds=2 probe_steps=16 idm_episodes=12 idm_train_steps=200 \
    'loop_lengths=[2,4]' progress=false
  $PY -m worldsim.pretrained.card "$name" "$WORK"
  mkdir -p "docs/$name"
  cp "$WORK/$name-eval/plots/"*.png "docs/$name/"
  $WS rollout checkpoint="worldsim/pretrained/$name" real_env="$world" steps=24 out="$WORK/$name-rollout" \
    sim.context=long-range
  $PY -c "import sys; from pathlib import Path; from worldsim.demo import write_strip; write_strip(Path(sys.argv[1]), Path(sys.argv[2]), 10)" \
    "$WORK/$name-rollout/side_by_side.mp4" "docs/strip_$name.png"
}

for name in "${@:-crafter probes}"; do
  for n in $name; do
    case $n in
      crafter) train_world crafter crafter episodes=24 env.max_episode_steps=300; evaluate crafter crafter ;;
      probes)  train_world probes probe episodes=60; evaluate probes probe ;;
      *) echo "unknown model $n (crafter | probes)" >&2; exit 2 ;;
    esac
  done
done
cat "$WORK/times.txt"
