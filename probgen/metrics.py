r"""Sample-quality metrics that need no likelihood.

:func:`mode_coverage` is the mode-collapse benchmark of VEEGAN and PacGAN on the 2-D
mixtures ``ring8`` (8 Gaussians on the unit circle, sd 0.01) and ``grid25`` (a 5 x 5 grid,
sd 0.05): draw 2500 samples, assign each to its nearest mode, call it *high quality* when it
lies within three standard deviations of that mode, and call a mode *covered* when at least
one high-quality sample is assigned to it.

References:
    Srivastava, Valkov, Russell, Gutmann, Sutton (2017). VEEGAN: Reducing Mode Collapse in
    GANs using Implicit Variational Learning. NeurIPS.
    Lin, Khetan, Fanti, Oh (2018). PacGAN: The Power of Two Samples in Generative
    Adversarial Networks. NeurIPS.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .datasets import mode_centers

__all__ = ["ModeCoverage", "mode_coverage", "PROTOCOL_SAMPLES"]

PROTOCOL_SAMPLES = 2500


@dataclasses.dataclass
class ModeCoverage:
    r"""What :func:`mode_coverage` returns.

    :ivar modes_covered: modes with at least one high-quality sample.
    :ivar num_modes: modes in the benchmark (8 or 25).
    :ivar high_quality: fraction of samples within ``num_std`` standard deviations of their
        nearest mode.
    :ivar reverse_kl: :math:`\mathrm{KL}(\hat p \,\Vert\, U)` in nats between the histogram
        :math:`\hat p` of the high-quality samples over the modes and the uniform
        distribution :math:`U` (0 when balanced, :math:`\log M` when all are on one mode;
        infinite when no sample is high quality).
    :ivar counts: high-quality samples per mode.
    """

    modes_covered: int
    num_modes: int
    high_quality: float
    reverse_kl: float
    counts: torch.Tensor

    def __str__(self):
        return (f"{self.modes_covered}/{self.num_modes} modes, {100 * self.high_quality:.1f}% high quality, "
                f"reverse KL {self.reverse_kl:.3f} nats")


def mode_coverage(samples: torch.Tensor, dataset: str = "ring8", num_std: float = 3.0) -> ModeCoverage:
    """Modes covered, high-quality fraction and reverse KL of 2-D samples (PacGAN protocol).

    :param samples: ``(n, 2)`` samples; the protocol uses ``n = 2500``
        (:data:`PROTOCOL_SAMPLES`).
    :param dataset: ``"ring8"`` or ``"grid25"``.
    :param num_std: the high-quality radius in standard deviations of a mode.

    Example::

        >>> import probgen as pg
        >>> x = pg.datasets.sample_toy("grid25", 2500)
        >>> pg.metrics.mode_coverage(x, "grid25").modes_covered
        25
    """
    centres, sd = mode_centers(dataset)
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor, got {type(samples).__name__}")
    if samples.dim() != 2 or samples.shape[1] != 2 or len(samples) == 0:
        raise ValueError(f"samples must have shape (num_samples, 2) with num_samples >= 1, got {tuple(samples.shape)}")
    if not torch.isfinite(samples).all():
        raise ValueError("samples hold NaN or infinite values")
    if not num_std > 0:
        raise ValueError(f"num_std must be positive, got {num_std!r}")
    points = samples.detach().double().cpu()
    distance = torch.cdist(points, centres.double())
    nearest_distance, nearest = distance.min(1)
    good = nearest_distance <= num_std * sd
    counts = torch.bincount(nearest[good], minlength=len(centres))
    total = int(counts.sum())
    if total == 0:
        reverse_kl = math.inf
    else:
        p = counts.double() / total
        p = p[p > 0]
        reverse_kl = float((p * (p * len(centres)).log()).sum())
    return ModeCoverage(
        modes_covered=int((counts > 0).sum()),
        num_modes=len(centres),
        high_quality=total / len(points),
        reverse_kl=reverse_kl,
        counts=counts,
    )
