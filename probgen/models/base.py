"""The protocol every probgen model keeps, and the importance weights all families share.

A model is a :class:`pyro.nn.PyroModule` built from the data's description first (a
:class:`~probgen.DataInfo`; an event shape alone means real-valued data), with

- ``model(x=None)``: the generative program; the data site is ``"x"`` under the plate
  ``"data"`` (dim -1); with ``x=None`` it samples;
- ``guide(x)``: the amortized variational program (empty for a flow);
- ``sample(n)``: ``n`` draws in the data's space;
- ``log_weights(x, num_samples)``: a ``(num_samples, num_data)`` tensor of log importance
  weights :math:`\\log p(x, z) - \\log q(z \\mid x)` with :math:`z \\sim q`, from which
  :func:`probgen.log_likelihood` forms the ELBO, the IWAE bound or the exact value;
- ``validate(x)``: raises a clear error on data the model cannot score (wrong shape, not
  finite, off the support of ``info``) before any work starts;
- ``info``: the :class:`~probgen.DataInfo` of the data it scores, saved in its ``config``;
- class attributes ``family``, ``likelihood_methods`` (the estimators that are valid for
  it, best first), ``default_objective`` (the name of the objective :func:`probgen.fit`
  uses when none is given) and ``fit_defaults`` (options of :func:`probgen.fit` that this
  family needs unless the caller sets them, such as a GAN's Adam betas).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import weakref

import pyro
import pyro.infer
import pyro.poutine as poutine
import torch
from pyro.nn import PyroModule, pyro_method
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import am_i_wrapped, effectful
from torch.distributions import constraints

from ..distributions import DataInfo, Likelihood, integer_levels

__all__ = ["GenerativeModel", "DifferentiableELBO", "announce_parameters", "param_sites_unread", "trace_log_weights", "FAMILIES", "register_family", "build_model", "upgrade_config", "DecoderModel"]

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
    return FAMILIES[family](**config)


def upgrade_config(config: dict) -> dict:
    """A config written before models took the data's description (``"event_shape"`` and
    per-family support options instead of ``"data"``), rewritten in today's form; a
    current config is returned as it is."""
    config = dict(config)
    if "data" in config or "event_shape" not in config:
        return config
    shape = list(config.pop("event_shape"))
    family = config.get("family")
    if family == "flow":
        support, levels = config.pop("support", "real"), config.pop("num_levels", None)
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


def trace_log_weights(model_fn, guide_fn, num_samples: int, *args, **kwargs) -> torch.Tensor:
    """Log importance weights ``log p(x, z) - log q(z | x)``, shape ``(num_samples, num_data)``.

    The guide and the replayed model run once, vectorized over an outer plate of
    ``num_samples`` particles (dim -2), so no Python loop runs per particle or per data
    point. Every sample site's log-density is kept per data point (the plate ``"data"``
    at dim -1), which is what a per-data-point likelihood needs.
    """
    with pyro.plate("_particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide_fn).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model_fn, trace=guide_trace)).get_trace(*args, **kwargs)
    log_w = 0.0
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()  # applies each site's scale and mask
        for site in trace.nodes.values():
            if site["type"] == "sample":
                log_w = log_w + sign * site["log_prob"]
    if not isinstance(log_w, torch.Tensor) or log_w.dim() != 2 or log_w.shape[0] != num_samples:
        raise ValueError(
            "expected the model's sample sites to be batched as (particles, data) under plate "
            f"'data' at dim -1; got log-weights of shape {getattr(log_w, 'shape', ())}"
        )
    return log_w


class DifferentiableELBO(pyro.infer.ELBO):
    """A Pyro ELBO defined by its ``differentiable_loss`` alone.

    Subclasses implement ``differentiable_loss(model, guide, *args)``; this base derives
    ``loss`` and ``loss_and_grads`` from it, so the objective works both in
    :func:`probgen.fit` and in :class:`pyro.infer.SVI`.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        raise NotImplementedError

    def _get_trace(self, model, guide, args, kwargs):
        # pyro.infer.ELBO's abstract hook: one guide trace and the model replayed on it
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        return model_trace, guide_trace

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


