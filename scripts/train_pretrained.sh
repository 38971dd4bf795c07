#!/usr/bin/env bash
# Reproduces the pretrained models shipped in worldsim/pretrained/ (crafter, probes), with the project's
# own commands only: worldsim collect -> worldsim train-vae -> worldsim train -> worldsim eval (+ rollout
# for the README strip), then writes each MODEL_CARD.md (with its learning curves) from what the run left.
#
#   bash scripts/train_pretrained.sh [crafter] [probes] [probe-push]     (default: crafter probes)
#
# Work happens under runs/pretrained/; the DiT export (it carries its autoencoder) is copied to
# worldsim/pretrained/<name>/, its card and eval results beside it, plots, curves and strips to docs/.
# Every stage resumes: a run folder with checkpoints but no export is continued (resume=...), one with an
# export is kept (FRESH=1 redoes both training stages). Raise VAE_STEPS / DIT_STEPS to train longer: a
# finished run is continued to the new step count. Both trainings validate on held-out episodes as they
# go (validation.jsonl in each run folder: the learning curves in the cards).
#
# Each world trains in two phases, then a third (below: Crafter on 72x72 frames, the probe world's palette decoder). Phase 1: the autoencoder (NAME-vae) and the DiT (NAME-dit). Phase 2
# continues both from phase 1's exports (warm starts, `init_from`): the decoder alone is fine-tuned
# (NAME-vae2, `freeze_encoder`: the latents stay, so the DiT stays valid), and the DiT gains the
# previous-frame pathway and trains with uniform noise levels and a cosine learning rate (NAME-dit2, on the
# fine-tuned decoder). CONTINUE=1 starts phase 2 from the committed exports in worldsim/pretrained/ (how a
# later session on a fresh machine continues); the model card says where each phase started. The committed
# Probes-v0 is phase 7's (a palette decoder since phase 3, which the phase-2 decoder stage cannot load): continue it
# with its own stages, not with CONTINUE=1. PROBES_PHASE4_FROM=DIR runs phase 4 alone from a phase-3 export DIR
# (the shipped phase 4 started from the committed phase-3 export); PROBES_PHASE5_FROM=DIR phase 5 alone from a
# phase-4 export (the shipped phase 5 started from the committed phase-4 export); PROBES_PHASE6_FROM=DIR phase 6
# alone from a phase-5 export (the shipped phase 6 started from the committed phase-5 export); PROBES_PHASE7_FROM=DIR
# phase 7 alone from a phase-6 export (the shipped phase 7: the committed phase-6 export); PROBES_PHASE8=1 fits the
# pixel refiner of the committed export (phase 8) and evaluates it; CRAFTER_PHASE4_FROM=DIR
# Crafter's phase 4 alone from a phase-3 export (the shipped one started from the committed phase-3 export);
# CRAFTER_PHASE5_FROM=DIR Crafter's phase 5 alone from a phase-4 export (the shipped one: the committed phase-4 export).
#
# The sizes below are what the shipped models were trained with, on a 2-core CPU without a GPU; the
# model cards give the measured CPU-hours.
set -euo pipefail
cd "$(dirname "$0")/.."
WS=${WORLDSIM:-.venv/bin/worldsim}
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK:-runs/pretrained}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread per process: steadier on a shared 2-core CPU
export MASTER_PORT=${MASTER_PORT:-29517}      # the one-process DeepSpeed rendezvous; away from the default 29500
mkdir -p "$WORK" docs

timed() {  # timed NAME STAGE command...: run it, append "NAME STAGE SECONDS" to times.txt
  local name=$1 stage=$2; shift 2
  local t0; t0=$(date +%s)
  "$@"
  echo "$name $stage $(( $(date +%s) - t0 ))" >> "$WORK/times.txt"
}

stage() {  # stage NAME STAGE RUN_DIR STEPS command args...: train a stage, resuming or extending its run
  local name=$1 st=$2 run=$3 steps=$4; shift 4
  [ "${FRESH:-0}" = 1 ] && rm -rf "$run"
  if [ -f "$run/export/config.json" ] && [ "$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["train"]["steps"])' "$run/export/config.json")" -ge "$steps" ]; then
    return 0  # finished at (or beyond) the asked steps
  fi
  if [ -d "$run/checkpoints" ] && [ -n "$(ls -A "$run/checkpoints" 2>/dev/null)" ]; then
    timed "$name" "$st" "$@" resume="$run" steps="$steps"
  else
    rm -rf "$run"
    timed "$name" "$st" "$@" run_dir="$run" steps="$steps"
  fi
}

