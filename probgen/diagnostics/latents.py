r"""Active units: which latent dimensions carry information about the data, layer by layer.

A latent unit :math:`u` whose posterior does not move with the data, :math:`q(z_u \mid x)
\approx p(z_u)` for every :math:`x`, costs nothing in the ELBO's KL and tells nothing
about :math:`x`: it has *collapsed*. Burda et al. (2016) measure it by the spread of the
posterior mean over the data,

.. math:: A_u = \mathrm{Cov}_x\big(\mathbb{E}_{q(z \mid x)}[z_u]\big),

and call a unit active when :math:`A_u > 10^{-2}`; the split of units into active and
inactive is sharp in practice (their Fig. 3). :func:`active_units` computes :math:`A_u` for
every dimension of every latent sample site of a model's guide, so a hierarchical VAE gets
a count per layer (``"z1"``, ``"z2"``, ...), a VAE one for ``"z"``, with no branch on the
family.

The posterior mean of a site is averaged over ``num_samples`` draws of the guide: a site
drawn given other latents (a top-down layer given the one above, a bottom-up layer given
the one below) has a mean that depends on them, and :math:`\mathbb{E}_q[z_u]` integrates them
out. Where the guide's distribution has a closed-form mean (a Normal) the draws' means are
averaged, which is the lower-variance estimate of the same quantity; otherwise (a flow
posterior) the draws themselves.

References:
    Burda, Grosse, Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
    Sønderby, Raiko, Maaløe, Sønderby, Winther (2016). Ladder Variational Autoencoders. NeurIPS.
"""

from __future__ import annotations

import dataclasses

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ..checks import non_negative_number, positive_int
from ..infer import evaluating

__all__ = ["ACTIVITY_THRESHOLD", "ActiveUnits", "active_units"]

#: Burda et al.'s (2016) threshold on :math:`\mathrm{Cov}_x(\mathbb{E}_q[z_u])`
ACTIVITY_THRESHOLD = 0.01


@dataclasses.dataclass
class ActiveUnits:
    """The activity :math:`A_u` of every latent unit, per latent site of the guide.

    :ivar activity: site name -> :math:`A_u` per unit (the site's event flattened).
    :ivar threshold: a unit is active when its activity exceeds this.
    :ivar num_data: the data points the covariance is taken over.
    :ivar num_samples: guide draws per data point averaged into each posterior mean.
    """

    activity: dict[str, torch.Tensor]
    threshold: float
    num_data: int
    num_samples: int

    @property
    def counts(self) -> dict[str, int]:
        """Site name -> the number of its active units."""
        return {name: int((values > self.threshold).sum()) for name, values in self.activity.items()}

    @property
    def sizes(self) -> dict[str, int]:
        """Site name -> the number of its units."""
        return {name: values.numel() for name, values in self.activity.items()}

    @property
    def total(self) -> int:
        """Active units over all sites."""
        return sum(self.counts.values())

    def __str__(self):
        lines = [(f"active units (Cov_x E_q[z_u] > {self.threshold:g}; {self.num_data} data points, "
                  f"{self.num_samples} guide draws each):")]
        for name, values in self.activity.items():
            lines.append(f"  {name:>6}: {self.counts[name]:4d} of {values.numel():4d} active"
                         f"  (activity max {values.max().item():.3g}, median {values.median().item():.3g})")
        return "\n".join(lines)


def active_units(model, x: torch.Tensor, *, threshold: float = ACTIVITY_THRESHOLD, num_samples: int = 16,
                 batch_size: int = 100, seed: int | None = 0) -> ActiveUnits:
    """The activity :math:`\\mathrm{Cov}_x(\\mathbb{E}_q[z_u])` of every unit of every latent
    site of ``model``'s guide, over the data points ``x`` (module docstring).

    :param threshold: a unit is active above this (Burda et al.: 0.01).
    :param num_samples: guide draws per data point for the posterior means.
    :param batch_size: data points per pass.
    :param seed: seeds the guide's draws (``None``: leave the random state alone).

    Example::

        >>> import probgen as pg
        >>> data = pg.datasets.load("optdigits")
        >>> hvae = pg.HierarchicalVAE(data.info, (6, 3), hidden=(32,))
        >>> units = pg.diagnostics.active_units(hvae, data.test[:50])
        >>> units.sizes
        {'z1': 6, 'z2': 3}
    """
    non_negative_number(threshold, "threshold")
    positive_int(num_samples, "num_samples")
    positive_int(batch_size, "batch_size")
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 data points to take a covariance over them, got {len(x)}")
    model.validate(x)
    means: dict[str, list[torch.Tensor]] = {}
    with evaluating(model, seed):
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(model.device, model.dtype)
            with pyro.plate("_particles", num_samples, dim=-2):
                trace = poutine.trace(model.guide).get_trace(batch)
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site) or name.startswith("_"):
                    continue
                try:
                    mean = site["fn"].mean
                except NotImplementedError:  # e.g. a flow posterior: average the draws instead
                    mean = site["value"]
                mean = mean.expand(site["value"].shape)
                means.setdefault(name, []).append(mean.mean(0).reshape(len(batch), -1).double().cpu())
    activity = {name: torch.cat(parts).var(0) for name, parts in means.items()}
    return ActiveUnits(activity, float(threshold), len(x), num_samples)
