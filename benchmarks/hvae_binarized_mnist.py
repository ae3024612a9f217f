"""The two-layer hierarchical VAE on static binarized MNIST: test NLL by IWAE (k = 5000), run in stages.

The model is Tomczak & Welling's (2018) two-layer HVAE as closely as
:class:`probgen.HierarchicalVAE` builds it: 784 binary pixels with a Bernoulli decoder, two
layers of 40 latents, hidden layers of 300 gated units, a VampPrior with 500 pseudo-inputs
on the top layer (``--prior normal``: the standard-Normal prior instead), KL warm-up over the
first 100 epochs, Adam (lr 5e-4), batch 100, early stopping on the validation ELBO (patience
50). The published figure for it is 83.19 nats (their "HVAE (L = 2) + VampPrior"); the
issue's target is at or below 83.2.

Their model is :math:`p(z_2)\\, p(z_1 \\mid z_2)\\, p(x \\mid z_1, z_2)` with inference
:math:`q(z_2 \\mid x)\\, q(z_1 \\mid x, z_2)`. ``--architecture published`` (the default)
builds that with the deterministic top-down path (``top_down_path=True``: the decoder reads
:math:`h_1 = f_1(h_2, z_1)`, :math:`h_2 = f_2(z_2)`, so it sees both layers) and the top-down
guide whose :math:`q(z_1 \\mid x, z_2)` is one Gaussian head on the data's features and
:math:`h_2` (``merge="concat"``). What still differs from their networks: every path step and
head reads its inputs side by side in one gated layer where they embed :math:`z_1` and
:math:`z_2` (and :math:`x` and :math:`z_2`) by separate gated layers before a joint one;
:math:`q(z_2 \\mid x)` reads the ladder's second feature map, two gated layers above the
first, where theirs reads :math:`x` through two; their log-variances are clipped by a
hardtanh, these scales are a softplus; their VampPrior keeps its pseudo-inputs in [0, 1],
this one's are free parameters; their optimizer is Adam on gradients scaled to unit norm per
parameter. ``--architecture tomczak-welling`` removes these differences: it plugs their
networks into :class:`probgen.HierarchicalVAE` as custom modules (:func:`published_networks`,
with He's initialization) and trains them with :class:`NormalizedAdam`. One detail follows
their code of August 2017 rather than its final form: the pseudo-inputs are a sigmoid of
weights that start at -0.05 ± 0.01 (images of 0.49), where the final code clamps weights that
start at 0.05 ± 0.01 to [0, 1] (images of 0.05). Such a model has no config, so ``evaluate``
rebuilds it here and loads the checkpoint's weights into it.
``--architecture markov`` builds what this script built before: the Markov chain
:math:`z_2 \\to z_1 \\to x` with the ladder guide's precision-weighted merge (Sønderby
et al. 2016).

The run is long on a CPU (hundreds of epochs), so it is cut into stages that resume from the
checkpoint folder; each ``train`` stage adds ``--epochs`` epochs and stops, ``evaluate``
scores the best epoch so far, and the results of both priors are kept in
``docs/benchmark_results/hvae_binarized_mnist.json``, from which the table in
``hvae_binarized_mnist.txt`` beside it is rewritten::

    python benchmarks/hvae_binarized_mnist.py train --epochs 50 --checkpoint-dir runs/hvae_vamp   # repeat
    python benchmarks/hvae_binarized_mnist.py evaluate --checkpoint-dir runs/hvae_vamp            # k=5000, all 10000
    python benchmarks/hvae_binarized_mnist.py train --prior normal --epochs 50 --checkpoint-dir runs/hvae_normal
    python benchmarks/hvae_binarized_mnist.py evaluate --prior normal --checkpoint-dir runs/hvae_normal
    python benchmarks/hvae_binarized_mnist.py train --architecture tomczak-welling --epochs 50      # runs/hvae_vamp_tomczak-welling
    python benchmarks/hvae_binarized_mnist.py evaluate --checkpoint-dir runs/hvae_vamp_tomczak-welling
    python benchmarks/hvae_binarized_mnist.py train --ema 0.999 --epochs 50                       # runs/hvae_vamp_ema0.999
    python benchmarks/hvae_binarized_mnist.py evaluate --ema 0.999                                # row vamp+ema0.999
    python benchmarks/hvae_binarized_mnist.py table                                               # print it again

Options of ``train`` change the recipe, to measure what matters: ``--pseudo-init data``
starts the VampPrior's 500 pseudo-inputs at random training images instead of the library's
uniform noise; ``--pseudo-init clamped`` starts them at 0.05 ± 0.01 and has the encoder read
them clamped to [0, 1] (``pseudo_inputs="clamped"``, Tomczak & Welling's final code);
``--encoder-noise S`` has the guide read each training image with Gaussian noise of standard
deviation S added (``encoder_noise=S``, the denoising criterion: a regularizer of the
amortized encoder; validation and scoring read the images as they are);
``--generative-dropout P`` drops the hidden units of the decoder, the conditional
:math:`p(z_1 \\mid z_2)` and the path's lower step with probability ``P`` in training
(``generative_dropout=P``, a regularizer of the generative networks; validation and scoring
read the mean network); ``--iwae K`` trains on the IWAE bound with K particles in place of
the ELBO (Burda et al. 2016; annealed over the same warm-up), and validates, stops early and
picks the best epoch by that bound, so the epoch scored is chosen by the kind of figure the
target is set on (the folder keeps K in its ``recipe.json``); ``--dreg`` with ``--iwae K``
trains on the same bound with the doubly reparameterized gradient (``pg.infer.DReGIWAE``,
Tucker et al. 2019: less noise in the guide's gradient at large K; row ``+dregK``); and ``--ema D``
validates, checkpoints and scores an exponential moving average of the weights with decay
``D``. Give such a run its own ``--checkpoint-dir`` (the default folder names the clamped
form, the noise, the dropout, the IWAE bound and the decay, e.g.
``runs/hvae_vamp-clamped_dropout0.1_ema0.999``). ``evaluate`` reads them from the checkpoint
folder and records the run in a row of its own (``vamp+ema0.999``, ``vamp-clamped+ema0.999``,
``vamp-clamped+noise0.25+ema0.999``, ``vamp-clamped+dropout0.1+ema0.999``,
``vamp-clamped+iwae10+ema0.999``); a run with
``--pseudo-init data`` leaves no
trace in its checkpoint, so evaluate it with ``--no-record``: its row would take the place of
the published recipe's.

``evaluate`` also keeps each test image's NLL beside the checkpoint
(``test_nll_k5000_n10000.npy``) and, for a row it records, in
``docs/benchmark_results/hvae_binarized_mnist_scores/`` (``<row>.npy``), which outlives the
checkpoints; ``paired --checkpoint-dir A --against B`` prints the two runs' mean difference on
the same images with its paired standard error, far smaller than the ± over images in the
table. Each of A and B is a scored checkpoint folder or a recorded row's name
(``vamp-clamped+ema0.999+seed1``). ``history --checkpoint-dir A [--against B]`` prints a run's
validation bound, training loss and seconds at each epoch, from its last checkpoint, and with
``--against`` the second run's validation bound at the same epoch and the difference: how two
runs of one seed and data order drift apart while they train, before either is scored.
Each run's validation bound also carries its own k and its guide, so ``train --keep-epochs``
keeps every epoch's checkpoint (``epochs/epoch_NNNN.pt`` in the folder, hard links to
``last.pt`` as written), and ``validate --checkpoint-dir A --against B --epoch N --num-valid
1000 --num-samples 1000`` scores both runs' models of epoch N (default: each run's best) by
one tight bound on the same validation images, with the paired difference.

``evaluate --refine N`` scores the same model with each test image's proposal refined for N
steps first (``pg.log_likelihood(..., refine=N)``, :mod:`probgen.infer.refinement`) and
records it in a row of its own (``vamp-clamped+ema0.999+seed1+refine300``): a tighter bound on
that model's NLL, which says how much of the figure is the encoder's; it is not like for like
with the published 83.19, which came from the encoder alone.

``--seed N`` (default 0) trains a replicate of a recipe from other initial weights and another
data order, to measure how far two runs of one recipe differ; it names its own folder and row
(``runs/hvae_vamp-clamped_ema0.999_seed1``, ``vamp-clamped+ema0.999+seed1``), and ``evaluate``
reads the seed from the checkpoint.

Training stops for good when the validation bound (the ELBO, or with ``--iwae K`` the IWAE
bound) has not improved for ``--patience`` epochs
or at ``--max-epochs``; a further ``train`` then says so and does nothing. ``--threads``
(default 1) sets torch's CPU threads: the seconds per epoch in the table are measured with
it. ``evaluate --num-test N --num-samples K`` scores a subset with fewer samples (a row so
made is marked partial). Data: ``--root`` or ``$PROBGEN_DATA`` must hold binarized_mnist.npz
(or pass --download).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import probgen as pg

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "docs" / "benchmark_results" / "hvae_binarized_mnist"
RECORDED_SCORES = RESULTS.parent / "hvae_binarized_mnist_scores"  # each recorded row's per-image test NLL
PUBLISHED = {"vamp": 83.19}  # Tomczak & Welling (2018), HVAE (L = 2) + VampPrior, static binarization
TEST_SIZE, FULL_SAMPLES = 10000, 5000
# the options of HierarchicalVAE that make each architecture (module docstring)
ARCHITECTURES = {
    "published": {"top_down_path": True, "merge": "concat"},  # p(x | z1, z2), q(z1 | x, z2)
    "markov": {"top_down_path": False, "merge": "precision"},  # z2 -> z1 -> x, the ladder merge
}


# the networks of Tomczak & Welling's HVAE, plugged into pg.HierarchicalVAE as custom modules
EXACT = "tomczak-welling"
LATENT, HIDDEN, PIXELS = 40, 300, 784


def gated(*sizes: int) -> nn.Sequential:
    """Gated hidden layers ``sizes[0] -> sizes[1] -> ...`` (probgen.nn.GatedLinear)."""
    return nn.Sequential(*pg.nn.hidden_layers(sizes, "gated"))


class ClippedGaussian(nn.Module):
    """``(loc, scale)`` of a diagonal Normal by two linear maps, the log-variance clipped to
    [-6, 2] (a hardtanh), so every scale lies in [0.050, 2.72]."""

    def __init__(self, in_features: int, latent_dim: int = LATENT):
        super().__init__()
        self.loc, self.log_var = nn.Linear(in_features, latent_dim), nn.Linear(in_features, latent_dim)

    def forward(self, features):
        return self.loc(features), torch.exp(0.5 * F.hardtanh(self.log_var(features), -6.0, 2.0))


class TwoReadings(nn.Module):
    """The top-down guide's features of the data: (d1, d2), x read through one gated layer for
    q(z1 | x, z2) and through two of their own for q(z2 | x)."""

    def __init__(self):
        super().__init__()
        self.for_z1, self.for_z2 = gated(PIXELS, HIDDEN), gated(PIXELS, HIDDEN, HIDDEN)

    def forward(self, x):
        x = x.flatten(-2)
        return self.for_z1(x), self.for_z2(x)


class JointPosterior(nn.Module):
    """q(z1 | x, z2): d1 and a gated embedding of z2 side by side, one joint gated layer, then
    the clipped head (called as the top-down guide calls its posterior steps)."""

    def __init__(self):
        super().__init__()
        self.embed, self.joint, self.head = gated(LATENT, HIDDEN), gated(2 * HIDDEN, HIDDEN), ClippedGaussian(HIDDEN)

    def forward(self, features, z2, prior_loc, prior_scale):
        return self.head(self.joint(pg.nn.side_by_side(features, self.embed(z2))))


class Top(nn.Module):
    """The path's top step: the state above z1 is z2 itself (nothing is shared between
    p(z1 | z2) and p(x | z1, z2), as in the published networks)."""

    def forward(self, state, z2):
        return z2


class Embeddings(nn.Module):
    """The path's bottom step: z1 and z2 embedded by a gated layer each, side by side; the
    decoder's joint gated layer reads them."""

    def __init__(self):
        super().__init__()
        self.z1, self.z2 = gated(LATENT, HIDDEN), gated(LATENT, HIDDEN)

    def forward(self, z2, z1):
        return pg.nn.side_by_side(self.z1(z1), self.z2(z2))


