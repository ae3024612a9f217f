import hashlib
import math

import numpy as np
import pytest
import torch

import probgen as pg
from probgen.datasets import _files


def test_optdigits_is_embedded_with_a_fixed_validation_split():
    data = pg.datasets.load("optdigits")
    assert (len(data.train), len(data.valid), len(data.test)) == (3323, 500, 1797)
    info = data.info
    assert info.event_shape == (8, 8) and info.support == "discrete" and info.num_levels == 17
    assert info.num_dims == 64
    for split in (data.train, data.valid, data.test):
        assert split.dtype == torch.float32
        assert split.min() == 0 and split.max() == 16 and torch.equal(split, split.round())
    again = pg.datasets.load("optdigits")
    assert torch.equal(again.valid, data.valid)
    # train and valid partition the original 3823 training images
    assert len(torch.cat([data.train, data.valid]).unique(dim=0)) == len(
        torch.cat([again.train, again.valid]).unique(dim=0)
    )


def test_default_dataset_is_optdigits():
    assert pg.datasets.load().info.name == "optdigits"


def test_unknown_dataset_names_the_available_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'; available: .*optdigits"):
        pg.datasets.load("nope")


@pytest.mark.parametrize("name", ["moons", "eight_gaussians", "checkerboard", "pinwheel", "spirals", "ring8", "grid25"])
def test_toys_are_2d_real_and_reproducible(name):
    data = pg.datasets.load(name)
    assert data.info.event_shape == (2,) and data.info.support == "real" and data.info.num_levels is None
    assert data.train.shape == (20000, 2) and data.test.shape == (10000, 2)
    assert torch.equal(pg.datasets.load(name).test, data.test)
    assert not torch.equal(data.train[:100], data.test[:100])


def test_checkerboard_lies_on_the_dark_squares():
    x = pg.datasets.load("checkerboard").train
    cells = torch.floor((x + 4) / 2).long()
    assert ((cells >= 0) & (cells <= 3)).all()
    assert ((cells.sum(-1) % 2) == 0).all()


@pytest.mark.parametrize("name,count,sd", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_mode_benchmarks_sit_on_their_modes(name, count, sd):
    centres, spread = pg.datasets.mode_centers(name)
    assert centres.shape == (count, 2) and spread == sd
    x = pg.datasets.load(name).train
    nearest = torch.cdist(x, centres).min(-1).values
    assert (nearest < 6 * sd).all()
    assert abs(nearest.pow(2).mean().sqrt().item() - math.sqrt(2) * sd) < 0.1 * sd


def test_binarized_mnist_from_the_shared_folder(shared_data):
    data = pg.datasets.load("binarized_mnist", root=shared_data)
    assert (len(data.train), len(data.valid), len(data.test)) == (50000, 10000, 10000)
    assert data.info.support == "binary" and data.info.num_levels == 2 and data.info.num_dims == 784
    assert set(data.test.unique().tolist()) == {0.0, 1.0}
    assert abs(data.test.mean().item() - 0.13251) < 5e-5


def test_binarized_mnist_from_the_environment_variable(shared_data, monkeypatch):
    monkeypatch.setenv("PROBGEN_DATA", str(shared_data))
    assert pg.datasets.load("binarized_mnist").test.shape == (10000, 28, 28)


def test_missing_binarized_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PROBGEN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"binarized_mnist not found .*PROBGEN_DATA.*download=True"):
        pg.datasets.load("binarized_mnist", root=tmp_path)


def test_corrupt_binarized_mnist_file_is_reported(tmp_path):
    (tmp_path / "binarized_mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a valid binarized_mnist.npz"):
        pg.datasets.load("binarized_mnist", root=tmp_path)


def _write_amat_mirror(folder, rows):
    folder.mkdir()
    for split, n in _files.BINARIZED_MNIST_SPLITS.items():
        pixels = rows[split]
        (folder / f"binarized_mnist_{split}.amat").write_text("\n".join(" ".join(map(str, r)) for r in pixels) + "\n")


def test_download_parses_checks_and_writes_atomically(tmp_path):
    rng = np.random.default_rng(0)
    rows = {split: rng.integers(0, 2, size=(3, 784)) for split in _files.BINARIZED_MNIST_SPLITS}
    _write_amat_mirror(tmp_path / "mirror", rows)
    checksums = {
        split: hashlib.sha256(np.packbits(r.astype(np.uint8), axis=1).tobytes()).hexdigest() for split, r in rows.items()
    }
    root = tmp_path / "data"
    path = pg.datasets.download_binarized_mnist(root, url=(tmp_path / "mirror").as_uri(), checksums=checksums)
    assert path == root / "binarized_mnist.npz"
    assert sorted(p.name for p in root.iterdir()) == ["binarized_mnist.npz"]  # no temporary leftovers
    data = pg.datasets.load("binarized_mnist", root=root)
    assert torch.equal(data.valid.reshape(3, 784), torch.from_numpy(rows["valid"]).float())


def test_download_rejects_a_checksum_mismatch_and_keeps_the_old_file(tmp_path):
    rng = np.random.default_rng(1)
    rows = {split: rng.integers(0, 2, size=(2, 784)) for split in _files.BINARIZED_MNIST_SPLITS}
    _write_amat_mirror(tmp_path / "mirror", rows)
    root = tmp_path / "data"
    root.mkdir()
    (root / "binarized_mnist.npz").write_bytes(b"previous")
    with pytest.raises(ValueError, match="checksum mismatch .*binarized_mnist_train.amat"):
        pg.datasets.download_binarized_mnist(root, url=(tmp_path / "mirror").as_uri())
    assert (root / "binarized_mnist.npz").read_bytes() == b"previous"


def test_canonical_checksums_match_the_shared_copy(shared_data):
    arrays = np.load(shared_data / "binarized_mnist.npz")
    for split, digest in _files.BINARIZED_MNIST_SHA256.items():
        assert hashlib.sha256(np.ascontiguousarray(arrays[split]).tobytes()).hexdigest() == digest


def test_torchvision_datasets_without_files_explain_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        pg.datasets.load("fashion_mnist", root=tmp_path)


def test_random_subset_is_fixed_and_not_a_prefix():
    x = torch.arange(100.0)[:, None]
    a, b = pg.datasets.random_subset(x, 10), pg.datasets.random_subset(x, 10)
    assert torch.equal(a, b) and len(a.unique()) == 10 and not torch.equal(a, x[:10])
    assert pg.datasets.random_subset(x, None) is x and pg.datasets.random_subset(x, 500) is x
    with pytest.raises(ValueError, match="at least one"):
        pg.datasets.random_subset(x, 0)


def test_binarized_mnist_test_split_is_in_class_order(shared_data):
    """Why evaluation uses random subsets: the first test images are all zeros."""
    test = pg.datasets.load("binarized_mnist", root=shared_data).test
    ink_first, ink_all = test[:500].mean().item(), test.mean().item()
    assert ink_first > ink_all + 0.02  # zeros carry more ink than the average digit (0.158 vs 0.133)
    sub = pg.datasets.random_subset(test, 1000)
    assert abs(sub.mean().item() - ink_all) < 0.01
