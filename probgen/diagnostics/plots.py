"""Figures people would rather see than read: sample grids, scatter plots, loss curves.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (no pyplot), so
they work on machines without a display and leave the user's pyplot state alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["save_sample_grid", "save_scatter", "save_loss_curve"]


def save_sample_grid(samples: torch.Tensor, path: str | Path, num_levels: int | None = None, nrow: int | None = None) -> Path:
    """Save images ``(n, H, W)`` or ``(n, C, H, W)`` as one PNG grid (torchvision).

    Discrete levels ``0..K-1`` are mapped to ``[0, 1]`` with ``num_levels``; other values
    are min-max scaled.
    """
    from torchvision.utils import save_image

    images = samples.detach().float().cpu()
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if num_levels is not None:
        images = images / (num_levels - 1)
    else:
        images = (images - images.min()) / (images.max() - images.min()).clamp(min=1e-8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.clamp(0, 1), path, nrow=nrow or int(math.ceil(math.sqrt(len(images)))), padding=1, pad_value=0.5)
    return path


def save_scatter(samples: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None, title: str = "") -> Path:
    """Save a 2-D scatter plot of samples, over reference points (e.g. the data) if given."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    if reference is not None:
        ref = reference.detach().cpu()
        ax.scatter(ref[:, 0], ref[:, 1], s=2, alpha=0.3, color="tab:gray", label="data")
    points = samples.detach().cpu()
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def save_loss_curve(history: dict, path: str | Path, title: str = "") -> Path:
    """Save training (and validation) loss per epoch, in nats per data point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for key, label in (("train_loss", "train"), ("valid_loss", "valid")):
        values = history.get(key) or []
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per data point)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
