"""Observation likelihoods: how a decoder's output becomes a distribution over one data point.

A :class:`Likelihood` knows the support of the data it models, validates data against it
before any work starts, scales data into a network's input range, and turns a flat vector
of ``num_params * prod(event_shape)`` decoder outputs into a Pyro distribution whose
``event_shape`` is the data's.
"""

from __future__ import annotations

import functools
import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch.distributions import constraints

from .info import DataInfo

__all__ = [
    "Likelihood",
    "BernoulliLikelihood",
    "CategoricalLikelihood",
    "DiscretizedLogistic",
    "DiscretizedLogisticLikelihood",
    "NormalLikelihood",
    "likelihood",
    "likelihood_for",
]


class Likelihood:
    """Base class of observation likelihoods for data of shape ``event_shape``.

    Subclasses set :attr:`support` (``"binary"``, ``"discrete"`` or ``"real"``),
    :attr:`num_params` (decoder outputs per data dimension) and implement
    :meth:`distribution` and :meth:`mean`.
    """

    support: str = "real"
    num_levels: int | None = None
    num_params: int = 1

    def __init__(self, event_shape):
        self.event_shape = tuple(int(s) for s in event_shape)
        self.num_dims = math.prod(self.event_shape)

    @functools.cached_property
    def info(self) -> DataInfo:
        """The support this likelihood scores (built on first use: read on every training step)."""
        return DataInfo(self.event_shape, self.support, self.num_levels)

    @property
    def num_outputs(self) -> int:
        """Length of the flat decoder output per data point."""
        return self.num_params * self.num_dims

    def _params(self, output: torch.Tensor) -> torch.Tensor:
        """Reshape flat decoder output to ``batch + (num_params,) + event_shape``."""
        if output.shape[-1] != self.num_outputs:
            raise ValueError(
                f"{type(self).__name__} expects decoder outputs of size {self.num_outputs} "
                f"({self.num_params} per dimension of {self.event_shape}), got {output.shape[-1]}"
            )
        return output.reshape(*output.shape[:-1], self.num_params, *self.event_shape)

    def __call__(self, output: torch.Tensor) -> dist.TorchDistribution:
        return self.distribution(output)

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """A point summary in the data's space, for pictures of samples."""
        raise NotImplementedError

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """Data scaled for a network's input: discrete levels to ``[0, 1]``."""
        return self.info.to_unit_interval(x)

    def validate(self, x: torch.Tensor, what: str = "data") -> None:
        """Check shape, finiteness and support; raise before any work starts."""
        self.info.validate(x, what, owner=type(self).__name__)

    def __repr__(self) -> str:
        levels = f", num_levels={self.num_levels}" if self.support == "discrete" else ""
        return f"{type(self).__name__}(event_shape={self.event_shape}{levels})"


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels for binary data; the decoder outputs logits."""

    support = "binary"
    num_levels = 2
    num_params = 1

    def distribution(self, output):
        logits = self._params(output).squeeze(-len(self.event_shape) - 1)
        return dist.Bernoulli(logits=logits).to_event(len(self.event_shape))

    def mean(self, output):
        return torch.sigmoid(self._params(output).squeeze(-len(self.event_shape) - 1))


class CategoricalLikelihood(Likelihood):
    """A free categorical distribution over the ``num_levels`` levels of each dimension."""

    support = "discrete"

    def __init__(self, event_shape, num_levels: int):
        super().__init__(event_shape)
        self.num_levels = int(num_levels)
        self.num_params = self.num_levels

    def _logits(self, output):
        params = self._params(output)  # batch + (K,) + event
        return params.movedim(-len(self.event_shape) - 1, -1)

    def distribution(self, output):
        return dist.Categorical(logits=self._logits(output)).to_event(len(self.event_shape))

    def mean(self, output):
        probs = torch.softmax(self._logits(output), -1)
        levels = torch.arange(self.num_levels, dtype=probs.dtype, device=probs.device)
        return probs @ levels


class DiscretizedLogistic(dist.TorchDistribution):
    r"""A logistic distribution discretized onto the levels ``0, 1, ..., K-1``.

    Level :math:`k` is placed at :math:`y_k = 2k/(K-1) - 1 \in [-1, 1]` and receives the
    logistic mass of :math:`[y_k - h, y_k + h]`, :math:`h = 1/(K-1)`, with the end levels
    taking the tails (Salimans et al., 2017). The masses sum to one exactly, so the
    log-probability is that of the discrete data. Differences of sigmoids are computed as
    :math:`\log\sigma(a) + \log\sigma(-b) + \log(1 - e^{b - a})`, stable for small scales.

    References:
        Salimans, Karpathy, Chen, Kingma (2017). PixelCNN++. ICLR.
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    has_rsample = False

    def __init__(self, loc, log_scale, num_levels: int, validate_args=None):
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale)
        self.num_levels = int(num_levels)
        super().__init__(self.loc.shape, torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.num_levels - 1)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.log_scale = self.log_scale.expand(batch_shape)
        new.num_levels = self.num_levels
        super(DiscretizedLogistic, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        half_width = 1.0 / (self.num_levels - 1)
        centre = 2 * value * half_width - 1
        inv_scale = torch.exp(-self.log_scale)
        upper = (centre + half_width - self.loc) * inv_scale
        lower = (centre - half_width - self.loc) * inv_scale
        interior = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-2 * half_width * inv_scale))
        bottom = F.logsigmoid(upper)
        top = F.logsigmoid(-lower)
        return torch.where(value <= 0, bottom, torch.where(value >= self.num_levels - 1, top, interior))

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
            y = self.loc + torch.exp(self.log_scale) * (torch.log(u) - torch.log1p(-u))
            return self._to_level(y)

    def _to_level(self, y):
        return torch.round((y + 1) * (self.num_levels - 1) / 2).clamp(0, self.num_levels - 1)

    @property
    def mode(self):
        return self._to_level(self.loc)


