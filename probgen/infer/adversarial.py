r"""The adversarial objective: trains any Pyro model with a reparameterized ``"x"`` site
against a discriminator, inside :func:`probgen.fit`.

Each call of :meth:`Adversarial.train_step` takes ``k`` discriminator steps on the batch
(each against fresh samples) and then one generator step. The generator's samples are read
from the model's Pyro trace at site ``"x"`` (run as ``model.model(None, num_data=n)``), so a
:class:`~probgen.GAN`, a VAE's decoder with its prior, or any program that draws ``"x"``
with ``rsample`` can be the generator. With :math:`D` the discriminator's real-valued score,
:math:`x \sim p_\text{data}` and :math:`\tilde x \sim p_\theta`:

- ``"nonsaturating"``: :math:`L_D = \mathbb{E}\,\text{softplus}(-D(x)) +
  \mathbb{E}\,\text{softplus}(D(\tilde x))`, :math:`L_G = \mathbb{E}\,\text{softplus}(-D(\tilde x))`
  (Goodfellow et al., 2014);
- ``"hinge"``: :math:`L_D = \mathbb{E}\max(0, 1 - D(x)) + \mathbb{E}\max(0, 1 + D(\tilde x))`,
  :math:`L_G = -\mathbb{E}\,D(\tilde x)` (Lim & Ye, 2017; Miyato et al., 2018);
- ``"wgan-gp"``: :math:`L_D = \mathbb{E}\,D(\tilde x) - \mathbb{E}\,D(x) + \lambda\,
  \mathbb{E}\,(\lVert\nabla_{\hat x} D(\hat x)\rVert_2 - 1)^2`, :math:`L_G = -\mathbb{E}\,D(\tilde x)`,
  with :math:`\hat x = \epsilon x + (1 - \epsilon)\tilde x` and one :math:`\epsilon \sim U(0, 1)`
  per example (Gulrajani et al., 2017).

The loss :func:`probgen.fit` records is the discriminator's estimate of the divergence the
loss targets (lower means the generator is closer to the data): :math:`\log 2 - L_D / 2`
for the non-saturating loss (Jensen-Shannon, nats), :math:`1 - L_D / 2` for the hinge loss
(total variation), and :math:`\mathbb{E}\,D(x) - \mathbb{E}\,D(\tilde x)` for WGAN-GP
(Wasserstein-1). They are only as good as the discriminator, and not likelihoods.

**R1 penalty** (Mescheder et al. 2018): with ``r1_weight=gamma`` > 0, any of the losses
adds :math:`\frac{\gamma}{2}\,\mathbb{E}\,\lVert\nabla_x D(x)\rVert_2^2` on the data to
the discriminator's loss (:func:`r1_penalty`). Mescheder et al. show that the penalized
game converges locally where the plain one can circle around its equilibrium: a
discriminator whose gradient vanishes on the data stops pushing the generator past it.
``benchmarks/gan.py`` and ``benchmarks/defaults.py`` measure its effect on mode coverage.

**Packing** (PacGAN, Lin et al. 2018): with ``pack=m`` the discriminator scores groups of
:math:`m` points drawn together, all real or all generated, instead of single points
(:func:`pack`). A generator that drops modes makes groups whose joint distribution differs
from the data's more visibly than its single points do, so the discriminator penalizes mode
collapse more strongly; the losses above then average over groups.

References:
    Goodfellow et al. (2014). Generative Adversarial Nets. NeurIPS.
    Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville (2017). Improved Training of Wasserstein
    GANs. NeurIPS.
    Lim, Ye (2017). Geometric GAN. arXiv:1705.02894.
    Lin, Khetan, Fanti, Oh (2018). PacGAN: The Power of Two Samples in Generative
    Adversarial Networks. NeurIPS.
    Mescheder, Geiger, Nowozin (2018). Which Training Methods for GANs do actually
    Converge? ICML.
    Miyato, Kataoka, Koyama, Yoshida (2018). Spectral Normalization for Generative
    Adversarial Networks. ICLR.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Callable

import torch
import torch.nn.functional as F
from pyro.poutine.messenger import Messenger

from ..checks import choice, non_negative_number, positive_int
from ..nn import pack
from .objectives import OBJECTIVES, Objective, ObjectiveName

__all__ = ["Adversarial", "AdversarialLoss", "gradient_penalty", "r1_penalty"]

@dataclasses.dataclass(frozen=True)
class _Game:
    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real scores, fake scores) -> loss
    generator: Callable[[torch.Tensor], torch.Tensor]  # fake scores -> loss
    divergence: Callable[[torch.Tensor], torch.Tensor]  # discriminator loss -> divergence estimate (affine)


class AdversarialLoss(str, enum.Enum):
    """The game of the discriminator and the generator (formulas in the module docstring)."""

    NONSATURATING = "nonsaturating"
    HINGE = "hinge"
    WGAN_GP = "wgan-gp"

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss from its scores on data and on samples (no gradient penalty)."""
        return _GAMES[self].discriminator(real_scores, fake_scores)

    def generator_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        """The generator's loss from the discriminator's scores on its samples."""
        return _GAMES[self].generator(fake_scores)

    def divergence_estimate(self, discriminator_loss_value: torch.Tensor | float) -> torch.Tensor | float:
        """The divergence a discriminator loss (without penalty) implies."""
        return _GAMES[self].divergence(discriminator_loss_value)


