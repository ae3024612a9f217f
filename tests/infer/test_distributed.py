"""Data-parallel training on torch.distributed: two gloo processes launched by torchrun
(``tests/infer/distributed_script.py``) against the same calls in one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import probgen as pg
from probgen.infer.distributed import Ranks

SCRIPT = Path(__file__).with_name("distributed_script.py")


def launch(out: Path, mode: str, *extra: str) -> list[dict]:
    """Run the script on two processes; what each rank recorded."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *extra,
               str(SCRIPT), str(out), mode]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def one_process_flow(epochs=3):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import distributed_script as script
    finally:
        sys.path.pop(0)
    x = script.flow_data()
    flow = script.small_flow()
    run = pg.fit(flow, x, x[:101], epochs=epochs, batch_size=64, progress=False, device="cpu")
    return flow, run, x


@pytest.mark.parametrize("world_size", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [1, 7, 64, 65])
def test_shares_split_every_batch_into_contiguous_parts(world_size, n):
    shares = [Ranks(r, world_size, r).share(n) for r in range(world_size)]
    assert [i for s in shares for i in range(n)[s]] == list(range(n))
    assert max(s.stop - s.start for s in shares) - min(s.stop - s.start for s in shares) <= 1


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("families")
    return out, launch(out, "families")


def test_a_flow_on_real_data_follows_the_single_process_run(two_processes):
    _, ranks = two_processes
    flow, run, x = one_process_flow()
    for record in ranks:
        torch.testing.assert_close(torch.tensor(record["flow"]["train"]), torch.tensor(run.history["train_loss"]),
                                   rtol=1e-5, atol=0)
        torch.testing.assert_close(torch.tensor(record["flow"]["valid"]), torch.tensor(run.history["valid_loss"]),
                                   rtol=1e-5, atol=0)
        torch.testing.assert_close(torch.tensor(record["flow"]["params"]),
                                   torch.tensor([float(p.detach().double().sum()) for p in flow.parameters()]),
                                   rtol=1e-4, atol=1e-5)
        # sharded exact evaluation: every rank has every point's value, in order
        exact = pg.log_likelihood(flow, x[:37]).pointwise
        torch.testing.assert_close(torch.tensor(record["flow"]["exact"], dtype=torch.float64), exact,
                                   rtol=1e-4, atol=1e-5)
        assert record["resumed"] == ranks[0]["flow"]["train"]  # resume repeats the run, here too


def test_noisy_families_keep_the_ranks_in_step_and_agree_statistically(two_processes):
    out, (first, second) = two_processes
    for family in ("vae", "diffusion", "gan"):
        assert first["noisy"][family]["params"] == second["noisy"][family]["params"], family
    # one process, same calls: the validation losses agree within the noise of the estimates
    digits = pg.datasets.load("optdigits")
    torch.manual_seed(0)
    vae = pg.VAE(digits.info, 4, hidden=(32,))
    run = pg.fit(vae, digits.train[:640], digits.valid[:128], epochs=4, batch_size=64, progress=False, device="cpu")
    assert abs(first["noisy"]["vae"]["valid"][-1] - run.history["valid_loss"][-1]) < 0.03 * run.history["valid_loss"][-1]
    iwae = pg.log_likelihood(vae, digits.test[:40], method="iwae", num_samples=20)
    sharded = torch.tensor(first["noisy"]["vae"]["iwae"], dtype=torch.float64)
    assert sharded.shape == (40,) and second["noisy"]["vae"]["iwae"] == first["noisy"]["vae"]["iwae"]
    assert abs(sharded.mean() - iwae.mean) < 3 * (sharded.std() / 40**0.5 + iwae.stderr)
    # sharded compare and PSIS: every rank has every point, in order
    torch.testing.assert_close(torch.tensor(first["compare"], dtype=torch.float64),
                               torch.tensor(first["flow"]["exact"], dtype=torch.float64))
    assert len(first["khat"]) == 30 and first["khat"] == second["khat"]

    # diffusion and GAN: the two-process result lies among one-process runs of other seeds
    # (widened by their spread, or 5%): its loss draws noise, so it can only agree in law
    x = one_process_flow(epochs=1)[2]
    diffusion_elbos, gan_losses = [], []
    for seed in (0, 1, 2):
        torch.manual_seed(0)
        diffusion = pg.Diffusion(pg.DataInfo((2,), "real"), num_steps=8)
        pg.fit(diffusion, x, x[:100], epochs=4, batch_size=50, progress=False, device="cpu", seed=seed)
        diffusion_elbos.append(pg.log_likelihood(diffusion, x[:200], method="elbo", num_samples=8).mean)
        torch.manual_seed(0)
        gan = pg.GAN(pg.DataInfo((2,), "real"), 2, hidden=(16,), loss="wgan-gp")
        gan_losses.append(pg.fit(gan, x[:256], epochs=2, batch_size=64, progress=False, device="cpu",
                                 seed=seed).history["train_loss"][-1])
    two = pg.load_model(out / "diffusion.pt")
    for value, seen in ((pg.log_likelihood(two, x[:200], method="elbo", num_samples=8).mean, diffusion_elbos),
                        (first["noisy"]["gan"]["train"][-1], gan_losses)):
        margin = max(max(seen) - min(seen), 0.05 * abs(sum(seen) / 3))
        assert min(seen) - margin <= value <= max(seen) + margin, (value, seen)


