"""Inference: the training loop, objectives, likelihood estimators, checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint, save_model
from .fit import FitResult, NonFiniteLossError, fit, resolve_device
from .likelihood import ESTIMATORS, LikelihoodEstimate, log_likelihood, register_estimator
from .compare import Comparison, ComparisonRow, compare
from .objectives import IWAE, OBJECTIVES, KLWarmup, Objective, SVIObjective, resolve_objective
from .adversarial import Adversarial, gradient_penalty
from .ais import BDMCResult, bdmc, select_obs_noise, sigmoid_schedule

__all__ = [
    "Adversarial",
    "BDMCResult",
    "bdmc",
    "gradient_penalty",
    "select_obs_noise",
    "sigmoid_schedule",
    "Comparison",
    "ComparisonRow",
    "compare",
    "CheckpointError",
    "ESTIMATORS",
    "FitResult",
    "IWAE",
    "KLWarmup",
    "LikelihoodEstimate",
    "NonFiniteLossError",
    "OBJECTIVES",
    "Objective",
    "SVIObjective",
    "fit",
    "load_checkpoint",
    "load_model",
    "log_likelihood",
    "register_estimator",
    "resolve_device",
    "resolve_objective",
    "save_checkpoint",
    "save_model",
]
