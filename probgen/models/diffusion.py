r"""Diffusion models as what they are: Markovian hierarchical VAEs with a fixed encoder.

Data :math:`x` are mapped to :math:`y \in [-1, 1]` (levels :math:`k \mapsto 2k/(K-1) - 1`;
real data are used as they are) and noised by the variance-preserving forward process

.. math:: q(z_t \mid x) = \mathcal{N}(\alpha_t y, \sigma_t^2 I), \qquad
          \alpha_t^2 = \mathrm{sigmoid}(\lambda_t), \ \sigma_t^2 = \mathrm{sigmoid}(-\lambda_t),

with the log-SNR :math:`\lambda_t` from :mod:`probgen.models.schedules`. On the grid
:math:`t_i = i/T` the generative model is the reverse chain

.. math:: p(z_1) = \mathcal{N}(0, I), \quad
          p(z_{s} \mid z_t) = q(z_s \mid z_t, y = \hat y_\theta(z_t, \lambda_t)), \quad
          p(x \mid z_0),

and the guide is the forward process written in the same (reverse) order,
:math:`q(z_1 \mid x) \prod_i q(z_{t_{i-1}} \mid z_{t_i}, x)`. The ELBO splits into three terms,
each reported per data point in nats:

.. math:: \log p(x) \ge
    \underbrace{-\mathrm{KL}(q(z_1 \mid x) \,\|\, p(z_1))}_{\text{prior}}
    \underbrace{- \sum_{i=1}^T \mathbb{E}_q\,\mathrm{KL}(q(z_{s} \mid z_t, x) \,\|\, p(z_{s} \mid z_t))}_{\text{diffusion}}
    + \underbrace{\mathbb{E}_q \log p(x \mid z_0)}_{\text{reconstruction}},

where each Gaussian KL is :math:`\tfrac12 (\mathrm{SNR}_s - \mathrm{SNR}_t)\,\|y - \hat y\|^2`.
The fast estimator draws one step :math:`i` per data point (stratified across the batch)
and multiplies its KL by :math:`T`, which has the explicit chain's expectation; as
:math:`T \to \infty` the diffusion term becomes VDM's
:math:`\tfrac12 \mathbb{E}_{t \sim U(0,1)}[\lambda'(t)\, \mathrm{SNR}_t \|y - \hat y\|^2]`
(``num_steps=None``).

The reconstruction :math:`p(x \mid z_0)` is exact on the data's support: for binary and
:math:`K`-level data, each dimension is categorical over the levels with
:math:`\log p(x = k \mid z_0) = \log\mathrm{softmax}_k\big(-(z_0 - \alpha_0 y_k)^2 / 2\sigma_0^2\big)`,
so the bound is on the discrete data's own log-probability, without dequantization. Real
data get the Normal decoder :math:`\mathcal{N}(y;\ z_0/\alpha_0,\ \sigma_0^2/\alpha_0^2)`,
a density.

References:
    Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015). Deep Unsupervised Learning using
    Nonequilibrium Thermodynamics. ICML.
    Ho, Jain, Abbeel (2020). Denoising Diffusion Probabilistic Models. NeurIPS.
    Kingma, Salimans, Poole, Ho (2021). Variational Diffusion Models. NeurIPS.
    Song, Meng, Ermon (2021). Denoising Diffusion Implicit Models. ICLR.
    Nichol, Dhariwal (2021). Improved Denoising Diffusion Probabilistic Models. ICML.
    Salimans, Ho (2022). Progressive Distillation for Fast Sampling of Diffusion Models. ICLR.
"""

from __future__ import annotations

import enum
import math
from typing import Callable, NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from ..checks import choice, positive_int, sample_count
from ..distributions import DataInfo, Likelihood, likelihood_for
from ..nn.unet import TimeMLP, UNet
from .base import GenerativeModel, register_family
from .schedules import LOGSNR_MAX, LOGSNR_MIN, LogSNRSchedule, ScheduleKind, schedule as make_schedule

__all__ = ["Diffusion", "Parameterization", "Sampler", "DEFAULT_CONTINUOUS_STEPS", "default_logsnr_max"]

# the step count of a continuous-time model's explicit chain and sampler, unless given
DEFAULT_CONTINUOUS_STEPS = 1000

