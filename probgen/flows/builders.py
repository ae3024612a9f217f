r"""Flow builders: stacks of nflows layers as Pyro transforms, a class and a factory each.

Every builder stacks ``num_layers`` nflows steps with a mixing layer between steps (a
reversal, a random permutation, or an LU-decomposed linear map, option ``linear``) and
returns a :class:`~probgen.flows.NflowsTransform`, or with ``context_dim`` a
:class:`~probgen.flows.ConditionalNflowsTransform` whose networks also read a context.

The direction trade-off (``D`` is the dimension; "one pass" is one network evaluation):

=================  ==========================  ==========================
kind               log_prob (data -> noise)    sample (noise -> data)
=================  ==========================  ==========================
``maf``            one pass                    ``D`` passes
``iaf``            ``D`` passes                one pass
``nsf``            one pass                    ``D`` passes
``realnvp``        one pass                    one pass
``nsf_coupling``   one pass                    one pass
=================  ==========================  ==========================

So MAF and the autoregressive NSF suit density estimation and flow priors (their
samples are scored, not drawn, during VAE training); IAF suits a posterior, whose samples are
drawn and then scored from the cached log-determinant, never inverted. ``inverse=True``
turns any kind around (``iaf`` is ``maf`` with ``inverse=True``).

Options (keyword arguments of every builder):

- ``linear``: ``"reverse"`` (default for autoregressive kinds), ``"random"`` or ``"lu"``
  (default for coupling kinds) between steps;
- ``num_blocks``: residual blocks per conditioner network (default 2);
- ``inverse``: swap the two directions (default False; True for ``iaf``);
- splines only: ``num_bins`` (default 8) and ``tail_bound`` (default 5.0): the spline
  covers :math:`[-B, B]` and is the identity (linear tails) outside.

nflows 0.14 on current torch: the transforms used here (masked autoregressive affine and
rational-quadratic, affine and rational-quadratic coupling, LU linear, permutations) all
pass probgen's checklist (``tests/flows/test_checklist.py``). Fixed: :class:`LULinear`
solves its inverse with :func:`torch.linalg.solve_triangular` instead of the deprecated
``torch.triangular_solve``. Excluded: ``NaiveLinear``
(calls the removed ``torch.qr``/``torch.solve``), ``BatchNorm`` (no inverse in training
mode) and ``ActNorm`` (data-dependent initialization on the first call, state a
checkpoint of an untrained model misses).

References:
    Papamakarios, Pavlakou, Murray (2017). Masked Autoregressive Flow for Density
    Estimation. NeurIPS.
    Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling (2016). Improved Variational
    Inference with Inverse Autoregressive Flow. NeurIPS.
    Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP. ICLR.
    Durkan, Bekasov, Murray, Papamakarios (2019). Neural Spline Flows. NeurIPS.
"""

from __future__ import annotations

import torch
from nflows import transforms as nt
from nflows.nn.nets import ResidualNet

from ..checks import positive_int
from .bridge import ConditionalNflowsTransform, NflowsTransform

__all__ = [
    "FLOW_KINDS",
    "LULinear",
    "FlowTransform",
    "ConditionalFlowTransform",
    "MAF",
    "IAF",
    "RealNVP",
    "NSF",
    "NSFCoupling",
    "ConditionalMAF",
    "ConditionalIAF",
    "ConditionalRealNVP",
    "ConditionalNSF",
    "ConditionalNSFCoupling",
    "maf",
    "iaf",
    "realnvp",
    "nsf",
    "nsf_coupling",
    "build",
    "nflows_stack",
]

_COMMON = {"linear", "num_blocks", "inverse"}
_SPLINE = {"num_bins", "tail_bound"}


def _coupling_net(hidden, context_dim, num_blocks):
    def create(in_features, out_features):
        return ResidualNet(in_features, out_features, hidden, context_features=context_dim, num_blocks=num_blocks)

    return create


def _mask(dim, index):
    # alternate which half is transformed; the mixing layers shuffle in between
    return (torch.arange(dim) + index) % 2


def _maf_step(dim, hidden, context_dim, index, num_blocks, **_):
    return nt.MaskedAffineAutoregressiveTransform(dim, hidden, context_features=context_dim, num_blocks=num_blocks)


def _nsf_step(dim, hidden, context_dim, index, num_blocks, num_bins=8, tail_bound=5.0, **_):
    return nt.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
        dim, hidden, context_features=context_dim, num_bins=num_bins, tails="linear",
        tail_bound=tail_bound, num_blocks=num_blocks,
    )


def _realnvp_step(dim, hidden, context_dim, index, num_blocks, **_):
    return nt.AffineCouplingTransform(_mask(dim, index), _coupling_net(hidden, context_dim, num_blocks))


