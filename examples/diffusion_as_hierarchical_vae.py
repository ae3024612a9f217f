r"""
Diffusion is a hierarchical VAE
===============================

A diffusion model is a latent-variable model with a chain of latents
:math:`z_T \to z_{T-1} \to \dots \to z_0 \to x`, each a noisier copy of the data, and a
*fixed* variational posterior: the forward noising process. Written as a Pyro program the
statement is literal: ``diff.model`` samples the chain from :math:`z_T \sim \mathcal{N}(0, I)`
down to :math:`x`, ``diff.guide`` is the forward process in the same order,
:math:`q(z_T \mid x)` then :math:`q(z_{t-1} \mid z_t, x)`, and any Pyro ELBO on the pair is a
lower bound on :math:`\log p(x)`.

Because model and guide share one dependency structure, ``TraceMeanField_ELBO`` computes
each latent's term as an analytic Gaussian KL given the guide's sample of its parent: the
classical decomposition

.. math:: \log p(x) \ge -\mathrm{KL}(q(z_T \mid x) \| p(z_T))
          - \sum_{t=1}^T \mathbb{E}_q \mathrm{KL}(q(z_{t-1} \mid z_t, x) \| p(z_{t-1} \mid z_t))
          + \mathbb{E}_q \log p(x \mid z_0).

That costs :math:`T` network evaluations per data point. The estimator diffusion models
are trained with picks *one* step :math:`t` per data point at random and multiplies its KL by
:math:`T`: the same expectation, a fraction of the cost. This script shows the chain, checks
the two estimators agree on a small model, and checks the continuous-time bound of the
Bayes-optimal denoiser for :math:`\mathcal{N}(0, 1)` data against the exact entropy.

Run with ``python examples/diffusion_as_hierarchical_vae.py``.
"""

import math
import os

import pyro
import torch

import probgen as pg

torch.manual_seed(0)
smoke = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"

# %%
# A small discrete-time model on 16 optdigits images (17 grey levels), as 64-vectors.
data = pg.datasets.load("optdigits")
x = data.train[:16].reshape(16, 64)
diff = pg.Diffusion(pg.DataInfo((64,), "discrete", 17), num_steps=8)

# %%
# The Pyro program: the model's sample sites are the chain, then the observed data.
guide_trace = pyro.poutine.trace(diff.guide).get_trace(x)
model_trace = pyro.poutine.trace(pyro.poutine.replay(diff.model, trace=guide_trace)).get_trace(x)
for name, site in model_trace.nodes.items():
    if site["type"] == "sample" and name != "data":
        print(f"{name:>4}: {type(site['fn'].base_dist).__name__:<12} batch {tuple(site['fn'].batch_shape)}"
              f"  event {tuple(site['fn'].event_shape)}  observed={site['is_observed']}")

# %%
# Term by term, from the traces: the prior KL at z_8, one Gaussian KL per step, and the
# exact categorical log-probability of the data given z_0.
with torch.no_grad():
    kl = {name: torch.distributions.kl_divergence(guide_trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]).mean()
          for name in guide_trace.stochastic_nodes if name.startswith("z_")}
    reconstruction = model_trace.nodes["x"]["fn"].log_prob(x).mean()
print("per data point, nats: prior KL", f"{kl['z_8'].item():.3f};",
      "step KLs", ", ".join(f"{kl[f'z_{i}'].item():.1f}" for i in range(7, -1, -1)) + ";",
      f"log p(x | z_0) {reconstruction.item():.3f}")

# %%
# The explicit chain under ``TraceMeanField_ELBO`` against the fast one-step estimator,
# each repeated to get a Monte Carlo standard error.
repeats = 4 if smoke else 16
elbo = pyro.infer.TraceMeanField_ELBO(num_particles=50, vectorize_particles=True, max_plate_nesting=1)
with torch.no_grad():
    chain = torch.tensor([-elbo.loss(diff.model, diff.guide, x) / len(x) for _ in range(repeats)])
    fast = torch.stack([sum(diff.elbo_terms(x, 1).values()).mean() for _ in range(50 * repeats)])
se = math.sqrt(chain.var() / len(chain) + fast.var() / len(fast))
print(f"explicit chain: {chain.mean():.2f} ± {chain.std() / math.sqrt(len(chain)):.2f} nats per point "
      f"({8} network calls each)")
print(f"fast estimator: {fast.mean():.2f} ± {fast.std() / math.sqrt(len(fast)):.2f} nats per point (1 call each)")
print(f"difference / standard error = {(chain.mean() - fast.mean()) / se:.2f}")

# %%
# The continuous-time limit (``num_steps=None``) with the Bayes-optimal denoiser for
# N(0, 1) data, E[y | z_t] = alpha_t z_t, plugged in as the network: its bound is the exact
# negative entropy, -1.4189 nats, up to the Normal decoder's tiny variance at t = 0.


def bayes_optimal_eps(z, logsnr):
    alpha2 = torch.sigmoid(logsnr).reshape(-1, *([1] * (z.dim() - 1)))
    return (1 - alpha2).sqrt() * z  # eps_hat = (z - alpha * E[y|z]) / sigma = sigma * z


gaussian = pg.Diffusion((1,), network=bayes_optimal_eps)
y = torch.randn(4000 if smoke else 20000, 1)
estimate = pg.log_likelihood(gaussian, y, method="elbo", num_samples=16)
exact = torch.distributions.Normal(0.0, 1.0).log_prob(y[:, 0]).double()
gap = estimate.pointwise - exact
print(f"continuous-time bound - exact log p(x): {gap.mean():+.4f} ± {gap.std() / math.sqrt(len(gap)):.4f} nats")
print(estimate)
