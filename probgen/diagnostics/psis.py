r"""Pareto-smoothed importance sampling (PSIS) for each data point: :math:`\hat k` and the smoothed estimate.

A model's guide :math:`q(z \mid x_n)` gives importance weights

.. math::

    w_{ns} = \frac{p(x_n, z_s)}{q(z_s \mid x_n)}, \qquad z_s \sim q(z \mid x_n), \quad s = 1..S,

whose mean estimates :math:`p(x_n)`. How far the estimate can be trusted depends on the
tail of the weights' distribution. PSIS fits a generalized Pareto distribution to the
largest :math:`M = \lceil\min(S/5,\, 3\sqrt S)\rceil` weights of each data point; its shape
:math:`\hat k` says how heavy the tail is:

- :math:`\hat k < 0.5`: the weights have finite variance; the estimate converges quickly;
- :math:`0.5 \le \hat k \le 0.7`: finite mean, infinite variance; PSIS still works in practice;
- :math:`\hat k > 0.7`: the guide misses mass the model puts on this data point (it is too
  narrow or misplaced there); the estimate of :math:`\log p(x_n)`, IWAE included, is
  unreliable and usually far too low for any affordable :math:`S`.

The largest weights are then replaced by the expected order statistics of the fitted
distribution (truncated at the largest raw weight), which lowers the estimate's variance.

Pyro's :func:`pyro.infer.importance.psis_diagnostic` returns one :math:`\hat k` for a whole
model; :func:`psis_khat` returns one per data point, so a statistician sees *which* data
points the encoder fits badly.

References:
    Yao, Vehtari, Simpson, Gelman (2018). Yes, but Did It Work?: Evaluating Variational
    Inference. ICML.
    Vehtari, Simpson, Gelman, Yao, Gabry (2024). Pareto Smoothed Importance Sampling.
    JMLR 25(72).
    Zhang, Stephens (2009). A New and Efficient Estimation Method for the Generalized
    Pareto Distribution. Technometrics 51(3).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import torch

from ..checks import integer, positive_number
from ..infer import LikelihoodEstimate, importance_log_weights
from .plots import save_figure

__all__ = ["PSISResult", "ParetoKWarning", "pareto_smooth", "psis_khat"]

#: :math:`\hat k` above this marks an unreliable importance-sampling estimate.
K_THRESHOLD = 0.7

# the weakly informative prior on k of Vehtari et al. (2024): k shrinks towards 0.5 as if
# _PRIOR_K_COUNT extra tail points had k = 0.5; it steadies k-hat for short tails.
_PRIOR_K_COUNT = 10.0
_PRIOR_K_MEAN = 0.5
# Zhang and Stephens' grid of candidate values is scaled by this multiple of the first quartile
_PRIOR_SCALE = 3.0


class ParetoKWarning(UserWarning):
    """Some data points' importance weights have Pareto :math:`\\hat k` above 0.7."""


def _tail_length(num_samples: int) -> int:
    return math.ceil(min(0.2 * num_samples, 3.0 * math.sqrt(num_samples)))


