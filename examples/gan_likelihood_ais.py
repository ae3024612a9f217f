"""
A GAN and a VAE on digits, compared by log-likelihood
=====================================================

A GAN's generator and a VAE's decoder are the same kind of object: a network :math:`G`
mapping a latent :math:`z \\sim \\mathcal{N}(0, I)` to an image. A GAN defines no likelihood,
but adding an observation model around :math:`G(z)` turns any such network into a *decoder
model* whose likelihood

.. math:: P(x) = \\int p(z)\\, p(x \\mid G(z))\\, dz

is defined. Wu et al. (2017) estimated it with annealed importance sampling (AIS), with
the noise chosen on validation data, for GANs and VAEs alike, under a Gaussian. On the 8x8
optdigits (17 grey levels) probgen's GAN, built from ``data.info``, uses an observation
model over the levels themselves: a logistic of scale :math:`s` around :math:`G(z)`,
discretized onto the levels. So the GAN's number is a *probability* of the digits, in the
same units as the VAE's IWAE bound and every other discrete model in probgen. AIS is checked
by bidirectional Monte Carlo (BDMC): on data simulated from each model, the reverse chain
gives an upper bound, and the gap between the two bounds says how far AIS can be from the
truth on such data.

The VAE trains with its own discretized-logistic likelihood (which learns a scale per pixel);
its decoder's mean also becomes the :math:`G` of a decoder model with the GAN's observation
model, so that the two networks are compared under one likelihood.

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
# enough for AIS's thousands of generator gradients on a CPU), trained with the GAN's
# defaults; built from ``data.info``, its generator squashes its output into (0, 16).
torch.manual_seed(0)
gan = pg.GAN(data.info, LATENT, network="mlp")
run = pg.fit(gan, data.train, epochs=args.epochs, progress=not SMOKE)
print(run)

# %%
# The VAE, fitted by its ELBO; built from ``data.info``, its likelihood is a discretized logistic.
vae = pg.VAE(data.info, LATENT)
pg.fit(vae, data.train, valid=data.valid, epochs=args.epochs, progress=not SMOKE)
print("VAE IWAE (its own likelihood):", pg.log_likelihood(vae, test, "iwae", 100))
print("VAE AIS  (its own likelihood):", pg.log_likelihood(vae, test, "ais", args.chains, **AIS))
vae_decoder = pg.GAN(data.info, LATENT, generator=pg.models.DecoderMean(vae))

# %%
# The same observation model for both networks: its scale chosen by AIS on validation data
# (``select_obs_noise`` tries six scales from 0.08 to 8 levels), then AIS on the test digits
# and the BDMC gap on simulated digits.
for name, model in [("GAN", gan), ("VAE decoder", vae_decoder)]:
    scale, scores = pg.infer.select_obs_noise(model.eval(), valid, num_samples=max(4, args.chains // 2), **AIS)
    est = pg.log_likelihood(model, test, "ais", args.chains, **AIS)
    check = pg.infer.bdmc(model, num_data=min(50, args.num_test), num_chains=args.chains, **AIS)
    print(f"{name}: scale {scale:.3g} levels (validation: {', '.join(f'{s:.3g}: {v:.1f}' for s, v in scores.items())})")
    print(f"  test AIS: {est}")
    print(f"  {check}")

# %%
# Samples of both models (the GAN's G(z), the VAE's decoder mean).
pg.diagnostics.save_sample_grid(gan.sample(64, mean=True), "gan_optdigits_samples.png", num_levels=17)
pg.diagnostics.save_sample_grid(vae.sample(64, mean=True), "vae_optdigits_mean_samples.png", num_levels=17)
