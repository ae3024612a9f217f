"""AIS and BDMC against the probabilistic-PCA oracle; obs-noise selection; bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import probgen as pg
from probgen.infer.ais import anneal


def test_ais_matches_exact_ppca_log_likelihood(ppca):
    vae = ppca.vae()
    x = ppca.sample(40, seed=1)
    est = pg.log_likelihood(vae, x, method="ais", num_samples=64, num_steps=300)
    error = est.pointwise - ppca.exact(x)
    assert est.kind == "estimate" and not est.is_bound and est.num_samples == 64
    assert abs(error.mean().item()) < 0.1  # nats per data point
    assert error.abs().mean().item() < 0.1
    # AIS is far tighter than importance sampling from the prior with the same number of draws
    z = vae.prior_distribution().sample((64, 40))
    prior_is = torch.logsumexp(vae.observation(z).log_prob(x), 0) - torch.log(torch.tensor(64.0))
    assert (ppca.exact(x) - prior_is.double()).mean() > 5 * error.abs().mean()


def test_bdmc_brackets_exact_ppca_log_likelihood(ppca):
    vae = ppca.vae()
    short = pg.infer.bdmc(vae, num_data=30, num_chains=8, num_steps=10)
    exact = ppca.exact(short.x)
    # a short schedule leaves a wide sandwich, which must hold the exact value
    assert short.lower.mean() < exact.mean() < short.upper.mean()
    assert short.gap > 0.5
    long = pg.infer.bdmc(vae, num_data=30, num_chains=16, num_steps=300)
    exact = ppca.exact(long.x)
    assert long.lower.mean() - 0.05 < exact.mean() < long.upper.mean() + 0.05
    assert 0 < long.gap < short.gap and long.gap < 0.5
    assert "gap" in str(long)


def test_sigmoid_schedule():
    betas = pg.infer.sigmoid_schedule(100)
    assert betas.dtype == torch.float64 and len(betas) == 101
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    steps = betas.diff()
    assert steps[0] < steps[50] and steps[-1] < steps[50]  # small steps at both ends
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        pg.infer.sigmoid_schedule(0)


def test_anneal_with_a_single_step_is_importance_sampling_from_the_prior(ppca):
    vae = ppca.vae()
    x = ppca.sample(5, seed=2)
    z = vae.prior_distribution().sample((7, 5))
    log_w, _ = anneal(vae, x, z, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(log_w, vae.observation(z).log_prob(x).double())


def test_gan_with_obs_noise_gets_ais_and_select_obs_noise_finds_the_true_noise(ppca):
    generator = nn.Linear(ppca.latent_dim, ppca.data_dim)
    generator.weight.data.copy_(ppca.W)
    generator.bias.data.copy_(ppca.b)
    gan = pg.GAN((ppca.data_dim,), ppca.latent_dim, generator=generator, obs_noise=ppca.noise)
    x = ppca.sample(20, seed=3)
    est = pg.log_likelihood(gan, x, method="auto", num_samples=32, num_steps=200)
    assert est.method == "ais" and est.density
    assert abs((est.pointwise - ppca.exact(x)).mean()) < 0.15
    best, scores = pg.infer.select_obs_noise(gan, x, [0.15, ppca.noise, 1.5], num_samples=16, num_steps=100)
    assert best == ppca.noise == gan.obs_noise and len(scores) == 3


def test_ais_bad_input(ppca):
    gan = pg.GAN((2,), 2)
    x = pg.datasets.load("ring8").test[:4]
    with pytest.raises(ValueError, match="no obs_noise, so its likelihood is undefined"):
        pg.log_likelihood(gan, x, method="ais", num_samples=2, num_steps=2)
    vae = ppca.vae()
    x = ppca.sample(3, seed=0)
    with pytest.raises(ValueError, match="leapfrog_steps must be a positive integer"):
        pg.log_likelihood(vae, x, method="ais", num_samples=2, leapfrog_steps=0)
    with pytest.raises(ValueError, match="target_accept must lie in"):
        pg.log_likelihood(vae, x, method="ais", num_samples=2, target_accept=1.5)
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        pg.log_likelihood(vae, x, method="ais", num_samples=2, num_steps=0)
    with pytest.raises(TypeError, match="needs a decoder model with prior_distribution"):
        pg.infer.bdmc(object(), 3)
    with pytest.raises(ValueError, match="num_chains must be a positive integer"):
        pg.infer.bdmc(vae, 3, num_chains=0)
    with pytest.raises(ValueError, match="candidates must be positive"):
        pg.infer.select_obs_noise(pg.GAN((10,), 3), x, [0.1, -1.0])
