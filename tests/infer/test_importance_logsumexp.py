"""``importance_logsumexp``: torch.logsumexp's value, with no gradient through particles whose
weight is below eps^2 times the largest (their share of the gradient costs subnormal arithmetic and
could not register in the sum)."""

import math

import pytest
import torch

import probgen as pg
from probgen.infer.weights import importance_logsumexp, trace_log_weights
from tests.conftest import PPCA


def subnormal(t: torch.Tensor) -> torch.Tensor:
    return (t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)


def gradient(function, log_w):
    log_w = log_w.clone().requires_grad_(True)
    function(log_w, 0).sum().backward()
    return log_w.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_value_is_logsumexps_bit_for_bit(dtype):
    torch.manual_seed(0)
    log_w = 60 * torch.randn(50, 7, dtype=dtype)
    log_w[:, 3] = -math.inf
    log_w[5, 4] = -math.inf
    assert torch.equal(importance_logsumexp(log_w, 0), torch.logsumexp(log_w, 0))
    assert torch.equal(importance_logsumexp(log_w, 1), torch.logsumexp(log_w, 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_particles_below_eps_squared_get_no_gradient_and_the_rest_get_torchs(dtype):
    cut = 2 * math.log(torch.finfo(dtype).eps)  # -31.9 in float32, -72.1 in float64
    # per column: the best particle at 0, one just above the cut, one just below, one far below
    offsets = torch.tensor([0.0, cut + 0.5, cut - 0.5, -100.0, -2.0], dtype=dtype)
    log_w = offsets[:, None] + torch.tensor([[3.0, -250.0]], dtype=dtype)
    ours, torchs = gradient(importance_logsumexp, log_w), gradient(torch.logsumexp, log_w)
    kept = torch.tensor([True, True, False, False, True])
    assert torch.all(ours[~kept] == 0)
    assert torch.allclose(ours[kept], torchs[kept], rtol=1e-6, atol=0)
    assert torch.all(torchs[~kept] < torch.finfo(dtype).eps ** 2)  # what was left out
    # torch's own gradient reaches the subnormal range for the far particle in float32
    assert subnormal(torchs).any() == (dtype == torch.float32)
    assert not subnormal(ours).any()


def test_non_finite_weights_keep_their_value_and_give_no_gradient():
    log_w = torch.tensor([[-math.inf, 0.0, math.nan], [-math.inf, -1.0, 0.0]])
    value = importance_logsumexp(log_w, 0)
    assert value[0] == -math.inf and math.isclose(value[1].item(), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    assert math.isnan(value[2].item())
    grad = gradient(importance_logsumexp, log_w)
    assert torch.all(grad[:, 0] == 0) and torch.all(grad[:, 2] == 0)  # nothing to learn from, and no NaN
    assert torch.allclose(grad[:, 1], torch.softmax(log_w[:, 1], 0))


def test_the_iwae_objective_keeps_the_plain_bounds_value_and_gradient():
    # a sharp posterior (little noise) and an untrained guide: many particles fall below the cut
    oracle = PPCA(noise=0.05)
    torch.manual_seed(0)
    vae = oracle.vae()
    x = oracle.sample(64, seed=1)

    def loss_and_grads(logsumexp):
        vae.zero_grad()
        torch.manual_seed(2)
        log_w = trace_log_weights(vae.model, vae.guide, 50, x)
        loss = -(logsumexp(log_w, 0) - math.log(50)).sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in vae.parameters() if p.requires_grad], log_w.detach()

    plain, plain_grads, log_w = loss_and_grads(torch.logsumexp)
    left_out = log_w - log_w.amax(0) < 2 * math.log(torch.finfo(log_w.dtype).eps)
    assert left_out.float().mean() > 0.1, "the check needs particles below the cut"
    torch.manual_seed(2)
    assert torch.equal(pg.IWAE(50).differentiable_loss(vae.model, vae.guide, x).detach(), plain)
    ours, our_grads, _ = loss_and_grads(importance_logsumexp)
    assert torch.equal(ours, plain)
    assert len(our_grads) == len(plain_grads) > 0
    for a, b in zip(our_grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())
