"""pg.Flow: exact likelihoods on real data, dequantized bounds on discrete data, the Pyro
program, save/load, and clear errors."""

from __future__ import annotations

import copy
import math

import pyro.poutine as poutine
import pytest
import torch
from pyro.poutine.util import site_is_subsample

import probgen as pg


def perturbed(make, scale=0.1, seed=0):
    """A model from ``make()`` with every parameter moved off its (near-identity) start;
    seeded, so the result does not depend on which tests ran before."""
    torch.manual_seed(seed)
    flow = make()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
    return flow


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


# -- real data --------------------------------------------------------------------------


def test_real_flow_program_has_no_latent_sites():
    flow = pg.Flow((2,), "nsf", num_layers=2, hidden=8)
    x = torch.randn(5, 2)
    trace = poutine.trace(flow.model).get_trace(x)
    latent = [name for name in trace.stochastic_nodes if not site_is_subsample(trace.nodes[name])]
    assert latent == [] and trace.observation_nodes == ["x"]
    assert isinstance(trace.nodes["x"]["fn"], torch.distributions.TransformedDistribution)
    assert len(poutine.trace(flow.guide).get_trace(x).stochastic_nodes) == 0


@pytest.mark.parametrize("method", ["exact", "auto"])
def test_real_flow_likelihood_is_exact(method):
    flow = perturbed(lambda: pg.Flow((2,), "realnvp", num_layers=2, hidden=8))
    x = torch.randn(30, 2)
    est = pg.log_likelihood(flow, x, method=method)
    assert est.method == "exact" and est.kind == "exact" and not est.is_bound and est.density
    torch.testing.assert_close(est.pointwise, flow.log_prob(x).double())
    with torch.no_grad():
        trace = poutine.trace(flow.model).get_trace(x)
        torch.testing.assert_close(est.pointwise, trace.nodes["x"]["fn"].log_prob(x).double())


def test_image_shaped_real_data_and_samples():
    flow = pg.Flow((2, 3), "maf", num_layers=2, hidden=8)
    x = torch.randn(4, 2, 3)
    assert flow.log_prob(x).shape == (4,)
    assert flow.sample(6).shape == (6, 2, 3)


def test_fit_reduces_the_exact_nll():
    data = pg.datasets.load("moons")
    flow = pg.Flow((2,), "nsf", num_layers=2, hidden=16)
    before = pg.log_likelihood(flow, data.test[:1000]).mean
    result = pg.fit(flow, data.train[:2000], epochs=3, batch_size=200, lr=3e-3, progress=False)
    after = pg.log_likelihood(flow, data.test[:1000]).mean
    assert after > before + 0.5
    # the training loss is the exact NLL (no bound): it matches the likelihood on the same data
    est = pg.log_likelihood(flow, data.train[:2000])
    assert abs(-est.mean - result.history["train_loss"][-1]) < 0.2


def test_conditional_flow_density():
    flow = pg.Flow((2,), "maf", num_layers=2, hidden=8, context_dim=3)
    x, c = torch.randn(5, 2), torch.randn(5, 3)
    lp = flow.log_prob(x, given=c)
    assert lp.shape == (5,)
    assert not torch.allclose(lp, flow.log_prob(x, given=c + 1))
    assert flow.sample(5, given=c).shape == (5, 2)
    torch.testing.assert_close(pg.infer.log_weights(flow, x, 3, given=c), lp.expand(3, 5))


# -- discrete data ------------------------------------------------------------------------


def cell_probabilities(flow, num_levels, nodes=150):
    """log P(x) = log of the integral of the flow's density over the unit cell of x, for every
    x in {0..K-1}^2, in float64 by the midpoint rule in t = logit(y / K) (the substitution
    y = K sigmoid(t) makes the edge cells, which reach the boundary, finite and smooth)."""
    density = copy.deepcopy(flow).double().density()
    edges = torch.logit(torch.arange(num_levels + 1, dtype=torch.float64) / num_levels).clamp(-25, 25)
    one_dim = []
    for a in range(num_levels):
        width = (edges[a + 1] - edges[a]) / nodes
        t = edges[a] + (torch.arange(nodes, dtype=torch.float64) + 0.5) * width
        sig = torch.sigmoid(t)
        one_dim.append((num_levels * sig, (width * num_levels * sig * (1 - sig)).log()))
    levels, log_p = [], []
    for a in range(num_levels):
        for b in range(num_levels):
            y = torch.cartesian_prod(one_dim[a][0], one_dim[b][0])
            log_w = (one_dim[a][1][:, None] + one_dim[b][1][None, :]).reshape(-1)
            with torch.no_grad():
                log_p.append(torch.logsumexp(density.log_prob(y) + log_w, 0))
            levels.append([a, b])
    return torch.tensor(levels, dtype=torch.float32), torch.stack(log_p)


