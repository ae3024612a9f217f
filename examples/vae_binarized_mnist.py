"""
The standard VAE on static binarized MNIST
==========================================

Binarized MNIST (Larochelle & Murray 2011) is the canonical benchmark for likelihoods of
binary images: 784 pixels, each 0 or 1. The model is the textbook one: a 40-dimensional
standard-Normal latent, a Bernoulli likelihood for every pixel given a decoder network,
and a Gaussian encoder. Reported numbers in the literature are test negative
log-likelihoods estimated with the IWAE bound at :math:`k = 5000`: about 88.6 nats for
this model after long training. A lower number is better; a bound can only overestimate
the NLL, so the true NLL of the fitted model is at most the reported value.

The data are looked up in ``$PROBGEN_DATA`` (``binarized_mnist.npz``); set
``PROBGEN_DOWNLOAD=1`` to fetch the canonical files. The default budget is short; pass
the number of epochs as the first argument for a real run.
"""

import os
import sys

import torch

import probgen as pg

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"
EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else (1 if SMOKE else 10)
NUM_TEST, NUM_SAMPLES = (100, 50) if SMOKE else (1000, 5000)

try:
    data = pg.datasets.load("binarized_mnist", download=os.environ.get("PROBGEN_DOWNLOAD") == "1")
except FileNotFoundError as missing:
    print(missing)
    sys.exit(0)
train = data.train[:5000] if SMOKE else data.train

torch.manual_seed(0)
vae = pg.VAE(data.info, latent_dim=40, hidden=(300, 300))  # binary data: a Bernoulli likelihood
run = pg.fit(vae, train, valid=data.valid, epochs=EPOCHS, batch_size=100, lr=5e-4, progress=not SMOKE)
print(run)

test = pg.datasets.random_subset(data.test, NUM_TEST)  # the test split is stored in class order
iwae = pg.log_likelihood(vae, test, method="iwae", num_samples=NUM_SAMPLES)
print(f"test NLL <= {-iwae.mean:.2f} ± {iwae.stderr:.2f} nats ({iwae.label()}, {NUM_TEST} test images)")
pg.diagnostics.save_sample_grid(vae.sample(64, mean=True), "vae_binarized_mnist_samples.png", num_levels=2)