class NormalizedAdam(torch.optim.Adam):
    """Adam on each parameter's gradient scaled to unit norm (their AdamNormGrad)."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    parameter.grad.div_(parameter.grad.norm() + 1e-7)
        return super().step(closure)


def published_networks(prior: str, info) -> pg.HierarchicalVAE:
    """The two-layer HVAE with Tomczak & Welling's networks: p(z1 | z2) by two gated layers,
    p(x | z1, z2) by separate embeddings and a joint gated layer, q(z2 | x) by two gated layers,
    q(z1 | x, z2) as :class:`JointPosterior`, clipped log-variances, every linear map's weights
    drawn with He's scale, and for the VampPrior 500 pseudo-inputs kept in (0, 1) by a sigmoid
    of weights that start at -0.05 ± 0.01."""
    encoder, top_head = TwoReadings(), ClippedGaussian(HIDDEN)
    if prior == "vamp":
        def top_posterior(raw):  # q(z2 | u) at the pseudo-inputs u = sigmoid(raw)
            return top_head(encoder.for_z2(torch.sigmoid(raw).flatten(-2)))

        prior = pg.distributions.VampPrior(top_posterior, torch.randn(500, *info.event_shape) * 0.01 - 0.05)
    model = pg.HierarchicalVAE(
        info, (LATENT, LATENT), inference="top-down", top_down_path=True, prior=prior,
        encoder=encoder, posteriors=[JointPosterior(), top_head],
        conditionals=[nn.Sequential(gated(LATENT, HIDDEN, HIDDEN), ClippedGaussian(HIDDEN))],
        path=[Embeddings(), Top()], decoder=nn.Sequential(gated(2 * HIDDEN, HIDDEN), nn.Linear(HIDDEN, PIXELS)))
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, (2.0 / module.in_features) ** 0.5)
    return model


def build(prior: str, info, architecture: str = "published", pseudo_inputs: str = "uniform",
          encoder_noise: float = 0.0, generative_dropout: float = 0.0) -> pg.HierarchicalVAE:
    if architecture == EXACT:
        return published_networks(prior, info)
    return pg.HierarchicalVAE(info, (40, 40), inference="top-down", prior=prior, num_pseudo_inputs=500,
                              pseudo_inputs=pseudo_inputs, hidden=(300, 300), activation="gated",
                              encoder_noise=encoder_noise, generative_dropout=generative_dropout,
                              **ARCHITECTURES[architecture])


def architecture_of(config: dict | None) -> str:
    """The name of the architecture a saved model's config describes (a config written before
    the options existed is the Markov chain with the ladder merge; custom modules have none)."""
    if config is None:
        return EXACT
    options = {"top_down_path": config.get("top_down_path", False), "merge": config.get("merge", "precision")}
    return next((name for name, value in ARCHITECTURES.items() if value == options), "other")


def prior_name(prior: str, pseudo_inputs: str = "uniform") -> str:
    """The prior as rows name it: ``vamp``, or ``vamp-clamped`` for pseudo-inputs not of the
    library's default form."""
    return prior if pseudo_inputs == "uniform" else f"{prior}-{pseudo_inputs}"


