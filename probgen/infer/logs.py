"""TensorBoard logs of a training run: ``pg.fit(..., log_dir="runs/vae")``, then
``tensorboard --logdir runs``.

Every epoch :class:`TensorBoardLog` writes, with :mod:`torch.utils.tensorboard`:

- ``loss/train`` and ``loss/valid`` (nats per data point, the numbers of ``FitResult.history``);
- ``lr/<group>``: each optimizer's learning rate;
- ``grad_norm/<group>``: the epoch's mean gradient norm of each parameter group (before clipping);
- ``terms/<name>``: the per-term breakdown of the ELBO where the family has one (a diffusion
  model's prior, diffusion and reconstruction terms; a hierarchical VAE's KL per layer),
  from one ELBO estimate on up to :data:`TERM_POINTS` validation points;

and at the first epoch and every ``log_every`` epochs ``samples``: a grid of
:data:`SAMPLE_COUNT` samples for image data, a histogram of each coordinate otherwise.

What is logged is drawn with its own random state: a run writes the same history with and
without a log. Only rank 0 of a distributed run writes.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np
import torch

from ..checks import writable_folder
from .likelihood import log_likelihood
from .weights import evaluating

__all__ = ["SAMPLE_COUNT", "TERM_POINTS", "TensorBoardLog"]

#: validation points of the per-term ELBO estimate each epoch
TERM_POINTS = 256
#: samples in each logged grid
SAMPLE_COUNT = 64


def summary_writer(log_dir):
    """A :class:`torch.utils.tensorboard.SummaryWriter`, or a clear error if the
    ``tensorboard`` package it writes with is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's writer needs the tensorboard package
        raise ImportError("log_dir needs the tensorboard package: pip install 'probgen[tensorboard]'") from None
    return SummaryWriter(log_dir=str(log_dir))


@contextlib.contextmanager
def own_random_state():
    """Run a block without disturbing the random streams of training (torch, CUDA, Python, NumPy)."""
    python, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy_state)


class TensorBoardLog:
    """Writes one training run's TensorBoard events (see the module's docstring)."""

    def __init__(self, log_dir, log_every: int = 5):
        self.path = writable_folder(log_dir, "log_dir")
        self.writer = summary_writer(self.path)
        self.log_every = log_every

    def epoch(self, state, optimization, valid: torch.Tensor) -> None:
        """Log the epoch ``state.epoch`` that was just recorded."""
        step, write = state.epoch, self.writer.add_scalar
        for name, values in state.history.items():
            if name != "seconds" and values:
                write(f"loss/{name.removesuffix('_loss')}", values[-1], step)
        write("seconds_per_epoch", state.history["seconds"][-1], step)
        for group, opt in optimization.optimizers.items():
            write(f"lr/{group}", float(opt.param_groups[0]["lr"]), step)  # a tensor in a recorded step
        for group, mean in optimization.take_grad_norms().items():
            write(f"grad_norm/{group}", mean, step)
        model = state.model
        with own_random_state(), optimization.evaluation_weights():
            estimate = None
            if "elbo" in model.likelihood_methods:
                estimate = log_likelihood(model, valid[:TERM_POINTS], method="elbo", num_samples=1, seed=step)
            for name, values in (estimate.terms or {}).items() if estimate is not None else ():
                write(f"terms/{name}", float(values.mean()), step)
            if step % self.log_every == 0 or step == 1:
                with evaluating(model, seed=step):
                    self._samples(model, step)
        self.writer.flush()

    def _samples(self, model, step: int) -> None:
        samples = model.sample(SAMPLE_COUNT, mean=True).detach().float().cpu()
        shape = model.info.event_shape
        if len(shape) >= 2:  # images: (H, W) or (C, H, W), scaled to [0, 1]
            images = samples if len(shape) == 3 else samples.unsqueeze(1)
            top = float(model.info.num_levels - 1) if model.info.support != "real" else None
            images = images / top if top else (images - images.min()) / (images.max() - images.min() + 1e-12)
            self.writer.add_images("samples", images.clamp(0, 1), step)
        else:
            for d in range(min(samples.shape[-1], 8)):
                self.writer.add_histogram(f"samples/dim{d}", samples[:, d], step)

    def close(self) -> None:
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def files(self) -> list[Path]:
        """The event files written so far."""
        return sorted(self.path.glob("events.out.tfevents.*"))
