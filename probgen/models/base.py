r"""The protocol every probgen model keeps, written once: :class:`GenerativeModel`.

A model is a :class:`pyro.nn.PyroModule` built from the data's description first (a
:class:`~probgen.DataInfo`; an event shape alone means real-valued data). Everything outside
``probgen.models`` (the training loop, the estimators, the diagnostics, the command line)
uses a model through these members only, with no branch on its family:

``info``
    The :class:`~probgen.DataInfo` of the data it scores, saved in its ``config``.
``model(x=None, *, num_data=None, ...)``
    The generative program; the data site is ``"x"`` under the plate ``"data"`` (dim -1);
    with ``x=None`` it samples ``num_data`` points.
``guide(x, ...)``
    The amortized variational program (empty for a flow on real data; the fixed forward
    process of a diffusion model; none needed by a GAN). Importance weights
    :math:`\log p(x, z) - \log q(z \mid x)` come from tracing the two
    (:func:`probgen.infer.weights.log_weights`).
``elbo_terms(x, num_samples)``
    An unbiased estimate of the ELBO split into named per-data-point terms, for a family
    that has one cheaper than its traces (diffusion) or one that says more (a hierarchical
    VAE's KL per layer); ``None`` otherwise.
``sample(n, *, mean=False, ...)``
    ``n`` draws in the data's space; with ``mean=True`` the observation model's mean given
    the latents where the family has one (what sample grids show). Further keyword options
    are named in ``sample_options``.
``validate(x, what)``
    A clear error on data the model cannot score (wrong shape, not finite, off the support
    of ``info``), raised before any work starts.
``without_param_sites()`` and ``announce_parameters()``
    How the loop runs the programs without the ``param`` statements only
    :class:`pyro.infer.SVI` reads, and how an objective that does not run them lets SVI see
    the parameters (:mod:`probgen.models.pyro_params`).
class attributes
    ``family`` (the name a checkpoint's config rebuilds it by), ``likelihood_methods``
    (the estimators valid for it, best first; a tuple, which a family may compute per
    instance), ``default_objective`` (the name of the objective :func:`probgen.fit` uses
    when none is given, one of ``probgen.infer.OBJECTIVES``), ``fit_defaults`` (options of
    :func:`probgen.fit` this family needs unless the caller sets them, such as a GAN's Adam
    betas) and ``sample_options``.

:class:`DecoderModel` adds what annealed importance sampling reads: ``prior_distribution()``
and ``observation(z)``.
"""

from __future__ import annotations

import inspect

import math

import torch
from pyro.nn import PyroModule

from ..checks import sample_count
from ..distributions import DataInfo, Likelihood, integer_levels
from .pyro_params import announce_parameters, announce_params_for_svi, param_sites_unread

__all__ = ["GenerativeModel", "DecoderModel", "FAMILIES", "register_family", "build_model", "upgrade_config"]

FAMILIES: dict[str, type] = {}


def register_family(name: str):
    """Class decorator: make a model family rebuildable from its ``config``."""

    def decorate(cls):
        cls.family = name
        FAMILIES[name] = cls
        return cls

    return decorate


def build_model(config: dict) -> "GenerativeModel":
    """Rebuild a model from the ``config`` dict a checkpoint holds."""
    if not isinstance(config, dict):
        raise ValueError(f"a model config must be a dict, got {type(config).__name__}")
    config = upgrade_config(config)
    family = config.pop("family", None)
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")
    accepted = inspect.signature(FAMILIES[family]).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())  # checked by the family
    unknown = [] if takes_any else sorted(str(key) for key in config if key not in accepted)
    if unknown:
        raise ValueError(f"a {family} config has unknown keys {unknown}; a {family} takes {sorted(accepted)}")
    return FAMILIES[family](**config)


