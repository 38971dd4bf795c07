"""Training of the autoencoder and the DiT under DeepSpeed: `train(cfg)` with a `TrainConfig`.

Modules: config (typed configs), ds_config (DeepSpeed JSON from them), engine (the only deepspeed
import), sampler, latents, tasks, ema, checkpoint, export, tensorboard, trainer (the loop).
"""