def test_only_rank_zero_writes_and_every_rank_stops_alike(two_processes):
    out, (first, second) = two_processes
    assert first["saves"] and not second["saves"]
    assert len(list((out / "logs").glob("events.out.tfevents.*"))) == 1
    for key in ("small_batch", "nan"):
        assert first["errors"][key] == second["errors"][key], key
    assert "cannot give each of 2 processes a share" in first["errors"]["small_batch"]
    assert "loss is nan at epoch 1, step 1" in first["errors"]["nan"]


def test_every_rank_leaves_the_process_group_before_the_interpreter_shuts_down(two_processes):
    # a gloo group still alive at interpreter shutdown can abort the process (SIGABRT)
    out, _ = two_processes
    for rank in range(2):
        assert json.loads((out / f"rank{rank}.exit").read_text()) == {"joined": False}


def test_resuming_on_another_number_of_processes_is_refused(two_processes):
    out, _ = two_processes
    flow, _, x = one_process_flow(epochs=1)
    with pytest.raises(ValueError, match="world_size=2, this call has world_size=1"):
        pg.fit(flow, x, x[:101], epochs=4, batch_size=64, progress=False, device="cpu", checkpoint_dir=out / "flow",
               resume=True)


def test_a_killed_worker_is_restarted_and_the_run_ends_as_an_uninterrupted_one(tmp_path):
    first, second = launch(tmp_path, "restart", "--max-restarts=1")
    assert first["restarts"] == 1 and second["restarts"] == 1  # the workers were started a second time
    _, run, _ = one_process_flow(epochs=5)
    for record in (first, second):
        torch.testing.assert_close(torch.tensor(record["train"]), torch.tensor(run.history["train_loss"]),
                                   rtol=1e-5, atol=0)


def test_probgen_fit_runs_under_torchrun_and_rank_zero_writes(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "probgen.cli",
               "fit", "flow", "--data", "moons", "--epochs", "2", "--num-test", "50", "--flow-layers", "1",
               "--flow-hidden", "8", "--out", str(out), "--no-progress", "--device", "cpu",
               "--tensorboard", str(tmp_path / "logs")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("test exact:") == 1  # printed by rank 0 alone
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["exact"]["num_data"] == 50 and len(metrics["history"]["train_loss"]) == 2
    assert {p.name for p in out.iterdir()} >= {"model.pt", "loss.png", "samples.png", "metrics.json", "checkpoints"}
    assert len(list((tmp_path / "logs").glob("events.out.tfevents.*"))) == 1
