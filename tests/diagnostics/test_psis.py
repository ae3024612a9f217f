"""Per-data-point PSIS on the probabilistic-PCA oracle, and the Pareto fit against ArviZ's."""

import math
import warnings

import pytest
import torch

import probgen as pg
from probgen.diagnostics import ParetoKWarning, pareto_smooth
from tests.conftest import PPCA


def exact_posterior_ppca(guide_scale=1.0):
    """A PPCA VAE whose guide is the exact posterior, its scale multiplied by ``guide_scale``."""
    # orthogonal columns make the posterior covariance diagonal, so a diagonal guide can be exact
    q, _ = torch.linalg.qr(torch.randn(6, 2, generator=torch.Generator().manual_seed(3)))
    ppca = PPCA(data_dim=6, latent_dim=2, W=q * torch.tensor([2.0, 1.0]))
    vae = ppca.vae()
    post_var = 1.0 / ((ppca.W**2).sum(0) / ppca.noise**2 + 1.0)
    gain = post_var[:, None] * ppca.W.T / ppca.noise**2

    class Identity(torch.nn.Module):
        out_features = ppca.data_dim

        def forward(self, x):
            return x

    vae.encoder = Identity()
    head = torch.nn.Linear(ppca.data_dim, 4)
    head.weight.data = torch.cat([gain, torch.zeros(2, ppca.data_dim)])
    scale = guide_scale * post_var.sqrt()
    head.bias.data = torch.cat([-gain @ ppca.b, torch.log(torch.expm1(scale - 1e-4))])  # softplus(.) + 1e-4 = scale
    vae.posterior_head = head
    return ppca, vae


def test_exact_posterior_gives_small_k_and_the_exact_log_likelihood():
    ppca, vae = exact_posterior_ppca()
    x = ppca.sample(40, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParetoKWarning)
        result = pg.psis_khat(vae, x, num_samples=200)
    assert result.khat.shape == (40,)
    assert (result.khat < 0.5).all()
    # every weight equals p(x) up to float rounding: no tail at all
    assert torch.isneginf(result.khat).all()
    assert len(result.bad) == 0
    exact = ppca.exact(x)
    torch.testing.assert_close(result.estimate.pointwise, exact, atol=1e-4, rtol=0)
    iwae = pg.log_likelihood(vae, x, method="iwae", num_samples=200)
    torch.testing.assert_close(iwae.pointwise, exact, atol=1e-4, rtol=0)
    assert result.estimate.kind == "estimate" and result.estimate.method == "psis"


def test_slightly_wide_guide_gives_finite_small_k_and_a_close_estimate():
    # a guide wider than the posterior has bounded weights: a light tail, k-hat well below 0.5
    ppca, vae = exact_posterior_ppca(guide_scale=1.5)
    x = ppca.sample(30, seed=2)
    result = pg.psis_khat(vae, x, num_samples=1000)
    assert torch.isfinite(result.khat).all()
    assert (result.khat < 0.5).all(), result.khat
    assert (result.estimate.pointwise - ppca.exact(x)).abs().max() < 0.1


def test_too_narrow_guide_gives_large_k_and_the_warning_names_the_points():
    # q five times narrower than the posterior: the weights' tail has k = 1 - 0.2**2 = 0.96
    ppca, vae = exact_posterior_ppca(guide_scale=0.2)
    x = ppca.sample(30, seed=3)
    with pytest.warns(ParetoKWarning) as caught:
        result = pg.psis_khat(vae, x, num_samples=1000)
    bad = result.bad.tolist()
    assert len(bad) > 0.8 * len(x), result.khat
    message = str(caught[0].message)
    assert message.startswith(f"{len(bad)} of 30 data points have Pareto k > 0.7")
    assert f"(data points {', '.join(map(str, bad[:20]))}" in message
    assert result.counts()["bad (k > 0.7)"] == len(bad)
    # the narrow guide misses mass: importance sampling underestimates log p(x)
    assert result.estimate.mean < ppca.exact(x).mean().item()


def test_pareto_fit_agrees_with_arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    g = torch.Generator().manual_seed(0)
    columns = []
    for k in (0.1, 0.4, 0.8, 1.3):  # generalized Pareto draws with known shape
        u = torch.rand(2000, generator=g, dtype=torch.float64)
        columns.append(torch.log(((1 - u) ** (-k) - 1) / k))
    columns.append(2.0 * torch.randn(2000, generator=g, dtype=torch.float64))
    log_weights = torch.stack(columns, 1)
    smoothed, khat = pareto_smooth(log_weights)
    reference_lw, reference_k = az.psislw(log_weights.T.numpy().copy())
    torch.testing.assert_close(khat, torch.as_tensor(reference_k), atol=1e-8, rtol=0)
    torch.testing.assert_close(torch.log_softmax(smoothed, 0).T, torch.as_tensor(reference_lw), atol=1e-8, rtol=0)
    # and it recovers the shapes it was given
    assert (khat[:4] - torch.tensor([0.1, 0.4, 0.8, 1.3], dtype=torch.float64)).abs().max() < 0.2


def test_constant_weights_have_no_tail():
    smoothed, khat = pareto_smooth(torch.full((100, 3), -5.0))
    assert (khat == -math.inf).all()
    assert torch.equal(smoothed, torch.full((100, 3), -5.0, dtype=torch.float64))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least 25 importance samples"):
        pareto_smooth(torch.randn(20, 3))
    with pytest.raises(ValueError, match=r"\(num_samples, num_data\) tensor"):
        pareto_smooth(torch.randn(100))
    with pytest.raises(ValueError, match="NaN or infinite"):
        pareto_smooth(torch.tensor([[float("nan")]] * 30))
    ppca, vae = exact_posterior_ppca()
    with pytest.raises(ValueError, match="at least 25"):
        pg.psis_khat(vae, ppca.sample(3, seed=0), num_samples=10)


def test_plot_writes_a_png(tmp_path):
    ppca, vae = exact_posterior_ppca(guide_scale=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)
        result = pg.psis_khat(vae, ppca.sample(10, seed=0), num_samples=100)
    path = result.plot(tmp_path / "khat.png")
    assert path.stat().st_size > 1000
    assert "PSIS over 10 data points" in str(result)
