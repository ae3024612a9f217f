"""Everything that needs a GPU, in one call: the test suite with the GPU present, the step
ratios against plain PyTorch, and the binarized-MNIST epochs, printed as one table.

Run on the GPU machine from the repository root (issue 18's figures):

    python benchmarks/gpu.py --root DATA          # DATA holds binarized_mnist.npz
    python benchmarks/gpu.py --root DATA --skip tests

Parts (each can be skipped with ``--skip``):

- ``tests``: ``pytest -n 8`` over the suite (``tests/test_docs.py`` left out: it needs Sphinx),
  with ``device="auto"`` picking the GPU; the summary line and every failure.
- ``vae``: ``benchmarks/vae_step.py --device cuda --compiled`` at batch 100 and 1000: probgen's
  step and whole ``pg.fit`` epoch against the plain eager loop and the plain loss under
  ``torch.compile(mode="reduce-overhead")``.
- ``diffusion``: ``benchmarks/diffusion.py --device cuda``, its step part only.
- ``mnist``: seconds per epoch on binarized MNIST (50,000 training images) of ``pg.fit`` for the
  standard VAE (gated 2 x 300 units, 40 latents, Bernoulli) at batch 100 and 1000 and for the
  flow VAE (MAF 4 x 300 prior, IAF 2 x 300 posterior) at batch 100, beside the same VAE's plain
  eager and plain compiled epochs. Each figure is the second epoch of its run (the first pays
  for allocation, cuDNN choices and compilation).

Not measured here yet: the flow's and the GAN's step against a plain loop on the device.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vae_binarized_mnist import flow_part
from vae_step import make_step

import probgen as pg

PARTS = ("tests", "vae", "diffusion", "mnist")


def run(command: list[str], timeout: int) -> tuple[int, str, float]:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent, check=False)
        return done.returncode, done.stdout + done.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as expired:
        return 124, f"timed out after {timeout} s\n{expired.stdout or ''}", time.perf_counter() - start


def tests(workers: int) -> None:
    code, out, seconds = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers),
                              "--ignore=tests/test_docs.py"], timeout=300)
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


def plain_epoch(vae, train, batch_size, compiled: bool) -> float:
    """Seconds of one epoch of vae_step.py's plain loop (eager or compiled loss) over ``train``."""
    step = make_step("compiled" if compiled else "plain", vae, torch.optim.Adam(vae.parameters(), lr=5e-4))
    torch.cuda.synchronize()
    start = time.perf_counter()
    order = torch.randperm(len(train), device=train.device)
    for i in range(0, len(train), batch_size):
        step(train[order[i : i + batch_size]])
    torch.cuda.synchronize()
    return time.perf_counter() - start


def mnist(root: str, device: torch.device) -> None:
    data = pg.datasets.load("binarized_mnist", root=root)
    print("## binarized MNIST, seconds per epoch (50,000 images; the second epoch of each run)")
    print(f"{'what':<58}{'batch':>7}{'seconds':>10}")
    for label, build, batch_size in (("pg.fit, standard VAE", standard_vae, 100),
                                     ("pg.fit, standard VAE", standard_vae, 1000),
                                     ("pg.fit, flow VAE (MAF 4x300 prior, IAF 2x300 posterior)", flow_vae, 100)):
        torch.manual_seed(0)
        model = build(data.info)
        result = pg.fit(model, data.train, epochs=2, batch_size=batch_size, lr=5e-4, device=device, progress=False)
        print(f"{label:<58}{batch_size:>7}{result.history['seconds'][-1]:>10.3f}")
    train = data.train.to(device)
    for compiled in (False, True):
        for batch_size in (100, 1000):
            torch.manual_seed(0)
            vae = standard_vae(data.info).to(device)
            plain_epoch(vae, train, batch_size, compiled)  # the first epoch: allocation, compilation
            seconds = plain_epoch(vae, train, batch_size, compiled)
            label = "plain loop, " + ("compiled loss (reduce-overhead)" if compiled else "eager")
            print(f"{label:<58}{batch_size:>7}{seconds:>10.3f}")
    print("targets (issue 18): pg.fit standard VAE at batch 100 <= 0.5 s; flow VAE <= 2 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("PROBGEN_DATA", HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--workers", type=int, default=8, help="pytest-xdist workers for the test suite")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("this script measures a GPU: torch finds no CUDA device here")
    device = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, probgen {pg.__version__}")
    if "tests" not in args.skip:
        tests(args.workers)
    if "vae" not in args.skip:
        script("VAE step and pg.fit epoch against plain PyTorch",
               ["benchmarks/vae_step.py", "--device", "cuda", "--compiled", "--batch-sizes", "100", "1000"], 240)
    if "diffusion" not in args.skip:
        script("diffusion step against plain PyTorch",
               ["benchmarks/diffusion.py", "--device", "cuda", "--skip", "sampling", "optdigits", "mnist", "schedule"],
               120)
    if "mnist" not in args.skip:
        mnist(args.root, device)


if __name__ == "__main__":
    main()
