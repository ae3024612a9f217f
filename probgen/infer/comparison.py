r"""Compare fitted models on the same data points: log-likelihoods with paired standard errors.

Each model is scored with its best estimator (exact for flows, IWAE for VAEs, the ELBO for
diffusion, AIS for decoder models) on the same data points :math:`x_1..x_N`. For models
:math:`a` and :math:`b` the difference of their mean log-likelihoods is the mean of the
per-data-point differences :math:`d_n = \log p_a(x_n) - \log p_b(x_n)`, and its standard
error is

.. math::

    \operatorname{se}(\bar d) = \sqrt{\tfrac{1}{N(N-1)} \textstyle\sum_n (d_n - \bar d)^2},

which is usually far smaller than either model's own standard error: both models find the
same data points easy or hard, and pairing cancels that shared variation. This is how
``arviz.compare`` reports differences of the expected log pointwise predictive density
(there as sums over data points, here as means per data point).

A *bound* (ELBO, IWAE) lies below the model's true log-likelihood, so a difference between a
bound and an exact value is itself only a bound on the true difference; an *estimate* (AIS)
has its own bias at a finite number of samples. The table says which each row is.

References:
    Vehtari, Gelman, Gabry (2017). Practical Bayesian model evaluation using leave-one-out
    cross-validation and WAIC. Statistics and Computing 27.
    Theis, van den Oord, Bethge (2016). A note on the evaluation of generative models. ICLR.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Mapping

import torch

from ..checks import options as check_options
from .likelihood import LikelihoodEstimate, log_likelihood, resolve_method

__all__ = ["Comparison", "ComparisonRow", "compare"]

_COLUMNS = ("model", "method", "kind", "num_samples", "mean_nats", "stderr", "bits_per_dim", "diff", "diff_stderr", "error")


@dataclasses.dataclass
class ComparisonRow:
    """One model's line in a :class:`Comparison` (nats per data point; ``diff`` <= 0).

    :ivar diff: mean of :math:`\\log p_{\\text{model}}(x_n) - \\log p_{\\text{best}}(x_n)`.
    :ivar diff_stderr: standard error of that mean, from the per-data-point differences.
    :ivar error: why the model has no value, when it failed (``on_error="report"``).
    """

    model: str
    method: str
    kind: str
    num_samples: int
    mean_nats: float
    stderr: float
    bits_per_dim: float
    diff: float
    diff_stderr: float
    error: str = ""


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean of ``a - b`` and its standard error from the per-data-point differences."""
    d = a.double() - b.double()
    if len(d) < 2:
        return d.mean().item(), math.nan
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()


@dataclasses.dataclass
class Comparison:
    """The table :func:`compare` returns: one :class:`ComparisonRow` per model, best first.

    :ivar rows: the rows; failed models (no value) come last.
    :ivar estimates: model name -> its :class:`~probgen.infer.LikelihoodEstimate` (pointwise values).
    :ivar num_data: data points every model was scored on.
    """

    rows: list[ComparisonRow]
    estimates: dict[str, LikelihoodEstimate]
    num_data: int

    @property
    def best(self) -> str | None:
        """Name of the model with the highest mean log-likelihood (None if none was scored)."""
        return self.rows[0].model if self.rows and not self.rows[0].error else None

    def __getitem__(self, name: str) -> ComparisonRow:
        for row in self.rows:
            if row.model == name:
                return row
        raise KeyError(f"no model named {name!r}; the table has {[row.model for row in self.rows]}")

    def add_failure(self, name: str, message: str, method: str = "") -> None:
        """Add a row for a model that has no value (e.g. its training failed), with the reason."""
        self.rows.append(ComparisonRow(str(name), method, "", 0, math.nan, math.nan, math.nan, math.nan, math.nan, message))

    def to_dataframe(self):
        """The table as a :class:`pandas.DataFrame` indexed by model name."""
        import pandas as pd

        frame = pd.DataFrame([dataclasses.asdict(row) for row in self.rows], columns=list(_COLUMNS))
        return frame.set_index("model")

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        header = ["model", "log p(x) [nats]", "± se", "bits/dim", "kind", "method", "diff to best", "± se(diff)"]
        body = []
        for row in self.rows:
            if row.error:
                body.append([row.model, "failed", "", "", "", row.method, "", ""])
                continue
            k = f"{row.method} k={row.num_samples}" if row.method != "exact" else row.method
            diff = "0 (best)" if row.model == self.best else f"{row.diff:.3f}"
            diff_se = "" if row.model == self.best else f"{row.diff_stderr:.3f}"
            body.append([row.model, f"{row.mean_nats:.3f}", f"{row.stderr:.3f}", f"{row.bits_per_dim:.4f}",
                         row.kind, k, diff, diff_se])
        return header, body

    def notes(self) -> list[str]:
        """What the kinds in this table mean, for the kinds present."""
        kinds = {row.kind for row in self.rows if not row.error}
        lines = [f"{self.num_data} data points; paired differences use the same points for every model."]
        if "bound" in kinds:
            lines.append("bound: a lower bound on log p(x) (ELBO/IWAE); the true value is higher, "
                         "so a bound that trails another model may not be worse.")
        if "estimate" in kinds:
            lines.append("estimate: a stochastic estimate (e.g. AIS), consistent as its sample count grows, "
                         "biased low at a finite one.")
        lines += [f"failed: {row.model}: {row.error}" for row in self.rows if row.error]
        densities = {est.density for est in self.estimates.values()}
        if densities == {True}:
            lines.append("the data are real-valued: log p(x) is a log density, comparable between models on the same data.")
        if len(densities) > 1:
            lines.append("warning: the table mixes densities (real-valued models) with probabilities of "
                         "discrete values; those numbers are not on the same scale.")
        return lines

    def __str__(self):
        header, body = self._cells()
        widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
        lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
                 for line in [header] + body]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + [""] + self.notes())

    def to_markdown(self) -> str:
        """The table as GitHub markdown, with the notes below it."""
        header, body = self._cells()
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * len(header)) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in body]
        return "\n".join(lines + [""] + [f"- {note}" for note in self.notes()]) + "\n"

    def __repr__(self):
        return f"Comparison(best={self.best!r}, models={[row.model for row in self.rows]}, num_data={self.num_data})"