def _nsf_coupling_step(dim, hidden, context_dim, index, num_blocks, num_bins=8, tail_bound=5.0, **_):
    return nt.PiecewiseRationalQuadraticCouplingTransform(
        _mask(dim, index), _coupling_net(hidden, context_dim, num_blocks), num_bins=num_bins,
        tails="linear", tail_bound=tail_bound,
    )


# kind -> (step builder, allowed options, default mixing, whether steps split the vector)
_KINDS = {
    "maf": (_maf_step, _COMMON, "reverse", False),
    "iaf": (_maf_step, _COMMON, "reverse", False),
    "nsf": (_nsf_step, _COMMON | _SPLINE, "reverse", False),
    "realnvp": (_realnvp_step, _COMMON, "lu", True),
    "nsf_coupling": (_nsf_coupling_step, _COMMON | _SPLINE, "lu", True),
}
FLOW_KINDS = tuple(_KINDS)

class LULinear(nt.LULinear):
    """nflows' LU-decomposed linear layer, with its inverse solved by
    :func:`torch.linalg.solve_triangular`: nflows 0.14 calls ``torch.triangular_solve``,
    deprecated in current torch and due to be removed."""

    def inverse_no_cache(self, inputs):
        lower, upper = self._create_lower_upper()
        # y = L U x + b for each row x: solve L w = (y - b)^T, then U x^T = w
        outputs = torch.linalg.solve_triangular(lower, (inputs - self.bias).T, upper=False, unitriangular=True)
        outputs = torch.linalg.solve_triangular(upper, outputs, upper=True).T
        return outputs, -self.logabsdet() * inputs.new_ones(len(inputs))

    def weight_inverse(self):
        lower, upper = self._create_lower_upper()
        identity = torch.eye(self.features, dtype=lower.dtype, device=lower.device)
        lower_inverse = torch.linalg.solve_triangular(lower, identity, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, lower_inverse, upper=True)


_MIXING = {
    "reverse": nt.ReversePermutation,
    "random": nt.RandomPermutation,
    "lu": LULinear,
}


def nflows_stack(kind: str, dim: int, num_layers: int, hidden: int, context_dim: int | None = None, **options):
    """The nflows :class:`~nflows.transforms.CompositeTransform` (data to noise) that the
    builders wrap; ``options`` as in the module docstring."""
    if kind not in _KINDS:
        raise ValueError(f"unknown flow kind {kind!r}; expected one of {list(FLOW_KINDS)}")
    step, allowed, default_mixing, splits = _KINDS[kind]
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"flow kind {kind!r} got unknown options {sorted(unknown)}; it accepts {sorted(allowed)}")
    positive_int(dim, "dim")
    positive_int(num_layers, "num_layers")
    positive_int(hidden, "hidden")
    if context_dim is not None:
        positive_int(context_dim, "context_dim")
    if splits and dim < 2:
        raise ValueError(f"coupling flow {kind!r} splits the vector in two: it needs dim >= 2, got {dim}")
    mixing = options.pop("linear", default_mixing)
    if mixing not in _MIXING:
        raise ValueError(f"linear must be one of {list(_MIXING)}, got {mixing!r}")
    num_blocks = positive_int(options.pop("num_blocks", 2), "num_blocks")
    inverse = bool(options.pop("inverse", kind == "iaf"))

    layers = []
    for index in range(num_layers):
        if index > 0:
            layers.append(_MIXING[mixing](dim))
        layers.append(step(dim, hidden, context_dim, index, num_blocks, **options))
    stack = nt.CompositeTransform(layers)
    return nt.InverseTransform(stack) if inverse else stack


class FlowTransform(NflowsTransform):
    """Base of the named flows: ``kind`` picks the nflows steps."""

    kind = "maf"

    def __init__(self, dim: int, num_layers: int = 5, hidden: int = 64, **options):
        super().__init__(nflows_stack(self.kind, dim, num_layers, hidden, None, **options), dim)
        self.num_layers, self.hidden = num_layers, hidden


class ConditionalFlowTransform(ConditionalNflowsTransform):
    """Base of the named conditional flows: every conditioner network also reads the context."""

    kind = "maf"

    def __init__(self, dim: int, context_dim: int, num_layers: int = 5, hidden: int = 64, **options):
        super().__init__(nflows_stack(self.kind, dim, num_layers, hidden, context_dim, **options), dim, context_dim)
        self.num_layers, self.hidden = num_layers, hidden


class MAF(FlowTransform):
    r"""Masked autoregressive flow: affine steps
    :math:`u_i = x_i\,\sigma_i(x_{<i}) + \mu_i(x_{<i})` with MADE conditioners.
    log_prob costs one pass, sampling ``D`` passes."""

    kind = "maf"


