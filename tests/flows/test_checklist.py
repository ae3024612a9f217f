"""The checklist every exposed flow passes, plain and conditional: shapes, gradients,
inverse, log-determinant against autograd, save/load."""

from __future__ import annotations

import io

import pytest
import torch

import probgen as pg

DIM, CONTEXT_DIM = 3, 2
CASES = [(kind, context_dim) for kind in pg.flows.FLOW_KINDS for context_dim in (None, CONTEXT_DIM)]
IDS = [f"{kind}-{'conditional' if c else 'plain'}" for kind, c in CASES]


def make(kind, context_dim, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    flow = pg.flows.build(kind, DIM, num_layers=2, hidden=16, context_dim=context_dim, mixing="lu")
    # move every parameter off its (near-identity) initial value so the checks see a generic flow
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow.to(dtype)


def transform(flow, context):
    # what a distribution uses: a view with its own log-det cache
    return flow.with_cache() if context is None else flow.condition(context)


def context_for(context_dim, batch, dtype=torch.float32):
    return None if context_dim is None else torch.randn(*batch, context_dim, dtype=dtype)


@pytest.mark.parametrize(("kind", "context_dim"), CASES, ids=IDS)
@pytest.mark.parametrize("batch", [(), (5,), (2, 3), (2, 1, 4)], ids=str)
def test_shapes(kind, context_dim, batch):
    flow = make(kind, context_dim)
    t = transform(flow, context_for(context_dim, batch))
    u = torch.randn(*batch, DIM)
    x = t(u)
    assert x.shape == u.shape
    assert t.log_abs_det_jacobian(u, x).shape == batch
    assert t.inv(x.clone()).shape == u.shape
    d = pg.flows.FlowDistribution(flow, DIM)(context_for(context_dim, batch))
    assert d.batch_shape == (batch if context_dim else ())
    assert d.log_prob(torch.randn(*batch, DIM)).shape == batch


@pytest.mark.parametrize("kind", pg.flows.FLOW_KINDS)
def test_context_broadcasts_over_particles(kind):
    flow = make(kind, CONTEXT_DIM)
    context = torch.randn(4, CONTEXT_DIM)
    u = torch.randn(6, 4, DIM)  # particles x data
    x = flow.condition(context)(u)
    one_by_one = torch.stack([flow.condition(context)(u[i]) for i in range(6)])
    torch.testing.assert_close(x, one_by_one)


@pytest.mark.parametrize(("kind", "context_dim"), CASES, ids=IDS)
def test_gradients_reach_every_parameter(kind, context_dim):
    flow = make(kind, context_dim)
    d = pg.flows.FlowDistribution(flow, DIM)(context_for(context_dim, (16,)))
    # both directions: scoring data (density direction) and reparameterized samples
    loss = -d.log_prob(torch.randn(16, DIM)).mean() + d.rsample().pow(2).mean()
    loss.backward()
    params = dict(flow.named_parameters())
    assert params
    missing = [name for name, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize(("kind", "context_dim"), CASES, ids=IDS)
def test_inverse_round_trip(kind, context_dim):
    flow = make(kind, context_dim)
    context = context_for(context_dim, (64,))
    u = torch.randn(64, DIM)
    x = transform(flow, context)(u)
    # a fresh transform and a fresh tensor: nothing comes from a cache
    u_back = transform(flow, context).inv(x.clone())
    assert (u_back - u).abs().max() < 1e-4
    x_back = transform(flow, context)(u_back.clone())
    assert (x_back - x).abs().max() < 1e-4


@pytest.mark.parametrize(("kind", "context_dim"), CASES, ids=IDS)
def test_log_det_matches_autograd_float64(kind, context_dim):
    flow = make(kind, context_dim, dtype=torch.float64)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(DIM, generator=g, dtype=torch.float64)
        context = None if context_dim is None else torch.randn(context_dim, generator=g, dtype=torch.float64)
        jacobian = torch.autograd.functional.jacobian(lambda v: transform(flow, context)(v), u)
        expected = torch.linalg.slogdet(jacobian).logabsdet
        t = transform(flow, context)
        x = t(u)
        cached = t.log_abs_det_jacobian(u, x)  # the log-det nflows returned with x
        recomputed = transform(flow, context).log_abs_det_jacobian(u.clone(), x.clone())  # density direction
        torch.testing.assert_close(cached, expected, atol=1e-8, rtol=1e-8)
        torch.testing.assert_close(recomputed, expected, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize(("kind", "context_dim"), CASES, ids=IDS)
def test_state_dict_round_trip(kind, context_dim):
    flow = make(kind, context_dim, seed=0)
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    buffer.seek(0)
    other = make(kind, context_dim, seed=1)  # different weights (and random permutations) before loading
    x = torch.randn(10, DIM)
    context = context_for(context_dim, (10,))
    before = pg.flows.FlowDistribution(other, DIM)(context).log_prob(x)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    expected = pg.flows.FlowDistribution(flow, DIM)(context).log_prob(x)
    assert not torch.allclose(before, expected)
    torch.testing.assert_close(pg.flows.FlowDistribution(other, DIM)(context).log_prob(x), expected)


@pytest.mark.parametrize("mixing", ["reverse", "random", "lu"])
def test_every_mixing_layer_inverts(mixing):
    flow = pg.flows.build("maf", 4, num_layers=3, hidden=8, mixing=mixing)
    u = torch.randn(7, 4)
    x = flow(u)
    assert (flow.inv(x.clone()) - u).abs().max() < 1e-4


def test_lu_linear_avoids_the_removed_torch_solvers():
    layer = pg.flows.LULinear(4, identity_init=False)
    x = torch.randn(5, 4)
    y, logdet = layer(x)
    x_back, logdet_back = layer.inverse(y)
    torch.testing.assert_close(x_back, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logdet_back, -logdet)
    torch.testing.assert_close(layer.weight_inverse() @ layer.weight(), torch.eye(4), atol=1e-5, rtol=1e-5)


def test_scoring_own_samples_reuses_the_cached_log_det(monkeypatch):
    # an IAF scores its own samples from the cache, without the D-pass density direction
    flow = pg.flows.build("iaf", 4, num_layers=2, hidden=8)
    d = pg.flows.FlowDistribution(flow, 4)()
    x = d.rsample((10,))
    expected = pg.flows.FlowDistribution(flow, 4)().log_prob(x.clone())

    def density_direction(*args, **kwargs):
        raise AssertionError("the flow was run in the density direction")

    monkeypatch.setattr(flow.nflows, "forward", density_direction)
    torch.testing.assert_close(d.log_prob(x), expected, atol=1e-5, rtol=1e-5)


def test_module_keeps_no_stale_cache():
    # the module itself caches nothing: the same tensor scored after a weight change
    # gets the new value (a view from with_cache() lives for one distribution only)
    flow = pg.flows.build("maf", 3, num_layers=2, hidden=8)
    base = pg.flows.FlowDistribution(flow, 3).base_distribution()
    d = torch.distributions.TransformedDistribution(base, [flow])
    x = torch.randn(5, 3)
    before = d.log_prob(x)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1)
    after = d.log_prob(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, pg.flows.FlowDistribution(flow, 3)().log_prob(x))
