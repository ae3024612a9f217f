r"""The hierarchical VAE: several layers of latents, each with a learned conditional prior
and a learned posterior, inferred bottom-up or top-down (the ladder VAE).

With :math:`L` layers :math:`z_1, \dots, z_L` (:math:`z_1` next to the data) the generative
model is a Markov chain from the top down,

.. math:: p(x, z) = p(z_L) \prod_{l=1}^{L-1} p_\theta(z_l \mid z_{l+1})\; p_\theta(x \mid z_1),
          \qquad p_\theta(z_l \mid z_{l+1}) = \mathcal{N}(\mu_l(z_{l+1}), \mathrm{diag}\,\sigma^2_l(z_{l+1})),

where the top prior :math:`p(z_L)` is anything a :class:`~probgen.VAE` takes (standard
Normal, mixture, VampPrior, a flow, a user's Pyro distribution) and the observation model
follows the data's support as the VAE's does. Two guides are offered.

*Bottom-up* (Rezende et al., 2014; Burda et al., 2016) mirrors the chain:
:math:`q(z \mid x) = q(z_1 \mid x) \prod_{l=2}^L q(z_l \mid z_{l-1})`.

*Top-down* (the ladder VAE of Sønderby et al., 2016) runs a deterministic bottom-up pass
:math:`d_1 = f_1(x),\ d_l = f_l(d_{l-1})` first, then samples in the generative order,
:math:`q(z \mid x) = q(z_L \mid x) \prod_{l<L} q(z_l \mid z_{l+1}, x)`, and shares the
generative conditional: each layer's posterior is the precision-weighted combination of
:math:`p_\theta(z_l \mid z_{l+1}) = \mathcal{N}(\mu_p, \sigma^2_p)` and a Gaussian
:math:`\mathcal{N}(\hat\mu_l, \hat\sigma^2_l)` read from :math:`d_l`,

.. math:: \sigma_q^{-2} = \hat\sigma_l^{-2} + \sigma_p^{-2}, \qquad
          \mu_q = \sigma_q^2 \big(\hat\mu_l \hat\sigma_l^{-2} + \mu_p \sigma_p^{-2}\big),

which is the exact posterior when the conditionals are linear-Gaussian and
:math:`\mathcal{N}(\hat\mu_l, \hat\sigma_l^2)` is the likelihood the data give :math:`z_l`
(the test oracle uses this). With ``merge="concat"`` one Gaussian head reads :math:`d_l` and
the layer above side by side instead, :math:`q(z_l \mid x, z_{l+1}) =
\mathcal{N}(\mu(d_l, z_{l+1}), \sigma^2(d_l, z_{l+1}))`, the form of Tomczak & Welling's (2018)
:math:`q(z_1 \mid x, z_2)`; nothing ties its scale to the prior's.

**The top-down path** (``top_down_path=True``). In the chain each layer, and the data, see
only the layer just above. A deterministic state carried down the hierarchy lets every
conditional, and the decoder, see all the layers above (the generative model of NVAE,
Vahdat & Kautz 2020, and of Tomczak & Welling's two-layer HVAE, whose decoder is
:math:`p(x \mid z_1, z_2)`):

.. math:: h_L = f_L(z_L), \qquad h_l = f_l(h_{l+1}, z_l)\ (l < L), \qquad
          p(x, z) = p(z_L) \prod_{l=1}^{L-1} p_\theta(z_l \mid h_{l+1})\; p_\theta(x \mid h_1),

with :math:`p_\theta(z_l \mid h_{l+1}) = \mathcal{N}(\mu_l(h_{l+1}), \mathrm{diag}\,\sigma^2_l(h_{l+1}))`.
:math:`h_{l+1}` is a function of :math:`z_{>l} = (z_{l+1}, \dots, z_L)`, so this is
:math:`p(z_L) \prod_{l<L} p(z_l \mid z_{>l})\, p(x \mid z)`: the chain rule with no
conditional independence assumed, each factor as expressive as :math:`f` lets it be. The chain
is the special case :math:`f_l(h, z) = z`. By default :math:`f_l` is one hidden layer
(:class:`PathStep`) and is the first hidden layer of the conditionals and the decoder, which
read :math:`h` through the remaining ``hidden[1:]`` layers, so the path costs about what the
chain's networks do.

The top-down guide shares the path: it runs the same :math:`f_l` on its own draws, so that
:math:`q(z_l \mid x, z_{>l})` sees the generative state :math:`h_{l+1}` and the generative
conditional :math:`p_\theta(z_l \mid h_{l+1})`. What the data say about :math:`z_l` now depends
on the layers above: for :math:`l = 1`,
:math:`p(z_1 \mid x, z_{>1}) \propto p(z_1 \mid h_2)\, p(x \mid z_1, z_{>1})`, and in the
linear-Gaussian case :math:`x = W z_1 + V z_2 + b + \epsilon`,
:math:`\epsilon \sim \mathcal{N}(0, s^2 I)`, the second factor is, as a function of :math:`z_1`,
the Gaussian of mean :math:`(W^\top W)^{-1} W^\top (x - V z_2 - b)` and covariance
:math:`s^2 (W^\top W)^{-1}`, whose mean moves with :math:`z_2`. So with the path the ladder
merge's :math:`(\hat\mu_l, \hat\sigma_l)` is read from :math:`d_l` and :math:`h_{l+1}`
together (:class:`LadderMerge` with ``context_features``), and the merge is again the exact
posterior in that case (the test oracle checks it). The bottom-up guide is unchanged; its
:math:`\mathrm{KL}_l` below compares with :math:`p(z_l \mid z_{>l})`.

**The ELBO, one term per layer.** Writing :math:`z_{>L}` for nothing and
:math:`q(z_l \mid \cdot)` for the guide's factor,

.. math:: \log p(x) \ge \mathbb{E}_q \log p_\theta(x \mid z)
          - \sum_{l=1}^L \underbrace{\mathbb{E}_q\big[\log q(z_l \mid \cdot) - \log p(z_l \mid z_{>l})\big]}_{\mathrm{KL}_l},

where :math:`p(x \mid z)` is :math:`p_\theta(x \mid z_1)` in the chain and
:math:`p(z_l \mid z_{>l})` is :math:`p(z_l \mid z_{l+1})`.

:meth:`HierarchicalVAE.elbo_terms` returns :math:`-\mathrm{KL}_l` as the term ``"z<l>"`` and the
reconstruction as ``"reconstruction"``, per data point; they add up to the ELBO. In the
top-down guide each :math:`z_l` is drawn given the layers above exactly as the model draws it,
so :math:`\mathrm{KL}_l = \mathbb{E}_{q(z_{>l})} \mathrm{KL}(q(z_l \mid z_{>l}, x) \,\|\,
p(z_l \mid z_{>l})) \ge 0` and is computed in closed form given the guide's draws above,
as a diffusion model's terms are, path or not. In the bottom-up guide :math:`z_{l+1}` is
drawn *after* :math:`z_l` and depends on it, so the closed form given :math:`z_{l+1}` would be
biased: those terms are single-draw Monte Carlo values, each layer's share of the total KL,
which may be negative for one layer (only the sum is a KL); the top layer's, whose draw
nothing depends on, is in closed form. For the same reason ``objective="meanfield"``
(Pyro's ``TraceMeanField_ELBO``) is valid for the top-down guide only.

**Posterior collapse and the remedies.** A layer whose KL is near zero carries no
information about :math:`x`: its posterior equals its prior. :func:`probgen.diagnostics.active_units`
counts, per layer, the units whose posterior mean varies across data points,
:math:`\mathrm{Cov}_x(\mathbb{E}_q[z_u]) > 0.01` (Burda et al., 2016). Switching the KL terms on
gradually (``objective="warmup:E"``, :class:`probgen.infer.KLWarmup`, which scales every
layer's term) and top-down inference keep more units active (Sønderby et al., 2016).

**Diffusion is the special case** whose guide is fixed: a hierarchy with the forward noising
process as its top-down guide and the diffusion's reverse steps as its conditionals has the
ELBO of :class:`~probgen.Diffusion`'s explicit chain (``tests/models/test_hvae.py`` builds it
from the pluggable pieces below).

References:
    Rezende, Mohamed, Wierstra (2014). Stochastic Backpropagation and Approximate Inference
    in Deep Generative Models. ICML.
    Burda, Grosse, Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
    Sønderby, Raiko, Maaløe, Sønderby, Winther (2016). Ladder Variational Autoencoders. NeurIPS.
    Tomczak, Welling (2018). VAE with a VampPrior. AISTATS.
    Maaløe, Fraccaro, Liévin, Winther (2019). BIVA: A Very Deep Hierarchy of Latent Variables
    for Generative Modeling. NeurIPS.
    Vahdat, Kautz (2020). NVAE: A Deep Hierarchical Variational Autoencoder. NeurIPS.
    Kingma, Salimans, Poole, Ho (2021). Variational Diffusion Models. NeurIPS.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions.kl import kl_divergence
from pyro.nn import pyro_method
from torch import nn
from torch.distributions import constraints

from ..checks import (
    boolean,
    choice,
    layer_sizes,
    non_negative_number,
    number,
    positive_int,
)
from ..distributions import DataInfo, Likelihood, likelihood_for
from ..nn import (
    ACTIVATIONS,
    MLP,
    MLPDecoder,
    MLPEncoder,
    hidden_layers,
    side_by_side,
)
from .base import DecoderModel, register_family
from .priors import check_pseudo_inputs, resolve_prior

__all__ = [
    "GaussianConditional",
    "GaussianHead",
    "HierarchicalPrior",
    "HierarchicalVAE",
    "Inference",
    "LadderEncoder",
    "LadderMerge",
    "Merge",
    "PathStep",
    "StatePosterior",
    "precision_weighted",
]

# the smallest scale of every Gaussian layer (as the VAE's guide): keeps log-densities finite
MIN_SCALE = 1e-4

# data values (draws x points x dimensions) per vectorized pass of elbo_terms
_VALUES_PER_PASS = 2**20


class Inference(str, enum.Enum):
    """The order the guide draws the layers in."""

    TOP_DOWN = "top-down"
    BOTTOM_UP = "bottom-up"


class Merge(str, enum.Enum):
    """How the top-down guide's layer :math:`l` combines the data's features :math:`d_l`
    with the state above: the ladder VAE's precision-weighted product with the generative
    conditional (:class:`LadderMerge`), or one Gaussian head reading both
    (:class:`StatePosterior`)."""

    PRECISION = "precision"
    CONCAT = "concat"


def _gaussian(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loc, raw_scale = output.chunk(2, -1)
    return loc, F.softplus(raw_scale) + MIN_SCALE


def _init_per_block(module: nn.Module, blocks: Sequence[int]) -> None:
    """Initialize the first linear map in ``module``, whose input is ``blocks`` wide vectors
    side by side, with nn.Linear's default bound, 1 / sqrt(fan-in), taken per block: each input
    starts with the weight it would have alone, so that a few latents beside a wide feature
    vector are not drowned (:class:`PathStep` gives the numbers)."""
    weight = next(m for m in module.modules() if isinstance(m, nn.Linear)).weight
    with torch.no_grad():
        for block in weight.split(list(blocks), 1):
            block.uniform_(-block.shape[1] ** -0.5, block.shape[1] ** -0.5)


#: the module types that end a hidden layer of the default networks, one per activation
_HIDDEN_LAYER_ENDS = tuple({type(layer(1, 1)[-1]) for layer in ACTIVATIONS.values()})


def _drop_hidden_units(networks: Sequence[nn.Module], p: float) -> None:
    """Dropout with probability ``p`` on the output of every hidden layer in ``networks``, in
    training mode only. It is a forward hook, so no module is added: the weights keep their
    names, and a checkpoint loads whatever the rate."""

    def drop(module, inputs, output):
        return F.dropout(output, p, module.training)

    for network in networks:
        for module in network.modules():
            if isinstance(module, _HIDDEN_LAYER_ENDS):
                module.register_forward_hook(drop)


def _descend(path: nn.ModuleList | None, state: torch.Tensor | None, z: torch.Tensor, layer: int) -> torch.Tensor:
    """The top-down state :math:`h_l` of layer ``layer`` from the state above (``None`` at
    the top) and :math:`z_l`; without a path (the Markov chain) it is :math:`z_l` itself."""
    return z if path is None else path[layer - 1](state, z)


class GaussianHead(nn.Module):
    r"""A linear map from features to :math:`(\mu, \sigma)` of a diagonal Normal over
    ``latent_dim``-vectors, :math:`\sigma = \mathrm{softplus}(\cdot) + 10^{-4}`."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, features):
        return _gaussian(self.linear(features))


