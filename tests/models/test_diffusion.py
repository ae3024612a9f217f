"""Diffusion as a Markovian hierarchical VAE: the Gaussian oracle, the explicit chain against
the fast estimator, the terms of the bound, samplers, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch

import probgen as pg
from probgen.infer.objectives import SVIObjective, resolve_objective
from probgen.infer import TermsELBO
from probgen.models.diffusion import default_logsnr_max
from probgen.models.schedules import CosineSchedule, LearnedSchedule, LinearSchedule, schedule

GAUSSIAN_ENTROPY = 0.5 * math.log(2 * math.pi * math.e)  # 1.41894 nats: -E log N(x; 0, 1)


def oracle_network(parameterization):
    """The Bayes-optimal denoiser for N(0, 1) data: E[y | z_t] = alpha_t z_t, in each
    parameterization's own output."""

    def network(z, logsnr):
        alpha2 = torch.sigmoid(logsnr.double()).reshape(-1, *([1] * (z.dim() - 1)))
        alpha, sigma = alpha2.sqrt(), (1 - alpha2).sqrt()
        z = z.double()
        y_hat = alpha * z
        eps_hat = (z - alpha * y_hat) / sigma
        out = {"x0": y_hat, "eps": eps_hat, "v": alpha * eps_hat - sigma * y_hat}[parameterization]
        return out.float()

    return network


