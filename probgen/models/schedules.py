r"""Noise schedules of a variance-preserving diffusion, as log signal-to-noise ratios.

A schedule is a decreasing function :math:`\lambda(t) = \log(\alpha_t^2 / \sigma_t^2)` on
:math:`t \in [0, 1]`, with :math:`\alpha_t^2 = \mathrm{sigmoid}(\lambda_t)` and
:math:`\sigma_t^2 = \mathrm{sigmoid}(-\lambda_t)`, so :math:`\alpha_t^2 + \sigma_t^2 = 1`.
Everything the bound needs (:math:`\alpha, \sigma`, SNR ratios, :math:`d\lambda/dt`) follows
from :math:`\lambda`, and it is computed in float64: the bound's terms are differences of
nearly equal SNRs near :math:`t = 0`, where float32 loses them.

Example::

    >>> import torch
    >>> from probgen.models.schedules import schedule
    >>> s = schedule("cosine")
    >>> s(torch.tensor([0.0, 1.0], dtype=torch.float64))
    tensor([13.3000, -5.0000], dtype=torch.float64)

References:
    Kingma, Salimans, Poole, Ho (2021). Variational Diffusion Models. NeurIPS.
    Nichol, Dhariwal (2021). Improved Denoising Diffusion Probabilistic Models. ICML.
"""

from __future__ import annotations

import enum
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ScheduleKind",
    "LogSNRSchedule",
    "LinearSchedule",
    "CosineSchedule",
    "LearnedSchedule",
    "schedule",
    "LOGSNR_MAX",
    "LOGSNR_MIN",
]

# VDM's end points: sigma_0^2 = sigmoid(-13.3) ~ 1.7e-6 leaves the decoder almost nothing to
# do; alpha_1^2 = sigmoid(-5) ~ 0.0067 makes the prior term small but non-zero.
LOGSNR_MAX = 13.3
LOGSNR_MIN = -5.0


class ScheduleKind(str, enum.Enum):
    LINEAR = "linear"
    COSINE = "cosine"
    LEARNED = "learned"


class LogSNRSchedule(nn.Module):
    r"""Base class: ``forward(t)`` is :math:`\lambda(t)` (float64), decreasing from
    ``logsnr_max`` at :math:`t = 0` to ``logsnr_min`` at :math:`t = 1`."""

    def __init__(self, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX):
        super().__init__()
        if not (math.isfinite(logsnr_min) and math.isfinite(logsnr_max) and logsnr_min < logsnr_max):
            raise ValueError(
                f"a schedule needs finite logsnr_min < logsnr_max, got logsnr_min={logsnr_min}, logsnr_max={logsnr_max}"
            )
        self.logsnr_min, self.logsnr_max = float(logsnr_min), float(logsnr_max)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`d\lambda/dt` at ``t`` (negative), differentiable with respect to the
        schedule's parameters; by autograd unless a subclass knows it in closed form."""
        t = t.detach().double().requires_grad_(True)
        with torch.enable_grad():
            logsnr = self(t)
            (grad,) = torch.autograd.grad(logsnr.sum(), t, create_graph=True)
        return grad

    def extra_repr(self) -> str:
        return f"logsnr_min={self.logsnr_min}, logsnr_max={self.logsnr_max}"


class LinearSchedule(LogSNRSchedule):
    r"""Log-SNR linear in time (VDM's fixed schedule):
    :math:`\lambda(t) = \lambda_{max} + (\lambda_{min} - \lambda_{max})\, t`."""

    def forward(self, t):
        t = t.double()
        return self.logsnr_max + (self.logsnr_min - self.logsnr_max) * t

    def derivative(self, t):
        return torch.full_like(t.double(), self.logsnr_min - self.logsnr_max)


class CosineSchedule(LogSNRSchedule):
    r"""The cosine schedule, :math:`\alpha_t^2 \propto \cos^2`, written in log-SNR and
    truncated to the end points: :math:`\lambda(t) = -2 \log \tan(a t + b)` with
    :math:`b = \arctan e^{-\lambda_{max}/2}` and :math:`a = \arctan e^{-\lambda_{min}/2} - b`."""

    def __init__(self, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX):
        super().__init__(logsnr_min, logsnr_max)
        self.b = math.atan(math.exp(-self.logsnr_max / 2))
        self.a = math.atan(math.exp(-self.logsnr_min / 2)) - self.b

    def forward(self, t):
        return -2 * torch.log(torch.tan(self.a * t.double() + self.b))

    def derivative(self, t):
        return -4 * self.a / torch.sin(2 * (self.a * t.double() + self.b))


class _PositiveLinear(nn.Module):
    """A linear layer whose weights are kept positive (softplus), so it is increasing."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.raw_weight = nn.Parameter(torch.randn(out_features, in_features, dtype=torch.float64) * 0.1)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=torch.float64))

    def forward(self, x):
        return F.linear(x, F.softplus(self.raw_weight), self.bias)


class LearnedSchedule(LogSNRSchedule):
    r"""A learned monotone schedule (VDM): a network :math:`\tilde\gamma(t)`, increasing in
    :math:`t` by construction (positive weights, monotone activation), rescaled so that

    .. math:: \lambda(t) = \lambda_{max} + (\lambda_{min} - \lambda_{max})
              \frac{\tilde\gamma(t) - \tilde\gamma(0)}{\tilde\gamma(1) - \tilde\gamma(0)}.

    **The end points are pinned** at ``logsnr_min``/``logsnr_max``: the prior and
    reconstruction terms then stay where the fixed schedules put them, and only the path
    between them is learned. What the path is learned for depends on time:

    - in discrete time the path changes the bound, and training follows the ELBO's gradient;
    - in continuous time the bound does not depend on the path (Kingma et al., 2021, eq. 17),
      only the variance of its one-timestep Monte Carlo estimator does, so
      :class:`~probgen.models.diffusion.Diffusion` trains the path to minimize that variance
      (VDM's choice; see ``Diffusion.schedule_variance_gradient``).

    Parameters are float64.
    """

    def __init__(self, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX, hidden: int = 64):
        super().__init__(logsnr_min, logsnr_max)
        self.linear = _PositiveLinear(1, 1)
        self.hidden = _PositiveLinear(1, hidden)
        self.out = _PositiveLinear(hidden, 1)

    def _unnormalized(self, t):
        h = self.linear(t.unsqueeze(-1))
        return (h + self.out(torch.sigmoid(self.hidden(h)))).squeeze(-1)

    def forward(self, t):
        t = t.double()
        # t = 0 and 1, made on t's device (a tensor from a list would be a copy from the host at every call)
        ends = self._unnormalized(torch.arange(2, dtype=torch.float64, device=t.device))
        fraction = (self._unnormalized(t) - ends[0]) / (ends[1] - ends[0])
        return self.logsnr_max + (self.logsnr_min - self.logsnr_max) * fraction


_KINDS = {ScheduleKind.LINEAR: LinearSchedule, ScheduleKind.COSINE: CosineSchedule, ScheduleKind.LEARNED: LearnedSchedule}


def schedule(kind: str | ScheduleKind = "linear", logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX) -> LogSNRSchedule:
    """Build a schedule by name: ``"linear"``, ``"cosine"`` or ``"learned"``."""
    try:
        kind = ScheduleKind(kind)
    except ValueError:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {[k.value for k in ScheduleKind]}") from None
    return _KINDS[kind](logsnr_min, logsnr_max)
