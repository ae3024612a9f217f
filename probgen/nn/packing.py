"""Packing (PacGAN, Lin et al. 2018): groups of ``m`` data points scored as one input.

A discriminator that scores ``m`` points drawn together, all real or all generated, sees
a generator that drops modes more clearly than one scoring single points. These helpers
give the packed shape a network must take and do the grouping.

References:
    Lin, Khetan, Fanti, Oh (2018). PacGAN: The Power of Two Samples in Generative
    Adversarial Networks. NeurIPS.
"""

from __future__ import annotations

import torch

__all__ = ["pack", "packed_event_shape"]


def packed_event_shape(event_shape, m: int) -> tuple[int, ...]:
    """The shape of one packed group of ``m`` points of shape ``event_shape``: what a
    discriminator for ``pack=m`` takes. Vectors ``(D,)`` become ``(m D,)``; single-channel
    images ``(H, W)`` become ``m`` channels ``(m, H, W)``; images ``(C, H, W)`` stack
    their channels, ``(m C, H, W)``."""
    event_shape = tuple(event_shape)
    if m == 1:
        return event_shape
    if len(event_shape) == 2:
        return (m, *event_shape)
    return (m * event_shape[0], *event_shape[1:])


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """Groups consecutive points of ``x`` (shape ``(n,) + event_shape``, ``n`` a multiple of
    ``m``) into ``n / m`` packed points of shape :func:`packed_event_shape`. Consecutive
    points of a shuffled batch, or of independent draws, are independent, as PacGAN needs."""
    n = len(x)
    if n % m:
        raise ValueError(f"cannot pack {n} points into groups of {m}: {n} is not a multiple of {m}")
    if m == 1:
        return x
    return x.reshape(n // m, *packed_event_shape(x.shape[1:], m))