def library_pseudo_inputs(pseudo_init: str) -> str:
    """The library's ``pseudo_inputs`` a ``--pseudo-init`` choice builds (``data`` sets the
    default form's values afterwards)."""
    return "clamped" if pseudo_init == "clamped" else "uniform"


def replicate(ema: float | None = None, seed: int = 0, refine: int = 0, encoder_noise: float = 0.0,
              generative_dropout: float = 0.0, iwae: int = 0, dreg: bool = False) -> str:
    """What a row's name adds after the recipe: the encoder's training noise where there was some
    (``+noise0.25``), the generative networks' dropout rate where there was some
    (``+dropout0.2``), the particles of the IWAE bound the run was trained on in place of the
    ELBO (``+iwae10``; ``+dreg10`` with the doubly reparameterized gradient), the weight
    average's decay where the run kept one (``+ema0.999``), the seed where it is not 0
    (``+seed1``, a replicate of the recipe) and the steps of per-image refinement where the score
    refined the proposal (``+refine300``: the same model, a tighter bound)."""
    parts = [f"+noise{encoder_noise:g}" if encoder_noise else "",
             f"+dropout{generative_dropout:g}" if generative_dropout else "",
             f"+{'dreg' if dreg else 'iwae'}{iwae}" if iwae else "",
             f"+ema{ema:g}" if ema else "",
             f"+seed{seed}" if seed else "", f"+refine{refine}" if refine else ""]
    return "".join(parts)


def result_key(prior: str, architecture: str, ema: float | None = None, pseudo_inputs: str = "uniform",
               seed: int = 0, refine: int = 0, encoder_noise: float = 0.0, generative_dropout: float = 0.0,
               iwae: int = 0, dreg: bool = False) -> str:
    """The row of the results: the prior alone for the published architecture, the VampPrior's
    pseudo-inputs where they are not the library's default (``vamp-clamped``), then
    :func:`replicate` (``vamp+ema0.999``, ``vamp-clamped+ema0.999+seed1``,
    ``vamp-clamped+ema0.999+seed1+refine300``)."""
    prior = prior_name(prior, pseudo_inputs)
    key = prior if architecture == "published" else f"{prior}/{architecture}"
    return key + replicate(ema, seed, refine, encoder_noise, generative_dropout, iwae, dreg)


class SavedRun(NamedTuple):
    """What a checkpoint folder holds: its epochs (0 for a new folder), their history, the
    model's config, the decay of the weight average it was trained with (None: no average) and
    the seed it was trained with."""

    epochs: int
    history: dict
    config: dict | None
    ema: float | None
    seed: int


def saved_run(checkpoint_dir: Path) -> SavedRun:
    last = checkpoint_dir / "last.pt"
    if not last.is_file():
        return SavedRun(0, {}, None, None, 0)
    state = pg.infer.load_checkpoint(last, required=("model", "epoch", "history", "config"))
    return SavedRun(state["epoch"], state["history"], state["config"],
                    state["ema"]["decay"] if "ema" in state else None, state.get("seed", 0))


def trained_run(checkpoint_dir: Path) -> SavedRun:
    """:func:`saved_run` of a folder that 'train' wrote, or a clear error when it holds none."""
    run = saved_run(checkpoint_dir)
    if not run.epochs:
        raise SystemExit(f"error: {checkpoint_dir} holds no checkpoint (no last.pt): pass a folder that 'train' wrote")
    return run