class GaussianConditional(nn.Module):
    r"""An MLP from a conditioning vector to :math:`(\mu, \sigma)` of a diagonal Normal:
    the default :math:`p(z_l \mid z_{l+1})` and bottom-up :math:`q(z_l \mid z_{l-1})`."""

    def __init__(self, in_features: int, hidden: Sequence[int], latent_dim: int, activation="silu"):
        super().__init__()
        self.net = MLP(in_features, tuple(hidden), 2 * latent_dim, activation)

    def forward(self, condition):
        return _gaussian(self.net(condition))


class LadderEncoder(nn.Module):
    """The deterministic bottom-up pass of the top-down guide: the features
    :math:`d_1, \\dots, d_L` of one data point, each ``hidden[-1]`` wide, returned as a tuple
    (:math:`d_1` from the data by an :class:`~probgen.nn.MLPEncoder`, each further one from
    the one below by ``hidden`` layers)."""

    def __init__(self, event_shape, hidden: Sequence[int], num_layers: int, activation="silu"):
        super().__init__()
        hidden = tuple(hidden)
        self.out_features = hidden[-1]
        self.first = MLPEncoder(event_shape, hidden, activation)
        self.rest = nn.ModuleList(
            nn.Sequential(*hidden_layers([hidden[-1], *hidden], activation)) for _ in range(num_layers - 1)
        )

    def forward(self, x):
        features = [self.first(x)]
        for step in self.rest:
            features.append(step(features[-1]))
        return tuple(features)


