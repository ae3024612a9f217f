import pytest
import torch

import probgen as pg
from probgen.distributions import DiscretizedLogistic, likelihood


@pytest.mark.parametrize(
    "name,levels,params",
    [("bernoulli", None, 1), ("categorical", 17, 17), ("discretized_logistic", 17, 2), ("normal", None, 2)],
)
def test_event_shape_and_batch_shape(name, levels, params):
    lik = likelihood(name, (8, 8), num_levels=levels)
    assert lik.num_params == params and lik.num_outputs == params * 64
    d = lik(torch.randn(5, 3, lik.num_outputs))
    assert tuple(d.event_shape) == (8, 8) and tuple(d.batch_shape) == (5, 3)
    x = d.sample()
    assert x.shape == (5, 3, 8, 8)
    assert d.log_prob(x).shape == (5, 3)
    assert lik.mean(torch.randn(4, lik.num_outputs)).shape == (4, 8, 8)


def test_discretized_logistic_is_a_probability_over_the_levels():
    loc = torch.linspace(-1.5, 1.5, 7)
    log_scale = torch.tensor([-6.0, -3.0, -1.0, 0.0, 1.0, -2.0, -4.0])
    d = DiscretizedLogistic(loc[:, None], log_scale[:, None], num_levels=17)
    levels = torch.arange(17.0)
    total = d.log_prob(levels.expand(7, 17)).exp().sum(-1)
    torch.testing.assert_close(total, torch.ones(7), atol=1e-5, rtol=0)


def test_discretized_logistic_matches_a_direct_cdf_difference():
    loc, scale, k = torch.tensor(0.1), torch.tensor(0.3), 5
    d = DiscretizedLogistic(loc, scale.log(), k)
    cdf = lambda y: torch.sigmoid((y - loc) / scale)  # noqa: E731
    h = 1 / (k - 1)
    centres = 2 * torch.arange(k) * h - 1
    expected = torch.stack([cdf(c + h) - cdf(c - h) for c in centres])
    expected[0], expected[-1] = cdf(centres[0] + h), 1 - cdf(centres[-1] - h)
    torch.testing.assert_close(d.log_prob(torch.arange(float(k))).exp(), expected, atol=1e-6, rtol=1e-5)


def test_categorical_log_prob_matches_its_logits():
    lik = likelihood("categorical", (3,), num_levels=4)
    out = torch.randn(12)
    x = torch.tensor([0.0, 3.0, 2.0])
    logits = out.reshape(4, 3).T
    expected = torch.log_softmax(logits, -1)[torch.arange(3), x.long()].sum()
    torch.testing.assert_close(lik(out).log_prob(x), expected)


def test_non_binary_data_is_refused_by_the_bernoulli_likelihood():
    lik = likelihood("bernoulli", (4,))
    with pytest.raises(ValueError, match=r"models binary values \{0, 1\}, but data holds 1 values off .*0\.5"):
        lik.validate(torch.tensor([[0.0, 1.0, 0.5, 1.0]]))


def test_values_off_the_level_grid_are_refused():
    lik = likelihood("discretized_logistic", (3,), num_levels=17)
    with pytest.raises(ValueError, match=r"integer levels \{0, 1, \.\.\., 16\}.*holds 2 values off"):
        lik.validate(torch.tensor([[0.0, 17.0, 2.5]]))
    lik.validate(torch.tensor([[0.0, 16.0, 3.0]]))


@pytest.mark.parametrize(
    "x,error,message",
    [
        (torch.zeros(3, 5), ValueError, r"shape \(num_data, 4\) for event_shape \(4,\), got \(3, 5\)"),
        (torch.zeros(0, 4), ValueError, "empty"),
        (torch.tensor([[0.0, float("nan"), 0.0, 1.0]]), ValueError, "NaN or infinite"),
        (torch.zeros(3, 4, dtype=torch.long), TypeError, "floating-point tensor"),
        ([[0.0] * 4], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_errors_name_what_was_expected(x, error, message):
    with pytest.raises(error, match=message):
        likelihood("normal", (4,)).validate(x)


def test_named_likelihoods_need_their_levels():
    with pytest.raises(ValueError, match="needs num_levels"):
        likelihood("categorical", (4,))
    with pytest.raises(ValueError, match="unknown likelihood"):
        likelihood("poisson", (4,))


def test_default_likelihood_follows_the_support():
    info = pg.datasets.load("optdigits").info
    lik = pg.distributions.likelihood_for(info)
    assert lik.support == "discrete" and lik.num_levels == 17
    assert lik.network_input(torch.tensor([16.0])).item() == 1.0
