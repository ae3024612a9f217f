"""
Comparing the four families by log-likelihood, with honest uncertainty
======================================================================

Every probgen model gets a per-data-point log-likelihood, but not the same *kind* of
number: a flow's is **exact**, a VAE's IWAE and a diffusion model's ELBO are **lower
bounds**, and a GAN's (with Gaussian observation noise) is an annealed-importance-sampling
**estimate**. :func:`probgen.compare` scores every model on the *same* test points and
reports, per model,

- ``log p(x) [nats]``: the mean over test points, in nats per data point (higher is better);
  ``bits/dim`` is the same number as :math:`-\\text{mean} / (D \\ln 2)` (lower is better);
- ``± se``: the standard error of that mean over test points. It is large because test
  points differ in difficulty, and it is the *wrong* error bar for a comparison;
- ``diff to best`` and ``± se(diff)``: the mean of the per-point differences to the best
  model and *its* standard error. Both models find the same points hard, so pairing removes
  most of the spread: a difference of two or more paired standard errors is one to believe
  (this is how ``arviz.compare`` reports differences of elpd).

A bound that trails may not be a worse model: its gap to the truth is unknown. The example
shows how loose a bound is by tightening it: the IWAE bound rises with the number of
importance samples ``k`` towards :math:`\\log p(x)`, and the ELBO (``k = 1`` in the mean) is
the loosest of all.

The data are the two-moons toy: real-valued, so all four models give *densities* on the
same space and the numbers are comparable (the known entropy of two moons, about 2.40 nats,
means no model can average much above -2.40 on test data). On discrete data such as
optdigits, models of the discrete values (VAE, dequantized flow, diffusion) give
probabilities, while the GAN's Gaussian gives a density of the levels as real numbers;
the table warns when it mixes the two. ``probgen compare --data optdigits`` runs the same
comparison from the command line.

Budget: about a minute on a laptop CPU (``--epochs`` and ``--num-test`` for more).

References:
    Theis, van den Oord, Bethge (2016). A note on the evaluation of generative models. ICLR.
    Vehtari, Gelman, Gabry (2017). Practical Bayesian model evaluation using leave-one-out
    cross-validation and WAIC. Statistics and Computing 27.
"""

import argparse
import os

import torch

import probgen as pg

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"  # a few seconds, for the docs build
parser = argparse.ArgumentParser(description="Comparing the four families by log-likelihood, with honest uncertainty")
parser.add_argument("--epochs", type=int, default=1 if SMOKE else 5)
parser.add_argument("--num-train", type=int, default=1000 if SMOKE else 20000)
parser.add_argument("--num-test", type=int, default=50 if SMOKE else 500)
parser.add_argument("--out", default="runs/example_compare")
args, _ = parser.parse_known_args()

torch.manual_seed(0)
data = pg.datasets.load("moons")
train, valid, test = data.train[: args.num_train], data.valid[:500], data.test[: args.num_test]

# %%
# One model per family, each trained with :func:`probgen.fit` (the same loop for all).
models = {
    "vae": pg.VAE(data.info, 2, hidden=(64, 64)),
    "flow": pg.Flow(data.info, "nsf", num_layers=4, hidden=32),
    "diffusion": pg.Diffusion(data.info, num_steps=100),
    "gan": pg.GAN(data.info, 2, hidden=(64, 64)),
}
for name, model in models.items():
    run = pg.fit(model, train, valid if name != "gan" else None, epochs=args.epochs, batch_size=128, progress=False)
    print(f"{name:>9}: {run}")

# %%
# A GAN has no density until it has observation noise; choose it on validation data by AIS
# (Wu et al., 2017), as :func:`probgen.infer.select_obs_noise` does.
AIS = {"num_steps": 20 if SMOKE else 200, "leapfrog_steps": 5}
sigma, _ = pg.infer.select_obs_noise(models["gan"], valid[:50], num_samples=8, **AIS)
print(f"GAN observation noise: {sigma:.3f}")

# %%
# The comparison. Each model is scored by its best method: exact (flow), IWAE (VAE), ELBO
# (diffusion), AIS (GAN), on the same test points.
# AIS chains cost far more than importance samples, so the GAN gets fewer of them.
table = pg.compare(models, test, num_samples=25 if SMOKE else 100,
                   estimator_options={"ais": {**AIS, "num_samples": 8 if SMOKE else 32}})
print(table)

# %%
# Reading it: the paired standard error of a difference is much smaller than the models'
# own standard errors, because the per-point values move together.
frame = table.to_dataframe()
print(frame[["kind", "mean_nats", "stderr", "diff", "diff_stderr"]])
best = table.estimates[table.best].pointwise
for name, estimate in table.estimates.items():
    if name != table.best:
        corr = torch.corrcoef(torch.stack([estimate.pointwise, best]))[0, 1].item()
        print(f"{name:>9}: correlation of its per-point values with the best model's: {corr:.2f}")

# %%
# How loose is a bound? Tighten it. The VAE's IWAE bound rises with k; the ELBO is the
# loosest. The gap between k=1000 and the ELBO is a lower bound on how loose the ELBO is.
for k in (1, 10, 100) if SMOKE else (1, 10, 100, 1000):
    print(f"VAE IWAE, k={k:>4}: {pg.log_likelihood(models['vae'], test, method='iwae', num_samples=k)}")
print(f"VAE ELBO        : {pg.log_likelihood(models['vae'], test, method='elbo', num_samples=100)}")

# %%
# The figure: each model's mean with its standard error (left), and the paired difference
# to the best model with the paired standard error (right). Triangles mark lower bounds:
# the true value lies to their right.
path = pg.diagnostics.save_comparison(table, os.path.join(args.out, "compare.png"))
table.to_dataframe().to_csv(os.path.join(args.out, "table.csv"))
print(f"wrote {path}")