# beside a run's checkpoints, what of its recipe they do not keep: the training bound
RECIPE = "recipe.json"


def training_bound(checkpoint_dir: Path) -> tuple[int, bool]:
    """The particles of the IWAE bound a run in ``checkpoint_dir`` is trained on (0: the ELBO, as
    for every folder written before the choice existed), and whether its gradient was the doubly
    reparameterized one (``"dreg": true``; absent: no)."""
    path = checkpoint_dir / RECIPE
    if not path.is_file():
        return 0, False
    try:
        recipe = json.loads(path.read_text())
        iwae, dreg = recipe["iwae"], recipe.get("dreg", False)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SystemExit(f"error: {path} should hold {{\"iwae\": k}}, the run's training bound; it cannot be "
                         f"read ({error!r})") from None
    if not isinstance(iwae, int) or isinstance(iwae, bool) or iwae < 0:
        raise SystemExit(f"error: {path} should hold {{\"iwae\": k}} with k a whole number >= 0, got {iwae!r}")
    if not isinstance(dreg, bool) or (dreg and not iwae):
        raise SystemExit(f"error: {path}'s \"dreg\" should be true or false (true only with \"iwae\" > 0), got {dreg!r}")
    return iwae, dreg


def training_objective(iwae: int, warmup: int, dreg: bool = False):
    """What ``train`` optimizes: the ELBO (``iwae=0``) or the IWAE bound with ``iwae`` particles
    (``dreg``: with the doubly reparameterized gradient), annealed over ``warmup`` epochs (0: none).
    Validation, early stopping and the best epoch read the same bound without annealing."""
    if not iwae:
        return pg.infer.KLWarmup(warmup) if warmup > 0 else "elbo"
    bound = pg.infer.DReGIWAE(iwae) if dreg else pg.infer.IWAE(iwae)
    return pg.infer.KLWarmup(warmup, elbo=bound) if warmup > 0 else bound


def best_epoch(history: dict) -> int:
    valid = history["valid_loss"]
    return min(range(len(valid)), key=valid.__getitem__) + 1


def start_at_training_images(model: pg.HierarchicalVAE, train: torch.Tensor, seed: int) -> None:
    """Set the VampPrior's pseudo-inputs to distinct training images drawn at random
    (as the encoder reads them), in place of the library's uniform noise."""
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    start = model.likelihood.network_input(train[chosen[:model.prior.pseudo_inputs.shape[0]]])
    with torch.no_grad():
        model.prior.pseudo_inputs.copy_(start)


class KeepEpochs(pg.infer.Callback):
    """Keep each epoch's checkpoint as ``epochs/epoch_NNNN.pt`` in the run's folder (``train
    --keep-epochs``): a hard link to the ``last.pt`` that ``pg.fit`` has just written, which it
    replaces by a rename the next epoch, so the link keeps this epoch's file without writing it
    again (a copy where the file system has no links); each kept epoch still takes its own
    space on disk. ``validate --epoch N`` reads them."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_epoch_end(self, state) -> None:
        if not state.is_main:  # the process that wrote last.pt keeps it
            return
        target = kept_checkpoint_path(self.folder, state.epoch)
        target.parent.mkdir(exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(self.folder / "last.pt", target)
        except OSError:
            shutil.copyfile(self.folder / "last.pt", target)


def kept_checkpoint_path(folder: Path, epoch: int) -> Path:
    """Where ``train --keep-epochs`` keeps epoch ``epoch``'s checkpoint of the run in ``folder``."""
    return folder / "epochs" / f"epoch_{epoch:04d}.pt"


def train(args, data):
    if args.pseudo_init != "uniform" and (args.prior != "vamp" or args.architecture == EXACT):
        raise SystemExit(f"error: --pseudo-init {args.pseudo_init} sets the library VampPrior's pseudo-inputs: it needs "
                         f"--prior vamp and an architecture other than {EXACT} (whose pseudo-inputs are a sigmoid of "
                         "its weights)")
    if args.encoder_noise and args.architecture == EXACT:
        raise SystemExit(f"error: --encoder-noise is an option of the library's networks; the {EXACT} architecture's "
                         "encoder reads the data as they are")
    if args.generative_dropout and args.architecture == EXACT:
        raise SystemExit(f"error: --generative-dropout is an option of the library's networks; the {EXACT} "
                         "architecture's networks have no dropout")
    if args.iwae < 0:
        raise SystemExit(f"error: --iwae takes the number of particles of the training bound, a whole number >= 0 "
                         f"(0: the ELBO), got {args.iwae}")
    if args.dreg and not args.iwae:
        raise SystemExit("error: --dreg is a gradient of the IWAE bound: pass --iwae K with it")
    folder = Path(args.checkpoint_dir)
    done, history, config, _, _ = saved_run(folder)  # pg.fit refuses a resume with another --ema or --seed
    trained_on = training_bound(folder) if done else (args.iwae, args.dreg)
    if trained_on != (args.iwae, args.dreg):
        raise SystemExit(f"error: {folder} holds a run trained with --iwae {trained_on[0]}"
                         f"{' --dreg' if trained_on[1] else ''}; pass the same to continue it, "
                         "or choose another --checkpoint-dir")
    if done and architecture_of(config) != args.architecture:
        raise SystemExit(f"error: {folder} holds a run of the {architecture_of(config)!r} architecture; pass "
                         f"--architecture {architecture_of(config)} to continue it, or choose another --checkpoint-dir")
    if done and (done - best_epoch(history) >= args.patience or done >= args.max_epochs):
        print(f"{folder}: training ended at epoch {done} (best {best_epoch(history)}); nothing to do: run 'evaluate'")
        return
    target = min(done + args.epochs, args.max_epochs)
    torch.manual_seed(args.seed)
    model = build(args.prior, data.info, args.architecture, library_pseudo_inputs(args.pseudo_init), args.encoder_noise,
                  args.generative_dropout)
    if args.pseudo_init == "data" and not done:  # a resumed run reads its own
        start_at_training_images(model, data.train, args.seed)
    objective = training_objective(args.iwae, args.warmup, args.dreg)
    if not done:
        folder.mkdir(parents=True, exist_ok=True)
        recipe = {"iwae": args.iwae, "dreg": True} if args.dreg else {"iwae": args.iwae}
        (folder / RECIPE).write_text(json.dumps(recipe) + "\n")
    print(f"training epochs {done + 1}..{target} of at most {args.max_epochs} ({args.prior} prior, "
          f"{args.architecture} architecture, "
          f"{torch.get_num_threads()} thread(s), device {pg.infer.resolve_device(args.device)})")
    optimizer = NormalizedAdam if args.architecture == EXACT else torch.optim.Adam
    run = pg.fit(model, data.train, data.valid, epochs=target, batch_size=100, lr=5e-4, objective=objective,
                 optimizer=optimizer, ema=args.ema, callbacks=[KeepEpochs(folder)] if args.keep_epochs else (),
                 patience=args.patience, device=args.device, seed=args.seed, checkpoint_dir=folder, resume=True,
                 progress=not args.no_progress)
    seconds = run.history["seconds"][done:]
    bound = f"-IWAE (k = {args.iwae})" if args.iwae else "-ELBO"
    print(f"{run}; this stage: {len(seconds)} epochs, {statistics.median(seconds):.1f} s/epoch (median), "
          f"validation {bound} {run.history['valid_loss'][-1]:.2f} nats")


