"""Training objectives for :func:`probgen.fit`.

An :class:`Objective` tells the training loop which parameter groups get an optimizer
and how one batch becomes updates; the loop owns everything else (device, seeding,
progress, history, checkpoints, the non-finite-loss guard). Variational objectives are
Pyro ELBOs used through their ``differentiable_loss``; an adversarial objective plugs in
through the same two methods.

A training step never waits for the device: it returns its loss as a tensor, which the loop
sums where it lives and reads back once per epoch, and the default ELBOs (:class:`TraceELBO`,
:class:`MeanFieldELBO`) compute Pyro's estimators without reading any value back to the host.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import pyro.infer
import pyro.poutine as poutine
import torch
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer.util import MultiFrameTensor, get_plate_stacks
from pyro.poutine.messenger import Messenger

from ..checks import positive_int
from .weights import (
    doubly_reparameterized_log_weights,
    importance_logsumexp,
    negligible_particles,
    trace_log_weights,
)

__all__ = ["Objective", "SVIObjective", "DifferentiableELBO", "IWAE", "DReGIWAE", "TermsELBO", "TraceELBO",
           "MeanFieldELBO", "KLWarmup", "resolve_objective", "parse_objective", "ObjectiveName", "OBJECTIVES"]

# update(group, loss) back-propagates, steps that group's optimizer and notes on the device
# whether the loss was finite (the loop reads the notes once per epoch). Objectives call it; they never touch optimizers themselves.
Update = Callable[[str, torch.Tensor], None]


class Objective:
    """How :func:`probgen.fit` trains a model: the base of every objective."""

    #: what the recorded losses measure, for printing
    loss_unit = "nats"
    #: whether a lower loss means a better model across epochs, so that the loop may pick the
    #: best epoch, restore its weights and stop early on it
    loss_ranks_epochs = True

    def begin_epoch(self, epoch: int) -> None:
        """Called by the loop before each training epoch (1-based, also after a resume), for
        objectives whose form changes with training time; the default does nothing."""

    def recordable(self) -> bool:
        """Whether a training step may be recorded once as a CUDA graph and replayed
        (:mod:`probgen.infer.graphs`): a replay runs no Python, so whatever the objective changes
        between steps or epochs must live in tensors it updates in place. The default says yes
        unless the class changes itself in :meth:`begin_epoch` (a Python number set there would
        keep its recording epoch's value); such a class says yes once its changing values are
        tensors, as :class:`KLWarmup` does."""
        return type(self).begin_epoch is Objective.begin_epoch

    def check_batches(self, model, sizes: set[int]) -> None:
        """Called by the loop before any work with the sizes of the batches it will pass, so
        an objective that cannot take some size says so up front; the default takes any."""

    def parameter_groups(self, model) -> dict[str, list[torch.nn.Parameter]]:
        """Named groups of trainable parameters, one optimizer each."""
        return {"model": [p for p in model.parameters() if p.requires_grad]}

    def modules(self) -> list[torch.nn.Module]:
        """Modules the objective trains besides the model's own (a discriminator passed to
        :class:`~probgen.infer.Adversarial`): the loop moves them to the model's device, gives
        every rank rank 0's weights, and saves them in checkpoints. The default has none."""
        return []

    def train_step(self, model, batch: torch.Tensor, update: Update) -> torch.Tensor | float:
        """Update the parameters on one batch; return the loss in nats per data point, best as a
        detached 0-dim tensor on the model's device (the loop sums the steps' losses there and
        reads them back once per epoch; a float works too, at the cost of a wait per step)."""
        raise NotImplementedError

    def eval_loss(self, model, batch: torch.Tensor) -> torch.Tensor | float:
        """The loss on one batch without updating anything, in nats per data point (a 0-dim
        tensor or a float)."""
        raise NotImplementedError


class SVIObjective(Objective):
    """Stochastic variational inference with a Pyro ELBO's ``differentiable_loss``."""

    def __init__(self, elbo: pyro.infer.ELBO):
        self.elbo = elbo

    def loss(self, model, batch):
        return self.elbo.differentiable_loss(model.model, model.guide, batch) / len(batch)

    def train_loss(self, model, batch):
        """The loss the training step differentiates; by default the same as :meth:`loss`."""
        return self.loss(model, batch)

    def train_step(self, model, batch, update):
        loss = self.train_loss(model, batch)
        update("model", loss)
        return loss.detach()

    @torch.no_grad()
    def eval_loss(self, model, batch):
        return self.loss(model, batch)

    def __repr__(self):
        return f"SVIObjective({type(self.elbo).__name__}(num_particles={self.elbo.num_particles}))"


