"""The autoencoder's posterior: a diagonal Gaussian over latent frames."""

from __future__ import annotations

import torch

# Bounds on log-variance, as in the LDM autoencoder: keep exp() finite early in training, when the
# encoder can emit large values.
LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))) with mean/logvar of shape ``(B, T', C, h, w)``."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        if mean.shape != logvar.shape:
            raise ValueError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ in shape")
        self.mean = mean
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def shape(self) -> torch.Size:
        return self.mean.shape

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised draw ``mean + std * eps``, same shape as ``mean``."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        """The most likely latent (the mean); deterministic."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, averaged over latent elements (nats per element): ``(B,)``.

        Averaging (rather than summing) keeps `kl_weight` meaningful across latent sizes.
        """
        kl = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)  # (B, T', C, h, w)
        return kl.flatten(1).mean(dim=1)