train_world() {  # train_world NAME VAE_STEPS DIT_STEPS VAE_ARGS -- DIT_ARGS   (the store must exist)
  local name=$1 vae_steps=$2 dit_steps=$3; shift 3
  local store=$WORK/$name.zarr vae_args=() dit_args=() start
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do vae_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  dit_args=("$@")
  if [ "${CONTINUE:-0}" = 1 ]; then
    start=worldsim/pretrained/$name  # phase 1's export as committed (it carries its autoencoder)
  else
    stage "$name" train-vae "$WORK/$name-vae" "$vae_steps" $WS train-vae data="$store" progress=false \
      checkpoint_every=500 keep_checkpoints=1 video_every=0 "${vae_args[@]}"
    stage "$name" train "$WORK/$name-dit" "$dit_steps" $WS train data="$store" vae="$WORK/$name-vae/export" progress=false \
      checkpoint_every=500 keep_checkpoints=1 video_every=0 "${dit_args[@]}" "${PHASE1_DIT[@]}"
    start=$WORK/$name-dit/export
  fi
  # Phase 2: warm starts from phase 1 (see the header).
  stage "$name" train-vae "$WORK/$name-vae2" "${VAE2_STEPS:-8000}" $WS train-vae data="$store" progress=false \
    checkpoint_every=500 keep_checkpoints=1 video_every=0 init_from="$start" freeze_encoder=true \
    "${vae_args[@]}" optim.schedule=cosine
  stage "$name" train "$WORK/$name-dit2" "${DIT2_STEPS:-10000}" $WS train data="$store" vae="$WORK/$name-vae2/export" \
    progress=false checkpoint_every=500 keep_checkpoints=1 video_every=0 init_from="$start" \
    "${dit_args[@]}" +model_overrides.previous_frame=true objective.time_sampling=uniform optim.schedule=cosine
  local final=$WORK/$name-dit2
  if [ "$name" = crafter ]; then
    phase3_crafter "$WORK/$name-dit2/export"
    phase4_crafter "$WORK/$name-dit5/export"
    phase5_crafter "$WORK/$name-dit6/export"
    final=$WORK/$name-dit7
  fi
  if [ "$name" = probes ]; then
    phase3_probes "$WORK/$name-dit2/export"
    phase4_probes "$WORK/$name-dit3/export" "$WORK/$name-vae4/export"
    phase5_probes "$WORK/$name-dit4-swapped/export"
    phase6_probes "$WORK/$name-dit5-composite/export"
    final=$WORK/$name-dit7
  fi
  ship "$name" "$final/export"
  if [ "$name" = crafter ]; then  # served with 4 context frames: as faithful as its trained 8, 13% faster a step
    $PY scripts/set_serving.py worldsim/pretrained/crafter context_budget=4  # (docs/bench/context_budget_eval.json)
  fi
}

ship() {  # ship NAME EXPORT_DIR: the export becomes worldsim/pretrained/NAME (its card and eval stay beside it)
  local dest=worldsim/pretrained/$1
  rm -rf "$dest/autoencoder.safetensors" "$dest/dit.safetensors" "$dest/config.json"
  mkdir -p "$dest"
  cp "$2/"* "$dest/"
}

