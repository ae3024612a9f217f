"""How much of a trained HVAE's IWAE figure an amortized encoder could still win back.

The IWAE bound of ``benchmarks/hvae_binarized_mnist.py`` reads each image through the guide
that was trained with the model. ``refine`` (:func:`probgen.log_likelihood`) shows how much
looser that is than a proposal fitted to each image on its own, but no amortized encoder can
be fitted to a test image. This script asks what a better *amortized* encoder of the same
networks would give: it keeps the generative model fixed and trains the guide alone again on
the training images, by the doubly reparameterized gradient of the IWAE bound with
``--k`` particles (:class:`probgen.infer.DReGIWAE`, whose gradient of the guide is the
low-noise one), then scores the model on the same validation images through the original
guide and through the retrained one (and with ``--refine N``, through each image's refined
proposal), with paired differences::

    python benchmarks/hvae_encoder_gap.py --checkpoint-dir runs/hvae_vamp-clamped_iwae10_ema0.999 \\
        --epochs 5 --k 50 --refine 300 --threads 2

Fixing the model takes two things. Its parameters are those its log density reads with the
latents held fixed (:func:`generative_parameters`); they stop training. A VampPrior reads the
encoder itself (its components are the encoder's posteriors at the pseudo-inputs), so it is
first replaced by the mixture it is (:class:`FixedMixture`), the same density, which the
guide's training then cannot move. Every figure is a bound on the same model's NLL.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import torch
from pyro import poutine
from torch import nn

import probgen as pg
from probgen.distributions.priors import DiagonalNormalMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hvae_binarized_mnist as recipe  # the benchmark's runs, data folder and paired statistics


class FixedMixture(nn.Module):
    """A prior module returning one fixed :class:`DiagonalNormalMixture` (its tensors are
    buffers: they move with the model and train no further)."""

    def __init__(self, mixture: DiagonalNormalMixture):
        super().__init__()
        for name in ("logits", "locs", "scales"):
            self.register_buffer(name, getattr(mixture, name).detach().clone())

    def forward(self):
        return DiagonalNormalMixture(self.logits, self.locs, self.scales)


def generative_parameters(model, x: torch.Tensor) -> list[nn.Parameter]:
    """The parameters the model's log density of ``x`` reads, with the latents drawn by the
    guide and held fixed (so no gradient reaches the guide through them)."""
    guide_trace = poutine.trace(model.guide).get_trace(x)
    for node in guide_trace.nodes.values():
        if node["type"] == "sample":
            node["value"] = node["value"].detach()
    log_density = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x).log_prob_sum()
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    grads = torch.autograd.grad(log_density, parameters, allow_unused=True)
    return [parameter for parameter, grad in zip(parameters, grads) if grad is not None]


def with_model_fixed(model, x: torch.Tensor):
    """A copy of ``model`` whose generative part is fixed: a VampPrior replaced by the mixture it
    is, and every parameter of the model's density frozen; what still trains is the guide's."""
    fixed = copy.deepcopy(model)
    x = x.to(next(fixed.parameters()).device)
    if isinstance(fixed.prior, pg.distributions.VampPrior):
        with torch.no_grad():
            fixed.prior = FixedMixture(fixed.prior())
    for parameter in generative_parameters(fixed, x):
        parameter.requires_grad_(False)
    if not any(parameter.requires_grad for parameter in fixed.parameters()):
        raise ValueError("the guide has no parameters of its own to train: every parameter is the model's")
    return fixed


def retrain_guide(model, train: torch.Tensor, valid: torch.Tensor, *, k: int, epochs: int, lr: float,
                  ema: float | None, seed: int = 0, device="cpu", progress: bool = False):
    """Train the guide of a copy of ``model`` with the model fixed (:func:`with_model_fixed`)
    by DReG-``k``; return the copy and ``pg.fit``'s run (its validation bound by epoch)."""
    fixed = with_model_fixed(model, train[:100])
    run = pg.fit(fixed, train, valid, epochs=epochs, batch_size=100, lr=lr, objective=pg.infer.DReGIWAE(k),
                 ema=ema, seed=seed, device=device, progress=progress)
    return fixed, run


