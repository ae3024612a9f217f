"""The gradient of the IWAE bound two ways on the binarized-MNIST hierarchy: IWAE's own against
the doubly reparameterized one (``pg.infer.DReGIWAE``), in signal-to-noise ratio and time.

Both estimate the same gradient without bias (``tests/infer/test_dreg.py``). They differ in the
noise of what reaches the guide: IWAE's holds a score-function term, and for large k the
signal-to-noise ratio of its gradient of the guide falls as 1/sqrt(k) (Rainforth et al. 2018);
the doubly reparameterized estimator replaces that term by a reparameterized one (Tucker et al.
2019). On one batch of training images and a trained model, each estimator draws its gradient
``--draws`` times; for every parameter the signal-to-noise ratio is the absolute mean of the
draws over their standard deviation, and the table gives its median over each part of the
model:

- ``encoder``, ``posteriors``: the guide's networks (the encoder also makes the VampPrior's
  components at the pseudo-inputs);
- ``path``: the top-down path of the model, part of which the top-down guide reads too;
- ``decoder``, ``conditionals``: the model's alone, where the two estimators agree draw for draw
  up to the gradient cut of negligible particles;
- ``prior``: the VampPrior's pseudo-inputs.

It also times a training step (forward, backward) of each, the median over the draws, which
run in turns (IWAE, DReG, IWAE, ...) on the same seeds::

    python benchmarks/dreg_gradient.py --checkpoint runs/hvae_vamp-clamped_iwae10_ema0.999/best.pt

Results: ``docs/benchmark_results/dreg_gradient.txt``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import probgen as pg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hvae_binarized_mnist as recipe  # the benchmark's data folder

ESTIMATORS = {"IWAE": pg.infer.IWAE, "DReG": pg.infer.DReGIWAE}


def gradient(model, objective, x, seed: int) -> tuple[torch.Tensor, float]:
    """One draw of the flattened gradient, and the seconds its step took (forward, backward)."""
    model.zero_grad()
    pg.infer.seed_everything(seed)
    started = time.perf_counter()
    objective.differentiable_loss(model.model, model.guide, x).backward()
    seconds = time.perf_counter() - started
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                      for p in model.parameters() if p.requires_grad]), seconds


def interleaved_draws(model, objectives: dict, x, draws: int) -> dict:
    """Each estimator's gradient draws ``(draws, parameters)`` and step seconds, drawn in turns
    (IWAE, DReG, IWAE, ...) so that drifts in machine load hit both alike."""
    out = {label: ([], []) for label in objectives}
    for seed in range(draws):
        for label, objective in objectives.items():
            grad, seconds = gradient(model, objective, x, seed)
            out[label][0].append(grad)
            out[label][1].append(seconds)
    return {label: (torch.stack(grads), seconds) for label, (grads, seconds) in out.items()}


def median_snr_by_part(model, names, draws: torch.Tensor) -> dict[str, float]:
    snr = draws.mean(0).abs() / draws.std(0).clamp_min(1e-30)
    parts, start = {}, 0
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    for name in names:
        part = name.split(".")[0]
        parts.setdefault(part, []).append(snr[start:start + sizes[name]])
        start += sizes[name]
    return {part: torch.cat(values).median().item() for part, values in parts.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained model (pg.load_model), e.g. a run's best.pt")
    parser.add_argument("--particles", type=int, nargs="+", default=[10, 50], help="k of the IWAE bound")
    parser.add_argument("--draws", type=int, default=16, help="gradient draws per estimator")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=recipe.DEFAULT_DATA)
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as the benchmark's training runs, before any parallel op
    torch.set_num_threads(args.threads)
    data = pg.datasets.load("binarized_mnist", root=args.root)
    model = pg.load_model(args.checkpoint)
    model.train()
    x = data.train[: args.batch_size].to(model.dtype)
    print(f"{args.checkpoint}: {args.draws} gradient draws per estimator on {len(x)} training images; torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s)")
    for k in args.particles:
        names = [name for name, p in model.named_parameters() if p.requires_grad]
        drawn = interleaved_draws(model, {label: estimator(k) for label, estimator in ESTIMATORS.items()}, x, args.draws)
        results = {label: (median_snr_by_part(model, names, grads), statistics.median(seconds))
                   for label, (grads, seconds) in drawn.items()}
        parts = list(results["IWAE"][0])
        print(f"\nk = {k}: median signal-to-noise ratio of the gradient, by part of the model")
        print(f"{'estimator':<10}" + "".join(f"{part:>14}" for part in parts) + f"{'s/step':>9}")
        for label, (snr, step) in results.items():
            print(f"{label:<10}" + "".join(f"{snr[part]:>14.3f}" for part in parts) + f"{step:>9.2f}")
        ratio = {part: results["DReG"][0][part] / results["IWAE"][0][part] for part in parts}
        print(f"{'DReG/IWAE':<10}" + "".join(f"{ratio[part]:>14.2f}" for part in parts)
              + f"{results['DReG'][1] / results['IWAE'][1]:>9.2f}")


if __name__ == "__main__":
    main()
