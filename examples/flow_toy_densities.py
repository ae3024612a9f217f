"""
Normalizing flows on 2-D toy densities
======================================

A normalizing flow writes a density as a change of variables: draw :math:`u` from a standard
Normal and push it through an invertible map :math:`T`; then

.. math:: \\log p(x) = \\log \\mathcal N(T^{-1}(x); 0, I) - \\log \\lvert \\det J_T(T^{-1}(x)) \\rvert

exactly, with no latent variable to integrate out. In probgen a flow is a Pyro model whose
data site ``"x"`` is a :class:`pyro.distributions.TransformedDistribution`; the map is a stack
of nflows layers (here rational-quadratic neural spline steps, ``"nsf"``), so
:func:`probgen.fit` trains it by exact maximum likelihood and :func:`probgen.log_likelihood`
returns the exact test log-likelihood.

Each toy's true entropy :math:`H` is the floor of the expected test NLL (computed in
``benchmarks/flows_quality.py``); the gap between the two is the KL divergence from the
data distribution to the flow. Measured with this flow on a shared 2-core CPU
(``benchmarks/flows_quality.py``): after 20 epochs the gaps were 0.05 (moons), 0.05 (eight
Gaussians) and 0.16 nats (checkerboard), after 60 epochs 0.03, 0.03 and 0.11; the sharp
edges of the checkerboard are the hardest for a smooth flow. This script's default of 10
epochs takes a few minutes.
"""

import os

import torch

import probgen as pg
from probgen.diagnostics.plots import save_density

SMOKE = os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"  # a few seconds, for the docs build
EPOCHS = 1 if SMOKE else 10
ENTROPY = {"moons": 2.394, "eight_gaussians": 2.832, "checkerboard": 3.466}  # benchmarks/flows_quality.py

paths = []
for name in ENTROPY:
    data = pg.datasets.load(name)
    torch.manual_seed(0)
    flow = pg.Flow(data.info, "nsf", num_layers=5, hidden=64)
    pg.fit(flow, data.train, data.valid, epochs=EPOCHS, batch_size=256, lr=1e-3, progress=False)
    est = pg.log_likelihood(flow, data.test, method="exact", batch_size=5000)
    print(f"{name:>16}: test NLL {-est.mean:.3f} ± {est.stderr:.3f} nats ({est.label()}); "
          f"entropy {ENTROPY[name]:.3f}; gap {-est.mean - ENTROPY[name]:.3f}")
    # the learned density on a grid, beside a histogram of the test data
    log_density = lambda grid: pg.log_likelihood(flow, grid, method="exact", batch_size=len(grid)).pointwise  # noqa: E731
    paths.append(save_density(log_density, f"flow_{name}_density.png", reference=data.test, title=f"flow on {name}"))

# %%
# Data (left) and the flow's density (right), one row per toy.
import matplotlib.pyplot as plt  # noqa: E402  (shown in the rendered gallery)
from matplotlib.image import imread  # noqa: E402

fig, axes = plt.subplots(len(paths), 1, figsize=(8, 4 * len(paths)))
for ax, path in zip(axes, paths):
    ax.imshow(imread(path))
    ax.axis("off")
plt.show()
