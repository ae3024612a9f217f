"""Priors over a latent vector: each is a module whose ``forward()`` returns a Pyro
distribution with ``event_shape == (latent_dim,)``.

Any Pyro distribution of that event shape, or any module or callable returning one,
serves as a prior too; these are the named ones.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

__all__ = ["StandardNormalPrior", "MixturePrior", "VampPrior", "check_prior", "check_vector_distribution"]


class StandardNormalPrior(nn.Module):
    r""":math:`p(z) = \mathcal{N}(0, I_d)`."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self):
        return dist.Normal(self.loc, torch.ones_like(self.loc)).to_event(1)


class MixturePrior(nn.Module):
    r"""A trainable mixture of ``num_components`` diagonal Gaussians,
    :math:`p(z) = \sum_k \pi_k \mathcal{N}(z; \mu_k, \mathrm{diag}\,\sigma_k^2)`."""

    def __init__(self, latent_dim: int, num_components: int = 10, spread: float = 1.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.locs = nn.Parameter(spread * torch.randn(num_components, latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(num_components, latent_dim))

    def forward(self):
        components = dist.Normal(self.locs, self.log_scales.exp()).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), components)


class VampPrior(nn.Module):
    r"""The variational mixture of posteriors prior (Tomczak & Welling, 2018):
    :math:`p(z) = \frac1K \sum_k q(z \mid u_k)` with learned pseudo-inputs :math:`u_k`.

    :param posterior: a callable mapping a batch of pseudo-inputs to ``(loc, scale)``
        of the encoder's diagonal Normal (the VAE passes its own encoder head).
    :param pseudo_inputs: initial pseudo-inputs, shape ``(K,) + event_shape``, in the
        encoder's input space.

    References:
        Tomczak, Welling (2018). VAE with a VampPrior. AISTATS.
    """

    def __init__(self, posterior, pseudo_inputs: torch.Tensor):
        super().__init__()
        self.posterior = posterior
        self.pseudo_inputs = nn.Parameter(pseudo_inputs.clone())

    def forward(self):
        loc, scale = self.posterior(self.pseudo_inputs)
        mixing = dist.Categorical(logits=torch.zeros(loc.shape[0], device=loc.device))
        return dist.MixtureSameFamily(mixing, dist.Normal(loc, scale).to_event(1))


def check_vector_distribution(distribution, dim: int, what: str) -> None:
    """Raise a clear error unless ``distribution`` is a torch/Pyro distribution over
    ``dim``-vectors (event shape ``(dim,)``, batch shape ``()``); ``what`` names it."""
    if not isinstance(distribution, torch.distributions.Distribution):
        raise TypeError(f"{what} must be a torch/Pyro Distribution, got {type(distribution).__name__}")
    if tuple(distribution.event_shape) != (dim,) or tuple(distribution.batch_shape) != ():
        raise ValueError(
            f"{what} must have event_shape ({dim},) and batch_shape (), got "
            f"event_shape {tuple(distribution.event_shape)} and batch_shape {tuple(distribution.batch_shape)}; "
            "use .to_event(1) on a vector of independent scalars"
        )


def check_prior(prior: dist.Distribution, latent_dim: int) -> None:
    """Raise a clear error unless ``prior`` is a distribution over ``latent_dim``-vectors."""
    check_vector_distribution(prior, latent_dim, "the prior")
