r"""
A diffusion model of optdigits, with its bound in bits/dim
==========================================================

Train a continuous-time diffusion (VDM bound, linear log-SNR schedule, a small U-Net) on
the 8x8, 17-level optdigits images with :func:`probgen.fit`, report the test bound term by
term in nats and bits/dim, and draw samples with 1000 ancestral steps and with 50 DDIM
steps. The reconstruction term is an exact categorical distribution over the 17 levels,
so the bound is on the discrete images' own log-probability: no dequantization.

Budget: about 5 minutes on one CPU core (``--epochs``, ``--num-train``, ``--num-test`` and ``--steps`` for
more or less); with ``PROBGEN_EXAMPLES_SMOKE=1`` a few seconds.

``python examples/diffusion_optdigits.py [--epochs N] [--out DIR]``
"""

import argparse
import os
import time

import torch

import probgen as pg

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"  # a few seconds, for the docs build
parser = argparse.ArgumentParser(description="A diffusion model of optdigits, with its bound in bits/dim")
parser.add_argument("--epochs", type=int, default=1 if SMOKE else 30)
parser.add_argument("--num-train", type=int, default=512 if SMOKE else None, help="training points (default: all)")
parser.add_argument("--num-test", type=int, default=200 if SMOKE else None, help="test points for the bound (default: all)")
parser.add_argument("--num-samples", type=int, default=2 if SMOKE else 10, help="timesteps per test point")
parser.add_argument("--steps", type=int, nargs=2, default=[100, 10] if SMOKE else [1000, 50],
                    help="ancestral and DDIM steps")
parser.add_argument("--out", default="runs/diffusion_optdigits")
args, _ = parser.parse_known_args()
torch.manual_seed(0)

# %%
# Data and model. ``likelihood`` names the data's support: 17 levels.
data = pg.datasets.load("optdigits")
diff = pg.Diffusion(data.info)  # levels: the exact categorical decoder
print(diff.extra_repr())

# %%
# Training runs the fast, unbiased one-timestep estimator (:class:`~probgen.infer.TermsELBO`), the model's
# default objective, in the same loop as every other family.
result = pg.fit(diff, data.train[: args.num_train], data.valid, epochs=args.epochs, batch_size=128, lr=2e-3)
pg.diagnostics.save_loss_curve(result.history, f"{args.out}/loss.png")

# %%
# The test bound, with its three terms (prior, diffusion, reconstruction).
estimate = pg.log_likelihood(diff, data.test[: args.num_test], method="elbo", num_samples=args.num_samples)
print(estimate)

# %%
# Samples: the model's own reverse chain (1000 ancestral steps) and 50 deterministic DDIM
# steps on an evenly respaced grid; both end in the decoder, so they are images of levels 0..16.
for sampler, steps in zip(("ancestral", "ddim"), args.steps):
    torch.manual_seed(1)
    start = time.perf_counter()
    images = diff.sample(16 if SMOKE else 64, steps=steps, sampler=sampler)
    print(f"{sampler:>9}, {steps:>4} steps: {time.perf_counter() - start:.2f} s for {len(images)} images")
    pg.diagnostics.save_sample_grid(images, f"{args.out}/samples_{sampler}_{steps}.png", num_levels=17)
