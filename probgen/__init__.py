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
from .models import Flow  # noqa: E402
from . import flows  # noqa: E402
from .models import GAN  # noqa: E402
from .models import Diffusion  # noqa: E402
from . import metrics  # noqa: E402
from . import diagnostics  # noqa: E402
from .infer import compare  # noqa: E402
from .diagnostics import psis_khat  # noqa: E402


def __getattr__(name):
    # the ArviZ export is loaded on first use: ArviZ takes seconds to import
    if name == "to_inference_data":
        return diagnostics.to_inference_data
    raise AttributeError(f"module 'probgen' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "Diffusion",
    "GAN",
    "metrics",
    "IWAE",
    "FitResult",
    "LikelihoodEstimate",
    "VAE",
    "Flow",
    "flows",
    "compare",
    "diagnostics",
    "psis_khat",
    "to_inference_data",
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