class PathStep(nn.Module):
    r"""One step of the deterministic top-down path, :math:`h_l = f_l(h_{l+1}, z_l)`: one
    hidden layer ``out_features`` wide (``activation`` as every default MLP's) reading
    :math:`h_{l+1}` and :math:`z_l` side by side; the top step (``state_features=0``) reads
    :math:`z_L` alone. It is the first hidden layer of every network that reads the layers
    above, so a path costs about what the Markov chain's networks do.

    The weights reading :math:`h_{l+1}` and those reading :math:`z_l` are initialized each
    for its own fan-in, as two layers would be. Initialized for their joint fan-in, the few
    latents were drowned by the wide state at the start, and the layers collapsed: on
    optdigits, layers (16, 8), bottom-up guide, 10 epochs, 1 of 24 units stayed active and
    the IWAE bound was -109.4 nats, against 24 of 24 and -94.4 with this initialization."""

    def __init__(self, state_features: int, latent_dim: int, out_features: int, activation="silu"):
        super().__init__()
        self.state_features, self.out_features = state_features, out_features
        self.layer = nn.Sequential(*hidden_layers([state_features + latent_dim, out_features], activation))
        if state_features:
            _init_per_block(self.layer, (state_features, latent_dim))

    def forward(self, state, z):
        return self.layer(z if state is None else side_by_side(state, z))


