"""Everything that needs a GPU, in one call: the test suite with the GPU present, the step
ratios against plain PyTorch, and the binarized-MNIST epochs, printed as one table.

Run on the GPU machine from the repository root (issue 18's figures):

    python benchmarks/gpu.py --root DATA          # DATA holds binarized_mnist.npz
    python benchmarks/gpu.py --root DATA --skip tests

On the lent machine, which lacks Pyro, nflows and ArviZ, ``benchmarks/gpu_device.sh`` brings
them as wheels and runs this script (``prepare`` here, ``run`` there).

Parts (each can be skipped with ``--skip``):

- ``tests``: ``pytest -n 8`` over the suite (``tests/test_docs.py`` left out: it needs Sphinx),
  with ``device="auto"`` picking the GPU; the summary line and every failure.
- ``vae``: ``benchmarks/vae_step.py --device cuda --compiled`` at batch 100 and 1000: probgen's
  step and whole ``pg.fit`` epoch against the plain eager loop and the plain loss under
  ``torch.compile(mode="reduce-overhead")``.
- ``diffusion``: ``benchmarks/diffusion.py --device cuda``, its step part only.
- ``steps``: every family's step as ``pg.fit`` runs it (the whole epoch divided by its steps;
  recorded as a CUDA graph, ``cuda_graph="auto"``, and eager, ``cuda_graph=False``) against a
  plain PyTorch loop doing the same math with the same modules, eager and compiled
  (``torch.compile``; ``mode="reduce-overhead"`` where the plain step is one loss): the standard
  binarized-MNIST VAE, a MAF flow (plain side: native nflows on the same transform), the
  optdigits diffusion (plain side: ``diffusion.py``'s VDM loss) and an MLP GAN (plain side:
  ``gan.py``'s loop, compiled as its two networks).
- ``mnist``: seconds per epoch on binarized MNIST (50,000 training images) of ``pg.fit`` for the
  standard VAE (gated 2 x 300 units, 40 latents, Bernoulli) at batch 100 and 1000 and for the
  flow VAE (MAF 4 x 300 prior, IAF 2 x 300 posterior) at batch 100, beside the same VAE's plain
  eager and plain compiled epochs. Each figure is the second epoch of its run (the first pays
  for allocation, cuDNN choices and compilation); ``pg.fit`` rows run with ``cuda_graph="auto"``
  (recorded) and ``False``.

``--device cpu --skip tests mnist`` runs the ``steps`` part on the CPU, only to check the script.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from diffusion import plain_vdm_loss, synchronize
from gan import plain_epoch as plain_gan_epoch
from nflows.distributions import StandardNormal
from nflows.flows import Flow as NflowsFlow
from vae_binarized_mnist import flow_part
from vae_step import make_step

import probgen as pg

PARTS = ("tests", "vae", "diffusion", "steps", "mnist")


def run(command: list[str], timeout: int) -> tuple[int, str, float]:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent, check=False)
        return done.returncode, done.stdout + done.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as expired:
        return 124, f"timed out after {timeout} s\n{expired.stdout or ''}", time.perf_counter() - start


def tests(workers: int) -> None:
    # a test that hangs (a recorded step waiting on itself, say) fails alone where pytest-timeout is installed
    hang_guard = ["--timeout=120"] if importlib.util.find_spec("pytest_timeout") else []
    code, out, seconds = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers),
                              "--ignore=tests/test_docs.py", *hang_guard], timeout=300)
    lines = out.splitlines()
    print(f"## test suite with the GPU present ({seconds:.0f} s, exit {code})")
    for line in lines:
        if line.startswith(("FAILED", "ERROR")):
            print(line)
    print(next((line for line in reversed(lines) if " passed" in line or " failed" in line or "error" in line),
               "\n".join(lines[-20:])))


def script(title: str, command: list[str], timeout: int) -> None:
    code, out, seconds = run([sys.executable, *command], timeout)
    print(f"## {title} ({seconds:.0f} s, exit {code})")
    print(out.strip())


def standard_vae(info):
    return pg.VAE(info, 40, hidden=(300, 300), activation="gated")


def flow_vae(info):
    return pg.VAE(info, 40, hidden=(300, 300), activation="gated", prior=flow_part("maf:4:300", 40),
                  posterior=flow_part("iaf:2:300", 40, 300))


def timed_epoch(step, train, batch_size) -> float:
    """Seconds of one shuffled pass of ``step(batch)`` over ``train``."""
    synchronize(train.device)
    start = time.perf_counter()
    order = torch.randperm(len(train), device=train.device)
    for i in range(0, len(train), batch_size):
        step(train[order[i : i + batch_size]])
    synchronize(train.device)
    return time.perf_counter() - start


def one_loss_step(loss_fn, params, compiled: bool, device):
    """A plain step over one loss (reading the loss back, as a loop that logs it does); with
    ``compiled`` the loss runs under torch.compile (CUDA graphs on a GPU)."""
    if compiled:
        loss_fn = torch.compile(loss_fn, mode="reduce-overhead" if device.type == "cuda" else None)
    opt = torch.optim.Adam(params, lr=1e-4)

    def step(x):
        loss = loss_fn(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def family_cases(device):
    """name -> (probgen model, training data, batch size, plain step maker(model, compiled))."""
    digits = pg.datasets.load("optdigits")
    mnist_like = pg.DataInfo((28, 28), "binary")
    real8 = pg.DataInfo((8,), "real")

    def vae_plain(model, compiled):
        return make_step("compiled" if compiled else "plain", model, torch.optim.Adam(model.parameters(), lr=1e-4))

    def flow_plain(model, compiled):
        native = NflowsFlow(model.density.transform.nflows, StandardNormal([8])).to(device)
        return one_loss_step(lambda x: -native.log_prob(x).mean(), native.parameters(), compiled, device)

    def diffusion_plain(model, compiled):
        network, schedule, levels = model.network, model.schedule, model.info.num_levels
        return one_loss_step(lambda x: plain_vdm_loss(network, x, levels, schedule.logsnr_min, schedule.logsnr_max),
                             network.parameters(), compiled, device)

    def gan_plain(model, compiled):
        G, D = model.generator, model.discriminator
        if compiled:
            model = copy.copy(model)  # the same modules, called through torch.compile
            model.generator, model.discriminator = torch.compile(G), torch.compile(D)
        opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-4), torch.optim.Adam(D.parameters(), 1e-4)
        return lambda x: plain_gan_epoch(model, [x], "nonsaturating", 1, opt_g, opt_d)

    torch.manual_seed(0)
    return {
        "VAE (gated 2x300, 40 latents)": (standard_vae(mnist_like), (torch.rand(20_000, 28, 28) < 0.13).float(), 100,
                                          vae_plain),
        "flow (MAF 5 x 128, D=8)": (pg.Flow(real8, "maf", num_layers=5, hidden=128), torch.randn(25_600, 8), 128,
                                    flow_plain),
        "diffusion (optdigits)": (pg.Diffusion(digits.info), digits.train.repeat(4, 1, 1)[:12_800], 64,
                                  diffusion_plain),
        "GAN (MLP, nonsaturating)": (pg.GAN(pg.DataInfo((2,)), 2, loss="nonsaturating", r1_weight=0.0),
                                     pg.datasets.load("ring8").train[:25_600], 128, gan_plain),
    }


def family_steps(device: torch.device) -> None:
    print("## every family's step: pg.fit (recorded / eager) against a plain loop (eager / compiled), ms per step")
    print(f"{'family':<32}{'batch':>6}{'fit rec':>9}{'fit eager':>10}{'plain':>8}{'compiled':>10}"
          f"{'rec/plain':>11}{'rec/comp':>10}{'eager/plain':>13}  recorded?")
    for name, (model, data, batch_size, plain) in family_cases(device).items():
        steps = len(data) // batch_size
        fit_ms, recorded = {}, "-"
        for mode in ("auto", False):
            trained = copy.deepcopy(model)
            try:
                result = pg.fit(trained, data, epochs=2, batch_size=batch_size, device=device, cuda_graph=mode,
                                progress=False)
            except Exception as error:  # noqa: BLE001 - said, and the row goes on with the other sides
                print(f"  ({name}: pg.fit with cuda_graph={mode!r} failed: {type(error).__name__}: "
                      f"{str(error).splitlines()[0][:200]})")
                fit_ms[mode] = float("nan")
                continue
            fit_ms[mode] = 1e3 * result.history["seconds"][-1] / steps
            if mode == "auto":
                recorded = result.step_mode if result.eager_reason is None else f"eager: {result.eager_reason}"
        plain_ms = {}
        for compiled in (False, True):
            local = copy.deepcopy(model).to(device)
            train = data.to(device, local.dtype)
            try:
                step = plain(local, compiled)
                timed_epoch(step, train, batch_size)  # the first epoch: allocation, compilation
                plain_ms[compiled] = 1e3 * timed_epoch(step, train, batch_size) / steps
            except RuntimeError as error:  # a plain side torch.compile cannot take: say so, keep going
                print(f"  ({name}: the plain {'compiled' if compiled else 'eager'} side failed: "
                      f"{type(error).__name__}: {str(error).splitlines()[0][:120]})")
                plain_ms[compiled] = float("nan")
        print(f"{name:<32}{batch_size:>6}{fit_ms['auto']:>9.3f}{fit_ms[False]:>10.3f}{plain_ms[False]:>8.3f}"
              f"{plain_ms[True]:>10.3f}{fit_ms['auto'] / plain_ms[False]:>11.3f}{fit_ms['auto'] / plain_ms[True]:>10.3f}"
              f"{fit_ms[False] / plain_ms[False]:>13.3f}  {recorded}")
    print("targets (issue 18): the GAN and diffusion steps at most 0.5x plain eager (rec/plain <= 0.5)")


def mnist(root: str, device: torch.device) -> None:
    data = pg.datasets.load("binarized_mnist", root=root)
    print("## binarized MNIST, seconds per epoch (50,000 images; the second epoch of each run)")
    print(f"{'what':<58}{'batch':>7}{'seconds':>10}")
    for label, build, batch_size in (("pg.fit, standard VAE", standard_vae, 100),
                                     ("pg.fit, standard VAE", standard_vae, 1000),
                                     ("pg.fit, flow VAE (MAF 4x300 prior, IAF 2x300 posterior)", flow_vae, 100)):
        for mode in ("auto", False):
            torch.manual_seed(0)
            model = build(data.info)
            result = pg.fit(model, data.train, epochs=2, batch_size=batch_size, lr=5e-4, device=device,
                            cuda_graph=mode, progress=False)
            what = f"{label}, {'recorded' if result.step_mode == 'captured' else 'eager'}"
            print(f"{what:<58}{batch_size:>7}{result.history['seconds'][-1]:>10.3f}"
                  + (f"  ({result.eager_reason})" if mode == "auto" and result.eager_reason else ""))
    train = data.train.to(device)
    for compiled in (False, True):
        for batch_size in (100, 1000):
            torch.manual_seed(0)
            vae = standard_vae(data.info).to(device)
            step = make_step("compiled" if compiled else "plain", vae, torch.optim.Adam(vae.parameters(), lr=5e-4))
            timed_epoch(step, train, batch_size)  # the first epoch: allocation, compilation
            seconds = timed_epoch(step, train, batch_size)
            label = "plain loop, " + ("compiled loss (reduce-overhead)" if compiled else "eager")
            print(f"{label:<58}{batch_size:>7}{seconds:>10.3f}")
    print("targets (issue 18): pg.fit standard VAE at batch 100 <= 0.5 s; flow VAE <= 2 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("PROBGEN_DATA", HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--workers", type=int, default=8, help="pytest-xdist workers for the test suite")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to check the script")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("this script measures a GPU: torch finds no CUDA device here")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (a check of the script, not a figure)"
    print(f"torch {torch.__version__}, {name}, probgen {pg.__version__}")
    parts = {
        "tests": lambda: tests(args.workers),
        "vae": lambda: script("VAE step and pg.fit epoch against plain PyTorch",
                              ["benchmarks/vae_step.py", "--device", "cuda", "--compiled", "--batch-sizes", "100",
                               "1000"], 240),
        "diffusion": lambda: script("diffusion step against plain PyTorch",
                                    ["benchmarks/diffusion.py", "--device", "cuda", "--skip", "sampling", "optdigits",
                                     "mnist", "schedule"], 120),
        "steps": lambda: family_steps(device),
        "mnist": lambda: mnist(args.root, device),
    }
    for part, measure in parts.items():
        if part in args.skip:
            continue
        began = time.perf_counter()
        try:  # one call of a lent GPU: a part that breaks must not cost the others
            measure()
        except Exception:  # noqa: BLE001 - printed in full, and the next part runs
            print(f"## part {part!r} failed:\n{traceback.format_exc()}")
        print(f"(part {part}: {time.perf_counter() - began:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