def trained_model(path: Path, architecture: str, info) -> tuple[pg.HierarchicalVAE, str]:
    """The model a checkpoint holds and its top prior's name. A model of custom modules has no
    config: it is built here and the weights are loaded into it (the prior read from them)."""
    if architecture != EXACT:
        model = pg.load_model(path)
        return model, model.config["prior"]
    weights = pg.infer.load_checkpoint(path, required=("model",))["model"]
    prior = "vamp" if "prior.pseudo_inputs" in weights else "normal"
    model = build(prior, info, EXACT)
    model.load_state_dict(weights)
    return model, prior


def evaluate(args, data):
    folder = Path(args.checkpoint_dir)
    done, history, config, ema, seed = trained_run(folder)
    architecture = architecture_of(config)
    model, prior = trained_model(scored_checkpoint(folder, None), architecture, data.info)
    model = model.to(pg.infer.resolve_device(args.device))
    test = pg.datasets.random_subset(data.test, args.num_test)  # the split is in class order
    started = time.perf_counter()
    iwae = pg.log_likelihood(model, test, method="iwae", num_samples=args.num_samples, refine=args.refine)
    minutes = (time.perf_counter() - started) / 60
    elbo = pg.log_likelihood(model, test, method="elbo", num_samples=1)
    units = pg.diagnostics.active_units(model, test[:1000])
    bound = training_bound(folder)
    row = {
        "prior": prior,
        "architecture": architecture,
        "pseudo_inputs": (config or {}).get("pseudo_inputs", "uniform"),
        "encoder_noise": (config or {}).get("encoder_noise", 0.0),
        "generative_dropout": (config or {}).get("generative_dropout", 0.0),
        "iwae": bound[0],
        "dreg": bound[1],
        "ema": ema,
        "seed": seed,
        "epochs_run": done,
        "best_epoch": best_epoch(history),
        "seconds_per_epoch": statistics.median(history["seconds"]),
        "threads": torch.get_num_threads(),
        "nll": -iwae.mean,
        "nll_stderr": iwae.stderr,
        "num_samples": args.num_samples,
        "refine": args.refine,
        "scoring_minutes": round(minutes, 1),
        "num_test": len(test),
        "neg_elbo": -elbo.mean,
        "kl": {name: -value.mean().item() for name, value in elbo.terms.items() if name != "reconstruction"},
        "active_units": units.counts,
        "partial": len(test) < TEST_SIZE or args.num_samples < FULL_SAMPLES,
        "command": " ".join(shlex.quote(part) for part in ["python", "benchmarks/hvae_binarized_mnist.py", *sys.argv[1:]]),
        "recorded": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {pg.infer.resolve_device(args.device)}, torch {torch.__version__}",
    }
    scores = save_scores(folder, -iwae.pointwise, args.num_samples, args.refine)
    print(elbo)
    print(units)
    print(f"per-image test NLL saved to {scores} (compare runs on them with 'paired')")
    results = recorded_results()
    key = result_key(row["prior"], row["architecture"], row["ema"], row["pseudo_inputs"], row["seed"], row["refine"],
                     row["encoder_noise"], row["generative_dropout"], row["iwae"], row["dreg"])
    results[key] = row
    if not args.no_record:
        print(f"and for the row {key} to {record_scores(key, -iwae.pointwise)}")
        RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    print(text)
    if not args.no_record:
        RESULTS.with_suffix(".txt").write_text(text + "\n")
        print(f"wrote {RESULTS.with_suffix('.json')} and {RESULTS.with_suffix('.txt')}")


def scored_checkpoint(folder: Path, epoch: int | None) -> Path:
    """The checkpoint ``validate`` scores: the epoch kept by ``train --keep-epochs``, or
    without one the run's best (``best.pt``, else ``last.pt``)."""
    if epoch is None:
        return folder / "best.pt" if (folder / "best.pt").is_file() else folder / "last.pt"
    path = kept_checkpoint_path(folder, epoch)
    if not path.is_file():
        raise SystemExit(f"error: {folder} kept no checkpoint of epoch {epoch} ({path}): a run keeps each epoch's "
                         "when trained with 'train --keep-epochs'")
    return path


def iwae_scores(model, images: torch.Tensor, num_samples: int, refine: int = 0) -> torch.Tensor:
    """Per-image NLL bounds (nats) by IWAE with ``num_samples`` draws from seed 0 (``refine``:
    each proposal refined first), so that two models read on the same images pair up."""
    estimate = pg.log_likelihood(model, images, method="iwae", num_samples=num_samples, seed=0, refine=refine)
    return -estimate.pointwise.double().cpu()


