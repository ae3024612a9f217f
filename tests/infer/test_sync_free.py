"""A training step that never waits for the device: probgen's ELBOs equal Pyro's in value
and gradient, every family's step reads nothing back to the host, and the loop's
non-finite-loss guard, read once per epoch, still keeps every non-finite update out."""

from __future__ import annotations

import contextlib
import sys

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import probgen as pg
from probgen.infer import MeanFieldELBO, NonFiniteLossError, TraceELBO
from tests.conftest import TRAINING_CASES, training_cases

fit_module = sys.modules["probgen.infer.fit"]


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


class Mixed(nn.Module):
    """A model with a non-reparameterized latent (Bernoulli, in a plate) under a Normal one,
    so the gradient has score-function terms as well as path derivatives."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.3, -0.2, 0.5]))
        self.q_logit = nn.Parameter(torch.tensor([0.1, -0.4, 0.2, 0.0]))
        self.q_loc = nn.Parameter(torch.tensor(0.2))

    def model(self, x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Bernoulli(logits=torch.zeros(len(x))))
            pyro.sample("x", dist.Normal(self.w[0] * z + self.w[1] * c + self.w[2], 1.0), obs=x)

    def guide(self, x):
        pyro.sample("z", dist.Normal(self.q_loc, 0.7))
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(logits=self.q_logit))


def loss_and_grads(elbo, model, guide, params, x, seed=0):
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(model, guide, x)
    grads = torch.autograd.grad(loss, params)
    return loss.detach(), grads


@pytest.mark.parametrize("num_particles", [1, 3])
def test_trace_elbo_equals_pyros_in_value_and_gradient_with_score_function_terms(num_particles):
    mixed, x = Mixed(), torch.tensor([0.5, -1.0, 2.0, 0.3])
    options = {"num_particles": num_particles, "vectorize_particles": num_particles > 1, "max_plate_nesting": 1}
    params = list(mixed.parameters())
    ours = loss_and_grads(TraceELBO(**options), mixed.model, mixed.guide, params, x)
    pyros = loss_and_grads(pyro.infer.Trace_ELBO(**options), mixed.model, mixed.guide, params, x)
    torch.testing.assert_close(ours[0], torch.as_tensor(pyros[0], dtype=ours[0].dtype), rtol=1e-6, atol=1e-6)
    for a, b in zip(ours[1], pyros[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert ours[1][1].abs().sum() > 0  # the Bernoulli's logits got a (score-function) gradient


def test_both_elbos_equal_pyros_on_a_vae(digits):
    vae = pg.VAE(digits.info, 4, hidden=(16,))
    params = [p for p in vae.parameters() if p.requires_grad]
    x = digits.train[:32]
    with vae.without_param_sites():
        for ours, pyros in ((TraceELBO(), pyro.infer.Trace_ELBO()),
                            (MeanFieldELBO(), pyro.infer.TraceMeanField_ELBO())):
            a = loss_and_grads(ours, vae.model, vae.guide, params, x)
            b = loss_and_grads(pyros, vae.model, vae.guide, params, x)
            torch.testing.assert_close(a[0], torch.as_tensor(b[0], dtype=a[0].dtype), rtol=1e-6, atol=1e-4)
            for ga, gb in zip(a[1], b[1]):
                torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-5)


def test_mean_field_falls_back_to_monte_carlo_where_no_closed_form_kl_exists():
    scale = nn.Parameter(torch.tensor(0.8))

    def model(x):
        z = pyro.sample("z", dist.StudentT(4.0, 0.0, 1.0))  # no KL(Normal || StudentT) in torch
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(0.1, scale))

    x = torch.tensor(0.4)
    a = loss_and_grads(MeanFieldELBO(), model, guide, [scale], x)
    b = loss_and_grads(pyro.infer.TraceMeanField_ELBO(), model, guide, [scale], x)
    torch.testing.assert_close(a[0], torch.as_tensor(b[0], dtype=a[0].dtype))
    torch.testing.assert_close(a[1][0], b[1][0])


def test_pyro_svi_trains_with_them():
    mixed, x = Mixed(), torch.tensor([0.5, -1.0, 2.0, 0.3])
    before = mixed.w.detach().clone()
    def model(x):
        pyro.module("mixed", mixed)  # SVI steps what the param store holds
        mixed.model(x)

    def guide(x):
        pyro.module("mixed", mixed)
        mixed.guide(x)

    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), TraceELBO())
    try:
        losses = [svi.step(x) for _ in range(5)]
    finally:
        pyro.clear_param_store()  # the global store is shared by every later test
    assert all(isinstance(loss, float) for loss in losses)
    assert not torch.equal(mixed.w.detach(), before)


@contextlib.contextmanager
def no_host_reads(monkeypatch):
    """Every Python-level read of a tensor's value (``.item()``, ``bool``, ``float``, ``int``,
    ``.tolist()``) raises: on a GPU each is a wait for the device."""

    def refuse(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            # torch's optimizers read their step counter, a host tensor even when training on a GPU
            if self.device.type == "cpu" and "torch/optim/" in sys._getframe(1).f_code.co_filename:
                return original(self, *args, **kwargs)
            raise AssertionError(f"the training step read a tensor back to the host ({name})")
        return read

    with monkeypatch.context() as patch:
        for name in ("item", "__bool__", "__float__", "__int__", "__index__", "tolist"):
            patch.setattr(torch.Tensor, name, refuse(name))
        yield


@pytest.mark.parametrize("name", TRAINING_CASES)
def test_no_training_step_reads_a_value_back_to_the_host(digits, monkeypatch, name):
    model, objective, data = training_cases(digits)[name]
    base = type(pg.infer.resolve_objective(model, objective))
    strict = pg.infer.resolve_objective(model, objective)

    class Strict(base):
        def train_step(self, model, batch, update):
            with no_host_reads(monkeypatch):  # the objective's step and the loop's update
                return super().train_step(model, batch, update)

    strict.__class__ = Strict
    run = pg.fit(model, data, epochs=2, batch_size=32, objective=strict, progress=False, device="cpu")
    assert len(run.history["train_loss"]) == 2 and all(map(torch.isfinite, map(torch.tensor, run.history["train_loss"])))


class NaNAt(pg.infer.SVIObjective):
    """The loss turns NaN at one step of one epoch."""

    def __init__(self, epoch, step):
        super().__init__(pg.infer.parse_objective("elbo"))
        self.at, self.epoch, self.step = (epoch, step), 0, 0

    def begin_epoch(self, epoch):
        self.epoch, self.step = epoch, 0

    def train_loss(self, model, batch):
        self.step += 1
        loss = super().train_loss(model, batch)
        return loss * float("nan") if (self.epoch, self.step) == self.at else loss


def test_a_nan_loss_leaves_the_model_as_the_epoch_before_left_it(digits, tmp_path):
    def run(objective, epochs, folder):
        torch.manual_seed(0)
        vae = pg.VAE(digits.info, 4, hidden=(16,))
        try:
            pg.fit(vae, digits.train[:256], epochs=epochs, batch_size=64, objective=objective, seed=3,
                   checkpoint_dir=folder, progress=False)
        except NonFiniteLossError as error:
            return vae, str(error)
        return vae, None

    clean, _ = run(pg.infer.parse_objective("elbo"), 1, tmp_path / "one")
    stopped, message = run(NaNAt(epoch=2, step=3), 3, tmp_path / "nan")
    assert message.startswith("the model loss is nan at epoch 2, step 3; no update of this epoch was kept")
    assert f"last good checkpoint is {tmp_path / 'nan' / 'last.pt'}" in message
    for a, b in zip(clean.state_dict().values(), stopped.state_dict().values()):
        assert torch.equal(a, b)  # the steps 1-2 of epoch 2 (finite) and the NaN step 3 are all undone
    saved = pg.infer.load_checkpoint(tmp_path / "nan" / "last.pt")
    reference = pg.infer.load_checkpoint(tmp_path / "one" / "last.pt")
    assert saved["epoch"] == 1 and saved["history"]["train_loss"] == reference["history"]["train_loss"]


def test_the_guard_reads_the_device_once_per_epoch_not_per_step(digits, monkeypatch):
    reads = []
    original = fit_module.LossWatch.first_non_finite
    monkeypatch.setattr(fit_module.LossWatch, "first_non_finite", lambda self: reads.append(1) or original(self))
    pg.fit(pg.VAE(digits.info, 4, hidden=(16,)), digits.train[:256], epochs=3, batch_size=32, progress=False)
    assert len(reads) == 3  # 8 steps an epoch, one read
