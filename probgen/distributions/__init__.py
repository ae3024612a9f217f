"""The data's description (:class:`DataInfo`), observation likelihoods and priors."""

from .info import DataInfo, Support, integer_levels, validate_data
from .likelihoods import (
    BernoulliLikelihood,
    CategoricalLikelihood,
    DiscretizedLogistic,
    DiscretizedLogisticLikelihood,
    Likelihood,
    NormalLikelihood,
    likelihood,
    likelihood_for,
)
from .priors import DiagonalNormalMixture, MixturePrior, StandardNormalPrior, VampPrior, check_prior, check_vector_distribution

__all__ = [
    "BernoulliLikelihood",
    "DataInfo",
    "DiagonalNormalMixture",
    "CategoricalLikelihood",
    "DiscretizedLogistic",
    "DiscretizedLogisticLikelihood",
    "Likelihood",
    "MixturePrior",
    "NormalLikelihood",
    "StandardNormalPrior",
    "Support",
    "VampPrior",
    "check_prior",
    "check_vector_distribution",
    "integer_levels",
    "likelihood",
    "likelihood_for",
    "validate_data",
]