def expected_bound(diff, num_t=400):
    """E_x[ELBO] for x ~ N(0, 1), by quadrature instead of Monte Carlo: every term is a
    quadratic in (x, noise) for the oracle, so 6-point Gauss-Hermite is exact there; time is
    Gauss-Legendre (continuous) or the exact average over the T steps (discrete)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(6)
    g = torch.tensor(nodes)
    w = torch.tensor(weights / weights.sum())
    x = g[:, None].expand(6, 6).reshape(-1, 1).float()
    noise = g[None, :].expand(6, 6).reshape(-1, 1).float()
    wxe = (w[:, None] * w[None, :]).reshape(-1)
    prior = (diff.prior_term(g[:, None].float()).double() * w).sum()
    reconstruction = (diff.reconstruction_term(x, noise).double() * wxe).sum()
    if diff.num_steps is None:
        t_nodes, t_weights = np.polynomial.legendre.leggauss(num_t)
        t, tw = torch.tensor((t_nodes + 1) / 2), torch.tensor(t_weights / 2)
    else:
        t = torch.arange(1, diff.num_steps + 1, dtype=torch.float64) / diff.num_steps
        tw = torch.full((diff.num_steps,), 1.0 / diff.num_steps, dtype=torch.float64)
    n = len(x)
    terms = diff.diffusion_term(x.expand(len(t), n, 1), t[:, None].expand(len(t), n), noise.expand(len(t), n, 1))
    diffusion = ((terms.double() * wxe).sum(1) * tw).sum()
    return (prior + diffusion + reconstruction).item()


def gaussian_diffusion(num_steps=None, parameterization="eps", schedule="linear", **options):
    return pg.Diffusion((1,), num_steps=num_steps, schedule=schedule, parameterization=parameterization,
                        network=oracle_network(parameterization), **options)


# -- the Gaussian oracle -------------------------------------------------------------------


@pytest.mark.parametrize("parameterization", ["eps", "v", "x0"])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_continuous_bound_of_the_bayes_optimal_denoiser_is_the_exact_nll(parameterization, kind):
    bound = expected_bound(gaussian_diffusion(None, parameterization, kind))
    assert abs(-bound - GAUSSIAN_ENTROPY) < 1e-3
    assert -bound >= GAUSSIAN_ENTROPY - 1e-6  # a bound, up to quadrature error


def test_discrete_time_bound_is_looser_by_a_positive_gap_that_shrinks_with_T():
    gaps = [-expected_bound(gaussian_diffusion(T)) - GAUSSIAN_ENTROPY for T in (10, 100, 1000)]
    assert all(g > 1e-3 for g in gaps)
    assert gaps[0] > gaps[1] > gaps[2]
    # the discrete bound approaches the continuous one from below as T grows
    assert gaps[2] < 0.1


def test_monte_carlo_estimator_matches_the_exact_log_likelihood_in_expectation():
    torch.manual_seed(0)
    x = torch.randn(2000, 1)
    est = pg.log_likelihood(gaussian_diffusion(None), x, method="elbo", num_samples=64)
    exact = torch.distributions.Normal(0.0, 1.0).log_prob(x[:, 0]).double()
    difference = est.pointwise - exact
    stderr = difference.std().item() / math.sqrt(len(x))
    assert abs(difference.mean().item()) < 4 * stderr
    assert est.is_bound and est.kind == "bound" and est.density
    assert set(est.terms) == {"prior", "diffusion", "reconstruction"}


# -- the explicit chain is the definition; the fast estimator has its expectation ----------


def test_explicit_chain_under_meanfield_elbo_agrees_with_the_fast_estimator():
    torch.manual_seed(0)
    x = pg.datasets.load("optdigits").train[:16].reshape(16, 64)
    diff = pg.Diffusion((64,), num_steps=8, likelihood="categorical", num_levels=17)
    elbo = pyro.infer.TraceMeanField_ELBO(num_particles=50, vectorize_particles=True, max_plate_nesting=1)
    with torch.no_grad():
        chain = torch.tensor([-elbo.loss(diff.model, diff.guide, x) for _ in range(16)], dtype=torch.float64)
        fast = torch.stack([sum(diff.elbo_terms(x, 1).values()).sum().double() for _ in range(800)])
    se = math.sqrt(chain.var() / len(chain) + fast.var() / len(fast))
    assert abs(chain.mean() - fast.mean()) < 3 * se


def test_chain_sites_and_the_analytic_prior_kl():
    diff = pg.Diffusion((3,), num_steps=4, likelihood="bernoulli")
    x = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    guide = pyro.poutine.trace(diff.guide).get_trace(x)
    model = pyro.poutine.trace(pyro.poutine.replay(diff.model, trace=guide)).get_trace(x)
    def sites(trace):
        return [n for n, s in trace.nodes.items() if s["type"] == "sample" and not s["infer"].get("_do_not_trace")
                and n != "data"]

    assert sites(model) == ["z_4", "z_3", "z_2", "z_1", "z_0", "x"]
    assert sites(guide) == ["z_4", "z_3", "z_2", "z_1", "z_0"]
    kl = torch.distributions.kl_divergence(guide.nodes["z_4"]["fn"], model.nodes["z_4"]["fn"])
    torch.testing.assert_close(-kl, diff.prior_term(x))


# -- the terms of the bound ----------------------------------------------------------------


def test_prior_term_vanishes_as_the_final_logsnr_goes_to_minus_infinity():
    x = pg.datasets.load("optdigits").test[:20]
    values = [
        pg.Diffusion((8, 8), likelihood="categorical", num_levels=17, logsnr_min=m).prior_term(x).abs().max().item()
        for m in (-2.0, -5.0, -10.0, -20.0)
    ]
    assert values[0] > values[1] > values[2] > values[3]
    assert values[3] < 1e-6


@pytest.mark.parametrize("likelihood, num_levels", [("bernoulli", None), ("categorical", 17), ("normal", None)])
@pytest.mark.parametrize("num_steps", [None, 20])
def test_every_term_is_finite_with_the_right_sign_and_bits_per_dim_agree(likelihood, num_levels, num_steps):
    torch.manual_seed(0)
    if likelihood == "bernoulli":
        x = (torch.rand(30, 6) < 0.3).float()
    elif likelihood == "categorical":
        x = torch.randint(0, 17, (30, 6)).float()
    else:
        x = torch.randn(30, 6)
    diff = pg.Diffusion((6,), num_steps=num_steps, likelihood=likelihood, num_levels=num_levels)
    est = pg.log_likelihood(diff, x, method="elbo", num_samples=3)
    assert all(torch.isfinite(v).all() for v in est.terms.values())
    assert (est.terms["prior"] <= 0).all() and (est.terms["diffusion"] <= 0).all()
    if likelihood != "normal":  # a probability; for real data it is a density
        assert (est.terms["reconstruction"] <= 0).all()
    torch.testing.assert_close(sum(est.terms.values()), est.pointwise, rtol=1e-5, atol=1e-4)
    assert est.bits_per_dim == pytest.approx(-est.mean / (6 * math.log(2)))
    for name, (nats, bits) in est.term_summary().items():
        assert bits == pytest.approx(-nats / (6 * math.log(2)))
    assert est.density == (likelihood == "normal")


def test_reconstruction_is_an_exact_distribution_over_the_levels():
    diff = pg.Diffusion((5,), likelihood="categorical", num_levels=4)
    z0 = torch.randn(7, 5)
    decoder = diff.decoder(z0)
    levels = torch.arange(4.0)[:, None, None].expand(4, 7, 5)
    mass = decoder.base_dist.log_prob(levels).exp().sum(0)
    torch.testing.assert_close(mass, torch.ones(7, 5))


def test_default_logsnr_max_puts_sigma_0_at_an_eighth_of_the_level_spacing():
    for k in (2, 17, 256):
        sigma0 = math.sqrt(torch.sigmoid(torch.tensor(-default_logsnr_max(k), dtype=torch.float64)).item())
        assert sigma0 == pytest.approx(2 / (k - 1) / 8, rel=1e-2)
    assert default_logsnr_max(None) == 13.3


# -- schedules -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LinearSchedule, CosineSchedule, LearnedSchedule])
def test_schedules_are_decreasing_float64_with_the_right_ends_and_derivative(cls):
    s = cls(-6.0, 9.0)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    logsnr = s(t)
    assert logsnr.dtype == torch.float64
    assert (logsnr[1:] < logsnr[:-1]).all()
    torch.testing.assert_close(logsnr[[0, -1]], torch.tensor([9.0, -6.0], dtype=torch.float64))
    inner = t[1:-1]
    h = 1e-6
    finite_difference = (s(inner + h) - s(inner - h)) / (2 * h)
    torch.testing.assert_close(s.derivative(inner), finite_difference.detach(), rtol=1e-5, atol=1e-5)


def test_learned_schedule_gets_gradients_in_discrete_time():
    diff = pg.Diffusion((4,), num_steps=10, schedule="learned")
    x = torch.randn(32, 4)
    loss = -sum(diff.elbo_terms(x, 2).values()).sum()
    loss.backward()
    grads = [p.grad for p in diff.schedule.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_a_learned_schedule_trains_through_fit_and_data_take_the_denoisers_dtype():
    """The learned schedule's float64 weights come first among the model's; the data must
    still take the denoiser's float32 (pg.fit casts them to ``model.dtype``)."""
    torch.manual_seed(0)
    diff = pg.Diffusion(pg.DataInfo((2,), "real"), schedule="learned")
    assert diff.dtype == torch.float32 and next(diff.parameters()).dtype == torch.float64
    run = pg.fit(diff, torch.randn(128, 2, dtype=torch.float64), epochs=2, batch_size=32, progress=False,
                 device="cpu")
    assert all(math.isfinite(v) for v in run.history["train_loss"])


