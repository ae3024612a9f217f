"""The standard VAE on static binarized MNIST: test NLL by IWAE (k = 5000) and seconds per epoch.

The model is the one-stochastic-layer MLP VAE of the likelihood tables: 784 binary pixels,
a Bernoulli decoder, a 40-dimensional standard-Normal latent, two hidden layers of 300
units in encoder and decoder (gated units by default, as in Tomczak & Welling 2018;
``--activation silu`` for plain ones), Adam (lr 5e-4), batch 100, KL warm-up over the first
``--warmup`` epochs (0: none), early stopping on the validation ELBO. Published anchors for
this model: 88.56 nats (Tomczak & Welling 2018, standard VAE with a standard prior) and
88.71 nats (Burda et al. 2016, static binarization, k = 1). Those figures come after hundreds to thousands of epochs; ``--epochs`` sets the budget.

    python benchmarks/vae_binarized_mnist.py --epochs 20 --num-test 1000       # a short run
    python benchmarks/vae_binarized_mnist.py --epochs 2000 --patience 50        # the full run
    python benchmarks/vae_binarized_mnist.py --prior maf:4:300 --posterior iaf:2:300   # flows
    python benchmarks/vae_binarized_mnist.py --prior vamp --epochs 2000                 # VampPrior

``--prior vamp`` gives the VampPrior with ``--pseudo-inputs`` (500, as Tomczak & Welling)
pseudo-inputs; their figure for it is 85.57 nats. ``--prior`` and ``--posterior`` also
replace the standard-Normal prior and the diagonal-Normal posterior by flows, given as
``kind:layers:hidden``: a flow prior of any kind of
:func:`probgen.flows.build` (``maf`` or a coupling kind scores the guide's samples in one
pass), and a flow posterior conditioned on the encoder's last hidden layer (``iaf``,
``nsf``: one pass to sample and score). The issue's target for the flow VAE: at or below
85 nats.

Data: ``--root`` or ``$PROBGEN_DATA`` must hold binarized_mnist.npz (or pass --download).
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

import probgen as pg

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def flow_part(spec, latent_dim, context_dim=None):
    """``"normal"`` (or, for a prior, ``"vamp"``), or ``kind:layers:hidden``: a flow prior,
    or (with ``context_dim``) a posterior flow conditioned on the encoder's features."""
    if spec == "normal" or (spec == "vamp" and context_dim is None):
        return spec
    try:
        kind, layers, hidden = spec.split(":")
        layers, hidden = int(layers), int(hidden)
    except ValueError:
        raise SystemExit(f"expected 'normal', 'vamp' (a prior) or kind:layers:hidden (e.g. maf:4:300), got {spec!r}") from None
    if context_dim is None:
        return pg.flows.prior(kind, latent_dim, num_layers=layers, hidden=hidden)
    options = {"inverse": True} if kind == "nsf" else {}  # nsf posteriors sample in one pass
    return pg.flows.build(kind, latent_dim, num_layers=layers, hidden=hidden, context_dim=context_dim, **options)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("PROBGEN_DATA", DEFAULT_ROOT))
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--latent-dim", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=300)
    parser.add_argument("--activation", default="gated", help="hidden units: gated, silu, relu, tanh, elu")
    parser.add_argument("--warmup", type=int, default=100, help="epochs of KL warm-up (0: plain ELBO)")
    parser.add_argument("--prior", default="normal",
                        help="normal, vamp, or a flow prior kind:layers:hidden (e.g. maf:4:300)")
    parser.add_argument("--pseudo-inputs", type=int, default=500, help="the VampPrior's pseudo-inputs")
    parser.add_argument("--posterior", default="normal", help="normal, or a flow posterior kind:layers:hidden (e.g. iaf:2:300)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=5000, help="IWAE importance samples")
    parser.add_argument("--num-test", type=int, default=None, help="evaluate on a fixed random subset of N test images")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = pg.datasets.load("binarized_mnist", root=args.root, download=args.download)
    torch.manual_seed(args.seed)
    vae = pg.VAE(data.info, args.latent_dim,
                 hidden=(args.hidden, args.hidden), activation=args.activation,
                 prior=flow_part(args.prior, args.latent_dim), num_pseudo_inputs=args.pseudo_inputs,
                 posterior=flow_part(args.posterior, args.latent_dim, args.hidden))
    objective = pg.infer.KLWarmup(args.warmup) if args.warmup > 0 else "elbo"
    run = pg.fit(vae, data.train, data.valid, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                 objective=objective, patience=args.patience, device=args.device, seed=args.seed,
                 checkpoint_dir=args.checkpoint_dir, resume=args.checkpoint_dir is not None)
    test = pg.datasets.random_subset(data.test, args.num_test)  # the split is in class order
    iwae = pg.log_likelihood(vae, test, method="iwae", num_samples=args.num_samples)
    elbo = pg.log_likelihood(vae, test, method="elbo", num_samples=1)

    seconds = statistics.median(run.history["seconds"])
    print(f"device {pg.infer.resolve_device(args.device)}, threads {torch.get_num_threads()}, "
          f"epochs run {run.epochs_run} (best {run.best_epoch}), {seconds:.1f} s/epoch (median); "
          f"{args.activation} units, KL warm-up {args.warmup} epochs; prior {args.prior}, posterior {args.posterior}")
    published = 85.57 if args.prior == "vamp" and args.posterior == "normal" else 88.56
    print(f"{'quantity':<34}{'probgen':>12}{'published':>12}{'ratio':>8}")
    print(f"{'test NLL, IWAE k=' + str(args.num_samples) + ' (nats)':<34}{-iwae.mean:>12.2f}{published:>12.2f}"
          f"{-iwae.mean / published:>8.3f}")
    print(f"{'  ± stderr over ' + str(len(test)) + ' test images':<34}{iwae.stderr:>12.2f}")
    print(f"{'test -ELBO (nats)':<34}{-elbo.mean:>12.2f}")
    print(f"{'bits/dim (IWAE)':<34}{iwae.bits_per_dim:>12.4f}")
    if args.prior == "normal" and args.posterior == "normal":
        print("target: test NLL <= 88.6 nats (Tomczak & Welling 2018: 88.56; Burda et al. 2016: 88.71)")
    elif args.prior == "vamp" and args.posterior == "normal":
        print(f"VampPrior, {args.pseudo_inputs} pseudo-inputs: Tomczak & Welling 2018 report 85.57 nats")
    else:
        print("target (flow prior and posterior): test NLL <= 85 nats; the published column is the standard VAE")


if __name__ == "__main__":
    main()