class _ScaleLatents(Messenger):
    """Multiplies the log-density of every unobserved sample site by ``factor``."""

    def __init__(self, factor: float | torch.Tensor):
        super().__init__()
        self.factor = factor

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = self.factor * msg["scale"]


class KLWarmup(SVIObjective):
    r"""The ELBO with its KL part switched on gradually ("warm-up", deterministic annealing):

    .. math:: \mathcal{L}_\beta(x) = \mathbb{E}_q[\log p(x \mid z)]
              - \beta_e \, \mathrm{KL}(q(z \mid x) \,\|\, p(z)),
              \qquad \beta_e = \min(1, e / E),

    where ``e`` is the epoch (1-based) and ``E = epochs``. Every latent site of model and
    guide is scaled by :math:`\beta_e`, so it works for any prior and posterior, including
    flows and user-written Pyro priors. The recorded training loss is :math:`-\mathcal{L}_\beta`
    (not a bound while :math:`\beta_e < 1`); the validation loss is always the full negative
    ELBO, so early stopping and the best epoch refer to the real objective. Warm-up keeps
    latent units from switching off early in training (Bowman et al., 2016; Sønderby et al.,
    2016) and is part of the published recipe for the standard VAE on binarized MNIST
    (Tomczak & Welling, 2018).

    :param epochs: the number of epochs over which :math:`\beta` rises linearly to 1.
    :param elbo: the Pyro ELBO to anneal (default ``Trace_ELBO``).
    """

    def __init__(self, epochs: int = 100, elbo: pyro.infer.ELBO | None = None):
        positive_int(epochs, "epochs")
        super().__init__(elbo if elbo is not None else _elbo())
        self.epochs = epochs
        self.beta = 1.0 / epochs
        self._beta = None  # beta as a tensor beside the model, updated in place (a recorded step reads it)

    def begin_epoch(self, epoch):
        self.beta = min(1.0, epoch / self.epochs)
        if self._beta is not None:
            self._beta.fill_(self.beta)

    def recordable(self) -> bool:
        return True  # the step reads beta from one tensor that begin_epoch updates in place

    def train_loss(self, model, batch):
        if self._beta is None or self._beta.device != batch.device or self._beta.dtype != batch.dtype:
            self._beta = torch.full((), self.beta, device=batch.device, dtype=batch.dtype)
        scale = _ScaleLatents(self._beta)
        return self.elbo.differentiable_loss(scale(model.model), scale(model.guide), batch) / len(batch)

    def __repr__(self):
        return f"KLWarmup(epochs={self.epochs}, elbo={type(self.elbo).__name__}(num_particles={self.elbo.num_particles}))"


class _FromDifferentiableLoss:
    """``loss`` and ``loss_and_grads`` derived from ``differentiable_loss``, so that an ELBO
    defined by it works in :class:`pyro.infer.SVI` too (both return floats)."""

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()