# data values (draws x points x dimensions) per pass of elbo_terms: bounds its memory for any num_samples
_VALUES_PER_PASS = 2**20


class Parameterization(str, enum.Enum):
    """What the network predicts: the noise, the velocity :math:`v = \\alpha\\epsilon - \\sigma y`,
    or the clean data."""

    EPS = "eps"
    V = "v"
    X0 = "x0"


class Sampler(str, enum.Enum):
    """Ancestral sampling of the reverse chain, or deterministic DDIM (:math:`\\eta = 0`)."""

    ANCESTRAL = "ancestral"
    DDIM = "ddim"


def default_logsnr_max(num_levels: int | None) -> float:
    r"""The log-SNR at :math:`t = 0` for data with ``num_levels`` levels (``None``: real data).

    For :math:`K` levels spaced :math:`\Delta = 2/(K-1)` apart, :math:`\sigma_0 = \Delta/8`
    leaves each level's decoder an error rate of about :math:`2\Phi(-4) \approx 10^{-4}`
    per dimension, so the reconstruction term is nearly exact, while the noise levels below
    that scale, which a network could only model by snapping :math:`z` to the nearest level,
    are left out of the diffusion. That gives :math:`\lambda_0 = \log((1 - \sigma_0^2)/\sigma_0^2)`:
    2.7 for binary data, 8.3 for 17 levels, 13.9 for 256 (VDM's 13.3). Real data keep
    VDM's 13.3, where the Normal decoder's variance is negligible.
    """
    if num_levels is None:
        return LOGSNR_MAX
    sigma2 = (1.0 / (4 * (num_levels - 1))) ** 2
    return math.log1p(-sigma2) - math.log(sigma2)


class _CallableNetwork(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, z, logsnr):
        return self.fn(z, logsnr)


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value)) if value >= 0 else math.exp(value) / (1.0 + math.exp(value))


class EndCoefficients(NamedTuple):
    r"""The forward process at its two ends, as Python floats (float64): :math:`\alpha_0,
    \sigma_0` where the decoder takes over, and :math:`\alpha_1^2, \log\sigma_1^2` where the
    prior does. Every schedule starts at ``logsnr_max`` and ends at ``logsnr_min`` by
    construction (the learned one pins them), so the ends need no tensor work on each call."""

    alpha0: float
    sigma0: float
    alpha1_squared: float
    log_sigma1_squared: float

    @classmethod
    def of(cls, logsnr_min: float, logsnr_max: float) -> "EndCoefficients":
        return cls(math.sqrt(_sigmoid(logsnr_max)), math.sqrt(_sigmoid(-logsnr_max)), _sigmoid(logsnr_min),
                   -math.log1p(math.exp(logsnr_min)))


class _VarianceGradient(torch.autograd.Function):
    r"""Identity forward; backward multiplies the incoming gradient by :math:`2L` per draw,
    where ``loss`` holds the draw's diffusion loss :math:`L` (filled in after the forward
    pass, before backward). Placed on the schedule's outputs, it turns the gradient the
    schedule's parameters receive from :math:`\sum L` into that of :math:`\sum L^2`."""

    @staticmethod
    def forward(ctx, value, loss):
        ctx.loss = loss  # read at backward time, after diffusion_term has filled it
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        return grad * (2 * ctx.loss), None