def precision_weighted(loc_a, scale_a, loc_b, scale_b) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The normalized product of two diagonal Gaussians :math:`\mathcal{N}(\mu_a, \sigma_a^2)
    \mathcal{N}(\mu_b, \sigma_b^2)`: precisions add, means are precision-weighted."""
    precision_a, precision_b = scale_a.pow(-2), scale_b.pow(-2)
    variance = 1.0 / (precision_a + precision_b)
    return (loc_a * precision_a + loc_b * precision_b) * variance, variance.sqrt()


class LadderMerge(nn.Module):
    r"""The default top-down posterior step of layer :math:`l`: a :class:`GaussianHead` reads
    :math:`(\hat\mu_l, \hat\sigma_l)` from the layer's features :math:`d_l`, merged with the
    generative conditional :math:`p(z_l \mid z_{l+1})` by :func:`precision_weighted`
    (Sønderby et al., 2016). With ``context_features > 0`` the head reads the state above,
    :math:`h_{l+1}` (``context_features`` wide), beside :math:`d_l`: what the data say about
    :math:`z_l` depends on the layers above once the decoder reads them (a top-down path)."""

    #: it merges with the conditional's ``(prior_loc, prior_scale)``, so the guide computes them
    reads_prior = True

    def __init__(self, in_features: int, latent_dim: int, context_features: int = 0):
        super().__init__()
        self.context_features = context_features
        self.head = GaussianHead(in_features + context_features, latent_dim)
        if context_features:
            _init_per_block(self.head, (in_features, context_features))

    def forward(self, features, above, prior_loc, prior_scale):
        loc, scale = self.head(side_by_side(features, above) if self.context_features else features)
        return precision_weighted(loc, scale, prior_loc, prior_scale)


class StatePosterior(nn.Module):
    r"""The top-down posterior step ``merge="concat"``: :math:`q(z_l \mid x, z_{>l}) =
    \mathcal{N}(\mu, \sigma^2)` read by one :class:`GaussianHead` from the layer's features
    :math:`d_l` and the state above :math:`h_{l+1}` (``context_features`` wide; :math:`z_{l+1}`
    without a path) side by side, as Tomczak & Welling's (2018) :math:`q(z_1 \mid x, z_2)`.
    It shares the generative path's state but not its conditional: nothing ties the posterior's
    scale to the prior's, the tie that slows the ladder merge early in training
    (:doc:`/hierarchical`)."""

    #: it ignores the conditional's parameters, so the guide passes ``None`` for them and spares
    #: the conditional's network a pass
    reads_prior = False

    def __init__(self, in_features: int, latent_dim: int, context_features: int):
        super().__init__()
        self.head = GaussianHead(in_features + context_features, latent_dim)
        _init_per_block(self.head, (in_features, context_features))

    def forward(self, features, above, prior_loc, prior_scale):
        return self.head(side_by_side(features, above))


class HierarchicalPrior(dist.TorchDistribution):
    r"""The joint prior :math:`p(z_L) \prod_{l<L} p(z_l \mid z_{>l})` over all layers as one
    vector :math:`(z_1, \dots, z_L)` (layers concatenated, :math:`z_1` first): what annealed
    importance sampling moves its chains in (:meth:`HierarchicalVAE.prior_distribution`).
    The :math:`l`-th of ``conditionals`` maps the state :math:`h_{l+1}` to ``(loc, scale)``;
    ``path`` holds the top-down path's steps :math:`h_l = f_l(h_{l+1}, z_l)`, or is ``None``
    for the Markov chain, whose state :math:`h_{l+1}` is :math:`z_{l+1}`."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector

    def __init__(self, top: torch.distributions.Distribution, conditionals: Sequence[Callable],
                 latent_dims: Sequence[int], path: nn.ModuleList | None = None):
        self.top, self.conditionals, self.latent_dims = top, list(conditionals), tuple(latent_dims)
        self.path = path
        super().__init__(torch.Size(), torch.Size([sum(self.latent_dims)]), validate_args=False)

    def log_prob(self, value):
        layers = value.split(self.latent_dims, -1)
        num_layers = len(layers)
        log_prob = self.top.log_prob(layers[-1])
        state = _descend(self.path, None, layers[-1], num_layers)
        for layer in range(num_layers - 1, 0, -1):
            loc, scale = self.conditionals[layer - 1](state)
            log_prob = log_prob + dist.Normal(loc, scale).log_prob(layers[layer - 1]).sum(-1)
            if layer > 1:
                state = _descend(self.path, state, layers[layer - 1], layer)
        return log_prob

    def sample(self, sample_shape=()):
        num_layers = len(self.latent_dims)
        with torch.no_grad():
            layers = [self.top.sample(sample_shape)]
            state = _descend(self.path, None, layers[0], num_layers)
            for layer in range(num_layers - 1, 0, -1):
                loc, scale = self.conditionals[layer - 1](state)
                layers.insert(0, loc + scale * torch.randn_like(loc))
                if layer > 1:
                    state = _descend(self.path, state, layers[0], layer)
        return torch.cat(layers, -1)


def _modules(value, count: int, name: str, signature: str) -> nn.ModuleList | None:
    """``None``, or ``value`` checked to be ``count`` modules (a layer's custom networks)."""
    if value is None:
        return None
    value = list(value) if isinstance(value, (list, tuple, nn.ModuleList)) else value
    if not isinstance(value, list) or len(value) != count or not all(isinstance(m, nn.Module) for m in value):
        raise ValueError(f"{name} must be a sequence of {count} modules, each {signature}; got {value!r}")
    return nn.ModuleList(value)


