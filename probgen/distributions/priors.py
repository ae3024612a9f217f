"""Priors over a latent vector: each is a module whose ``forward()`` returns a Pyro
distribution with ``event_shape == (latent_dim,)``.

Any Pyro distribution of that event shape, or any module or callable returning one,
serves as a prior too; these are the named ones.
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

__all__ = ["DiagonalNormalMixture", "MixturePrior", "StandardNormalPrior", "VampPrior", "check_prior",
           "check_vector_distribution"]


class DiagonalNormalMixture(dist.TorchDistribution):
    r"""A mixture of :math:`K` diagonal Gaussians over :math:`D`-vectors,
    :math:`p(z) = \sum_k \pi_k \mathcal{N}(z; \mu_k, \mathrm{diag}\,\sigma_k^2)`, scored with
    matrix products.

    ``MixtureSameFamily`` forms every :math:`(z_d - \mu_{kd})^2` for every point and component,
    an :math:`N \times K \times D` tensor: for a VampPrior of 500 components scoring the
    thousands of importance samples of an IWAE pass, that tensor, not the networks, is the
    cost. Expanding the square instead,

    .. math:: \sum_d \frac{(z_d - \mu_{kd})^2}{\sigma_{kd}^2}
              = \sum_d z_d^2 \sigma_{kd}^{-2} - 2 \sum_d z_d \mu_{kd} \sigma_{kd}^{-2}
                + \sum_d \mu_{kd}^2 \sigma_{kd}^{-2},

    gives two :math:`(N \times D)(D \times K)` products. The three sums are large and nearly
    cancel where :math:`z` is near a narrow component, so they are formed in float64, which
    keeps the result as exact as the direct float32 formula.

    :param logits: ``(K,)`` unnormalized log mixing weights.
    :param locs: ``(K, D)`` component means.
    :param scales: ``(K, D)`` component standard deviations.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector

    def __init__(self, logits: torch.Tensor, locs: torch.Tensor, scales: torch.Tensor):
        self.logits, self.locs, self.scales = logits, locs, scales
        super().__init__(torch.Size(), torch.Size(locs.shape[-1:]), validate_args=False)

    def log_prob(self, value):
        z = value.double()
        precision = self.scales.double().pow(-2)
        weighted = self.locs.double() * precision
        square = (z * z) @ precision.T - 2 * z @ weighted.T + (self.locs.double() * weighted).sum(-1)
        normalizer = self.scales.double().log().sum(-1) + 0.5 * self.locs.shape[-1] * math.log(2 * math.pi)
        components = -0.5 * square - normalizer + torch.log_softmax(self.logits.double(), -1)
        return torch.logsumexp(components, -1).to(value.dtype)

    def sample(self, sample_shape=()):
        with torch.no_grad():
            index = dist.Categorical(logits=self.logits).sample(sample_shape)
            return self.locs[index] + self.scales[index] * torch.randn_like(self.locs[index])


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
        return DiagonalNormalMixture(self.logits, self.locs, self.log_scales.exp())


class VampPrior(nn.Module):
    r"""The variational mixture of posteriors prior (Tomczak & Welling, 2018):
    :math:`p(z) = \frac1K \sum_k q(z \mid u_k)` with learned pseudo-inputs :math:`u_k`.

    :param posterior: a callable mapping a batch of pseudo-inputs to ``(loc, scale)``
        of the encoder's diagonal Normal (the VAE passes its own encoder head).
    :param pseudo_inputs: initial pseudo-inputs, shape ``(K,) + event_shape``, in the
        encoder's input space.
    :param bounds: ``(low, high)``: the encoder reads the pseudo-inputs clamped to this range
        (a hardtanh: a pixel pushed past a bound stays there, with no gradient), as Tomczak &
        Welling's final code keeps them in ``[0, 1]``; ``None``: read as they are.

    References:
        Tomczak, Welling (2018). VAE with a VampPrior. AISTATS.
    """

    def __init__(self, posterior, pseudo_inputs: torch.Tensor, bounds: tuple[float, float] | None = None):
        super().__init__()
        if bounds is not None and not (len(bounds) == 2 and float(bounds[0]) < float(bounds[1])):
            raise ValueError(f"bounds must be None or (low, high) with low < high, got {bounds!r}")
        self.posterior = posterior
        self.pseudo_inputs = nn.Parameter(pseudo_inputs.clone())
        self.bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))

    def inputs(self) -> torch.Tensor:
        """The pseudo-inputs as the encoder reads them (clamped to ``bounds`` where given)."""
        return self.pseudo_inputs if self.bounds is None else self.pseudo_inputs.clamp(*self.bounds)

    def forward(self):
        loc, scale = self.posterior(self.inputs())
        return DiagonalNormalMixture(torch.zeros(loc.shape[0], device=loc.device, dtype=loc.dtype), loc, scale)


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
