"""The adversarial objective: losses, the per-sample gradient penalty, generic Pyro generators."""

from __future__ import annotations

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import probgen as pg
from probgen.infer.adversarial import AdversarialLoss, gradient_penalty, r1_penalty
from probgen.nn import pack, packed_event_shape


class Linear1(nn.Module):
    """A hand-made discriminator D(x) = w . x + c with known scores and gradients."""

    def __init__(self, w, c=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32))
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, x):
        return x @ self.w + self.c


class Quadratic(nn.Module):
    """D(x) = sum(x^3) / 3 + a . x: per-example gradients x^2 + a differ between examples."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([0.5, -1.0]))

    def forward(self, x):
        return (x**3).sum(-1) / 3 + x @ self.a


def test_losses_on_a_hand_made_discriminator():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-1.0, 3.0])
    # the discriminator scores data high and samples low; each loss is checked by hand
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    cases = {
        "nonsaturating": ((sp(-2) + sp(-0.5)) / 2 + (sp(-1) + sp(3)) / 2, (sp(1) + sp(-3)) / 2),
        "hinge": ((0 + 0.5) / 2 + (0 + 4) / 2, -(-1 + 3) / 2),
        "wgan-gp": ((-1 + 3) / 2 - (2 + 0.5) / 2, -(-1 + 3) / 2),
    }
    for loss, (d_expected, g_expected) in cases.items():
        assert AdversarialLoss(loss).discriminator_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-6)
        assert AdversarialLoss(loss).generator_loss(fake).item() == pytest.approx(g_expected, rel=1e-6)
    # a perfect discriminator: the losses reach their minima and the divergences their maxima
    big = torch.tensor([50.0])
    assert AdversarialLoss("nonsaturating").discriminator_loss(big, -big).item() == pytest.approx(0, abs=1e-6)
    assert AdversarialLoss("nonsaturating").divergence_estimate(0.0) == pytest.approx(math.log(2))
    hinge = AdversarialLoss("hinge")
    assert hinge.discriminator_loss(big, -big).item() == 0 and hinge.divergence_estimate(0.0) == 1
    # a discriminator that cannot tell them apart: divergence 0
    zero = torch.zeros(3)
    nonsaturating = AdversarialLoss("nonsaturating")
    assert nonsaturating.divergence_estimate(nonsaturating.discriminator_loss(zero, zero).item()) == pytest.approx(0, abs=1e-6)
    assert hinge.divergence_estimate(hinge.discriminator_loss(zero, zero).item()) == 0
    # the generator lowers its loss by raising the discriminator's score of its samples
    for loss in ("nonsaturating", "hinge", "wgan-gp"):
        assert AdversarialLoss(loss).generator_loss(fake + 1) < AdversarialLoss(loss).generator_loss(fake)
        assert AdversarialLoss(loss).discriminator_loss(real + 1, fake - 1) < AdversarialLoss(loss).discriminator_loss(real, fake)


def test_gradient_penalty_equals_a_per_example_computation():
    torch.manual_seed(0)
    d = Quadratic()
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    eps = torch.rand(6)
    penalty = gradient_penalty(d, real, fake, weight=10.0, epsilon=eps)
    direct = []
    for i in range(6):
        point = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).requires_grad_(True)
        (grad,) = torch.autograd.grad(d(point[None]).sum(), point)
        assert torch.allclose(grad, point.detach() ** 2 + d.a.detach())  # D's gradient by hand
        direct.append((grad.norm() - 1) ** 2)
    assert penalty.item() == pytest.approx(10.0 * torch.stack(direct).mean().item(), rel=1e-5)
    # differentiable in the discriminator's parameters (it is part of the critic's loss)
    (grad_a,) = torch.autograd.grad(penalty, d.a)
    assert torch.isfinite(grad_a).all() and grad_a.abs().sum() > 0
    # a 1-Lipschitz linear critic with unit-norm weights has zero penalty
    assert gradient_penalty(Linear1([0.6, 0.8]), real, fake).item() == pytest.approx(0, abs=1e-10)


def test_k_discriminator_steps_per_generator_step():
    gan = pg.GAN((2,), 2, hidden=(16,), loss="wgan-gp")
    assert gan.discriminator_steps == 5
    calls = []
    objective = pg.infer.Adversarial("wgan-gp", discriminator_steps=3)
    value = objective.train_step(gan, torch.randn(8, 2), lambda group, loss: calls.append(group))
    assert calls == ["discriminator"] * 3 + ["generator"] and math.isfinite(value)
    # the discriminator's parameters are trainable again after the generator step
    assert all(p.requires_grad for p in gan.discriminator.parameters())
    assert isinstance(pg.infer.resolve_objective(gan, "hinge:4"), pg.infer.Adversarial)
    assert pg.infer.resolve_objective(gan, "hinge:4").discriminator_steps == 4
    assert pg.infer.resolve_objective(gan).loss == "wgan-gp"


def test_a_vae_decoder_trains_as_a_generator():
    # any Pyro model with a reparameterized "x" site: here a VAE with a Normal likelihood
    torch.manual_seed(0)
    vae = pg.VAE((2,), 2, likelihood="normal", hidden=(16,))
    critic = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    objective = pg.infer.Adversarial("hinge", discriminator=critic)
    groups = objective.parameter_groups(vae)
    assert {id(p) for p in groups["discriminator"]} == {id(p) for p in critic.parameters()}
    decoder_before = [p.detach().clone() for p in vae.decoder.parameters()]
    encoder_before = [p.detach().clone() for p in vae.encoder.parameters()]
    data = pg.datasets.load("ring8").train[:256]
    pg.fit(vae, data, objective=objective, epochs=1, batch_size=64, progress=False)
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(decoder_before, vae.decoder.parameters()))
    # the encoder takes no part in generating, so it gets no gradient and does not move
    assert all(torch.equal(a, b.cpu()) for a, b in zip(encoder_before, vae.encoder.parameters()))
    # the objective's own discriminator went where the model trained
    assert {p.device for p in critic.parameters()} == {vae.device}


def test_adversarial_bad_input():
    with pytest.raises(ValueError, match="unknown adversarial loss 'ls'"):
        pg.infer.Adversarial("ls")
    with pytest.raises(ValueError, match="discriminator_steps must be a positive integer"):
        pg.infer.Adversarial(discriminator_steps=0)
    vae = pg.VAE((2,), 2, likelihood="bernoulli", hidden=(8,))
    with pytest.raises(TypeError, match="needs a discriminator module"):
        pg.fit(vae, torch.ones(4, 2), objective="hinge", epochs=1, progress=False)
    objective = pg.infer.Adversarial(discriminator=Linear1([1.0, 1.0]))
    with pytest.raises(ValueError, match="not reparameterized"):
        objective.train_step(vae, torch.ones(4, 2), lambda group, loss: None)

    class NoX(nn.Module):
        def model(self, x=None, num_data=1):
            with pyro.plate("data", num_data):
                pyro.sample("y", dist.Normal(torch.zeros(num_data), 1.0))

    with pytest.raises(ValueError, match="no sample site 'x'"):
        objective.train_step(NoX(), torch.ones(4, 2), lambda group, loss: None)
    gan = pg.GAN((2,), 2, discriminator=nn.Linear(2, 3))
    with pytest.raises(ValueError, match="one score per data point"):
        pg.fit(gan, torch.full((4, 2), 0.5), epochs=1, progress=False)


def test_pack_groups_consecutive_points():
    x = torch.arange(6 * 2.0).reshape(6, 2)
    packed = pack(x, 3)
    assert packed.shape == (2, 6) and torch.equal(packed[1], torch.cat([x[3], x[4], x[5]]))
    assert pack(x, 1) is x
    # single-channel images become channels; multi-channel images stack their channels
    assert packed_event_shape((8, 8), 2) == (2, 8, 8) and pack(torch.zeros(4, 8, 8), 2).shape == (2, 2, 8, 8)
    images = torch.randn(4, 3, 4, 4)
    assert packed_event_shape((3, 4, 4), 2) == (6, 4, 4)
    assert torch.equal(pack(images, 2)[1, 3:], images[3])
    with pytest.raises(ValueError, match="cannot pack 5 points into groups of 2"):
        pack(torch.zeros(5, 2), 2)


class FixedGenerator(nn.Module):
    """A "generator" whose x site holds given points, in order: known fake packs."""

    def __init__(self, points):
        super().__init__()
        self.points = points
        self.shift = nn.Parameter(torch.zeros(()))

    def model(self, x=None, num_data=1):
        with pyro.plate("data", num_data):
            return pyro.sample("x", dist.Delta(self.points[:num_data] + self.shift, event_dim=1))


@pytest.mark.parametrize("loss", ["nonsaturating", "hinge", "wgan-gp"])
def test_packed_losses_score_groups_of_points(loss):
    # D sees each group of 2 points as one 4-vector: the losses average over groups
    torch.manual_seed(0)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    d = Linear1([1.0, -2.0, 0.5, 3.0], c=0.25)
    objective = pg.infer.Adversarial(loss, discriminator=d, pack=2)
    model = FixedGenerator(fake)
    real_scores = real.reshape(3, 4) @ d.w.detach() + 0.25
    fake_scores = fake.reshape(3, 4) @ d.w.detach() + 0.25
    expected = AdversarialLoss(loss).divergence_estimate(AdversarialLoss(loss).discriminator_loss(real_scores, fake_scores).item())
    assert float(objective.eval_loss(model, real)) == pytest.approx(expected, rel=1e-5)
    losses = {}
    objective.train_step(model, real, lambda group, value: losses.setdefault(group, value.item()))
    assert losses["generator"] == pytest.approx(AdversarialLoss(loss).generator_loss(fake_scores).item(), rel=1e-5)
    if loss == "wgan-gp":
        # a linear critic's gradient is w everywhere: the penalty is per packed group
        penalty = 10 * (d.w.detach().norm() - 1) ** 2
        assert losses["discriminator"] == pytest.approx(
            AdversarialLoss(loss).discriminator_loss(real_scores, fake_scores).item() + penalty.item(), rel=1e-5)


def test_pack_defaults_to_the_model_and_fit_checks_batch_sizes(tmp_path):
    gan = pg.GAN((2,), 2, hidden=(16,), pack=4)
    assert gan.discriminator.net[0].in_features == 8  # built for packs of 4 points
    objective = pg.infer.resolve_objective(gan)
    assert objective.pack is None and objective._pack(gan) == 4
    assert pg.infer.Adversarial(pack=2)._pack(gan) == 2
    points = pg.datasets.load("grid25").train[:200]
    data = points[:96]
    run = pg.fit(gan, data, points[:40], epochs=1, batch_size=32, progress=False)
    assert all(math.isfinite(v) for v in run.history["train_loss"] + run.history["valid_loss"])
    # batches whose size is no multiple of 4 are refused before any work, nothing written;
    # e.g. 98 points in batches of 32 leave a last batch of 2
    for train, valid, batch_size, bad in ((points[:98], None, 32, "[2]"), (data, points[:42], 32, "[10]"),
                                          (data, None, 30, "[6, 30]")):
        with pytest.raises(ValueError, match=r"multiple of 4 points; these batch sizes are not: " + re.escape(bad)):
            pg.fit(gan, train, valid, epochs=1, batch_size=batch_size, checkpoint_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="pack must be a positive integer"):
        pg.infer.Adversarial(pack=0)
    with pytest.raises(ValueError, match="pack must be a positive integer"):
        pg.GAN((2,), 2, pack=1.5)


def test_r1_penalty_equals_a_per_example_computation():
    torch.manual_seed(0)
    d = Quadratic()
    real = torch.randn(5, 2)
    penalty = r1_penalty(d, real, weight=3.0)
    # D's gradient at x is x^2 + a, by hand: gamma/2 times the mean squared norm
    direct = ((real**2 + d.a.detach()) ** 2).sum(1).mean()
    assert penalty.item() == pytest.approx(1.5 * direct.item(), rel=1e-5)
    # the same value from scores computed once for the loss as well
    leaf = real.clone().requires_grad_(True)
    assert r1_penalty(d, leaf, 3.0, scores=d(leaf)).item() == pytest.approx(penalty.item(), rel=1e-6)
    with pytest.raises(ValueError, match="real must be the tensor"):
        r1_penalty(d, real, 3.0, scores=d(real))
    # differentiable in the discriminator's parameters: d/da of 1.5 mean |x^2 + a|^2 = 3 mean(x^2 + a)
    (grad_a,) = torch.autograd.grad(penalty, d.a)
    assert torch.allclose(grad_a, 3.0 * (real**2 + d.a.detach()).mean(0), rtol=1e-5)
    # a linear discriminator's gradient is w everywhere
    assert r1_penalty(Linear1([3.0, 4.0]), real, 2.0).item() == pytest.approx(25.0)


@pytest.mark.parametrize("loss", ["nonsaturating", "hinge", "wgan-gp"])
def test_r1_weight_adds_the_penalty_to_every_discriminator_step(loss):
    # with a linear D(x) = w . x + c the penalty is gamma/2 |w|^2 whatever the data, so the
    # discriminator's total minus its loss (read back from the recorded divergence) is known
    torch.manual_seed(0)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    d = Linear1([1.0, -2.0, 0.5, 3.0], c=0.25)  # packs of 2 points
    objective = pg.infer.Adversarial(loss, discriminator=d, pack=2, r1_weight=4.0, gp_weight=0.0,
                                     discriminator_steps=2)
    totals = []
    objective.train_step(FixedGenerator(torch.cat([fake, fake])), real,  # both draws of k = 2 are `fake`
                         lambda group, value: totals.append(value.item()) if group == "discriminator" else None)
    real_scores = real.reshape(3, 4) @ d.w.detach() + 0.25
    fake_scores = fake.reshape(3, 4) @ d.w.detach() + 0.25
    plain = AdversarialLoss(loss).discriminator_loss(real_scores, fake_scores).item()
    assert totals == pytest.approx([plain + 2.0 * (1 + 4 + 0.25 + 9)] * 2, rel=1e-5)
    # the data the step received are not modified or left requiring grad
    assert not real.requires_grad


def test_penalty_weights_default_to_the_model_and_are_checked(tmp_path):
    gan = pg.GAN((2,), 2, hidden=(16,), r1_weight=0.5, loss="wgan-gp", gp_weight=0.1)
    objective = pg.infer.resolve_objective(gan)
    assert objective.r1_weight is None and objective._r1_weight(gan) == 0.5
    plain = pg.GAN((2,), 2)
    assert objective._gp_weight(gan) == 0.1 and pg.infer.resolve_objective(plain)._gp_weight(plain) == 10.0
    # an objective built by hand also takes the model's weights unless given its own
    assert pg.infer.Adversarial("wgan-gp")._gp_weight(gan) == 0.1
    assert pg.infer.Adversarial("wgan-gp", gp_weight=5)._gp_weight(gan) == 5.0
    assert pg.infer.Adversarial()._gp_weight(pg.VAE((2,), 2, hidden=(8,))) == 10.0
    assert pg.infer.Adversarial(r1_weight=0)._r1_weight(gan) == 0.0  # an explicit weight wins
    assert pg.infer.Adversarial()._r1_weight(pg.VAE((2,), 2, hidden=(8,))) == 0.0
    run = pg.fit(gan, pg.datasets.load("ring8").train[:128], epochs=2, batch_size=32, progress=False)
    assert all(math.isfinite(v) for v in run.history["train_loss"])
    pg.save_model(gan, tmp_path / "gan.pt")
    loaded = pg.load_model(tmp_path / "gan.pt")
    assert loaded.r1_weight == 0.5 and pg.infer.resolve_objective(loaded)._gp_weight(loaded) == 0.1
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="r1_weight must be a non-negative finite number"):
            pg.infer.Adversarial(r1_weight=bad)
        with pytest.raises(ValueError, match="r1_weight must be a non-negative finite number"):
            pg.GAN((2,), 2, r1_weight=bad)
    with pytest.raises(ValueError, match="gp_weight must be a non-negative finite number"):
        pg.infer.Adversarial("wgan-gp", gp_weight=-1)
    with pytest.raises(ValueError, match="gp_weight must be a non-negative finite number"):
        pg.GAN((2,), 2, loss="wgan-gp", gp_weight=float("inf"))


def test_the_divergence_estimate_picks_no_best_epoch(tmp_path):
    """A GAN's validation loss is lowest where its discriminator is weakest: the loop records
    it but neither restores an earlier epoch nor stops early on it."""
    data = pg.datasets.load("ring8")
    torch.manual_seed(0)
    gan = pg.GAN(data.info, 2, hidden=(16,))
    run = pg.fit(gan, data.train[:512], data.valid[:128], epochs=3, batch_size=128, progress=False,
                 checkpoint_dir=tmp_path)
    assert len(run.history["valid_loss"]) == 3 and run.best_epoch == 3 and not (tmp_path / "best.pt").exists()
    last = pg.infer.load_checkpoint(tmp_path / "last.pt")["model"]
    for name, value in gan.state_dict().items():  # the model keeps the last epoch's weights
        assert torch.equal(value, last[name]), name
    with pytest.raises(ValueError, match="patience needs a loss that ranks epochs"):
        pg.fit(gan, data.train[:512], data.valid[:128], epochs=3, patience=1, progress=False)


def test_a_discriminator_of_the_objectives_own_is_checkpointed_and_resumed(tmp_path):
    data = pg.datasets.load("ring8").train[:256]

    def run(epochs, folder, resume=False):
        torch.manual_seed(0)
        vae = pg.VAE((2,), 2, likelihood="normal", hidden=(16,))
        critic = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
        objective = pg.infer.Adversarial("hinge", discriminator=critic)
        result = pg.fit(vae, data, objective=objective, epochs=epochs, batch_size=64, lr_schedule="constant", seed=2,
                        checkpoint_dir=folder, resume=resume, progress=False)
        return result, critic

    whole, whole_critic = run(3, tmp_path / "whole")
    run(1, tmp_path / "parts")
    # the resumed run starts from a fresh critic: only the checkpoint can give it epoch 1's weights
    resumed, resumed_critic = run(3, tmp_path / "parts", resume=True)
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    assert all(torch.equal(a, b) for a, b in zip(whole_critic.parameters(), resumed_critic.parameters()))
