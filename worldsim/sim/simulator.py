"""The batched core shared by `WorldModelEnv` and `WorldModelVectorEnv`: context in, next frames out.

A `Track` is one running episode in latent space. `Simulator.start` encodes context frames into
one; `Simulator.step` advances a list of tracks by one latent frame each, batched:

1. the context scheme (`worldsim.context`) picks each track's conditioning frames;
2. their keys/values come from the batch's buffer kept across steps (cache="incremental", `BatchCache`:
   each step only writes the new frames) or are re-encoded from their latents in one pass (cache="recompute");
3. the sampler denoises the new latent of every track; each track draws its noise from its own
   generator, and all tracks share ONE sampler call with one DiT forward per denoising step: tracks
   with shorter contexts are left-padded and the padding masked out of attention (`cat_batch`);
4. one pass over the new latents (clean, or at `context_noise`) gives the learned reward and termination and the new
   frame's keys/values, stored for later steps (one entry per frame, `KVCache.frame_entries`);
5. the causal decoder turns the new latents into k frames each, streaming: every track keeps its
   causal convolutions' past inputs (`VideoAutoencoder.decode_stream`), so one batched decode of
   exactly one latent per track gives the frames a full decode of the track would, at constant cost.
   With `reencode` this comes before step 4: the frames are encoded again, streaming as well
   (`VideoAutoencoder.encode_stream`), and that latent is the one step 4 and later steps see.

The incremental cache is an approximation once frames drop out of the context: a frame's
keys/values were computed when it was generated, attending to the context selected THEN, not to
the frames selected now. "recompute" is the exact reference (the DiT re-encodes the selected frames
every step, causally among themselves); the two agree exactly while the whole history fits the
budget (tests/sim/test_env.py, test_cached_rollout_equals_recomputed_context), and the incremental cache is what keeps a step's cost flat.
Memory is bounded too: the schemes are nested, so a frame that leaves the selection is forgotten.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import Tensor

from worldsim.diffusion.objective import add_noise
from worldsim.diffusion.samplers import sample_euler, sample_heun
from worldsim.frames import frames_to_float, frames_to_uint8
from worldsim.hardware import cpu_has_native_bf16
from worldsim.models.autoencoder import split_state, stack_states
from worldsim.pretrained import resolve_checkpoint
from worldsim.models.camera import camera_positions, camera_steps
from worldsim.models.frame_refiner import export_refiner, first_shown, refine_shown
from worldsim.models.kv_cache import KVCache, batch_item, cat_batch
from worldsim.spaces import packed_dim, space_from_json
from worldsim.sim.batch_cache import BatchCache
from worldsim.sim.config import DEFAULT_BUDGET, SimConfig
from worldsim.export import ExportError, load_export, served_context_budget, served_reencode
from worldsim.models.latents import group_rows, num_latent_frames

DEFAULT_EPISODE_STEPS = 1000  # when the export does not say which world it imitates
SAMPLER_FUNCTIONS = {"euler": sample_euler, "heun": sample_heun}


@dataclass
class Track:
    """One episode in latent space; only frames the context scheme may still select are kept."""

    length: int  # latent frames so far; the next frame's true time index
    latents: dict[int, Tensor] = field(default_factory=dict)  # position -> normalised latent (C, h, w)
    actions: dict[int, Tensor] = field(default_factory=dict)  # position -> packed actions (k, D)
    masks: dict[int, Tensor] = field(default_factory=dict)  # position -> has-action (k,) bool
    kv: dict[int, dict] = field(default_factory=dict)  # position -> the frame's cache entry (KVCache.frame_entries)
    levels: dict[int, float] = field(default_factory=dict)  # position -> noise level it is seen at as context (absent: 0)
    decoder_state: dict = field(default_factory=dict)  # the streaming decoder's past inputs (batch 1 tensors)
    encoder_state: dict = field(default_factory=dict)  # reencode: the streaming encoder's past inputs (batch 1)
    last_frame: np.ndarray | None = None  # uint8 (H, W, 3): the newest real or generated frame (a frame reward model reads it)
    shown: np.ndarray | None = None  # a frame refiner's history: uint8 (history, H, W, 3), the last frames shown
    # a DiT with world heads: the view's origin (2,) at each kept frame and at the newest one (`worldsim.models.camera`)
    cameras: dict[int, Tensor] = field(default_factory=dict)
    camera: Tensor | None = None


@dataclass
class StepOutput:
    """What `Simulator.step` returns for B tracks."""

    frames: np.ndarray  # uint8 (B, k, H, W, 3): the k frames of the new latent frame, the last is the observation
    reward: np.ndarray  # float32 (B,)
    terminated: np.ndarray  # bool (B,): sigmoid(termination logit) > 0.5


def _groups(keys: Sequence) -> dict:
    """Positions grouped by key, in first-seen order."""
    out: dict = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


COMPILE_BACKEND = "inductor"  # torch.compile's backend for SimConfig.compile


def compiled(fn, what: str):
    """`torch.compile(fn)` (dynamic shapes: batch and context length vary), falling back to `fn` for good
    if compiling or running the compiled code fails (no compiler, an unsupported op): a warning, never a crash.

    Measured on a 2-core CPU (one thread, busy machine, shipped probe model, batch 8, one sampling step):
    331 ms a step eager, 201 ms compiled, after 53 s of compilation at the first steps.
    """
    state = {"fn": torch.compile(fn, dynamic=True, backend=COMPILE_BACKEND)}

    def call(*args, **kwargs):
        if state["fn"] is fn:
            return fn(*args, **kwargs)
        try:
            return state["fn"](*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure; a user error reappears in eager below
            warnings.warn(f"torch.compile of {what} failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                          "running it uncompiled", RuntimeWarning, stacklevel=2)
            state["fn"] = fn
            return fn(*args, **kwargs)

    return call


def exact_gelu(module: torch.nn.Module) -> None:
    """Switch `module`'s tanh-approximated GELUs to the exact (erf) one, in place.

    For bf16 on a CPU: PyTorch's bf16 tanh-GELU takes 2.6 ms on the DiT's MLP activations at batch 32 against
    0.6 ms for erf (one thread, 2-core AVX-512-BF16 EPYC), 6% of a step; the two functions differ by at most
    5e-4, below bf16's own rounding there (8e-3).
    """
    for m in module.modules():
        if isinstance(m, torch.nn.GELU) and m.approximate == "tanh":
            m.approximate = "none"


def bf16_parameters(module: torch.nn.Module) -> None:
    """Hold `module`'s parameters in bf16, in place, for inference under bf16 autocast on a CPU.

    Autocast casts every float32 weight to bf16 again at each call: about 490 casts a step for the shipped DiTs.
    Cast once, a batch-32 step took 99.5 against 104.0 ms (Crafter-v0) and 95.7 against 104.2 (Probes-v0), with
    8-step rollouts within 57 and 50 dB of autocast's (2-core AMX Xeon, 2 threads, interleaved in one process);
    the decoder's step 23.8 against 26.3 ms for Probes-v0 (its palette head's products stay bf16), no change for
    Crafter-v0's (22.0 against 22.2).
    Buffers stay float32: the rotary frequencies must not be rounded, or positions far into an episode rotate wrong.
    """
    for p in module.parameters():
        p.data = p.data.to(torch.bfloat16)


class Simulator:
    """Loaded models plus the batched step; see the module docstring."""

    def __init__(self, checkpoint: str | os.PathLike, config: SimConfig) -> None:
        self.config = config
        try:
            self.device = torch.device(config.device)
        except RuntimeError as e:
            raise ValueError(f"bad device {config.device!r}: {e}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} asked for, but CUDA is not available here")
        # bf16 where it is fast: 1.6x a step on an AMX CPU at batch 32, frames within 50-60 dB of float32's
        native = self.device.type == "cuda" or (self.device.type == "cpu" and cpu_has_native_bf16())
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                 "auto": torch.bfloat16 if native else torch.float32}[config.dtype]
        self.autocast = dtype != torch.float32
        models, meta = load_export(resolve_checkpoint(checkpoint), self.device)
        if meta["kind"] != "dit":
            raise ExportError(f"{checkpoint} is an autoencoder export (kind {meta['kind']!r}); the simulator needs a "
                              "DiT export (from `worldsim train`), which carries its autoencoder")
        self.meta = meta
        self.autoencoder, self.dit = models["autoencoder"], models["dit"]
        ae, dc = self.autoencoder.cfg, self.dit.config
        if (meta["action_space"] is None) != (dc.action_space is None) or dc.action_space != meta["action_space"]:
            raise ExportError(f"{checkpoint}: the DiT's action space {dc.action_space} differs from the export's "
                              f"{meta['action_space']} (files from different runs?)")
        if dc.latent_channels != ae.latent_channels or dc.action_substeps != ae.temporal_factor:
            raise ExportError(f"{checkpoint}: the DiT expects {dc.latent_channels} latent channels and k={dc.action_substeps}, "
                              f"the autoencoder gives {ae.latent_channels} and k={ae.temporal_factor} (mismatched files)")
        # An action-free model (trained on imported video) only continues footage: `step(tracks, None, ...)`.
        self.action_space = space_from_json(meta["action_space"]) if meta["action_space"] is not None else None
        self.action_dim = packed_dim(self.action_space) if self.action_space is not None else 0
        self.frame_size = (int(meta["frame_size"][0]), int(meta["frame_size"][1]))
        self.k = ae.temporal_factor
        # The context budget when the config leaves it: the one evaluation chose for this export (`serving`, see
        # `worldsim.export.set_serving`), else the context it trained on: its window in latent frames minus the
        # frame it denoises
        window = meta.get("window")
        trained = max(1, num_latent_frames(int(window), self.k) - 1) if window else DEFAULT_BUDGET
        self.scheme = config.scheme(served_context_budget(meta, checkpoint) or trained)
        self.reencode = served_reencode(meta, checkpoint) if config.reencode is None else config.reencode
        _, _, h, w = self.autoencoder.latent_shape(1, *self.frame_size)
        self.latent_hw = (h, w)
        world = meta.get("world") or {}  # the real world it imitates (exports from before it was recorded: none)
        self.rewarded = bool(world.get("rewarded", True))  # a world that never pays gets exactly 0, not head noise
        self.max_episode_steps = config.max_episode_steps or self._episode_limit(world)
        self.render_fps = float(meta.get("fps") or 15.0) / self.k  # one rendered frame per step of k real frames
        self.sampler = partial(SAMPLER_FUNCTIONS[config.sampler], steps=config.sampling_steps,
                               guidance_scale=config.guidance_scale, shift=config.shift, device=self.device)

        # A palette world's frames through the export's pixel refiner (`worldsim.models.frame_refiner`): shown only
        self.refiner = export_refiner(resolve_checkpoint(checkpoint), self.k, ae.palette, self.device) if config.refine else None
        self.reward_model = None
        if config.reward_model is not None:
            from worldsim.models.frame_heads import load_frame_heads

            try:
                self.reward_model = load_frame_heads(config.reward_model)[0].to(self.device)
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(f"reward_model: {e}") from None
        if self.autocast and self.device.type == "cpu":
            exact_gelu(self.dit)
            bf16_parameters(self.dit)
            bf16_parameters(self.autoencoder.decoder)  # the encoder keeps float32 (re-encoding autocasts)
        self._batch_cache = BatchCache(self.scheme.budget)  # incremental: the batch's keys/values kept across steps
        # the last step's streaming states, per track and batched: {"decoder_state" / "encoder_state": (list, dict)}
        self._streamed: dict[str, tuple[list[dict], dict]] = {}
        self._dit_fn = compiled(self.dit, "the DiT") if config.compile else self.dit
        # world heads: each frame's view origin, summed from the actions (`worldsim.models.camera`)
        self._camera_table = self.dit.camera_table if dc.world_heads else None
        self._decode_fn = compiled(self.autoencoder.decode_stream, "the decoder") if config.compile \
            else self.autoencoder.decode_stream

    def require_actions(self, checkpoint: str | os.PathLike) -> None:
        """ExportError unless the model takes actions: an env needs an action space."""
        if self.action_space is None:
            raise ExportError(f"{checkpoint} holds an action-free model (trained on video without actions): it cannot "
                              "be driven as an env; it continues footage: worldsim eval video_store=STORE, or "
                              "worldsim rollout video_store=STORE")

    def _episode_limit(self, world: dict) -> int:
        """The imitated world's episode limit in this simulator's steps (k real frames each); 1000 if unknown."""
        from worldsim.envs import episode_limit

        real = episode_limit(world["env_id"], world.get("env_kwargs")) if world.get("env_id") else None
        return DEFAULT_EPISODE_STEPS if real is None else max(1, -(-real // self.k))

    # ------------------------------------------------------------------ helpers
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else nullcontext()

    def _dit(self, x, level, actions, mask, *args, **kwargs):
        if self.action_space is None:  # an action-free DiT takes no actions at all
            actions = mask = None
        with torch.no_grad(), self._autocast():
            return self._dit_fn(x, level, actions, mask, *args, **kwargs)

    def close(self) -> None:
        """Nothing to release today; kept so envs can close their simulator unconditionally."""

    def check_frames(self, frames: np.ndarray, what: str) -> np.ndarray:
        """uint8 (T, H, W, 3) at the model's frame size, else ValueError naming what is wrong."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        h, w = self.frame_size
        if frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
            raise ValueError(f"{what} must be uint8 (T, {h}, {w}, 3) or one image ({h}, {w}, 3) at the model's "
                             f"frame size {h}x{w}, got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"{what} must be uint8 RGB, got dtype {frames.dtype}")
        if frames.shape[0] < 1:
            raise ValueError(f"{what} holds no frames")
        return frames

    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (T, H, W, 3) encoded and decoded in one pass, as the simulator encodes context and decodes
        latents: what it would draw from perfect latents (the autoencoder's ceiling)."""
        video = frames_to_float(torch.from_numpy(np.ascontiguousarray(self.check_frames(frames, "frames"))))
        with torch.no_grad():
            raw = self.autoencoder.encode(video.to(self.device)[None]).mode()
            with self._autocast():
                return frames_to_uint8(self.autoencoder.decode(raw).float())[0].cpu().numpy()

    # ------------------------------------------------------------------ start
    def start(self, frames: np.ndarray, actions: np.ndarray | None = None, has_action: np.ndarray | None = None) -> Track:
        """Encode context into a new track.

        frames: uint8 (T, H, W, 3); the newest 1 + (n - 1) k of them are used, n = min(context_frames,
            what fits). actions: packed (T, D) with row t the action that led to frame t (row 0 is
            usually none); has_action bool (T,). None: no actions known.
        """
        frames = self.check_frames(frames, "context frames")
        if actions is not None and np.shape(actions) != (frames.shape[0], self.action_dim):
            raise ValueError(f"context actions must be packed ({frames.shape[0]}, {self.action_dim}), one row per frame, "
                             f"got shape {np.shape(actions)}")
        k, n_max = self.k, self.config.context_frames
        n = min(n_max, 1 + (frames.shape[0] - 1) // k)
        used = 1 + (n - 1) * k
        frames = frames[-used:]
        if actions is None:
            actions, has_action = np.zeros((frames.shape[0], self.action_dim)), np.zeros(frames.shape[0], dtype=bool)
        elif has_action is None:
            has_action = np.ones(frames.shape[0], dtype=bool)
        actions, has_action = np.asarray(actions)[-used:], np.asarray(has_action, dtype=bool)[-used:]
        video = frames_to_float(torch.from_numpy(np.ascontiguousarray(frames))).to(self.device)[None]  # (1, T, 3, H, W)
        with torch.no_grad():
            posterior, encoder_state = self.autoencoder.encode_stream(video)  # as `encode`, and the encoder's past
        raw = posterior.mode()  # (1, n, C, h, w)
        z = self.autoencoder.normalize(raw)
        act, mask = group_rows(torch.from_numpy(actions.astype(np.float32))[None], k, 0), \
            group_rows(torch.from_numpy(has_action)[None], k, False)  # (1, n, k, D), (1, n, k)
        act, mask = act.to(self.device), mask.to(self.device)
        with torch.no_grad():
            with self._autocast():
                _, state = self.autoencoder.decode_stream(raw)  # the context decoded once: the decoder's past
        track = Track(length=n, decoder_state=state, last_frame=frames[-1],
                      encoder_state=encoder_state if self.reencode else {})
        track.shown = first_shown(self.refiner.cfg.history, frames) if self.refiner is not None else None
        for i in range(n):
            track.latents[i], track.actions[i], track.masks[i] = z[0, i], act[0, i], mask[0, i]
        camera = None
        if self._camera_table is not None:
            camera = camera_positions(act, mask, self._camera_table)  # (1, n, 2)
            track.cameras, track.camera = dict(enumerate(camera[0])), camera[0, -1]
        if self.config.cache == "incremental":
            index = torch.arange(n, device=self.device)[None]
            cache = self._dit(z, torch.zeros(1, n, device=self.device), act, mask, index, return_cache=True,
                              camera=camera).cache
            track.kv = dict(enumerate(cache.frame_entries()))
        self._prune(track)
        return track

    def _prune(self, track: Track) -> None:
        """Forget frames the scheme will never select again (the schemes are nested)."""
        keep = set(self.scheme.select(track.length))
        for store in (track.latents, track.actions, track.masks, track.kv, track.levels, track.cameras):
            for i in [i for i in store if i not in keep]:
                del store[i]

    # ------------------------------------------------------------------ context
    def _context(self, tracks: Sequence[Track]) -> KVCache:
        """The batch's cache of each track's selected frames, shorter contexts left-padded and masked.

        Incremental: the batch's buffer kept from the last step (`BatchCache`: only new frames are written),
        with a free slot per track for the new frame.
        """
        selections = [self.scheme.select(t.length) for t in tracks]
        if self.config.cache == "incremental":
            return self._batch_cache.context(tracks, selections)
        # recompute: re-encode every track's selected frames, one pass per distinct context length
        caches: list[KVCache | None] = [None] * len(tracks)
        for size, members in _groups([len(s) for s in selections]).items():
            z = torch.stack([torch.stack([tracks[m].latents[i] for i in selections[m]]) for m in members])  # (G, F, C, h, w)
            act = torch.stack([torch.stack([tracks[m].actions[i] for i in selections[m]]) for m in members])
            mask = torch.stack([torch.stack([tracks[m].masks[i] for i in selections[m]]) for m in members])
            index = torch.tensor([selections[m] for m in members], dtype=torch.long, device=self.device)
            level = torch.tensor([[tracks[m].levels.get(i, 0.0) for i in selections[m]] for m in members],
                                 dtype=torch.float32, device=self.device)
            camera = None if self._camera_table is None else \
                torch.stack([torch.stack([tracks[m].cameras[i] for i in selections[m]]) for m in members])
            cache = self._dit(z, level, act, mask, index, return_cache=True, camera=camera).cache
            for j, m in enumerate(members):
                caches[m] = batch_item(cache, j)
        return cat_batch(caches)

    # ------------------------------------------------------------------ step
    def step(self, tracks: Sequence[Track], actions: np.ndarray | None, generators: Sequence[torch.Generator]) -> StepOutput:
        """Advance every track by one latent frame; actions packed (B, D), held for the frame's k sub-steps.

        actions None: no action is known (continuing footage): the frame is sampled with the null action,
        the unconditional model that action dropout trained (`objective.action_dropout`); an action-free
        model takes only None.
        """
        batch = len(tracks)
        if actions is not None and self.action_space is None:
            raise ValueError("this model is action-free (trained on video without actions): step with actions=None")
        cache = self._context(tracks)  # one batch: shorter contexts are padded and masked
        if actions is None:
            act = torch.zeros(batch, 1, self.k, self.action_dim, device=self.device)
            mask = torch.zeros(batch, 1, self.k, dtype=torch.bool, device=self.device)
        else:
            act = torch.as_tensor(np.asarray(actions, dtype=np.float32), device=self.device)  # (B, D)
            act = act[:, None, None, :].expand(batch, 1, self.k, self.action_dim).contiguous()  # (B, 1, k, D)
            mask = torch.ones(batch, 1, self.k, dtype=torch.bool, device=self.device)
        index = torch.tensor([[t.length] for t in tracks], dtype=torch.long, device=self.device)  # (B, 1)
        shape = (1, 1, self.dit.config.latent_channels, *self.latent_hw)
        camera = None  # world heads: the new frame's view origin (B, 1, 2), the newest one moved as the actions say
        if self._camera_table is not None:
            camera = torch.stack([t.camera for t in tracks])[:, None] + camera_steps(act, mask, self._camera_table)

        # A conv prior's guess reads only the context and the actions: computed once a step, not once a call
        # (guidance's unconditional calls, with other actions, compute their own).
        guess = None

        def denoiser(x, level, a, m, fi) -> Tensor:  # one DiT forward per denoising step for the whole batch
            nonlocal guess
            if m is not mask:  # guidance's unconditional call (the view moves as the actions say all the same)
                return self._dit(x, level, a, m, fi, cache=cache, camera=camera).prediction
            out = self._dit(x, level, a, m, fi, cache=cache, prior_guess=guess, camera=camera)
            guess = out.prior_guess
            return out.prediction

        # Each track's noise comes from its own generator, so a sub-env of a vector env gets the
        # same frames as when it runs alone; the sampler is deterministic given its noise.
        noise = torch.cat([torch.randn(shape, generator=g, device=g.device) for g in generators]).to(self.device)
        new = self.sampler(denoiser, noise.shape, noise=noise, actions=act, action_mask=mask,
                           frame_index=index).float()  # (B, 1, C, h, w)
        drawn = None
        if self.reencode:  # the new frames enter the context as the encoder sees them drawn
            drawn = self._decode_new(tracks, new)
            shown = self._reencoded(tracks, drawn)

        # The new frames as later steps will see them: reward, termination and their keys/values. With
        # `context_noise` c > 0 a generated frame enters the context lightly noised, at level c, as
        # context frames were in training (`objective.context_noise_max`): its own errors count for less.
        c = self.config.context_noise
        seen = shown if self.reencode else new
        if c > 0:
            eps = torch.cat([torch.randn(shape, generator=g, device=g.device) for g in generators]).to(self.device)
            seen = add_noise(seen, eps, torch.full((batch, 1), c, device=self.device))
        out = self._dit(seen, torch.full((batch, 1), c, device=self.device), act, mask, index, cache=cache,
                        return_cache=True, prior_guess=guess, camera=camera)
        reward = torch.zeros(batch) if out.reward is None else out.reward[:, 0].float().cpu()
        logit = torch.full((batch,), -1.0) if out.termination_logit is None else out.termination_logit[:, 0].float().cpu()
        new_entries = out.cache.newest_entries()
        if self.config.cache == "incremental":
            self._batch_cache.commit(tracks, seen[:, 0], c)

        for b, t in enumerate(tracks):
            i = t.length
            t.latents[i], t.actions[i], t.masks[i] = seen[b, 0], act[b, 0], mask[b, 0]
            if c > 0:
                t.levels[i] = c
            if camera is not None:
                t.cameras[i] = t.camera = camera[b, 0]
            if self.config.cache == "incremental":
                t.kv[i] = new_entries[b]
            t.length += 1
            self._prune(t)

        if drawn is None:
            drawn = self._decode_new(tracks, new)
        if self.refiner is not None:  # the frames shown, not the latents the DiT reads: those stay its own
            drawn, shown = refine_shown(self.refiner, [t.shown for t in tracks], drawn, actions)
            for t, h in zip(tracks, shown):
                t.shown = h
        frames = drawn.cpu().numpy()  # (B, k, H, W, 3)
        terminated = (torch.sigmoid(logit) > 0.5).numpy()
        if self.reward_model is not None:
            reward, terminated = self._frame_rewards(tracks, frames)
        for t, f in zip(tracks, frames):
            t.last_frame = f[-1]
        reward = reward.numpy().astype(np.float32) if self.rewarded else np.zeros(batch, dtype=np.float32)
        return StepOutput(frames, reward, terminated)

    def _decode_new(self, tracks: Sequence[Track], new: Tensor) -> Tensor:
        """One batched streaming decode of exactly the new latent (B, 1, C, h, w) of every track: uint8 (B, k, H, W, 3)."""
        with torch.no_grad():
            with self._autocast():  # the decoder too: inference only (the bf16 conv backward issue is training's)
                video, state = self._decode_fn(self.autoencoder.denormalize(new),
                                               self._batched_state(tracks, "decoder_state"))
        self._keep_state(tracks, "decoder_state", state)
        return frames_to_uint8(video.float())

    def _reencoded(self, tracks: Sequence[Track], drawn: Tensor) -> Tensor:
        """The new frames uint8 (B, k, H, W, 3) encoded as the continuation of each track's video (streaming, exact):
        normalised latents (B, 1, C, h, w)."""
        with torch.no_grad(), self._autocast():
            posterior, state = self.autoencoder.encode_stream(frames_to_float(drawn).to(self.device),
                                                              self._batched_state(tracks, "encoder_state"))
        self._keep_state(tracks, "encoder_state", state)
        return self.autoencoder.normalize(posterior.mode().float())

    def _batched_state(self, tracks: Sequence[Track], name: str) -> dict:
        """The batch's streaming state `name` (decoder_state or encoder_state): the last step's batched one when the
        same tracks step again with the states it left them (the usual case: nothing copied), else theirs stacked."""
        last = self._streamed.get(name)
        if last is not None and len(last[0]) == len(tracks) \
                and all(getattr(t, name) is s for t, s in zip(tracks, last[0])):
            return last[1]
        return stack_states([getattr(t, name) for t in tracks])

    def _keep_state(self, tracks: Sequence[Track], name: str, state: dict) -> None:
        """Each track's share of the batch's new streaming state `name` (views), the batched one kept for next step."""
        self._streamed[name] = (split_state(state, len(tracks)), state)
        for t, one in zip(tracks, self._streamed[name][0]):
            setattr(t, name, one)

    def _frame_rewards(self, tracks: Sequence[Track], frames: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """Reward (B,) and termination (B,) of each track's k new real frames from the frame model: rewards of
        the k transitions summed, terminated when the chance that any of them ends the episode passes 0.5."""
        batch, k = frames.shape[:2]
        previous = np.stack([t.last_frame for t in tracks])[:, None]  # (B, 1, H, W, 3)
        chain = torch.from_numpy(np.concatenate([previous, frames], axis=1)).to(self.device)  # (B, k + 1, H, W, 3)
        r, p = self.reward_model.predict(chain[:, :-1].flatten(0, 1), chain[:, 1:].flatten(0, 1))
        r, p = r.view(batch, k).float().cpu(), p.view(batch, k).float().cpu()
        return r.sum(dim=1), (1 - (1 - p).prod(dim=1) > 0.5).numpy()

    # ------------------------------------------------------------------ footage
    def continue_free(self, contexts: Sequence[np.ndarray], steps: int, seed: int = 0) -> np.ndarray:
        """Continue clips from their frames with no actions known (imported footage), in one batch.

        Every latent step is sampled with the null action (see `step`); clip i draws its noise from a
        generator seeded ``seed + i``. contexts: N uint8 (c, H, W, 3), the newest
        ``1 + (context_frames - 1) k`` used. Returns uint8 (N, steps k, H, W, 3), the frames after the context.
        """
        tracks = [self.start(np.asarray(c)) for c in contexts]
        generators = [torch.Generator().manual_seed(seed + i) for i in range(len(tracks))]
        frames = [self.step(tracks, None, generators).frames for _ in range(steps)]  # each (N, k, H, W, 3)
        return np.stack(frames, axis=1).reshape(len(tracks), steps * self.k, *self.frame_size, 3)
