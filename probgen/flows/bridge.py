r"""nflows transforms as Pyro/torch transforms.

An nflows :class:`~nflows.transforms.Transform` maps data to noise: ``t(x) -> (u, log|du/dx|)``
and ``t.inverse(u) -> (x, log|dx/du|)``. A torch :class:`~torch.distributions.Transform`
inside a :class:`~pyro.distributions.TransformedDistribution` maps noise to data. The
bridge flips the directions:

.. math::

    T(u) = t^{-1}(u), \qquad T^{-1}(x) = t(x), \qquad
    \log\lvert\det J_T(u)\rvert = -\log\lvert\det J_t(x)\rvert,

and keeps the log-determinant that nflows returns together with each output, so
``log_abs_det_jacobian`` after a call or an inverse costs nothing: a sample's log-density is
one pass in the sampling direction, a data point's one pass in the density direction.

The cache lives as long as one distribution: :meth:`NflowsTransform.with_cache` and
:meth:`ConditionalNflowsTransform.condition` return a light :class:`BoundNflowsTransform`
(sharing the module's parameters) with its own cache, which
:class:`~probgen.flows.FlowDistribution` makes afresh for every distribution it returns.
The module itself caches nothing (``cache_size=0``): a cache keyed by tensor identity on a
long-lived module would hand back stale values for the same tensor after an optimizer step
or ``load_state_dict``.

nflows wants ``(N, D)`` inputs; the bridge folds any leading batch dimensions into ``N``
(and broadcasts a context against them) and unfolds the results.

References:
    Durkan, Bekasov, Murray, Papamakarios (2020). nflows: normalizing flows in PyTorch.
    doi:10.5281/zenodo.4296287.
"""

from __future__ import annotations

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from torch.distributions import constraints

__all__ = ["NflowsTransform", "ConditionalNflowsTransform", "BoundNflowsTransform", "check_context"]


def _check_value(value, dim, what):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"the flow's {what} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() < 1 or value.shape[-1] != dim:
        raise ValueError(f"the flow acts on vectors of size {dim}: expected {what} of shape (..., {dim}), got {tuple(value.shape)}")


def check_context(context, context_dim):
    """Raise a clear error unless ``context`` is a tensor of shape ``(..., context_dim)``."""
    if context is None:
        raise ValueError(f"this flow is conditional: it needs a context of shape (..., {context_dim}), got None")
    if not isinstance(context, torch.Tensor):
        raise TypeError(f"the context must be a torch.Tensor, got {type(context).__name__}")
    if context.dim() < 1 or context.shape[-1] != context_dim:
        raise ValueError(f"the context must have shape (..., {context_dim}), got {tuple(context.shape)}")


