"""probgen: deep generative models (VAEs, normalizing flows, diffusion, GANs) as Pyro programs.

Importing probgen turns on Pyro's ``module_local_params`` setting, so each model keeps its
parameters in its own ``state_dict`` rather than in Pyro's global parameter store: two
models train side by side without sharing names, and ``pyro.infer.SVI`` still finds each
model's parameters through its ``param`` statements.
"""

import pyro

pyro.settings.set(module_local_params=True)

from . import datasets, distributions, infer, models, nn  # noqa: E402
from .infer import (  # noqa: E402
    IWAE,
    FitResult,
    LikelihoodEstimate,
    fit,
    load_model,
    log_likelihood,
    save_model,
)
from .models import VAE  # noqa: E402
from .models import GAN  # noqa: E402
from . import metrics  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "GAN",
    "metrics",
    "IWAE",
    "FitResult",
    "LikelihoodEstimate",
    "VAE",
    "datasets",
    "distributions",
    "fit",
    "infer",
    "load_model",
    "log_likelihood",
    "models",
    "nn",
    "save_model",
]
