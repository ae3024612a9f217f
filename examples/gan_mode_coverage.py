"""
Mode collapse, measured: a GAN on eight Gaussians
=================================================

A GAN is an *implicit* model: :math:`z_n \\sim \\mathcal{N}(0, I)` and :math:`x_n = G(z_n)`,
with no density to evaluate. probgen writes it as a Pyro program whose site ``"x"`` holds
:math:`G(z)`, and ``pg.fit`` trains it against a discriminator with the adversarial
objective (separate optimizers and learning rates for the two players).

Without a likelihood, how do we know whether the generator covers the data? On mixtures
with known modes there is a direct check, the protocol of VEEGAN and PacGAN: draw 2500
samples, assign each to its nearest mode, call it high quality when it lies within three
standard deviations of that mode, and count the modes that received a high-quality sample.
A generator that collapses onto a few modes scores few modes; one that smears mass between
the modes scores a low high-quality fraction.

Budget: a few minutes on a laptop CPU. ``--data grid25`` (25 modes) needs longer runs
(``--epochs``) and is steadier with the R1 penalty (``--r1-weight 0.1``): the recipe of
``benchmarks/gan.py`` (200 epochs, R1 0.1, the learning rate decayed over the last 50
epochs: ``pg.fit(..., lr_schedule="cosine:50")``) covers all 25 modes with over 90%
high-quality samples on each of 5 seeds.
"""

import argparse
import os

import torch

import probgen as pg

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"  # a few seconds, for the docs build
parser = argparse.ArgumentParser(description="Mode coverage of a GAN on ring8 or grid25")
parser.add_argument("--data", default="ring8", choices=["ring8", "grid25"])
parser.add_argument("--loss", default="nonsaturating", choices=["nonsaturating", "hinge", "wgan-gp"])
parser.add_argument("--epochs", type=int, default=1 if SMOKE else 40)
parser.add_argument("--r1-weight", type=float, default=0.0, help="gamma of the R1 penalty on the data (0 = none)")
args, _ = parser.parse_known_args()

data = pg.datasets.load(args.data)
torch.manual_seed(0)
gan = pg.GAN(data.info, latent_dim=2, loss=args.loss, r1_weight=args.r1_weight)
before = pg.metrics.mode_coverage(gan.sample(pg.metrics.PROTOCOL_SAMPLES), args.data)
print(f"at initialization: {before}")

# %%
# Training: the same loop as for a VAE. The loss recorded per epoch is the discriminator's
# estimate of the divergence the loss targets (Jensen-Shannon for the non-saturating loss),
# not a likelihood.
run = pg.fit(gan, data.train, epochs=args.epochs, batch_size=256, progress=not SMOKE,
             lr={"generator": 1e-3, "discriminator": 1e-3}, optimizer_options={"betas": (0.5, 0.999)})
print(run)

gan.eval()
samples = gan.sample(pg.metrics.PROTOCOL_SAMPLES)
after = pg.metrics.mode_coverage(samples, args.data)
print(f"after {run.epochs_run} epochs: {after}")
print("high-quality samples per mode:", after.counts.tolist())

# %%
# The samples over the data.
pg.diagnostics.save_scatter(samples, "gan_mode_coverage.png", reference=data.test[:2500],
                            title=f"{args.loss} GAN on {args.data}: {after.modes_covered}/{after.num_modes} modes")

import matplotlib.pyplot as plt  # noqa: E402  (shown in the rendered gallery)
from matplotlib.image import imread  # noqa: E402

plt.imshow(imread("gan_mode_coverage.png"))
plt.axis("off")
plt.show()