@register_family("hvae")
class HierarchicalVAE(DecoderModel):
    r"""A hierarchical VAE with ``len(latent_dims)`` layers of latents ``"z1"`` (next to the
    data) to ``"zL"`` (top), and a bottom-up or top-down (ladder) guide. The module docstring
    derives the model, the guides and the per-layer ELBO.

    :param data: the data's description, ``data.info`` (a :class:`~probgen.DataInfo`), or
        an event shape alone, which means real-valued data.
    :param latent_dims: the size of each layer, :math:`z_1` first, e.g. ``(32, 16)``.
    :param inference: ``"bottom-up"`` (default) or ``"top-down"`` (the ladder guide, sharing
        the generative conditionals). Both train well with their default posterior steps
        (``benchmarks/hvae_optdigits.py``: optdigits, layers (16, 8), IWAE with k = 100 on all
        1,797 test digits, seeds 0-2, bits/dim): after 10 epochs bottom-up 2.138 ± 0.024,
        top-down 2.126 ± 0.008, the one-layer VAE 2.161 ± 0.007; after 100 epochs 1.870 ±
        0.006, 1.863 ± 0.007 and 1.903 ± 0.014. The top-down guide's lead is within the
        spread between seeds, so the default stays the guide that needs no merge.
    :param top_down_path: ``False`` (default): the Markov chain. ``True``: the deterministic
        top-down path :math:`h_l = f_l(h_{l+1}, z_l)`, so that each :math:`p(z_l \mid z_{>l})`
        and the decoder :math:`p(x \mid z)` see every layer above (module docstring). It is
        off by default because what it adds does not last (the setting of ``inference``): with
        the top-down guide 2.090 ± 0.008 bits/dim after 10 epochs against 2.126 without, but
        1.868 ± 0.019 against 1.863 after 100; with the bottom-up guide 2.136 and 1.881 against
        2.138 and 1.870.
    :param merge: how the top-down guide combines the data's features with the layer above:
        ``"concat"`` (its default: one Gaussian head reading both, :class:`StatePosterior`;
        Tomczak & Welling's :math:`q(z_1 \mid x, z_2)`) or ``"precision"`` (the ladder VAE's
        precision-weighted product with :math:`p(z_l \mid \cdot)`, :class:`LadderMerge`, the
        exact posterior of a linear-Gaussian hierarchy). Only the top-down guide has one; it
        chooses the default posterior steps (custom ``posteriors`` replace them). ``"concat"``
        is the default because the ladder merge trained far worse in our measurements (the
        setting above: 2.403 ± 0.048 bits/dim after 10 epochs and 2.058 ± 0.025 after 100,
        worse than the one-layer VAE; :doc:`/hierarchical` says why it starts slowly).
    :param prior: the top layer's prior: anything :class:`~probgen.VAE` takes (``"normal"``,
        ``"mixture"``, ``"vamp"``, a flow kind, a Pyro distribution with event shape
        ``(latent_dims[-1],)``, or a module/callable returning one). The VampPrior's mixture
        components are the guide's :math:`q(z_L \mid u_k)` at its pseudo-inputs; for the
        bottom-up guide, whose :math:`q(z_L \mid x)` has no closed form, the component of
        :math:`u_k` passes the posterior means of the layers below up the chain.
    :param num_pseudo_inputs: the VampPrior's pseudo-inputs (Tomczak & Welling use 500).
    :param pseudo_inputs: ``"uniform"`` (default: they start uniform in ``[0, 1]`` and the
        encoder reads them as they are) or ``"clamped"`` (they start at ``0.05 ± 0.01`` and the
        encoder reads them clamped to ``[0, 1]``, as in Tomczak & Welling's final code; discrete
        data only). Read only with ``prior="vamp"``.
    :param likelihood: ``None`` (follow the data's support, as the VAE does), a name, a
        :class:`~probgen.distributions.Likelihood`, or a callable from the decoder's output
        to a distribution over one data point.
    :param num_levels: levels for a named discrete likelihood, when ``data`` does not say.
    :param hidden: hidden sizes of every default MLP (encoder, decoder, conditionals,
        bottom-up posteriors, ladder steps).
    :param activation: their hidden units: ``"silu"`` (default), ``"relu"``, ``"tanh"``,
        ``"elu"`` or ``"gated"`` (:class:`probgen.nn.GatedLinear`, as Tomczak & Welling).
    :param encoder: replaces the default encoder. Bottom-up: a module from a batch of (scaled)
        data to features :math:`h`. Top-down: a module returning the tuple of features
        :math:`(d_1, \dots, d_L)`, one per layer (:class:`LadderEncoder`).
    :param decoder: replaces the default decoder: a module from :math:`z_1` (with the path:
        the state :math:`h_1`) to the likelihood's parameters.
    :param conditionals: replaces the generative conditionals: ``L - 1`` modules, the
        :math:`l`-th mapping :math:`z_{l+1}` (with the path: the state :math:`h_{l+1}`) to
        ``(loc, scale)`` of :math:`p(z_l \mid z_{l+1})` (:math:`p(z_l \mid z_{>l})`).
    :param posteriors: replaces the guide's layers: ``L`` modules, the :math:`l`-th for
        :math:`z_l`. Bottom-up: the first maps the encoder's features :math:`h`, the others
        :math:`z_{l-1}`, to ``(loc, scale)``. Top-down: the last maps :math:`d_L` to
        ``(loc, scale)`` of :math:`q(z_L \mid x)`; the others are called as
        ``posterior(d_l, z_above, prior_loc, prior_scale)`` with the generative conditional's
        parameters (:class:`LadderMerge`); with the path ``z_above`` is the state
        :math:`h_{l+1}`. A module whose attribute ``reads_prior`` is false
        (:class:`StatePosterior`) gets ``None`` for both, and the guide skips the conditional.
    :param path: replaces the path's steps (needs ``top_down_path=True``): ``L`` modules, the
        :math:`l`-th called as ``step(h_above, z_l)`` and returning :math:`h_l`, with
        ``h_above=None`` for the top layer (:class:`PathStep`). The default networks that
        read a state expect it ``hidden[-1]`` wide; give those modules too if it is not.
    :param encoder_noise: the standard deviation of Gaussian noise added to the encoder's input
        (the data as the networks read them, in ``[0, 1]`` for discrete data) while the model is
        in training mode, as :func:`probgen.fit`'s steps run it: the denoising criterion of Im
        et al. (2017), a regularizer of the amortized posterior (Shu et al. 2018). The model's
        own program never sees the noise, so the training objective is still a bound on
        :math:`\log p(x)`; in evaluation mode (validation, every estimator, sampling) the
        encoder reads the data as they are. Default 0: no noise.
    :param generative_dropout: dropout with this probability (in ``[0, 1)``) on the hidden
        units of the generative networks: the decoder's, the conditionals' and, with a path,
        the bottom step's (:math:`h_1`, read by the decoder alone; the guide reads the states
        above it). In training mode only; the model evaluated (validation, every estimator,
        sampling) is the mean network, all units kept (Srivastava et al. 2014). A regularizer
        of the generative networks; it needs their default modules. The guide reads none of
        these units, except with ``merge="precision"``, whose posterior steps merge with the
        conditionals. Default 0: none.

    A model built from names and the default networks has a ``config`` and reloads with
    :func:`probgen.load_model`; one with custom modules or a distribution as prior does not.

    Example::

        >>> import probgen as pg
        >>> data = pg.datasets.load("optdigits")
        >>> hvae = pg.HierarchicalVAE(data.info, (8, 4), hidden=(64,))
        >>> sorted(hvae.elbo_terms(data.test[:5]))
        ['reconstruction', 'z1', 'z2']
        >>> hvae.sample(3).shape
        torch.Size([3, 8, 8])
        >>> with_path = pg.HierarchicalVAE(data.info, (8, 4), hidden=(64,), inference="top-down",
        ...                                top_down_path=True, merge="concat")
        >>> len(with_path.path), pg.log_likelihood(with_path, data.test[:5], method="elbo").terms.keys()
        (2, dict_keys(['z2', 'z1', 'reconstruction']))
    """

    likelihood_methods = ("iwae", "elbo", "ais")
    #: :class:`probgen.infer.TermsELBO` on :meth:`elbo_terms`, with each layer's KL in closed
    #: form where that is unbiased. On optdigits, (16, 8) layers, 10 epochs, seed 0, it reached
    #: a lower validation loss than ``"elbo"`` (one draw of the log-weights) with both guides:
    #: top-down 106.8 against 109.1 nats, bottom-up 95.8 against 96.3
    default_objective = "terms"

    def __init__(
        self,
        data,
        latent_dims: Sequence[int] = (32, 16),
        *,
        inference: str = "bottom-up",
        top_down_path: bool = False,
        merge: str | None = None,
        prior="normal",
        num_pseudo_inputs: int = 50,
        pseudo_inputs: str = "uniform",
        likelihood: str | Likelihood | Callable | None = None,
        num_levels: int | None = None,
        hidden: Sequence[int] = (256, 256),
        activation: str = "silu",
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        conditionals: Sequence[nn.Module] | None = None,
        posteriors: Sequence[nn.Module] | None = None,
        path: Sequence[nn.Module] | None = None,
        encoder_noise: float = 0.0,
        generative_dropout: float = 0.0,
    ):
        # every argument is checked before any network is built
        latent_dims = layer_sizes(latent_dims, "latent_dims")
        num_layers = len(latent_dims)
        inference = choice(inference, Inference, "inference")
        top_down_path = boolean(top_down_path, "top_down_path")
        if merge is None:  # the top-down guide's measured default; the bottom-up guide has none
            merge = Merge.CONCAT if inference is Inference.TOP_DOWN else Merge.PRECISION
        merge = choice(merge, Merge, "merge")
        if merge is not Merge.PRECISION and inference is not Inference.TOP_DOWN:
            raise ValueError(f"merge={merge.value!r} combines what the top-down guide reads; the {inference.value} "
                             "guide has no merge: pass inference='top-down' with it")
        hidden = layer_sizes(hidden, "hidden")
        positive_int(num_pseudo_inputs, "num_pseudo_inputs")
        encoder_noise = non_negative_number(encoder_noise, "encoder_noise")
        generative_dropout = number(generative_dropout, "generative_dropout", 0.0, 1.0)
        if generative_dropout and any(part is not None for part in (decoder, conditionals, path)):
            raise ValueError("generative_dropout drops hidden units of the default generative networks; with a custom "
                             "decoder, conditionals or path, put dropout in those modules instead")
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        top_down = inference is Inference.TOP_DOWN
        if path is not None and not top_down_path:
            raise ValueError("path replaces the steps of the top-down path: pass top_down_path=True with it")
        path = _modules(path, num_layers, "path", "(state_above or None, z) -> state")
        above = "state_above" if top_down_path else "z_above"
        conditionals = _modules(conditionals, num_layers - 1, "conditionals", f"{above} -> (loc, scale)")
        posteriors = _modules(posteriors, num_layers, "posteriors",
                              f"features -> (loc, scale) or (d_l, {above}, prior_loc, prior_scale) -> (loc, scale)"
                              if top_down else "features or z_below -> (loc, scale)")
        for value, name in ((encoder, "encoder"), (decoder, "decoder")):
            if value is not None and not isinstance(value, nn.Module):
                raise TypeError(f"{name} must be a torch module, got {type(value).__name__}")
        info = DataInfo.of(data)
        rebuildable = ((likelihood is None or isinstance(likelihood, str)) and isinstance(prior, str)
                       and all(part is None for part in (encoder, decoder, conditionals, posteriors, path)))
        likelihood_name = likelihood
        if likelihood is None or isinstance(likelihood, (str, Likelihood)):
            likelihood = likelihood_for(data, likelihood, num_levels)
        elif not callable(likelihood):
            raise TypeError(f"likelihood must be None, a name, a Likelihood or a callable, got {type(likelihood).__name__}")
        if decoder is None and not isinstance(likelihood, Likelihood):
            raise ValueError("a callable likelihood needs a decoder: pass decoder=... whose output it reads")
        check_pseudo_inputs(pseudo_inputs, likelihood)
        super().__init__(data, likelihood, support_stated=likelihood_name is not None)
        self.latent_dims = latent_dims
        self.inference = inference
        self.encoder_noise = encoder_noise
        self.top_down_path, self.merge = top_down_path, merge
        event_shape, width = info.event_shape, hidden[-1]
        # with a path, its step is the first hidden layer of every network reading the layers above
        if top_down_path and path is None:
            path = [PathStep(width, d, width, activation) for d in latent_dims[:-1]] + [
                PathStep(0, latent_dims[-1], width, activation)]
        self.path = nn.ModuleList(path) if top_down_path else None
        state_dims, after_path = ((width,) * num_layers, hidden[1:]) if top_down_path else (latent_dims, hidden)

        if encoder is None:
            encoder = (LadderEncoder(event_shape, hidden, num_layers, activation) if top_down
                       else MLPEncoder(event_shape, hidden, activation))
        self.encoder = encoder
        if posteriors is None:
            if top_down:
                if merge is Merge.CONCAT:
                    posteriors = [StatePosterior(width, d, above) for d, above in zip(latent_dims, state_dims[1:])]
                else:  # with a path, the data's Gaussian for z_l reads h_{l+1} too
                    posteriors = [LadderMerge(width, d, width if top_down_path else 0) for d in latent_dims[:-1]]
                posteriors.append(GaussianHead(width, latent_dims[-1]))
            else:
                posteriors = [GaussianHead(width, latent_dims[0])] + [
                    GaussianConditional(below, hidden, d, activation) for below, d in pairwise(latent_dims)
                ]
        self.posteriors = nn.ModuleList(posteriors)
        if conditionals is None:
            conditionals = [GaussianConditional(above, after_path, d, activation)
                            for d, above in zip(latent_dims[:-1], state_dims[1:])]
        self.conditionals = nn.ModuleList(conditionals)
        if decoder is None:
            decoder = MLPDecoder(state_dims[0], likelihood.num_outputs, after_path[::-1], activation)
        self.decoder = decoder
        self.prior = resolve_prior(prior, latent_dims[-1], self._top_posterior_params, event_shape,
                                   num_pseudo_inputs=num_pseudo_inputs, pseudo_inputs=pseudo_inputs)
        self.generative_dropout = generative_dropout
        if generative_dropout:  # of the path's states, the guide reads all but h_1
            bottom_step = self.path[:1] if top_down_path else []
            _drop_hidden_units([self.decoder, *self.conditionals, *bottom_step], generative_dropout)

        if rebuildable:
            self.config = {
                "family": "hvae",
                "data": self.data_config(),
                "latent_dims": list(latent_dims),
                "inference": inference.value,
                "top_down_path": top_down_path,
                "merge": merge.value,
                "prior": prior,
                "num_pseudo_inputs": num_pseudo_inputs,
                "pseudo_inputs": pseudo_inputs,
                "likelihood": likelihood_name,
                "num_levels": num_levels,
                "hidden": list(hidden),
                "activation": activation,
                "encoder_noise": encoder_noise,
                "generative_dropout": generative_dropout,
            }

    # -- pieces -------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    @staticmethod
    def site(layer: int) -> str:
        """The name of layer ``layer``'s sample site (1-based): ``"z1"``, ``"z2"``, ..."""
        return f"z{layer}"

    def _network_input(self, x):
        return self.likelihood.network_input(x) if isinstance(self.likelihood, Likelihood) else x

    def _ladder_features(self, network_input):
        features = self.encoder(network_input)
        if not isinstance(features, (tuple, list)) or len(features) != self.num_layers:
            got = f"{len(features)} of them" if isinstance(features, (tuple, list)) else f"a {type(features).__name__}"
            raise ValueError(f"the top-down guide's encoder must return a tuple of {self.num_layers} feature tensors, "
                             f"one per layer (d_1, ..., d_L); got {got}")
        return features

    def _top_posterior_params(self, network_input):
        """``(loc, scale)`` of the top layer's guide at data ``network_input``, what a
        VampPrior reads at its pseudo-inputs (bottom-up: with the layers below at their means)."""
        if self.inference is Inference.TOP_DOWN:
            return self.posteriors[-1](self._ladder_features(network_input)[-1])
        loc, scale = self.posteriors[0](self.encoder(network_input))
        for posterior in self.posteriors[1:]:
            loc, scale = posterior(loc)
        return loc, scale

    def decode(self, state: torch.Tensor) -> dist.TorchDistribution:
        """:math:`p(x \\mid z)` over one data point per latent, from the state :math:`h_1`
        (:math:`z_1` itself without a top-down path)."""
        return self.likelihood(self.decoder(state))

    def prior_distribution(self) -> HierarchicalPrior:
        """The joint prior over all layers as one vector :math:`(z_1, \\dots, z_L)`."""
        return HierarchicalPrior(self.prior(), self.conditionals, self.latent_dims, self.path)

    def _bottom_state(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`h_1` of the layers as one vector (:meth:`prior_distribution`): the top-down
        path run over them, or :math:`z_1` without one."""
        layers, state = z.split(self.latent_dims, -1), None
        for layer in range(self.num_layers, 0, -1):
            state = _descend(self.path, state, layers[layer - 1], layer)
        return state

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters for the layers as one vector (:meth:`prior_distribution`;
        :meth:`observation` is :math:`p(x \\mid z)`): the data depend on :math:`z_1` alone in
        the Markov chain, on every layer through the path."""
        return self.decoder(self._bottom_state(z))

    # -- the Pyro program ---------------------------------------------------------------

    @pyro_method
    def model(self, x: torch.Tensor | None = None, *, num_data: int | None = None):
        """The generative program: ``zL ~ prior``, ``z<l> ~ p(z_l | h_{l+1})`` down to
        ``z1``, then ``x ~ p(x | h_1)``, under plate ``"data"``; the state ``h_l`` is
        ``z_l`` in the Markov chain, the top-down path's summary of ``z_l, ..., z_L`` with one."""
        n = len(x) if x is not None else (num_data or 1)
        prior = self.prior()
        with pyro.plate("data", n, dim=-1):
            z = pyro.sample(self.site(self.num_layers), prior)
            state = _descend(self.path, None, z, self.num_layers)
            for layer in range(self.num_layers - 1, 0, -1):
                loc, scale = self.conditionals[layer - 1](state)
                z = pyro.sample(self.site(layer), dist.Normal(loc, scale).to_event(1))
                state = _descend(self.path, state, z, layer)
            return pyro.sample("x", self.decode(state), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, *, num_data: int | None = None):
        """The amortized posterior: ``z1`` up to ``zL`` (bottom-up), or the ladder's
        ``zL`` down to ``z1`` (top-down), one draw per data point."""
        network_input = self._network_input(x)
        if self.training and self.encoder_noise:  # the denoising criterion: in training only
            network_input = network_input + self.encoder_noise * torch.randn_like(network_input)
        with pyro.plate("data", len(x), dim=-1):
            if self.inference is Inference.TOP_DOWN:
                features, state = self._ladder_features(network_input), None
                for layer in range(self.num_layers, 0, -1):
                    if layer == self.num_layers:
                        loc, scale = self.posteriors[-1](features[-1])
                    else:  # shares the generative state h_{l+1} and, if it reads it, p(z_l | h_{l+1})
                        posterior = self.posteriors[layer - 1]
                        prior_loc, prior_scale = (self.conditionals[layer - 1](state)
                                                  if getattr(posterior, "reads_prior", True) else (None, None))
                        loc, scale = posterior(features[layer - 1], state, prior_loc, prior_scale)
                    z = pyro.sample(self.site(layer), dist.Normal(loc, scale).to_event(1))
                    if layer > 1:
                        state = _descend(self.path, state, z, layer)
            else:
                condition = self.encoder(network_input)
                for layer in range(1, self.num_layers + 1):
                    loc, scale = self.posteriors[layer - 1](condition)
                    condition = pyro.sample(self.site(layer), dist.Normal(loc, scale).to_event(1))

    def _closed_form(self, layer: int) -> bool:
        """Whether layer ``layer``'s KL may be taken in closed form given the guide's other
        draws: nothing the guide draws after it may depend on it (module docstring)."""
        return self.inference is Inference.TOP_DOWN or layer == self.num_layers

    def elbo_terms(self, x: torch.Tensor, num_samples: int = 1, *, validate: bool = True) -> dict[str, torch.Tensor]:
        """Per data point, minus each layer's KL (``"zL"`` down to ``"z1"``) and the
        reconstruction :math:`\\mathbb{E}_q \\log p(x \\mid z_1)`, in nats, averaged over
        ``num_samples`` draws of the guide; they add up to an unbiased estimate of the ELBO.
        A layer's KL is in closed form where that is unbiased and the two distributions
        have one (module docstring), else the draw's :math:`\\log q - \\log p`.
        ``validate=False`` skips the checks of ``x`` (the caller validated it)."""
        if validate:
            self.validate(x)
            positive_int(num_samples, "num_samples")
        names = [self.site(layer) for layer in range(self.num_layers, 0, -1)]
        totals = {name: 0.0 for name in [*names, "reconstruction"]}
        chunk = max(1, _VALUES_PER_PASS // (len(x) * self.num_dims))
        for start in range(0, num_samples, chunk):
            with pyro.plate("_particles", min(chunk, num_samples - start), dim=-2):
                guide_trace = poutine.trace(self.guide).get_trace(x)
                model_trace = poutine.trace(poutine.replay(self.model, trace=guide_trace)).get_trace(x)
            for layer, name in zip(range(self.num_layers, 0, -1), names):
                q, p = guide_trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]
                kl = None
                if self._closed_form(layer):
                    try:
                        kl = kl_divergence(q, p)
                    except NotImplementedError:  # e.g. a mixture or flow prior: no closed form
                        pass
                if kl is None:
                    value = guide_trace.nodes[name]["value"]
                    kl = q.log_prob(value) - p.log_prob(value)
                totals[name] = totals[name] - kl.sum(0)
            totals["reconstruction"] = totals["reconstruction"] + model_trace.nodes["x"]["fn"].log_prob(x).sum(0)
        return {name: total / num_samples for name, total in totals.items()}

    def extra_repr(self) -> str:
        return (f"event_shape={self.event_shape}, latent_dims={self.latent_dims}, "
                f"inference={self.inference.value}, top_down_path={self.top_down_path}, merge={self.merge.value}, "
                f"likelihood={self.likelihood}")

