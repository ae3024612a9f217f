"""How probgen models meet Pyro's ``param`` statements.

Under ``module_local_params`` a PyroModule announces its parameters with ``param``
statements as ``model()`` and ``guide()`` run, which :class:`pyro.infer.SVI` reads to find
what to step. Two things here make that both correct and cheap:

- :class:`ParamSitesForSVI` gives the ``param`` site of a plain ``nn.Module`` parameter a view
  that answers SVI's ``.unconstrained()``, so SVI works on every probgen model;
- :func:`param_sites_unread` runs ``model()``/``guide()`` without those statements where no
  one reads them (:func:`probgen.fit` and the estimators step and read the parameters
  directly): announcing every weight on every call costs about as much as a small network's
  forward pass. :class:`~probgen.models.GenerativeModel` offers it as
  ``model.without_param_sites()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import weakref

import torch
from pyro.nn import PyroModule, pyro_method
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import am_i_wrapped, effectful
from torch.distributions import constraints

__all__ = ["ParamSitesForSVI", "announce_parameters", "param_sites_unread", "announce_params_for_svi"]


class ParamSitesForSVI(Messenger):
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
    with ParamSitesForSVI():
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


def announce_params_for_svi(method):
    """Wrap ``model``/``guide``: announce parameters for SVI, or skip it inside :func:`param_sites_unread`."""
    # the body without pyro_method's module context, for param_sites_unread
    bare = method.__wrapped__ if getattr(method, "__code__", None) is _PYRO_METHOD_CODE else method

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if _PARAM_SITES_UNREAD.get():
            return bare(self, *args, **kwargs)
        with ParamSitesForSVI():
            return method(self, *args, **kwargs)

    return wrapper
