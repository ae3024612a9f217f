r"""Importance weights of a model's traces, and the evaluation mode every estimator runs in.

Every likelihood estimator and diagnostic reads the same quantity, the log importance
weights :math:`\log w = \log p(x, z) - \log q(z \mid x)` with :math:`z \sim q(z \mid x)`,
computed by running a model's guide and replaying its model on the guide's draws
(:func:`log_weights`). A model without latent variables (a flow on real data) has an empty
guide, and its weights are its exact :math:`\log p(x)`.

:func:`evaluating` is the one way they run: evaluation mode, no gradients, Pyro's argument
checks off (the data were validated up front), the ``param`` statements that only
:class:`pyro.infer.SVI` reads skipped, the random state seeded the one way probgen seeds it
(:func:`seed_everything`), and the model's training mode restored afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import math

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from ..checks import boolean, positive_int
from ..checks import seed as check_seed
from .distributed import rank_seed, sharding

__all__ = ["trace_log_weights", "doubly_reparameterized_log_weights", "log_weights", "importance_log_weights",
           "importance_logsumexp", "negligible_particles", "evaluating", "seed_everything", "VALUES_PER_PASS"]

#: data values (samples x data points x dimensions) per vectorized pass of an estimator: the
#: one memory budget that sizes particle batches everywhere
VALUES_PER_PASS = 2**22


def importance_logsumexp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    r""":math:`\log \sum_i w_i` over ``dim``, as ``torch.logsumexp``, with no gradient through the
    particles whose weight is below the square of the dtype's machine epsilon (about
    :math:`10^{-14}` in float32) times the largest, so that their normalized weight
    :math:`w_i / \sum_j w_j` is below it too.

    The value is ``torch.logsumexp``'s, bit for bit. The gradient differs only in the left-out
    particles' share, each below :math:`\epsilon^2` of the total: far below the rounding of the
    float sum it would join. Computing that share costs a great deal: the backward
    pass scales each particle's gradient by its normalized weight, and once a trained guide makes
    some weights tiny, whole rows of every layer's gradient become subnormal numbers, which CPUs
    multiply tens of times slower. With them, an IWAE step of the binarized-MNIST hierarchical VAE
    took 1.7 times as long at k = 10 and 2.7 times at k = 50 (``benchmarks/iwae_step.py``).
    """
    return torch.logsumexp(torch.where(negligible_particles(log_w, dim), log_w.detach(), log_w), dim)


@torch.no_grad()
def negligible_particles(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Where along ``dim`` a particle's weight is below eps^2 times the largest (or is not a
    number): the particles :func:`importance_logsumexp` passes no gradient to."""
    return ~(log_w - log_w.amax(dim, keepdim=True) >= 2 * math.log(torch.finfo(log_w.dtype).eps))


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's and NumPy's generators: the one seeding rule of
    :func:`probgen.fit` and the estimators."""
    pyro.set_rng_seed(seed)


def trace_log_weights(model_fn, guide_fn, num_samples: int, *args, **kwargs) -> torch.Tensor:
    """Log importance weights ``log p(x, z) - log q(z | x)``, shape ``(num_samples, num_data)``.

    The guide and the replayed model run once, vectorized over an outer plate of
    ``num_samples`` particles (dim -2), so no Python loop runs per particle or per data
    point. Every sample site's log-density is kept per data point (the plate ``"data"``
    at dim -1), which is what a per-data-point likelihood needs.
    """
    with pyro.plate("_particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide_fn).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model_fn, trace=guide_trace)).get_trace(*args, **kwargs)
    return _log_weights(model_trace, guide_trace, num_samples)


def _log_weights(model_trace, guide_trace, num_samples: int) -> torch.Tensor:
    """``log p(x, z) - log q(z | x)`` from a guide's trace and the model's replayed on it."""
    log_w = 0.0
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()  # applies each site's scale and mask
        for site in trace.nodes.values():
            if site["type"] == "sample":
                log_w = log_w + sign * site["log_prob"]
    if not isinstance(log_w, torch.Tensor) or log_w.dim() != 2 or log_w.shape[0] != num_samples:
        raise ValueError(
            "expected the model's sample sites to be batched as (particles, data) under plate "
            f"'data' at dim -1; got log-weights of shape {getattr(log_w, 'shape', ())}"
        )
    return log_w


class ParticleGradientScale:
    """Multiplies the gradient that reaches each latent draw through the log-densities by a
    factor per particle and data point, ``factors`` (``(num_samples, num_data)``), which are set
    after the forward pass and read in the backward one.

    :ivar latent_scale: the scale Pyro applied to the guide's latent sites (1, or KL warm-up's
        :math:`\beta` as a float or a 0-dim tensor), which the score term carries.
    """

    def __init__(self):
        self.factors: torch.Tensor | None = None
        self.latent_scale: float | torch.Tensor = 1.0

    def attach(self, value: torch.Tensor) -> torch.Tensor:
        """A view of ``value`` whose gradient will be scaled: the densities read the view, while
        the guide's own draws below it keep their unscaled path to the parameters. Without a
        gradient (evaluation under ``torch.no_grad``) there is nothing to scale."""
        if not value.requires_grad:
            return value
        view = value.view_as(value)
        view.register_hook(self._scale)
        return view

    def _scale(self, grad: torch.Tensor) -> torch.Tensor:
        if self.factors is None:
            raise RuntimeError("the particles' factors were not set before the backward pass")
        f = self.factors
        return grad * f.reshape(f.shape + (1,) * (grad.dim() - f.dim()))


def owning_module(fn) -> torch.nn.Module | None:
    """The module a guide belongs to: the guide itself, the owner of a bound method, or either
    inside Pyro handlers (``poutine.scale(m.guide)``); ``None`` for anything else."""
    while True:
        if isinstance(fn, torch.nn.Module):
            return fn
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, torch.nn.Module):
            return owner
        if not (isinstance(fn, functools.partial) and fn.args):  # a Pyro handler wraps its function last
            return None
        fn = fn.args[-1]


@contextlib.contextmanager
def detached_parameters(module: torch.nn.Module):
    """Inside this block ``module`` computes with detached copies of its parameters (same
    values, no gradient); the parameters themselves are back in place afterwards."""
    slots = [(owner, name, param) for owner in module.modules() for name, param in owner._parameters.items()
             if param is not None]
    try:
        for owner, name, param in slots:
            owner._parameters[name] = param.detach()
        yield
    finally:
        for owner, name, param in slots:
            owner._parameters[name] = param


def doubly_reparameterized_log_weights(model_fn, guide_fn, num_samples: int, *args, check_guide: bool = False,
                                       **kwargs):
    r"""Log importance weights ``(num_samples, num_data)`` laid out for the doubly reparameterized
    gradient (Tucker et al. 2019), and the :class:`ParticleGradientScale` that finishes it.

    The weights' values are :func:`trace_log_weights`' on the same draws. Their graph differs:
    :math:`\log q` is computed by the guide run again, replayed on its draws, with its module's
    parameters detached, so it depends on the parameters only through the draws
    :math:`z = g_\phi(\epsilon)`; and the draws reach both densities through a view whose
    gradient the returned scale multiplies by a factor per particle
    (:class:`~probgen.infer.DReGIWAE` makes it from its normalized weight). The caller sets
    ``scale.factors`` before the backward pass.

    The guide's second run must give the first one's densities: it has to be a function of the
    data and its latents alone (no dropout or input noise of its own in training mode). Its
    latent sites may carry one common scale (KL warm-up's :math:`\beta`, which the score term
    carries too: ``scale.latent_scale``), its observed ones none. ``check_guide=True`` checks
    both (this reads values back from the device once) and raises a ``ValueError`` if not.

    :raises TypeError: the guide is not a torch module or a method of one (its parameters
        must be detachable).
    :raises ValueError: a latent site cannot be reparameterized, or its draws are not laid out
        as ``(num_samples, num_data, ...)``.
    """
    module = owning_module(guide_fn)
    if module is None:
        raise TypeError(f"the doubly reparameterized gradient detaches the guide's parameters: pass a guide that is a "
                        f"torch.nn.Module or a method of one, got {guide_fn!r}")
    scale = ParticleGradientScale()
    with pyro.plate("_particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide_fn).get_trace(*args, **kwargs)
        scaled = guide_trace.copy()
        for name, site in guide_trace.nodes.items():
            if not _is_latent(site):
                continue
            if not site["fn"].has_rsample:
                raise ValueError(f"the doubly reparameterized gradient needs reparameterized latents; the guide's "
                                 f"site {name!r} draws from {type(site['fn']).__name__}, which has no rsample")
            scaled.nodes[name] = dict(site, value=scale.attach(site["value"]))
            scale.latent_scale = site["scale"]
        model_trace = poutine.trace(poutine.replay(model_fn, trace=scaled)).get_trace(*args, **kwargs)
        with detached_parameters(module):
            guide_again = poutine.trace(poutine.replay(guide_fn, trace=scaled)).get_trace(*args, **kwargs)
    log_w = _log_weights(model_trace, guide_again, num_samples)
    for name, site in scaled.nodes.items():
        if _is_latent(site) and site["value"].shape[:2] != log_w.shape:
            raise ValueError(f"the guide's site {name!r} has draws of shape {tuple(site['value'].shape)}; expected "
                             f"({num_samples}, {log_w.shape[1]}, ...): one draw per particle and data point")
    if check_guide:
        _check_same_guide(guide_trace, guide_again)
        _check_scales(model_trace, guide_trace)
    return log_w, scale


def _check_scales(model_trace, guide_trace) -> None:
    latent = [float(site["scale"]) for site in guide_trace.nodes.values() if _is_latent(site)]
    observed = [float(site["scale"]) for site in model_trace.nodes.values()
                if site["type"] == "sample" and site["is_observed"]]
    if len(set(latent)) > 1 or any(value != 1.0 for value in observed):
        raise ValueError(f"the doubly reparameterized gradient takes one common scale on the latent sites (KL "
                         f"warm-up) and none on the observed ones; got latent scales {sorted(set(latent))} and "
                         f"observed scales {sorted(set(observed))}")


def _is_latent(site) -> bool:
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


@torch.no_grad()
def _check_same_guide(first, again) -> None:
    for trace in (first, again):
        trace.compute_log_prob()
    for name, site in first.nodes.items():
        if _is_latent(site) and not torch.allclose(
                site["log_prob"], again.nodes[name]["log_prob"], rtol=1e-4, atol=1e-4):
            raise ValueError(f"the guide gave its site {name!r} other densities when run again on the same data and "
                             "draws: the doubly reparameterized gradient needs a guide that is a function of the data "
                             "and its latents alone (no dropout or input noise of its own in training mode)")


def log_weights(model, x: torch.Tensor, num_samples: int, **kwargs) -> torch.Tensor:
    """``model``'s log importance weights on the batch ``x``: ``(num_samples, len(x))``;
    ``kwargs`` go to its ``model`` and ``guide`` (a conditional flow's ``given``)."""
    return trace_log_weights(model.model, model.guide, num_samples, x, **kwargs)


@contextlib.contextmanager
def evaluating(model, seed: int | None = 0):
    """Evaluate ``model`` inside this block (see the module docstring); ``seed=None`` leaves
    the random state alone."""
    if seed is not None:
        seed_everything(check_seed(seed))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), pyro.validation_enabled(False), model.without_param_sites():
            yield
    finally:
        model.train(was_training)


def importance_log_weights(model, x: torch.Tensor, num_samples: int, *, batch_size: int = 100,
                           seed: int | None = 0, sharded: bool = False) -> torch.Tensor:
    """The model's log importance weights for every data point: ``(num_samples, len(x))``, on
    the CPU, in the model's dtype (from which the PSIS diagnostics judge what is rounding);
    ``batch_size`` data points per pass. Data of another floating dtype are cast to the model's.
    ``sharded``: as in :func:`probgen.log_likelihood`, each rank of a distributed run weighs
    its part of ``x`` and every rank returns all the weights."""
    positive_int(num_samples, "num_samples")
    positive_int(batch_size, "batch_size")
    model.validate(x)
    ranks = sharding(boolean(sharded, "sharded"), len(x))
    part = x if ranks is None else x[ranks.share(len(x))]
    device, dtype = model.device, model.dtype
    with evaluating(model, seed if ranks is None or seed is None else rank_seed(seed, ranks.rank)):
        parts = [log_weights(model, part[start : start + batch_size].to(device, dtype), num_samples).cpu()
                 for start in range(0, len(part), batch_size)]
    weights = torch.cat(parts, 1)
    return weights if ranks is None else ranks.gather(weights, dim=1)