def test_continuous_time_learned_schedule_gets_the_gradient_of_the_squared_loss():
    """VDM's variance-minimizing update: the schedule's gradient from sum(L) under the
    estimator equals the plain gradient of sum(L^2); the denoiser's gradient is untouched."""
    torch.manual_seed(0)
    diff = pg.Diffusion((3,), schedule="learned")
    x, t, noise = torch.randn(16, 3), torch.rand(2, 16, dtype=torch.float64), torch.randn(2, 16, 3)

    def grads(loss_of_term):
        diff.zero_grad()
        loss_of_term(diff.diffusion_term(x, t, noise)).backward()
        return [p.grad.clone() for p in diff.schedule.parameters()], [p.grad.clone() for p in diff.network.parameters()]

    schedule_vg, network_vg = grads(lambda term: -term.sum())
    diff.schedule_variance_gradient = False
    schedule_sq, _ = grads(lambda term: term.square().sum())
    _, network_elbo = grads(lambda term: -term.sum())
    assert any(g.abs().sum() > 0 for g in schedule_vg)
    for a, b in zip(schedule_vg, schedule_sq):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * max(1.0, b.abs().max().item()))
    for a, b in zip(network_vg, network_elbo):
        torch.testing.assert_close(a, b)


def test_continuous_time_learned_schedule_lowers_the_estimator_variance_and_keeps_the_bound():
    """On the Gaussian oracle the bound does not depend on the path between the pinned end
    points; training the path lowers the variance of the one-timestep estimator while the
    bound (by quadrature) stays the exact NLL."""
    torch.manual_seed(0)
    diff = gaussian_diffusion(schedule="learned")
    probe = torch.Generator().manual_seed(1)
    n = 20000
    x, noise = torch.randn(n, 1, generator=probe), torch.randn(n, 1, generator=probe)
    t = torch.rand(n, generator=probe, dtype=torch.float64)

    def variance():
        with torch.no_grad():
            return diff.diffusion_term(x, t, noise).double().var().item()

    before = variance()
    opt = torch.optim.Adam(diff.schedule.parameters(), lr=5e-2)
    for _ in range(400):
        loss = -sum(diff.elbo_terms(torch.randn(256, 1)).values()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = variance()
    # the floor for this oracle is 2 * E[L]^2 ~ 89 (a chi-square with one degree of freedom)
    assert after < 0.85 * before, (before, after)
    assert abs(expected_bound(diff) + GAUSSIAN_ENTROPY) < 1e-3


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        schedule("quadratic")
    with pytest.raises(ValueError, match="logsnr_min < logsnr_max"):
        LinearSchedule(3.0, 1.0)


# -- samplers ------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samplers_return_the_right_shapes_and_support(sampler):
    binary = pg.Diffusion((4, 4), num_steps=20, likelihood="bernoulli")
    s = binary.sample(5, steps=5, sampler=sampler)
    assert s.shape == (5, 4, 4) and set(s.unique().tolist()) <= {0.0, 1.0}
    levels = pg.Diffusion((6,), likelihood="categorical", num_levels=5)
    s = levels.sample(7, steps=8, sampler=sampler)
    assert s.shape == (7, 6) and (s == s.round()).all() and s.min() >= 0 and s.max() <= 4
    real = pg.Diffusion((2,), num_steps=10)
    s = real.sample(3, sampler=sampler)
    assert s.shape == (3, 2) and torch.isfinite(s).all()


def test_respacing_picks_an_even_subset_of_the_model_grid():
    diff = pg.Diffusion((2,), num_steps=1000)
    times = diff._chain_times(50)
    assert len(times) == 51 and times[0] == 1 and times[-1] == 0
    assert torch.allclose(times * 1000, (times * 1000).round())
    assert (times[1:] < times[:-1]).all()
    with pytest.raises(ValueError, match="steps=2000 exceeds the model's num_steps=1000"):
        diff.sample(2, steps=2000)


def test_trained_model_samples_are_reproducible_with_a_seed():
    data = pg.datasets.load("moons")
    diff = pg.Diffusion((2,), num_steps=100)
    pg.fit(diff, data.train[:512], epochs=2, batch_size=128, progress=False)
    for sampler in ("ancestral", "ddim"):
        torch.manual_seed(3)
        first = diff.sample(64, steps=25, sampler=sampler)
        torch.manual_seed(3)
        again = diff.sample(64, steps=25, sampler=sampler)
        torch.manual_seed(4)
        other = diff.sample(64, steps=25, sampler=sampler)
        torch.testing.assert_close(first, again, rtol=0, atol=0)
        assert not torch.equal(first, other)


# -- training, saving, Pyro interop --------------------------------------------------------


def test_fit_trains_with_the_fast_estimator_by_default_and_improves_the_bound():
    diff = pg.Diffusion((6,), num_steps=50, likelihood="bernoulli")
    objective = resolve_objective(diff)
    assert isinstance(objective, SVIObjective) and isinstance(objective.elbo, TermsELBO)
    torch.manual_seed(0)
    x = (torch.rand(512, 6) < torch.tensor([0.9, 0.1, 0.5, 0.9, 0.1, 0.5])).float()
    before = pg.log_likelihood(diff, x[:200], method="elbo", num_samples=8).mean
    result = pg.fit(diff, x, epochs=5, batch_size=64, lr=3e-3, progress=False)
    after = pg.log_likelihood(diff, x[:200], method="elbo", num_samples=8).mean
    assert after > before
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]


