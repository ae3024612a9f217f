"""The doubly reparameterized IWAE gradient (DReGIWAE): the bound's value, zero variance at the
exact posterior, and an unbiased estimate of IWAE's gradient, on the PPCA oracle and on a
hierarchy whose guide shares parameters with its model."""

import re

import pyro
import pytest
import torch
from torch import nn

import probgen as pg
from probgen.infer.graphs import EagerSteps
from probgen.infer.objectives import _ScaleLatents
from probgen.infer.weights import (
    doubly_reparameterized_log_weights,
    negligible_particles,
)
from tests.diagnostics.test_psis import exact_posterior_ppca
from tests.infer.test_cuda_graphs import python_state, small_vamp_hvae
from tests.infer.test_sync_free import no_host_reads


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


def gradients(model, objective, x, seed):
    model.zero_grad()
    pyro.set_rng_seed(seed)
    loss = objective.differentiable_loss(model.model, model.guide, x)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


class StickingTheLanding(pg.infer.IWAE):
    """IWAE with the guide's score term dropped and nothing in its place: biased for k > 1
    (Tucker et al. 2019), the negative control that shows the unbiasedness test can fail."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        log_w, scale = doubly_reparameterized_log_weights(model, guide, self.num_particles, *args, **kwargs)
        scale.factors = torch.ones_like(log_w)
        weights = torch.softmax(log_w.detach(), 0)
        return -(weights * log_w).sum()


def test_the_value_is_iwaes_and_the_guide_gradient_is_zero_at_the_exact_posterior():
    ppca, vae = exact_posterior_ppca()
    x = ppca.sample(40, seed=1)
    for seed in range(3):
        value, plain = gradients(vae, pg.IWAE(8), x, seed)
        dreg_value, dreg = gradients(vae, pg.infer.DReGIWAE(8), x, seed)
        assert torch.equal(dreg_value, value)  # the same draws, the same bound
        assert set(dreg) == set(plain) == {"posterior_head.weight", "posterior_head.bias"}
        for name in plain:
            # every weight is p(x): IWAE's score term is noise, DReG's gradient only rounding
            assert plain[name].abs().max() > 1.0
            assert dreg[name].abs().max() < 1e-3, (name, dreg[name].abs().max())


def mean_and_stderr(objective, model, x, calls):
    draws = [gradients(model, objective, x, seed)[1] for seed in range(calls)]
    stacked = {name: torch.stack([d[name] for d in draws]) for name in draws[0]}
    return {name: (g.mean(0), g.std(0) / calls**0.5) for name, g in stacked.items()}


def z_scores(a, b):
    return torch.cat([((a[n][0] - b[n][0]) / (a[n][1] ** 2 + b[n][1] ** 2).sqrt().clamp_min(1e-12)).flatten()
                      for n in a])


def test_the_gradient_is_an_unbiased_estimate_of_iwaes_with_less_noise_for_the_guide():
    ppca, vae = exact_posterior_ppca(guide_scale=1.6)
    vae.decoder.requires_grad_(True)  # the model's parameters get their part too
    x = ppca.sample(8, seed=2).repeat(250, 1)  # each call's gradient sums 250 draws per point
    plain = mean_and_stderr(pg.IWAE(8), vae, x, 24)
    dreg = mean_and_stderr(pg.infer.DReGIWAE(8), vae, x, 24)
    stl = mean_and_stderr(StickingTheLanding(8), vae, x, 24)
    z = z_scores(dreg, plain)
    assert z.abs().max() < 4.5 and (z**2).mean() < 1.6, z
    assert (z_scores(stl, plain) ** 2).mean() > 10  # a biased estimator fails this test
    for name in ("posterior_head.weight", "posterior_head.bias"):
        assert (dreg[name][1] < 0.5 * plain[name][1]).float().mean() > 0.9, name
    for name in ("decoder.weight", "decoder.bias"):  # the model's part is IWAE's, draw for draw
        torch.testing.assert_close(dreg[name][0], plain[name][0], rtol=1e-4, atol=1e-3)


def test_a_hierarchy_whose_guide_shares_the_top_down_path_and_the_vampprior_encoder(digits):
    torch.manual_seed(0)
    hvae = pg.HierarchicalVAE(digits.info, (4, 2), hidden=(16,), inference="top-down", top_down_path=True,
                              prior="vamp", num_pseudo_inputs=5)
    x = digits.train[:25].repeat(8, 1, 1).to(hvae.dtype)
    plain = mean_and_stderr(pg.IWAE(4), hvae, x, 16)
    dreg = mean_and_stderr(pg.infer.DReGIWAE(4), hvae, x, 16)
    z = z_scores(dreg, plain)
    assert (z**2).mean() < 1.5 and (z.abs() > 5).float().mean() < 1e-3, z
    stl = mean_and_stderr(StickingTheLanding(4), hvae, x, 16)
    assert (z_scores(stl, plain) ** 2).mean() > (z**2).mean() + 1


def test_it_trains_with_fit_under_kl_warmup_and_by_name(digits):
    hvae = small_vamp_hvae(digits)
    objective = pg.infer.KLWarmup(2, elbo=pg.infer.DReGIWAE(3))
    result = pg.fit(hvae, digits.train[:300], digits.valid[:100], epochs=3, objective=objective, progress=False)
    assert result.history["valid_loss"][-1] < result.history["valid_loss"][0]
    assert repr(pg.infer.resolve_objective(hvae, "dreg:7")) == "SVIObjective(DReGIWAE(num_particles=7))"


def test_what_it_cannot_take_is_refused_with_the_reason(ppca, digits):
    x = ppca.sample(10, seed=0)
    vae = ppca.vae()
    with pytest.raises(TypeError, match="torch.nn.Module or a method of one"):
        pg.infer.DReGIWAE(3).differentiable_loss(vae.model, lambda x: vae.guide(x), x)
    noisy = pg.HierarchicalVAE(digits.info, (4, 2), hidden=(16,), encoder_noise=0.3)
    noisy.train()
    with pytest.raises(ValueError, match="other densities when run again"):
        pg.infer.DReGIWAE(3).differentiable_loss(noisy.model, noisy.guide, digits.train[:10].to(noisy.dtype))

    def discrete_guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", pyro.distributions.Bernoulli(torch.full((len(x), 3), 0.5)).to_event(1))

    with pytest.raises(ValueError, match="'z' draws from .*no rsample"):
        doubly_reparameterized_log_weights(vae.model, _Bound(discrete_guide).guide, 3, x)


class _Bound(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def guide(self, x):
        return self.fn(x)


def test_negligible_particles_get_no_gradient(ppca):
    vae = ppca.vae()  # an untrained guide against a sharp posterior: many weights are negligible
    x = ppca.sample(20, seed=3)
    pyro.set_rng_seed(0)
    log_w, _ = doubly_reparameterized_log_weights(vae.model, vae.guide, 50, x)
    cut = negligible_particles(log_w.detach(), 0)
    assert cut.float().mean() > 0.1
    pyro.set_rng_seed(0)
    loss = pg.infer.DReGIWAE(50).differentiable_loss(vae.model, vae.guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    tiny = torch.finfo(torch.float32).tiny
    for name, p in vae.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all() and not ((p.grad != 0) & (p.grad.abs() < tiny)).any(), name


def test_only_the_first_step_reads_a_value_back_to_the_host(digits, monkeypatch):
    """The guide check compares the two runs once; every later step stays on the device."""
    hvae = small_vamp_hvae(digits)
    objective = pg.infer.resolve_objective(hvae, "dreg:3")
    with pytest.raises(AssertionError, match="read a tensor back"), no_host_reads(monkeypatch):
        objective.train_loss(hvae, digits.train[:8].to(hvae.dtype))
    objective.train_loss(hvae, digits.train[:8].to(hvae.dtype))  # the check, outside

    class Strict(type(objective)):
        def train_step(self, model, batch, update):
            with no_host_reads(monkeypatch):
                return super().train_step(model, batch, update)

    objective.__class__ = Strict
    run = pg.fit(hvae, digits.train[:96], epochs=2, batch_size=32, objective=objective, progress=False, device="cpu")
    assert all(map(torch.isfinite, map(torch.tensor, run.history["train_loss"])))


class Annealed:
    """An objective's loss under KL warm-up's scaling of every latent site by beta."""

    def __init__(self, bound, beta):
        self.bound, self.beta = bound, beta

    def differentiable_loss(self, model, guide, x):
        scale = _ScaleLatents(torch.tensor(self.beta))
        return self.bound.differentiable_loss(scale(model), scale(guide), x)


@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_under_kl_warmup_the_gradient_is_the_annealed_bounds(beta):
    """With every latent site scaled by beta, the score term is beta times IWAE's, so the draws'
    path gets (1 - beta) w + beta w^2: still unbiased for the annealed bound's gradient."""
    ppca, vae = exact_posterior_ppca(guide_scale=1.6)
    x = ppca.sample(8, seed=2).repeat(250, 1)
    plain = mean_and_stderr(Annealed(pg.IWAE(8), beta), vae, x, 24)
    dreg = mean_and_stderr(Annealed(pg.infer.DReGIWAE(8), beta), vae, x, 24)
    z = z_scores(dreg, plain)
    assert z.abs().max() < 4.5 and (z**2).mean() < 1.6, z