def _method_for(name: str, methods) -> str:
    if methods is None:
        return "auto"
    if isinstance(methods, str):
        return methods
    if isinstance(methods, Mapping):
        return methods.get(name, "auto")
    raise TypeError(f"methods must be None, a method name or a dict of model name -> method, got {type(methods).__name__}")


def compare(
    models: Mapping,
    x: torch.Tensor,
    *,
    methods: str | Mapping[str, str] | None = None,
    num_samples: int = 1000,
    batch_size: int = 100,
    seed: int | None = 0,
    estimator_options: Mapping[str, dict] | None = None,
    on_error: str = "raise",
    sharded: bool = False,
) -> Comparison:
    r"""Score several models on the same data points and rank them with paired standard errors.

    :param models: model name -> a fitted model, or a
        :class:`~probgen.infer.LikelihoodEstimate` already computed on ``x``.
    :param x: the data points every model is scored on (e.g. the test split).
    :param methods: ``None`` (each model's best), one method name for all, or a dict of
        model name -> method.
    :param num_samples: importance samples (or AIS chains) per data point.
    :param estimator_options: method name -> keyword options for that estimator, e.g.
        ``{"ais": {"num_steps": 100, "num_samples": 16}}`` (``num_samples`` there overrides
        the one above for that method: AIS chains cost far more than importance samples).
    :param on_error: ``"raise"``, or ``"report"``: a model whose scoring fails gets a row
        that says why (and a warning) instead of stopping the comparison.
    :param sharded: score the data sharded over the ranks of a distributed run (see
        :func:`probgen.log_likelihood`); call it on every rank.
    :returns: a :class:`Comparison`; ``str()`` prints the table, ``.to_dataframe()``,
        ``.to_markdown()`` give the rest; :func:`probgen.diagnostics.save_comparison` draws it.

    Example::

        >>> import probgen as pg
        >>> x = pg.datasets.load("optdigits").test[:20]
        >>> a = pg.VAE(pg.datasets.load("optdigits").info, 4, likelihood="categorical")
        >>> b = pg.VAE(pg.datasets.load("optdigits").info, 2, likelihood="categorical")
        >>> table = pg.compare({"a": a, "b": b}, x, num_samples=10)
        >>> table["a"].diff <= 0 and table.best in ("a", "b")
        True
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models must be a non-empty dict of name -> model, got {type(models).__name__}")
    if on_error not in ("raise", "report"):
        raise ValueError(f"on_error must be 'raise' or 'report', got {on_error!r}")
    if isinstance(methods, Mapping) and set(methods) - set(models):
        raise ValueError(f"methods names {sorted(set(methods) - set(models))}, which are not among the models "
                         f"compared {sorted(models)}")
    estimator_options = check_options(estimator_options, "estimator_options")
    for method, given in estimator_options.items():
        check_options(given, f"estimator_options[{method!r}]")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or len(x) < 1:
        raise ValueError(f"x must be a tensor of data points along dim 0, got {getattr(x, 'shape', type(x))}")

    estimates: dict[str, LikelihoodEstimate] = {}
    failed: list[tuple[str, str, str]] = []
    for name, model in models.items():
        method = _method_for(name, methods)
        try:
            if isinstance(model, LikelihoodEstimate):
                estimate = model
                if len(estimate.pointwise) != len(x):
                    raise ValueError(f"the estimate given for {name!r} holds {len(estimate.pointwise)} data points, x holds {len(x)}")
            else:
                chosen = resolve_method(model, method)
                options = dict((estimator_options or {}).get(chosen, {}))
                samples = options.pop("num_samples", num_samples)
                estimate = log_likelihood(model, x, chosen, samples, batch_size=batch_size, seed=seed, sharded=sharded,
                                          **options)
            if not torch.isfinite(estimate.pointwise).all():
                raise ValueError(f"{int((~torch.isfinite(estimate.pointwise)).sum())} pointwise values are not finite")
        except Exception as error:  # noqa: BLE001 -- reported in the table, as asked
            if on_error == "raise":
                raise
            message = f"{type(error).__name__}: {error}"
            warnings.warn(f"model {name!r} could not be scored and is left out of the ranking: {message}", RuntimeWarning, stacklevel=2)
            failed.append((name, message, method))
            continue
        estimates[str(name)] = estimate

    ranked = sorted(estimates, key=lambda name: estimates[name].mean, reverse=True)
    rows = []
    for name in ranked:
        est = estimates[name]
        diff, diff_stderr = paired_difference(est.pointwise, estimates[ranked[0]].pointwise)
        rows.append(ComparisonRow(name, est.method, est.kind, est.num_samples, est.mean, est.stderr,
                                  est.bits_per_dim, diff, diff_stderr))
    table = Comparison(rows, estimates, len(x))
    for name, message, method in failed:
        table.add_failure(name, message, method)
    return table
