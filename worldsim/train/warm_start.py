"""Warm starts: a new run begins from an export's weights (`TrainConfig.init_from`).

Parameters the export lacks (a pathway added since, such as the DiT's previous-frame projection)
keep their initialisation; anything the export has that the model does not, or of another shape,
is an error naming it. A DiT only warm-starts on the latents it was trained on, unless the run says
`init_other_latents=true`: then the weights are only a starting point for a related latent space
(an autoencoder fine-tuned from the one the DiT learned, e.g. on frames of another size), and the
record says so.

`swap_decoder` carries a trained DiT over to a decoder fine-tuned on its latents (`freeze_encoder`):
the simulator's frames improve with no DiT training. `grow_depth` makes a trained DiT deeper near its function
(progressive stacking: doubled blocks with halved gates), a warm start for a deeper continuation.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worldsim.export import load_export, write_export_like
from worldsim.train.latent_cache import autoencoder_key


def warm_start(init_from: str, task: str, model: nn.Module, model_name: str, ae_key: str | None,
               other_latents: bool = False) -> dict[str, Any]:
    """Load `init_from`'s weights into `model` (task "vae" or "dit"); returns the run's record of it.

    ae_key: the latent key of the DiT's autoencoder (task "dit"), compared with the export's unless
    `other_latents` (the export's DiT learned another latent space; its weights are a starting point).
    """
    models, meta = load_export(init_from)
    want = "autoencoder" if task == "vae" else "dit"
    if want not in models:
        raise ValueError(f"init_from={init_from} is an {meta['kind']} export; task={task} warm-starts from "
                         f"an export holding a {want}")
    same_latents = want != "dit" or autoencoder_key(models["autoencoder"]) == ae_key
    if not same_latents and not other_latents:
        raise ValueError(f"init_from={init_from} was trained on the latents of another autoencoder than this run's "
                         "vae; a DiT cannot carry over to a new latent space (init_other_latents=true starts from its "
                         "weights anyway, for an autoencoder fine-tuned from that one)")
    source, target = models[want].state_dict(), model.state_dict()
    unexpected = sorted(set(source) - set(target))
    reshaped = sorted(n for n in set(source) & set(target) if source[n].shape != target[n].shape)
    if unexpected or reshaped:
        raise ValueError(f"init_from={init_from} does not fit model={model_name} with these overrides: "
                         f"{len(unexpected)} parameters it has are not in the model (e.g. {unexpected[:3]}), "
                         f"{len(reshaped)} differ in shape (e.g. {reshaped[:3]})")
    model.load_state_dict(source, strict=False)
    new = sorted(set(target) - set(source))
    return {"from": str(init_from), "steps": meta.get("train", {}).get("steps"), "loaded": len(source),
            "new_parameters": new, **({} if same_latents else {"other_latents": True})}



def with_config(dit: nn.Module, **changes: Any) -> tuple[nn.Module, list[str]]:
    """`dit`'s weights in a DiT whose config is `dit`'s changed by `changes` (a pathway added), and the names of the
    new parameters, which keep their initialisation. ValueError on a field the DiT config lacks or a change that
    would drop or reshape a trained weight."""
    from worldsim.models.dit import DiT, DiTConfig

    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(DiTConfig)})
    if unknown:
        raise ValueError(f"{unknown} are not DiT config fields")
    new = DiT(dataclasses.replace(dit.config, **changes))
    source, target = dit.state_dict(), new.state_dict()
    lost = sorted(n for n in source if n not in target or source[n].shape != target[n].shape)
    if lost:
        raise ValueError(f"{changes} would drop or reshape {len(lost)} trained weights (e.g. {lost[:3]})")
    new.load_state_dict(source, strict=False)
    return new, sorted(set(target) - set(source))


def with_prior_width(dit: nn.Module, width: int) -> tuple[nn.Module, nn.Module]:
    """A copy of `dit` whose conv prior has `width` channels, fresh (it starts as copying: its output convolution is
    zero), every other weight kept; and `dit`'s own prior, to distil the new one from (`fit_motion_field`'s
    `distill`). ValueError if `dit` has no conv prior."""
    if not dit.config.conv_prior:
        raise ValueError("the DiT has no conv prior to narrow or widen (conv_prior=0)")
    from worldsim.models.dit import DiT

    new = DiT(dataclasses.replace(dit.config, conv_prior=width))
    kept = {n: w for n, w in dit.state_dict().items() if not n.startswith("prior.")}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    assert not unexpected and all(n.startswith("prior.") for n in missing), (missing, unexpected)
    return new, dit.prior


def widened_prior(dit: nn.Module, width: int, seed: int = 0) -> nn.Module:
    """A copy of `dit` whose conv prior is `width` channels wide (a multiple of its width), guessing exactly as before
    (Net2WiderNet, Chen et al. 2016): each channel of the prior's residual stream and hidden layers becomes f = width
    / old copies that read the same inputs, and each layer reading them splits every weight among the copies at
    random fractions summing to 1. Copies sit side by side, so each of the 8 group-norm groups holds the copies of one
    old group, whose mean and variance they keep. The uneven split makes the copies learn apart from the first step.
    Every other weight is kept. ValueError if `dit` has no conv prior or `width` is not a multiple of its width."""
    old = dit.config.conv_prior
    if not old or width <= old or width % old:
        raise ValueError(f"widening the conv prior needs a prior ({old or 'none'}) and a width that is a larger "
                         f"multiple of its width, got {width}")
    f = width // old
    new, _ = with_prior_width(dit, width)
    gen = torch.Generator().manual_seed(seed)

    def split(weight: torch.Tensor, start: int) -> torch.Tensor:
        """`weight` with its input channels start.. each repeated f times, at random fractions summing to 1."""
        head, tail = weight[:, :start], weight[:, start:].repeat_interleave(f, 1)
        r = torch.rand(tail.shape[0], tail.shape[1] // f, f, *tail.shape[2:], generator=gen).to(tail.dtype) + 0.5
        return torch.cat([head, tail * (r / r.sum(2, keepdim=True)).flatten(1, 2)], 1)  # fractions 1/4..3/4 for f = 2

    widened, targets = {}, new.prior.state_dict()
    for name, w in dit.prior.state_dict().items():
        target = targets[name]
        if w.shape == target.shape:
            widened[name] = w.clone()
            continue
        w = w.repeat_interleave(f, 0) if target.shape[0] != w.shape[0] else w  # copies of each output channel
        if w.dim() > 1 and target.shape[1] != w.shape[1]:  # inputs: the old channels' copies, weights split
            w = split(w, start=w.shape[1] - old)  # the prior's input conv reads 2C frame channels first
        widened[name] = w
    new.prior.load_state_dict(widened)
    return new


def add_pathway(dit_export: str | os.PathLike, out: str | os.PathLike, **changes: Any) -> Path:
    """Write to `out` the DiT export `dit_export` with its DiT config changed by `changes` (a pathway added, such
    as `prior_composite=True`), untrained (`with_config`: the new weights keep their initialisation, which makes an
    added input a no-op and a composite's mask 0.5). The new config.json adds `pathway_added`."""
    models, meta = load_export(dit_export)
    if "dit" not in models:
        raise ValueError(f"{dit_export} is an {meta['kind']} export; add_pathway needs a DiT export")
    dit, new = with_config(models["dit"], **changes)
    return write_export_like(out, models["autoencoder"], dit.eval(), meta, pathway_added={
        "from": str(dit_export), "changes": changes, "new_parameters": new})


def swap_decoder(dit_export: str | os.PathLike, vae_export: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write to `out` the DiT export `dit_export` with the autoencoder of `vae_export` in place of its own.

    Only an autoencoder with the same latents (same encoder, latent statistics and latent-shaping
    config: a decoder fine-tuned with `freeze_encoder`) is accepted; ValueError otherwise. The new
    config.json keeps the DiT export's records and adds `decoder_from`.
    """
    models, meta = load_export(dit_export)
    if "dit" not in models:
        raise ValueError(f"{dit_export} is an {meta['kind']} export; swap_decoder needs a DiT export")
    new, vae_meta = load_export(vae_export)
    autoencoder = new["autoencoder"]
    if autoencoder_key(autoencoder) != autoencoder_key(models["autoencoder"]):
        raise ValueError(f"{vae_export} encodes other latents than the autoencoder of {dit_export} (another encoder, "
                         "latent statistics or compression): only a decoder fine-tuned with freeze_encoder=true can be swapped in")
    if vae_meta["frame_size"] != meta["frame_size"]:
        raise ValueError(f"{vae_export} was trained on {vae_meta['frame_size']} frames, {dit_export} on {meta['frame_size']}")
    return write_export_like(out, autoencoder, models["dit"], meta,
                             decoder_from={"from": str(vae_export), "steps": vae_meta.get("train", {}).get("steps")})


def swap_prior(dit_export: str | os.PathLike, prior_export: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write to `out` the DiT export `dit_export` with the conv prior (`prior.*`) of `prior_export` in place of its
    own: a prior refitted alone (`scripts/fit_motion_field.py --prior`) put under a DiT trained meanwhile.

    Both must be DiTs with a conv prior of the same width and heads over the same latents (same autoencoder encoder and
    latent statistics) and the same action space; ValueError otherwise. A prior that reads more frames
    (`prior_frames`) than the DiT's makes the DiT read them too. The new config.json adds `prior_from`."""
    models, meta = load_export(dit_export)
    donor, donor_meta = load_export(prior_export)
    for path, loaded in ((dit_export, models), (prior_export, donor)):
        if "dit" not in loaded or not loaded["dit"].config.conv_prior:
            raise ValueError(f"{path} has no DiT with a conv prior (conv_prior=WIDTH); swap_prior needs one on each side")
    dit, other = models["dit"], donor["dit"]
    shape, other_shape = ((d.config.conv_prior, d.config.prior_heads) for d in (dit, other))
    if shape != other_shape:
        raise ValueError(f"the conv priors differ in width or heads (width, heads): {shape} in {dit_export}, "
                         f"{other_shape} in {prior_export}")
    if autoencoder_key(donor["autoencoder"]) != autoencoder_key(models["autoencoder"]) \
            or dit.config.action_space != other.config.action_space:
        raise ValueError(f"{prior_export} was fitted on other latents or actions than {dit_export}")
    if other.config.prior_frames != dit.config.prior_frames:
        dit = with_config(dit, prior_frames=other.config.prior_frames)[0]  # refused if it would drop trained weights
    state = dit.state_dict()
    state.update({n: w for n, w in other.state_dict().items() if n.startswith("prior.")})
    dit.load_state_dict(state)
    return write_export_like(out, models["autoencoder"], dit.eval(), meta, prior_from={
        "from": str(prior_export), **({"fit": donor_meta["conv_prior_fit"]} if "conv_prior_fit" in donor_meta else {})})


def stacked(dit: nn.Module, duplicate: list[int]) -> nn.Module:
    """A deeper copy of `dit`: each block whose index is in `duplicate` is followed by a copy of itself, and both halve
    their residual gates (progressive stacking). x + g f(x) becomes x + g/2 f(x) + g/2 f(x + g/2 f(x)), the same to
    first order in g, so the deeper DiT starts close to the trained one; unlike blocks added with adaLN-Zero's zero
    gates, which learn nothing until their gates grow, every new block starts trained. ValueError on a bad index."""
    from worldsim.models.dit import DiT

    depth = dit.config.depth
    if not duplicate or any(not 0 <= i < depth for i in duplicate) or len(set(duplicate)) != len(duplicate):
        raise ValueError(f"duplicate must name distinct blocks of the {depth} there are (0 to {depth - 1}), got {duplicate}")
    new = DiT(dataclasses.replace(dit.config, depth=depth + len(duplicate)))
    state = {n: w for n, w in dit.state_dict().items() if not n.startswith("blocks.")}
    out = 0
    for i, block in enumerate(dit.blocks):
        part = block.state_dict()
        if i in duplicate:
            for key in ("adaLN_modulation.1.weight", "adaLN_modulation.1.bias"):
                w = part[key].clone()  # rows: shift, scale, gate of attention; shift, scale, gate of the MLP
                d = w.shape[0] // 6
                w[2 * d:3 * d] *= 0.5
                w[5 * d:] *= 0.5
                part[key] = w
        for _ in range(2 if i in duplicate else 1):
            state.update({f"blocks.{out}.{n}": w for n, w in part.items()})
            out += 1
    new.load_state_dict(state)
    return new


def grow_depth(dit_export: str | os.PathLike, out: str | os.PathLike, duplicate: list[int]) -> Path:
    """Write to `out` the DiT export `dit_export` made deeper by `stacked` (the blocks in `duplicate` doubled), to be
    trained on as a warm start (init_from, with model_overrides.depth set to the new depth). The new config.json
    adds `depth_grown`."""
    models, meta = load_export(dit_export)
    if "dit" not in models:
        raise ValueError(f"{dit_export} is an {meta['kind']} export; grow_depth needs a DiT export")
    dit = stacked(models["dit"], sorted(duplicate))
    return write_export_like(out, models["autoencoder"], dit.eval(), meta, depth_grown={
        "from": str(dit_export), "duplicated_blocks": sorted(duplicate), "depth": dit.config.depth})