class _ParamSitesForSVI(Messenger):
    """Make the ``param`` sites of plain ``nn.Module`` parameters usable by ``pyro.infer.SVI``.

    Under ``module_local_params`` a PyroModule announces the parameters of its plain
    submodules with ``param`` statements whose value is the bare ``nn.Parameter``, while
    SVI asks every param site's value for ``.unconstrained()``. This handler gives such a
    site a view of the parameter that answers it, leaving the parameter itself untouched.
    """

    def _process_message(self, msg):
        if msg["type"] == "param" and msg["value"] is None and len(msg["args"]) > 1:
            param = msg["args"][1]
            if isinstance(param, torch.nn.Parameter) and not hasattr(param, "unconstrained"):
                alias = param.view_as(param)
                alias.unconstrained = weakref.ref(param)
                msg["value"] = alias
                msg["done"] = True


def announce_parameters(module: torch.nn.Module) -> None:
    """Emit one ``param`` statement per parameter of ``module``, for Pyro handlers.

    Objectives that compute their loss without running ``model``/``guide`` call this so
    that :class:`pyro.infer.SVI` still finds the parameters it should step. Outside any
    Pyro handler (as in :func:`probgen.fit`) it returns at once.
    """
    if not am_i_wrapped():
        return
    with _ParamSitesForSVI():
        for name, param in module.named_parameters():
            effectful(type="param")(lambda *_, value=param, **__: value)(
                name, param, constraint=constraints.real, name=name
            )


_PARAM_SITES_UNREAD = contextvars.ContextVar("probgen_param_sites_unread", default=False)
_PYRO_METHOD_CODE = pyro_method(lambda self: None).__code__


def _uses_pyro_attributes(model: torch.nn.Module) -> bool:
    return any(
        isinstance(m, PyroModule) and (m._pyro_params or m._pyro_samples) for m in model.modules()
    )


@contextlib.contextmanager
def param_sites_unread(model: torch.nn.Module):
    """Run ``model.model``/``model.guide`` without Pyro's module context inside this block.

    :func:`probgen.fit` and the likelihood estimators step and read module parameters
    directly and never read ``param`` sites, while announcing every weight on every call
    costs about as much as a small network's forward pass. Models holding ``PyroParam``
    or ``PyroSample`` attributes need the context to work at all; for them nothing changes.
    """
    if _uses_pyro_attributes(model):
        yield
        return
    token = _PARAM_SITES_UNREAD.set(True)
    try:
        yield
    finally:
        _PARAM_SITES_UNREAD.reset(token)


def _announce_params_for_svi(method):
    # the body without pyro_method's module context, for param_sites_unread
    bare = method.__wrapped__ if getattr(method, "__code__", None) is _PYRO_METHOD_CODE else method

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if _PARAM_SITES_UNREAD.get():
            return bare(self, *args, **kwargs)
        with _ParamSitesForSVI():
            return method(self, *args, **kwargs)

    return wrapper


class GenerativeModel(PyroModule):
    """Base class of probgen's models. See the module docstring for the protocol."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("model", "guide"):
            if name in cls.__dict__:
                setattr(cls, name, _announce_params_for_svi(cls.__dict__[name]))

    family = "model"
    likelihood_methods: tuple[str, ...] = ("iwae", "elbo")
    default_objective = "elbo"
    fit_defaults: dict = {}

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
        try:
            info.validate(x, what, owner=f"this {name}")
        except ValueError as error:
            if info.is_discrete and "off that support" in str(error):
                raise ValueError(f"{error}; {self._fix()}") from None
            raise
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

    def log_weights(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        return trace_log_weights(self.model, self.guide, num_samples, x)

    def extra_repr(self) -> str:
        return f"info={self.info}"


class DecoderModel(GenerativeModel):
    """A model with a prior over latents and an observation model given them, the part of the
    protocol that annealed importance sampling reads (:mod:`probgen.infer.ais`):

    - ``prior_distribution()``: :math:`p(z)` over ``latent_dim``-vectors, from the module
      ``self.prior``;
    - ``observation(z)``: :math:`p(x \\mid z)` over one data point per latent, batched over the
      leading dimensions of ``z``.
    """

    def prior_distribution(self):
        """The prior :math:`p(z)` over ``latent_dim``-vectors."""
        return self.prior()

    def observation(self, z: torch.Tensor):
        raise NotImplementedError
