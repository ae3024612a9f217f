"""Observation likelihoods and priors."""

from .likelihoods import (
    BernoulliLikelihood,
    CategoricalLikelihood,
    DiscretizedLogistic,
    DiscretizedLogisticLikelihood,
    Likelihood,
    NormalLikelihood,
    likelihood,
    likelihood_for,
    validate_data,
)
from .priors import MixturePrior, StandardNormalPrior, VampPrior, check_prior, check_vector_distribution

__all__ = [
    "BernoulliLikelihood",
    "CategoricalLikelihood",
    "DiscretizedLogistic",
    "DiscretizedLogisticLikelihood",
    "Likelihood",
    "MixturePrior",
    "NormalLikelihood",
    "StandardNormalPrior",
    "VampPrior",
    "check_prior",
    "check_vector_distribution",
    "likelihood",
    "likelihood_for",
    "validate_data",
]
