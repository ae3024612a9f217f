r"""A trainable flow distribution, and flow priors for the VAE.

:class:`FlowDistribution` is a module whose ``forward(context=None)`` returns the Pyro
distribution

.. math:: x = T(u), \quad u \sim p_0, \qquad
          \log p(x) = \log p_0(T^{-1}(x)) - \log\lvert\det J_T(T^{-1}(x))\rvert,

a :class:`pyro.distributions.TransformedDistribution` over ``dim``-vectors. It is what a
flow prior is (:func:`prior`), and what :class:`probgen.Flow` observes its data from.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from ..distributions.priors import check_vector_distribution
from .bridge import NflowsTransform
from .builders import build

__all__ = ["FlowDistribution", "prior"]


class FlowDistribution(nn.Module):
    r"""A base distribution pushed through a flow and any fixed transforms after it.

    :param transform: a (conditional) flow acting on ``dim``-vectors, e.g. from
        :func:`probgen.flows.build`.
    :param dim: the size of the vectors.
    :param base: ``None`` for :math:`\mathcal N(0, I)`, or a distribution with
        ``event_shape == (dim,)`` and no batch shape.
    :param after: fixed torch transforms applied after the flow (e.g. a sigmoid into a
        bounded range); their log-determinants enter ``log_prob`` like the flow's.
    """

    def __init__(self, transform, dim: int, base: dist.Distribution | None = None, after=()):
        super().__init__()
        conditional = hasattr(transform, "condition")
        if not conditional and not isinstance(transform, torch.distributions.Transform):
            raise TypeError(f"transform must be a torch/Pyro transform or a conditional one, got {type(transform).__name__}")
        flow_dim = getattr(transform, "dim", dim)
        if flow_dim != dim:
            raise ValueError(f"the flow acts on vectors of size {flow_dim}, but dim={dim}")
        if base is not None:
            check_vector_distribution(base, dim, "base")
        self.transform = transform
        self.dim = int(dim)
        self.base = base
        self.after = list(after)
        self.conditional = conditional
        self.context_dim = getattr(transform, "context_dim", None)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)
        self._standard_normal = None  # (device and dtype, the base N(0, I)) once built

    def base_distribution(self) -> dist.TorchDistribution:
        if self.base is not None:
            return self.base
        # built once per device and dtype (it holds no parameters): a flow's log_prob is
        # called every step, and the construction would otherwise cost as much as the
        # base's own log_prob
        key = (self._zero.device, self._zero.dtype)
        if self._standard_normal is None or self._standard_normal[0] != key:
            loc = self._zero.expand(self.dim)
            self._standard_normal = (key, dist.Normal(loc, torch.ones_like(loc)).to_event(1))
        return self._standard_normal[1]

    def forward(self, context: torch.Tensor | None = None) -> dist.TransformedDistribution:
        """The distribution (given ``context``, shape ``batch + (context_dim,)``, for a
        conditional flow: its batch shape is then ``batch``)."""
        base = self.base_distribution()
        if not self.conditional:
            if context is not None:
                raise ValueError("this flow is not conditional: it takes no context")
            # a fresh cache per distribution: its samples are scored without inverting the flow
            flow = self.transform.with_cache() if isinstance(self.transform, NflowsTransform) else self.transform
        else:
            flow = self.transform.condition(context)  # checks the context's shape
            # one distribution per context vector: the batch shape says so
            base = base.expand(context.shape[:-1])
        return dist.TransformedDistribution(base, [flow, *self.after])

    def extra_repr(self):
        return f"dim={self.dim}"


def prior(kind: str, latent_dim: int, *, num_layers: int = 4, hidden: int = 64, base=None, **options) -> FlowDistribution:
    """A trainable flow prior over ``latent_dim``-vectors, for ``pg.VAE(prior=...)``.

    The VAE scores the guide's samples under the prior, so a kind with one-pass
    log_prob (``"maf"``, ``"nsf"``, the coupling kinds) trains fastest; sampling from an
    autoregressive prior costs ``latent_dim`` passes.

    Example::

        >>> import probgen as pg
        >>> p = pg.flows.prior("nsf", 8, num_layers=2)
        >>> p().event_shape, p().sample((3,)).shape
        (torch.Size([8]), torch.Size([3, 8]))
    """
    transform = build(kind, latent_dim, num_layers=num_layers, hidden=hidden, **options)
    return FlowDistribution(transform, latent_dim, base=base)
