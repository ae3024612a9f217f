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

The GAN's defaults are a measured recipe (``benchmarks/defaults.py``, whose recorded
tables give the modes they cover on ring8 and grid25): Adam with :math:`\\beta_1 = 0.5`, the
R1 penalty with :math:`\\gamma = 0.1` on the data, and the learning rate decayed along a half
cosine over the last quarter of the epochs. The benchmark's grid25 budget is
``--data grid25 --epochs 100`` (about ten minutes on one core).

Budget: a minute or two on a laptop CPU.
"""

import argparse
import os

import torch

import probgen as pg

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"  # a few seconds, for the docs build
parser = argparse.ArgumentParser(description="Mode coverage of a GAN on ring8 or grid25")
parser.add_argument("--data", default="ring8", choices=["ring8", "grid25"])
parser.add_argument("--loss", default="nonsaturating", choices=["nonsaturating", "hinge", "wgan-gp"])
parser.add_argument("--epochs", type=int, default=1 if SMOKE else 10)
args, _ = parser.parse_known_args()

data = pg.datasets.load(args.data)
torch.manual_seed(0)
gan = pg.GAN(data.info, latent_dim=2, loss=args.loss)
before = pg.metrics.mode_coverage(gan.sample(pg.metrics.PROTOCOL_SAMPLES), args.data)
print(f"at initialization: {before}")

# %%
# Training: the same loop as for a VAE, with the GAN's own defaults. The loss recorded per
# epoch is the discriminator's estimate of the divergence the loss targets (Jensen-Shannon
# for the non-saturating loss), not a likelihood; it depends on that epoch's discriminator,
# so it does not pick a "best" epoch.
run = pg.fit(gan, data.train, epochs=args.epochs, progress=not SMOKE)
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
