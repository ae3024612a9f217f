"""The prior of a latent-variable model, from any of the forms a user may give it.

:func:`resolve_prior` turns a name (``"normal"``, ``"mixture"``, ``"vamp"``, a flow kind), a
Pyro distribution over ``latent_dim``-vectors, a module or a callable into a module whose
``forward()`` returns the prior distribution, so that its parameters (if any) train with the
model and its tensors move with it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..distributions import MixturePrior, StandardNormalPrior, VampPrior, check_prior
from ..flows import FLOW_KINDS, prior as flow_prior

__all__ = ["FixedPrior", "CallablePrior", "resolve_prior", "move_distribution"]


def move_distribution(d: torch.distributions.Distribution, device) -> torch.distributions.Distribution:
    """A shallow copy of a torch distribution with every tensor moved to ``device``."""
    moved = copy.copy(d)
    for key, value in vars(d).items():
        if isinstance(value, torch.Tensor):
            setattr(moved, key, value.to(device))
        elif isinstance(value, torch.distributions.Distribution):
            setattr(moved, key, move_distribution(value, device))
    return moved


def _device_of(d: torch.distributions.Distribution) -> torch.device:
    for value in vars(d).values():
        if isinstance(value, torch.Tensor):
            return value.device
        if isinstance(value, torch.distributions.Distribution):
            return _device_of(value)
    return torch.device("cpu")


class FixedPrior(nn.Module):
    """Holds a user's distribution and moves its tensors along with the model: a buffer that
    ``model.to(device)`` moves tells where they should be."""

    def __init__(self, distribution: torch.distributions.Distribution):
        super().__init__()
        self.distribution = distribution
        self.held_on = _device_of(distribution)
        self.register_buffer("anchor", torch.zeros((), device=self.held_on), persistent=False)

    def forward(self):
        if self.anchor.device != self.held_on:
            self.distribution = move_distribution(self.distribution, self.anchor.device)
            self.held_on = self.anchor.device
        return self.distribution


class CallablePrior(nn.Module):
    """A prior given as a callable that returns a distribution."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self):
        return self.fn()


def resolve_prior(prior, latent_dim: int, posterior_params=None, event_shape=None, *,
                  num_pseudo_inputs: int = 50) -> nn.Module:
    """Turn any accepted prior specification into a module whose ``forward()`` returns it.

    :param posterior_params: the encoder head ``x -> (loc, scale)`` a VampPrior reads.
    :param event_shape: the data's shape, for a VampPrior's pseudo-inputs.
    :param num_pseudo_inputs: how many pseudo-inputs a VampPrior learns.
    """
    if prior is None or prior == "normal":
        return StandardNormalPrior(latent_dim)
    if prior == "mixture":
        return MixturePrior(latent_dim)
    if prior in FLOW_KINDS:
        return flow_prior(prior, latent_dim)
    if prior == "vamp":
        if posterior_params is None:
            raise ValueError("the 'vamp' prior needs an encoder: only a VAE or a HierarchicalVAE takes it")
        pseudo_inputs = torch.rand(num_pseudo_inputs, *event_shape)
        return VampPrior(posterior_params, pseudo_inputs)
    if isinstance(prior, str):
        raise ValueError(
            f"unknown prior {prior!r}; expected 'normal', 'mixture', 'vamp', a flow kind {list(FLOW_KINDS)}, "
            "a distribution or a module"
        )
    if isinstance(prior, torch.distributions.Distribution):
        check_prior(prior, latent_dim)
        return FixedPrior(prior)
    if isinstance(prior, nn.Module):
        return prior
    if callable(prior):
        return CallablePrior(prior)
    raise TypeError(f"cannot use {type(prior).__name__} as a prior")