class DifferentiableELBO(_FromDifferentiableLoss, pyro.infer.ELBO):
    """A Pyro ELBO defined by its ``differentiable_loss`` alone.

    Subclasses implement ``differentiable_loss(model, guide, *args)``; this base derives
    ``loss`` and ``loss_and_grads`` from it, so the objective works both in
    :func:`probgen.fit` and in :class:`pyro.infer.SVI`.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        raise NotImplementedError

    def _get_trace(self, model, guide, args, kwargs):
        # pyro.infer.ELBO's abstract hook: one guide trace and the model replayed on it
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        return model_trace, guide_trace


class TermsELBO(DifferentiableELBO):
    r"""A model's own unbiased estimator of its ELBO, from its per-data-point terms, as a Pyro ELBO.

    ``differentiable_loss(m.model, m.guide, x)`` is minus the sum over data points of
    ``m.elbo_terms(x, num_particles)`` (the protocol member of a family that splits its bound
    into terms more cheaply than its traces can). For a :class:`~probgen.Diffusion` it draws
    one timestep per data point and particle: the same expectation as ``TraceMeanField_ELBO``
    on the explicit chain, at the cost of one network evaluation per data point instead of
    :math:`T`. It is the diffusion's ``default_objective`` (``"terms"``), and it works with
    :class:`pyro.infer.SVI` too.
    """

    def __init__(self, num_particles: int = 1):
        super().__init__(num_particles=num_particles)

    @staticmethod
    def _owner(model_fn):
        owner = getattr(model_fn, "__self__", None)
        if owner is None or not callable(getattr(owner, "elbo_terms", None)):
            raise TypeError(
                "TermsELBO scores a model with elbo_terms(x, num_samples): pass its bound methods, "
                f"differentiable_loss(m.model, m.guide, x); got {model_fn!r}"
            )
        return owner

    def differentiable_loss(self, model, guide, x, *args, **kwargs):
        owner = self._owner(model)
        owner.announce_parameters()  # lets pyro.infer.SVI find what to step
        terms = owner.elbo_terms(x, self.num_particles, validate=False)
        if terms is None:
            raise TypeError(f"{type(owner).__name__} has no ELBO terms (its elbo_terms returns None); "
                            "train it with 'elbo' or 'iwae'")
        return -sum(terms.values()).sum()


class IWAE(DifferentiableELBO):
    r"""The importance-weighted bound (Rényi divergence with :math:`\alpha = 0`), vectorized:

    .. math:: \mathcal{L}_k(x) = \mathbb{E}\Big[\log \frac1k \sum_{i=1}^k
              \frac{p(x, z_i)}{q(z_i \mid x)}\Big], \quad z_i \sim q(z \mid x).

    All ``k`` particles run in one vectorized pass of the model and guide. Works with
    :class:`pyro.infer.SVI` (``loss_and_grads``) and :func:`probgen.fit`
    (``differentiable_loss``). Particles whose weight is below the square of the dtype's machine
    epsilon times the largest get no gradient (:func:`~probgen.infer.importance_logsumexp`):
    the bound's value is unchanged, and their share of the gradient, too small to register, would
    cost subnormal arithmetic (with it, a step of the binarized-MNIST hierarchical VAE took 1.7 times
    as long at k = 10 and 2.7 times at k = 50 on a CPU, ``benchmarks/iwae_step.py``).

    References:
        Burda, Grosse, Salakhutdinov (2016). Importance Weighted Autoencoders. ICLR.
    """

    def __init__(self, num_particles: int = 5):
        positive_int(num_particles, "num_particles")
        super().__init__(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        log_w = trace_log_weights(model, guide, self.num_particles, *args, **kwargs)
        return -(importance_logsumexp(log_w, 0) - math.log(self.num_particles)).sum()


class _ReadsNothingBack(_FromDifferentiableLoss):
    """The part :class:`TraceELBO` and :class:`MeanFieldELBO` share: ``differentiable_loss``
    from the per-particle ``(loss, surrogate loss)`` pair, both tensors, with no value read back
    to the host and no NaN hook (the loop watches the loss on the device)."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = surrogate = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle_loss, particle_surrogate = self._differentiable_loss_particle(model_trace, guide_trace)
            loss, surrogate = loss + particle_loss, surrogate + particle_surrogate
        loss, surrogate = torch.as_tensor(loss) / self.num_particles, torch.as_tensor(surrogate) / self.num_particles
        # the estimate's value, the surrogate's gradient
        return loss + (surrogate - surrogate.detach())


class TraceELBO(_ReadsNothingBack, pyro.infer.Trace_ELBO):
    r"""Pyro's :class:`~pyro.infer.Trace_ELBO` whose ``differentiable_loss`` reads nothing back
    from the device: the same estimate and the same gradient estimator (reparameterized sites
    by the path derivative, the others by the score function weighted by the downstream
    :math:`\log p - \log q` within their plates), without the per-site ``.item()`` and NaN
    checks that make every step wait for a GPU. It is what the ``"elbo"`` objective builds;
    ``loss`` and ``loss_and_grads`` return floats, so :class:`pyro.infer.SVI` takes it too.
    """

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        estimate = surrogate = sum(site["log_prob_sum"] for site in _sample_sites(model_trace))
        downstream = None  # log p - log q per plate, for the score-function terms
        for site in _sample_sites(guide_trace):
            _, score_function, entropy = site["score_parts"]
            estimate = estimate - site["log_prob_sum"]
            if not is_identically_zero(entropy):
                surrogate = surrogate - entropy.sum()
            if not is_identically_zero(score_function):
                if downstream is None:
                    downstream = _log_ratio_by_plate(model_trace, guide_trace)
                surrogate = surrogate + (downstream.sum_to(site["cond_indep_stack"]) * score_function).sum()
        return -torch.as_tensor(estimate).detach(), -torch.as_tensor(surrogate)