def test_dequantized_flow_accounts_for_every_jacobian():
    # with logit_alpha=0 the flow lives on (0, K)^D: its cell probabilities sum to one only
    # if the sigmoid's and the scaling's log-determinants are all in the density
    flow = perturbed(lambda: pg.Flow(pg.DataInfo((2,), "discrete", 3), "maf", num_layers=2, hidden=8, logit_alpha=0.0))
    levels, log_p = cell_probabilities(flow, 3)
    assert abs(log_p.exp().sum().item() - 1) < 2e-3


def test_dequantized_bounds_bracket_the_discrete_log_likelihood():
    flow = perturbed(lambda: pg.Flow(pg.DataInfo((2,), "discrete", 3), "maf", num_layers=2, hidden=8))
    levels, exact = cell_probabilities(flow, 3)
    elbo = pg.log_likelihood(flow, levels, method="elbo", num_samples=2000)
    iwae = pg.log_likelihood(flow, levels, method="iwae", num_samples=20000)
    assert elbo.is_bound and iwae.is_bound and not elbo.density
    assert (iwae.pointwise >= elbo.pointwise).all()
    assert (elbo.pointwise <= exact + 1e-3).all()
    # uniform dequantization: IWAE with many samples reaches log P(x)
    torch.testing.assert_close(iwae.pointwise, exact, atol=0.01, rtol=0)
    assert iwae.bits_per_dim == pytest.approx(-iwae.mean / (2 * math.log(2)))


def test_discrete_flow_offers_bounds_not_exact(digits):
    flow = pg.Flow(pg.DataInfo((8, 8), "discrete", 17), "maf", num_layers=1, hidden=16)
    assert flow.likelihood_methods == ("iwae", "elbo")
    assert pg.log_likelihood(flow, digits.test[:4], num_samples=3).method == "iwae"
    with pytest.raises(ValueError, match="not valid for Flow"):
        pg.log_likelihood(flow, digits.test[:4], method="exact")
    with pytest.raises(ValueError, match="for discrete data use pg.log_likelihood"):
        flow.log_prob(digits.test[:4])


def test_discrete_program_quantizes_a_flow_sample(digits):
    flow = pg.Flow(pg.DataInfo((8, 8), "discrete", 17), "maf", num_layers=1, hidden=16)
    x = digits.test[:6]
    guide = poutine.trace(flow.guide).get_trace(x)
    y = guide.nodes["y"]["value"]
    assert y.shape == (6, 64)
    assert ((y >= x.reshape(6, 64)) & (y <= x.reshape(6, 64) + 1)).all()
    model = poutine.trace(poutine.replay(flow.model, trace=guide)).get_trace(x)
    assert model.nodes["x"]["is_observed"] and (model.nodes["x"]["fn"].log_prob(x) == 0).all()
    samples = flow.sample(50)
    assert samples.shape == (50, 8, 8)
    assert ((samples >= 0) & (samples <= 16) & (samples == samples.round())).all()


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_discrete_flow_trains_and_iwae_beats_elbo(digits, dequantization):
    flow = pg.Flow(pg.DataInfo((8, 8), "discrete", 17), "maf", num_layers=2, hidden=32, dequantization=dequantization)
    x = digits.test[:50]
    before = pg.log_likelihood(flow, x, method="elbo", num_samples=5).mean
    pg.fit(flow, digits.train[:1000], epochs=2, batch_size=100, lr=3e-3, progress=False)
    elbo = pg.log_likelihood(flow, x, method="elbo", num_samples=20)
    iwae = pg.log_likelihood(flow, x, method="iwae", num_samples=20)
    assert elbo.mean > before + 10
    assert (iwae.pointwise >= elbo.pointwise).all()


