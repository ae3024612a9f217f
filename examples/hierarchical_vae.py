r"""
Hierarchical VAEs: layers of latents, one KL per layer, collapse
================================================================

A hierarchical VAE explains each digit :math:`x_n` by a chain of latents,
:math:`z_2 \to z_1 \to x`: the top layer :math:`z_2 \sim \mathcal{N}(0, I)`, the lower
layer :math:`z_1 \mid z_2` Gaussian with a mean and scale that a network computes from
:math:`z_2`, and the pixels given :math:`z_1` (17 grey levels, a discretized logistic). Its
ELBO is a reconstruction term minus one KL term per layer, so the bound says how many nats
each layer spends on describing the digit:

.. math:: \log p(x) \ge \mathbb{E}_q \log p(x \mid z_1)
          - \mathrm{KL}_{z_2} - \mathrm{KL}_{z_1}.

The posterior is inferred *bottom-up*, :math:`q(z_1 \mid x)\, q(z_2 \mid z_1)`, or
*top-down*, :math:`q(z_2 \mid x)\, q(z_1 \mid z_2, x)`, where the posterior of :math:`z_1`
reads the data's features and :math:`z_2` in one Gaussian head (the default), or, as in the
ladder VAE (``merge="precision"``), is the generative conditional :math:`p(z_1 \mid z_2)`
corrected by what the data say (a precision-weighted product of two Gaussians).

In this chain each layer sees only the one above it. With a *deterministic top-down path*
(``top_down_path=True``, the form of the LVAE and NVAE) the generative side carries a state
:math:`h_l = f_l(h_{l+1}, z_l)` down the layers, so each conditional, and the decoder, read
everything above them; the top-down guide runs the same path on its own draws.

A layer whose KL term is near zero carries no information about :math:`x`: its units have
*collapsed* onto the prior. The active-units diagnostic (Burda et al., 2016) counts, per
layer, the units whose posterior mean moves with the data. KL warm-up (the KL terms switched
on gradually over the first epochs) is the usual remedy; the table below shows, for this
small budget, what it and the choice of guide do.

A diffusion model is the same structure with a *fixed* guide, the forward noising process:
the test suite builds a :class:`probgen.HierarchicalVAE` from a diffusion's reverse steps and
its forward process and checks that both give the same ELBO on the same draws
(:doc:`/hierarchical`, and ``examples/diffusion_as_hierarchical_vae.py`` for the chain).

This runs in well under a minute on a laptop CPU.
"""

import os

import torch

import probgen as pg

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"  # a few seconds, for the docs build
EPOCHS, WARMUP, NUM_SAMPLES, NUM_TEST = (2, 1, 10, 100) if SMOKE else (15, 5, 100, 300)

data = pg.datasets.load("optdigits")  # embedded: 8x8 digits, 17 grey levels
test = data.test[:NUM_TEST]

# %%
# Six models on the same data and budget: the one-layer VAE, and two-layer hierarchies
# (16 latents in :math:`z_1`, 8 in :math:`z_2`) with each guide, the bottom-up one also with
# KL warm-up over the first epochs, the top-down one also with the ladder merge and with the
# deterministic path.
recipes = {
    "VAE, 1 layer (16)": (lambda: pg.VAE(data.info, 16), None),
    "HVAE bottom-up (16, 8)": (lambda: pg.HierarchicalVAE(data.info, (16, 8), inference="bottom-up"), None),
    "HVAE bottom-up + warm-up": (lambda: pg.HierarchicalVAE(data.info, (16, 8), inference="bottom-up"),
                                 f"warmup:{WARMUP}"),
    "HVAE top-down (16, 8)": (lambda: pg.HierarchicalVAE(data.info, (16, 8), inference="top-down"), None),
    "HVAE top-down, ladder merge": (lambda: pg.HierarchicalVAE(data.info, (16, 8), inference="top-down",
                                                               merge="precision"), None),
    "HVAE top-down + path": (lambda: pg.HierarchicalVAE(data.info, (16, 8), inference="top-down",
                                                        top_down_path=True), None),
}
models = {}
for name, (build, objective) in recipes.items():
    torch.manual_seed(0)
    models[name] = build()
    pg.fit(models[name], data.train, data.valid, epochs=EPOCHS, objective=objective, progress=False, seed=0)

