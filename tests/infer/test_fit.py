import math
import re

import pyro
import pytest
import torch

import probgen as pg
from probgen.infer import CheckpointError, NonFiniteLossError
from probgen.infer.fit import evaluate_loss


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


def small_vae():
    torch.manual_seed(0)
    return pg.VAE((8, 8), 4, likelihood="discretized_logistic", num_levels=17, hidden=(32, 32))


def test_history_best_epoch_and_restore_best(digits):
    vae = small_vae()
    result = pg.fit(vae, digits.train[:600], digits.valid[:200], epochs=4, progress=False)
    assert len(result.history["train_loss"]) == len(result.history["valid_loss"]) == 4
    best = min(range(4), key=result.history["valid_loss"].__getitem__) + 1
    assert result.best_epoch == best and result.best_loss == result.history["valid_loss"][best - 1]
    # the model ends with the best epoch's weights: its validation loss matches the record
    # (a fresh Monte Carlo evaluation differs from the record only by sampling noise)
    torch.manual_seed(1)
    again = evaluate_loss(vae, pg.infer.resolve_objective(vae), digits.valid[:200].to(vae.device), 200)
    assert abs(again - result.best_loss) < 1.0
    last = result.history["valid_loss"][-1]
    assert best == 4 or abs(again - last) > abs(again - result.best_loss) - 1.0


def test_checkpoint_round_trip_gives_the_same_log_likelihood(digits, tmp_path):
    vae = small_vae()
    pg.fit(vae, digits.train[:500], epochs=2, checkpoint_dir=tmp_path / "ck", progress=False)
    assert (tmp_path / "ck" / "last.pt").is_file() and (tmp_path / "ck" / "best.pt").is_file()
    pg.save_model(vae, tmp_path / "model.pt")
    reloaded = pg.load_model(tmp_path / "model.pt").to(vae.device)  # the same seed draws alike on one device
    x = digits.test[:40]
    a = pg.log_likelihood(vae, x, method="iwae", num_samples=50, seed=3)
    b = pg.log_likelihood(reloaded, x, method="iwae", num_samples=50, seed=3)
    torch.testing.assert_close(a.pointwise, b.pointwise)
    state = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["family"] == "vae"