def report(args, data) -> str:
    folder = Path(args.checkpoint_dir)
    path = recipe.scored_checkpoint(folder, args.epoch)
    model, _ = recipe.trained_model(path, recipe.architecture_of(recipe.trained_run(folder).config), data.info)
    device = pg.infer.resolve_device(args.device)
    model = model.to(device)
    images = pg.datasets.random_subset(data.valid, args.num_valid)
    rows = [("the guide trained with the model", recipe.iwae_scores(model, images, args.num_samples))]
    lines = []
    if args.epochs:
        before = -pg.log_likelihood(model, data.valid, method="iwae", num_samples=args.k, seed=0).mean
        retrained, run = retrain_guide(model, data.train, data.valid, k=args.k, epochs=args.epochs, lr=args.lr,
                                       ema=args.ema or None, device=device, progress=not args.no_progress)
        rows.append((f"the guide trained again, the model fixed (DReG-{args.k}, {args.epochs} epoch{'s' * (args.epochs != 1)})",
                     recipe.iwae_scores(retrained, images, args.num_samples)))
        by_epoch = " ".join(f"{value:.3f}" for value in run.history["valid_loss"])
        lines.append(f"retraining the guide: validation -IWAE (k = {args.k}) on all {len(data.valid)} validation "
                     f"images {before:.3f} before, then by epoch {by_epoch}")
    if args.refine:
        rows.append((f"each image's proposal refined ({args.refine} steps)",
                     recipe.iwae_scores(model, images, args.num_samples, args.refine)))
    at = f"epoch {args.epoch}" if args.epoch is not None else "its best epoch"
    heading = [(f"{folder} at {at}: validation NLL (nats), -IWAE with k = {args.num_samples} on the same "
                f"{len(images)} validation images; differences against the first row, paired")]
    width = max(len(label) for label, _ in rows)
    for label, values in rows:
        mean, stderr = recipe.mean_and_stderr(values)
        line = f"  {label:<{width}}  {mean:8.3f} ± {stderr:.3f}"
        if values is not rows[0][1]:
            difference, paired_stderr = recipe.paired_difference(values, rows[0][1])
            line += f"  {difference:+.3f} ± {paired_stderr:.3f}"
        heading.append(line)
    text = "\n".join(heading + lines)
    print(text)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-dir", required=True, help="a folder that 'hvae_binarized_mnist.py train' wrote")
    parser.add_argument("--epoch", type=int, default=None,
                        help="the epoch kept by 'train --keep-epochs' to read; default: the run's best")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of retraining the guide (0: none)")
    parser.add_argument("--k", type=int, default=50, help="particles of the DReG-IWAE bound the guide is retrained on")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam's learning rate for the guide")
    parser.add_argument("--ema", type=float, default=0.999,
                        help="the retrained guide is validated and scored as this moving average (0: none)")
    parser.add_argument("--refine", type=int, default=0, help="also score each image's refined proposal (steps)")
    parser.add_argument("--num-valid", type=int, default=500, help="a fixed random subset of N validation images")
    parser.add_argument("--num-samples", type=int, default=1000, help="k of the scoring bound")
    parser.add_argument("--root", default=os.environ.get("PROBGEN_DATA", recipe.DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    for name in ("epochs", "refine"):
        if getattr(args, name) < 0:
            raise SystemExit(f"error: --{name} takes a whole number >= 0, got {getattr(args, name)}")
    for name in ("k", "num_valid", "num_samples"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} takes a whole number >= 1, got {getattr(args, name)}")
    torch.set_flush_denormal(True)  # as the benchmark does, before torch's first parallel op
    torch.set_num_threads(args.threads)
    data = pg.datasets.load("binarized_mnist", root=args.root)
    try:
        report(args, data)
    except ValueError as error:  # the library's own checks of the options
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