def test_save_and_load_rebuild_the_same_model(tmp_path):
    diff = pg.Diffusion((8, 8), num_steps=30, schedule="cosine", parameterization="v",
                        likelihood="categorical", num_levels=17)
    path = pg.save_model(diff, tmp_path / "diff.pt")
    loaded = pg.load_model(path)
    assert loaded.config == diff.config and loaded.num_steps == 30
    x = pg.datasets.load("optdigits").test[:4]
    torch.manual_seed(1)
    a = diff.elbo_terms(x, 2)
    torch.manual_seed(1)
    b = loaded.elbo_terms(x, 2)
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_plain_pyro_svi_steps_with_the_fast_estimator():
    diff = pg.Diffusion((3,))
    x = torch.randn(16, 3)
    svi = pyro.infer.SVI(diff.model, diff.guide, pyro.optim.Adam({"lr": 1e-3}), loss=TermsELBO())
    assert math.isfinite(svi.step(x))
    with pytest.raises(TypeError, match=r"TermsELBO scores a model with elbo_terms\(x, num_samples\)"):
        TermsELBO().differentiable_loss(lambda x: None, lambda x: None, x)


def test_model_without_data_samples_through_the_chain():
    diff = pg.Diffusion((2, 4), num_steps=6, likelihood="bernoulli")
    trace = pyro.poutine.trace(diff.model).get_trace(num_data=3)
    assert trace.nodes["x"]["value"].shape == (3, 2, 4)
    assert not trace.nodes["x"]["is_observed"]


