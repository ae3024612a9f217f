"""``pg.fit(cuda_graph=...)``: the training step recorded once per batch size as a CUDA graph
and replayed per batch (probgen.infer.graphs).

The option's checks, the reasons for training eagerly and the checkpoint's portable optimizer
state are tested everywhere; what needs a GPU (a recorded step equals the eager one, fresh
noise per replay, no host sync, the NaN guard, every family recorded) is marked ``cuda``."""

from __future__ import annotations

import pytest
import torch

import probgen as pg
from probgen.infer import NonFiniteLossError
from probgen.infer.graphs import (
    CapturedSteps,
    EagerSteps,
    graph_obstacle,
    make_capturable,
    portable_optimizer_state,
    release_capturable,
)
from tests.conftest import TRAINING_CASES, training_cases


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


def small_vae(digits):
    torch.manual_seed(0)
    return pg.VAE(digits.info, 4, hidden=(16,))


@pytest.mark.parametrize("value", ["yes", 1, None, "captured"])
def test_cuda_graph_takes_auto_true_or_false_and_is_checked_before_any_work(digits, tmp_path, value):
    with pytest.raises(ValueError, match=r"cuda_graph must be 'auto', True or False, got"):
        pg.fit(small_vae(digits), digits.train[:64], epochs=1, cuda_graph=value, checkpoint_dir=tmp_path / "run",
               progress=False)
    assert not (tmp_path / "run").exists()


def test_cuda_graph_true_on_the_cpu_says_it_needs_a_cuda_device(digits, tmp_path):
    with pytest.raises(ValueError, match="cuda_graph=True, but the model trains on cpu; CUDA graphs need a CUDA device"):
        pg.fit(small_vae(digits), digits.train[:64], epochs=1, device="cpu", cuda_graph=True,
               checkpoint_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_on_the_cpu_every_step_is_eager_and_the_result_says_why(digits):
    run = pg.fit(small_vae(digits), digits.train[:64], epochs=1, device="cpu", progress=False)
    assert run.step_mode == "eager" and "CUDA graphs need a CUDA device" in run.eager_reason
    run = pg.fit(small_vae(digits), digits.train[:64], epochs=1, device="cpu", cuda_graph=False, progress=False)
    assert run.step_mode == "eager" and run.eager_reason == "cuda_graph=False"


def test_the_obstacles_to_recording_are_named():
    cuda = torch.device("cuda")
    assert graph_obstacle(cuda, False, torch.optim.Adam) is None
    assert graph_obstacle(cuda, False, torch.optim.AdamW) is None
    assert "torch.optim.sgd.SGD has no capturable option" in graph_obstacle(cuda, False, torch.optim.SGD)
    assert "distributed run" in graph_obstacle(cuda, True, torch.optim.Adam)
    assert "trains on cpu" in graph_obstacle(torch.device("cpu"), False, torch.optim.Adam)


def test_an_objective_that_changes_in_python_between_epochs_is_not_recorded():
    class Annealed(pg.infer.SVIObjective):  # a temperature set per epoch, in Python
        def begin_epoch(self, epoch):
            self.temperature = 1.0 / epoch

    cuda = torch.device("cuda")
    annealed = Annealed(pg.infer.parse_objective("elbo"))
    assert "Annealed changes in Python between epochs" in graph_obstacle(cuda, False, torch.optim.Adam, annealed)
    svi = [pg.infer.SVIObjective(pg.infer.parse_objective(name)) for name in ("elbo", "iwae", "terms")]
    for recordable in (*svi, pg.infer.KLWarmup(5), pg.infer.Adversarial("hinge")):
        assert graph_obstacle(cuda, False, torch.optim.Adam, recordable) is None


def test_a_capturable_optimizer_is_saved_portably_and_its_schedule_moves_the_rate_in_place():
    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
    layer(torch.randn(4, 3)).sum().backward()
    opt.step()
    make_capturable(opt)
    rate = opt.param_groups[0]["lr"]
    assert isinstance(rate, torch.Tensor) and opt.param_groups[0]["capturable"]
    scheduler.step()
    assert opt.param_groups[0]["lr"] is rate and float(rate) == pytest.approx(0.005)  # the same tensor: a replay sees it

    saved = portable_optimizer_state(opt)
    assert saved["param_groups"][0]["lr"] == pytest.approx(0.005) and not saved["param_groups"][0]["capturable"]
    assert opt.param_groups[0]["lr"] is rate  # the live optimizer is untouched
    fresh = torch.optim.Adam(layer.parameters(), lr=0.01)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.005)
    assert torch.equal(fresh.state[layer.weight]["exp_avg"], opt.state[layer.weight]["exp_avg"])