def validate(args, data):
    """Two runs' models (or one) on the same random validation images by the IWAE bound with
    ``--num-samples`` draws, at one epoch or at their best, and the paired difference. Each
    run's own validation bound mixes the tightness of its k and its guide into the figure; a
    tight bound on the same images compares the models."""
    folders = [Path(args.checkpoint_dir)] + ([Path(args.against)] if args.against else [])
    images = pg.datasets.random_subset(data.valid, args.num_valid)
    device = pg.infer.resolve_device(args.device)
    scores = []
    for folder in folders:
        path = scored_checkpoint(folder, args.epoch)
        model, _ = trained_model(path, architecture_of(trained_run(folder).config), data.info)
        scores.append(iwae_scores(model.to(device), images, args.num_samples))
    at = f"epoch {args.epoch}" if args.epoch is not None else "the best epoch"
    heading = (f"validation NLL (nats), -IWAE with k = {args.num_samples} on the same {len(images)} validation "
               f"images, at {at}")
    lines = [heading]
    width = max(len(str(folder)) for folder in folders)
    for folder, values in zip(folders, scores):
        mean, stderr = mean_and_stderr(values)
        lines.append(f"  {folder!s:<{width}}  {mean:8.3f} ± {stderr:.3f}")
    if len(scores) == 2:
        mean, stderr = paired_difference(*scores)
        lines.append(f"  difference (first - second): {mean:+.3f} ± {stderr:.3f} (paired standard error)")
    text = "\n".join(lines)
    print(text)
    return text


def write_scores(path: Path, nll: torch.Tensor) -> Path:
    """Write per-image test NLL as ``.npy`` (float32: 40 kB for the whole test set, exact to
    1e-5 nats at these values), the one form every copy of the scores takes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, nll.detach().float().cpu().numpy())
    return path


def read_scores(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.load(path)).double()


def scores_path(folder: Path, num_samples: int, num_test: int, refine: int = 0) -> Path:
    """Where ``evaluate`` keeps a run's per-image test NLL for ``num_test`` images at k = ``num_samples``
    (with each proposal refined for ``refine`` steps first)."""
    return folder / (f"test_nll_k{num_samples}_n{num_test}" + (f"_refine{refine}" if refine else "") + ".npy")


def save_scores(folder: Path, nll: torch.Tensor, num_samples: int, refine: int = 0) -> Path:
    return write_scores(scores_path(folder, num_samples, len(nll), refine), nll)


def recorded_results() -> dict:
    """Every recorded row by its key (``vamp``, ``vamp-clamped+ema0.999+seed1``); none yet: ``{}``."""
    path = RESULTS.with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else {}


def recorded_scores_path(key: str) -> Path:
    """Where the recorded row ``key`` keeps its per-image test NLL."""
    return RECORDED_SCORES / f"{key.replace('/', '_')}.npy"


def record_scores(key: str, nll: torch.Tensor) -> Path:
    """Keep a recorded row's per-image test NLL in the repository, so that later runs can be
    paired with it after its checkpoints are gone."""
    return write_scores(recorded_scores_path(key), nll)


def run_scores(name: str, num_samples: int, num_test: int, test_size: int, refine: int = 0) -> torch.Tensor:
    """The per-image test NLL of ``name``: a checkpoint folder that ``evaluate`` scored with
    ``num_samples`` on ``num_test`` images (after ``refine`` steps of refinement), or a recorded
    row scored so (its name says whether it refined) or on the whole test set, of which the
    images ``evaluate --num-test`` picks are taken."""
    folder = Path(name)
    if folder.is_dir():
        path = scores_path(folder, num_samples, num_test, refine)
        if not path.is_file():
            raise SystemExit(f"error: no per-image scores at {path}: run 'evaluate --checkpoint-dir {folder}' with "
                             f"--num-samples {num_samples}" + (f" --num-test {num_test}" if num_test < test_size else "")
                             + (f" --refine {refine}" if refine else ""))
        return read_scores(path)
    results = recorded_results()
    if name not in results:
        raise SystemExit(f"error: {name} is neither a checkpoint folder nor a recorded row "
                         f"(rows: {', '.join(sorted(results)) or 'none'})")
    row, path = results[name], recorded_scores_path(name)
    # a row of the whole test set also holds the images of any subset 'evaluate --num-test' scores
    if row["num_samples"] != num_samples or row["num_test"] not in (num_test, test_size):
        raise SystemExit(f"error: the row {name} was scored with k = {row['num_samples']} on {row['num_test']} test "
                         f"images, not k = {num_samples} on {num_test}: pass --num-samples {row['num_samples']} "
                         f"--num-test {row['num_test']}")
    if not path.is_file():
        raise SystemExit(f"error: the row {name} has no per-image scores at {path} (it was recorded before they "
                         "were kept): evaluate its checkpoint folder again, or pair the folder itself")
    return pg.datasets.random_subset(read_scores(path), num_test)  # evaluate's subset, in its order


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return values.mean().item(), values.std().item() / len(values) ** 0.5


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """The mean of ``a - b`` over the same images and its standard error (``pg.compare``'s own
    paired difference): two runs scored on one test set differ by far less than either's error
    over images, which is mostly how hard the images are."""
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same images: got {len(a)} and {len(b)} values")
    return pg.infer.comparison.paired_difference(a, b)


def paired(args, test_size: int) -> str:
    """The two runs' test NLL on the same images and their paired difference."""
    names = [args.checkpoint_dir, args.against]
    num_test = min(args.num_test or test_size, test_size)
    a, b = (run_scores(name, args.num_samples, num_test, test_size, args.refine) for name in names)
    mean, stderr = paired_difference(a, b)
    width = max(len(name) for name in names)
    lines = [f"test NLL (nats), -IWAE with k = {args.num_samples} on the same {len(a)} test images"]
    for name, values in zip(names, (a, b)):
        run_mean, run_stderr = mean_and_stderr(values)
        lines.append(f"  {name:<{width}}  {run_mean:8.3f} ± {run_stderr:.3f}")
    lines.append(f"  difference (first - second): {mean:+.3f} ± {stderr:.3f} (paired standard error)")
    return "\n".join(lines)


def bound_name(checkpoint_dir: Path) -> str:
    """The validation bound a run in ``checkpoint_dir`` reports, as the tables name it."""
    iwae, _ = training_bound(checkpoint_dir)
    return f"-IWAE (k = {iwae})" if iwae else "-ELBO"


