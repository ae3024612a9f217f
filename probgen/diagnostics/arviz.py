r"""Export a fitted model's posterior, importance weights and log-likelihoods to ArviZ.

:func:`to_inference_data` returns an :class:`arviz.InferenceData` with the groups

- ``posterior``: latent draws for every data point, from the guide :math:`q(z \mid x_n)`
  (or, with ``resample=True``, importance-resampled towards :math:`p(z \mid x_n)` with the
  Pareto-smoothed weights); dims ``(chain, draw, datum, latent_dim)`` for a vector latent,
  ``(chain, draw, datum, <site>_dim_0, ...)`` otherwise. A model with many latent sites (a
  diffusion chain) keeps ``max_sites`` evenly spaced ones, or the ``sites`` asked for;
- ``log_likelihood``: ``"x"``, the pointwise estimate of :math:`\log p(x_n)` by the model's
  best method (exact, IWAE, AIS, ...), dims ``(chain, draw, datum)`` with one chain and draw;
- ``sample_stats``: ``"log_weight"``, :math:`\log p(x_n, z_s) - \log q(z_s \mid x_n)` for the
  posterior's draws, dims ``(chain, draw, datum)``; ``"pareto_k"``, each data point's PSIS
  :math:`\hat k`, dims ``(datum,)``; ``"psis_log_likelihood"``, the PSIS estimate, ``(datum,)``;
- ``observed_data``: ``"x"``, dims ``(datum, x_dim_0, ...)``.

The draws and weights are those of ``model.log_weights``: a model with an empty guide (a
GAN with observation noise) draws :math:`z` from the prior, so its weights are
:math:`p(x_n \mid z_s)` and its :math:`\hat k` diagnoses prior importance sampling, while
its ``log_likelihood`` group holds the AIS estimate. A flow on real data has no latent
variable: no ``posterior`` group, constant weights, :math:`\hat k = -\infty`.

It saves with ``idata.to_netcdf(path)`` and loads with :func:`load_inference_data` (or
``arviz.from_netcdf``). This is the only probgen module that imports ArviZ, so a move to
ArviZ 1.x (built on ``xarray.DataTree``) changes this file alone.

References:
    Kumar, Carroll, Hartikainen, Martin (2019). ArviZ a unified library for exploratory
    analysis of Bayesian models in Python. JOSS 4(33).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from ..checks import integer, positive_int
from ..infer import LikelihoodEstimate, importance_log_weights, log_likelihood as estimate_log_likelihood, seed_everything
from .plots import save_figure
from .psis import psis_result

with warnings.catch_warnings():
    # ArviZ 0.2x announces its 1.x refactor on import; say it once in the docs, not every run
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az
    import xarray as xr

__all__ = ["to_inference_data", "load_inference_data", "plot_khat"]


class _LatentRecorder(Messenger):
    """Keeps the values of the latent sample sites that ``log_weights`` draws, per call.

    In :func:`~probgen.infer.trace_log_weights` the guide draws each latent and the
    replayed model receives the very same tensor, which is therefore recorded once.

    :param keep: the site names to keep (default: all).
    """

    def __init__(self, keep=None):
        super().__init__()
        self.keep = None if keep is None else set(keep)
        self.values: dict[str, list[torch.Tensor]] = {}
        self._last: dict[str, torch.Tensor] = {}

    def _postprocess_message(self, msg) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or site_is_subsample(msg):
            return
        name, value = msg["name"], msg["value"]
        if name.startswith("_") or (self.keep is not None and name not in self.keep) or self._last.get(name) is value:
            return
        self._last[name] = value
        self.values.setdefault(name, []).append(value.detach().cpu())


def _choose_sites(names: list[str], sites, max_sites: int) -> list[str]:
    if sites is not None:
        missing = [name for name in sites if name not in names]
        if missing:
            raise ValueError(f"sites {missing} are not latent sites of this model; it has {names}")
        return list(sites)
    if len(names) <= max_sites:
        return names
    chosen = np.linspace(0, len(names) - 1, max_sites).round().astype(int)
    return [names[i] for i in sorted(set(chosen.tolist()))]


def _site_dims(name: str, event_shape: tuple, taken: dict[str, int]) -> list[str]:
    if len(event_shape) == 1 and taken.get("latent_dim", event_shape[0]) == event_shape[0]:
        taken["latent_dim"] = event_shape[0]
        return ["latent_dim"]
    return [f"{name}_dim_{i}" for i in range(len(event_shape))]


def to_inference_data(
    model,
    x: torch.Tensor,
    *,
    num_samples: int = 100,
    resample: bool = False,
    method: str = "auto",
    log_likelihood: LikelihoodEstimate | None = None,
    sites: list[str] | None = None,
    max_sites: int = 8,
    batch_size: int = 100,
    seed: int | None = 0,
    warn: bool = True,
) -> "az.InferenceData":
    r"""An :class:`arviz.InferenceData` of the model's posterior and likelihood on ``x``.

    :param model: a fitted probgen model.
    :param x: data points along dim 0.
    :param num_samples: posterior draws (importance samples) per data point, at least 25
        (the Pareto fit needs them).
    :param resample: draw the posterior by sampling-importance-resampling with the
        Pareto-smoothed weights, so the draws approximate :math:`p(z \mid x_n)` rather than
        the guide :math:`q(z \mid x_n)`; they are only as good as :math:`\hat k` says.
    :param method: the likelihood method for the ``log_likelihood`` group (``"auto"``: the
        model's best), computed with :func:`probgen.log_likelihood` and ``num_samples``.
    :param log_likelihood: a :class:`~probgen.infer.LikelihoodEstimate` on the same ``x`` to
        store instead of computing one.
    :param sites: the latent sites to keep; default: all, or ``max_sites`` evenly spaced
        ones when there are more (the levels of a diffusion chain).
    :param warn: warn about data points with :math:`\hat k > 0.7` (see :func:`probgen.psis_khat`).

    Example::

        >>> import probgen as pg
        >>> vae = pg.VAE(pg.datasets.load("optdigits").info, 4, likelihood="categorical")
        >>> x = pg.datasets.load("optdigits").test[:5]
        >>> idata = pg.to_inference_data(vae, x, num_samples=50, warn=False)
        >>> dict(idata.posterior["z"].sizes)
        {'chain': 1, 'draw': 50, 'datum': 5, 'latent_dim': 4}
    """
    integer(num_samples, "num_samples (the Pareto fit needs at least 25)", minimum=25)
    positive_int(batch_size, "batch_size")
    positive_int(max_sites, "max_sites")
    if log_likelihood is not None and len(log_likelihood.pointwise) != len(x):
        raise ValueError(f"log_likelihood holds {len(log_likelihood.pointwise)} data points, x holds {len(x)}")
    model.validate(x)
    if seed is not None:
        seed_everything(seed)
    weights, parts, chosen = [], {}, None
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        # the first batch names the latent sites; later ones keep only the chosen sites
        with _LatentRecorder(chosen) as recorder:
            weights.append(importance_log_weights(model, batch, num_samples, batch_size=len(batch), seed=None))
        if chosen is None:
            batched = [name for name, seen in recorder.values.items() if tuple(seen[0].shape[:2]) == (num_samples, len(batch))]
            chosen = _choose_sites(batched, sites, max_sites)
        for name in chosen:
            parts.setdefault(name, []).extend(recorder.values[name])
    log_weights = torch.cat(weights, 1)
    latents = {name: torch.cat(values, 1) for name, values in parts.items()}
    psis = psis_result(model, log_weights, warn=warn)
    if log_likelihood is None:
        log_likelihood = estimate_log_likelihood(model, x, method, num_samples, batch_size=batch_size, seed=seed)

    num_data = len(x)
    datum = np.arange(num_data)
    attrs = {
        "inference_library": "probgen",
        "family": str(getattr(model, "family", type(model).__name__)),
        "num_samples": num_samples,
        "resampled": int(resample),
    }
    if resample and latents:
        # sampling-importance-resampling, per data point, with the smoothed weights
        probabilities = torch.softmax(psis.smoothed_log_weights, 0).T  # (N, S)
        picks = torch.multinomial(probabilities, num_samples, replacement=True).T  # (S, N)
        latents = {
            name: torch.take_along_dim(value, picks.reshape(picks.shape + (1,) * (value.dim() - 2)), 0)
            for name, value in latents.items()
        }

    groups = {}
    if latents:
        variables, taken = {}, {}
        for name, value in latents.items():
            dims = ["chain", "draw", "datum"] + _site_dims(name, tuple(value.shape[2:]), taken)
            variables[name] = (dims, value.double().numpy()[None])
        groups["posterior"] = xr.Dataset(variables, coords={"datum": datum}, attrs=attrs)
    groups["log_likelihood"] = xr.Dataset(
        {"x": (["chain", "draw", "datum"], log_likelihood.pointwise.double().numpy()[None, None])},
        coords={"datum": datum},
        attrs={**attrs, "method": log_likelihood.method, "kind": log_likelihood.kind,
               "estimate_num_samples": log_likelihood.num_samples, "density": int(log_likelihood.density)},
    )
    groups["sample_stats"] = xr.Dataset(
        {
            "log_weight": (["chain", "draw", "datum"], log_weights.double().numpy()[None]),
            "pareto_k": (["datum"], psis.khat.numpy()),
            "psis_log_likelihood": (["datum"], psis.estimate.pointwise.numpy()),
        },
        coords={"datum": datum},
        attrs=attrs,
    )
    observed = x.detach().double().cpu().numpy()
    groups["observed_data"] = xr.Dataset(
        {"x": (["datum"] + [f"x_dim_{i}" for i in range(observed.ndim - 1)], observed)},
        coords={"datum": datum},
        attrs=attrs,
    )
    return az.InferenceData(**groups)


def load_inference_data(path: str | Path) -> "az.InferenceData":
    """Load an :class:`arviz.InferenceData` written by ``idata.to_netcdf(path)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no InferenceData file at {path}")
    return az.from_netcdf(path)


def plot_khat(idata: "az.InferenceData", path: str | Path, title: str = "") -> Path:
    """Save ArviZ's :math:`\\hat k` plot of ``idata.sample_stats.pareto_k`` as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    with warnings.catch_warnings():
        # ArviZ 0.2x prefers ELPDData to a plain array of k; the array is what we have per data point
        warnings.simplefilter("ignore", FutureWarning)
        az.plot_khat(idata.sample_stats["pareto_k"].values, ax=ax, show_hlines=True, threshold=0.7, show=False)
    ax.set_xlabel("data point")
    ax.set_title(title or "Pareto k of the importance weights, per data point")
    return save_figure(fig, path)
