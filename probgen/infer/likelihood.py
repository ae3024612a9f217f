r"""Per-data-point log-likelihoods: exact values, bounds and estimates, one estimator per method.

Every estimator works through the model protocol (:mod:`probgen.models.base`):

- ``"elbo"``: :math:`\frac1k \sum_i \log w_i`, a lower bound on :math:`\log p(x)`;
- ``"iwae"``: :math:`\log \frac1k \sum_i w_i`, a tighter lower bound that rises to
  :math:`\log p(x)` as :math:`k \to \infty` (Burda et al., 2016); with ``refine=steps``,
  each data point's proposal is first refined on its own (:mod:`probgen.infer.refinement`),
  a tighter bound on the same model;
- ``"exact"``: :math:`\log p(x)` of a model without latent variables;

with :math:`w_i = p(x, z_i) / q(z_i \mid x)`, :math:`z_i \sim q(z \mid x)` from
:func:`probgen.infer.weights.log_weights`. Other families register further methods in
:data:`ESTIMATORS`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Callable

import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from ..checks import boolean, positive_int
from ..checks import options as check_options
from .distributed import rank_seed, sharding
from .refinement import check_refinement, refined_guide
from .weights import VALUES_PER_PASS, evaluating, log_weights, trace_log_weights

__all__ = ["LikelihoodEstimate", "log_likelihood", "resolve_method", "ESTIMATORS", "register_estimator"]

_KIND = {"exact": "exact", "elbo": "bound", "iwae": "bound"}


@dataclasses.dataclass
class LikelihoodEstimate:
    """Log-likelihoods of a set of data points, in nats, with their summary.

    :ivar pointwise: one value per data point (nats).
    :ivar mean: mean over data points.
    :ivar stderr: standard error of the mean over data points.
    :ivar bits_per_dim: :math:`-\\text{mean} / (D \\ln 2)`, in the data's own space.
    :ivar method: the estimator (``"exact"``, ``"elbo"``, ``"iwae"``, ``"ais"``, ...).
    :ivar is_bound: whether the value is a lower bound rather than exact or an estimate.
    :ivar num_samples: importance samples (or chains) per data point.
    :ivar kind: ``"exact"``, ``"bound"`` or ``"estimate"``.
    :ivar density: True when the data are real-valued (a density, not a probability).
    :ivar terms: optional per-data-point terms that add up to ``pointwise``.
    :ivar options: the estimator's options given to :func:`log_likelihood`, named in the label.
    """

    pointwise: torch.Tensor
    method: str
    is_bound: bool
    num_samples: int
    num_dims: int
    kind: str = "bound"
    density: bool = False
    terms: dict[str, torch.Tensor] | None = None
    options: dict | None = None
    mean: float = dataclasses.field(init=False)
    stderr: float = dataclasses.field(init=False)
    bits_per_dim: float = dataclasses.field(init=False)

    def __post_init__(self):
        values = self.pointwise.double()
        self.mean = values.mean().item()
        self.stderr = (values.std().item() / math.sqrt(len(values))) if len(values) > 1 else float("nan")
        self.bits_per_dim = -self.mean / (self.num_dims * math.log(2))

    def label(self) -> str:
        if self.method == "exact":
            return "exact"
        name = self.method.upper() if self.method in ("elbo", "iwae", "ais") else self.method
        given = "".join(f", {key}={value}" for key, value in sorted((self.options or {}).items()))
        return f"{name} {self.kind}, k={self.num_samples}{given}"

    def term_summary(self) -> dict[str, tuple[float, float]]:
        """Each term's mean in nats and bits/dim."""
        scale = -1 / (self.num_dims * math.log(2))
        return {name: (v.double().mean().item(), v.double().mean().item() * scale) for name, v in (self.terms or {}).items()}

    def __str__(self):
        unit = "nats (density)" if self.density else "nats"
        text = f"{self.mean:.2f} ± {self.stderr:.2f} {unit} ({self.label()}) = {self.bits_per_dim:.3f} bits/dim"
        for name, (nats, bits) in self.term_summary().items():
            text += f"\n  {name:>15}: {nats:10.3f} nats  {bits:8.4f} bits/dim"
        return text

    def __repr__(self):
        return f"LikelihoodEstimate({self.label()}: mean={self.mean:.4f}, stderr={self.stderr:.4f}, n={len(self.pointwise)})"