@pytest.mark.parametrize("shape", [(8, 8), (28, 28), (3, 8, 8), (1, 7, 5)])
def test_default_unet_keeps_the_shape(shape):
    diff = pg.Diffusion(shape)
    z = torch.randn(2, 3, *shape)
    assert diff.predict(z, torch.zeros(2, 3)).shape == z.shape


# -- bad input -----------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="num_steps must be a positive integer, got 0"):
        pg.Diffusion((2,), num_steps=0)
    with pytest.raises(ValueError, match="unknown schedule 'quad'"):
        pg.Diffusion((2,), schedule="quad")
    with pytest.raises(ValueError, match="unknown parameterization 'score'"):
        pg.Diffusion((2,), parameterization="score")
    with pytest.raises(TypeError, match="network must be a module or a callable"):
        pg.Diffusion((2,), network=3)
    with pytest.raises(ValueError, match="needs num_levels"):
        pg.Diffusion((2,), likelihood="categorical")
    with pytest.raises(ValueError, match="num_levels=17 goes with a named discrete likelihood"):
        pg.Diffusion((2,), num_levels=17)
    with pytest.raises(ValueError, match="no default network"):
        pg.Diffusion((2, 2, 2, 2))
    diff = pg.Diffusion((4,), num_steps=10, likelihood="categorical", num_levels=5)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        diff.sample(2, sampler="euler")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        diff.sample(0)
    with pytest.raises(ValueError, match="integer levels"):
        diff.elbo_terms(torch.full((3, 4), 2.5))
    with pytest.raises(ValueError, match=r"shape \(num_data, 4\)"):
        pg.log_likelihood(diff, torch.zeros(3, 5), method="elbo", num_samples=2)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        diff.elbo_terms(torch.zeros(3, 4), 0)
    with pytest.raises(ValueError, match="method 'iwae' is not valid for Diffusion"):
        pg.log_likelihood(diff, torch.zeros(3, 4), method="iwae", num_samples=2)


@pytest.mark.slow
def test_a_trained_optdigits_model_beats_the_uniform_distribution_over_levels():
    data = pg.datasets.load("optdigits")
    diff = pg.Diffusion((8, 8), likelihood="categorical", num_levels=17)
    pg.fit(diff, data.train, data.valid, epochs=15, batch_size=128, lr=2e-3, progress=False)
    est = pg.log_likelihood(diff, data.test[:500], method="elbo", num_samples=4)
    assert est.bits_per_dim < math.log2(17)
    torch.manual_seed(0)
    samples = diff.sample(16, steps=50, sampler="ddim")
    assert ((samples >= 0) & (samples <= 16) & (samples == samples.round())).all()


def test_the_fast_estimator_trains_under_pyro_svi():
    """TermsELBO computes its loss without tracing the chain; it must still hand its
    parameters to pyro.infer.SVI through param statements."""
    torch.manual_seed(0)
    diff = pg.Diffusion((2,), num_steps=None)
    svi = pyro.infer.SVI(diff.model, diff.guide, pyro.optim.Adam({"lr": 1e-2}), TermsELBO())
    before = [p.clone() for p in diff.parameters()]
    x = pg.datasets.load("moons").train[:256]
    for _ in range(3):
        svi.step(x)
    changed = [not torch.equal(a, b) for a, b in zip(before, diff.parameters())]
    assert all(changed), f"{changed.count(False)} of {len(changed)} parameters were not stepped"
