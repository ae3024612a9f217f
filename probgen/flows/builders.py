r"""Flow builders: stacks of nflows layers as Pyro transforms, one kind of flow per
:class:`FlowKind`, built by :func:`build`.

:func:`build` stacks ``num_layers`` nflows steps with a mixing layer between steps (a
reversal, a random permutation, or an LU-decomposed linear map, option ``mixing``) and
returns a :class:`FlowTransform`, or with ``context_dim`` a :class:`ConditionalFlowTransform`
whose networks also read a context.

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

- ``mixing``: ``"reverse"`` (default for autoregressive kinds), ``"random"`` or ``"lu"``
  (default for coupling kinds): the layer between steps;
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

import dataclasses
import enum
from typing import Callable

import torch
from nflows import transforms as nt
from nflows.nn.nets import ResidualNet

from ..checks import choice, positive_int
from .bridge import ConditionalNflowsTransform, NflowsTransform

__all__ = ["FLOW_KINDS", "FlowKind", "Mixing", "LULinear", "FlowTransform", "ConditionalFlowTransform", "build",
           "nflows_stack"]


class FlowKind(str, enum.Enum):
    """The named flows (module docstring)."""

    MAF = "maf"
    IAF = "iaf"
    NSF = "nsf"
    REALNVP = "realnvp"
    NSF_COUPLING = "nsf_coupling"


class Mixing(str, enum.Enum):
    """The layer between two flow steps."""

    REVERSE = "reverse"
    RANDOM = "random"
    LU = "lu"


FLOW_KINDS = tuple(kind.value for kind in FlowKind)


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


_MIXING_LAYERS = {Mixing.REVERSE: nt.ReversePermutation, Mixing.RANDOM: nt.RandomPermutation, Mixing.LU: LULinear}


def _autoregressive_affine(dim, hidden, context_dim, num_blocks):
    return nt.MaskedAffineAutoregressiveTransform(dim, hidden, context_features=context_dim, num_blocks=num_blocks)


def _autoregressive_spline(dim, hidden, context_dim, num_blocks, num_bins=8, tail_bound=5.0):
    return nt.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
        dim, hidden, context_features=context_dim, num_bins=num_bins, tails="linear",
        tail_bound=tail_bound, num_blocks=num_blocks,
    )


def _coupling_net(hidden, context_dim, num_blocks):
    def create(in_features, out_features):
        return ResidualNet(in_features, out_features, hidden, context_features=context_dim, num_blocks=num_blocks)

    return create


def _coupling_affine(mask, hidden, context_dim, num_blocks):
    return nt.AffineCouplingTransform(mask, _coupling_net(hidden, context_dim, num_blocks))


def _coupling_spline(mask, hidden, context_dim, num_blocks, num_bins=8, tail_bound=5.0):
    return nt.PiecewiseRationalQuadraticCouplingTransform(
        mask, _coupling_net(hidden, context_dim, num_blocks), num_bins=num_bins, tails="linear", tail_bound=tail_bound,
    )


@dataclasses.dataclass(frozen=True)
class _Recipe:
    """How a kind of flow is stacked: its step, the options the step takes, the mixing layer
    by default, whether it is a coupling flow (its first argument is a mask over the vector,
    not the vector's size) and whether its steps run inverted."""

    step: Callable[..., nt.Transform]
    step_options: frozenset[str]
    mixing: Mixing
    coupling: bool
    inverse: bool = False


_SPLINE = frozenset({"num_bins", "tail_bound"})
_RECIPES = {
    FlowKind.MAF: _Recipe(_autoregressive_affine, frozenset(), Mixing.REVERSE, coupling=False),
    FlowKind.IAF: _Recipe(_autoregressive_affine, frozenset(), Mixing.REVERSE, coupling=False, inverse=True),
    FlowKind.NSF: _Recipe(_autoregressive_spline, _SPLINE, Mixing.REVERSE, coupling=False),
    FlowKind.REALNVP: _Recipe(_coupling_affine, frozenset(), Mixing.LU, coupling=True),
    FlowKind.NSF_COUPLING: _Recipe(_coupling_spline, _SPLINE, Mixing.LU, coupling=True),
}


def nflows_stack(kind: str, dim: int, num_layers: int, hidden: int, context_dim: int | None = None, *,
                 mixing: str | None = None, num_blocks: int = 2, inverse: bool | None = None, **step_options):
    """The nflows :class:`~nflows.transforms.CompositeTransform` (data to noise) that
    :func:`build` wraps; options as in the module docstring."""
    kind = choice(kind, FlowKind, "flow kind")
    recipe = _RECIPES[kind]
    unknown = set(step_options) - recipe.step_options
    if unknown:
        allowed = sorted(recipe.step_options | {"mixing", "num_blocks", "inverse"})
        raise TypeError(f"flow kind {kind.value!r} got unknown options {sorted(unknown)}; it accepts {allowed}")
    positive_int(dim, "dim")
    positive_int(num_layers, "num_layers")
    positive_int(hidden, "hidden")
    positive_int(num_blocks, "num_blocks")
    if context_dim is not None:
        positive_int(context_dim, "context_dim")
    if recipe.coupling and dim < 2:
        raise ValueError(f"coupling flow {kind.value!r} splits the vector in two: it needs dim >= 2, got {dim}")
    mixing_layer = _MIXING_LAYERS[choice(mixing or recipe.mixing, Mixing, "mixing")]

    layers = []
    for index in range(num_layers):
        if index > 0:
            layers.append(mixing_layer(dim))
        # a coupling step transforms the half of the vector its mask picks, alternating per step
        first = (torch.arange(dim) + index) % 2 if recipe.coupling else dim
        layers.append(recipe.step(first, hidden, context_dim, num_blocks, **step_options))
    stack = nt.CompositeTransform(layers)
    inverse = recipe.inverse if inverse is None else bool(inverse)
    return nt.InverseTransform(stack) if inverse else stack


class FlowTransform(NflowsTransform):
    """A named flow of ``kind`` (:class:`FlowKind`) on ``dim``-vectors, as a Pyro transform
    (noise to data)."""

    def __init__(self, kind: str, dim: int, num_layers: int = 5, hidden: int = 64, **options):
        super().__init__(nflows_stack(kind, dim, num_layers, hidden, None, **options), dim)
        self.kind, self.num_layers, self.hidden = FlowKind(kind), num_layers, hidden

    def extra_repr(self) -> str:
        return f"kind={self.kind.value!r}, dim={self.dim}, num_layers={self.num_layers}, hidden={self.hidden}"


class ConditionalFlowTransform(ConditionalNflowsTransform):
    """A named flow whose conditioner networks also read a ``context_dim``-vector."""

    def __init__(self, kind: str, dim: int, context_dim: int, num_layers: int = 5, hidden: int = 64, **options):
        super().__init__(nflows_stack(kind, dim, num_layers, hidden, context_dim, **options), dim, context_dim)
        self.kind, self.num_layers, self.hidden = FlowKind(kind), num_layers, hidden

    def extra_repr(self) -> str:
        return (f"kind={self.kind.value!r}, dim={self.dim}, context_dim={self.context_dim}, "
                f"num_layers={self.num_layers}, hidden={self.hidden}")


def build(kind: str, dim: int, *, num_layers: int = 5, hidden: int = 64, context_dim: int | None = None, **options):
    """Build a flow by name: ``"maf"``, ``"iaf"``, ``"realnvp"``, ``"nsf"`` or ``"nsf_coupling"``.

    :param dim: size of the vectors the flow acts on.
    :param num_layers: flow steps (mixing layers go between them).
    :param hidden: width of the conditioner networks.
    :param context_dim: with a context size, a :class:`ConditionalFlowTransform`; without,
        a :class:`FlowTransform`.
    :param options: see the module docstring (``mixing``, ``num_blocks``, ``inverse``,
        ``num_bins``, ``tail_bound``).

    Example::

        >>> import probgen as pg
        >>> t = pg.flows.build("nsf", 2, num_layers=2, hidden=16)
        >>> t.kind.value, t.dim
        ('nsf', 2)
    """
    if context_dim is None:
        return FlowTransform(kind, dim, num_layers, hidden, **options)
    return ConditionalFlowTransform(kind, dim, context_dim, num_layers, hidden, **options)