# Phase 3 (Crafter only): frames of 72x72 instead of 64x64. Crafter draws 9 tiles across, so a tile is 8
# pixels (not 7.1) and a move scrolls the view by exactly 2 latent pixels of the x4 autoencoder; the DiT's
# motion kernel (model_overrides.motion_radius) can then move the previous latent by the action. Both
# models warm-start from phase 2 (convolutions and rotary positions do not care about the frame size; the
# DiT starts from weights learned on the 64x64 latents: init_other_latents). The shipped run was stopped
# early for time (autoencoder at 1,527 of 2,500 steps, the last DiT at 3,277 of 5,000: the model card gives the
# steps); VAE3_STEPS / DIT3_STEPS / DIT4_STEPS / DIT5_STEPS set the schedules' lengths.
phase3_crafter() {
  local start=$1 store=$WORK/crafter72.zarr
  [ -d "$store" ] || { timed crafter collect $WS collect env=crafter env.size=72 policy=explore episodes=120 seed=0 \
                         env.max_episode_steps=500 out="$store" progress=false
                       timed crafter collect $WS collect env=crafter env.size=72 policy=random episodes=60 seed=200 \
                         env.max_episode_steps=500 out="$store" progress=false; }
  stage crafter train-vae "$WORK/crafter-vae3" "${VAE3_STEPS:-2500}" $WS train-vae data="$store" progress=false \
    checkpoint_every=250 keep_checkpoints=1 video_every=0 init_from="$start" model=cpu window=9 batch_size=8 \
    optim.lr=5e-4 optim.warmup_steps=50 optim.schedule=cosine ema_decay=0.99 validation.every=250 validation.windows=32
  local dit3=(data="$store" vae="$WORK/crafter-vae3/export" progress=false checkpoint_every=250 keep_checkpoints=1
              video_every=0 "${DIT[@]}" +model_overrides.previous_frame=true +model_overrides.motion_radius=4
              objective.time_sampling=uniform optim.schedule=cosine)
  # dit3 moved to the new latents (the kernel alone learned a blur); dit4 adds the kernel's own loss
  # (objective.motion_weight: its moved previous latent fitted to the next one); dit5 a lower learning rate.
  stage crafter train "$WORK/crafter-dit3" "${DIT3_STEPS:-989}" $WS train "${dit3[@]}" init_from="$start" init_other_latents=true
  stage crafter train "$WORK/crafter-dit4" "${DIT4_STEPS:-9000}" $WS train "${dit3[@]}" init_from="$WORK/crafter-dit3/export" \
    objective.motion_weight=1.0
  stage crafter train "$WORK/crafter-dit5" "${DIT5_STEPS:-5000}" $WS train "${dit3[@]}" init_from="$WORK/crafter-dit4/export" \
    objective.motion_weight=1.0 optim.lr=3e-4
}