def test_after_the_first_step_a_step_changes_no_python_state_so_it_can_be_recorded(digits, monkeypatch):
    """The condition for a CUDA graph (tests/infer/test_cuda_graphs.py, where a GPU also checks
    that recorded DReG steps equal eager ones), here for DReG under warm-up: the bound object
    itself included, whose one flag (the guide checked) the first step sets."""
    snapshots = []
    original = EagerSteps.__call__

    def state(step):
        return {**python_state(step), **{f"bound.{k}": repr(v) for k, v in vars(step.state.objective.elbo).items()}}

    def watched(self, batch):
        before = state(self.step)
        original(self, batch)
        snapshots.append((before, state(self.step)))

    monkeypatch.setattr(EagerSteps, "__call__", watched)
    objective = pg.infer.KLWarmup(2, elbo=pg.infer.DReGIWAE(3))
    pg.fit(small_vamp_hvae(digits), digits.train[:256], epochs=1, batch_size=32, objective=objective, device="cpu",
           progress=False)
    assert snapshots[0][0]["bound._guide_checked"] != snapshots[0][1]["bound._guide_checked"]
    for before, after in snapshots[1:]:
        assert before == after


@pytest.mark.parametrize("bound", [pg.IWAE, pg.infer.DReGIWAE])
@pytest.mark.parametrize("particles", [0, -1, 2.5, True, "5"])
def test_a_bad_number_of_particles_is_refused_when_the_bound_is_built(bound, particles):
    with pytest.raises(ValueError, match=rf"num_particles must be a positive integer, got {re.escape(repr(particles))}"):
        bound(particles)