# %%
# Side by side: the IWAE bound in bits per dimension (lower is better), the ELBO and, for the
# hierarchies, its KL terms, in nats per digit, with the active units of each layer (the
# VAE's one layer is ``z``, of 16 units).
print(f"{'model':<26}{'IWAE bits/dim':>14}{'ELBO nats':>11}{'KL z2':>8}{'KL z1':>8}{'active z2, z1':>15}")
for name, model in models.items():
    iwae = pg.log_likelihood(model, test, method="iwae", num_samples=NUM_SAMPLES)
    elbo = pg.log_likelihood(model, test, method="elbo", num_samples=4)
    counts = pg.diagnostics.active_units(model, test).counts
    kl = {term: f"{-value.mean().item():.2f}" for term, value in (elbo.terms or {}).items()}
    active = f"{counts.get('z2', '-')}, {counts.get('z1', counts.get('z'))}"
    print(f"{name:<26}{iwae.bits_per_dim:>14.4f}{elbo.mean:>11.2f}{kl.get('z2', '-'):>8}{kl.get('z1', '-'):>8}"
          f"{active:>15}")

# %%
# Read the KL and the active units together. A layer's KL is what it says about the digit, in
# nats; its active units count how far its posterior mean moves with the data, which a layer
# can also inherit from the layer above. The ladder merge's row is low in both: little reaches
# either layer (the next cell says why). With the default top-down guide, the path lets the
# decoder read :math:`z_2` directly rather than only through :math:`z_1`; at this budget it
# gives the best bound of the table. ``benchmarks/hvae_optdigits.py`` finds the same lead after
# 10 epochs (2.090 against 2.126 bits/dim, three seeds) and none after 100 (1.868 against
# 1.863, within the spread between seeds), which is why the path stays off by default.

# %%
# The ladder merge's ELBO, term by term, in nats and bits per dimension: each term is a
# conditional KL in closed form (never negative), the reconstruction a Monte Carlo mean. This
# guide lags far behind the others (and is therefore not the top-down default): in the first
# epochs the generative conditional :math:`p(z_1 \mid z_2)` sharpens, which lowers the noise
# of the merged posterior for every digit at once, and the merge then follows it rather than
# what the data say, so little information reaches the upper layer. Sønderby et al. trained
# theirs for far longer, with warm-up and batch normalization. The scales show it:
top_down = models["HVAE top-down, ladder merge"]
print(pg.log_likelihood(top_down, test, method="elbo", num_samples=16))
print(pg.diagnostics.active_units(top_down, test))
with torch.no_grad():
    features = top_down.encoder(top_down.likelihood.network_input(test))
    z2_loc, _ = top_down.posteriors[1](features[1])
    _, conditional_scale = top_down.conditionals[0](z2_loc)
    _, data_scale = top_down.posteriors[0].head(features[0])
print(f"mean scale of p(z1 | z2): {conditional_scale.mean():.3f}; of what the data say about z1: {data_scale.mean():.3f}")

# %%
# What each layer learns. Each row fixes one draw of the top layer :math:`z_2` and draws
# :math:`z_1 \mid z_2` eight times; the images are the decoder's means. Along a row only
# what the lower layer encodes changes; from row to row, everything may.
hvae = models["HVAE bottom-up (16, 8)"]
with torch.no_grad():
    z2 = hvae.prior().sample((8,)).repeat_interleave(8, 0)
    loc, scale = hvae.conditionals[0](z2)
    z1 = loc + scale * torch.randn_like(loc)
    grid = hvae.likelihood.mean(hvae.decoder(z1))
path = pg.diagnostics.save_sample_grid(grid, "hierarchical_vae_layers.png", num_levels=17, nrow=8)

import matplotlib.pyplot as plt  # noqa: E402  (shown in the rendered gallery)
from matplotlib.image import imread  # noqa: E402

fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(imread(path))
ax.set_title("rows: one z2 each; columns: z1 | z2")
ax.axis("off")
plt.show()
