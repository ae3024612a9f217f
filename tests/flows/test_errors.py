"""Bad arguments and bad input to the flow builders, the bridge and flow distributions:
clear errors before any work."""

from __future__ import annotations

import pytest
import torch

import probgen as pg


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(kind="glow", dim=2), ValueError, r"unknown flow kind 'glow'; expected one of \['maf'"),
        (dict(kind="maf", dim=2, num_bins=4), TypeError, r"flow kind 'maf' got unknown options \['num_bins'\]"),
        (dict(kind="nsf", dim=2, mixing="householder"), ValueError, r"unknown mixing 'householder'; expected one of \['reverse', 'random', 'lu'\]"),
        (dict(kind="realnvp", dim=1), ValueError, r"needs dim >= 2, got 1"),
        (dict(kind="maf", dim=0), ValueError, r"dim must be a positive integer, got 0"),
        (dict(kind="maf", dim=2, num_layers=0), ValueError, r"num_layers must be a positive integer, got 0"),
        (dict(kind="maf", dim=2, hidden=2.5), ValueError, r"hidden must be a positive integer, got 2.5"),
        (dict(kind="maf", dim=2, context_dim=-1), ValueError, r"context_dim must be a positive integer, got -1"),
    ],
)
def test_builder_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        pg.flows.build(**kwargs)


def test_wrong_dimension():
    flow = pg.flows.build("maf", 3, num_layers=1, hidden=8)
    with pytest.raises(ValueError, match=r"vectors of size 3: expected input of shape \(\.\.\., 3\), got \(5, 2\)"):
        flow(torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"vectors of size 3: expected value of shape \(\.\.\., 3\), got \(5, 4\)"):
        flow.inv(torch.randn(5, 4))
    with pytest.raises(TypeError, match="must be a torch.Tensor, got list"):
        flow([0.0, 1.0, 2.0])


def test_nan_is_refused_by_flow_distributions():
    d = pg.flows.FlowDistribution(pg.flows.build("maf", 2, num_layers=1, hidden=8), 2)()
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([[0.0, float("nan")]]))


def test_missing_or_wrong_context():
    flow = pg.flows.build("maf", 3, num_layers=1, hidden=8, context_dim=2)
    d = pg.flows.FlowDistribution(flow, 3)
    with pytest.raises(ValueError, match=r"this flow is conditional: it needs a context of shape \(\.\.\., 2\), got None"):
        d()
    with pytest.raises(ValueError, match=r"the context must have shape \(\.\.\., 2\), got \(4, 3\)"):
        flow.condition(torch.randn(4, 3))
    with pytest.raises(TypeError, match="the context must be a torch.Tensor"):
        flow.condition([1.0, 2.0])
    with pytest.raises(ValueError, match=r"context's batch shape \(4,\) does not broadcast with the input's batch shape \(5,\)"):
        flow.condition(torch.randn(4, 2))(torch.randn(5, 3))
    plain = pg.flows.FlowDistribution(pg.flows.build("maf", 3, num_layers=1, hidden=8), 3)
    with pytest.raises(ValueError, match="this flow is not conditional: it takes no context"):
        plain(torch.randn(4, 2))


def test_flow_distribution_arguments():
    flow = pg.flows.build("maf", 3, num_layers=1, hidden=8)
    with pytest.raises(ValueError, match=r"the flow acts on vectors of size 3, but dim=2"):
        pg.flows.FlowDistribution(flow, 2)
    with pytest.raises(ValueError, match=r"base must have event_shape \(3,\) and batch_shape \(\)"):
        pg.flows.FlowDistribution(flow, 3, base=torch.distributions.Normal(torch.zeros(3), 1.0))
    with pytest.raises(TypeError, match="transform must be a torch/Pyro transform"):
        pg.flows.FlowDistribution(torch.nn.Linear(3, 3), 3)
