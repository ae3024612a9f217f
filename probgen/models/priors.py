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

__all__ = ["FixedPrior", "CallablePrior", "resolve_prior", "move_distribution", "PSEUDO_INPUTS", "check_pseudo_inputs"]


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


#: How a VampPrior's pseudo-inputs start and what the encoder reads: ``"uniform"`` (uniform in
#: ``[0, 1]``, read as they are) or ``"clamped"`` (``0.05 ± 0.01``, read clamped to ``[0, 1]``:
#: Tomczak & Welling's final code; for discrete data, whose network inputs lie in ``[0, 1]``).
PSEUDO_INPUTS = ("uniform", "clamped")


def check_pseudo_inputs(pseudo_inputs, likelihood) -> str:
    """Raise a clear error unless ``pseudo_inputs`` is one of :data:`PSEUDO_INPUTS` and suits
    the model's ``likelihood`` (``"clamped"`` needs discrete data, read in ``[0, 1]``); return it."""
    if not isinstance(pseudo_inputs, str) or pseudo_inputs not in PSEUDO_INPUTS:
        raise ValueError(f"pseudo_inputs must be one of {list(PSEUDO_INPUTS)}, got {pseudo_inputs!r}")
    info = getattr(likelihood, "info", None)
    if pseudo_inputs == "clamped" and (info is None or not info.is_discrete):
        what = f"this data is {info.support}-valued" if info is not None else "a callable likelihood reads raw data"
        raise ValueError("pseudo_inputs='clamped' keeps the pseudo-inputs in [0, 1], where the encoder reads discrete "
                         f"data; {what}: use pseudo_inputs='uniform'")
    return pseudo_inputs


def resolve_prior(prior, latent_dim: int, posterior_params=None, event_shape=None, *,
                  num_pseudo_inputs: int = 50, pseudo_inputs: str = "uniform") -> nn.Module:
    """Turn any accepted prior specification into a module whose ``forward()`` returns it.

    :param posterior_params: the encoder head ``x -> (loc, scale)`` a VampPrior reads.
    :param event_shape: the data's shape, for a VampPrior's pseudo-inputs.
    :param num_pseudo_inputs: how many pseudo-inputs a VampPrior learns.
    :param pseudo_inputs: how they start and what the encoder reads (:data:`PSEUDO_INPUTS`).
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
        if pseudo_inputs == "clamped":  # Tomczak & Welling's final form
            return VampPrior(posterior_params, 0.05 + 0.01 * torch.randn(num_pseudo_inputs, *event_shape), (0.0, 1.0))
        return VampPrior(posterior_params, torch.rand(num_pseudo_inputs, *event_shape))
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
