"""Oracles: an affine flow of a Gaussian is a Gaussian; a trained flow recovers a Gaussian's
log-likelihood."""

from __future__ import annotations

import pyro.distributions as dist
import torch

import probgen as pg


def test_single_affine_layer_on_standard_normal_is_the_closed_form_mvn():
    torch.manual_seed(0)
    dim = 4
    layer = pg.flows.LULinear(dim, identity_init=False)
    with torch.no_grad():
        layer.bias.normal_()
    flow = pg.flows.NflowsTransform(layer, dim)
    d = pg.flows.FlowDistribution(flow, dim)()
    # nflows maps data to noise, u = W x + b, so x = W^{-1}(u - b) ~ N(-W^{-1} b, W^{-1} W^{-T})
    with torch.no_grad():
        w_inv = torch.linalg.inv(layer.weight().double())
        mean = -w_inv @ layer.bias.double()
        mvn = torch.distributions.MultivariateNormal(mean, w_inv @ w_inv.T)
    x = torch.randn(100, dim) * 2
    torch.testing.assert_close(d.log_prob(x).double(), mvn.log_prob(x.double()), atol=1e-4, rtol=1e-5)
    # and its samples have that mean and covariance
    samples = d.sample((100000,)).double()
    torch.testing.assert_close(samples.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), mvn.covariance_matrix, atol=0.05, rtol=0.02)


def test_single_affine_autoregressive_step_with_a_gaussian_base_matches_its_gaussian():
    # one MAF step whose conditioner ignores its input is an affine map: scale s, shift m
    torch.manual_seed(1)
    flow = pg.flows.build("maf", 3, num_layers=1, hidden=8)
    made = flow.nflows._transforms[0].autoregressive_net
    with torch.no_grad():
        for p in made.parameters():
            p.zero_()
        made.final_layer.bias.normal_()
    x = torch.randn(50, 3)
    u, _ = flow.nflows(x)
    scale = (u[0] - u[1]) / (x[0] - x[1])  # constant per dimension
    shift = u[0] - scale * x[0]
    # u = s x + m, so x ~ N(-m/s, 1/s^2)
    expected = dist.Normal(-shift / scale, 1 / scale).to_event(1).log_prob(x)
    torch.testing.assert_close(pg.flows.FlowDistribution(flow, 3)().log_prob(x), expected, atol=1e-5, rtol=1e-5)


def test_trained_flow_recovers_a_gaussian_log_likelihood():
    torch.manual_seed(0)
    mean = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[2.0, 1.2], [1.2, 1.0]])
    truth = torch.distributions.MultivariateNormal(mean, cov)
    train, test = truth.sample((4000,)), truth.sample((4000,))
    flow = pg.Flow((2,), "maf", num_layers=2, hidden=16)
    pg.fit(flow, train, epochs=15, batch_size=200, lr=1e-2, progress=False)
    est = pg.log_likelihood(flow, test, method="exact")
    assert est.kind == "exact" and not est.is_bound
    exact = truth.log_prob(test).double().mean().item()
    assert abs(est.mean - exact) < 0.03, (est.mean, exact)
