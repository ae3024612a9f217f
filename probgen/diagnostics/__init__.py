"""Diagnostics and figures."""

from .plots import save_loss_curve, save_sample_grid, save_scatter

__all__ = ["save_loss_curve", "save_sample_grid", "save_scatter"]