# method -> estimator(model, x, num_samples, particle_batch) -> (pointwise, terms | None)
Estimator = Callable[..., tuple[torch.Tensor, dict | None]]
ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, kind: str):
    """Register a likelihood estimator; ``kind`` is ``"exact"``, ``"bound"`` or ``"estimate"``."""

    def decorate(fn):
        ESTIMATORS[name] = fn
        _KIND[name] = kind
        return fn

    return decorate


def _options_taken(estimator) -> list[str] | None:
    """The keyword options an estimator takes after ``(model, x, num_samples, particle_batch)``;
    ``None``: any (it has ``**options``)."""
    parameters = list(inspect.signature(estimator).parameters.values())[4:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters]


def _particle_chunks(num_samples, particle_batch):
    done = 0
    while done < num_samples:
        size = min(particle_batch, num_samples - done)
        yield size
        done += size


@register_estimator("elbo", "bound")
def _elbo(model, x, num_samples, particle_batch):
    # a family whose bound splits into terms more cheaply than its traces reports them
    terms = model.elbo_terms(x, num_samples, validate=False)
    if terms is not None:
        return sum(terms.values()), terms
    total = sum(log_weights(model, x, k).sum(0) for k in _particle_chunks(num_samples, particle_batch))
    return total / num_samples, None


@register_estimator("iwae", "bound")
def _iwae(model, x, num_samples, particle_batch, refine: int = 0, refine_lr: float = 0.01, refine_particles: int = 10):
    if check_refinement(refine, refine_lr, refine_particles):  # semi-amortized: each q first climbs its own bound
        guide = refined_guide(model, x, refine, lr=refine_lr, num_particles=refine_particles)(model.guide)

        def weights(k):
            return trace_log_weights(model.model, guide, k, x)
    else:
        def weights(k):
            return log_weights(model, x, k)
    running = torch.full((len(x),), -math.inf, device=x.device, dtype=torch.float64)
    for k in _particle_chunks(num_samples, particle_batch):
        chunk = torch.logsumexp(weights(k).double(), 0)
        running = torch.logaddexp(running, chunk)
    return running - math.log(num_samples), None


@register_estimator("exact", "exact")
def _exact(model, x, num_samples, particle_batch):
    # no latent variable: the one "importance weight" is log p(x) itself
    latent = [name for name, site in poutine.trace(model.guide).get_trace(x).nodes.items()
              if site["type"] == "sample" and not site_is_subsample(site)]
    if latent:
        raise ValueError(
            f"{type(model).__name__} lists 'exact' among its likelihood_methods, but its guide draws the latent "
            f"sites {latent}: its importance weights are not log p(x)"
        )
    return log_weights(model, x, 1)[0], None


def resolve_method(model, method: str = "auto") -> str:
    """The estimator ``method`` names for ``model``: ``"auto"`` is the model's best
    (``likelihood_methods[0]``); any other must be registered and valid for the model."""
    methods = tuple(model.likelihood_methods)
    if method == "auto":
        if not methods:
            raise ValueError(f"{type(model).__name__} declares no likelihood methods")
        return methods[0]
    if method not in ESTIMATORS:
        raise ValueError(f"unknown method {method!r}; registered: {sorted(ESTIMATORS)}")
    if method not in methods:
        raise ValueError(f"method {method!r} is not valid for {type(model).__name__}; use one of {list(methods)}")
    return method