class MeanFieldELBO(_ReadsNothingBack, pyro.infer.TraceMeanField_ELBO):
    r"""Pyro's :class:`~pyro.infer.TraceMeanField_ELBO` (the KL of each latent site in closed
    form where torch has it, the Monte Carlo term where not) whose ``differentiable_loss`` reads
    nothing back from the device. It is what the ``"meanfield"`` objective builds; like Pyro's,
    it assumes a mean-field guide with reparameterized sites.
    """

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        elbo = 0.0
        for site in _sample_sites(model_trace):
            if site["is_observed"]:
                elbo = elbo + site["log_prob_sum"]
                continue
            posterior = guide_trace.nodes[site["name"]]
            try:
                kl = scale_and_mask(torch.distributions.kl_divergence(posterior["fn"], site["fn"]),
                                    scale=posterior["scale"], mask=posterior["mask"])
            except NotImplementedError:  # no closed form: log p(z) - log q(z) at the guide's draw
                elbo = elbo + site["log_prob_sum"] - posterior["score_parts"].entropy_term.sum()
            else:
                elbo = elbo - (kl.sum() if torch.is_tensor(kl) else kl * posterior["fn"].batch_shape.numel())
        for site in _sample_sites(guide_trace):
            if site["name"] not in model_trace.nodes:  # an auxiliary site of the guide
                elbo = elbo - site["score_parts"].entropy_term.sum()
        elbo = torch.as_tensor(elbo)
        return -elbo.detach(), -elbo


def _sample_sites(trace):
    return (site for site in trace.nodes.values() if site["type"] == "sample")


def _log_ratio_by_plate(model_trace, guide_trace) -> MultiFrameTensor:
    r""":math:`\log p - \log q` of every site, detached and kept by plate, so that a
    non-reparameterized site's score function is weighted by the terms in its own plates only."""
    stacks = get_plate_stacks(model_trace)
    ratio = MultiFrameTensor()
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample":
            term = site["log_prob"] if site["is_observed"] else site["log_prob"] - guide_trace.nodes[name]["log_prob"]
            ratio.add((stacks[name], term.detach()))
    return ratio


def _elbo(num_particles=1):
    return TraceELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)


class DReGIWAE(IWAE):
    r"""The IWAE bound with the doubly reparameterized gradient (Tucker, Lawson, Gu, Maddison 2019):
    the same value as :class:`IWAE` on the same draws, and an unbiased estimate of the same
    gradient, whose part that reaches the guide has far less variance at large ``k``.

    :class:`IWAE`'s gradient of the guide's parameters :math:`\phi` holds a score term,
    :math:`-\sum_i \tilde w_i \, \partial_\phi \log q_\phi(z_i)` at fixed :math:`z_i`, whose
    expectation is a reparameterized one; substituting it leaves

    .. math:: \nabla_\phi \mathcal{L}_k = \mathbb{E}\Big[\sum_{i=1}^k \tilde w_i^2 \,
              \frac{\partial \log w_i}{\partial z_i} \frac{\partial z_i}{\partial \phi}\Big],
              \qquad \tilde w_i = \frac{w_i}{\sum_j w_j},

    and the model's parameters keep :math:`\sum_i \tilde w_i \nabla \log p(x, z_i)`. A parameter
    in both (a guide that reads the generative top-down path, a VampPrior's encoder) gets both
    parts. For large ``k`` the signal-to-noise ratio of IWAE's gradient of the guide falls as
    :math:`1/\sqrt{k}` (Rainforth et al. 2018), while this estimator's does not fall (Tucker et
    al. 2019); at the exact posterior it is zero for every draw. On the binarized-MNIST
    hierarchy the median signal-to-noise ratio of the encoder's gradient was 1.7 times IWAE's at
    k = 10 and 1.8 times at k = 50 (``benchmarks/dreg_gradient.py``). The cost is a second run of the guide
    (:func:`~probgen.infer.weights.doubly_reparameterized_log_weights`), which must be a torch
    module or a method of one, with reparameterized latents, computing a function of the data and
    its latents alone (checked on the first call). Under KL warm-up (:class:`KLWarmup`, every latent
    site scaled by :math:`\beta`) the score term is :math:`\beta` times IWAE's, and the draws' path
    gets :math:`(1 - \beta)\tilde w_i + \beta \tilde w_i^2`: the annealed bound's gradient,
    still unbiased. Particles below the cut of
    :func:`~probgen.infer.importance_logsumexp` get no gradient, as in :class:`IWAE`.

    References:
        Tucker, Lawson, Gu, Maddison (2019). Doubly Reparameterized Gradient Estimators for
        Monte Carlo Objectives. ICLR.
        Rainforth et al. (2018). Tighter Variational Bounds are Not Necessarily Better. ICML.
    """

    def __init__(self, num_particles: int = 5):
        super().__init__(num_particles)
        self._guide_checked = False

    def differentiable_loss(self, model, guide, *args, **kwargs):
        if not torch.is_grad_enabled():  # a value alone (validation): IWAE's, without the second guide run
            return super().differentiable_loss(model, guide, *args, **kwargs)
        log_w, scale = doubly_reparameterized_log_weights(model, guide, self.num_particles, *args,
                                                          check_guide=not self._guide_checked, **kwargs)
        self._guide_checked = True
        kept = ~negligible_particles(log_w, 0)
        total = torch.logsumexp(log_w.detach(), 0)  # the bound's value, and the weights' normalizer
        weights = torch.where(kept, torch.exp(log_w.detach() - total), 0.0)
        # the draws' path: a second factor of each particle's weight where the score term was,
        # beta of it under KL warm-up (whose beta scales the score term), 1 - beta left as it is
        beta = scale.latent_scale
        scale.factors = (1 - beta) + beta * weights
        surrogate = (weights * torch.where(kept, log_w, 0.0)).sum()
        bound = (total - math.log(self.num_particles)).sum()
        return -(bound + (surrogate - surrogate.detach()))