def test_resume_repeats_an_uninterrupted_run(digits, tmp_path):
    train, valid = digits.train[:400], digits.valid[:100]
    whole = pg.fit(small_vae(), train, valid, epochs=4, seed=7, progress=False)
    pg.fit(small_vae(), train, valid, epochs=2, seed=7, checkpoint_dir=tmp_path, progress=False)
    resumed = pg.fit(small_vae(), train, valid, epochs=4, seed=7, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    assert resumed.history["valid_loss"] == whole.history["valid_loss"]
    assert resumed.best_epoch == whole.best_epoch


def test_a_corrupt_checkpoint_gives_a_clear_error(digits, tmp_path):
    (tmp_path / "last.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable probgen checkpoint"):
        pg.fit(small_vae(), digits.train[:100], epochs=1, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == b"\x00garbage"
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(CheckpointError):
        pg.load_model(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        pg.load_model(tmp_path / "missing.pt")


def test_an_existing_checkpoint_is_never_overwritten_without_resume(digits, tmp_path):
    pg.fit(small_vae(), digits.train[:100], epochs=1, checkpoint_dir=tmp_path, progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="resume=True"):
        pg.fit(small_vae(), digits.train[:100], epochs=1, checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_a_checkpoint_of_another_model_is_refused(digits, tmp_path):
    pg.fit(small_vae(), digits.train[:100], epochs=1, checkpoint_dir=tmp_path, progress=False)
    other = pg.VAE((8, 8), 3, likelihood="discretized_logistic", num_levels=17, hidden=(32, 32))
    with pytest.raises(CheckpointError, match="different model"):
        pg.fit(other, digits.train[:100], epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False)


class ExplodingObjective(pg.infer.SVIObjective):
    """Turns the loss non-finite at one step of the second epoch."""

    def __init__(self):
        super().__init__(pg.infer.parse_objective("elbo"))
        self.calls = 0

    def train_step(self, model, batch, update):
        self.calls += 1
        loss = self.loss(model, batch)
        if self.calls == 6:
            loss = loss * float("nan")
        update("model", loss)
        return loss.item()


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    vae = small_vae()
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, step 2.*last good checkpoint"):
        pg.fit(vae, digits.train[:512], epochs=3, batch_size=128, objective=ExplodingObjective(),
               checkpoint_dir=tmp_path, progress=False)
    state = pg.infer.load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in vae.parameters())


def test_early_stopping_on_validation_loss(digits):
    vae = small_vae()
    result = pg.fit(vae, digits.train[:300], digits.train[300:400], epochs=50, lr=3e-2, patience=2, progress=False)
    if result.stopped_early:
        assert result.epochs_run - result.best_epoch == 2 and result.epochs_run < 50
    else:  # never stalled for 2 epochs: then every epoch after best is within patience
        assert result.epochs_run == 50


def test_a_frozen_decoder_stays_fixed(digits):
    vae = small_vae()
    vae.decoder.requires_grad_(False)
    before = [p.clone() for p in vae.decoder.parameters()]
    encoder_before = vae.posterior_head.weight.clone()
    pg.fit(vae, digits.train[:256], epochs=1, progress=False)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(before, vae.decoder.parameters()))
    assert not torch.equal(encoder_before, vae.posterior_head.weight.cpu())


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"objective": "renyi"}, "unknown objective 'renyi'"),
        ({"lr": {"decoder": 1e-3}}, r"it has none for \[.model.\] and names no group \[.decoder.\]"),
        ({"resume": True}, "needs a checkpoint_dir"),
        ({"device": "cuda:0"} if not torch.cuda.is_available() else {"epochs": -1}, "CUDA is not available|positive integer"),
    ],
)
def test_bad_arguments_are_refused(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pg.fit(small_vae(), digits.train[:64], progress=False, **kwargs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_and_evaluate_on_cuda(digits):
    vae = small_vae()
    pg.fit(vae, digits.train[:512], epochs=1, device="cuda", progress=False)
    assert vae.device.type == "cuda"
    est = pg.log_likelihood(vae, digits.test[:50], method="iwae", num_samples=20)
    assert torch.isfinite(est.pointwise).all()


def test_cosine_lr_schedule_and_exact_resume_with_a_scheduler(digits, tmp_path):
    train, valid = digits.train[:300], digits.valid[:100]
    seen = []

    class Recording(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    pg.fit(small_vae(), train, epochs=4, batch_size=300, lr=1e-2, lr_schedule="cosine", optimizer=Recording,
           progress=False)
    expected = [1e-2 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert seen == pytest.approx(expected)
    halving = lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)  # noqa: E731
    whole = pg.fit(small_vae(), train, valid, epochs=4, seed=3, lr_schedule=halving, progress=False)
    pg.fit(small_vae(), train, valid, epochs=2, seed=3, lr_schedule=halving, checkpoint_dir=tmp_path, progress=False)
    resumed = pg.fit(small_vae(), train, valid, epochs=4, seed=3, lr_schedule=halving, checkpoint_dir=tmp_path,
                     resume=True, progress=False)
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    assert resumed.history["valid_loss"] == whole.history["valid_loss"]


def test_resuming_with_another_objective_is_refused_before_any_work(digits, tmp_path):
    train = digits.train[:200]
    pg.fit(small_vae(), train, epochs=1, objective="iwae:3", checkpoint_dir=tmp_path, progress=False)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["objective"] == "SVIObjective(IWAE(num_particles=3))"
    before = (tmp_path / "last.pt").read_bytes()
    for other, named in (("iwae:5", "IWAE(num_particles=5)"), ("elbo", "TraceELBO(num_particles=1)"),
                         (pg.infer.KLWarmup(10, elbo=pg.infer.IWAE(3)), "KLWarmup(epochs=10, elbo=IWAE(num_particles=3))")):
        with pytest.raises(ValueError, match=rf"objective='SVIObjective\(IWAE\(num_particles=3\)\)'.*{re.escape(named)}.*"
                                             "resume with the same objective"):
            pg.fit(small_vae(), train, epochs=2, objective=other, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == before
    resumed = pg.fit(small_vae(), train, epochs=2, objective="iwae:3", checkpoint_dir=tmp_path, resume=True,
                     progress=False)
    assert resumed.epochs_run == 2


def test_a_checkpoint_written_before_objectives_were_recorded_still_resumes(digits, tmp_path):
    train = digits.train[:200]
    pg.fit(small_vae(), train, epochs=1, checkpoint_dir=tmp_path, progress=False)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    del saved["objective"]
    torch.save(saved, tmp_path / "last.pt")
    resumed = pg.fit(small_vae(), train, epochs=2, objective="iwae:2", checkpoint_dir=tmp_path, resume=True,
                     progress=False)
    assert resumed.epochs_run == 2
    assert torch.load(tmp_path / "last.pt", weights_only=True)["objective"] == "SVIObjective(IWAE(num_particles=2))"


def test_resuming_with_another_lr_schedule_is_refused(digits, tmp_path):
    pg.fit(small_vae(), digits.train[:200], epochs=1, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="resume with the same lr_schedule"):
        pg.fit(small_vae(), digits.train[:200], epochs=2, lr_schedule="cosine", checkpoint_dir=tmp_path, resume=True,
               progress=False)
    with pytest.raises(ValueError, match="lr_schedule must be None, 'constant', 'cosine' or a callable"):
        pg.fit(small_vae(), digits.train[:200], epochs=1, lr_schedule="linear", progress=False)
    with pytest.raises(TypeError, match="not a torch.optim.lr_scheduler"):
        pg.fit(small_vae(), digits.train[:200], epochs=1, lr_schedule=lambda opt: 0.5, progress=False)


def test_cosine_over_the_last_epochs_holds_then_decays(digits, tmp_path):
    seen = []

    class Recording(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    pg.fit(small_vae(), digits.train[:300], epochs=5, batch_size=300, lr=1e-2, lr_schedule="cosine:2",
           optimizer=Recording, progress=False)
    # constant for the first 3 epochs; the last 2 take a half cosine from 1e-2 towards 0 (1e-2, then 5e-3)
    assert seen == pytest.approx([1e-2, 1e-2, 1e-2, 1e-2, 1e-2 * (1 + math.cos(math.pi / 2)) / 2])
    # "cosine:N" with N = epochs is the plain cosine
    seen.clear()
    pg.fit(small_vae(), digits.train[:300], epochs=4, batch_size=300, lr=1e-2, lr_schedule="cosine:4",
           optimizer=Recording, progress=False)
    assert seen == pytest.approx([1e-2 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    # "cosine:P%": the last P percent of the epochs, rounded: 40% of 5 is "cosine:2"
    seen.clear()
    pg.fit(small_vae(), digits.train[:300], epochs=5, batch_size=300, lr=1e-2, lr_schedule="cosine:40%",
           optimizer=Recording, progress=False)
    assert seen == pytest.approx([1e-2, 1e-2, 1e-2, 1e-2, 1e-2 * (1 + math.cos(math.pi / 2)) / 2])
    for bad in ("cosine:0", "cosine:6", "cosine:x", "cosine:", "linear:2", "cosine:0%", "cosine:101%", "cosine:%"):
        with pytest.raises(ValueError, match=r"'cosine:N' with N an integer from 1 to epochs \(5\)"):
            pg.fit(small_vae(), digits.train[:300], epochs=5, lr_schedule=bad, checkpoint_dir=tmp_path / "run",
                   progress=False)
    assert not (tmp_path / "run").exists()


def test_callbacks_see_every_epoch_with_its_record(digits):
    seen = []

    class Recorder(pg.infer.Callback):
        def on_epoch_start(self, state):
            seen.append(("start", state.epoch, len(state.history["train_loss"])))

        def on_epoch_end(self, state):
            seen.append(("end", state.epoch, len(state.history["train_loss"]), state.best_epoch))

    run = pg.fit(small_vae(), digits.train[:200], digits.valid[:50], epochs=3, callbacks=[Recorder()], progress=False)
    assert [entry[:3] for entry in seen] == [("start", 1, 0), ("end", 1, 1), ("start", 2, 1), ("end", 2, 2),
                                             ("start", 3, 2), ("end", 3, 3)]
    assert seen[-1][3] == run.best_epoch


def test_a_finite_loss_with_a_nan_gradient_never_reaches_a_checkpoint(tmp_path):
    """The step's loss is finite, its gradient NaN: the weights become NaN, and the loop stops
    before writing them, naming the last good checkpoint."""
    torch.manual_seed(0)
    flow = pg.Flow((2,), "maf", num_layers=1, hidden=8)
    x = torch.randn(64, 2)

    class NaNGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            return value.clone()

        @staticmethod
        def backward(ctx, grad):
            return torch.full_like(grad, math.nan)

    class PoisonSecondEpoch(pg.infer.SVIObjective):
        def begin_epoch(self, epoch):
            self.poison = epoch == 2

        def train_loss(self, model, batch):
            loss = super().train_loss(model, batch)
            return NaNGradient.apply(loss) if self.poison else loss

    objective = PoisonSecondEpoch(pyro.infer.Trace_ELBO())
    with pytest.raises(NonFiniteLossError, match=r"parameter .* NaN or infinite values after epoch 2.*last good checkpoint is"):
        pg.fit(flow, x, epochs=3, batch_size=64, objective=objective, checkpoint_dir=tmp_path, progress=False)
    saved = pg.infer.load_checkpoint(tmp_path / "last.pt")
    assert saved["epoch"] == 1 and all(torch.isfinite(v).all() for v in saved["model"].values())


def test_a_nan_validation_loss_stops_training(tmp_path):
    flow = pg.Flow((2,), "maf", num_layers=1, hidden=8)

    class NaNValidation(pg.infer.SVIObjective):
        def eval_loss(self, model, batch):
            return math.nan

    with pytest.raises(NonFiniteLossError, match="the valid loss is nan at epoch 1; nothing of this epoch was saved"):
        pg.fit(flow, torch.randn(64, 2), torch.randn(16, 2), epochs=2, objective=NaNValidation(pyro.infer.Trace_ELBO()),
               checkpoint_dir=tmp_path, progress=False)
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_data_of_another_float_dtype_take_the_models(dtype, digits):
    vae = small_vae()
    train = digits.train[:128].to(dtype)
    run = pg.fit(vae, train, epochs=1, progress=False)
    assert math.isfinite(run.best_loss)
    assert math.isfinite(pg.log_likelihood(vae, digits.test[:8].to(dtype), num_samples=2).mean)
    assert pg.psis_khat(vae, digits.test[:8].to(dtype), num_samples=30, warn=False).khat.shape == (8,)


@pytest.mark.parametrize("device", ["foo", "mps", "meta"])
def test_devices_other_than_cpu_and_cuda_are_refused(device, digits):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>'"):
        pg.fit(small_vae(), digits.train[:64], epochs=1, device=device, progress=False)
    with pytest.raises(ValueError, match=r"CUDA is not available on this machine|this machine has \d+ CUDA device"):
        pg.fit(small_vae(), digits.train[:64], epochs=1, device="cuda:63", progress=False)