def test_an_optimizer_released_for_eager_steps_holds_numbers_and_host_step_counts():
    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    layer(torch.randn(4, 3)).sum().backward()
    opt.step()
    make_capturable(opt)
    release_capturable(opt)
    group = opt.param_groups[0]
    # a rate held as a float32 tensor comes back rounded to float32, as the kernels used it
    assert group["lr"] == pytest.approx(0.01, rel=1e-7) and not isinstance(group["lr"], torch.Tensor)
    assert not group["capturable"]
    assert opt.state[layer.weight]["step"].device.type == "cpu"
    layer(torch.randn(4, 3)).sum().backward()
    opt.step()  # an eager step as before
    assert float(opt.state[layer.weight]["step"]) == 2


def python_state(step) -> dict:
    """What a recorded step could not change: every attribute of the loop's optimization and
    loss notes, the weight average, the objective and the optimizers' groups and states, as
    values (numbers, strings) or identities (tensors, other objects). A replay writes into the
    tensors it was recorded with and runs no Python, so a step that rebinds a tensor or moves a
    number would count, note or schedule differently under a graph."""
    optimization, objective = step.optimization, step.state.objective
    roots = {"watch": vars(optimization.watch), "objective": vars(objective),
             "optimization": {k: v for k, v in vars(optimization).items() if k not in ("batch_fraction",)},
             "notes": optimization.watch.notes, "grad_norms": optimization.grad_norms or {}}
    if optimization.average is not None:
        roots["average"] = vars(optimization.average)
    for name, opt in optimization.optimizers.items():
        for i, group in enumerate(opt.param_groups):
            roots[f"{name} group {i}"] = {k: v for k, v in group.items() if k != "params"}
        for i, state in enumerate(opt.state.values()):
            roots[f"{name} state {i}"] = state

    def seen(value):
        if isinstance(value, (bool, int, float, str, type(None))):
            return value
        if isinstance(value, (list, tuple)):
            return tuple(seen(v) for v in value)
        return ("object", id(value))

    return {f"{root}.{key}": seen(value) for root, values in roots.items() for key, value in values.items()}


@pytest.mark.parametrize("name", TRAINING_CASES)
def test_a_training_step_changes_tensors_in_place_and_no_python_state(digits, monkeypatch, name, tmp_path):
    """The condition for recording a step as a CUDA graph, checked on the CPU for every family:
    after the first steps (which create the optimizers' state), a step rebinds no tensor and
    changes no number of the loop, the objective or the optimizers."""
    model, objective, data = training_cases(digits)[name]
    snapshots = []
    original = EagerSteps.__call__

    def watched(self, batch):
        before = python_state(self.step)
        original(self, batch)
        snapshots.append((before, python_state(self.step)))

    monkeypatch.setattr(EagerSteps, "__call__", watched)
    pg.fit(model, data, epochs=1, batch_size=32, objective=objective, device="cpu", progress=False,
           log_dir=tmp_path / "logs")  # with logs: the gradient-norm sums too
    assert len(snapshots) >= 6
    for before, after in snapshots[3:]:
        changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
        assert not changed, f"a step of {name} changed {sorted(changed)}"


