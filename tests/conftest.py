"""Shared fixtures: the probabilistic-PCA oracle and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from torch import nn

import probgen as pg

SHARED_DATA = Path(os.environ.get("PROBGEN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _few_threads():
    # tests are small; extra threads only add contention on a 2-core machine
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "binarized_mnist.npz").is_file():
        pytest.skip(f"the shared data folder {SHARED_DATA} (binarized_mnist.npz) is absent on this machine")
    return SHARED_DATA


class PPCA:
    """x = W z + b + s * eps: a VAE with a linear decoder whose log p(x) is known exactly."""

    def __init__(self, data_dim=10, latent_dim=3, noise=0.5, seed=0, W=None):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(data_dim, latent_dim, generator=g) if W is None else W
        self.b = torch.randn(data_dim, generator=g)
        self.noise = noise
        self.data_dim, self.latent_dim = data_dim, latent_dim
        cov = self.W @ self.W.T + noise**2 * torch.eye(data_dim)
        self.marginal = torch.distributions.MultivariateNormal(self.b, cov)

    def sample(self, n, seed):
        torch.manual_seed(seed)
        return self.marginal.sample((n,))

    def exact(self, x):
        return self.marginal.log_prob(x).double()

    def vae(self, trainable_decoder=False, **options):
        decoder = nn.Linear(self.latent_dim, self.data_dim)
        decoder.weight.data.copy_(self.W)
        decoder.bias.data.copy_(self.b)
        decoder.requires_grad_(trainable_decoder)
        noise = self.noise
        return pg.VAE(
            (self.data_dim,), self.latent_dim,
            likelihood=lambda out: dist.Normal(out, noise).to_event(1),
            decoder=decoder, hidden=(32, 32), **options,
        )


@pytest.fixture
def ppca() -> PPCA:
    return PPCA()


def training_cases(digits) -> dict:
    """One small model per family and objective the loop trains, fresh on each call:
    name -> (model, objective for ``pg.fit``, training data)."""
    real = pg.DataInfo((2,), "real")
    torch.manual_seed(0)
    return {
        "vae": (pg.VAE(digits.info, 4, hidden=(16,)), None, digits.train[:200]),
        "vae warmup": (pg.VAE(digits.info, 4, hidden=(16,)), "warmup:3", digits.train[:200]),
        "vae meanfield": (pg.VAE(digits.info, 4, hidden=(16,)), "meanfield", digits.train[:200]),
        "vae iwae": (pg.VAE(digits.info, 4, hidden=(16,)), "iwae:4", digits.train[:200]),
        "hvae": (pg.HierarchicalVAE(digits.info, (4, 2), hidden=(16,)), None, digits.train[:200]),
        "flow": (pg.Flow(real, "maf", num_layers=2, hidden=16), None, torch.randn(200, 2)),
        "diffusion": (pg.Diffusion(real, num_steps=8), None, torch.randn(200, 2)),
        "diffusion learned": (pg.Diffusion(real, schedule="learned"), None, torch.randn(200, 2)),
        "gan": (pg.GAN(real, 2, hidden=(16,), loss="wgan-gp"), None, torch.randn(200, 2)),
        "gan hinge": (pg.GAN(real, 2, hidden=(16,), loss="hinge"), None, torch.randn(200, 2)),
    }


#: the names of :func:`training_cases`, for parametrizing
TRAINING_CASES = ("vae", "vae warmup", "vae meanfield", "vae iwae", "hvae", "flow", "diffusion", "diffusion learned",
                  "gan", "gan hinge")
