"""The dataset container, its description, and :func:`load`."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import torch

__all__ = ["DataInfo", "Dataset", "load", "available", "random_subset"]

SUPPORTS = ("binary", "discrete", "real")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about the data it is fitted to.

    :param name: the dataset's name, as given to :func:`load`.
    :param event_shape: the shape of one data point.
    :param support: ``"binary"`` (values 0 and 1), ``"discrete"`` (the integer
        levels ``0, 1, ..., num_levels - 1``) or ``"real"``.
    :param num_levels: number of levels of discrete data (2 for binary data),
        ``None`` for real data.
    """

    name: str
    event_shape: tuple[int, ...]
    support: str
    num_levels: int | None = None

    def __post_init__(self):
        if self.support not in SUPPORTS:
            raise ValueError(f"support must be one of {SUPPORTS}, got {self.support!r}")
        if self.support == "binary" and self.num_levels not in (None, 2):
            raise ValueError(f"binary data has 2 levels, got num_levels={self.num_levels}")
        if self.support == "binary":
            object.__setattr__(self, "num_levels", 2)
        if self.support == "discrete" and (self.num_levels is None or self.num_levels < 2):
            raise ValueError("discrete data needs num_levels >= 2")
        if self.support == "real" and self.num_levels is not None:
            raise ValueError("real data has no num_levels")
        object.__setattr__(self, "event_shape", tuple(int(s) for s in self.event_shape))

    @property
    def num_dims(self) -> int:
        """Number of dimensions of one data point: the divisor of bits/dim."""
        return math.prod(self.event_shape)

    def describe_support(self) -> str:
        """The support in words, for error messages."""
        if self.support == "binary":
            return "binary values {0, 1}"
        if self.support == "discrete":
            return f"integer levels {{0, 1, ..., {self.num_levels - 1}}}"
        return "finite real values"


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