def test_the_warm_up_weight_reaches_the_step_as_one_tensor_that_each_epoch_updates(digits, monkeypatch):
    """A recorded step reads the weight it was recorded with: the epoch's weight must arrive in
    that same tensor (a Python number would stay at the recording epoch's value)."""
    warmup, vae = pg.infer.KLWarmup(epochs=4), small_vae(digits)
    seen = []
    original = pg.infer.objectives._ScaleLatents.__init__
    monkeypatch.setattr(pg.infer.objectives._ScaleLatents, "__init__",
                        lambda self, factor: seen.append(factor) or original(self, factor))
    for epoch in (1, 2, 3):
        warmup.begin_epoch(epoch)
        warmup.train_loss(vae, digits.train[:8])
    assert all(isinstance(factor, torch.Tensor) and factor is seen[0] for factor in seen)
    assert float(seen[0]) == 0.75  # the last epoch's weight, in the first step's tensor


# --- on a GPU --------------------------------------------------------------------------------


class NaNAtStep(pg.infer.SVIObjective):
    """The loss turns NaN at one step of the run, counted on the device (a recorded step runs
    its Python once, so the count cannot be a Python number)."""

    def __init__(self, at):
        super().__init__(pg.infer.parse_objective("elbo"))
        self.at, self.count = at, None

    def train_loss(self, model, batch):
        if self.count is None:
            self.count = torch.zeros((), dtype=torch.long, device=batch.device)
        self.count.add_(1)
        loss = super().train_loss(model, batch)
        return loss + torch.where(self.count == self.at, float("nan"), 0.0)


def small_vamp_hvae(digits):
    torch.manual_seed(0)
    return pg.HierarchicalVAE(digits.info, (4, 2), hidden=(16,), inference="top-down", prior="vamp",
                              num_pseudo_inputs=5)


# name -> (model, objective, epochs, relative tolerance of the losses, relative and absolute
# tolerance of the weights): the plain VAE, and the doubly reparameterized IWAE gradient under
# warm-up, whose backward pass scales the draws' gradient in a hook by factors the forward pass
# leaves in a tensor
RECORDED_CASES = {
    "vae": (small_vae, lambda: None, 2, 1e-5, 1e-4, 1e-5),
    "hvae dreg warm-up": (small_vamp_hvae, lambda: pg.infer.KLWarmup(2, elbo=pg.infer.DReGIWAE(3)), 3, 1e-4, 1e-3,
                          1e-4),
}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", RECORDED_CASES)
def test_recorded_steps_equal_eager_steps_on_the_same_batches_and_noise(digits, case):
    build, objective, epochs, loss_tolerance, weight_rtol, weight_atol = RECORDED_CASES[case]
    runs = {}
    for mode in (False, True):
        model = build(digits)
        run = pg.fit(model, digits.train[:640], epochs=epochs, batch_size=64, objective=objective(), device="cuda",
                     seed=5, cuda_graph=mode, progress=False)
        runs[mode] = (run, model)
    (eager, eager_model), (graphed, graphed_model) = runs[False], runs[True]
    assert graphed.step_mode == "captured" and graphed.eager_reason is None
    assert graphed.history["train_loss"] == pytest.approx(eager.history["train_loss"], rel=loss_tolerance)
    for a, b in zip(eager_model.parameters(), graphed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=weight_rtol, atol=weight_atol)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_each_replay_draws_fresh_noise_the_numbers_an_eager_step_would_draw():
    out = torch.zeros(4, device="cuda")

    class Draw:
        def __call__(self, batch):
            out.copy_(batch + torch.randn(4, device="cuda"))

        def rewind(self):
            pass

    batch = torch.zeros(4, device="cuda")
    torch.manual_seed(3)
    recorded, steps = [], CapturedSteps(Draw(), required=True)
    for _ in range(7):
        steps(batch)
        recorded.append(out.clone())
    assert steps.mode == "captured"
    torch.manual_seed(3)
    eager = []
    for _ in range(7):
        Draw()(batch)
        eager.append(out.clone())
    for a, b in zip(recorded, eager):
        torch.testing.assert_close(a, b)
    assert not torch.equal(recorded[-1], recorded[-2])  # replays 4 and 5 drew different noise


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_under_graphs_reaches_the_eager_validation_loss(digits):
    losses = {}
    for mode in (False, True):
        run = pg.fit(small_vae(digits), digits.train[:1024], digits.valid[:256], epochs=6, batch_size=64,
                     device="cuda", cuda_graph=mode, progress=False)
        losses[mode] = run.history["valid_loss"][-1]
    assert losses[True] == pytest.approx(losses[False], rel=0.01)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", TRAINING_CASES)
