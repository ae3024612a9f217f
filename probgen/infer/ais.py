r"""Annealed importance sampling (AIS) for decoder models, and its bidirectional check.

A *decoder model* has a prior :math:`p(z)` (``model.prior_distribution()``) and an
observation model :math:`p(x \mid z)` (``model.observation(z)``, batched over the leading
dimensions of ``z``): a :class:`~probgen.VAE`, or a :class:`~probgen.GAN` with
``obs_noise``. AIS moves chains from the prior to the posterior through

.. math:: f_t(z) = p(z)\, p(x \mid z)^{\beta_t}, \qquad 0 = \beta_0 < \dots < \beta_T = 1,

with a Hamiltonian Monte Carlo transition leaving each :math:`f_t` invariant, and
accumulates :math:`\log w = \sum_t (\beta_t - \beta_{t-1}) \log p(x \mid z_{t-1})`. Then
:math:`\frac1C \sum_c w_c` is an unbiased estimate of :math:`p(x)` over :math:`C` chains,
and its log a stochastic lower bound (Neal, 2001). All chains of all data points of a batch
run as one tensor ``(chains, data, latent_dim)``: no Python loop runs per data point or chain.

The HMC step size is kept per data point and adapted towards an acceptance rate of 0.65
from the chains' average acceptance, as Wu et al. (2017) do; strictly, adapting from the
chains' history makes AIS slightly inexact, an effect that shrinks with many chains.

:func:`bdmc` runs the same annealing backwards from exact posterior samples of data
simulated from the model (Grosse et al., 2015): the reverse chain's weights estimate
:math:`1/p(x)` without bias, which gives a stochastic *upper* bound on :math:`\log p(x)`.
The gap between the two bounds bounds the error of AIS on such data.

References:
    Neal (2001). Annealed Importance Sampling. Statistics and Computing 11.
    Grosse, Ghahramani, Adams (2015). Sandwiching the marginal likelihood using
    bidirectional Monte Carlo. arXiv:1511.02543.
    Wu, Burda, Salakhutdinov, Grosse (2017). On the Quantitative Analysis of Decoder-Based
    Generative Models. ICLR.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..checks import positive_int
from .likelihood import log_likelihood, register_estimator
from .weights import evaluating

__all__ = ["sigmoid_schedule", "anneal", "bdmc", "BDMCResult", "select_obs_noise"]


def sigmoid_schedule(num_steps: int, sharpness: float = 4.0) -> torch.Tensor:
    r"""Inverse temperatures :math:`\beta_0 = 0, \dots, \beta_T = 1` spaced by a sigmoid,
    :math:`\beta_t \propto \sigma(\delta(2t/T - 1))` rescaled to :math:`[0, 1]`, in float64:
    small steps at both ends, where the chains move most (Grosse et al., 2015)."""
    positive_int(num_steps, "num_steps")
    s = torch.sigmoid(sharpness * torch.linspace(-1, 1, num_steps + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


def _check_decoder_model(model):
    if not (callable(getattr(model, "prior_distribution", None)) and callable(getattr(model, "observation", None))):
        raise TypeError(
            f"AIS needs a decoder model with prior_distribution() and observation(z); "
            f"{type(model).__name__} has not both"
        )


class _Target:
    """:math:`\\log p(z)` and :math:`\\log p(x \\mid z)` with their gradients in ``z``."""

    def __init__(self, model, x):
        self.prior = model.prior_distribution()
        self.model, self.x = model, x

    def __call__(self, z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            log_prior = self.prior.log_prob(z)
            log_lik = self.model.observation(z).log_prob(self.x)
            # two gradients from one graph: the prior's part is cheap to redo
            (g_prior,) = torch.autograd.grad(log_prior.sum(), z, retain_graph=True)
            (g_lik,) = torch.autograd.grad(log_lik.sum(), z)
        return log_prior.detach(), log_lik.detach(), g_prior, g_lik


def _hmc(target, state, beta, step_size, leapfrog_steps):
    """One HMC transition per chain leaving :math:`p(z) p(x|z)^\\beta` invariant; returns the
    new state and each chain's acceptance indicator."""
    z0, lp0, ll0, gp0, gl0 = state
    momentum0 = torch.randn_like(z0)
    z, lp, ll, gp, gl = state
    momentum = momentum0 + 0.5 * step_size * (gp + beta * gl)
    for step in range(leapfrog_steps):
        z = z + step_size * momentum
        lp, ll, gp, gl = target(z)
        scale = 0.5 if step == leapfrog_steps - 1 else 1.0
        momentum = momentum + scale * step_size * (gp + beta * gl)
    h0 = -(lp0 + beta * ll0) + 0.5 * momentum0.pow(2).sum(-1)
    h1 = -(lp + beta * ll) + 0.5 * momentum.pow(2).sum(-1)
    log_accept = (h0 - h1).nan_to_num(nan=-math.inf)
    accept = torch.rand_like(log_accept).log() < log_accept
    new = tuple(torch.where(accept[..., None] if a.dim() == z0.dim() else accept, b, a)
                for a, b in zip(state, (z, lp, ll, gp, gl)))
    return new, accept


