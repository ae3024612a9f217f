"""Hierarchical VAEs against the one-layer VAE on optdigits, side by side (issue 17).

Every model is what ``probgen fit`` builds by default for its family (the VAE: 16 latents;
the hierarchy: 16 and 8 latents), varied in one choice at a time: the guide (bottom-up, or
top-down with the ladder's precision-weighted merge or with one head reading both sides),
and the deterministic top-down path. Each trains with ``pg.fit``'s defaults for the budget's
epochs on all 3,323 training digits; the figure is the IWAE bound (k importance samples) on
all 1,797 test digits in bits per dimension (lower is better), mean and standard deviation
over seeds, with the KL of each layer (ELBO terms, one draw) and the active units.

    python benchmarks/hvae_optdigits.py                      # quick (10 epochs) and full (100) budgets
    python benchmarks/hvae_optdigits.py --budgets 10 --seeds 2
    python benchmarks/hvae_optdigits.py --ema 0 0.999 --models "VAE, 1 layer" "top-down + path"

``--ema`` trains each model once per decay (0: none) and scores the exponential moving average
of its weights, side by side with the last iterate; ``--models`` keeps the models whose names
contain one of the given strings. ``--prior vamp`` gives every model the VampPrior (on the top
layer of a hierarchy) and ``--pseudo-inputs uniform clamped`` trains it once per form of its
pseudo-inputs (:class:`probgen.VAE`'s ``pseudo_inputs``)::

    python benchmarks/hvae_optdigits.py --prior vamp --pseudo-inputs uniform clamped --models "VAE, 1 layer" "top-down + path"

It is the measurement behind the hierarchy's defaults (``inference``, ``merge``,
``top_down_path``): a default is the recipe that does best here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import probgen as pg

# each takes the prior's options (--prior vamp: prior, pseudo_inputs) as keywords
CONFIGS = {
    "VAE, 1 layer (16)": lambda info, **prior: pg.VAE(info, 16, **prior),
    "HVAE bottom-up": lambda info, **prior: pg.HierarchicalVAE(info, (16, 8), inference="bottom-up", **prior),
    "HVAE bottom-up + path": lambda info, **prior: pg.HierarchicalVAE(info, (16, 8), inference="bottom-up",
                                                                      top_down_path=True, **prior),
    "HVAE top-down, precision merge": lambda info, **prior: pg.HierarchicalVAE(info, (16, 8), inference="top-down",
                                                                               merge="precision", **prior),
    "HVAE top-down, concat merge": lambda info, **prior: pg.HierarchicalVAE(info, (16, 8), inference="top-down",
                                                                            merge="concat", **prior),
    "HVAE top-down + path": lambda info, **prior: pg.HierarchicalVAE(info, (16, 8), inference="top-down",
                                                                     top_down_path=True, **prior),
}


def run(name, data, epochs, seed, num_samples, device, ema=0.0, prior=None):
    torch.manual_seed(seed)
    model = CONFIGS[name](data.info, **(prior or {}))
    began = time.perf_counter()
    pg.fit(model, data.train, data.valid, epochs=epochs, seed=seed, progress=False, device=device, ema=ema)
    seconds = (time.perf_counter() - began) / epochs
    iwae = pg.log_likelihood(model, data.test, method="iwae", num_samples=num_samples, seed=seed)
    elbo = pg.log_likelihood(model, data.test, method="elbo", num_samples=1, seed=seed)
    kl = {term: -float(values.mean()) for term, values in (elbo.terms or {}).items() if term.startswith("z")}
    active = pg.diagnostics.active_units(model, data.test[:500]).counts
    return iwae.bits_per_dim, kl, active, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 100], help="epochs of each budget")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--num-samples", type=int, default=100, help="k of the IWAE bound")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--ema", type=float, nargs="+", default=[0.0],
                        help="train each model once per decay of the weight average (0: none)")
    parser.add_argument("--models", nargs="+", default=None, help="only the models whose names contain one of these")
    parser.add_argument("--prior", default=None, choices=["normal", "vamp"],
                        help="the (top) prior of every model (default: each family's own, the standard Normal)")
    parser.add_argument("--pseudo-inputs", nargs="+", default=["uniform"], choices=["uniform", "clamped"],
                        help="with --prior vamp: train each model once per form of the VampPrior's pseudo-inputs")
    args = parser.parse_args()
    if args.prior != "vamp" and args.pseudo_inputs != ["uniform"]:
        parser.error("--pseudo-inputs sets the VampPrior's pseudo-inputs: pass --prior vamp")
    names = [name for name in CONFIGS if args.models is None or any(part in name for part in args.models)]
    if not names:
        parser.error(f"--models {args.models} matches none of {list(CONFIGS)}")
    torch.set_num_threads(args.threads)
    data = pg.datasets.load("optdigits")
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s); optdigits: {len(data.train)} train, "
          f"{len(data.test)} test digits; IWAE k={args.num_samples}; seeds 0..{args.seeds - 1}")
    for epochs in args.budgets:
        print(f"\n{epochs} epochs")
        print(f"{'model':<40}{'bits/dim (mean ± sd)':>22}{'KL z2':>8}{'KL z1':>8}{'active z2, z1':>15}{'s/epoch':>9}")
        for name, ema, form in ((name, ema, form) for name in names for ema in args.ema for form in args.pseudo_inputs):
            prior = {"prior": args.prior} if args.prior else {}
            if args.prior == "vamp":
                prior["pseudo_inputs"] = form
            runs = [run(name, data, epochs, seed, args.num_samples, args.device, ema, prior) for seed in range(args.seeds)]
            bits = [r[0] for r in runs]
            kl = {term: statistics.mean(r[1][term] for r in runs) for term in runs[0][1]}
            active = {layer: statistics.mean(r[2][layer] for r in runs) for layer in runs[0][2]}
            spread = statistics.stdev(bits) if len(bits) > 1 else 0.0
            units = f"{shown(active.get('z2'), 1)}, {shown(active.get('z1', active.get('z')), 1)}"
            label = name + (f", ema {ema:g}" if ema else "") + (f", vamp {form}" if args.prior == "vamp" else "")
            print(f"{label:<40}{f'{statistics.mean(bits):.4f} ± {spread:.4f}':>22}"
                  f"{shown(kl.get('z2'), 2):>8}{shown(kl.get('z1'), 2):>8}{units:>15}"
                  f"{statistics.median(r[3] for r in runs):>9.2f}", flush=True)
    print("\nKL: nats per digit (the one-layer VAE's estimator gives no per-layer terms); active units: of 8 (z2) "
          "and 16 (z1 or the VAE's z), Cov_x E_q[z] > 0.01 on 500 test digits")


def shown(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"

if __name__ == "__main__":
    main()
