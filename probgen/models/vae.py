r"""The variational autoencoder as a Pyro model and an amortized guide.

.. math::

    z_n \sim p(z), \qquad x_n \mid z_n \sim p_\theta(x \mid z_n), \qquad
    q_\phi(z_n \mid x_n) = \mathcal{N}(\mu_\phi(x_n), \mathrm{diag}\,\sigma^2_\phi(x_n)).

Every part is pluggable: the prior (any Pyro distribution over ``latent_dim``-vectors,
a module or callable returning one, or ``"normal"``, ``"mixture"``, ``"vamp"``), the
observation likelihood (a name, a :class:`~probgen.distributions.Likelihood`, or a callable
from decoder output to a distribution), and the encoder and decoder networks.

References:
    Kingma, Welling (2014). Auto-Encoding Variational Bayes. ICLR.
    Rezende, Mohamed, Wierstra (2014). Stochastic Backpropagation and Approximate Inference
    in Deep Generative Models. ICML.
    Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling (2016). Improved Variational
    Inference with Inverse Autoregressive Flow. NeurIPS.
"""

from __future__ import annotations

from typing import Callable

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import pyro_method
from torch import nn

from ..checks import layer_sizes, positive_int
from ..distributions import (
    DataInfo,
    Likelihood,
    likelihood_for,
)
from ..flows import build as build_flow
from ..nn import ACTIVATIONS, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .base import DecoderModel, register_family
from .priors import check_pseudo_inputs, resolve_prior

__all__ = ["VAE", "DecoderMean"]


# posterior name -> flow kind and options; each samples (and scores its samples) in one pass
_POSTERIOR_FLOWS = {
    "iaf": ("iaf", {}),
    "nsf": ("nsf", {"inverse": True}),
    "realnvp": ("realnvp", {}),
    "nsf_coupling": ("nsf_coupling", {}),
}


def _resolve_posterior(posterior, latent_dim: int, features: int):
    """``None`` for the diagonal Normal guide, else a conditional flow on ``latent_dim``-vectors
    whose context is the encoder's ``features``-vector."""
    if posterior is None or posterior == "normal":
        return None
    if isinstance(posterior, str):
        if posterior not in _POSTERIOR_FLOWS:
            raise ValueError(f"unknown posterior {posterior!r}; expected 'normal', {', '.join(map(repr, _POSTERIOR_FLOWS))} or a conditional flow")
        kind, options = _POSTERIOR_FLOWS[posterior]
        return build_flow(kind, latent_dim, num_layers=2, hidden=max(64, 2 * latent_dim), context_dim=features, **options)
    if not hasattr(posterior, "condition"):
        raise TypeError(f"posterior must be a name or a conditional flow with .condition(context), got {type(posterior).__name__}")
    dim, context_dim = getattr(posterior, "dim", latent_dim), getattr(posterior, "context_dim", features)
    if dim != latent_dim or context_dim != features:
        raise ValueError(
            f"the posterior flow must act on latent_dim={latent_dim} vectors with context_dim={features} "
            f"(the encoder's features), got dim={dim}, context_dim={context_dim}"
        )
    return posterior