def test_every_family_records_its_step_and_replays_never_wait_for_the_host(digits, monkeypatch, name):
    model, objective, data = training_cases(digits)[name]
    original = CapturedSteps.__call__

    def strict(self, batch):  # every replay under the sync check
        if batch.shape in self.graphs:
            torch.cuda.set_sync_debug_mode("error")
            try:
                return original(self, batch)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return original(self, batch)

    monkeypatch.setattr(CapturedSteps, "__call__", strict)
    run = pg.fit(model, data, epochs=2, batch_size=32, objective=objective, device="cuda", cuda_graph=True,
                 progress=False, log_dir=None)
    assert run.step_mode == "captured", run.eager_reason
    assert all(torch.isfinite(torch.tensor(run.history["train_loss"])))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_nan_guard_holds_under_graphs(digits, tmp_path):
    def run(objective, epochs, folder, mode):
        vae = small_vae(digits)
        try:
            result = pg.fit(vae, digits.train[:256], epochs=epochs, batch_size=32, objective=objective, seed=3,
                            device="cuda", cuda_graph=mode, checkpoint_dir=folder, progress=False)
        except NonFiniteLossError as error:
            return vae, str(error)
        assert result.step_mode == ("captured" if mode else "eager")
        return vae, None

    clean, _ = run(pg.infer.parse_objective("elbo"), 1, tmp_path / "one", True)
    stopped, message = run(NaNAtStep(at=8 + 6), 3, tmp_path / "nan", True)  # epoch 2, step 6: a replay
    assert message.startswith("the model loss is nan at epoch 2, step 6; no update of this epoch was kept")
    for a, b in zip(clean.state_dict().values(), stopped.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert pg.infer.load_checkpoint(tmp_path / "nan" / "last.pt")["epoch"] == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_recorded_on_the_gpu_resumes_on_the_cpu_and_records_again_on_the_gpu(digits, tmp_path):
    folder = tmp_path / "run"
    pg.fit(small_vae(digits), digits.train[:256], epochs=1, batch_size=32, device="cuda", cuda_graph=True,
           checkpoint_dir=folder, progress=False)
    cpu = pg.fit(small_vae(digits), digits.train[:256], epochs=2, batch_size=32, device="cpu",
                 checkpoint_dir=folder, resume=True, progress=False)
    assert cpu.epochs_run == 2 and cpu.step_mode == "eager"
    gpu = pg.fit(small_vae(digits), digits.train[:256], epochs=3, batch_size=32, device="cuda", cuda_graph=True,
                 checkpoint_dir=folder, resume=True, progress=False)
    assert gpu.epochs_run == 3 and gpu.step_mode == "captured"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_too_short_to_record_says_so(digits):
    run = pg.fit(small_vae(digits), digits.train[:96], epochs=1, batch_size=32, device="cuda", progress=False)
    assert run.step_mode == "eager" and "no batch size came to more than 3 steps" in run.eager_reason


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_trains_eagerly_and_says_why_when_the_step_reads_a_value_back(digits, capsys):
    elbo = pg.infer.SVIObjective(__import__("pyro").infer.Trace_ELBO())  # Pyro's: an .item() per site
    run = pg.fit(small_vae(digits), digits.train[:256], epochs=1, batch_size=32, device="cuda", objective=elbo)
    assert run.step_mode == "eager" and "waits for the host" in run.eager_reason
    assert "cuda_graph: training eagerly, because the training step waits for the host" in capsys.readouterr().out
    run = pg.fit(small_vae(digits), digits.train[:256], epochs=1, batch_size=32, device="cuda",
                 optimizer=torch.optim.SGD)
    assert run.step_mode == "eager" and "SGD has no capturable option" in run.eager_reason
    assert "cuda_graph: training eagerly, because torch.optim.sgd.SGD has no capturable" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="cuda_graph=True, but the training step waits for the host"):
        pg.fit(small_vae(digits), digits.train[:256], epochs=1, batch_size=32, device="cuda", objective=elbo,
               cuda_graph=True, progress=False)
