"""Normalizing flows: nflows transforms as Pyro transforms, flow builders, flow priors.

- :mod:`~probgen.flows.bridge`: :class:`NflowsTransform` and
  :class:`ConditionalNflowsTransform` wrap any nflows transform (directions flipped,
  log-determinants cached, any batch shape);
- :mod:`~probgen.flows.builders`: :func:`build` and the named flows (MAF, IAF, Real NVP,
  NSF, coupling NSF), a class and a lowercase factory each;
- :mod:`~probgen.flows.distribution`: :class:`FlowDistribution` and :func:`prior`.
"""

from .bridge import BoundNflowsTransform, ConditionalNflowsTransform, NflowsTransform, check_context
from .builders import (
    FLOW_KINDS,
    IAF,
    LULinear,
    MAF,
    NSF,
    ConditionalFlowTransform,
    ConditionalIAF,
    ConditionalMAF,
    ConditionalNSF,
    ConditionalNSFCoupling,
    ConditionalRealNVP,
    FlowTransform,
    NSFCoupling,
    RealNVP,
    build,
    iaf,
    maf,
    nflows_stack,
    nsf,
    nsf_coupling,
    realnvp,
)
from .distribution import FlowDistribution, prior

__all__ = [
    "BoundNflowsTransform",
    "FLOW_KINDS",
    "ConditionalFlowTransform",
    "ConditionalIAF",
    "ConditionalMAF",
    "ConditionalNSF",
    "ConditionalNSFCoupling",
    "ConditionalNflowsTransform",
    "ConditionalRealNVP",
    "FlowDistribution",
    "FlowTransform",
    "IAF",
    "LULinear",
    "MAF",
    "NSF",
    "NSFCoupling",
    "NflowsTransform",
    "RealNVP",
    "build",
    "check_context",
    "iaf",
    "maf",
    "nflows_stack",
    "nsf",
    "nsf_coupling",
    "prior",
    "realnvp",
]
