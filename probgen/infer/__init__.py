"""Inference: the training loop, objectives, likelihood estimators, checkpoints."""

from .checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, load_model, save_checkpoint, save_model
from .fit import Callback, FitResult, NonFiniteLossError, TrainingState, fit, resolve_device
from .likelihood import ESTIMATORS, LikelihoodEstimate, log_likelihood, register_estimator, resolve_method
from .comparison import Comparison, ComparisonRow, compare
from .objectives import (
    IWAE,
    DReGIWAE,
    OBJECTIVES,
    DifferentiableELBO,
    KLWarmup,
    Objective,
    SVIObjective,
    MeanFieldELBO,
    TermsELBO,
    TraceELBO,
    parse_objective,
    resolve_objective,
)
from .weights import (doubly_reparameterized_log_weights, evaluating, importance_log_weights, importance_logsumexp,
                      log_weights, seed_everything, trace_log_weights)
from .adversarial import Adversarial, AdversarialLoss, gradient_penalty
from .ais import BDMCResult, bdmc, select_obs_noise, sigmoid_schedule

__all__ = [
    "CHECKPOINT_FORMAT",
    "Adversarial",
    "AdversarialLoss",
    "BDMCResult",
    "Callback",
    "bdmc",
    "gradient_penalty",
    "select_obs_noise",
    "sigmoid_schedule",
    "Comparison",
    "ComparisonRow",
    "compare",
    "CheckpointError",
    "DifferentiableELBO",
    "DReGIWAE",
    "ESTIMATORS",
    "FitResult",
    "IWAE",
    "KLWarmup",
    "LikelihoodEstimate",
    "NonFiniteLossError",
    "OBJECTIVES",
    "Objective",
    "SVIObjective",
    "TrainingState",
    "TermsELBO",
    "TraceELBO",
    "MeanFieldELBO",
    "fit",
    "load_checkpoint",
    "load_model",
    "log_likelihood",
    "register_estimator",
    "resolve_device",
    "parse_objective",
    "resolve_method",
    "resolve_objective",
    "save_checkpoint",
    "save_model",
    "evaluating",
    "importance_log_weights",
    "importance_logsumexp",
    "log_weights",
    "seed_everything",
    "trace_log_weights",
    "doubly_reparameterized_log_weights",
]
