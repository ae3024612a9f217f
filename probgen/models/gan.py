r"""The generative adversarial network as an implicit Pyro model.

.. math::

    z_n \sim p(z), \qquad x_n = G_\theta(z_n)
    \quad\text{or, with observation noise,}\quad
    x_n \mid z_n \sim p_\sigma(x \mid G_\theta(z_n)).

Without ``obs_noise`` the site ``"x"`` is a point mass at :math:`G(z)`: the model has no
density and is trained by the adversarial objective
(:class:`~probgen.infer.adversarial.Adversarial`), which reads the samples at ``"x"`` from
the model's trace and plays them against ``gan.discriminator``. With ``obs_noise`` the same
program is a decoder model with a defined likelihood, which annealed importance sampling
estimates (``pg.log_likelihood(gan, x, method="ais")``); :func:`probgen.infer.select_obs_noise`
picks the noise on validation data, as Wu et al. (2017) do for a Gaussian.

The observation model follows the data's support (``data.info``), so that the likelihood
is always in the data's own space and compares with every other family:

- **real data**: :math:`\mathcal{N}(G(z), \sigma^2 I)`, a density (Wu et al., 2017);
- **binary data**: :math:`G(z) \in (0, 1)` and each pixel is
  :math:`\mathrm{Bernoulli}(\epsilon + (1 - 2\epsilon)\,G(z))`: the generator's output read
  as a probability, with a flip probability :math:`\epsilon` (``obs_noise``) that keeps every
  image possible;
- **K levels**: :math:`G(z) \in (0, K-1)` and each dimension is a logistic of scale
  :math:`s` (``obs_noise``, in levels) centred at :math:`G(z)` and discretized onto the
  levels (:class:`~probgen.distributions.DiscretizedLogistic`): a probability of the levels.

On binary and discrete data the generator's output :math:`g` passes through
:math:`G(z) = \frac{K-1}{2}(\tanh g + 1)`, and the discriminator sees the levels scaled to
:math:`[-1, 1]`, where the generator's own output is :math:`\tanh g`: the centred range of the
DCGAN recipe (Radford et al., 2016). (Squashing with a sigmoid into :math:`[0, 1]` instead
collapses the default GAN on optdigits within the quick budget: ``benchmarks/defaults.py``.)
The implicit model's samples (``sample``) are :math:`G(z)` rounded to the nearest level, the
limit of the observation model as its noise vanishes.

References:
    Goodfellow et al. (2014). Generative Adversarial Nets. NeurIPS.
    Radford, Metz, Chintala (2016). Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks. ICLR.
    Wu, Burda, Salakhutdinov, Grosse (2017). On the Quantitative Analysis of Decoder-Based
    Generative Models. ICLR.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from ..checks import layer_sizes, non_negative_number, positive_int, positive_number, sample_count
from ..distributions import DataInfo, DiscretizedLogistic
from ..nn import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator, packed_event_shape
from .base import DecoderModel, register_family
from .priors import resolve_prior

__all__ = ["GAN"]


class _OnSignedLevels(nn.Module):
    """Feeds the levels of discrete data, mapped to ``[-1, 1]``, to a network."""

    def __init__(self, net, info: DataInfo):
        super().__init__()
        self.net, self.info = net, info

    def forward(self, x):
        return self.net(self.info.to_signed_interval(x))


def _spectral_norm(module):
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.utils.parametrizations.spectral_norm(layer)
    return module


#: the adversarial losses a GAN names (the values of :class:`probgen.infer.AdversarialLoss`)
LOSSES = ("nonsaturating", "hinge", "wgan-gp")


@register_family("gan")
class GAN(DecoderModel):
    """A generator and a discriminator; ``model()`` is the generator's Pyro program.

    :param data: the data's description, ``data.info`` (a :class:`~probgen.DataInfo`), or
        an event shape alone, e.g. ``(2,)``, which means real-valued data. It decides the
        generator's output range and the observation model (module docstring).
    :param latent_dim: dimension of :math:`z`.
    :param generator: a module mapping latents ``(..., latent_dim)`` to data ``(...,) +
        event_shape`` (default: an MLP for vectors, a DCGAN generator for images); on
        binary and discrete data its output is squashed into the levels' range.
    :param discriminator: a module mapping data ``(n,) + event_shape`` to ``n`` real scores
        (default: an MLP for vectors, a DCGAN discriminator for images).
    :param loss: ``"nonsaturating"``, ``"hinge"`` or ``"wgan-gp"``: the adversarial loss of the
        default objective (:class:`probgen.infer.AdversarialLoss`; :func:`probgen.fit` refuses
        another name before any work).
    :param spectral_norm: spectrally normalize the discriminator's linear and conv layers.
    :param obs_noise: the observation noise, ``None`` for the implicit model: the standard
        deviation :math:`\\sigma` of the Gaussian (real data, data units), the logistic's
        scale :math:`s` in levels (discrete data), or the flip probability
        :math:`\\epsilon < 1/2` (binary data).
    :param prior: ``"normal"`` (default), ``"mixture"``, a Pyro distribution with event shape
        ``(latent_dim,)``, or a module/callable returning one.
    :param network: ``"mlp"`` or ``"dcgan"`` (default: ``"mlp"`` for vectors, ``"dcgan"``
        for images of height and width divisible by 4).
    :param discriminator_steps: discriminator updates per generator update in the default
        objective (default 5 for ``"wgan-gp"``, 1 otherwise).
    :param hidden: hidden sizes of the default MLPs.
    :param pack: how many points the discriminator scores together (PacGAN, Lin et al.
        2018; 1 = none). The default discriminator is built for packed inputs
        (:func:`probgen.nn.packed_event_shape`); a discriminator passed in
        must take them. Packing fights mode collapse; batches must hold a multiple of
        ``pack`` points.
    :param r1_weight: :math:`\\gamma` of the R1 penalty
        :math:`\\frac{\\gamma}{2}\\mathbb{E}\\lVert\\nabla_x D(x)\\rVert^2` on the data in the
        default objective (Mescheder et al. 2018; 0 = none). The default is part of the
        measured recipe (``benchmarks/defaults.py``).
    :param gp_weight: :math:`\\lambda` of the WGAN-GP gradient penalty in the default
        objective (``"wgan-gp"`` only; default 10, as Gulrajani et al. use for images; their
        2-D toy experiments use 0.1).

    Training: ``pg.fit(gan, data)`` uses :class:`~probgen.infer.Adversarial` with this
    loss, and the optimizer settings of :attr:`fit_defaults` unless the call sets its own;
    ``lr`` may be ``{"generator": ..., "discriminator": ...}``. Likelihood:
    ``pg.log_likelihood(gan, x, method="ais")`` once ``obs_noise`` is set.

    Example::

        >>> import probgen as pg
        >>> data = pg.datasets.load("ring8")
        >>> gan = pg.GAN(data.info, 2)
        >>> gan.sample(5).shape
        torch.Size([5, 2])
    """

    likelihood_methods = ("ais",)
    #: The recipe ``benchmarks/defaults.py`` measures: Adam with :math:`\\beta_1 = 0.5` (Radford
    #: et al., 2016; with PyTorch's 0.9 the default GAN collapses onto one mode of ring8), and
    #: the learning rate held, then decayed along a half cosine over the last quarter of the
    #: epochs (the generator settles onto the modes it covers).
    fit_defaults = {"optimizer_options": {"betas": (0.5, 0.999)}, "lr_schedule": "cosine:25%"}

    def __init__(
        self,
        data,
        latent_dim: int,
        *,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        loss: str = "nonsaturating",
        spectral_norm: bool = False,
        obs_noise: float | None = None,
        prior="normal",
        network: str | None = None,
        discriminator_steps: int | None = None,
        hidden: tuple[int, ...] = (256, 256, 256),
        pack: int = 1,
        r1_weight: float = 0.1,
        gp_weight: float = 10.0,
    ):
        info = DataInfo.of(data)
        event_shape = info.event_shape
        positive_int(latent_dim, "latent_dim")
        if network is None:
            network = "dcgan" if len(event_shape) in (2, 3) and all(s % 4 == 0 for s in event_shape[-2:]) else "mlp"
        if network not in ("mlp", "dcgan"):
            raise ValueError(f"network must be 'mlp' or 'dcgan', got {network!r}")
        if discriminator_steps is not None:
            positive_int(discriminator_steps, "discriminator_steps")
        positive_int(pack, "pack")
        non_negative_number(r1_weight, "r1_weight")
        non_negative_number(gp_weight, "gp_weight")
        super().__init__(data)
        self.latent_dim = latent_dim
        self.pack = pack
        self.r1_weight = float(r1_weight)
        self.gp_weight = float(gp_weight)
        if loss not in LOSSES:  # the games themselves live in probgen.infer.adversarial (AdversarialLoss)
            raise ValueError(f"unknown adversarial loss {loss!r}; expected one of {list(LOSSES)}")
        self.loss = loss
        self.discriminator_steps = discriminator_steps or (5 if loss == "wgan-gp" else 1)
        self._obs_noise = None
        rebuildable = generator is None and discriminator is None and isinstance(prior, str)

        hidden = layer_sizes(hidden, "hidden")
        if generator is None:
            generator = MLPGenerator(latent_dim, event_shape, hidden) if network == "mlp" else DCGANGenerator(latent_dim, event_shape)
        if discriminator is None:
            packed = packed_event_shape(event_shape, pack)
            discriminator = MLPDiscriminator(packed, hidden) if network == "mlp" else DCGANDiscriminator(packed)
            if info.is_discrete:
                discriminator = _OnSignedLevels(discriminator, info)
        if spectral_norm:
            discriminator = _spectral_norm(discriminator)
        self.generator = generator
        self.discriminator = discriminator
        self.prior = resolve_prior(prior, latent_dim)
        self.config = None
        if rebuildable:
            self.config = {
                "family": "gan", "data": self.data_config(), "latent_dim": latent_dim, "loss": loss,
                "spectral_norm": bool(spectral_norm), "obs_noise": None, "prior": prior,
                "network": network, "discriminator_steps": self.discriminator_steps, "hidden": list(hidden),
                "pack": pack, "r1_weight": self.r1_weight, "gp_weight": self.gp_weight,
            }
        self.obs_noise = obs_noise

    # -- observation noise: turns the implicit model into a decoder model -----------------

    @property
    def obs_noise(self) -> float | None:
        """The observation noise (:math:`\\sigma`, :math:`s` or :math:`\\epsilon` by support),
        or ``None`` (implicit model)."""
        return self._obs_noise

    @obs_noise.setter
    def obs_noise(self, value):
        if value is not None:
            value = positive_number(value, "obs_noise")
            if self.info.support == "binary" and value >= 0.5:
                raise ValueError(f"on binary data obs_noise is a flip probability, below 0.5; got {value!r}")
        self._obs_noise = value
        if self.config is not None:
            self.config["obs_noise"] = value

    def obs_noise_candidates(self, valid: torch.Tensor) -> list[float]:
        """Six values of the observation noise to choose from on validation data, evenly
        spaced in log scale: 1% to 50% of the data's standard deviation (real data), 0.5%
        to 50% of the range of the levels (discrete data), flip probabilities 0.001 to 0.3
        (binary data)."""
        info = self.info
        if info.support == "binary":
            low, high = 1e-3, 0.3
        elif info.support == "discrete":
            low, high = 0.005 * (info.num_levels - 1), 0.5 * (info.num_levels - 1)
        else:
            scale = valid.float().std().item()
            low, high = 0.01 * scale, 0.5 * scale
        return torch.logspace(math.log10(low), math.log10(high), 6, dtype=torch.float64).tolist()

    # -- the protocol ---------------------------------------------------------------------

    @property
    def default_objective(self) -> str:
        """The adversarial objective by name, ``"loss:k"`` with ``k`` discriminator steps
        (:class:`probgen.infer.Adversarial`, which reads ``pack``, ``r1_weight`` and
        ``gp_weight`` from this model)."""
        return f"{self.loss}:{self.discriminator_steps}"

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`G(z)` in the data's space: squashed into ``(0, K-1)`` for binary and discrete data."""
        out = self.generator(z)
        if self.info.is_discrete:
            out = (torch.tanh(out) + 1) * ((self.info.num_levels - 1) / 2)
        return out

    def observation(self, z: torch.Tensor) -> dist.TorchDistribution:
        """:math:`p(x \\mid z)` around :math:`G(z)` on the data's support (module docstring);
        needs ``obs_noise``."""
        if self.obs_noise is None:
            raise ValueError(
                "this GAN has no obs_noise, so its likelihood is undefined (x = G(z) is a point mass); "
                "set gan.obs_noise, or choose it on validation data with pg.infer.select_obs_noise"
            )
        info, centre, event_dims = self.info, self.generate(z), len(self.event_shape)
        if info.support == "binary":
            probs = self.obs_noise + (1 - 2 * self.obs_noise) * centre
            return dist.Bernoulli(probs=probs).to_event(event_dims)
        if info.support == "discrete":
            half = (info.num_levels - 1) / 2
            loc = centre / half - 1
            log_scale = torch.full_like(loc, math.log(self.obs_noise / half))
            return DiscretizedLogistic(loc, log_scale, info.num_levels).to_event(event_dims)
        return dist.Normal(centre, self.obs_noise).to_event(event_dims)

    @pyro_method
    def model(self, x: torch.Tensor | None = None, *, num_data: int | None = None):
        """The generator's program: ``z ~ prior``, ``x = G(z)`` (a point mass) or, with
        ``obs_noise``, ``x ~ p(x | G(z))``, under plate ``"data"``."""
        n = len(x) if x is not None else (num_data or 1)
        prior = self.prior_distribution()
        with pyro.plate("data", n, dim=-1):
            z = pyro.sample("z", prior)
            if self.obs_noise is None:
                fn = dist.Delta(self.generate(z), event_dim=len(self.event_shape))
            else:
                fn = self.observation(z)
            return pyro.sample("x", fn, obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor | None = None, *, num_data: int | None = None):
        """Empty: adversarial training needs no posterior, and AIS builds its own."""

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        """``n`` draws of :math:`x` on the data's support: from the observation model with
        ``obs_noise``, else :math:`G(z)` (rounded to the nearest level on binary and discrete
        data). With ``mean=True``, :math:`G(z)` itself (what sample grids show)."""
        sample_count(n, self.info.num_dims)
        z = self.prior_distribution().sample((n,))
        if self.obs_noise is not None and not mean:
            return self.observation(z).sample()
        x = self.generate(z)
        if self.info.is_discrete and not mean:
            x = torch.round(x)
        return x

    def extra_repr(self) -> str:
        packed = f", pack={self.pack}" if self.pack > 1 else ""
        return (f"info={self.info}, latent_dim={self.latent_dim}, loss={self.loss!r}, "
                f"obs_noise={self.obs_noise}{packed}")
