"""Shape helpers shared by the networks: folding batch dimensions, reading image shapes."""

from __future__ import annotations

import torch

__all__ = ["fold_batch", "image_shape", "side_by_side"]


def fold_batch(x: torch.Tensor, event_dims: int) -> tuple[torch.Tensor, torch.Size]:
    """``x`` with all its batch dimensions folded into one, and those batch dimensions:
    what a network that takes one batch dimension needs, and what restores the others."""
    batch = x.shape[: x.dim() - event_dims]
    return x.reshape(-1, *x.shape[x.dim() - event_dims :]), batch


def side_by_side(*tensors: torch.Tensor) -> torch.Tensor:
    """Feature vectors concatenated along the last dimension, their leading (batch) dimensions
    broadcast: a data point's features meet each of its importance samples' latents."""
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch, t.shape[-1]) for t in tensors], -1)


def image_shape(event_shape, who: str, multiple: int = 1) -> tuple[int, int, int]:
    """``(C, H, W)`` of images with event shape ``(H, W)`` (one channel) or ``(C, H, W)``;
    ``who`` names the network in the error raised for other shapes, or for a height or width
    that is not a multiple of ``multiple``."""
    event_shape = tuple(event_shape)
    if len(event_shape) not in (2, 3):
        raise ValueError(f"{who} needs images of shape (H, W) or (C, H, W), got event_shape {event_shape}")
    c, h, w = (1, *event_shape) if len(event_shape) == 2 else event_shape
    if h % multiple or w % multiple:
        raise ValueError(f"{who} needs height and width divisible by {multiple}, got event_shape {event_shape}")
    return c, h, w