def upgrade_config(config: dict) -> dict:
    """A config written before models took the data's description (``"event_shape"`` and
    per-family support options instead of ``"data"``), or a hierarchical VAE's written before
    it had a ``"merge"`` (whose top-down guide had the ladder merge), rewritten in today's
    form; a current config is returned as it is."""
    config = dict(config)
    if config.get("family") == "hvae" and "merge" not in config:
        config["merge"] = "precision"  # written before merge existed: the top-down guide had the ladder merge only
    if config.get("family") == "hvae" and "encoder_noise" not in config:
        config["encoder_noise"] = 0.0  # written before the option existed: the encoder read the data as they are
    if config.get("family") == "hvae" and "generative_dropout" not in config:
        config["generative_dropout"] = 0.0  # written before the option existed: no dropout
    if "data" in config or "event_shape" not in config:
        return config
    shape = list(config.pop("event_shape"))
    family = config.get("family")
    if family == "flow":
        support, levels = config.pop("support", "real"), config.pop("num_levels", None)
        if "linear" in config:  # the builders' mixing option had this name
            config["mixing"] = config.pop("linear")
        config["data"] = shape if support == "real" else DataInfo(tuple(shape), support, levels).to_config()
    elif family == "gan":
        levels = config.pop("num_levels", None)
        config["data"] = shape if levels is None else DataInfo(
            tuple(shape), "binary" if levels == 2 else "discrete", levels).to_config()
        if levels is not None:
            # its obs_noise was a Gaussian's sigma on the levels; the observation model of
            # discrete data is now over the levels, with noise of another meaning: choose it anew
            config["obs_noise"] = None
    else:  # vae and diffusion: an explicit likelihood name (or real data) described the support
        config["data"] = shape
    return config