def _meanfield(num_particles=1):
    return MeanFieldELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)


@dataclasses.dataclass(frozen=True)
class ObjectiveName:
    """A name :func:`resolve_objective` accepts: ``"name"`` or ``"name:k"``.

    :ivar build: makes the objective from the count ``k``.
    :ivar count: what ``k`` means for this objective, for messages.
    :ivar default: ``k`` when the name comes without one.
    """

    build: Callable[[int], object]
    count: str
    default: int


#: name -> how to build it; the count after ':' means particles, epochs or discriminator steps
#: depending on the name (each entry says which)
OBJECTIVES: dict[str, ObjectiveName] = {
    "elbo": ObjectiveName(_elbo, "number of particles", 1),
    "meanfield": ObjectiveName(_meanfield, "number of particles", 1),
    "iwae": ObjectiveName(IWAE, "number of particles", 5),
    "dreg": ObjectiveName(DReGIWAE, "number of particles", 5),
    "warmup": ObjectiveName(KLWarmup, "number of warm-up epochs", 100),
    "terms": ObjectiveName(TermsELBO, "number of timesteps per data point", 1),
}


def parse_objective(text: str):
    """The objective named by ``text``, ``"name"`` or ``"name:k"``; every option string of an
    objective is parsed here."""
    name, colon, count = text.partition(":")
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {text!r}; expected one of {sorted(OBJECTIVES)}, optionally as 'name:k'")
    entry = OBJECTIVES[name]
    if not colon:
        return entry.build(entry.default)
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"objective {text!r}: the {entry.count} after ':' must be a positive integer, got {count!r}")
    return entry.build(int(count))


def resolve_objective(model, objective=None) -> Objective:
    """Turn ``objective`` into an :class:`Objective` for ``model``: ``None`` (the model's
    ``default_objective``), a name (``"elbo"``, ``"iwae:10"``, ``"warmup:100"`` (KL warm-up
    over 100 epochs), ``"hinge:5"``, ...: :data:`OBJECTIVES`), a Pyro ELBO, or an
    :class:`Objective`."""
    if objective is None:
        objective = model.default_objective
    if isinstance(objective, str):
        objective = parse_objective(objective)
    if isinstance(objective, pyro.infer.ELBO):
        return SVIObjective(objective)
    if isinstance(objective, Objective):
        return objective
    raise TypeError(f"cannot train with {type(objective).__name__}: expected an objective's name, a Pyro ELBO or a "
                    "probgen Objective")


def objective_identity(objective: Objective) -> str:
    """What a training checkpoint records of the objective that wrote it, so that a resume
    with another is refused: the objective's repr when its class defines one (probgen's name
    their particles, warm-up epochs or discriminator steps), else its class's full name (the
    default repr holds a memory address, which no two runs share)."""
    kind = type(objective)
    if kind.__repr__ is object.__repr__:
        return f"{kind.__module__}.{kind.__qualname__}"
    return repr(objective)
