"""Run by tests/infer/test_distributed.py under torchrun (2 processes, gloo): trains every
family data-parallel and writes what each rank saw to ``<out>/rank<r>.json``.

``python -m torch.distributed.run --standalone --nproc_per_node=2 distributed_script.py OUT MODE``
with MODE ``families`` (the checks of one launch) or ``restart`` (killed once, resumed by
torchrun's elastic restart).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from pathlib import Path

import pyro
import torch
import torch.distributed as dist

import probgen as pg
from probgen.infer.distributed import exit_process

fit_module = sys.modules["probgen.infer.fit"]  # the module (pg.infer.fit is the function)

torch.set_num_threads(1)


def flow_data():
    return torch.randn(500, 2, generator=torch.Generator().manual_seed(1)) * torch.tensor([2.0, 0.5])


def small_flow():
    torch.manual_seed(0)
    return pg.Flow(pg.DataInfo((2,), "real"), "maf", num_layers=2, hidden=16)


def checksums(model):
    return [float(p.detach().double().sum()) for p in model.parameters()]


def families(out: Path, rank: int) -> dict:
    saves = []
    original = fit_module.save_checkpoint
    fit_module.save_checkpoint = lambda state, path: saves.append(str(path)) or original(state, path)
    record = {}
    x = flow_data()

    # a flow on real data: the single-process run up to the order of sums; sharded evaluation
    flow = small_flow()
    run = pg.fit(flow, x, x[:101], epochs=3, batch_size=64, progress=False, device="cpu",
                 checkpoint_dir=out / "flow", log_dir=out / "logs")
    record["flow"] = {"train": run.history["train_loss"], "valid": run.history["valid_loss"],
                      "params": checksums(flow), "exact": pg.log_likelihood(flow, x[:37], sharded=True).pointwise.tolist()}

    # resume from epoch 2 repeats epoch 3
    pg.fit(small_flow(), x, x[:101], epochs=2, batch_size=64, progress=False, device="cpu", checkpoint_dir=out / "resume")
    resumed = pg.fit(small_flow(), x, x[:101], epochs=3, batch_size=64, progress=False, device="cpu",
                     checkpoint_dir=out / "resume", resume=True)
    record["resumed"] = resumed.history["train_loss"]

    # families whose loss draws noise: every rank ends with the same weights
    digits = pg.datasets.load("optdigits")
    torch.manual_seed(0)
    vae = pg.VAE(digits.info, 4, hidden=(32,))
    vae_run = pg.fit(vae, digits.train[:640], digits.valid[:128], epochs=4, batch_size=64, progress=False, device="cpu")
    iwae = pg.log_likelihood(vae, digits.test[:40], method="iwae", num_samples=20, sharded=True)
    record["compare"] = pg.compare({"flow": flow}, x[:37], sharded=True).estimates["flow"].pointwise.tolist()
    record["khat"] = pg.psis_khat(vae, digits.test[:30], 25, sharded=True, warn=False).khat.tolist()
    torch.manual_seed(0)
    diffusion = pg.Diffusion(pg.DataInfo((2,), "real"), num_steps=8)
    diffusion_run = pg.fit(diffusion, x, x[:100], epochs=4, batch_size=50, progress=False, device="cpu")
    torch.manual_seed(0)
    gan = pg.GAN(pg.DataInfo((2,), "real"), 2, hidden=(16,), loss="wgan-gp")
    gan_run = pg.fit(gan, x[:256], epochs=2, batch_size=64, progress=False, device="cpu")
    if rank == 0:
        pg.save_model(diffusion, out / "diffusion.pt")
    record["noisy"] = {
        "vae": {"valid": vae_run.history["valid_loss"], "params": checksums(vae), "iwae": iwae.pointwise.tolist()},
        "diffusion": {"valid": diffusion_run.history["valid_loss"], "params": checksums(diffusion)},
        "gan": {"train": gan_run.history["train_loss"], "params": checksums(gan)},
    }

    # refused on every rank alike
    errors = {}
    try:
        pg.fit(small_flow(), x[:3], epochs=1, batch_size=1, progress=False, device="cpu")
    except ValueError as error:
        errors["small_batch"] = str(error)

    class NaNOnRankOne(pg.infer.SVIObjective):
        def train_loss(self, model, batch):
            loss = super().train_loss(model, batch)
            return loss * float("nan") if rank == 1 else loss

    try:
        pg.fit(small_flow(), x, epochs=1, batch_size=64, progress=False, device="cpu",
               objective=NaNOnRankOne(pyro.infer.Trace_ELBO()))
    except pg.infer.NonFiniteLossError as error:
        errors["nan"] = str(error)
    record["errors"] = errors
    record["saves"] = saves
    return record


def restart(out: Path, rank: int) -> dict:
    class KillOnce(pg.infer.Callback):
        def on_epoch_start(self, state):
            if state.epoch == 3 and rank == 1 and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
                os.kill(os.getpid(), signal.SIGKILL)

    x = flow_data()
    run = pg.fit(small_flow(), x, x[:101], epochs=5, batch_size=64, progress=False, device="cpu",
                 checkpoint_dir=out / "restart", resume=True, callbacks=[KillOnce()])
    return {"train": run.history["train_loss"], "valid": run.history["valid_loss"],
            "restarts": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))}


if __name__ == "__main__":
    out, mode = Path(sys.argv[1]), sys.argv[2]
    rank = int(os.environ["RANK"])
    # registered before fit joins the group, so it runs after probgen's own exit handler
    atexit.register(lambda: (out / f"rank{rank}.exit").write_text(json.dumps({"joined": dist.is_initialized()})))
    record = {"families": families, "restart": restart}[mode](out, rank)
    record["world_size"] = dist.get_world_size()
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    exit_process(0)  # the exit handlers run (the one above last), then no finalization
