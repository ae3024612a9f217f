"""Active units (Burda et al., 2016) per latent site, against the linear-Gaussian oracle's
closed-form posterior means, a collapsed encoder, and bad input."""

from __future__ import annotations

import pytest
import torch

import probgen as pg
from tests.models.test_hvae_oracle import Oracle, _exact_bottom_up


def test_activity_is_the_covariance_of_the_exact_posterior_means():
    oracle = Oracle(diagonal=True)
    hvae = _exact_bottom_up(oracle)
    x = oracle.sample(400, seed=3)
    units = pg.diagnostics.active_units(hvae, x, num_samples=2000, batch_size=200)
    assert list(units.activity) == ["z1", "z2"] and units.sizes == {"z1": 3, "z2": 3}
    # q(z1 | x) has the closed-form mean M1 x + m1; E_q[z2] = M2 (E_q[z1]) + m2, both linear in x
    q1, q2 = hvae.posteriors
    mean1 = x @ q1.M.T + q1.m
    torch.testing.assert_close(units.activity["z1"], mean1.double().var(0), rtol=1e-4, atol=1e-6)
    mean2 = mean1 @ q2.M.T + q2.m
    torch.testing.assert_close(units.activity["z2"], mean2.double().var(0), rtol=0.05, atol=1e-4)
    assert units.counts == {"z1": 3, "z2": 3} and units.total == 6
    assert "z1:    3 of    3 active" in str(units)


def test_a_collapsed_encoder_has_no_active_unit():
    data = pg.datasets.load("optdigits")
    torch.manual_seed(0)
    vae = pg.VAE(data.info, 4, hidden=(16,))
    with torch.no_grad():
        vae.posterior_head.weight.zero_()  # q(z | x) no longer depends on x
    units = pg.diagnostics.active_units(vae, data.test[:40])
    assert units.counts == {"z": 0} and units.activity["z"].max() < 1e-12
    # a higher threshold never counts more units
    hvae = pg.HierarchicalVAE(data.info, (4, 2), hidden=(16,))
    low = pg.diagnostics.active_units(hvae, data.test[:40], threshold=0.0)
    high = pg.diagnostics.active_units(hvae, data.test[:40], threshold=1.0)
    assert low.total >= high.total and low.total == 6


def test_a_model_without_latents_has_no_sites():
    flow = pg.Flow((2,), "maf", num_layers=1, hidden=8)
    assert pg.diagnostics.active_units(flow, torch.randn(10, 2)).activity == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": -1.0}, "threshold must be a non-negative finite number, got -1.0"),
        ({"num_samples": 0}, "num_samples must be a positive integer, got 0"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ],
)
def test_bad_input(options, message):
    data = pg.datasets.load("optdigits")
    hvae = pg.HierarchicalVAE(data.info, (4, 2), hidden=(16,))
    with pytest.raises(ValueError, match=message):
        pg.diagnostics.active_units(hvae, data.test[:10], **options)
    with pytest.raises(ValueError, match="at least 2 data points"):
        pg.diagnostics.active_units(hvae, data.test[:1])
    with pytest.raises(ValueError, match="shape"):
        pg.diagnostics.active_units(hvae, torch.zeros(5, 3))