class GenerativeModel(PyroModule):
    """Base class of probgen's models. See the module docstring for the protocol."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("model", "guide"):
            if name in cls.__dict__:
                setattr(cls, name, announce_params_for_svi(cls.__dict__[name]))

    family = "model"
    likelihood_methods: tuple[str, ...] = ("iwae", "elbo")
    default_objective: str = "elbo"
    fit_defaults: dict = {}
    sample_options: tuple[str, ...] = ()

    def __init__(self, data, likelihood: Likelihood | None = None, *, support_stated: bool = False):
        """:param data: a :class:`~probgen.DataInfo`, its config dict, or an event shape
        alone (real-valued data).
        :param likelihood: the observation likelihood, whose support is the model's.
        :param support_stated: the caller stated the support otherwise (an explicit
            likelihood), so an event shape alone is not an assumption."""
        super().__init__()
        self.data_info = DataInfo.of(data)
        self.event_shape = self.data_info.event_shape
        self.likelihood = likelihood
        self.config: dict | None = None
        # data given as an event shape alone are assumed real; fitting such a model to data
        # that are all integer levels is refused (validate), since it is most likely a slip
        self.support_assumed = not isinstance(data, (DataInfo, dict)) and not support_stated
        self._data_spec = list(self.event_shape) if not isinstance(data, (DataInfo, dict)) else self.data_info.to_config()

    @property
    def num_dims(self) -> int:
        return math.prod(self.event_shape)

    @property
    def info(self) -> DataInfo:
        """The data this model scores: the data's description, unless its likelihood states
        another support (an explicit ``likelihood=``), then the likelihood's."""
        if isinstance(self.likelihood, Likelihood):
            own = self.likelihood.info
            if (own.support, own.num_levels) != (self.data_info.support, self.data_info.num_levels):
                return own
        return self.data_info

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype of its weights, in which it takes data: the loop and the
        estimators cast float64 (NumPy's) or float16 data to it."""
        for tensor in (*self.parameters(), *self.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def _fix(self) -> str:
        name = type(self).__name__
        return f"build the model from the data's description, e.g. pg.{name}(data.info, ...)"

    def validate(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise a clear error unless ``x`` is a batch of data this model can score: the
        right shape, finite, and on the support of :attr:`info`. A model built from an event
        shape alone (real-valued data) refuses data that are all integer levels: that it
        should fit a density to them has to be said explicitly."""
        info, name = self.info, type(self).__name__
        info.validate(x, what, owner=f"this {name}", fix=self._fix())
        largest = torch.finfo(self.dtype).max
        if torch.finfo(x.dtype).max > largest and x.abs().max().item() > largest:  # float64 into float32, say
            raise ValueError(f"{what} holds values beyond the range of this {name}'s {self.dtype} (largest {largest:.4g}): "
                             f"as {self.dtype} they would be infinite; rescale the data")
        if self.support_assumed and info.support == "real":
            levels = integer_levels(x)
            if levels is not None:
                described = "'binary'" if levels == 2 else f"'discrete', {levels}"
                raise ValueError(
                    f"this {name} was built from an event shape alone, so it models {info.describe_support()}, "
                    f"but {what} holds only integer levels 0..{int(x.max().item())}: a density on them is not a "
                    f"probability of the levels. To model the levels, {self._fix()} (or "
                    f"pg.DataInfo({info.event_shape}, {described})); to fit a density to them on purpose, "
                    f"say so with pg.DataInfo({info.event_shape}, 'real')"
                )

    def data_config(self):
        """The data's description as saved in ``config``: the event shape alone, or the
        :class:`~probgen.DataInfo` as a dict."""
        return self._data_spec

    def elbo_terms(self, x: torch.Tensor, num_samples: int = 1, *, validate: bool = True) -> dict[str, torch.Tensor] | None:
        """Named per-data-point terms that sum to an unbiased estimate of the ELBO, for a
        family that computes them more cheaply than its traces, or that reports its bound
        part by part; ``None`` here.
        ``validate=False`` skips the checks of ``x`` (the loop validated the data up front)."""
        return None

    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def without_param_sites(self):
        """A context in which ``model()`` and ``guide()`` skip the ``param`` statements that
        only :class:`pyro.infer.SVI` reads (see :func:`~probgen.models.pyro_params.param_sites_unread`)."""
        return param_sites_unread(self)

    def announce_parameters(self) -> None:
        """Emit a ``param`` statement per parameter under Pyro handlers (an objective that
        computes its loss without running the programs calls it for SVI's sake)."""
        announce_parameters(self)

    def extra_repr(self) -> str:
        return f"info={self.info}"


class DecoderModel(GenerativeModel):
    """A model with a prior over latents and an observation model given them, the part of the
    protocol that annealed importance sampling reads (:mod:`probgen.infer.ais`):

    - ``prior_distribution()``: :math:`p(z)` over ``latent_dim``-vectors, from the module
      ``self.prior`` (a hierarchy's joint prior over all its layers as one vector);
    - ``observation(z)``: :math:`p(x \\mid z)` over one data point per latent, batched over the
      leading dimensions of ``z``.

    A family with a decoder and a ``likelihood`` gives ``decoder_output(z)`` and inherits
    ``observation`` and ``sample`` built on it (the VAE, the hierarchical VAE); a GAN, whose
    observation model follows its noise, writes its own.
    """

    def prior_distribution(self):
        """The prior :math:`p(z)` over ``latent_dim``-vectors."""
        return self.prior()

    def observation(self, z: torch.Tensor):
        """:math:`p(x \\mid z)`: the likelihood of the decoder's output (:meth:`decoder_output`)."""
        return self.likelihood(self.decoder_output(z))

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters given latents ``z`` (what :meth:`observation` reads)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False) -> torch.Tensor:
        """``n`` draws of :math:`x` from the prior and the observation model; with
        ``mean=True`` the likelihood's mean given each draw of the latents instead (what
        sample grids show)."""
        sample_count(n, self.info.num_dims)
        output = self.decoder_output(self.prior_distribution().sample((n,)))
        if not mean:
            return self.likelihood(output).sample()
        # a probgen likelihood has the mean of its observation model; a user's callable, its distribution's
        return self.likelihood.mean(output) if isinstance(self.likelihood, Likelihood) else self.likelihood(output).mean
