"""
A variational autoencoder on handwritten digits
===============================================

The statistician's reading of a VAE: each 8x8 digit :math:`x_n` (17 grey levels) is
explained by a latent vector :math:`z_n \\sim \\mathcal{N}(0, I)`; given :math:`z_n`, the
pixels are independent, each a logistic distribution discretized onto the 17 levels,
whose location and scale a neural network (the *decoder*) computes from :math:`z_n`.
The posterior :math:`p(z_n \\mid x_n)` has no closed form, so a second network (the
*encoder*) proposes a Gaussian :math:`q(z_n \\mid x_n)` for every digit: amortized
variational inference. Fitting maximizes the evidence lower bound (ELBO) over both.

The ELBO is a lower bound on :math:`\\log p(x_n)`; the importance-weighted bound (IWAE)
with :math:`k` samples is tighter and approaches :math:`\\log p(x_n)` as :math:`k` grows.
Both are reported per data point with a standard error, in nats and in bits per dimension.

This runs in under a minute on a laptop CPU.
"""

import os

import torch

import probgen as pg

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"  # a few seconds, for the docs build
EPOCHS, NUM_SAMPLES = (2, 20) if SMOKE else (50, 1000)

data = pg.datasets.load("optdigits")  # embedded in the package
print(data)

torch.manual_seed(0)
vae = pg.VAE(data.info, latent_dim=16)  # 17 levels: a discretized-logistic likelihood
run = pg.fit(vae, data.train, valid=data.valid, epochs=EPOCHS, batch_size=128, lr=1e-3, progress=not SMOKE)
print(run)

# %%
# Per-data-point log-likelihoods on the test digits. The IWAE bound is at least the ELBO.
elbo = pg.log_likelihood(vae, data.test, method="elbo", num_samples=1)
iwae = pg.log_likelihood(vae, data.test, method="iwae", num_samples=NUM_SAMPLES)
print("ELBO:", elbo)
print("IWAE:", iwae)
print("IWAE - ELBO per digit, mean:", (iwae.pointwise - elbo.pointwise).mean().item(), "nats")

# %%
# The loss curve and digits drawn from the model (each the decoder's mean for one z).
pg.diagnostics.save_loss_curve(run.history, "vae_optdigits_loss.png")
pg.diagnostics.save_sample_grid(vae.sample(64, mean=True), "vae_optdigits_samples.png", num_levels=17)

import matplotlib.pyplot as plt  # noqa: E402  (shown in the rendered gallery)
from matplotlib.image import imread  # noqa: E402

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, path in zip(axes, ["vae_optdigits_loss.png", "vae_optdigits_samples.png"]):
    ax.imshow(imread(path))
    ax.axis("off")
plt.show()