class IAF(FlowTransform):
    r"""Inverse autoregressive flow: MAF run the other way round,
    :math:`x_i = (u_i - \mu_i(u_{<i})) / \sigma_i(u_{<i})`.
    Sampling (and scoring one's own samples) costs one pass; log_prob of given data ``D`` passes."""

    kind = "iaf"


class NSF(FlowTransform):
    r"""Autoregressive neural spline flow: monotone rational-quadratic splines on
    :math:`[-B, B]` whose knots come from MADE conditioners.
    log_prob costs one pass, sampling ``D`` passes."""

    kind = "nsf"


class RealNVP(FlowTransform):
    r"""Real NVP: affine coupling steps that transform half of the vector given the other
    half, with LU-linear mixing between steps. log_prob and sampling cost one pass each."""

    kind = "realnvp"


class NSFCoupling(FlowTransform):
    r"""Coupling neural spline flow: rational-quadratic spline coupling steps with
    LU-linear mixing. log_prob and sampling cost one pass each."""

    kind = "nsf_coupling"


class ConditionalMAF(ConditionalFlowTransform):
    """:class:`MAF` whose conditioners also read a context."""

    kind = "maf"


class ConditionalIAF(ConditionalFlowTransform):
    """:class:`IAF` whose conditioners also read a context (the usual flow posterior)."""

    kind = "iaf"


class ConditionalNSF(ConditionalFlowTransform):
    """:class:`NSF` whose conditioners also read a context."""

    kind = "nsf"


class ConditionalRealNVP(ConditionalFlowTransform):
    """:class:`RealNVP` whose coupling networks also read a context."""

    kind = "realnvp"


class ConditionalNSFCoupling(ConditionalFlowTransform):
    """:class:`NSFCoupling` whose coupling networks also read a context."""

    kind = "nsf_coupling"


_CLASSES = {
    "maf": (MAF, ConditionalMAF),
    "iaf": (IAF, ConditionalIAF),
    "nsf": (NSF, ConditionalNSF),
    "realnvp": (RealNVP, ConditionalRealNVP),
    "nsf_coupling": (NSFCoupling, ConditionalNSFCoupling),
}


def build(kind: str, dim: int, *, num_layers: int = 5, hidden: int = 64, context_dim: int | None = None, **options):
    """Build a flow by name: ``"maf"``, ``"iaf"``, ``"realnvp"``, ``"nsf"`` or ``"nsf_coupling"``.

    :param dim: size of the vectors the flow acts on.
    :param num_layers: flow steps (mixing layers go between them).
    :param hidden: width of the conditioner networks.
    :param context_dim: with a context size, a conditional flow
        (:class:`~probgen.flows.ConditionalNflowsTransform`); without, a plain one.
    :param options: see the module docstring (``linear``, ``num_blocks``, ``inverse``,
        ``num_bins``, ``tail_bound``).

    Example::

        >>> import probgen as pg
        >>> t = pg.flows.build("nsf", 2, num_layers=2, hidden=16)
        >>> type(t).__name__
        'NSF'
    """
    if kind not in _CLASSES:
        raise ValueError(f"unknown flow kind {kind!r}; expected one of {list(FLOW_KINDS)}")
    plain, conditional = _CLASSES[kind]
    if context_dim is None:
        return plain(dim, num_layers, hidden, **options)
    return conditional(dim, context_dim, num_layers, hidden, **options)


def maf(dim, *, num_layers=5, hidden=64, context_dim=None, **options):
    """Factory of :class:`MAF` (or :class:`ConditionalMAF` with ``context_dim``)."""
    return build("maf", dim, num_layers=num_layers, hidden=hidden, context_dim=context_dim, **options)


def iaf(dim, *, num_layers=5, hidden=64, context_dim=None, **options):
    """Factory of :class:`IAF` (or :class:`ConditionalIAF` with ``context_dim``)."""
    return build("iaf", dim, num_layers=num_layers, hidden=hidden, context_dim=context_dim, **options)


def nsf(dim, *, num_layers=5, hidden=64, context_dim=None, **options):
    """Factory of :class:`NSF` (or :class:`ConditionalNSF` with ``context_dim``)."""
    return build("nsf", dim, num_layers=num_layers, hidden=hidden, context_dim=context_dim, **options)


def realnvp(dim, *, num_layers=5, hidden=64, context_dim=None, **options):
    """Factory of :class:`RealNVP` (or :class:`ConditionalRealNVP` with ``context_dim``)."""
    return build("realnvp", dim, num_layers=num_layers, hidden=hidden, context_dim=context_dim, **options)


def nsf_coupling(dim, *, num_layers=5, hidden=64, context_dim=None, **options):
    """Factory of :class:`NSFCoupling` (or :class:`ConditionalNSFCoupling` with ``context_dim``)."""
    return build("nsf_coupling", dim, num_layers=num_layers, hidden=hidden, context_dim=context_dim, **options)
