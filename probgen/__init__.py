"""probgen: deep generative models (VAEs, normalizing flows, diffusion, GANs) as Pyro programs.

Importing probgen turns on Pyro's ``module_local_params`` setting, so each model keeps its
parameters in its own ``state_dict`` rather than in Pyro's global parameter store: two
models train side by side without sharing names, and ``pyro.infer.SVI`` still finds each
model's parameters through its ``param`` statements.
"""

import pyro

pyro.settings.set(module_local_params=True)

from . import datasets, diagnostics, distributions, flows, infer, metrics, models, nn  # noqa: E402
from .diagnostics import psis_khat  # noqa: E402
from .distributions import DataInfo  # noqa: E402
from .infer import (  # noqa: E402
    IWAE,
    FitResult,
    LikelihoodEstimate,
    compare,
    fit,
    load_model,
    log_likelihood,
    save_model,
)
from .models import GAN, VAE, Diffusion, Flow, HierarchicalVAE  # noqa: E402


def __getattr__(name):
    # the ArviZ export is loaded on first use: ArviZ takes seconds to import
    if name == "to_inference_data":
        return diagnostics.to_inference_data
    raise AttributeError(f"module 'probgen' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "DataInfo",
    "Diffusion",
    "FitResult",
    "Flow",
    "GAN",
    "HierarchicalVAE",
    "IWAE",
    "LikelihoodEstimate",
    "VAE",
    "compare",
    "datasets",
    "diagnostics",
    "distributions",
    "fit",
    "flows",
    "infer",
    "load_model",
    "log_likelihood",
    "metrics",
    "models",
    "nn",
    "psis_khat",
    "save_model",
    "to_inference_data",
]