def anneal(model, x: torch.Tensor, z: torch.Tensor, betas: torch.Tensor, *, leapfrog_steps: int = 10,
           step_size: float = 0.05, target_accept: float = 0.65) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Run AIS chains from ``z`` along the inverse temperatures ``betas``.

    :param x: data ``(n,) + event_shape``.
    :param z: the chains' start ``(chains, n, latent_dim)``: prior draws for forward AIS
        (``betas`` rising from 0 to 1), exact posterior draws for the reverse chain of BDMC
        (``betas`` falling from 1 to 0).
    :returns: log weights :math:`\sum_t (\beta_t - \beta_{t-1}) \log p(x \mid z_{t-1})`,
        shape ``(chains, n)``, and each data point's mean acceptance rate.
    """
    target = _Target(model, x)
    state = (z, *target(z))
    log_w = torch.zeros(z.shape[:-1], dtype=torch.float64, device=z.device)
    eps = torch.full((z.shape[1], 1), float(step_size), device=z.device, dtype=z.dtype)
    accepted = torch.zeros(z.shape[1], device=z.device)
    betas = betas.tolist()
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]) * state[2].double()
        if t == len(betas) - 1:
            break  # the last transition would not change any weight
        state, accept = _hmc(target, state, betas[t], eps, leapfrog_steps)
        rate = accept.float().mean(0)
        accepted += rate
        eps = eps * torch.where(rate > target_accept, 1.02, 0.98)[:, None]
    return log_w, accepted / max(1, len(betas) - 2)


def _check_options(num_steps, leapfrog_steps, step_size, target_accept):
    positive_int(leapfrog_steps, "leapfrog_steps")
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}")
    return sigmoid_schedule(num_steps)


@register_estimator("ais", "estimate")
def _ais(model, x, num_samples, particle_batch, *, num_steps: int = 500, leapfrog_steps: int = 10,
         step_size: float = 0.05, target_accept: float = 0.65):
    """AIS with ``num_samples`` chains per data point, all run at once (``particle_batch``
    does not apply: the chains advance together)."""
    _check_decoder_model(model)
    betas = _check_options(num_steps, leapfrog_steps, step_size, target_accept)
    z = model.prior_distribution().sample((num_samples, len(x)))
    log_w, _ = anneal(model, x, z, betas, leapfrog_steps=leapfrog_steps, step_size=step_size,
                      target_accept=target_accept)
    return torch.logsumexp(log_w, 0) - math.log(num_samples), None


@dataclasses.dataclass
class BDMCResult:
    """Bidirectional Monte Carlo on data simulated from the model.

    :ivar x: the simulated data.
    :ivar lower: forward AIS, a stochastic lower bound on each :math:`\\log p(x_n)` (nats).
    :ivar upper: reverse AIS from the exact posterior sample, a stochastic upper bound.
    :ivar gap: mean of ``upper - lower`` in nats per data point.
    """

    x: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    gap: float = dataclasses.field(init=False)

    def __post_init__(self):
        self.gap = (self.upper - self.lower).mean().item()

    def __str__(self):
        return (f"BDMC on {len(self.x)} simulated points: AIS lower {self.lower.mean():.3f}, "
                f"reverse upper {self.upper.mean():.3f}, gap {self.gap:.3f} nats per data point")


@torch.no_grad()
def bdmc(model, num_data: int = 100, num_chains: int = 16, *, num_steps: int = 500, leapfrog_steps: int = 10,
         step_size: float = 0.05, target_accept: float = 0.65, seed: int | None = 0) -> BDMCResult:
    """Sandwich :math:`\\log p(x)` on ``num_data`` points simulated from a decoder model:
    forward AIS (lower bound) and the reverse chain from each point's own latent (upper
    bound), with the same schedule and transitions."""
    _check_decoder_model(model)
    positive_int(num_data, "num_data")
    positive_int(num_chains, "num_chains")
    betas = _check_options(num_steps, leapfrog_steps, step_size, target_accept)
    with evaluating(model, seed):
        prior = model.prior_distribution()
        z_true = prior.sample((num_data,))
        x = model.observation(z_true).sample()
        options = dict(leapfrog_steps=leapfrog_steps, step_size=step_size, target_accept=target_accept)
        forward, _ = anneal(model, x, prior.sample((num_chains, num_data)), betas, **options)
        reverse, _ = anneal(model, x, z_true.expand(num_chains, *z_true.shape), betas.flip(0), **options)
    lower = torch.logsumexp(forward, 0) - math.log(num_chains)
    upper = -(torch.logsumexp(reverse, 0) - math.log(num_chains))
    return BDMCResult(x.cpu(), lower.cpu(), upper.cpu())


def select_obs_noise(model, valid: torch.Tensor, candidates=None, *, num_samples: int = 16, num_steps: int = 200,
                     **options) -> tuple[float, dict[float, float]]:
    """Choose a decoder model's observation noise by AIS log-likelihood on validation data
    (Wu et al., 2017), set ``model.obs_noise`` to the best, and return it with every
    candidate's mean log-likelihood.

    :param candidates: the values to try; by default ``model.obs_noise_candidates(valid)``
        (for a :class:`~probgen.GAN`, six values spanning the scales its support allows), or
        else six from 1% to 50% of the standard deviation of ``valid``, evenly spaced in log
        scale.
    :param options: further AIS options (``leapfrog_steps``, ``batch_size``, ...).
    """
    if not hasattr(model, "obs_noise"):
        raise TypeError(f"{type(model).__name__} has no obs_noise to select")
    model.validate(valid, "valid")
    if candidates is None and callable(getattr(model, "obs_noise_candidates", None)):
        candidates = model.obs_noise_candidates(valid)
    elif candidates is None:
        scale = valid.float().std().item()
        candidates = [scale * f for f in torch.logspace(math.log10(0.01), math.log10(0.5), 6).tolist()]
    candidates = [float(c) for c in candidates]
    if not candidates or any(not c > 0 for c in candidates):
        raise ValueError(f"candidates must be positive numbers, got {candidates}")
    scores = {}
    for sigma in candidates:
        model.obs_noise = sigma
        scores[sigma] = log_likelihood(model, valid, "ais", num_samples, num_steps=num_steps, **options).mean
    best = max(scores, key=scores.__getitem__)
    model.obs_noise = best
    return best, scores
