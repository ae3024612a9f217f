"""Figures people would rather see than read: sample grids, scatter plots, loss curves,
densities and model comparisons.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (no pyplot), so
they work on machines without a display and leave the user's pyplot state alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["save_figure", "save_sample_grid", "save_scatter", "save_loss_curve", "save_density", "save_comparison"]


def save_figure(fig, path: str | Path) -> Path:
    """Write a matplotlib figure to ``path`` as a PNG (its folder is made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


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
    # small images (8x8 digits) are enlarged with nearest-neighbour so they stay legible
    scale = max(1, 32 // images.shape[-1])
    images = images.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


@torch.no_grad()
def save_density(
    log_density,
    path: str | Path,
    reference: torch.Tensor | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    resolution: int = 200,
    title: str = "",
) -> Path:
    """Save a 2-D density as an image, beside a 2-D histogram of reference points if given.

    :param log_density: maps points ``(N, 2)`` to log-densities ``(N,)``.
    :param bounds: ``(xmin, xmax, ymin, ymax)``; by default the reference's 0.5%-99.5%
        quantiles widened by 10%, or ``[-4, 4]^2``.
    """
    from matplotlib.figure import Figure

    if bounds is None and reference is not None:
        ref = reference.detach().cpu().float()
        low, high = torch.quantile(ref, 0.005, dim=0), torch.quantile(ref, 0.995, dim=0)
        pad = 0.1 * (high - low)
        bounds = (float(low[0] - pad[0]), float(high[0] + pad[0]), float(low[1] - pad[1]), float(high[1] + pad[1]))
    xmin, xmax, ymin, ymax = bounds or (-4.0, 4.0, -4.0, 4.0)
    xs, ys = torch.linspace(xmin, xmax, resolution), torch.linspace(ymin, ymax, resolution)
    grid = torch.cartesian_prod(ys, xs).flip(-1)  # rows follow y, columns x
    density = log_density(grid).detach().cpu().double().exp().reshape(resolution, resolution)

    panels = 2 if reference is not None else 1
    fig = Figure(figsize=(4.5 * panels, 4.5))
    extent = (xmin, xmax, ymin, ymax)
    if reference is not None:
        ax = fig.add_subplot(1, panels, 1)
        ax.hist2d(ref[:, 0].numpy(), ref[:, 1].numpy(), bins=resolution // 2, range=[[xmin, xmax], [ymin, ymax]], cmap="viridis")
        ax.set_title("data")
        ax.set_aspect("equal")
    ax = fig.add_subplot(1, panels, panels)
    ax.imshow(density.numpy(), origin="lower", extent=extent, cmap="viridis", aspect="equal")
    ax.set_title(title or "model density")
    return save_figure(fig, path)


def save_comparison(table, path: str | Path, title: str = "") -> Path:
    """Save a :class:`~probgen.infer.Comparison` as a PNG: each model's mean log-likelihood
    with its standard error (left) and its paired difference to the best model with that
    difference's standard error (right). Bounds are drawn as triangles pointing to where the
    true value lies."""
    from matplotlib.figure import Figure

    rows = [row for row in table.rows if not row.error]
    fig = Figure(figsize=(10, 0.6 * len(rows) + 1.8))
    left, right = fig.subplots(1, 2, sharey=True)
    positions = list(range(len(rows)))[::-1]
    markers = {"exact": "o", "bound": ">", "estimate": "D"}
    for y, row in zip(positions, rows):
        marker = markers.get(row.kind, "s")
        left.errorbar(row.mean_nats, y, xerr=row.stderr, fmt=marker, color="tab:blue", capsize=3)
        if row.model != table.best:
            right.errorbar(row.diff, y, xerr=row.diff_stderr, fmt=marker, color="tab:gray", capsize=3)
        else:
            right.plot(0.0, y, marker, color="tab:blue")
    right.axvline(0.0, color="tab:blue", linestyle=":", linewidth=1)
    mixed = len({est.density for est in table.estimates.values()}) > 1
    labels = [f"{row.model} ({row.kind}{', density' if mixed and table.estimates[row.model].density else ''})" for row in rows]
    left.set_yticks(positions, labels)
    left.set_xlabel("mean log p(x) per data point [nats] ± se")
    right.set_xlabel("difference to the best model [nats] ± paired se")
    fig.suptitle(title or f"model comparison on {table.num_data} data points (> : lower bound)")
    return save_figure(fig, path)