class _NflowsCalls:
    """The flipped directions and the log-det cache, shared by the module and its bound
    views. Subclasses set ``_nflows``, ``dim``, ``_context`` and ``_context_dim``."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    # (x, y, log|det dy/dx|) of the last call in either direction, matched by identity
    _logdet_cache = (None, None, None)

    def _run(self, method, value, what):
        _check_value(value, self.dim, what)
        batch = value.shape[:-1]
        context = self._context
        if context is not None:
            try:
                batch = torch.broadcast_shapes(batch, context.shape[:-1])
            except RuntimeError:
                raise ValueError(
                    f"the context's batch shape {tuple(context.shape[:-1])} does not broadcast with the "
                    f"{what}'s batch shape {tuple(batch)}"
                ) from None
            value = value.expand(*batch, self.dim)
            context = context.expand(*batch, self._context_dim).reshape(-1, self._context_dim)
        output, logdet = method(value.reshape(-1, self.dim), context)
        return output.reshape(*batch, self.dim), logdet.reshape(batch)

    def _call(self, x):
        # noise -> data is nflows' inverse direction; it returns log|dy/dx| directly
        y, logdet = self._run(self._nflows.inverse, x, "input")
        if self._cache_size:
            self._logdet_cache = (x, y, logdet)
        return y

    def _inverse(self, y):
        x, logdet = self._run(self._nflows, y, "value")
        if self._cache_size:
            self._logdet_cache = (x, y, -logdet)
        return x

    def log_abs_det_jacobian(self, x, y):
        x_old, y_old, logdet = self._logdet_cache
        if x is x_old and y is y_old:
            return logdet
        # not the pair of the last call: one pass in the density direction recomputes it
        _, logdet = self._run(self._nflows, y, "value")
        return -logdet


class BoundNflowsTransform(_NflowsCalls, torch.distributions.Transform):
    """An nflows transform (and, if conditional, its context) with its own cache: what one
    distribution uses. The context broadcasts against the leading batch dimensions of the
    values it transforms. Made by :meth:`NflowsTransform.with_cache` and
    :meth:`ConditionalNflowsTransform.condition`."""

    def __init__(self, transform: torch.nn.Module, dim: int, context=None, context_dim=None, cache_size: int = 1):
        super().__init__(cache_size=cache_size)
        self._nflows = transform
        self.dim = dim
        self._context = context
        self._context_dim = context_dim

    def with_cache(self, cache_size=1):
        if cache_size == self._cache_size:
            return self
        return BoundNflowsTransform(self._nflows, self.dim, self._context, self._context_dim, cache_size)


class NflowsTransform(_NflowsCalls, TransformModule):
    r"""A Pyro :class:`~pyro.distributions.torch_transform.TransformModule` that runs an
    nflows transform in the noise-to-data direction.

    :param transform: an nflows transform on vectors of size ``dim`` (data to noise).
    :param dim: the size of the vectors it acts on.

    The module caches nothing; ``with_cache()`` gives a view with the log-det cache, to use
    in one distribution (:class:`~probgen.flows.FlowDistribution` does this for you).

    Example::

        >>> import torch, pyro.distributions as dist
        >>> from nflows.transforms import MaskedAffineAutoregressiveTransform
        >>> t = NflowsTransform(MaskedAffineAutoregressiveTransform(3, 16), 3)
        >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1).to_event(1), [t.with_cache()])
        >>> d.log_prob(d.sample((5, 2))).shape
        torch.Size([5, 2])
    """

    _context = None
    _context_dim = None

    def __init__(self, transform: torch.nn.Module, dim: int):
        super().__init__(cache_size=0)
        self.nflows = transform
        self.dim = int(dim)

    @property
    def _nflows(self):
        return self.nflows

    def with_cache(self, cache_size: int = 1):
        if cache_size == self._cache_size:
            return self
        return BoundNflowsTransform(self.nflows, self.dim, cache_size=cache_size)

    def extra_repr(self):
        return f"dim={self.dim}"


class ConditionalNflowsTransform(ConditionalTransformModule):
    r"""A Pyro :class:`~pyro.distributions.conditional.ConditionalTransformModule` for an
    nflows transform that takes a context: ``condition(context)`` returns a torch transform
    (noise to data, with its own log-det cache) for that context.

    :param transform: an nflows transform built with ``context_features=context_dim``.
    :param dim: the size of the vectors it acts on.
    :param context_dim: the size of the context vectors.

    Example::

        >>> import torch, pyro.distributions as dist
        >>> from nflows.transforms import MaskedAffineAutoregressiveTransform
        >>> t = ConditionalNflowsTransform(MaskedAffineAutoregressiveTransform(3, 16, context_features=2), 3, 2)
        >>> base = dist.Normal(torch.zeros(4, 3), 1).to_event(1)
        >>> d = dist.ConditionalTransformedDistribution(base, [t]).condition(torch.randn(4, 2))
        >>> d.sample().shape
        torch.Size([4, 3])
    """

    def __init__(self, transform: torch.nn.Module, dim: int, context_dim: int):
        super().__init__()
        self.nflows = transform
        self.dim = int(dim)
        self.context_dim = int(context_dim)

    def condition(self, context: torch.Tensor) -> BoundNflowsTransform:
        check_context(context, self.context_dim)
        return BoundNflowsTransform(self.nflows, self.dim, context, self.context_dim)

    def extra_repr(self):
        return f"dim={self.dim}, context_dim={self.context_dim}"