def log_likelihood(
    model,
    x: torch.Tensor,
    method: str = "auto",
    num_samples: int = 1000,
    *,
    batch_size: int = 100,
    particle_batch: int | None = None,
    seed: int | None = 0,
    sharded: bool = False,
    **options,
) -> LikelihoodEstimate:
    """Estimate :math:`\\log p(x_n)` for every data point ``x_n``.

    :param method: ``"auto"`` (the model's best: exact for flows, IWAE for VAEs, ...),
        ``"elbo"``, ``"iwae"``, ``"exact"``, or a method another family registered.
    :param num_samples: importance samples per data point (ignored by ``"exact"``).
    :param batch_size: data points per pass.
    :param particle_batch: importance samples per pass; by default chosen so that one pass
        holds about :math:`2^{22}` data values, which bounds memory for any ``num_samples``.
    :param seed: seeds the random state for reproducible estimates (``None``: leave it alone).
    :param refine: ``"iwae"`` only: before drawing the ``num_samples``, refine each data
        point's Gaussian proposal for this many Adam steps of its own bound
        (:mod:`probgen.infer.refinement`; ``refine_lr``, default 0.01, and
        ``refine_particles``, default 10, set the steps). The model is untouched and the
        value is still a lower bound on its :math:`\\log p(x)`, a tighter one where the
        amortized guide misses the posterior of data it was not trained on: after 300 steps,
        0.33 nats on 2,000 binarized-MNIST test images at ``num_samples=5000`` (0.41 on 100
        at 1000; ``benchmarks/refined_iwae.py``, ``benchmarks/hvae_binarized_mnist.py``).
        Each step costs about ``refine_particles`` importance samples' forward and backward pass.
    :param sharded: in a distributed run (:mod:`probgen.infer.distributed`), each rank scores
        a contiguous part of ``x`` and every rank returns all the values, in ``x``'s order;
        call it on every rank. Outside one it scores everything here.

    Data of another floating dtype than the model's (float64 from NumPy, float16) are cast to it.

    Example::

        >>> import probgen as pg, torch
        >>> vae = pg.VAE(pg.datasets.load("optdigits").info, 4, likelihood="categorical")
        >>> x = pg.datasets.load("optdigits").test[:10]
        >>> est = pg.log_likelihood(vae, x, method="iwae", num_samples=8)
        >>> est.is_bound, len(est.pointwise)
        (True, 10)
    """
    method = resolve_method(model, method)
    positive_int(num_samples, "num_samples")
    positive_int(batch_size, "batch_size")
    if particle_batch is not None:
        positive_int(particle_batch, "particle_batch")
    estimator = ESTIMATORS[method]
    check_options(options, f"the {method!r} estimator", _options_taken(estimator))
    model.validate(x)
    if method == "exact":
        num_samples = 1
    device = model.device
    if particle_batch is None:
        particle_batch = max(1, min(num_samples, VALUES_PER_PASS // (batch_size * model.num_dims)))

    ranks = sharding(boolean(sharded, "sharded"), len(x))
    part = x if ranks is None else x[ranks.share(len(x))]
    pointwise, terms = [], {}
    with evaluating(model, seed if ranks is None or seed is None else rank_seed(seed, ranks.rank)):  # x validated above
        for start in range(0, len(part), batch_size):
            batch = part[start : start + batch_size].to(device, model.dtype)
            values, batch_terms = estimator(model, batch, num_samples, particle_batch, **options)
            pointwise.append(values.double().cpu())
            for name, value in (batch_terms or {}).items():
                terms.setdefault(name, []).append(value.double().cpu())
    pointwise = torch.cat(pointwise)
    terms = {name: torch.cat(parts) for name, parts in terms.items()}
    if ranks is not None:
        pointwise = ranks.gather(pointwise)
        terms = {name: ranks.gather(values) for name, values in terms.items()}

    kind = _KIND[method]
    return LikelihoodEstimate(
        pointwise=pointwise,
        method=method,
        is_bound=kind == "bound",
        num_samples=num_samples,
        num_dims=model.num_dims,
        kind=kind,
        density=model.info.support == "real",
        terms=terms or None,
        options=dict(options) or None,
    )