def _alpha_sigma(logsnr: torch.Tensor):
    """:math:`(\\alpha, \\sigma)` of a variance-preserving process, in float64."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


@register_family("diffusion")
class Diffusion(GenerativeModel):
    r"""A variance-preserving diffusion model, written as a Markovian hierarchical VAE.

    :param data: the data's description, ``data.info`` (a :class:`~probgen.DataInfo`), or
        an event shape alone, e.g. ``(2,)``, which means real-valued data. Binary and
        discrete data get the exact categorical decoder over their levels, real data the
        Normal decoder (module docstring).
    :param num_steps: ``None`` for continuous time (the VDM bound), or the number of steps
        :math:`T` of the discrete-time model.
    :param schedule: ``"linear"`` (in log-SNR), ``"cosine"``, ``"learned"`` (monotone, end
        points pinned; see :class:`~probgen.models.schedules.LearnedSchedule`), or a
        :class:`~probgen.models.schedules.LogSNRSchedule` (which brings its own end points).
    :param parameterization: what the network predicts: ``"eps"``, ``"v"`` or ``"x0"``.
        The bound is the same; its Monte Carlo variance is not. The ELBO weights the squared
        error of :math:`\hat y` by :math:`\mathrm{SNR}_t`, which is a plain
        :math:`\|\epsilon - \hat\epsilon\|^2` for ``"eps"`` (the default) and
        :math:`\alpha_t^2 \|v - \hat v\|^2` for ``"v"``, but up to :math:`e^{\lambda_{max}}`
        times an error for ``"x0"``, so ``"x0"`` trains poorly under the ELBO at high SNR.
    :param network: a module or callable ``network(z, logsnr) -> prediction`` where ``z`` has
        shape ``(batch, *event_shape)``, ``logsnr`` shape ``(batch,)`` (float32) and the
        prediction ``z``'s shape. Default: an MLP with a noise-level embedding for vectors,
        a small U-Net for ``(H, W)`` or ``(C, H, W)`` images. An analytic denoiser works too.
    :param likelihood: ``None`` (follow ``data``), or a support stated explicitly as a
        :class:`~probgen.distributions.Likelihood` or its name: ``"bernoulli"`` (binary),
        ``"categorical"`` or ``"discretized_logistic"`` (``num_levels`` levels), ``"normal"``
        (real data: a density, also on levels). Only the support is taken from it: the
        decoder is always the exact one described in the module docstring.
    :param num_levels: levels of discrete data, with a likelihood name, when ``data`` does not say.
    :param logsnr_min: :math:`\lambda(1)`, the end of the forward process.
    :param logsnr_max: :math:`\lambda(0)`, where the decoder takes over; default
        :func:`default_logsnr_max` of the data's levels (13.3 for real data).

    Example::

        >>> import probgen as pg
        >>> diff = pg.Diffusion(pg.DataInfo((8, 8), "discrete", 17), num_steps=100)
        >>> x = diff.sample(2, steps=10, sampler="ddim")
        >>> x.shape, bool(((x >= 0) & (x <= 16) & (x == x.round())).all())
        (torch.Size([2, 8, 8]), True)
    """

    likelihood_methods = ("elbo",)
    sample_options = ("steps", "sampler")
    #: :class:`probgen.infer.TermsELBO`, the one-timestep estimator of :meth:`elbo_terms`
    default_objective = "terms"
    #: :func:`probgen.fit` keeps a moving average of the weights (decay 0.999) and leaves the
    #: model with it: the ancestral sampler amplifies the jitter of the last iterate at low
    #: signal-to-noise ratios, so samples from one epoch's weights are biased by more than
    #: the bound shows (:mod:`probgen.infer.averaging`, ``benchmarks/defaults.py``).
    fit_defaults = {"ema": 0.999}
    #: In continuous time a learned schedule with pinned end points does not change the
    #: bound, only the variance of its estimator (Kingma et al., 2021, sec. 5.2). When this is
    #: true (the default), the schedule's parameters are trained to reduce that variance:
    #: the gradient they receive from each draw's diffusion loss :math:`L` is that of
    #: :math:`L^2`, so their update follows :math:`\nabla \mathbb{E}[L^2] = \nabla
    #: \mathrm{Var}[L]`. Every other parameter gets the ELBO's own gradient. Discrete time,
    #: where the path does change the bound, always uses the ELBO's gradient.
    schedule_variance_gradient = True

    def __init__(
        self,
        data,
        *,
        num_steps: int | None = None,
        schedule: str | LogSNRSchedule = "linear",
        parameterization: str = "eps",
        network: nn.Module | Callable | None = None,
        likelihood: str | Likelihood | None = None,
        num_levels: int | None = None,
        logsnr_min: float = LOGSNR_MIN,
        logsnr_max: float | None = None,
    ):
        info = DataInfo.of(data)
        event_shape = info.event_shape
        if num_steps is not None:  # None: continuous time
            positive_int(num_steps, "num_steps")
        rebuildable = network is None and not isinstance(schedule, LogSNRSchedule) and not isinstance(likelihood, Likelihood)
        likelihood_name = likelihood
        likelihood = likelihood_for(data, likelihood, num_levels)
        super().__init__(data, likelihood, support_stated=likelihood_name is not None)

        if logsnr_max is None:
            logsnr_max = default_logsnr_max(likelihood.num_levels if likelihood.support != "real" else None)
        self.num_steps = num_steps
        self.parameterization = choice(parameterization, Parameterization, "parameterization")
        if isinstance(schedule, LogSNRSchedule):
            self.schedule = schedule
        else:
            kind = choice(schedule, ScheduleKind, "schedule")
            self.schedule = make_schedule(kind, logsnr_min, logsnr_max)
        if network is None:
            if len(event_shape) == 1:
                network = TimeMLP(event_shape)
            elif len(event_shape) in (2, 3):
                network = UNet(event_shape)
            else:
                raise ValueError(f"no default network for event_shape {event_shape}: pass network=...")
        elif not isinstance(network, nn.Module):
            if not callable(network):
                raise TypeError(f"network must be a module or a callable (z, logsnr) -> prediction, got {type(network).__name__}")
            network = _CallableNetwork(network)
        self.network = network

        support = likelihood.support
        if support in ("binary", "discrete"):
            levels = torch.linspace(-1.0, 1.0, likelihood.num_levels, dtype=torch.float64)
        else:
            levels = torch.zeros(0, dtype=torch.float64)
        self.register_buffer("levels", levels, persistent=False)
        # plain attributes, read on every step: a PyroModule's buffer and submodule lookups
        # cost microseconds each
        self._num_levels = len(levels)
        self._support = self.info  # the support it scores, read on every step
        self._ends = EndCoefficients.of(self.schedule.logsnr_min, self.schedule.logsnr_max)

        if rebuildable:
            self.config = {
                "family": "diffusion",
                "data": self.data_config(),
                "num_steps": num_steps,
                "schedule": ScheduleKind(schedule).value,
                "parameterization": self.parameterization.value,
                "likelihood": likelihood_name,
                "num_levels": num_levels,
                "logsnr_min": float(logsnr_min),
                "logsnr_max": float(logsnr_max),
            }

    # -- pieces -------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """The denoiser's dtype, in which it takes data (a learned schedule keeps float64
        weights of its own, so the model's first weight does not say it)."""
        for tensor in self.network.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return super().dtype

    @property
    def discrete(self) -> bool:
        """Whether the data are binary or :math:`K`-level (the decoder is categorical)."""
        return self._num_levels > 0

    def to_diffusion_space(self, x: torch.Tensor) -> torch.Tensor:
        """Data to the space the process diffuses: levels to :math:`[-1, 1]`, real data unchanged."""
        return self._support.to_signed_interval(x)

    def _bcast(self, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A per-batch float64 coefficient, shaped to multiply ``like`` (batch + event)."""
        return value.to(like.dtype).reshape(*value.shape, *(1,) * len(self.event_shape))

    def predict(self, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """The network's raw prediction at ``z`` (batch + event) and ``logsnr`` (batch)."""
        batch = z.shape[: z.dim() - len(self.event_shape)]
        logsnr = logsnr.expand(batch).reshape(-1).to(z.dtype)
        out = self.network(z.reshape(-1, *self.event_shape), logsnr)
        return out.reshape(z.shape)

    def denoise(self, z: torch.Tensor, logsnr: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\hat y_\theta(z_t, \lambda_t)`, the network's estimate of the clean (scaled) data."""
        if out is None:
            out = self.predict(z, logsnr)
        alpha, sigma = _alpha_sigma(logsnr.double())
        alpha, sigma = self._bcast(alpha, z), self._bcast(sigma, z)
        if self.parameterization is Parameterization.EPS:
            return (z - sigma * out) / alpha
        if self.parameterization is Parameterization.V:
            return alpha * z - sigma * out
        return out

    def _weighted_error(self, y, noise, z, out, logsnr):
        r""":math:`\mathrm{SNR}_t \|y - \hat y\|^2` per point, computed in the network's own
        output space, where it is a plain squared error (no division by a small
        :math:`\alpha` or :math:`\sigma`)."""
        event_dims = tuple(range(-len(self.event_shape), 0))
        if self.parameterization is Parameterization.EPS:
            return (noise - out).pow(2).sum(event_dims)
        alpha, sigma = _alpha_sigma(logsnr)
        if self.parameterization is Parameterization.V:
            a, s = self._bcast(alpha, z), self._bcast(sigma, z)
            velocity = a * noise - s * y
            return (velocity - out).pow(2).sum(event_dims) * alpha.pow(2).to(z.dtype)
        return (y - out).pow(2).sum(event_dims) * logsnr.exp().to(z.dtype)

    def _posterior(self, z, y, logsnr_t, logsnr_s):
        r"""Mean and scale of :math:`q(z_s \mid z_t, y)` for :math:`\lambda_s > \lambda_t`:
        with :math:`c = 1 - e^{\lambda_t - \lambda_s}`, the mean is
        :math:`\frac{\alpha_s}{\alpha_t}(1 - c) z_t + \alpha_s c\, y` and the variance :math:`\sigma_s^2 c`."""
        alpha_t, _ = _alpha_sigma(logsnr_t)
        alpha_s, sigma_s = _alpha_sigma(logsnr_s)
        c = -torch.expm1(logsnr_t - logsnr_s)
        loc = self._bcast(alpha_s / alpha_t * (1 - c), z) * z + self._bcast(alpha_s * c, z) * y
        return loc, self._bcast(sigma_s * c.sqrt(), z).expand_as(loc)

    def _level_log_probs(self, z0: torch.Tensor) -> torch.Tensor:
        r"""Per dimension, the decoder's log-probabilities of the levels (last axis).

        Written as squared distances, :math:`-(z_0 - \alpha_0 y_k)^2 / 2\sigma_0^2`, the
        logits stay well-conditioned in float32: the difference is formed before it is
        squared and scaled, so no large, nearly equal numbers are subtracted."""
        alpha, sigma = self._ends.alpha0, self._ends.sigma0
        distance = z0.unsqueeze(-1) - (alpha * self.levels).to(z0.dtype)
        return torch.log_softmax(distance.square() * (-0.5 / sigma**2), -1)

    def decoder(self, z0: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`p(x \mid z_0)`: categorical over the data's levels, or a Normal for real data."""
        event_dims = len(self.event_shape)
        if self.discrete:
            return dist.Categorical(logits=self._level_log_probs(z0)).to_event(event_dims)
        alpha, sigma = self._ends.alpha0, self._ends.sigma0
        return dist.Normal(z0 / alpha, torch.full_like(z0, sigma / alpha)).to_event(event_dims)

    def _chain_times(self, steps: int | None) -> torch.Tensor:
        """Times :math:`1 = t_n > \\dots > t_0 = 0` of a chain of ``steps`` steps (respaced
        evenly over the model's own grid in discrete time)."""
        if steps is None:
            steps = self.num_steps or DEFAULT_CONTINUOUS_STEPS
        positive_int(steps, "steps")
        device = self.levels.device
        if self.num_steps is None:
            return torch.arange(steps, -1, -1, dtype=torch.float64, device=device) / steps
        if steps > self.num_steps:
            raise ValueError(f"steps={steps} exceeds the model's num_steps={self.num_steps}")
        # spacing num_steps / steps >= 1 keeps the rounded indices distinct
        index = torch.round(torch.linspace(self.num_steps, 0, steps + 1, dtype=torch.float64, device=device))
        return index / self.num_steps

    # -- the three terms of the ELBO, per data point ------------------------------------

    def prior_term(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`-\mathrm{KL}(q(z_1 \mid x) \,\|\, \mathcal{N}(0, I))` per data point (nats, :math:`\le 0`)."""
        alpha2, log_sigma2 = self._ends.alpha1_squared, self._ends.log_sigma1_squared
        y = self.to_diffusion_space(x)
        # sigma^2 - 1 = -alpha^2, written so that nothing cancels as alpha -> 0
        kl = 0.5 * (alpha2 * (y.square() - 1) - log_sigma2)
        return -kl.flatten(-len(self.event_shape)).sum(-1)

    def reconstruction_term(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x \mid z_0)` with :math:`z_0 = \alpha_0 y + \sigma_0\,\text{noise}`
        (batch shape of ``noise``; ``x`` broadcasts)."""
        alpha, sigma = self._ends.alpha0, self._ends.sigma0
        y = self.to_diffusion_space(x)
        z0 = alpha * y + sigma * noise
        if self.discrete:
            # the decoder's log_prob, without a distribution object's broadcasting and checks
            index = x.long().expand_as(z0).unsqueeze(-1)
            log_prob = self._level_log_probs(z0).gather(-1, index).squeeze(-1)
            return log_prob.flatten(-len(self.event_shape)).sum(-1)
        return self.decoder(z0).log_prob(x.expand_as(z0))

    def diffusion_term(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        r"""Minus the diffusion loss at times ``t`` (batch shape) and ``noise`` (batch + event).

        Continuous time: :math:`\tfrac12 \lambda'(t)\, \mathrm{SNR}_t \|y - \hat y\|^2`.
        Discrete time: :math:`-\tfrac{T}{2} (\mathrm{SNR}_{t - 1/T} - \mathrm{SNR}_t) \|y - \hat y\|^2`
        (``t`` on the grid :math:`i/T`, :math:`i \ge 1`). Averaged over
        :math:`t \sim U(0, 1]` (or uniform :math:`i`) and the noise, either is the diffusion
        term of the ELBO.
        """
        y = self.to_diffusion_space(x)
        schedule = self.schedule
        t = t.to(x.device, torch.float64)
        logsnr = schedule(t)
        variance_gradient = (
            self.num_steps is None and self.schedule_variance_gradient and torch.is_grad_enabled()
            and logsnr.requires_grad
        )
        if variance_gradient:
            loss = torch.full_like(logsnr, math.nan)  # each draw's loss, filled in below
            logsnr = _VarianceGradient.apply(logsnr, loss)
        alpha, sigma = _alpha_sigma(logsnr)
        z = self._bcast(alpha, y) * y + self._bcast(sigma, y) * noise
        out = self.predict(z, logsnr)
        error = self._weighted_error(y, noise, z, out, logsnr)
        if self.num_steps is None:
            weight = -0.5 * schedule.derivative(t)
        else:
            logsnr_s = schedule(t - 1.0 / self.num_steps)
            weight = 0.5 * self.num_steps * torch.expm1(logsnr_s - logsnr)
        if variance_gradient:
            weight = _VarianceGradient.apply(weight, loss)
        value = weight.to(error.dtype) * error
        if variance_gradient:
            loss.copy_(value.detach())
        return -value

    def _stratified_times(self, shape, device) -> torch.Tensor:
        """Times in (0, 1] on a randomly shifted even grid over all draws (VDM's
        low-discrepancy sampler): along the first axis each data point's draws are evenly
        spread. Discrete time rounds them up onto the grid :math:`i/T`, :math:`i \\ge 1`."""
        count = math.prod(shape)
        u = (torch.rand((), dtype=torch.float64, device=device)
             + torch.arange(count, dtype=torch.float64, device=device) / count) % 1.0
        t = 1.0 - u.reshape(shape)  # in (0, 1]
        if self.num_steps is not None:
            t = torch.ceil(t * self.num_steps).clamp(min=1) / self.num_steps
        return t

    def elbo_terms(self, x: torch.Tensor, num_samples: int = 1, *, validate: bool = True) -> dict[str, torch.Tensor]:
        """The fast estimator's per-data-point terms ``{"prior", "diffusion",
        "reconstruction"}`` in nats, each averaged over ``num_samples`` stratified timesteps
        and noise draws. They sum to an unbiased estimate of the ELBO. ``validate=False``
        (the training step's path: :func:`probgen.fit` validated the data once) skips the
        checks."""
        if validate:
            self.validate(x)
            positive_int(num_samples, "num_samples")
        x = x.to(self.levels.device)
        times = self._stratified_times((num_samples, len(x)), x.device)
        chunk = max(1, _VALUES_PER_PASS // (len(x) * self.num_dims))
        diffusion, reconstruction = 0.0, 0.0
        for start in range(0, num_samples, chunk):
            t = times[start : start + chunk]
            noise = torch.randn(*t.shape, *self.event_shape, device=x.device, dtype=x.dtype)
            diffusion = diffusion + self.diffusion_term(x, t, noise).sum(0)
            noise = torch.randn_like(noise)
            reconstruction = reconstruction + self.reconstruction_term(x, noise).sum(0)
        return {
            "prior": self.prior_term(x),
            "diffusion": diffusion / num_samples,
            "reconstruction": reconstruction / num_samples,
        }

    # -- the Pyro program ---------------------------------------------------------------

    @pyro_method
    def model(self, x: torch.Tensor | None = None, *, num_data: int | None = None, steps: int | None = None):
        r"""The reverse chain :math:`z_1 \to \dots \to z_0 \to x` of ``steps`` steps (default:
        ``num_steps``, or :data:`DEFAULT_CONTINUOUS_STEPS` in continuous time). Sites are
        named ``"z_n"`` (at :math:`t = 1`) down to ``"z_0"``, then ``"x"``."""
        n = len(x) if x is not None else (num_data or 1)
        times = self._chain_times(steps)
        logsnr = self.schedule(times)
        steps = len(times) - 1
        zeros = torch.zeros(self.event_shape, device=self.levels.device)
        with pyro.plate("data", n, dim=-1):
            z = pyro.sample(f"z_{steps}", dist.Normal(zeros, 1.0).to_event(len(self.event_shape)))
            for j in range(steps):
                y_hat = self.denoise(z, logsnr[j])
                loc, scale = self._posterior(z, y_hat, logsnr[j], logsnr[j + 1])
                z = pyro.sample(f"z_{steps - j - 1}", dist.Normal(loc, scale).to_event(len(self.event_shape)))
            return pyro.sample("x", self.decoder(z), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, *, num_data: int | None = None, steps: int | None = None):
        r"""The forward process in reverse order: :math:`q(z_1 \mid x)`, then
        :math:`q(z_{s} \mid z_t, x)` down to :math:`z_0`; nothing in it is learned."""
        times = self._chain_times(steps)
        logsnr = self.schedule(times)
        steps = len(times) - 1
        y = self.to_diffusion_space(x)
        alpha, sigma = _alpha_sigma(logsnr[0])
        with pyro.plate("data", len(x), dim=-1):
            z = pyro.sample(
                f"z_{steps}", dist.Normal(alpha.to(y.dtype) * y, sigma.to(y.dtype).expand_as(y)).to_event(len(self.event_shape))
            )
            for j in range(steps):
                loc, scale = self._posterior(z, y, logsnr[j], logsnr[j + 1])
                z = pyro.sample(f"z_{steps - j - 1}", dist.Normal(loc, scale).to_event(len(self.event_shape)))
        return z

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, steps: int | None = None, sampler: str = "ancestral") -> torch.Tensor:
        """``n`` draws in the data's space (levels for discrete data); with ``mean=True`` the
        decoder's mean given :math:`z_0` instead (the expected level, for sample grids).

        :param steps: reverse steps; fewer than ``num_steps`` respaces the grid evenly.
            Default: ``num_steps``, or :data:`DEFAULT_CONTINUOUS_STEPS` in continuous time.
        :param sampler: ``"ancestral"`` (the model's own reverse chain) or ``"ddim"``
            (deterministic given :math:`z_1`). For discrete data :math:`\\hat y` is clipped to
            :math:`[-1, 1]`, the range the data live in.
        """
        sample_count(n, self.info.num_dims)
        sampler = choice(sampler, Sampler, "sampler")
        times = self._chain_times(steps)
        logsnr = self.schedule(times)
        z = torch.randn(n, *self.event_shape, device=self.levels.device)
        for j in range(len(times) - 1):
            y_hat = self.denoise(z, logsnr[j])
            if self.discrete:
                y_hat = y_hat.clamp(-1.0, 1.0)
            if sampler is Sampler.ANCESTRAL:
                loc, scale = self._posterior(z, y_hat, logsnr[j], logsnr[j + 1])
                z = loc + scale * torch.randn_like(z)
            else:
                alpha_t, sigma_t = _alpha_sigma(logsnr[j])
                alpha_s, sigma_s = _alpha_sigma(logsnr[j + 1])
                eps_hat = (z - alpha_t.float() * y_hat) / sigma_t.float()
                z = alpha_s.float() * y_hat + sigma_s.float() * eps_hat
        decoder = self.decoder(z)
        if not mean:
            return decoder.sample().to(z.dtype)
        if self.discrete:  # the expected level under the categorical decoder
            levels = torch.arange(self._num_levels, device=z.device, dtype=z.dtype)
            return decoder.base_dist.probs @ levels
        return decoder.mean

    def extra_repr(self) -> str:
        time = "continuous" if self.num_steps is None else f"num_steps={self.num_steps}"
        return f"event_shape={self.event_shape}, {time}, parameterization={self.parameterization.value}, likelihood={self.likelihood}"
