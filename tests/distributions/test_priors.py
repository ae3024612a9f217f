"""The mixture priors' distribution: the matrix-product log-density against the direct one."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from probgen.distributions import DiagonalNormalMixture, MixturePrior, VampPrior


def _mixtures(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    locs = 2 * torch.randn(30, 5, generator=g)
    scales = 0.01 + torch.rand(30, 5, generator=g)  # narrow components: the expanded square nearly cancels
    logits = torch.randn(30, generator=g)
    direct = dist.MixtureSameFamily(dist.Categorical(logits=logits.to(dtype)),
                                    dist.Normal(locs.to(dtype), scales.to(dtype)).to_event(1))
    return DiagonalNormalMixture(logits, locs, scales), direct


def test_log_prob_matches_the_direct_mixture_in_float64():
    mixture, exact = _mixtures(torch.float64)
    near = mixture.locs[:20] + mixture.scales[:20] * torch.randn(20, 5)  # at the narrow components
    z = torch.cat([near, 3 * torch.randn(20, 5)])
    assert mixture.log_prob(z).dtype == torch.float32
    torch.testing.assert_close(mixture.log_prob(z).double(), exact.log_prob(z.double()), atol=1e-4, rtol=1e-6)


def test_batches_plates_gradients_and_samples():
    mixture, _ = _mixtures()
    assert mixture.event_shape == (5,) and mixture.batch_shape == ()
    assert mixture.log_prob(torch.randn(4, 3, 5)).shape == (4, 3)
    with pyro.plate("data", 3, dim=-1):
        site = pyro.poutine.trace(lambda: pyro.sample("z", mixture)).get_trace().nodes["z"]
    assert site["value"].shape == (3, 5) and site["fn"].log_prob(site["value"]).shape == (3,)
    locs = mixture.locs.clone().requires_grad_(True)
    DiagonalNormalMixture(mixture.logits, locs, mixture.scales).log_prob(torch.randn(7, 5)).sum().backward()
    assert torch.isfinite(locs.grad).all() and locs.grad.abs().sum() > 0
    one = DiagonalNormalMixture(torch.zeros(1), torch.full((1, 2), 3.0), torch.full((1, 2), 0.5))
    draws = one.sample((20000,))
    torch.testing.assert_close(draws.mean(0), torch.full((2,), 3.0), atol=0.02, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.full((2,), 0.5), atol=0.02, rtol=0)


def test_the_named_mixture_priors_use_it():
    assert isinstance(MixturePrior(4)(), DiagonalNormalMixture)
    vamp = VampPrior(lambda u: (u.flatten(1)[:, :3], torch.ones(len(u), 3)), torch.rand(6, 2, 2))
    prior = vamp()
    assert isinstance(prior, DiagonalNormalMixture) and prior.locs.shape == (6, 3)


def test_a_vamp_prior_with_bounds_reads_its_pseudo_inputs_clamped_and_a_pinned_pixel_gets_no_gradient():
    start = torch.tensor([[[-0.5, 0.25], [0.75, 1.5]]])  # one pseudo-input, two pixels outside [0, 1]
    vamp = VampPrior(lambda u: (u.flatten(1), torch.ones(len(u), 4)), start, bounds=(0.0, 1.0))
    prior = vamp()
    torch.testing.assert_close(prior.locs, torch.tensor([[0.0, 0.25, 0.75, 1.0]]))
    prior.locs.sum().backward()
    torch.testing.assert_close(vamp.pseudo_inputs.grad.flatten(), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    free = VampPrior(lambda u: (u.flatten(1), torch.ones(len(u), 4)), start)
    torch.testing.assert_close(free().locs, start.flatten(1))
    for bounds in [(1.0, 0.0), (0.0,)]:
        with pytest.raises(ValueError, match=r"bounds must be None or \(low, high\) with low < high"):
            VampPrior(lambda u: u, start, bounds=bounds)