def history_table(folder: Path, against: Path | None = None) -> str:
    """A run's validation bound at each epoch (the bound it was trained and stopped on, read from
    its last checkpoint), with its training loss and seconds. With ``against``, the other run's
    validation bound at the same epoch and the difference (first - second): two runs of one
    seed and data order drift apart epoch by epoch long before either is scored."""
    history, bound = trained_run(folder).history, bound_name(folder)
    other = trained_run(against).history if against is not None else None
    summary = (f"{folder}: {len(history['valid_loss'])} epochs, validation {bound} in nats, best "
               f"{min(history['valid_loss']):.2f} at epoch {best_epoch(history)}")
    lines = [summary]
    header = f"{'epoch':>5}{'valid':>9}{'train':>9}{'s':>6}"
    if other is not None:
        lines.append(f"{against}: {len(other['valid_loss'])} epochs, validation {bound_name(against)}, best "
                     f"{min(other['valid_loss']):.2f} at epoch {best_epoch(other)}")
        if bound_name(against) != bound:
            lines.append(f"warning: the two runs are validated on different bounds ({bound} and "
                         f"{bound_name(against)}), so their difference mixes the bound's tightness into the models'")
        header += f"{'against':>9}{'diff':>8}"
    lines.append(header)
    for epoch, (valid, train, seconds) in enumerate(zip(history["valid_loss"], history["train_loss"],
                                                        history["seconds"]), start=1):
        line = f"{epoch:>5}{valid:>9.2f}{train:>9.2f}{seconds:>6.0f}"
        if other is not None and epoch <= len(other["valid_loss"]):
            theirs = other["valid_loss"][epoch - 1]
            line += f"{theirs:>9.2f}{valid - theirs:>+8.2f}"
        lines.append(line)
    return "\n".join(lines)


def row_architecture(row: dict) -> str:
    """A recorded row's architecture (rows recorded before the choice existed: ``markov``)."""
    return row.get("architecture", "markov")


def row_label(row: dict) -> str:
    """A recorded row's name in the table: prior/architecture, then :func:`replicate`."""
    label = f"{prior_name(row['prior'], row.get('pseudo_inputs', 'uniform'))}/{row_architecture(row)}"
    return label + replicate(row.get("ema"), row.get("seed", 0), row.get("refine", 0), row.get("encoder_noise", 0.0),
                             row.get("generative_dropout", 0.0), row.get("iwae", 0), row.get("dreg", False))


