"""Time of an IWAE training step: probgen's ``IWAE`` objective against the same bound with a plain ``torch.logsumexp``.

The two differ only in the gradient of the particles whose importance weight is below eps^2
(about 1e-14 in float32) times the largest: :func:`probgen.infer.importance_logsumexp` leaves it
out. torch's gradient scales each particle's whole backward pass by its weight, and once
training has made some weights tiny, those rows of every layer's gradient are subnormal
floats, which a CPU multiplies many times slower than normal ones.

Both sides are the binarized-MNIST hierarchical VAE of ``benchmarks/hvae_binarized_mnist.py``
(the published networks, VampPrior), deep copies of one set of weights, each with its own Adam,
stepping on the same batches in interleaved rounds (plain, probgen, plain, ...) so that drifts
in machine load hit both alike. Both first train ``--warm-steps`` steps on the plain bound
(weights spread within a few dozen steps), or start from a saved model (``--checkpoint``)::

    python benchmarks/iwae_step.py                      # k = 10 and 50, 2 threads
    python benchmarks/iwae_step.py --flush-denormal     # the CPU's flush-to-zero on, for comparison
    python benchmarks/iwae_step.py --checkpoint runs/hvae_vamp-clamped_iwae10_ema0.999/best.pt

It prints milliseconds per step (median over rounds) and the ratio plain / probgen, and the
share of particles below eps^2 times the largest weight on the last batch (the plain side's weights).
Results: ``docs/benchmark_results/iwae_step.txt``.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import probgen as pg
from probgen.infer.weights import negligible_particles, trace_log_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hvae_binarized_mnist as recipe  # the benchmark's networks


def plain_iwae_loss(model, x, k):
    """The IWAE bound per data point as a user would write it, with torch's logsumexp."""
    log_w = trace_log_weights(model.model, model.guide, k, x)
    return -(torch.logsumexp(log_w, 0) - math.log(k)).sum() / len(x)


def probgen_iwae_loss(model, x, k):
    """The same bound through probgen's objective, as ``objective="iwae:k"`` trains it."""
    return pg.infer.IWAE(k).differentiable_loss(model.model, model.guide, x) / len(x)


@torch.no_grad()
def negligible_share(model, x, k) -> float:
    """The share of particles whose gradient probgen leaves out: those that make torch's
    backward pass subnormal."""
    return negligible_particles(trace_log_weights(model.model, model.guide, k, x)).float().mean().item()


def step(model, optimizer, x, k, loss) -> float:
    started = time.perf_counter()
    optimizer.zero_grad()
    loss(model, x, k).backward()
    optimizer.step()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[10, 50], help="k of the IWAE bound")
    parser.add_argument("--checkpoint", default=None, help="start from this saved model (pg.load_model)")
    parser.add_argument("--warm-steps", type=int, default=60, help="plain-bound steps before timing (no --checkpoint)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flush-denormal", action="store_true",
                        help="set the CPU's flush-to-zero first (torch.set_flush_denormal), before any parallel op")
    parser.add_argument("--root", default=recipe.DEFAULT_DATA)
    args = parser.parse_args()
    if args.flush_denormal and not torch.set_flush_denormal(True):
        raise SystemExit("error: this CPU cannot flush subnormals to zero")
    torch.set_num_threads(args.threads)
    data = pg.datasets.load("binarized_mnist", root=args.root)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, "
          f"flush-to-zero {'on' if args.flush_denormal else 'off'}")
    print(f"{'k':>4} {'plain ms':>9} {'probgen ms':>11} {'plain/probgen':>14} {'particles below eps^2':>22}")
    for k in args.particles:
        torch.manual_seed(0)
        if args.checkpoint:
            model = pg.load_model(args.checkpoint)
        else:
            model = recipe.build("vamp", data.info, "published", "clamped", 0.0, 0.0)
            optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
            for i in range(args.warm_steps):
                x = data.train[(i * args.batch_size) % len(data.train):][:args.batch_size]
                step(model, optimizer, x, k, plain_iwae_loss)
        sides = {}
        for name, loss in (("plain", plain_iwae_loss), ("probgen", probgen_iwae_loss)):
            copy_ = copy.deepcopy(model)
            sides[name] = (copy_, torch.optim.Adam(copy_.parameters(), lr=5e-4), loss, [])
        for r in range(args.rounds + 2):
            x = data.train[-(r + 1) * args.batch_size:][:args.batch_size]
            for model_, optimizer_, loss, times in sides.values():
                seconds = step(model_, optimizer_, x, k, loss)
                if r >= 2:  # the first rounds allocate
                    times.append(seconds)
        plain, ours = (1000 * statistics.median(sides[name][3]) for name in ("plain", "probgen"))
        share = negligible_share(sides["plain"][0], x, k)
        print(f"{k:>4} {plain:>9.0f} {ours:>11.0f} {plain / ours:>14.2f} {share:>22.1%}", flush=True)


if __name__ == "__main__":
    main()
