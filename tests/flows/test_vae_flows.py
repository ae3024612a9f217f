"""Flows inside the VAE: a flow prior and a conditional flow posterior."""

from __future__ import annotations

import pyro.poutine as poutine
import pytest
import torch

import probgen as pg


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


def flow_vae(**options):
    options.setdefault("prior", pg.flows.prior("nsf", 4, num_layers=2, hidden=16))
    options.setdefault("posterior", "iaf")
    return pg.VAE((8, 8), 4, likelihood="categorical", num_levels=17, hidden=(64, 64), **options)


def test_flow_prior_and_iaf_posterior_train_and_iwae_dominates_elbo(digits):
    torch.manual_seed(0)
    vae = flow_vae()
    x = digits.test[:40]
    before = pg.log_likelihood(vae, x, method="elbo", num_samples=10).mean
    result = pg.fit(vae, digits.train[:1500], epochs=3, batch_size=100, lr=3e-3, progress=False)
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    elbo = pg.log_likelihood(vae, x, method="elbo", num_samples=50)
    iwae = pg.log_likelihood(vae, x, method="iwae", num_samples=50)
    assert elbo.mean > before
    assert (iwae.pointwise >= elbo.pointwise).all()
    assert iwae.is_bound and elbo.is_bound


def test_posterior_log_density_includes_the_flow_log_det(digits):
    torch.manual_seed(0)
    vae = flow_vae()
    with torch.no_grad():
        for p in vae.posterior_flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = digits.test[:5]
    trace = poutine.trace(vae.guide).get_trace(x)
    site = trace.nodes["z"]
    z = site["value"]
    # recompute log q(z | x) from scratch: invert the flow (no cache), base density minus log-det
    with torch.no_grad():
        loc, scale, features = vae._posterior(vae._network_input(x))
        transform = vae.posterior_flow.condition(features)
        u = transform.inv(z.clone())
        expected = torch.distributions.Normal(loc, scale).log_prob(u).sum(-1) - transform.log_abs_det_jacobian(u, z.clone())
        traced = site["fn"].log_prob(z)
    log_det = transform.log_abs_det_jacobian(u, z.clone())
    assert log_det.abs().min() > 1e-3  # the flow is not the identity: the check has teeth
    torch.testing.assert_close(traced, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("posterior", ["iaf", "nsf", "realnvp", "nsf_coupling"])
def test_named_posteriors_rebuild_from_config(tmp_path, digits, posterior):
    vae = pg.VAE((8, 8), 3, likelihood="categorical", num_levels=17, hidden=(32, 32), prior="maf", posterior=posterior)
    assert vae.config["posterior"] == posterior and vae.config["prior"] == "maf"
    loaded = pg.load_model(pg.save_model(vae, tmp_path / "vae.pt"))
    x = digits.test[:5]
    a = pg.log_likelihood(vae, x, method="iwae", num_samples=4)
    b = pg.log_likelihood(loaded, x, method="iwae", num_samples=4)
    torch.testing.assert_close(a.pointwise, b.pointwise)


def test_user_conditional_flow_posterior(digits):
    posterior = pg.flows.build("realnvp", 4, num_layers=2, hidden=16, context_dim=64)
    vae = flow_vae(posterior=posterior)
    assert vae.posterior_flow is posterior and vae.config is None
    est = pg.log_likelihood(vae, digits.test[:5], method="iwae", num_samples=4)
    assert torch.isfinite(est.pointwise).all()


def test_bad_posterior_gives_clear_errors():
    with pytest.raises(ValueError, match="unknown posterior 'maf'"):
        flow_vae(posterior="maf")
    with pytest.raises(ValueError, match=r"latent_dim=4 vectors with context_dim=64 \(the encoder's features\), got dim=4, context_dim=10"):
        flow_vae(posterior=pg.flows.build("iaf", 4, num_layers=1, hidden=8, context_dim=10))
    with pytest.raises(TypeError, match="posterior must be a name or a conditional flow"):
        flow_vae(posterior=pg.flows.build("iaf", 4, num_layers=1, hidden=8))