def test_binary_flow(digits):
    flow = pg.Flow(pg.DataInfo((4,), "binary"), "realnvp", num_layers=2, hidden=8)
    x = (torch.rand(20, 4) < 0.3).float()
    est = pg.log_likelihood(flow, x, num_samples=10)
    assert est.is_bound and est.pointwise.shape == (20,) and (est.pointwise < 0).all()
    with pytest.raises(ValueError, match="binary values"):
        pg.log_likelihood(flow, torch.full((2, 4), 2.0))


# -- save / load ------------------------------------------------------------------------


@pytest.mark.parametrize("support", ["real", "discrete"])
def test_save_and_load_rebuilds_the_same_model(tmp_path, support):
    # "real" on integer data: a density on the levels, asked for explicitly
    info = pg.DataInfo((3,), support, 5 if support == "discrete" else None)
    flow = perturbed(lambda: pg.Flow(info, "nsf_coupling", num_layers=2, hidden=8, mixing="random"))
    x = torch.randint(0, 5, (10, 3)).float()
    path = pg.save_model(flow, tmp_path / "flow.pt")
    loaded = pg.load_model(path)
    assert isinstance(loaded, pg.Flow) and loaded.config == flow.config and loaded.info == info
    method = "exact" if support == "real" else "elbo"
    a = pg.log_likelihood(flow, x, method=method, num_samples=4)
    b = pg.log_likelihood(loaded, x, method=method, num_samples=4)
    torch.testing.assert_close(a.pointwise, b.pointwise)


# -- errors -----------------------------------------------------------------------------


def test_bad_input_gives_clear_errors(digits):
    flow = pg.Flow((2,), "maf", num_layers=1, hidden=8)
    with pytest.raises(ValueError, match=r"shape \(num_data, 2\)"):
        pg.log_likelihood(flow, torch.randn(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        pg.log_likelihood(flow, torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="NaN"):
        pg.fit(flow, torch.tensor([[0.0, float("nan")]]), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"data must have shape \(num_data, 2\)"):
        flow.log_prob(torch.randn(4, 3))
    discrete = pg.Flow(pg.DataInfo((8, 8), "discrete", 17), "maf", num_layers=1, hidden=8)
    with pytest.raises(ValueError, match=r"integer levels \{0, 1, \.\.\., 16\}"):
        pg.log_likelihood(discrete, digits.test[:3] + 0.5)


def test_missing_or_wrong_context_gives_clear_errors():
    flow = pg.Flow((2,), "maf", num_layers=1, hidden=8, context_dim=3)
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"conditional: pass given=<tensor of shape \(4, 3\)>"):
        flow.log_prob(x)
    with pytest.raises(ValueError, match=r"context must have shape \(\.\.\., 3\), got \(4, 2\)"):
        flow.log_prob(x, given=torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"one context per data point, shape \(4, 3\); got \(5, 3\)"):
        flow.log_prob(x, given=torch.randn(5, 3))
    with pytest.raises(ValueError, match="takes no context"):
        pg.Flow((2,), "maf", num_layers=1, hidden=8).log_prob(x, given=torch.randn(4, 3))


def test_bad_construction_gives_clear_errors():
    with pytest.raises(ValueError, match="unknown flow kind 'glow'"):
        pg.Flow((2,), "glow")
    with pytest.raises(ValueError, match="discrete data needs num_levels"):
        pg.Flow(pg.DataInfo((2,), "discrete"))
    with pytest.raises(TypeError, match=r"unknown options \['num_levels', 'support'\]"):
        pg.Flow((2,), support="discrete", num_levels=3)
    with pytest.raises(ValueError, match="dequantization must be"):
        pg.Flow(pg.DataInfo((2,), "discrete", 3), dequantization="gaussian")
    with pytest.raises(ValueError, match="vectors of size 3, but dim=2"):
        pg.Flow((2,), pg.flows.build("maf", 3, num_layers=1, hidden=4))
    with pytest.raises(ValueError, match="transform takes context_dim=2, but context_dim=None"):
        pg.Flow((2,), pg.flows.build("maf", 2, num_layers=1, hidden=4, context_dim=2))
