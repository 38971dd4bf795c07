"""Training of the autoencoder and the DiT under DeepSpeed: `train(cfg)` with a `TrainConfig`.

Modules: config (typed configs), ds_config (DeepSpeed JSON from them), engine (the only deepspeed
import), sampler (resumable distributed window order), latents (rows -> latent frames), tasks
(autoencoder / DiT losses and videos), ema, checkpoint, export (safetensors + JSON, loads without
DeepSpeed), tensorboard, trainer (the loop).

Launching (every override is a Hydra override; each run gets runs/<name>/<timestamp>):

    worldsim train-vae data=datasets/crafter.zarr model=small steps=2000
    worldsim train data=datasets/crafter.zarr vae=runs/train-vae/<time>/export model=small
    worldsim train ... resume=runs/train/<time>                      # continue a run exactly
    torchrun --nproc_per_node 2 -m worldsim.cli train ... dist.zero_stage=2
    deepspeed --num_gpus 2 --module worldsim.cli train ... dist.zero_stage=3

Several machines: a DeepSpeed hostfile lists each machine and its slots (processes),

    # hostfile
    node1 slots=8
    node2 slots=8

and the launcher is started on node1 (passwordless ssh to every node, the same repository path
and venv on each, the data reachable from each):

    deepspeed --hostfile hostfile --master_addr node1 --module worldsim.cli train data=... vae=... \\
        dist.zero_stage=3

A run resumed at another number of processes converts its latest ZeRO checkpoint to DeepSpeed's
universal format first (automatically) and checks the loaded weights against a saved checksum.
"""
