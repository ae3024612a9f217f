"""How much refining each test point's proposal tightens the IWAE bound, and at what cost.

``pg.log_likelihood(model, x, method="iwae", refine=steps)`` first moves each data point's
Gaussian proposal by Adam steps of its own bound (:mod:`probgen.infer.refinement`), then
importance-samples as usual. This script scores the same model on the same test points at
the same k with and without it, for a grid of steps, rates (``refine_lr``) and draws per step
(``refine_particles``), and prints the gain in nats (refined minus amortized log-likelihood,
positive: tighter) with its paired standard error over points, and the time against the
amortized bound's. It is the measurement behind the defaults (``refine_lr=0.01``,
``refine_particles=10``)::

    python benchmarks/refined_iwae.py                      # a VAE trained here on optdigits
    python benchmarks/refined_iwae.py --checkpoint runs/hvae_vamp-clamped_ema0.999_seed1/best.pt \\
        --data binarized_mnist --num-test 100                # a saved model (the MNIST HVAE)

The model is trained for ``--epochs`` on optdigits unless ``--checkpoint`` gives a saved one
(:func:`probgen.load_model`); ``--grid`` lists the settings as ``steps,lr,particles``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import probgen as pg

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # where binarized_mnist.npz lives here

GRID = ["100,0.05,10", "100,0.02,10", "100,0.01,10", "300,0.02,10", "300,0.01,10", "300,0.02,1", "1000,0.01,1",
        "1000,0.01,10"]


def setting(text: str) -> tuple[int, float, int]:
    try:
        steps, lr, particles = text.split(",")
        return int(steps), float(lr), int(particles)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps,lr,particles such as 300,0.01,10, got {text!r}") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a saved model to score (default: train a VAE on optdigits)")
    parser.add_argument("--data", default="optdigits")
    parser.add_argument("--root", default=os.environ.get("PROBGEN_DATA", DEFAULT_DATA),
                        help="a folder holding the data set's file (optdigits is embedded)")
    parser.add_argument("--epochs", type=int, default=50, help="training epochs of the optdigits VAE")
    parser.add_argument("--num-test", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=1000, help="k of every IWAE bound")
    parser.add_argument("--grid", nargs="+", type=setting, default=[setting(text) for text in GRID])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = pg.datasets.load(args.data, root=args.root)
    if args.checkpoint:
        model, source = pg.load_model(args.checkpoint), args.checkpoint
    else:
        model = pg.VAE(data.info, 16)
        pg.fit(model, data.train, data.valid, epochs=args.epochs, progress=False, seed=0)
        source = f"pg.VAE(optdigits, 16), {args.epochs} epochs of pg.fit's defaults"
    test = pg.datasets.random_subset(data.test, args.num_test)
    started = time.perf_counter()
    plain = pg.log_likelihood(model, test, method="iwae", num_samples=args.num_samples)
    base_seconds = time.perf_counter() - started
    print(f"{source}; {len(test)} {args.data} test points, IWAE k = {args.num_samples}, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(f"amortized: {-plain.mean:.3f} nats ({base_seconds:.1f} s)")
    print(f"{'steps':>6}{'lr':>7}{'draws':>6}{'NLL':>10}{'gain':>9}{'± paired':>10}{'seconds':>9}{'x amortized':>12}")
    for steps, lr, particles in args.grid:
        started = time.perf_counter()
        refined = pg.log_likelihood(model, test, method="iwae", num_samples=args.num_samples, refine=steps,
                                    refine_lr=lr, refine_particles=particles)
        seconds = time.perf_counter() - started
        mean, stderr = pg.infer.comparison.paired_difference(refined.pointwise, plain.pointwise)
        print(f"{steps:>6}{lr:>7g}{particles:>6}{-refined.mean:>10.3f}{mean:>+9.3f}{stderr:>10.3f}{seconds:>9.1f}"
              f"{seconds / base_seconds:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
