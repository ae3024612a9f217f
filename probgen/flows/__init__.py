"""Normalizing flows: nflows transforms as Pyro transforms, flow builders, flow priors.

- :mod:`~probgen.flows.bridge`: :class:`NflowsTransform` and
  :class:`ConditionalNflowsTransform` wrap any nflows transform (directions flipped,
  log-determinants cached, any batch shape);
- :mod:`~probgen.flows.builders`: :func:`build`, the named flows (MAF, IAF, Real NVP, NSF,
  coupling NSF: :class:`FlowKind`) as :class:`FlowTransform` or
  :class:`ConditionalFlowTransform`;
- :mod:`~probgen.flows.distribution`: :class:`FlowDistribution` and :func:`prior`.
"""

from .bridge import BoundNflowsTransform, ConditionalNflowsTransform, NflowsTransform, check_context
from .builders import FLOW_KINDS, ConditionalFlowTransform, FlowKind, FlowTransform, LULinear, Mixing, build, nflows_stack
from .distribution import FlowDistribution, prior

__all__ = [
    "BoundNflowsTransform",
    "ConditionalFlowTransform",
    "ConditionalNflowsTransform",
    "FLOW_KINDS",
    "FlowDistribution",
    "FlowKind",
    "FlowTransform",
    "LULinear",
    "Mixing",
    "NflowsTransform",
    "build",
    "check_context",
    "nflows_stack",
    "prior",
]