@register_family("vae")
class VAE(DecoderModel):
    """A variational autoencoder: a Pyro model and an amortized Gaussian guide.

    :param data: the data's description, ``data.info`` (a :class:`~probgen.DataInfo`), or
        an event shape alone, e.g. ``(28, 28)``, which means real-valued data.
    :param latent_dim: dimension of :math:`z`.
    :param likelihood: ``None`` (default: what the support needs, see
        :func:`~probgen.distributions.likelihood_for`: Bernoulli for binary data, a discretized
        logistic over the levels of discrete data, a Normal for real data), or
        ``"bernoulli"``, ``"categorical"``, ``"discretized_logistic"``, ``"normal"``, a
        :class:`~probgen.distributions.Likelihood`, or a callable mapping the decoder's output
        to a distribution over one data point. A named or given likelihood must cover the
        data's support (``"normal"`` on discrete data says explicitly that a density is wanted).
    :param num_levels: levels for a named discrete likelihood, when ``data`` does not say.
    :param prior: ``"normal"`` (default), ``"mixture"``, ``"vamp"``, a flow kind (``"nsf"``,
        ``"maf"``, ... a :func:`probgen.flows.prior` with default sizes), a Pyro distribution
        with event shape ``(latent_dim,)``, or a module/callable returning one.
    :param num_pseudo_inputs: the VampPrior's pseudo-inputs (Tomczak & Welling use 500 on
        MNIST); read only with ``prior="vamp"``.
    :param pseudo_inputs: ``"uniform"`` (default: they start uniform in ``[0, 1]`` and the
        encoder reads them as they are) or ``"clamped"`` (they start at ``0.05 ± 0.01`` and the
        encoder reads them clamped to ``[0, 1]``, as in Tomczak & Welling's final code; discrete
        data only). Read only with ``prior="vamp"``.
    :param posterior: ``"normal"`` (diagonal Normal, default), ``"iaf"``, ``"nsf"`` (an inverse
        autoregressive spline), ``"realnvp"``, ``"nsf_coupling"`` (two conditional flow steps
        each), or a conditional flow (e.g. ``pg.flows.build("iaf", latent_dim, context_dim=F,
        ...)``) whose context is the encoder's ``F`` features. The guide draws the diagonal
        Normal and pushes it through the flow (Kingma et al., 2016).
    :param encoder: a module mapping a batch of (scaled) data to feature vectors; its
        ``out_features`` attribute, or a trial call, gives the feature size.
    :param decoder: a module mapping latents to the likelihood's parameters (a flat vector of
        ``likelihood.num_outputs`` numbers for the named likelihoods).
    :param network: ``"mlp"`` or ``"conv"``: the default encoder/decoder pair.
    :param hidden: hidden sizes of the default MLPs.
    :param activation: hidden units of the default MLPs: ``"silu"`` (default), ``"relu"``,
        ``"tanh"``, ``"elu"`` or ``"gated"`` (:class:`probgen.nn.GatedLinear`).

    Example::

        >>> import probgen as pg
        >>> data = pg.datasets.load("optdigits")
        >>> vae = pg.VAE(data.info, 4)
        >>> vae.likelihood
        DiscretizedLogisticLikelihood(event_shape=(8, 8), num_levels=17)
        >>> vae.sample(3).shape
        torch.Size([3, 8, 8])
    """

    likelihood_methods = ("iwae", "elbo", "ais")
    default_objective = "elbo"

    def __init__(
        self,
        data,
        latent_dim: int,
        *,
        likelihood: str | Likelihood | Callable | None = None,
        num_levels: int | None = None,
        prior="normal",
        num_pseudo_inputs: int = 50,
        pseudo_inputs: str = "uniform",
        posterior="normal",
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        network: str = "mlp",
        hidden: tuple[int, ...] = (256, 256),
        activation: str = "silu",
    ):
        info = DataInfo.of(data)
        event_shape = info.event_shape
        # only a model built from names can be rebuilt from a checkpoint's config
        rebuildable = (
            (likelihood is None or isinstance(likelihood, str)) and isinstance(prior, str)
            and isinstance(posterior, str) and encoder is None and decoder is None
        )
        likelihood_name = likelihood
        if likelihood is None or isinstance(likelihood, (str, Likelihood)):
            likelihood = likelihood_for(data, likelihood, num_levels)
        elif not callable(likelihood):
            raise TypeError(f"likelihood must be None, a name, a Likelihood or a callable, got {type(likelihood).__name__}")
        super().__init__(data, likelihood, support_stated=likelihood_name is not None)
        if network not in ("mlp", "conv"):
            raise ValueError(f"network must be 'mlp' or 'conv', got {network!r}")
        self.latent_dim = positive_int(latent_dim, "latent_dim")
        hidden = layer_sizes(hidden, "hidden")
        positive_int(num_pseudo_inputs, "num_pseudo_inputs")
        check_pseudo_inputs(pseudo_inputs, likelihood)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")

        if encoder is None:
            encoder = MLPEncoder(event_shape, hidden, activation) if network == "mlp" else ConvEncoder(event_shape)
        self.encoder = encoder
        features = getattr(encoder, "out_features", None)
        if features is None:
            with torch.no_grad():
                features = encoder(torch.zeros(1, *event_shape)).shape[-1]
        self.posterior_head = nn.Linear(features, 2 * self.latent_dim)
        self.posterior_flow = _resolve_posterior(posterior, self.latent_dim, features)

        if decoder is None:
            if not isinstance(likelihood, Likelihood):
                raise ValueError("a callable likelihood needs a decoder: pass decoder=... whose output it reads")
            if network == "mlp":
                decoder = MLPDecoder(self.latent_dim, likelihood.num_outputs, hidden[::-1], activation)
            else:
                decoder = ConvDecoder(self.latent_dim, event_shape, likelihood.num_params)
        self.decoder = decoder
        self.prior = resolve_prior(prior, self.latent_dim, self._posterior_params, event_shape,
                                   num_pseudo_inputs=num_pseudo_inputs, pseudo_inputs=pseudo_inputs)

        if rebuildable:
            self.config = {
                "family": "vae",
                "data": self.data_config(),
                "latent_dim": self.latent_dim,
                "likelihood": likelihood_name,
                "num_levels": num_levels,
                "prior": prior,
                "num_pseudo_inputs": num_pseudo_inputs,
                "pseudo_inputs": pseudo_inputs,
                "posterior": posterior,
                "network": network,
                "hidden": list(hidden),
                "activation": activation,
            }

    # -- pieces -------------------------------------------------------------------------

    def _network_input(self, x):
        return self.likelihood.network_input(x) if isinstance(self.likelihood, Likelihood) else x

    def _posterior(self, network_input):
        """``(loc, scale, features)``: the diagonal Normal and the encoder features that
        condition a flow posterior."""
        features = self.encoder(network_input)
        loc, raw_scale = self.posterior_head(features).chunk(2, -1)
        return loc, F.softplus(raw_scale) + 1e-4, features

    def _posterior_params(self, network_input):
        """``(loc, scale)`` of the diagonal Normal :math:`q(z \\mid x)` (the VampPrior reads it)."""
        return self._posterior(network_input)[:2]

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters given :math:`z` (:meth:`observation` is :math:`p(x \\mid z)`)."""
        return self.decoder(z)

    # -- the Pyro program ---------------------------------------------------------------

    @pyro_method
    def model(self, x: torch.Tensor | None = None, *, num_data: int | None = None):
        """The generative program: ``z ~ prior``, ``x ~ p(x | z)``, under plate ``"data"``."""
        n = len(x) if x is not None else (num_data or 1)
        prior = self.prior_distribution()
        with pyro.plate("data", n, dim=-1):
            z = pyro.sample("z", prior)
            return pyro.sample("x", self.observation(z), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, *, num_data: int | None = None):
        """The amortized posterior :math:`q(z \\mid x)`, one latent per data point: a diagonal
        Normal, pushed through the flow posterior (conditioned on the encoder's features) if
        there is one. It stays one site ``"z"``, so the flow's log-determinant is part of
        ``log q(z | x)`` wherever a trace scores it (ELBO, IWAE, ``log_weights``)."""
        with pyro.plate("data", len(x), dim=-1):
            loc, scale, features = self._posterior(self._network_input(x))
            q = dist.Normal(loc, scale).to_event(1)
            if self.posterior_flow is not None:
                q = dist.TransformedDistribution(q, [self.posterior_flow.condition(features)])
            return pyro.sample("z", q)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, latent_dim={self.latent_dim}, likelihood={self.likelihood}"



class DecoderMean(nn.Module):
    r"""A VAE decoder's mean as the generator of a decoder model, :math:`z \mapsto \mathbb{E}[x \mid z]`.

    Plugged into a :class:`~probgen.GAN` built on the same data's description,
    ``pg.GAN(data.info, latent_dim, generator=DecoderMean(vae))``, it makes the VAE's decoder
    a model that AIS scores under the GAN's observation model, the way Wu et al. (2017) score
    GANs and VAEs on an equal footing. A GAN squashes its generator's output into the levels'
    range on binary and discrete data, :math:`G = \frac{K-1}{2}(\tanh g + 1)`, so on such data
    this returns the :math:`g` that the squashing maps back to the mean.
    """

    def __init__(self, vae: VAE):
        super().__init__()
        if not isinstance(vae.likelihood, Likelihood):
            raise TypeError("DecoderMean needs a VAE with a named probgen likelihood (it reads likelihood.mean)")
        self.vae = vae

    def forward(self, z):
        info = self.vae.info
        mean = self.vae.likelihood.mean(self.vae.decoder(z))
        if not info.is_discrete:
            return mean
        return torch.atanh(info.to_signed_interval(mean).clamp(-1 + 1e-6, 1 - 1e-6))