class DiscretizedLogisticLikelihood(Likelihood):
    """A discretized logistic per dimension over ``num_levels`` levels (2 outputs per dim)."""

    support = "discrete"
    num_params = 2

    def __init__(self, event_shape, num_levels: int, min_log_scale: float = -7.0):
        super().__init__(event_shape)
        self.num_levels = int(num_levels)
        self.min_log_scale = min_log_scale

    def distribution(self, output):
        params = self._params(output)
        loc, log_scale = params.unbind(-len(self.event_shape) - 1)
        return DiscretizedLogistic(loc, log_scale.clamp(min=self.min_log_scale), self.num_levels).to_event(
            len(self.event_shape)
        )

    def mean(self, output):
        loc = self._params(output).select(-len(self.event_shape) - 1, 0)
        return ((loc.clamp(-1, 1) + 1) * (self.num_levels - 1) / 2)


class NormalLikelihood(Likelihood):
    """Independent Normal dimensions for real data: a density, not a probability.

    With ``scale=None`` the decoder outputs a location and a scale (through softplus)
    per dimension; with a fixed ``scale`` it outputs the location only.
    """

    support = "real"

    def __init__(self, event_shape, scale: float | None = None, min_scale: float = 1e-3):
        super().__init__(event_shape)
        self.scale = scale
        self.min_scale = min_scale
        self.num_params = 1 if scale is not None else 2

    def distribution(self, output):
        params = self._params(output)
        if self.scale is not None:
            loc, scale = params.squeeze(-len(self.event_shape) - 1), self.scale
        else:
            loc, raw = params.unbind(-len(self.event_shape) - 1)
            scale = F.softplus(raw) + self.min_scale
        return dist.Normal(loc, scale).to_event(len(self.event_shape))

    def mean(self, output):
        return self._params(output).select(-len(self.event_shape) - 1, 0)


_NAMES = {
    "bernoulli": BernoulliLikelihood,
    "categorical": CategoricalLikelihood,
    "discretized_logistic": DiscretizedLogisticLikelihood,
    "normal": NormalLikelihood,
}


def likelihood(name: str, event_shape, num_levels: int | None = None, **options) -> Likelihood:
    """Build a likelihood by name: ``"bernoulli"``, ``"categorical"``,
    ``"discretized_logistic"`` (both need ``num_levels``) or ``"normal"``."""
    return _named(name, event_shape, num_levels, **options)


def _named(name, event_shape, num_levels, **options):
    try:
        cls = _NAMES[name]
    except KeyError:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(_NAMES)}") from None
    if cls in (CategoricalLikelihood, DiscretizedLogisticLikelihood):
        if num_levels is None or num_levels < 2:
            raise ValueError(f"likelihood {name!r} needs num_levels >= 2, got {num_levels}")
        return cls(event_shape, num_levels, **options)
    if cls is BernoulliLikelihood and num_levels not in (None, 2):
        raise ValueError(f"the Bernoulli likelihood is for binary data (2 levels), got num_levels={num_levels}")
    return cls(event_shape, **options)


def likelihood_for(data, likelihood: str | Likelihood | None = None, num_levels: int | None = None) -> Likelihood:
    """The likelihood of a model of the data described by ``data`` (a
    :class:`~probgen.DataInfo` or its config dict, or an event shape alone: real data).

    - ``likelihood=None``: what the support needs: Bernoulli for binary data, a discretized
      logistic over the levels of discrete data, a Normal with learned scale for real data;
    - a name (see :func:`likelihood`): built on ``info``'s event shape, with ``num_levels``
      or else ``info``'s levels;
    - a :class:`Likelihood`: used as it is.

    A named or given likelihood must cover the support of described data: a binary
    likelihood for 17-level data is refused with an error naming both; a ``"normal"``
    likelihood on levels is accepted, as the explicit request for a density. With an event
    shape alone, a named or given likelihood states the support itself.
    """
    described = isinstance(data, (DataInfo, dict))
    info = DataInfo.of(data)
    if likelihood is None:
        if num_levels is not None:
            raise ValueError(f"num_levels={num_levels} goes with a named discrete likelihood, e.g. likelihood='categorical'; "
                             "without one the likelihood follows the data's description")
        if info.support == "binary":
            return BernoulliLikelihood(info.event_shape)
        if info.support == "discrete":
            return DiscretizedLogisticLikelihood(info.event_shape, info.num_levels)
        return NormalLikelihood(info.event_shape)
    if isinstance(likelihood, str):
        if num_levels is None and _NAMES.get(likelihood) in (CategoricalLikelihood, DiscretizedLogisticLikelihood):
            num_levels = info.num_levels
        likelihood = _named(likelihood, info.event_shape, num_levels)
    elif not isinstance(likelihood, Likelihood):
        raise TypeError(f"likelihood must be None, a name or a probgen Likelihood, got {type(likelihood).__name__}")
    if likelihood.event_shape != info.event_shape:
        raise ValueError(f"the likelihood has event_shape {likelihood.event_shape}, the data {info.event_shape}")
    if described and not likelihood.info.contains(info):
        raise ValueError(
            f"{likelihood!r} models {likelihood.info.describe_support()}, but the data are "
            f"{info.describe_support()}; leave likelihood=None to follow the data's description"
        )
    return likelihood
