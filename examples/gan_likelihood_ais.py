"""
A GAN and a VAE on digits, compared by log-likelihood
=====================================================

A GAN's generator and a VAE's decoder are the same kind of object: a network :math:`G`
mapping a latent :math:`z \\sim \\mathcal{N}(0, I)` to an image. A GAN defines no density,
but adding Gaussian observation noise, :math:`x \\mid z \\sim \\mathcal{N}(G(z), \\sigma^2 I)`,
turns any such network into a *decoder model* whose likelihood

.. math:: p(x) = \\int p(z)\\, \\mathcal{N}(x; G(z), \\sigma^2 I)\\, dz

is defined. Wu et al. (2017) estimated it with annealed importance sampling (AIS), with
:math:`\\sigma` chosen on validation data, for GANs and VAEs alike; this example repeats
their comparison on the 8x8 optdigits (17 grey levels, treated here as real numbers: the
Gaussian is a *density* on the levels, so the numbers compare with each other and not with
a discrete model's probabilities). AIS is checked by bidirectional Monte Carlo (BDMC): on
data simulated from each model, the reverse chain gives an upper bound, and the gap between
the two bounds says how far AIS can be from the truth on such data.

The VAE keeps its own discrete likelihood (a discretized logistic) for training; its
decoder's mean becomes the :math:`G` of its Gaussian decoder model. Its AIS estimate under
its own likelihood, beside the IWAE bound, is printed too.

Budget: a few minutes on a laptop CPU by default (``--epochs``, ``--ais-steps``,
``--chains``, ``--num-test`` for the full run).

References:
    Wu, Burda, Salakhutdinov, Grosse (2017). On the Quantitative Analysis of Decoder-Based
    Generative Models. ICLR.
"""

import argparse
import os

import torch

import probgen as pg
from probgen.models.vae import DecoderMean

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"  # a few seconds, for the docs build
parser = argparse.ArgumentParser(description="AIS log-likelihoods of a GAN and a VAE on optdigits")
parser.add_argument("--epochs", type=int, default=1 if SMOKE else 20)
parser.add_argument("--ais-steps", type=int, default=20 if SMOKE else 100)
parser.add_argument("--leapfrog", type=int, default=2 if SMOKE else 5)
parser.add_argument("--chains", type=int, default=4 if SMOKE else 8)
parser.add_argument("--num-test", type=int, default=20 if SMOKE else 50)
args, _ = parser.parse_known_args()
AIS = {"num_steps": args.ais_steps, "leapfrog_steps": args.leapfrog}

data = pg.datasets.load("optdigits")
test, valid = data.test[: args.num_test], data.valid[: args.num_test]
LATENT = 10

# %%
# The GAN: MLP generator and discriminator (as in Wu et al.'s MNIST comparison, and cheap
# enough for AIS's thousands of generator gradients on a CPU); the generator squashes its
# output into [0, 16].
torch.manual_seed(0)
gan = pg.GAN(data.info.event_shape, LATENT, num_levels=17, network="mlp")
run = pg.fit(gan, data.train, epochs=args.epochs, batch_size=64, progress=not SMOKE,
             lr={"generator": 2e-4, "discriminator": 2e-4}, optimizer_options={"betas": (0.5, 0.999)})
print(run)

# %%
# The VAE, fitted by its ELBO with a discretized-logistic likelihood.
vae = pg.VAE(data.info.event_shape, LATENT, likelihood="discretized_logistic", num_levels=17)
pg.fit(vae, data.train, valid=data.valid, epochs=args.epochs, progress=not SMOKE)
print("VAE IWAE (its own discrete likelihood):", pg.log_likelihood(vae, test, "iwae", 100))
print("VAE AIS  (its own discrete likelihood):", pg.log_likelihood(vae, test, "ais", args.chains, **AIS))




vae_decoder = pg.GAN(data.info.event_shape, LATENT, generator=DecoderMean(vae))

# %%
# The same Gaussian observation model for both: sigma chosen by AIS on validation data,
# then AIS on the test digits and the BDMC gap on simulated digits.
for name, model in [("GAN", gan), ("VAE decoder", vae_decoder)]:
    sigma, scores = pg.infer.select_obs_noise(model.eval(), valid, [1.0, 2.0, 4.0, 8.0],
                                              num_samples=max(4, args.chains // 2), **AIS)
    est = pg.log_likelihood(model, test, "ais", args.chains, **AIS)
    check = pg.infer.bdmc(model, num_data=min(50, args.num_test), num_chains=args.chains, **AIS)
    print(f"{name}: sigma = {sigma} levels (validation: {', '.join(f'{s}: {v:.1f}' for s, v in scores.items())})")
    print(f"  test AIS: {est}")
    print(f"  {check}")

# %%
# Samples of both models (the GAN's G(z), the VAE's decoder mean).
pg.diagnostics.save_sample_grid(gan.sample(64, mean=True), "gan_optdigits_samples.png", num_levels=17)
pg.diagnostics.save_sample_grid(vae.sample(64, mean=True), "vae_optdigits_mean_samples.png", num_levels=17)