_GAMES = {
    AdversarialLoss.NONSATURATING: _Game(
        discriminator=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
        generator=lambda fake: F.softplus(-fake).mean(),
        divergence=lambda loss: math.log(2) - loss / 2,  # Jensen-Shannon
    ),
    AdversarialLoss.HINGE: _Game(
        discriminator=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
        generator=lambda fake: -fake.mean(),
        divergence=lambda loss: 1 - loss / 2,  # total variation
    ),
    AdversarialLoss.WGAN_GP: _Game(
        discriminator=lambda real, fake: fake.mean() - real.mean(),
        generator=lambda fake: -fake.mean(),
        divergence=lambda loss: -loss,  # Wasserstein-1
    ),
}


def gradient_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0,
                     epsilon: torch.Tensor | None = None) -> torch.Tensor:
    r"""The WGAN-GP penalty :math:`\lambda\,\frac1n\sum_i(\lVert\nabla D(\hat x_i)\rVert_2 - 1)^2`
    at :math:`\hat x_i = \epsilon_i x_i + (1 - \epsilon_i)\tilde x_i`, one :math:`\epsilon_i`
    per example.

    One backward pass of :math:`\sum_i D(\hat x_i)` gives every example's own gradient,
    because each score depends on its own input only (a discriminator with batch
    normalization breaks this; use layer or spectral normalization instead).

    :param epsilon: the interpolation weights, shape ``(n,)``; drawn uniformly by default.
    """
    n = len(real)
    if epsilon is None:
        epsilon = torch.rand(n, device=real.device, dtype=real.dtype)
    epsilon = epsilon.reshape(n, *([1] * (real.dim() - 1)))
    mixed = (epsilon * real + (1 - epsilon) * fake).detach().requires_grad_(True)
    scores = discriminator(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grad.reshape(n, -1).norm(dim=1)
    return weight * ((norms - 1) ** 2).mean()


def r1_penalty(discriminator, real: torch.Tensor, weight: float, scores: torch.Tensor | None = None) -> torch.Tensor:
    r"""The R1 penalty :math:`\frac{\gamma}{2}\,\frac1n\sum_i\lVert\nabla_{x_i} D(x_i)\rVert_2^2`
    on the data points :math:`x_i` (Mescheder et al. 2018), one gradient per example as in
    :func:`gradient_penalty`.

    :param weight: :math:`\gamma`.
    :param scores: ``discriminator(real)`` already computed from a ``real`` that requires
        grad (saves a forward pass); by default they are computed here.
    """
    if scores is None:
        real = real.detach().requires_grad_(True)
        scores = _scores(discriminator, real)
    elif not real.requires_grad:
        raise ValueError("r1_penalty: scores were given, so real must be the tensor (requiring grad) they came from")
    (grad,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
    return 0.5 * weight * grad.reshape(len(real), -1).pow(2).sum(1).mean()


def _scores(discriminator, x):
    scores = discriminator(x)
    if scores.dim() == 2 and scores.shape[-1] == 1:
        scores = scores.squeeze(-1)
    if scores.shape != (len(x),):
        raise ValueError(f"the discriminator must return one score per data point, shape ({len(x)},); got {tuple(scores.shape)}")
    return scores


class _SiteX(Messenger):
    """Keeps the message of sample site ``"x"`` as the program runs: the one site of the
    trace the adversarial objective reads, without building the whole trace graph."""

    def __init__(self):
        super().__init__()
        self.site = None

    def _postprocess_message(self, msg):
        if msg["type"] == "sample" and msg["name"] == "x":
            self.site = msg


class Adversarial(Objective):
    """Adversarial training for :func:`probgen.fit`: parameter groups ``"generator"`` and
    ``"discriminator"``, each with its own optimizer and learning rate.

    :param loss: ``"nonsaturating"``, ``"hinge"`` or ``"wgan-gp"``.
    :param discriminator_steps: discriminator updates per generator update (``k``).
    :param gp_weight: :math:`\\lambda` of the gradient penalty (``"wgan-gp"`` only). By
        default ``model.gp_weight`` if the model has one (:class:`~probgen.GAN` does), else 10.
    :param r1_weight: :math:`\\gamma` of the R1 penalty on the data (any loss; 0 = none).
        By default ``model.r1_weight`` if the model has one (:class:`~probgen.GAN` does),
        else 0.
    :param pack: how many points the discriminator scores together (PacGAN; 1 = none). By
        default ``model.pack`` if the model has one (:class:`~probgen.GAN` does), else 1.
        The discriminator must take inputs of :func:`probgen.nn.packed_event_shape`; the gradient
        penalties (WGAN-GP, R1) then apply per packed group. Every batch must hold a
        multiple of ``pack`` points: :func:`probgen.fit` checks the sizes before it starts.
    :param discriminator: the discriminator module; by default ``model.discriminator``. One
        given here is not part of the model, so checkpoints of :func:`probgen.fit` do not
        hold its weights (its optimizer state they do): attach it to the model
        (``model.discriminator = d``) to checkpoint it.

    Example::

        >>> import probgen as pg
        >>> data = pg.datasets.load("ring8")
        >>> gan = pg.GAN(data.info, 2)
        >>> run = pg.fit(gan, data.train[:512], objective=pg.infer.Adversarial("hinge"),
        ...              epochs=1, lr={"generator": 1e-4, "discriminator": 4e-4}, progress=False)
        >>> len(run.history["train_loss"])
        1
    """

    # the recorded loss is the discriminator's estimate of the divergence, not a likelihood
    loss_unit = "(divergence estimate)"
    # and it is lowest where the discriminator is weakest, not where the generator is best:
    # picking the epoch with the lowest estimate picks a poor generator (benchmarks/defaults.py)
    loss_ranks_epochs = False

    def __init__(self, loss: str = "nonsaturating", *, discriminator_steps: int = 1, gp_weight: float | None = None,
                 discriminator: torch.nn.Module | None = None, pack: int | None = None,
                 r1_weight: float | None = None):
        loss = choice(loss, AdversarialLoss, "adversarial loss")
        if pack is not None:
            positive_int(pack, "pack")
        positive_int(discriminator_steps, "discriminator_steps")
        for name, weight in (("gp_weight", gp_weight), ("r1_weight", r1_weight)):
            if weight is not None:
                non_negative_number(weight, name)
        self.loss = loss
        self.discriminator_steps = discriminator_steps
        self.gp_weight = None if gp_weight is None else float(gp_weight)
        self.discriminator = discriminator
        self.pack = pack
        self.r1_weight = None if r1_weight is None else float(r1_weight)

    # settings left as None are the model's (a GAN carries them), else these defaults
    _DEFAULTS = {"pack": 1, "gp_weight": 10.0, "r1_weight": 0.0}

    def _setting(self, model, name):
        value = getattr(self, name)
        return value if value is not None else getattr(model, name, self._DEFAULTS[name])

    def _pack(self, model) -> int:
        return self._setting(model, "pack")

    def _gp_weight(self, model) -> float:
        return self._setting(model, "gp_weight")

    def _r1_weight(self, model) -> float:
        return self._setting(model, "r1_weight")

    def check_batches(self, model, sizes):
        m = self._pack(model)
        bad = sorted(size for size in sizes if size % m)
        if bad:
            raise ValueError(
                f"the discriminator scores packs of {m} points, so every batch must hold a multiple of {m} "
                f"points; these batch sizes are not: {bad} (the last batch of an epoch holds what is left of "
                "the data: choose batch_size and the data's length accordingly)"
            )
        self._discriminator(model)
        # the model's site "x" can be played against the discriminator: said before any work, from
        # a dry run in evaluation mode (batch norm's running statistics stay as they are)
        training = model.training
        try:
            with torch.no_grad():
                self.generate(model.eval(), 2)
        finally:
            model.train(training)

    def modules(self):
        return [self.discriminator] if self.discriminator is not None else []

    def _discriminator(self, model):
        d = self.discriminator if self.discriminator is not None else getattr(model, "discriminator", None)
        if not isinstance(d, torch.nn.Module):
            raise TypeError(
                f"adversarial training needs a discriminator module: {type(model).__name__} has no "
                "'discriminator' attribute; pass Adversarial(discriminator=...)"
            )
        return d

    def parameter_groups(self, model):
        d_params = [p for p in self._discriminator(model).parameters() if p.requires_grad]
        taken = {id(p) for p in d_params}
        g_params = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
        return {"generator": g_params, "discriminator": d_params}

    @staticmethod
    def generate(model, n: int) -> torch.Tensor:
        """``n`` samples read from site ``"x"`` of the model's trace, differentiable in the
        generator's parameters."""
        with _SiteX() as record:
            model.model(None, num_data=n)
        site = record.site
        if site is None:
            raise ValueError(f"{type(model).__name__}.model has no sample site 'x' to train adversarially")
        if site["is_observed"]:
            raise ValueError("site 'x' is observed when the model runs with x=None; it must be sampled")
        if not site["fn"].has_rsample and getattr(model, "obs_noise", None) is not None:
            raise ValueError(
                f"this {type(model).__name__} has obs_noise={model.obs_noise}, so its site 'x' draws from the observation "
                "model, while the adversarial game trains x = G(z): set obs_noise = None to train it, and choose the "
                "noise again afterwards (pg.infer.select_obs_noise: it depends on the weights)"
            )
        if not site["fn"].has_rsample:
            raise ValueError(
                f"site 'x' draws from {type(site['fn']).__name__}, which is not reparameterized; the generator "
                "needs x = G(z) differentiable in its parameters (a Delta, a Normal, ...)"
            )
        if len(site["value"]) != n:
            raise ValueError(f"site 'x' holds {len(site['value'])} samples; expected num_data={n} along dim 0")
        return site["value"]

    def _discriminator_step(self, d, real, fake, gp_weight, r1_weight):
        if r1_weight > 0:
            real = real.detach().requires_grad_(True)
        real_scores = _scores(d, real)
        loss = self.loss.discriminator_loss(real_scores, _scores(d, fake))
        total = loss
        if self.loss is AdversarialLoss.WGAN_GP and gp_weight > 0:
            total = total + gradient_penalty(d, real.detach(), fake, gp_weight)
        if r1_weight > 0:
            total = total + r1_penalty(d, real, r1_weight, scores=real_scores)
        return total, loss

    def train_step(self, model, batch, update):
        d, m = self._discriminator(model), self._pack(model)
        gp, r1 = self._gp_weight(model), self._r1_weight(model)
        n, k = len(batch), self.discriminator_steps
        real = pack(batch, m)
        # the generator is fixed during the k discriminator steps, so one draw of k * n
        # samples is the same as k fresh draws of n (up to batch-norm statistics in G)
        with torch.no_grad():
            fakes = self.generate(model, k * n).split(n)
        for fake in fakes:
            total, loss = self._discriminator_step(d, real, pack(fake, m), gp, r1)
            update("discriminator", total)
        # the generator step needs no gradient for the discriminator's weights
        frozen = [p for p in d.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            update("generator", self.loss.generator_loss(_scores(d, pack(self.generate(model, n), m))))
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return self.loss.divergence_estimate(loss.detach())

    def eval_loss(self, model, batch):
        d, m = self._discriminator(model), self._pack(model)
        fake = pack(self.generate(model, len(batch)), m)
        return self.loss.divergence_estimate(self.loss.discriminator_loss(_scores(d, pack(batch, m)), _scores(d, fake)).detach())

    def __repr__(self):
        return (f"Adversarial({self.loss.value!r}, discriminator_steps={self.discriminator_steps}, gp_weight={self.gp_weight}, "
                f"pack={self.pack}, r1_weight={self.r1_weight})")


# "hinge", "wgan-gp:5", ...: the count after ':' is the number of discriminator steps
for _loss in AdversarialLoss:
    OBJECTIVES[_loss.value] = ObjectiveName((lambda loss: lambda k: Adversarial(loss, discriminator_steps=k))(_loss),
                                            "number of discriminator steps", 1)
