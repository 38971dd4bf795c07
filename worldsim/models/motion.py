"""What the DiT's previous-frame pathway can do with the previous latent frame before it reads it.

- `MotionKernel` (`DiTConfig.motion_radius`, `motion_gate`): the whole frame moved by a kernel the frame's actions
  choose (CDNA, Finn et al. 2016); a gate can decide from what the frame shows whether the move happens at all.
- `composite_v` (`DiTConfig.motion_composite`): the DiT's estimate composited with that moved frame.
- `MotionField` (`DiTConfig.motion_field`): each latent pixel moved by its own kernel (a dynamic filter network).
- `ConvPrior` (`DiTConfig.conv_prior`): a conv net's guess of the next frame.
See `worldsim.models.dit`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from worldsim.diffusion.objective import schedule


GATE_GRID = 9  # the motion gate's features pooled to 9 x 9 cells before its linear read-out (Crafter: one per tile)


class MotionKernel(nn.Module):
    """Previous latent moved by an action-chosen kernel: (B, T, C, h, w) x cond (B, T, D) -> (B, T, C, h, w).

    Per frame, `groups` softmax-normalised (2r+1) x (2r+1) kernels (weights >= 0 summing to 1, so a
    kernel moves and blends, never amplifies); group g moves latent channels [g C/G, (g+1) C/G).
    Zero padding at the borders: what enters the view is unknown, the DiT fills it in.
    With `gate` > 0, a conv net reads the previous latent and the action and gives p = P(the move succeeds);
    the kernel becomes p * (action's kernel) + (1 - p) * identity.
    """

    def __init__(self, dim: int, channels: int, radius: int, groups: int, context: int = 0, gate: int = 0) -> None:
        super().__init__()
        self.radius, self.groups, self.channels, self.context, self.gate = radius, groups, channels, context, gate
        taps = (2 * radius + 1) ** 2
        self.head = nn.Linear(dim, groups * taps)
        if context:  # what the previous frame shows, pooled, joins the action in a small MLP (output zeroed at first)
            self.context_mlp = nn.Sequential(nn.Linear(channels * context * context + dim, dim), nn.GELU(),
                                             nn.Linear(dim, groups * taps))
        if gate:  # convolutions, then a linear map over a fixed grid: where a thing is matters (next to the player)
            self.gate_action = nn.Linear(dim, gate)
            self.gate_net = nn.Sequential(
                nn.Conv2d(channels + gate, gate, 3, padding=1), nn.SiLU(),
                nn.Conv2d(gate, gate, 3, padding=1), nn.SiLU(), nn.Conv2d(gate, gate, 3, padding=1), nn.SiLU(),
                nn.AdaptiveAvgPool2d(GATE_GRID), nn.Flatten(), nn.Linear(gate * GATE_GRID * GATE_GRID, 1))

    def reset_to_identity(self) -> None:
        """Weight zero, bias peaked on the centre tap: every kernel starts as (nearly) the identity."""
        taps = (2 * self.radius + 1) ** 2
        nn.init.zeros_(self.head.weight)
        bias = torch.zeros(self.groups, taps)
        bias[:, taps // 2] = 8.0  # softmax weight 1 - 80 e^-8: 0.97 on the centre for r = 4
        with torch.no_grad():
            self.head.bias.copy_(bias.flatten())
        if self.context:
            nn.init.zeros_(self.context_mlp[-1].weight)
            nn.init.zeros_(self.context_mlp[-1].bias)
        self.reset_gate()

    def reset_gate(self) -> None:
        """The gate's output at p = sigmoid(6) = 0.998 whatever it sees: the action's kernel, as without a gate."""
        if self.gate:
            nn.init.zeros_(self.gate_net[-1].weight)
            nn.init.constant_(self.gate_net[-1].bias, 6.0)

    def gate_logit(self, previous: Tensor, cond: Tensor) -> Tensor:
        """(B, T) logit of "this frame's move succeeds" from previous (B, T, C, h, w) and cond (B, T, D)."""
        b, t, c, h, w = previous.shape
        action = self.gate_action(cond).float().reshape(b * t, self.gate, 1, 1).expand(-1, -1, h, w)
        x = torch.cat([previous.float().reshape(b * t, c, h, w), action], dim=1)
        return self.gate_net(x).view(b, t)

    def weights(self, previous: Tensor, cond: Tensor, gate_logit: Tensor | None = None) -> Tensor:
        """(B*T, groups, taps) softmax kernel weights for previous (B, T, C, h, w) and cond (B, T, D); a gate's
        logit (B, T) may be given when the caller already has it (`gate_logit`)."""
        b, t, c, h, w = previous.shape
        logits = self.head(cond).float()
        if self.context:
            pooled = torch.nn.functional.adaptive_avg_pool2d(previous.float().reshape(b * t, c, h, w), self.context)
            features = torch.cat([pooled.reshape(b, t, -1).to(cond.dtype), cond], dim=-1)
            logits = logits + self.context_mlp(features).float()
        kernels = logits.view(b * t, self.groups, -1).softmax(dim=-1)
        if self.gate:
            logit = self.gate_logit(previous, cond) if gate_logit is None else gate_logit
            p = torch.sigmoid(logit).reshape(b * t, 1, 1)
            identity = torch.zeros_like(kernels[:1])
            identity[..., kernels.shape[-1] // 2] = 1.0
            kernels = p * kernels + (1 - p) * identity
        return kernels

    def forward(self, previous: Tensor, cond: Tensor, gate_logit: Tensor | None = None) -> Tensor:
        b, t, c, h, w = previous.shape
        r, g = self.radius, self.groups
        size = 2 * r + 1
        kernels = self.weights(previous, cond, gate_logit)  # (BT, G, taps)
        kernels = kernels.repeat_interleave(c // g, dim=1).view(b * t * c, 1, size, size)  # one per (sample, channel)
        x = previous.float().reshape(1, b * t * c, h, w)
        moved = torch.nn.functional.conv2d(x, kernels, padding=r, groups=b * t * c)  # (1, BTC, h, w)
        return moved.view(b, t, c, h, w).to(previous.dtype)


def frames_and_action(previous: Tensor, earlier: Tensor, cond: Tensor | None, action: nn.Linear) -> Tensor:
    """(B*T, 2C + W, h, w): previous and earlier (B, T, C, h, w) stacked with the action embedding cond (B, T, D)
    mapped by `action` to W channels and spread over the frame (zeros without actions): what `MotionField` and
    `ConvPrior` read."""
    b, t, c, h, w = previous.shape
    width = action.out_features
    act = torch.zeros(b * t, width, device=previous.device) if cond is None else action(cond).float().reshape(b * t, width)
    return torch.cat([previous.float().reshape(b * t, c, h, w), earlier.float().reshape(b * t, c, h, w),
                      act[:, :, None, None].expand(-1, -1, h, w)], dim=1)


class MotionField(nn.Module):
    """The previous latent moved by a kernel chosen per latent pixel (a dynamic filter network, Jia et al. 2016):
    previous, earlier (B, T, C, h, w) x cond (B, T, D) -> (B, T, C, h, w) (`DiTConfig.motion_field`).

    A small convolutional net reads the previous frame, the one before it and the action, and gives each latent
    pixel its own softmax (2r+1) x (2r+1) kernel over the previous frame: where something moves on its own (a ball
    in flight), its displacement between the two frames says where it goes next, and dilated convolutions see far
    enough (about 2r latent pixels) to carry it on. Unlike `MotionKernel` it moves each object its own way, not the
    whole view by the action. Its last layer starts at zero: every kernel starts as a uniform blur, which the DiT
    (whose embedding of it starts at zero) ignores until the objective's `field_weight` has fitted it.
    """

    def __init__(self, dim: int, channels: int, radius: int, width: int) -> None:
        super().__init__()
        self.radius, self.taps = radius, (2 * radius + 1) ** 2
        self.action = nn.Linear(dim, width)
        self.net = nn.Sequential(
            nn.Conv2d(2 * channels + width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, self.taps, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def weights(self, previous: Tensor, earlier: Tensor, cond: Tensor | None) -> Tensor:
        """(B*T, taps, h, w) softmax kernel weights of each latent pixel."""
        return self.net(frames_and_action(previous, earlier, cond, self.action)).float().softmax(dim=1)

    def forward(self, previous: Tensor, earlier: Tensor, cond: Tensor | None) -> Tensor:
        b, t, c, h, w = previous.shape
        kernels = self.weights(previous, earlier, cond)  # (BT, taps, h, w)
        size = 2 * self.radius + 1
        # each pixel's (2r+1)^2 neighbourhood, in the order conv2d's kernel taps take (row-major offsets -r..r)
        patches = torch.nn.functional.unfold(previous.float().reshape(b * t, c, h, w), size, padding=self.radius)
        moved = (patches.view(b * t, c, self.taps, h, w) * kernels[:, None]).sum(dim=2)
        return moved.view(b, t, c, h, w).to(previous.dtype)


PRIOR_DILATIONS = (1, 2, 4, 8, 1, 2, 4, 1)  # each latent pixel of a 16 x 16 latent sees all of it


class PriorBlock(nn.Module):
    """x + conv(silu(conv(silu(norm(x))))), the first convolution dilated."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        # The convolutions run channels-last (`ConvPrior`); PyTorch's group norm is slow on channels-last 16 x 16
        # frames, so it normalises a contiguous copy (a no-op for a contiguous x)
        layout = torch.contiguous_format if x.is_contiguous() else torch.channels_last
        h = self.norm(x.contiguous()).contiguous(memory_format=layout)
        return x + self.conv2(torch.nn.functional.silu(self.conv1(torch.nn.functional.silu(h))))


class ConvPrior(nn.Module):
    """A convolutional guess of the next latent: previous, earlier (B, T, C, h, w) x cond (B, T, D) -> (B, T, C, h, w)
    (`DiTConfig.conv_prior`).

    `scripts/conv_next_latent.py` found that a plain conv net regresses the probe world's next latent with a third
    less error than the DiT's one-step estimate (translation-equivariant, at full latent resolution, where the DiT
    sees 2 x 2 patches). This is that net, fed the two frames the DiT already reads and the action: the previous
    frame plus a residual from a 3 x 3 convolution, 8 residual blocks (dilations 1-2-4-8-1-2-4-1) and a 3 x 3
    output convolution that starts at zero, so it starts as copying. The DiT reads its guess as one more per-token
    input (zero at first) and corrects it; objective.prior_weight fits it to the next frame.

    `heads` K > 1 (`DiTConfig.prior_heads`): K guesses and a choice among them, made per frame from what the frames
    show, so that where the next frame is one of a few outcomes (a move that succeeds or is blocked) the guess
    commits to one instead of averaging them. Fitted winner-takes-all (`committed_loss`, in
    `worldsim.train.motion_field`); the guess is the chosen head's. Added to a one-head prior it guesses as before.

    `frames` F > 2 (`DiTConfig.prior_frames`): it also reads the F - 2 frames before those two (`older`, newest
    first), through a convolution of their own that starts at zero (so a prior given more frames guesses as
    before): a ball that went behind an occluder a few frames ago is still in them.
    """

    def __init__(self, dim: int, channels: int, width: int, heads: int = 1, frames: int = 2) -> None:
        super().__init__()
        self.heads, self.frames = heads, frames
        self.action = nn.Linear(dim, width)
        self.inp = nn.Conv2d(2 * channels + width, width, 3, padding=1)
        self.older = nn.Conv2d((frames - 2) * channels, width, 3, padding=1, bias=False) if frames > 2 else None
        if self.older is not None:
            nn.init.zeros_(self.older.weight)
        self.blocks = nn.Sequential(*(PriorBlock(width, d) for d in PRIOR_DILATIONS))
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        # heads > 1: more guesses (each starts as copying) and a choice among them (starts choosing the first)
        self.alt = nn.Conv2d(width, channels * (heads - 1), 3, padding=1) if heads > 1 else None
        self.choose = nn.Conv2d(width, heads, 3, padding=1) if heads > 1 else None
        for conv in (self.out, self.alt, self.choose):
            if conv is not None:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def hypotheses(self, previous: Tensor, earlier: Tensor, cond: Tensor | None,
                   older: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Every head's guess (B, T, K, C, h, w) and the choice's logits (B, T, K) (None with one head); `older`
        (B, T, F - 2, C, h, w) newest first, for a prior of F > 2 frames."""
        b, t, c, h, w = previous.shape
        if (older is None) != (self.older is None) or (older is not None and older.shape[2] != self.frames - 2):
            raise ValueError(f"this conv prior reads {self.frames} frames: older must hold the {self.frames - 2} "
                             f"before the earlier one, got {None if older is None else tuple(older.shape)}")
        # channels-last convolutions: the same values, the prior 20% faster on a CPU in bf16 (no layout reorders)
        inputs = frames_and_action(previous, earlier, cond, self.action).contiguous(memory_format=torch.channels_last)
        x = self.inp(inputs)
        if older is not None:
            x = x + self.older(older.float().reshape(b * t, -1, h, w).contiguous(memory_format=torch.channels_last))
        features = torch.nn.functional.silu(self.blocks(x))
        residual = self.out(features) if self.alt is None else torch.cat([self.out(features), self.alt(features)], 1)
        residual = residual.contiguous()
        guesses = previous.float()[:, :, None] + residual.float().view(b, t, self.heads, c, h, w)
        logits = None if self.choose is None else self.choose(features).float().mean(dim=(2, 3)).view(b, t, self.heads)
        return guesses, logits

    def forward(self, previous: Tensor, earlier: Tensor, cond: Tensor | None, older: Tensor | None = None) -> Tensor:
        guesses, logits = self.hypotheses(previous, earlier, cond, older)
        if logits is None:
            return guesses[:, :, 0].to(previous.dtype)
        pick = logits.argmax(dim=-1)[:, :, None, None, None, None].expand(-1, -1, 1, *guesses.shape[3:])
        return guesses.gather(2, pick)[:, :, 0].to(previous.dtype)

    def committed_loss(self, previous: Tensor, earlier: Tensor, cond: Tensor | None, target: Tensor,
                       spread: float = 0.05, choice_weight: float = 0.05,
                       older: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Winner-takes-all fit of the heads to `target` (B, T, C, h, w): the closest head's squared error, `spread`
        times every head's (so none is left behind), and the choice's cross-entropy against the closest head.
        Returns the loss and {"chosen", "oracle", "first"}: the mean squared error of the chosen head and of the
        closest, and how often the choice falls on the first head."""
        guesses, logits = self.hypotheses(previous, earlier, cond, older)
        err = (guesses - target.float()[:, :, None]).pow(2).mean(dim=(3, 4, 5))  # (B, T, K)
        best = err.argmin(dim=-1)
        oracle = err.gather(-1, best[..., None]).mean()
        if logits is None:
            return oracle, {"chosen": oracle.detach(), "oracle": oracle.detach(), "first": torch.ones(())}
        choice = torch.nn.functional.cross_entropy(logits.flatten(0, 1), best.flatten())
        pick = logits.argmax(dim=-1)
        parts = {"chosen": err.gather(-1, pick[..., None]).mean().detach(), "oracle": oracle.detach(),
                 "first": (pick == 0).float().mean()}
        return oracle + spread * err.mean() + choice_weight * choice, parts


def composite_v(v: Tensor, x: Tensor, level: Tensor, moved: Tensor, previous_level: Tensor, mask: Tensor) -> Tensor:
    """The v-prediction whose clean-frame estimate is (1 - w) x0 + w moved, w = mask sigma^2 alpha_prev^2
    (`DiTConfig.motion_composite`). v, x, moved (B, T, C, h, w); level, previous_level (B, T); mask (B, T, 1, h, w).

    With x_t = alpha x0 + sigma eps and v = alpha eps - sigma x0, the estimate is x0 = alpha x_t - sigma v, so
    moving it by -w (x0 - moved) adds w / sigma (x0 - moved) = mask sigma alpha_prev^2 (x0 - moved) to v.
    """
    alpha, sigma = (a[:, :, None, None, None] for a in schedule(level.float()))
    alpha_prev = schedule(previous_level.float())[0][:, :, None, None, None]
    v32 = v.float()
    x0 = alpha * x.float() - sigma * v32
    return (v32 + mask * sigma * alpha_prev.square() * (x0 - moved.float())).to(v.dtype)
