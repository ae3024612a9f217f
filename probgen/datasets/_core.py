"""The dataset container and :func:`load`; the description of the data, :class:`DataInfo`,
lives with the likelihoods (:mod:`probgen.distributions.info`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from ..distributions.info import DataInfo

__all__ = ["Dataset", "load", "available", "random_subset"]


@dataclasses.dataclass
class Dataset:
    """Train, validation and test splits (float tensors, data points along dim 0)."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    info: DataInfo

    def __repr__(self) -> str:
        i = self.info
        levels = f", {i.num_levels} levels" if i.support == "discrete" else ""
        return (
            f"Dataset({i.name!r}: train {len(self.train)}, valid {len(self.valid)}, "
            f"test {len(self.test)}; event_shape {i.event_shape}, {i.support}{levels})"
        )


_LOADERS: dict[str, Callable[..., Dataset]] = {}


def _register(*names: str):
    def decorate(fn):
        for name in names:
            _LOADERS[name] = fn
        return fn

    return decorate


def available() -> list[str]:
    """The names :func:`load` accepts."""
    return sorted(_LOADERS)


def load(name: str = "optdigits", root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load a dataset by name.

    ``"optdigits"`` ships inside the package and is the default. ``"binarized_mnist"``
    is looked up in ``root``, then in ``$PROBGEN_DATA``; ``download=True`` fetches the
    canonical files. ``"mnist"`` and ``"fashion_mnist"`` come through torchvision (256
    grey levels). The 2-D toys (``"moons"``, ``"eight_gaussians"``, ``"checkerboard"``,
    ``"pinwheel"``, ``"spirals"``, ``"ring8"``, ``"grid25"``) are drawn with fixed seeds.

    Discrete data is returned as float tensors holding integer levels ``0..K-1``
    (binary data: 0 and 1), never rescaled, so that likelihoods and bits/dim are
    computed in the data's own discrete space.

    Example::

        >>> import probgen as pg
        >>> data = pg.datasets.load("optdigits")
        >>> data.info.event_shape, data.info.num_levels
        ((8, 8), 17)
    """
    # the loaders register themselves on import
    from . import _files, _toy  # noqa: F401

    try:
        loader = _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available())}") from None
    return loader(name=name, root=root, download=download)


def split_off_validation(
    train: torch.Tensor, num_valid: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Carve a validation split from ``train`` with a fixed permutation."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator)
    return train[order[num_valid:]], train[order[:num_valid]]


def random_subset(x: torch.Tensor, n: int | None, seed: int = 0) -> torch.Tensor:
    """A fixed random subset of ``n`` data points (all of ``x`` when ``n`` is None or too large).

    Evaluate on this rather than on ``x[:n]``: some splits are stored in class order (the
    binarized MNIST test split begins with a thousand zeros), so a prefix is not a sample.
    """
    if n is None or n >= len(x):
        return x
    if n < 1:
        raise ValueError(f"a subset needs at least one data point, got n={n}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[order[:n].sort().values]