def table(results: dict) -> str:
    """The table of every recorded prior, the commands and machines below it."""
    width = max([38] + [len(row_label(row)) + 2 for row in results.values()])
    header = (f"{'top prior/architecture':<{width}}{'epochs (best)':>15}{'s/epoch':>9}{'test NLL':>10}{'± se':>7}{'k':>6}{'test pts':>9}"
              f"{'-ELBO':>9}{'KL z2':>8}{'KL z1':>8}{'active z2/z1':>14}{'published':>11}")
    lines = [header, "-" * len(header)]
    for row in sorted(results.values(), key=lambda row: (row_architecture(row) != "published", row["prior"] != "vamp",
                                                     bool(row.get("ema")), row.get("seed", 0), row.get("refine", 0))):
        units = row["active_units"]
        published = f"{PUBLISHED[row['prior']]:.2f}" if row["prior"] in PUBLISHED else "-"
        lines.append(
            f"{row_label(row):<{width}}{row['epochs_run']:>9} ({row['best_epoch']:>3}){row['seconds_per_epoch']:>9.1f}{row['nll']:>10.2f}"
            f"{row['nll_stderr']:>7.2f}{row['num_samples']:>6}{row['num_test']:>9}{row['neg_elbo']:>9.2f}"
            f"{row['kl'].get('z2', float('nan')):>8.2f}{row['kl'].get('z1', float('nan')):>8.2f}"
            f"{str(units.get('z2', '-')) + '/' + str(units.get('z1', '-')):>14}{published:>11}"
            + ("  partial" if row["partial"] else "")
        )
    notes = ("test NLL: -IWAE bound in nats (k importance samples) on the test images; -ELBO, KL z2 and KL z1 with one "
             "draw; active units of 40 per layer (Cov_x E_q[z] > 0.01, on the first 1000 of those test images); s/epoch: median over the run, "
             "with the threads given. partial: fewer than 10000 test images or k < 5000. Target: test NLL <= 83.2 "
             "nats with the VampPrior (Tomczak & Welling 2018: 83.19). Architectures: published = p(x | z1, z2) "
             "through the top-down path and q(z1 | x, z2) read by one head; markov = z2 -> z1 -> x with the ladder's "
             "precision-weighted merge; tomczak-welling = their networks exactly, as custom modules, with their "
             "optimizer and pseudo-inputs. +noise S: the guide read each training image with Gaussian noise of "
             "standard deviation S added (train --encoder-noise S; validated and scored without it). +dropout P: "
             "the decoder's, the conditional's and the lower path step's hidden units were dropped with probability P "
             "in training (train --generative-dropout P; validated and scored as the mean network). +iwae K: trained on "
             "the IWAE bound with K particles in place of the ELBO, annealed over the same warm-up, and validated "
             "(best epoch, early stopping) by that bound (train --iwae K). +dreg K: as +iwae K, with the doubly "
             "reparameterized gradient of that bound (train --iwae K --dreg; pg.infer.DReGIWAE). +ema D: "
             "validated, checkpointed and scored as the exponential moving "
             "average of the weights with decay D (train --ema D); without it, the last iterate. +refine N: the same "
             "model scored with each test image's proposal refined for N steps first (evaluate --refine N, "
             "pg.log_likelihood(..., refine=N)): a tighter bound on that model's NLL, so not a like-for-like figure "
             "against the published one, which came from the encoder alone.")
    lines += ["", notes, ""]
    for row in results.values():
        lines.append(f"{row_label(row)}: $ {row['command']}  # {row['recorded']}, {row['machine']}, {row['threads']} thread(s)")
        if row.get("note"):  # written by hand into the JSON, e.g. how the training run was made
            lines.append(f"    {row['note']}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["train", "evaluate", "table", "paired", "history", "validate"])
    parser.add_argument("--prior", default="vamp", choices=["vamp", "normal"], help="the top layer's prior")
    parser.add_argument("--architecture", default="published", choices=[*sorted(ARCHITECTURES), EXACT],
                        help="train: published (decoder p(x | z1, z2) through the top-down path, q(z1 | x, z2)), "
                             "markov (z2 -> z1 -> x, ladder merge) or tomczak-welling (their networks, "
                             "optimizer and pseudo-inputs exactly); evaluate reads it from the checkpoint")
    parser.add_argument("--pseudo-init", default="uniform", choices=["uniform", "data", "clamped"],
                        help="train, published architecture: the VampPrior's pseudo-inputs start uniform in "
                             "[0, 1] (the library's default), at random training images, or (clamped) at 0.05 ± "
                             "0.01 and read clamped to [0, 1], as in Tomczak & Welling's final code (a row of its own)")
    parser.add_argument("--encoder-noise", type=float, default=0.0,
                        help="train, library architectures: the guide reads each training image with Gaussian noise "
                             "of this standard deviation added (HierarchicalVAE's encoder_noise, the denoising "
                             "criterion; 0: none, the published recipe); it names the default --checkpoint-dir and "
                             "the row (+noise0.25); evaluate reads it from the checkpoint")
    parser.add_argument("--generative-dropout", type=float, default=0.0,
                        help="train, library architectures: dropout with this probability on the hidden units of "
                             "the decoder, the conditional and the lower path step (HierarchicalVAE's "
                             "generative_dropout; 0: none, the published recipe); it names the default "
                             "--checkpoint-dir and the row (+dropout0.2); evaluate reads it from the checkpoint")
    parser.add_argument("--iwae", type=int, default=0,
                        help="train: optimize the IWAE bound with this many particles in place of the ELBO (Burda et "
                             "al. 2016), annealed over the same --warmup; validation, early stopping and the best "
                             "epoch read it too (0: the ELBO, the published recipe). It names the default "
                             "--checkpoint-dir and the row (+iwae10); evaluate reads it from the folder's "
                             f"{RECIPE}")
    parser.add_argument("--dreg", action="store_true",
                        help="train, with --iwae K: the doubly reparameterized gradient of that bound (Tucker et al. "
                             "2019, pg.infer.DReGIWAE): the same bound, less noise in the guide's gradient, a second "
                             "run of the guide per step. It names the default --checkpoint-dir and the row (+dreg50); "
                             f"evaluate reads it from the folder's {RECIPE}")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="train: validate and keep an exponential moving average of the weights with this "
                             "decay (0: none, the published recipe); a resumed run must pass the same. It also "
                             "names the default --checkpoint-dir (evaluate reads the decay from the checkpoint)")
    parser.add_argument("--checkpoint-dir", default=None, help="where the run's checkpoints live (default runs/hvae_<row>: runs/hvae_vamp, "
                             "runs/hvae_normal_markov, runs/hvae_vamp_ema0.999, ...)")
    parser.add_argument("--against", default=None, help="paired: the second run, as a checkpoint folder or a recorded row's name (so may "
                             "--checkpoint-dir be, for the first); history: a second checkpoint folder, whose "
                             "validation bound is printed beside the first's at each epoch; validate: a second "
                             "checkpoint folder, scored on the same images")
    parser.add_argument("--epochs", type=int, default=10, help="train: epochs to add in this stage")
    parser.add_argument("--keep-epochs", action="store_true",
                        help="train: keep each epoch's checkpoint as epochs/epoch_NNNN.pt in the folder (hard links "
                             "to last.pt as written), for 'validate --epoch N'")
    parser.add_argument("--epoch", type=int, default=None,
                        help="validate: score the checkpoints kept at this epoch (train --keep-epochs); default: "
                             "each run's best")
    parser.add_argument("--num-valid", type=int, default=1000,
                        help="validate: a fixed random subset of N validation images")
    parser.add_argument("--max-epochs", type=int, default=2000)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=100, help="epochs of KL warm-up (0: plain ELBO)")
    parser.add_argument("--num-samples", type=int, default=FULL_SAMPLES, help="evaluate: IWAE importance samples")
    parser.add_argument("--num-test", type=int, default=None, help="evaluate: a fixed random subset of N test images")
    parser.add_argument("--no-record", action="store_true", help="evaluate: print only, write nothing to docs/")
    parser.add_argument("--refine", type=int, default=0,
                        help="evaluate: refine each test image's proposal for this many steps before importance "
                             "sampling (pg.log_likelihood's refine): a tighter bound on the same model, in a row of "
                             "its own (+refineN); paired: which of a checkpoint folder's scores to read (a row's "
                             "name already says)")
    parser.add_argument("--root", default=os.environ.get("PROBGEN_DATA", DEFAULT_DATA))
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0,
                        help="train: seeds the weights and the data order; a seed other than 0 is a replicate of "
                             "the recipe, with its own default --checkpoint-dir and row (+seed1); evaluate reads it "
                             "from the checkpoint")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    # before torch's first parallel op, so that its worker threads inherit it: the trained gates and
    # importance weights make subnormal floats, which the CPU multiplies many times slower
    # (benchmarks/iwae_step.py); flushed to zero, they change no figure that is printed
    torch.set_flush_denormal(True)
    if args.stage == "table":
        results = recorded_results()
        print(table(results) if results else f"no results recorded yet in {RESULTS.with_suffix('.json')}")
        return
    if args.stage == "paired":
        if not (args.checkpoint_dir and args.against):
            raise SystemExit("error: paired compares two evaluated runs: pass --checkpoint-dir A --against B")
        print(paired(args, TEST_SIZE))
        return
    if args.stage == "history":
        if not args.checkpoint_dir:
            raise SystemExit("error: history reads a run's checkpoints: pass --checkpoint-dir (and --against B to "
                             "set a second run beside it)")
        print(history_table(Path(args.checkpoint_dir), Path(args.against) if args.against else None))
        return
    torch.set_num_threads(args.threads)
    if not args.checkpoint_dir:  # e.g. runs/hvae_vamp, runs/hvae_normal_markov, runs/hvae_vamp_ema0.999_seed1
        key = result_key(args.prior, args.architecture, args.ema, library_pseudo_inputs(args.pseudo_init), args.seed,
                         encoder_noise=args.encoder_noise, generative_dropout=args.generative_dropout, iwae=args.iwae,
                         dreg=args.dreg)
        args.checkpoint_dir = "runs/hvae_" + key.replace("/", "_").replace("+", "_")
    data = pg.datasets.load("binarized_mnist", root=args.root, download=args.download)
    try:
        {"train": train, "evaluate": evaluate, "validate": validate}[args.stage](args, data)
    except ValueError as error:  # the library's own checks, e.g. a resume with another --ema
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
