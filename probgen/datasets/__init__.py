"""Datasets: :func:`load` by name (each with its ``info``, a :class:`probgen.DataInfo`), 2-D toys.

``probgen.datasets.DataInfo`` stays importable; the class lives in :mod:`probgen.distributions`."""

from ._core import DataInfo as DataInfo, Dataset, available, load, random_subset, split_off_validation  # DataInfo kept importable here
from ._files import BINARIZED_MNIST_URL, data_root, download_binarized_mnist, parse_amat
from ._toy import TOY_SIZES, mode_centers, sample_toy

__all__ = [
    "BINARIZED_MNIST_URL",
    "Dataset",
    "TOY_SIZES",
    "available",
    "data_root",
    "download_binarized_mnist",
    "load",
    "mode_centers",
    "parse_amat",
    "random_subset",
    "sample_toy",
    "split_off_validation",
]
