"""Image datasets read from files: embedded optdigits, binarized MNIST, torchvision."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ._core import DataInfo, Dataset, _register, split_off_validation

__all__ = ["BINARIZED_MNIST_URL", "download_binarized_mnist", "data_root"]

# The static binarization of Larochelle & Murray (2011), as plain-text .amat files
# (one image per line, 784 space-separated 0/1 values).
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BINARIZED_MNIST_SPLITS = {"train": 50000, "valid": 10000, "test": 10000}
# sha256 of each split's pixels, bit-packed row by row (np.packbits(axis=1)). The digest
# is taken of the parsed content, so it does not depend on the text layout of the file.
BINARIZED_MNIST_SHA256 = {
    "train": "727146c35424b019f3e350e1e69faa05644a0abaf787e3f4e1a9632220a13906",
    "valid": "a256ac44ae26be720fad8616a05ed6ecfd1619930d9a208379bb2a4405df5b6d",
    "test": "9fcd8da6f0fdf09b2ba30fe63a0bb784042a0de82563172530229b983e294ff2",
}
OPTDIGITS_NUM_VALID = 500
OPTDIGITS_SPLIT_SEED = 0


def data_root(root: str | Path | None = None) -> Path:
    """Where datasets live: ``root``, else ``$PROBGEN_DATA``, else ``~/.cache/probgen``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("PROBGEN_DATA"):
        return Path(os.environ["PROBGEN_DATA"]).expanduser()
    return Path.home() / ".cache" / "probgen"


@_register("optdigits")
def _load_optdigits(name, root, download):
    with resources.files("probgen.datasets").joinpath("data/optdigits.npz").open("rb") as f:
        arrays = np.load(f)
        train = torch.from_numpy(arrays["train_images"].astype(np.float32))
        test = torch.from_numpy(arrays["test_images"].astype(np.float32))
    train, valid = split_off_validation(train, OPTDIGITS_NUM_VALID, OPTDIGITS_SPLIT_SEED)
    info = DataInfo((8, 8), "discrete", 17, name="optdigits")
    return Dataset(train, valid, test, info)


def _unpack_bits(packed: np.ndarray) -> torch.Tensor:
    pixels = np.unpackbits(packed, axis=1)[:, :784].reshape(-1, 28, 28)
    return torch.from_numpy(pixels.astype(np.float32))


def _digest(packed: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(packed).tobytes()).hexdigest()


@_register("binarized_mnist")
def _load_binarized_mnist(name, root, download):
    candidates = [Path(root).expanduser()] if root is not None else []
    if os.environ.get("PROBGEN_DATA"):
        candidates.append(Path(os.environ["PROBGEN_DATA"]).expanduser())
    for folder in candidates:
        path = folder / "binarized_mnist.npz"
        if path.is_file():
            return _read_binarized_mnist_npz(path)
    if download:
        path = download_binarized_mnist(data_root(root))
        return _read_binarized_mnist_npz(path)
    looked = ", ".join(str(c / "binarized_mnist.npz") for c in candidates) or "nowhere"
    raise FileNotFoundError(
        "binarized_mnist not found (looked in: "
        f"{looked}). Pass root=DIR or set $PROBGEN_DATA to a folder holding "
        "binarized_mnist.npz (keys train/valid/test, rows np.packbits of 784 pixels), "
        "or call pg.datasets.load('binarized_mnist', download=True) to fetch the "
        f"canonical .amat files from {BINARIZED_MNIST_URL}"
    )


def _read_binarized_mnist_npz(path: Path) -> Dataset:
    try:
        arrays = np.load(path)
        splits = {k: arrays[k] for k in BINARIZED_MNIST_SPLITS}
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{path} is not a valid binarized_mnist.npz (expected keys train, valid, test "
            f"of bit-packed rows): {error}"
        ) from error
    for split, packed in splits.items():
        if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != 98:
            raise ValueError(
                f"{path}: split {split!r} has shape {packed.shape} and dtype {packed.dtype}; "
                "expected uint8 rows of 98 bytes (np.packbits of 784 pixels)"
            )
    info = DataInfo((28, 28), "binary", name="binarized_mnist")
    return Dataset(*(_unpack_bits(splits[k]) for k in ("train", "valid", "test")), info)


def parse_amat(path: Path) -> np.ndarray:
    """Read a binarized-MNIST ``.amat`` file into an ``(n, 784)`` uint8 array of 0/1."""
    values = np.loadtxt(path, dtype=np.uint8)
    if values.ndim == 1:
        values = values[None]
    if values.shape[1] != 784 or values.max(initial=0) > 1:
        raise ValueError(f"{path}: expected rows of 784 binary values, got shape {values.shape}")
    return values


def download_binarized_mnist(
    root: str | Path,
    url: str = BINARIZED_MNIST_URL,
    checksums: dict[str, str] | None = BINARIZED_MNIST_SHA256,
) -> Path:
    """Download the canonical ``.amat`` files, check them, and write ``binarized_mnist.npz``.

    Each split's content is checked against a sha256 digest of its bit-packed pixels
    (``checksums=None`` skips the check, for mirrors of other data). The ``.npz`` is
    written to a temporary file and renamed into place, so an interrupted download
    leaves nothing half-written. Returns the path of the ``.npz``.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    packed = {}
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        for split in BINARIZED_MNIST_SPLITS:
            source = f"{url.rstrip('/')}/binarized_mnist_{split}.amat"
            target = Path(tmp) / f"{split}.amat"
            with urllib.request.urlopen(source) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out)
            packed[split] = np.packbits(parse_amat(target), axis=1)
            if checksums is not None and _digest(packed[split]) != checksums[split]:
                raise ValueError(
                    f"checksum mismatch for {source}: expected sha256 {checksums[split]} of the "
                    f"bit-packed pixels, got {_digest(packed[split])}"
                )
        final = root / "binarized_mnist.npz"
        partial = Path(tmp) / "binarized_mnist.npz"
        np.savez_compressed(partial, shape=np.array([28, 28]), **packed)
        os.replace(partial, final)
    return final


@_register("mnist", "fashion_mnist")
def _load_torchvision(name, root, download):
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    folder = data_root(root)
    try:
        train_set = cls(str(folder), train=True, download=download)
        test_set = cls(str(folder), train=False, download=download)
    except RuntimeError as error:
        raise FileNotFoundError(
            f"{name} not found under {folder}; pass download=True to fetch it through "
            f"torchvision ({error})"
        ) from error
    train = train_set.data.float()
    test = test_set.data.float()
    train, valid = split_off_validation(train, 10000, seed=0)
    return Dataset(train, valid, test, DataInfo((28, 28), "discrete", 256, name=name))
