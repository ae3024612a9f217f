r"""An exponential moving average of a model's weights, kept by :func:`probgen.fit` (``ema=``).

After each optimizer step the average :math:`\bar\theta` moves towards the current weights,

.. math:: \bar\theta_n = d_n \bar\theta_{n-1} + (1 - d_n)\, \theta_n, \qquad
          d_n = \min\Big(d, \frac{1 + n}{10 + n}\Big),

so early on, when the weights change fast, the average forgets quickly, and later it
spans about :math:`1/(1 - d)` steps. A stochastic-gradient iterate keeps jittering around
its optimum by about the learning rate times the gradient noise; the average does not
(Polyak & Juditsky, 1992). Where a model's output amplifies small weight errors, the
difference shows: a diffusion model's ancestral sampler divides the denoiser's error by
:math:`\alpha_t` at low signal-to-noise ratios, so its samples move with the last iterate's
jitter far more than its bound does (``benchmarks/defaults.py`` measures it on 1-D Gaussian
data). Every diffusion code base samples from such an average (Ho et al. 2020 use
:math:`d = 0.9999`).

References:
    Polyak, Juditsky (1992). Acceleration of stochastic approximation by averaging. SIAM
    Journal on Control and Optimization 30.
    Ho, Jain, Abbeel (2020). Denoising Diffusion Probabilistic Models. NeurIPS.
"""

from __future__ import annotations

import contextlib

import torch

from ..checks import number

__all__ = ["WeightAverage", "check_ema"]


def check_ema(decay) -> None:
    """Raise a clear error unless ``decay`` is ``None`` or a number in ``[0, 1)``."""
    if decay is not None:  # e.g. 0.999
        number(decay, "ema", 0, 1)


class WeightAverage:
    """The moving average of the floating-point parameters of ``model``, updated by
    :meth:`update` and swapped into the model by :meth:`swapped` (for evaluation, saving)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        check_ema(decay)
        self.decay = float(decay)
        self.names = [name for name, p in model.named_parameters() if p.is_floating_point()]
        self.params = [p for _, p in model.named_parameters() if p.is_floating_point()]
        self.average = [p.detach().clone() for p in self.params]
        self._by_dtype: dict[torch.dtype, list] = {}  # the (average, parameter) pairs of each dtype
        for a, p in zip(self.average, self.params):
            self._by_dtype.setdefault(a.dtype, []).append((a, p))
        # the step count lives beside the weights and is updated in place, so that a training
        # step recorded as a CUDA graph counts on every replay (probgen.infer.graphs)
        device = self.params[0].device if self.params else torch.device("cpu")
        self._steps = torch.zeros((), dtype=torch.float64, device=device)

    @property
    def steps(self) -> int:
        """The number of updates so far (a read of the device)."""
        return int(self._steps)

    @torch.no_grad()
    def update(self) -> None:
        self._steps.add_(1)
        keep = torch.clamp((1 + self._steps) / (10 + self._steps), max=self.decay)
        for dtype, pairs in self._by_dtype.items():
            weight = (1 - keep).to(dtype)  # lerp_ takes a weight tensor of the tensors' own dtype
            for a, p in pairs:
                a.lerp_(p, weight)

    @torch.no_grad()
    def _swap(self) -> None:
        for p, a in zip(self.params, self.average):
            held = p.detach().clone()
            p.copy_(a)
            a.copy_(held)

    @contextlib.contextmanager
    def swapped(self):
        """Inside this block the model holds the averaged weights; the current ones return after."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Leave the averaged weights in the model (the end of training)."""
        for p, a in zip(self.params, self.average):
            p.copy_(a)

    def averaged_state_dict(self, model: torch.nn.Module) -> dict:
        """``model.state_dict()`` with the averaged weights in place of the current ones:
        what a checkpoint's ``"model"`` holds, so that loading it gives the averaged model."""
        state = {name: value.detach().clone() for name, value in model.state_dict().items()}
        for name, a in zip(self.names, self.average):
            state[name] = a.clone()
        return state

    def state_dict(self) -> dict:
        """The rest of the training state: the decay, the step count and the current weights."""
        return {"decay": self.decay, "steps": self.steps,
                "current": {name: p.detach().clone() for name, p in zip(self.names, self.params)}}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Resume: the model holds the averaged weights (a checkpoint's ``"model"``); take
        them as the average and put the saved current weights back into the model."""
        if set(state["current"]) != set(self.names):
            raise ValueError("the saved weight average holds other parameters than this model")
        self._steps.fill_(int(state["steps"]))
        for name, p, a in zip(self.names, self.params, self.average):
            a.copy_(p)
            p.copy_(state["current"][name])
