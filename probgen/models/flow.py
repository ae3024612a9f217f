r"""The normalizing flow as a Pyro model: exact likelihoods for real data, dequantized
bounds for discrete data.

**Real data.** ``model(x)`` observes ``"x"`` from the
:class:`~pyro.distributions.TransformedDistribution` :math:`x = T(u),\ u \sim p_0`, with no
latent site, so :func:`probgen.fit` trains it by exact maximum likelihood and
``pg.log_likelihood(flow, x)`` (method ``"exact"``) is :math:`\log p(x)`, a density.

**Discrete data** (levels :math:`0, \dots, K-1`, binary data with :math:`K = 2`). The flow is a
density on :math:`y \in (0, K)^D` and the data are its quantization,
:math:`x = \lfloor y \rfloor`. The generative program is exactly that: a latent site ``"y"``
from the flow, then ``"x"`` from :class:`Quantized`. The probability of ``x`` is the flow's
mass on the unit cell above it,

.. math:: P(x) = \int_{[0,1)^D} p(x + u)\, du
          \ \ge\ \mathbb{E}_{q(u \mid x)}\big[\log p(x + u) - \log q(u \mid x)\big],

and the guide is the dequantization noise :math:`y = x + u,\ u \sim q(u \mid x)`: uniform
(:math:`\log q = 0`, Theis et al. 2016) or a conditional flow on :math:`(0,1)^D`
(variational dequantization, Ho et al. 2019). So the ``"elbo"`` estimate is the usual
dequantized log-likelihood, a lower bound on :math:`\log P(x)`, and ``"iwae"`` is a tighter
bound that reaches :math:`\log P(x)` as :math:`k \to \infty`. Both are in nats of the
original discrete space, so bits/dim compare with any discrete model. ``"exact"`` is not
offered for discrete data: no number the flow computes in one pass is :math:`\log P(x)`.

The flow works in logit space: :math:`y = K (\sigma(s) - \alpha)/(1 - 2\alpha)` with
:math:`s` from the flow; the log-determinants of the sigmoid and the scaling are part of
the transformed distribution, so every Jacobian enters the likelihood. With
:math:`\alpha > 0` the flow may put a little mass outside :math:`[0, K]^D`; sampling clamps it
to the edge levels, so the reported numbers are lower bounds for the sampled model too.

References:
    Papamakarios, Nalisnick, Rezende, Mohamed, Lakshminarayanan (2021). Normalizing Flows
    for Probabilistic Modeling and Inference. JMLR.
    Theis, van den Oord, Bethge (2016). A note on the evaluation of generative models. ICLR.
    Ho, Chen, Srinivas, Duan, Abbeel (2019). Flow++. ICML.
    Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP. ICLR.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch.distributions import constraints
from torch.distributions.transforms import AffineTransform, ReshapeTransform, SigmoidTransform

from ..flows import FLOW_KINDS, FlowDistribution, build, check_context
from ..checks import sample_count
from .base import GenerativeModel, register_family

__all__ = ["Flow", "Quantized"]


class Quantized(dist.TorchDistribution):
    r"""The quantization :math:`x = \lfloor y \rfloor` of a continuous :math:`y`, as the
    observation of a dequantized flow.

    ``log_prob(x)`` is 0 where every :math:`y_i` lies in the closed cell
    :math:`[x_i, x_i + 1]` and :math:`-\infty` elsewhere (the cell's boundary has measure
    zero; closing it keeps a float rounding of :math:`x + u` up to :math:`x + 1` inside).
    Samples are clamped to the levels :math:`0, \dots, K-1` and reshaped to ``event_shape``.

    :param y: continuous values, shape ``batch + (D,)``.
    """

    arg_constraints = {}

    def __init__(self, y: torch.Tensor, event_shape, num_levels: int, validate_args=False):
        self.y = y
        self.num_levels = int(num_levels)
        super().__init__(y.shape[:-1], torch.Size(event_shape), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.num_levels - 1), len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Quantized, _instance)
        batch_shape = torch.Size(batch_shape)
        new.y = self.y.expand(batch_shape + self.y.shape[-1:])
        new.num_levels = self.num_levels
        super(Quantized, new).__init__(batch_shape, self.event_shape, validate_args=False)
        return new

    def sample(self, sample_shape=torch.Size()):
        y = self.y.expand(torch.Size(sample_shape) + self.y.shape)
        levels = torch.floor(y).clamp(0, self.num_levels - 1)
        return levels.reshape(*levels.shape[:-1], *self.event_shape)

    def log_prob(self, x):
        flat = x.reshape(*x.shape[: x.dim() - len(self.event_shape)], -1)
        inside = ((self.y >= flat) & (self.y <= flat + 1)).all(-1)
        return torch.where(inside, 0.0, -math.inf).to(self.y.dtype)


@register_family("flow")
class Flow(GenerativeModel):
    r"""A normalizing flow density model: :math:`x = T(u)`, :math:`u \sim p_0`.

    :param data: the data's description, ``data.info`` (a :class:`~probgen.DataInfo`), or
        an event shape alone (real-valued data); the flow acts on the flattened vector.
        Binary and discrete data are dequantized (module docstring).
    :param transform: a flow kind (``"nsf"``, ``"maf"``, ``"iaf"``, ``"realnvp"``,
        ``"nsf_coupling"``, see :mod:`probgen.flows.builders`) or a (conditional)
        transform on vectors of size ``prod(event_shape)``.
    :param num_layers: flow steps, for a named kind.
    :param hidden: conditioner width, for a named kind.
    :param base: ``None`` for :math:`\mathcal N(0, I)`, or a distribution over the flat vector.
    :param context_dim: a conditional density :math:`p(x \mid c)`: ``model(x, given=c)``,
        ``log_prob(x, given=c)``, ``sample(n, given=c)`` (``given``, not ``context``: Pyro's
        ``pyro_method`` reserves that name).
    :param dequantization: ``"uniform"`` or ``"variational"`` (a conditional IAF on the cell).
    :param logit_alpha: :math:`\alpha` of the logit map for discrete data.
    :param options: further options of the named kind (``num_bins``, ``tail_bound``, ...).

    Example::

        >>> import probgen as pg
        >>> data = pg.datasets.load("moons")
        >>> flow = pg.Flow(data.info, "nsf", num_layers=2, hidden=16)
        >>> est = pg.log_likelihood(flow, data.test[:100], method="exact")
        >>> est.kind, len(est.pointwise)
        ('exact', 100)
    """

    default_objective = "elbo"
    sample_options = ("given",)

    def __init__(
        self,
        data,
        transform="nsf",
        num_layers: int = 5,
        hidden: int = 64,
        *,
        base: dist.Distribution | None = None,
        context_dim: int | None = None,
        dequantization: str = "uniform",
        logit_alpha: float = 0.05,
        **options,
    ):
        super().__init__(data)
        discrete = self.data_info.is_discrete
        if dequantization not in ("uniform", "variational"):
            raise ValueError(f"dequantization must be 'uniform' or 'variational', got {dequantization!r}")
        if not 0 <= logit_alpha < 0.5:
            raise ValueError(f"logit_alpha must be in [0, 0.5), got {logit_alpha}")
        dim = self.num_dims
        if isinstance(transform, str):
            if transform not in FLOW_KINDS:
                raise ValueError(f"unknown flow kind {transform!r}; expected one of {list(FLOW_KINDS)} or a transform")
            flow = build(transform, dim, num_layers=num_layers, hidden=hidden, context_dim=context_dim, **options)
        else:
            flow = transform
            if getattr(flow, "context_dim", None) != context_dim:
                raise ValueError(
                    f"the transform takes context_dim={getattr(flow, 'context_dim', None)}, but context_dim={context_dim}"
                )
        self.context_dim = context_dim
        self.dequantization = dequantization if discrete else None

        if discrete:
            levels = self.data_info.num_levels
            # s (flow output) -> y in (0, K): y = K (sigmoid(s) - alpha) / (1 - 2 alpha)
            after = [SigmoidTransform(), AffineTransform(-levels * logit_alpha / (1 - 2 * logit_alpha), levels / (1 - 2 * logit_alpha), event_dim=1)]
        elif self.event_shape != (dim,):
            after = [ReshapeTransform((dim,), self.event_shape)]
        else:
            after = []
        self.density = FlowDistribution(flow, dim, base=base, after=after)
        if discrete and dequantization == "variational":
            # q(u | x): Normal noise -> conditional IAF (one pass to sample and score) -> sigmoid
            self.dequantizer = build("iaf", dim, num_layers=2, hidden=hidden, context_dim=dim)

        # exact log p(x) for real data; bounds on log P(x) for dequantized discrete data
        self.likelihood_methods = ("exact",) if not discrete else ("iwae", "elbo")
        if isinstance(transform, str) and base is None:
            self.config = {
                "family": "flow",
                "data": self.data_config(),
                "transform": transform,
                "num_layers": num_layers,
                "hidden": hidden,
                "context_dim": context_dim,
                "dequantization": dequantization,
                "logit_alpha": logit_alpha,
                **options,
            }

    @property
    def discrete(self) -> bool:
        return self.data_info.is_discrete

    def validate(self, x: torch.Tensor, what: str = "data", given: torch.Tensor | None = None) -> None:
        super().validate(x, what)
        if self.context_dim is not None and given is not None:
            self._context(given, len(x))

    def _context(self, given, n):
        if self.context_dim is None:
            if given is not None:
                raise ValueError("this Flow has no context_dim: it takes no context (given=...)")
            return None
        if given is None:
            raise ValueError(f"this Flow is conditional: pass given=<tensor of shape ({n}, {self.context_dim})>")
        check_context(given, self.context_dim)
        if given.dim() != 2 or len(given) != n:
            raise ValueError(f"expected one context per data point, shape ({n}, {self.context_dim}); got {tuple(given.shape)}")
        return given

    # -- the Pyro program ---------------------------------------------------------------

    @pyro_method
    def model(self, x: torch.Tensor | None = None, *, num_data: int | None = None, given: torch.Tensor | None = None):
        """Real data: ``"x"`` from the flow. Discrete data: ``"y"`` from the flow, then
        ``"x"`` its quantization."""
        n = len(x) if x is not None else (num_data or (len(given) if given is not None else 1))
        density = self.density(self._context(given, n))
        with pyro.plate("data", n, dim=-1):
            if not self.discrete:
                return pyro.sample("x", density, obs=x)
            y = pyro.sample("y", density)
            return pyro.sample("x", Quantized(y, self.event_shape, self.data_info.num_levels), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, *, num_data: int | None = None, given: torch.Tensor | None = None):
        """Empty for real data; the dequantization noise :math:`y = x + u,\\ u \\sim q(u \\mid x)` otherwise."""
        if not self.discrete:
            return None
        flat = x.reshape(len(x), -1)
        with pyro.plate("data", len(x), dim=-1):
            if self.dequantization == "uniform":
                noise, transforms = dist.Uniform(torch.zeros_like(flat), 1.0).to_event(1), []
            else:
                cell_context = self.data_info.to_unit_interval(flat)
                noise = dist.Normal(torch.zeros_like(flat), 1.0).to_event(1)
                transforms = [self.dequantizer.condition(cell_context), SigmoidTransform(cache_size=1)]
            # cache_size=1: the guide scores its own sample through the cached noise u, never
            # through y - x, which float rounding could push onto the cell's far edge
            shift = AffineTransform(flat, 1.0, event_dim=1, cache_size=1)
            return pyro.sample("y", dist.TransformedDistribution(noise, [*transforms, shift]))

    def log_prob(self, x: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """Exact :math:`\\log p(x)` per data point (real data only)."""
        if self.discrete:
            raise ValueError("log_prob is the exact density of real data; for discrete data use pg.log_likelihood (a bound)")
        self.validate(x, given=given)
        return self.density(self._context(given, len(x))).log_prob(x)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, given: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` draws in the data's space (discrete data: quantized levels). A flow has no
        observation noise to average out: ``mean=True`` draws the same way."""
        sample_count(n, self.info.num_dims)
        return self.model(num_data=n, given=given)

    def extra_repr(self) -> str:
        return f"info={self.info}"
