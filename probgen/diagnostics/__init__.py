"""Diagnostics and figures: per-data-point PSIS, active latent units, the ArviZ export, plots.

The ArviZ export (:func:`to_inference_data`, :func:`load_inference_data`, :func:`plot_khat`)
is loaded on first use: ArviZ takes seconds to import.
"""

from .latents import ACTIVITY_THRESHOLD, ActiveUnits, active_units
from .plots import save_comparison, save_density, save_figure, save_loss_curve, save_sample_grid, save_scatter
from .psis import ParetoKWarning, PSISResult, pareto_smooth, psis_khat

_ARVIZ_EXPORTS = ("load_inference_data", "plot_khat", "to_inference_data")

__all__ = [
    "ACTIVITY_THRESHOLD",
    "ActiveUnits",
    "PSISResult",
    "ParetoKWarning",
    "active_units",
    "load_inference_data",
    "pareto_smooth",
    "plot_khat",
    "psis_khat",
    "save_comparison",
    "save_density",
    "save_figure",
    "save_loss_curve",
    "save_sample_grid",
    "save_scatter",
    "to_inference_data",
]


def __getattr__(name):
    if name in _ARVIZ_EXPORTS:
        from . import arviz

        return getattr(arviz, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