fit_prior() {  # fit_prior NAME START STORE OUT STEPS [ARGS...]: a conv prior of width 64 fitted alone on the cached
  local name=$1 start=$2 store=$3 out=$4 steps=$5 done=0; shift 5  # latents; a stopped fit continues from OUT
  [ -f "$out/config.json" ] && done=$($PY -c 'import json, sys; f = json.load(open(sys.argv[1])).get("conv_prior_fit", {})
print(f.get("steps", 0) + f.get("steps_before", 0))' "$out/config.json")
  [ "$done" -ge "$steps" ] && return 0
  [ "$done" -gt 0 ] && start=$out
  timed "$name" fit-prior $PY scripts/fit_motion_field.py "$start" "$store" "$out" \
    --prior --width 64 --steps "$((steps - done))" --lr 1e-3 --batch 64 --json "$out.json" "$@"
}

# Phase 4 (Crafter only): the conv prior of the probe world's phase 5 (below), here trained with its composite.
# The prior is fitted alone on the cached latents (crafter-prior4; the DiT gains previous_frames=2, zero at first),
# scripts/add_pathway.py adds the composite (`prior_composite`, mask 0.5 at first), and the DiT continues 1,500
# steps as dit5 trained, with the prior's own loss (crafter-dit6). START is phase 3's export (the committed
# worldsim/pretrained/crafter when continuing: CRAFTER_PHASE4_FROM=DIR runs phase 4 alone).
phase4_crafter() {
  local start=$1 store=$WORK/crafter72.zarr
  fit_prior crafter "$start" "$store" "$WORK/crafter-prior4" "${CRAFTER_PRIOR4_STEPS:-2500}"
  [ -f "$WORK/crafter-prior4-composite/config.json" ] || \
    $PY scripts/add_pathway.py "$WORK/crafter-prior4" "$WORK/crafter-prior4-composite" prior_composite=true
  stage crafter train "$WORK/crafter-dit6" "${DIT6_STEPS:-1500}" $WS train data="$store" vae="$start" progress=false \
    checkpoint_every=250 keep_checkpoints=1 video_every=0 init_from="$WORK/crafter-prior4-composite" "${DIT[@]}" \
    +model_overrides.previous_frame=true +model_overrides.motion_radius=4 +model_overrides.previous_frames=2 \
    +model_overrides.conv_prior=64 +model_overrides.prior_composite=true objective.prior_weight=1.0 \
    objective.motion_weight=1.0 objective.time_sampling=uniform optim.schedule=cosine optim.lr=3e-4
}

# Phase 5 (Crafter only): three times the data. The phase-3 store (180 episodes) is copied and grows to 540 with
# the same mix of policies (240 more explore episodes from seed 1000, 120 more random ones from seed 2000; episode
# j of a store is reset with seed + j), and phase 4's DiT continues 2,000 steps on it as phase 4 trained
# (crafter-dit7; its latent cache is extended by the training). Held-out episodes are every 20th at each size, so
# none that phase 4 held out is trained on. START is phase 4's export (CRAFTER_PHASE5_FROM=DIR runs it alone).
phase5_crafter() {
  grow_crafter "$WORK/crafter72.zarr" "$WORK/crafter540.zarr" 420 1000 540 2000
  continue_crafter "$WORK/crafter-dit7" "${DIT7_STEPS:-2000}" "$WORK/crafter540.zarr" "$1"
}

grow_crafter() {  # grow_crafter FROM STORE EXPLORE_TO EXPLORE_SEED RANDOM_TO RANDOM_SEED: STORE starts as a copy of
  # FROM, then explore episodes are collected until it holds EXPLORE_TO, then random ones until RANDOM_TO (a stopped
  # collection continues with the same seeds: episode j of a store is reset with seed + j)
  local from=$1 store=$2 n
  [ -d "$store" ] || cp -r "$from" "$store"
  n=$($PY -c 'import sys; from worldsim.data.store import EpisodeStore; print(EpisodeStore.open(sys.argv[1], "r").num_episodes)' "$store")
  [ "$n" -lt "$3" ] && timed crafter collect $WS collect env=crafter env.size=72 policy=explore episodes=$(($3 - n)) \
    seed="$4" env.max_episode_steps=500 out="$store" progress=false && n=$3
  [ "$n" -lt "$5" ] && timed crafter collect $WS collect env=crafter env.size=72 policy=random episodes=$(($5 - n)) \
    seed="$6" env.max_episode_steps=500 out="$store" progress=false
  return 0
}

continue_crafter() {  # continue_crafter RUN STEPS STORE START: the DiT of START continued on STORE as phase 4 trained
  stage crafter train "$1" "$2" $WS train data="$3" vae="$4" progress=false checkpoint_every=250 keep_checkpoints=1 \
    video_every=0 init_from="$4" "${DIT[@]}" +model_overrides.previous_frame=true +model_overrides.motion_radius=4 \
    +model_overrides.previous_frames=2 +model_overrides.conv_prior=64 +model_overrides.prior_composite=true \
    objective.prior_weight=1.0 objective.motion_weight=1.0 objective.time_sampling=uniform optim.schedule=cosine \
    optim.lr=3e-4
}

# Phase 3 (probe world only). The decoder picks one of the world's 9 colours per pixel (`palette=auto`: found in
# the store; worldsim.models.palette), fine-tuned alone from phase 2 with a cross-entropy against the true colour,
# first on 5-frame windows (probes-vae3), then on 33-frame windows (probes-vae4: a rollout decodes long streams,
# whose latents the causal encoder computed with a longer past). The encoder stays frozen, so the latents do not
# change. The DiT continues from phase 2 with the frame before the previous one fed too (previous_frames=2), gets
# the new decoder (scripts/swap_decoder.py), and continues with self-forcing (objective.own_context_prob).
phase3_probes() {
  local start=$1 store=$WORK/probes.zarr
  stage probes train-vae "$WORK/probes-vae3" "${PROBES_VAE3_STEPS:-4000}" $WS train-vae data="$store" progress=false \
    checkpoint_every=500 keep_checkpoints=1 video_every=0 init_from="$start" freeze_encoder=true "${VAE[@]}" \
    optim.schedule=cosine +model_overrides.palette=auto
  stage probes train-vae "$WORK/probes-vae4" "${PROBES_VAE4_STEPS:-1000}" $WS train-vae data="$store" progress=false \
    checkpoint_every=250 keep_checkpoints=1 video_every=0 init_from="$WORK/probes-vae3/export" freeze_encoder=true \
    "${VAE[@]}" window=33 batch_size=4 optim.lr=5e-4 optim.warmup_steps=50 validation.windows=16 \
    optim.schedule=cosine +model_overrides.palette=auto
  stage probes train "$WORK/probes-dit3-two" "${PROBES_DIT3_STEPS:-3000}" $WS train data="$store" vae="$WORK/probes-vae3/export" progress=false \
    checkpoint_every=250 keep_checkpoints=1 video_every=0 init_from="$start" "${DIT[@]}" \
    +model_overrides.previous_frame=true +model_overrides.previous_frames=2 objective.time_sampling=uniform \
    optim.schedule=cosine optim.lr=3e-4
  [ -f "$WORK/probes-dit3-swapped/export/config.json" ] || \
    $PY scripts/swap_decoder.py "$WORK/probes-dit3-two/export" "$WORK/probes-vae4/export" "$WORK/probes-dit3-swapped/export"
  # then self-forcing: half of the scheme-cut samples get the DiT's own one-step sample as their newest context frame
  stage probes train "$WORK/probes-dit3" "${PROBES_DIT3_SF_STEPS:-1500}" $WS train data="$store" \
    vae="$WORK/probes-dit3-swapped/export" progress=false checkpoint_every=250 keep_checkpoints=1 video_every=0 \
    init_from="$WORK/probes-dit3-swapped/export" "${DIT[@]}" +model_overrides.previous_frame=true \
    +model_overrides.previous_frames=2 objective.time_sampling=uniform optim.schedule=cosine optim.lr=3e-4 \
    objective.own_context_prob=0.5
}

# Phase 4 (probe world only): phase 3's two models trained longer. The window-33 decoder continues alone for
# 1,000 steps and then 3,000 more (probes-vae5, probes-vae6: each a cosine schedule from lr 5e-4; the held-out
# curve still rose at the end of each); the DiT continues 3,000 steps with self-forcing (probes-dit4), and
# scripts/swap_decoder.py puts the longer-trained decoder under it. START is phase 3's DiT export, VAE_START
# its autoencoder (both the committed worldsim/pretrained/probes when continuing on another machine).
phase4_probes() {
  local start=$1 vae_start=$2 store=$WORK/probes.zarr
  local decoder=("${VAE[@]}" window=33 batch_size=4 optim.lr=5e-4 optim.warmup_steps=50 validation.windows=16
                 optim.schedule=cosine +model_overrides.palette=auto freeze_encoder=true progress=false
                 checkpoint_every=250 keep_checkpoints=1 video_every=0)
  stage probes train-vae "$WORK/probes-vae5" "${PROBES_VAE5_STEPS:-1000}" $WS train-vae data="$store" \
    init_from="$vae_start" "${decoder[@]}"
  stage probes train-vae "$WORK/probes-vae6" "${PROBES_VAE6_STEPS:-3000}" $WS train-vae data="$store" \
    init_from="$WORK/probes-vae5/export" "${decoder[@]}"
  stage probes train "$WORK/probes-dit4" "${PROBES_DIT4_STEPS:-3000}" $WS train data="$store" vae="$start" \
    progress=false checkpoint_every=250 keep_checkpoints=1 video_every=0 init_from="$start" "${DIT[@]}" \
    +model_overrides.previous_frame=true +model_overrides.previous_frames=2 objective.time_sampling=uniform \
    optim.schedule=cosine optim.lr=3e-4 objective.own_context_prob=0.5
  [ -f "$WORK/probes-dit4-swapped/export/config.json" ] || \
    $PY scripts/swap_decoder.py "$WORK/probes-dit4/export" "$WORK/probes-vae6/export" "$WORK/probes-dit4-swapped/export"
}

# Phase 5 (probe world only): a conv prior (`+model_overrides.conv_prior=64`: a conv net's guess of the next latent
# from the two frames before it and the action, read by the DiT as one more input; worldsim.models.motion.ConvPrior)
# is fitted alone on the cached latents (probes-prior5, scripts/fit_motion_field.py --prior), then the DiT continues
# 2,000 steps with it as phase 4 did (probes-dit5: self-forcing, lr 3e-4 cosine, `objective.prior_weight=1`).
# scripts/add_pathway.py then composites the prior's guess into the DiT's estimate untrained (`prior_composite`,
# mask 0.5: at t = 1 the two estimates averaged), which `worldsim eval` chose on two seed sets over 2,000 steps of
# training the mask (README, training section). The autoencoder stays. START is phase 4's export (the committed
# worldsim/pretrained/probes when continuing).
phase5_probes() {
  local start=$1 store=$WORK/probes.zarr
  fit_prior probes "$start" "$store" "$WORK/probes-prior5" "${PROBES_PRIOR5_STEPS:-2500}"
  stage probes train "$WORK/probes-dit5" "${PROBES_DIT5_STEPS:-2000}" $WS train data="$store" vae="$start" \
    progress=false checkpoint_every=250 keep_checkpoints=1 video_every=0 init_from="$WORK/probes-prior5" "${DIT[@]}" \
    +model_overrides.previous_frame=true +model_overrides.previous_frames=2 +model_overrides.conv_prior=64 \
    objective.prior_weight=1.0 objective.time_sampling=uniform optim.schedule=cosine optim.lr=3e-4 \
    objective.own_context_prob=0.5
  [ -f "$WORK/probes-dit5-composite/export/config.json" ] || \
    $PY scripts/add_pathway.py "$WORK/probes-dit5/export" "$WORK/probes-dit5-composite/export" prior_composite=true
}

# Phase 6 (probe world only): more data, for the conv prior above all, which had learnt its 380 training episodes
# by heart (held-out error 0.21 against 0.077 on them). The store grows to 4,000 episodes (probes12k.zarr: the same
# first 400; the probe world steps at 1,600 env steps/s). The phase-5 prior is refitted there alone (probes-prior6:
# 6,000 steps, cosine; held-out 0.185 -> 0.119) while the phase-5 DiT continues 2,000 steps on it as phase 5 trained,
# its mask and prior trained too (probes-dit6); scripts/swap_prior.py puts the refitted prior under that DiT. The
# store then grows to 12,000 episodes and the DiT continues 1,200 steps there (probes-dit7). Held-out episodes are
# every 20th at each size, so no model here trains on an episode any phase held out. START is phase 5's export
# (the committed worldsim/pretrained/probes when continuing: PROBES_PHASE6_FROM=DIR).
phase6_probes() {
  local start=$1 store=$WORK/probes12k.zarr
  [ -d "$store" ] || timed probes collect $WS collect env=probe episodes=4000 seed=1000 out="$store" progress=false
  fit_prior probes "$start" "$store" "$WORK/probes-prior6" "${PROBES_PRIOR6_STEPS:-6000}" --schedule cosine \
    --eval-every 500
  local comp=(+model_overrides.previous_frame=true +model_overrides.previous_frames=2 +model_overrides.conv_prior=64
              +model_overrides.prior_composite=true objective.prior_weight=1.0 objective.time_sampling=uniform
              optim.schedule=cosine optim.lr=3e-4 objective.own_context_prob=0.5)
  stage probes train "$WORK/probes-dit6" "${PROBES_DIT6_STEPS:-2000}" $WS train data="$store" vae="$start" \
    progress=false checkpoint_every=250 keep_checkpoints=1 video_every=0 init_from="$start" "${DIT[@]}" "${comp[@]}"
  [ -f "$WORK/probes-dit6-prior/export/config.json" ] || \
    $PY scripts/swap_prior.py "$WORK/probes-dit6/export" "$WORK/probes-prior6" "$WORK/probes-dit6-prior/export"
  if [ "$($PY -c 'import sys; from worldsim.data.store import EpisodeStore; print(EpisodeStore.open(sys.argv[1], "r").num_episodes)' "$store")" -lt 12000 ]; then
    timed probes collect $WS collect env=probe episodes=8000 seed=5000 out="$store" progress=false
  fi
  stage probes train "$WORK/probes-dit7" "${PROBES_DIT7_STEPS:-1200}" $WS train data="$store" vae="$start" \
    progress=false checkpoint_every=250 keep_checkpoints=1 video_every=0 init_from="$WORK/probes-dit6-prior/export" \
    "${DIT[@]}" "${comp[@]}"
}

# Phase 7 (probe world only, session 19): the window-33 decoder trained 5,000 steps more, as phase 4 trained it but
# from lr 3e-4 (encoder frozen: the latents, and so the DiT, stay); scripts/swap_decoder.py puts it under phase 6's
# DiT. Held-out 33-frame windows 35.43 -> 36.06 dB at 3,250 steps, 36.22 at 5,000 (72 CPU-min). START is phase 6's export (the committed
# worldsim/pretrained/probes when continuing: PROBES_PHASE7_FROM=DIR).
phase7_probes() {
  local start=$1 store=$WORK/probes.zarr
  stage probes train-vae "$WORK/probes-vae7" "${PROBES_VAE7_STEPS:-5000}" $WS train-vae data="$store" \
    init_from="$start" "${VAE[@]}" window=33 batch_size=4 optim.lr=3e-4 optim.warmup_steps=50 validation.windows=16 \
    optim.schedule=cosine +model_overrides.palette=auto freeze_encoder=true progress=false checkpoint_every=250 \
    keep_checkpoints=1 video_every=0
  [ -f "$WORK/probes-phase7/export/config.json" ] || \
    $PY scripts/swap_decoder.py "$start" "$WORK/probes-vae7/export" "$WORK/probes-phase7/export"
}

# Phase 8 (probe world only, session 33): a pixel refiner for the frames shown (worldsim.models.frame_refiner), fitted
# on the shipped export's own one-step frames and written beside it; the DiT and the autoencoder stay. The shipped one
# was fitted by the scratch equivalent of this line on seeds 20,000-20,699 and 21,500-22,199 (68 CPU-min, 1 thread).
phase8_probes() {
  timed probes refiner $PY scripts/fit_refiner.py worldsim/pretrained/probes --episodes 1400 --first-seed 20000 \
    --steps 3000 --lr 3e-4 --mse 10 --ce 0.1 --batch 16 --curve "$WORK/probes-refiner-curve.json"
}

evaluate() {  # evaluate NAME WORLD [SAMPLING_STEPS]: worldsim eval on the shipped export, the card, plots and a strip
  local name=$1 world=$2 steps=${SAMPLING_STEPS:-${3:-4}}
  rm -rf "$WORK/$name-eval" "$WORK/$name-rollout"
  timed "$name" eval $WS eval checkpoint="worldsim/pretrained/$name" world="$world" out="$WORK/$name-eval" \
    seeds=${EVAL_SEEDS:-16} steps=16 'horizons=[1,4,16]' num_envs=8 sampling_steps=$steps \
    probe_seeds=${PROBE_SEEDS:-10} probe_steps=16 idm_episodes=${IDM_EPISODES:-48} idm_train_steps=${IDM_STEPS:-600} \
    'loop_lengths=[2,4]' 'schemes=[autoregressive,long-range]' progress=false
  $PY -m worldsim.pretrained.card "$name" "$WORK"
  mkdir -p "docs/$name"
  cp "$WORK/$name-eval/plots/"*.png "docs/$name/"
  $WS rollout checkpoint="worldsim/pretrained/$name" real_env="$world" steps=24 out="$WORK/$name-rollout" \
    sim.context=long-range
  $PY -c "import sys; from pathlib import Path; from worldsim.demo import write_strip; write_strip(Path(sys.argv[1]), Path(sys.argv[2]), 10)" \
    "$WORK/$name-rollout/side_by_side.mp4" "docs/strip_$name.png"
}

# The DiT of both worlds: the tiny preset widened; bf16 autocast where the CPU multiplies bf16 natively.
DIT=(model=tiny +model_overrides.dim=128 +model_overrides.depth=4 +model_overrides.heads=2
     window=17 batch_size=8 optim.lr=1e-3 optim.warmup_steps=30 ema_decay=0.99
     'context.schemes=[autoregressive,long-range,hierarchical]' objective.context_noise_max=0.1 validation.every=250)
# Phase 1 as it was shipped, before the presets' previous-frame pathway and uniform noise levels became the defaults.
PHASE1_DIT=(++model_overrides.previous_frame=false objective.time_sampling=logit_normal)
VAE=(model=cpu window=5 batch_size=8 optim.lr=1e-3 optim.warmup_steps=100 ema_decay=0.99
     validation.every=250 validation.windows=32)

for name in "${@:-crafter probes}"; do
  for n in $name; do
    case $n in
      crafter)
        store=$WORK/crafter.zarr
        # An exploring policy (long walks, bursts of "do", crafting) mixed with random play: see agents/explore.py.
        [ -d "$store" ] || { timed crafter collect $WS collect env=crafter policy=explore episodes=120 seed=0 \
                               env.max_episode_steps=500 out="$store" progress=false
                             timed crafter collect $WS collect env=crafter policy=random episodes=60 seed=200 \
                               env.max_episode_steps=500 out="$store" progress=false; }
        if [ -n "${CRAFTER_PHASE5_FROM:-}" ]; then  # phase 5 alone, from a phase-4 export (how the shipped one was made)
          phase5_crafter "$CRAFTER_PHASE5_FROM"
          ship crafter "$WORK/crafter-dit7/export"
          $PY scripts/set_serving.py worldsim/pretrained/crafter context_budget=4
        elif [ -n "${CRAFTER_PHASE4_FROM:-}" ]; then  # phase 4 alone, from a phase-3 export
          phase4_crafter "$CRAFTER_PHASE4_FROM"
          ship crafter "$WORK/crafter-dit6/export"
          $PY scripts/set_serving.py worldsim/pretrained/crafter context_budget=4
        else
          train_world crafter "${VAE_STEPS:-4000}" "${DIT_STEPS:-4000}" "${VAE[@]}" -- "${DIT[@]}"
        fi
        evaluate crafter crafter 1 ;;  # the simulator's default, as for the probe world
      probes)
        store=$WORK/probes.zarr
        [ -d "$store" ] || timed probes collect $WS collect env=probe episodes=400 seed=1000 out="$store" progress=false
        if [ -n "${PROBES_PHASE8:-}" ]; then  # phase 8 alone: the refiner of the shipped export (how the shipped one was made)
          phase8_probes
        elif [ -n "${PROBES_PHASE7_FROM:-}" ]; then  # phase 7 alone, from a phase-6 export
          phase7_probes "$PROBES_PHASE7_FROM"
          ship probes "$WORK/probes-phase7/export"
          # served with its generated frames re-encoded as context (session 22: README, simulator section)
          $PY scripts/set_serving.py worldsim/pretrained/probes reencode=true
        elif [ -n "${PROBES_PHASE6_FROM:-}" ]; then  # phase 6 alone, from a phase-5 export
          phase6_probes "$PROBES_PHASE6_FROM"
          ship probes "$WORK/probes-dit7/export"
        elif [ -n "${PROBES_PHASE5_FROM:-}" ]; then  # phase 5 alone, from a phase-4 export (how the shipped one was made)
          phase5_probes "$PROBES_PHASE5_FROM"
          ship probes "$WORK/probes-dit5-composite/export"
        elif [ -n "${PROBES_PHASE4_FROM:-}" ]; then  # phase 4 alone, from a phase-3 export
          phase4_probes "$PROBES_PHASE4_FROM" "$PROBES_PHASE4_FROM"
          ship probes "$WORK/probes-dit4-swapped/export"
        else
          train_world probes "${VAE_STEPS:-4000}" "${DIT_STEPS:-4000}" "${VAE[@]}" -- "${DIT[@]}"
        fi
        evaluate probes probe 1 ;;  # the simulator's default; phase 5's composited prior is made for it
      probe-push)
        # The push task's simulator: the shipped Probes-v0 continued inside two `worldsim imagine` loops on push
        # episodes (300 random + 100 scripted pushes, then what each iteration's agent collects): first with the
        # DiT's own reward heads (3 x 1,000 steps), then 3 x 500 steps more with a frame reward model trained each
        # iteration (models/frame_heads.py), whose last one ships beside it as reward_model.safetensors.
        store=$WORK/probe-push.zarr
        [ -d "$store" ] || { timed probe-push collect $WS collect env=probe-push episodes=300 policy=random seed=5000 \
                               out="$store" progress=false num_envs=1 vector=sync
                             timed probe-push collect $WS collect env=probe-push episodes=100 policy=push seed=6000 \
                               out="$store" progress=false num_envs=1 vector=sync; }
        loop=(world=probe-push iterations=3 collect_episodes=20 agent_steps=8192 eval_episodes=50 max_episode_steps=64
              reward_balance=true heads_max_noise=0.5 window=9 threads=1 progress=false)
        timed probe-push imagine $WS imagine checkpoint=probes base_store="$store" out="$WORK/imagine-push" \
          world_model_steps=1000 "${loop[@]}"
        [ -d "$WORK/push-world-3000" ] || cp -r "$WORK/imagine-push/world/export" "$WORK/push-world-3000"
        timed probe-push imagine $WS imagine checkpoint="$WORK/push-world-3000" base_store="$WORK/imagine-push/probe-push.zarr" \
          out="$WORK/imagine-push-frames" world_model_steps=500 reward_model=frames reward_model_steps=1000 "${loop[@]}"
        dest=worldsim/pretrained/probe-push
        mkdir -p "$dest"
        cp "$WORK/imagine-push-frames/world/export/"* "$dest/"
        cp "$WORK/imagine-push-frames/reward_3.safetensors" "$dest/reward_model.safetensors"
        timed probe-push eval $WS eval checkpoint="$dest" world=probe-push out="$WORK/probe-push-eval" seeds=16 steps=16 \
          'horizons=[1,4,16]' num_envs=8 sampling_steps=1 probe_seeds=10 probe_steps=16 idm_episodes=48 \
          idm_train_steps=600 'loop_lengths=[2,4]' 'schemes=[autoregressive,long-range]' progress=false
        cp "$WORK/probe-push-eval/results.json" "$dest/eval_results.json"
        # MODEL_CARD.md: written from the loops' results.json and this evaluation (see the card itself)
        ;;
      *) echo "unknown model $n (crafter | probes | probe-push)" >&2; exit 2 ;;
    esac
  done
done
cat "$WORK/times.txt"