def _fit_generalized_pareto(excess: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Shape :math:`k` and scale :math:`\sigma` of a generalized Pareto distribution for each column.

    ``excess`` is ``(M, N)``: per column, ``M`` positive exceedances sorted ascending. This is
    the empirical-Bayes estimator of Zhang and Stephens (2009): the profile likelihood of
    :math:`\theta = -k/\sigma` on a fixed grid gives posterior weights, whose mean
    :math:`\hat\theta` gives :math:`\hat k = \overline{\log(1 - \hat\theta\, e)}`, then shrunk
    towards 0.5 by the prior of Vehtari et al. (2024). All columns are fitted at once.
    """
    n = excess.shape[0]
    grid_size = 30 + int(math.sqrt(n))
    j = torch.arange(1, grid_size + 1, dtype=excess.dtype, device=excess.device)
    first_quartile = excess[int(n / 4 + 0.5) - 1]
    theta = 1.0 / excess[-1] + (1.0 - torch.sqrt(grid_size / (j - 0.5)))[:, None] / (_PRIOR_SCALE * first_quartile)
    k_grid = torch.log1p(-theta[:, None, :] * excess[None]).mean(1)  # (grid, N)
    profile = n * (torch.log(-theta / k_grid) - k_grid - 1.0)
    weights = torch.softmax(profile, 0)
    # candidates with negligible weight are dropped, as in Zhang and Stephens' algorithm
    weights = torch.where(weights >= 10 * torch.finfo(weights.dtype).eps, weights, torch.zeros_like(weights))
    weights = weights / weights.sum(0)
    theta_hat = (theta * weights).sum(0)
    k = torch.log1p(-theta_hat * excess).mean(0)
    sigma = -k / theta_hat
    k = (n * k + _PRIOR_K_COUNT * _PRIOR_K_MEAN) / (n + _PRIOR_K_COUNT)
    return k, sigma


def _pareto_quantile(p: torch.Tensor, k: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    r"""Quantile of the generalized Pareto distribution: :math:`\sigma\,((1-p)^{-k} - 1)/k`."""
    log_tail = torch.log1p(-p)[:, None]
    near_zero = k.abs() < 1e-12
    safe_k = torch.where(near_zero, torch.ones_like(k), k)
    general = sigma * torch.expm1(-safe_k * log_tail) / safe_k
    return torch.where(near_zero, -sigma * log_tail, general)


def pareto_smooth(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Pareto-smooth importance weights, one column per data point.

    :param log_weights: ``(S, N)`` log importance weights (``S`` samples for each of ``N``
        data points), e.g. from :func:`probgen.infer.importance_log_weights`.
    :returns: ``(smoothed, khat)``: the smoothed log weights ``(S, N)`` on the same scale
        (not normalized, so ``logsumexp(smoothed, 0) - log S`` estimates :math:`\log p(x_n)`),
        and :math:`\hat k` ``(N,)`` in float64.

    A column whose log weights agree to rounding (:math:`\sqrt\epsilon\,(1 + |\log w|)` of
    their dtype) has no tail at all: a perfect guide, as when :math:`q` is the exact
    posterior. Its :math:`\hat k` is :math:`-\infty` and it is left as it is. A column whose
    tail is mostly tied with the cutoff cannot be fitted: its :math:`\hat k` is NaN and it is
    left as it is too.

    Example::

        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> smoothed, khat = pareto_smooth(torch.randn(1000, 3))
        >>> smoothed.shape, bool((khat < 0.5).all())
        (torch.Size([1000, 3]), True)
    """
    if not isinstance(log_weights, torch.Tensor) or log_weights.dim() != 2:
        raise ValueError(f"log_weights must be a (num_samples, num_data) tensor, got {getattr(log_weights, 'shape', type(log_weights))}")
    num_samples = log_weights.shape[0]
    tail = _tail_length(num_samples)
    if num_samples < 25:
        raise ValueError(f"Pareto smoothing needs at least 25 importance samples per data point, got {num_samples}")
    tolerance = math.sqrt(torch.finfo(log_weights.dtype).eps) if log_weights.is_floating_point() else 0.0
    lw = log_weights.detach().double()
    if not torch.isfinite(lw).all():
        raise ValueError("log_weights holds NaN or infinite values")

    top = lw.max(0).values
    relative = lw - top  # <= 0; the largest weight of each column is 1
    constant = (top - lw.min(0).values) <= tolerance * (1.0 + top.abs())

    ordered, order = relative.sort(0)
    cutoff = ordered[num_samples - tail - 1].clamp(min=math.log(torch.finfo(torch.float64).tiny))
    excess = torch.exp(ordered[num_samples - tail :]) - torch.exp(cutoff)
    k, sigma = _fit_generalized_pareto(excess)

    probabilities = (torch.arange(tail, dtype=torch.float64, device=lw.device) + 0.5) / tail
    smoothed_tail = torch.log(_pareto_quantile(probabilities, k, sigma) + torch.exp(cutoff)).clamp(max=0.0)
    fitted = torch.isfinite(k) & (sigma > 0) & ~constant
    smoothed_tail = torch.where(fitted, smoothed_tail, ordered[num_samples - tail :])
    smoothed = relative.scatter(0, order[num_samples - tail :], smoothed_tail) + top
    k = torch.where(constant, torch.full_like(k, -math.inf), k)
    return smoothed, k


@dataclasses.dataclass
class PSISResult:
    """Per-data-point PSIS diagnostics.

    :ivar khat: Pareto :math:`\\hat k` of each data point's importance weights, ``(N,)``.
    :ivar estimate: the PSIS-smoothed estimate of :math:`\\log p(x_n)` (a
        :class:`~probgen.infer.LikelihoodEstimate`, method ``"psis"``, kind ``"estimate"``).
    :ivar log_weights: the raw log importance weights, ``(S, N)``.
    :ivar smoothed_log_weights: the Pareto-smoothed ones, same scale, ``(S, N)``.
    :ivar threshold: :math:`\\hat k` above which a data point is flagged (0.7).
    """

    khat: torch.Tensor
    estimate: LikelihoodEstimate
    log_weights: torch.Tensor
    smoothed_log_weights: torch.Tensor
    threshold: float = K_THRESHOLD

    @property
    def bad(self) -> torch.Tensor:
        """Indices of the data points with :math:`\\hat k` above the threshold."""
        return torch.nonzero(self.khat > self.threshold).flatten()

    def counts(self) -> dict[str, int]:
        """How many data points fall in each of the usual :math:`\\hat k` ranges."""
        k = self.khat
        return {
            "good (k <= 0.5)": int((k <= 0.5).sum()),
            f"ok (0.5 < k <= {self.threshold})": int(((k > 0.5) & (k <= self.threshold)).sum()),
            f"bad (k > {self.threshold})": int((k > self.threshold).sum()),
        }

    def __str__(self):
        lines = [f"PSIS over {len(self.khat)} data points, {self.log_weights.shape[0]} importance samples each",
                 f"  log p(x): {self.estimate}"]
        lines += [f"  {name:>22}: {count}" for name, count in self.counts().items()]
        return "\n".join(lines)

    def plot(self, path: str | Path, title: str = "") -> Path:
        """Save :math:`\\hat k` per data point, with the 0.5 and 0.7 lines, as a PNG."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3.5))
        ax = fig.add_subplot()
        k = self.khat.numpy()
        bad = k > self.threshold
        ax.scatter(range(len(k)), k, s=8, marker="+", color="tab:blue", label="k-hat")
        ax.scatter(torch.nonzero(torch.as_tensor(bad)).flatten().numpy(), k[bad], s=14, marker="x", color="tab:red",
                   label=f"k > {self.threshold}")
        for level, style in ((0.5, ":"), (self.threshold, "--")):
            ax.axhline(level, color="gray", linestyle=style, linewidth=1)
        ax.set_xlabel("data point")
        ax.set_ylabel("Pareto shape k-hat")
        ax.set_title(title or "importance weights per data point")
        ax.legend(loc="best")
        return save_figure(fig, path)


def smoothed_log_likelihood(smoothed_log_weights: torch.Tensor) -> torch.Tensor:
    """:math:`\\log \\frac1S \\sum_s \\tilde w_{ns}` for each column of smoothed log weights."""
    return torch.logsumexp(smoothed_log_weights, 0) - math.log(smoothed_log_weights.shape[0])


def psis_result(model, log_weights: torch.Tensor, threshold: float = K_THRESHOLD, warn: bool = True) -> PSISResult:
    """Smooth given log weights ``(S, N)`` of ``model``, and warn about the data points with large :math:`\\hat k`."""
    positive_number(threshold, "threshold")
    smoothed, khat = pareto_smooth(log_weights)
    estimate = LikelihoodEstimate(
        pointwise=smoothed_log_likelihood(smoothed),
        method="psis",
        is_bound=False,
        num_samples=log_weights.shape[0],
        num_dims=model.num_dims,
        kind="estimate",
        density=model.info.support == "real",
    )
    result = PSISResult(khat, estimate, log_weights, smoothed, threshold)
    bad = result.bad.tolist()
    if warn and bad:
        shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
        warnings.warn(
            f"{len(bad)} of {len(khat)} data points have Pareto k > {threshold} (data points {shown}): the guide "
            "is too narrow or misplaced there, and importance-sampled log-likelihoods of these points are unreliable",
            ParetoKWarning,
            stacklevel=3,
        )
    return result


def psis_khat(
    model,
    x: torch.Tensor,
    num_samples: int = 1000,
    *,
    batch_size: int = 100,
    seed: int | None = 0,
    threshold: float = K_THRESHOLD,
    warn: bool = True,
    sharded: bool = False,
) -> PSISResult:
    r"""Pareto :math:`\hat k` of each data point's importance weights, and the PSIS estimate of :math:`\log p(x_n)`.

    :param model: any probgen model (its ``log_weights``: :math:`z \sim q(z \mid x)`).
    :param x: data points along dim 0.
    :param num_samples: importance samples per data point (at least 25; the tail fit uses
        :math:`\lceil\min(S/5, 3\sqrt S)\rceil` of them).
    :param threshold: :math:`\hat k` above which a data point is flagged (0.7).
    :param warn: warn with :class:`ParetoKWarning`, naming the count and the data points,
        when any :math:`\hat k` exceeds ``threshold``.
    :param sharded: weigh the data sharded over the ranks of a distributed run
        (:func:`probgen.infer.importance_log_weights`); call it on every rank.
    :returns: a :class:`PSISResult`.

    Example::

        >>> import probgen as pg
        >>> vae = pg.VAE(pg.datasets.load("optdigits").info, 4, likelihood="categorical")
        >>> x = pg.datasets.load("optdigits").test[:5]
        >>> result = pg.psis_khat(vae, x, num_samples=100, warn=False)
        >>> result.khat.shape
        torch.Size([5])
    """
    integer(num_samples, "num_samples (Pareto smoothing needs at least 25)", minimum=25)
    log_weights = importance_log_weights(model, x, num_samples, batch_size=batch_size, seed=seed, sharded=sharded)
    return psis_result(model, log_weights, threshold, warn)
