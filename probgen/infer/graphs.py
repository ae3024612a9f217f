r"""Training steps recorded once as CUDA graphs and replayed per batch (``pg.fit(cuda_graph=...)``).

A Pyro program's structure is fixed for a fixed batch shape: the same sample sites, the same
tensor shapes, the same kernels, in the same order, every step. At small batches a GPU spends
most of a step waiting for Python to launch those kernels, one by one. A CUDA graph records the
launches of one whole step once (model and guide through Pyro, the backward pass, every
optimizer of the objective, the loss notes and the weight average) and replays them with one
call: the step's Python runs once per batch size instead of once per batch.

What makes the recorded step the same step:

- **Static buffers.** A replay reads its batch from the tensor it was recorded with, so each
  batch is copied into that tensor first; everything the step writes (gradients, optimizer
  moments, the loop's per-epoch sums and loss notes, the weight average) lives in tensors that
  exist across replays and is updated in place.
- **Values that change between steps live on the device.** The step counter of the loss notes,
  the weight average's step count, the warm-up weight :math:`\beta` of
  :class:`~probgen.infer.KLWarmup`, and each optimizer's learning rate and step count
  (``capturable=True``: a rate as a tensor, which the schedulers update in place) are device
  tensors; a Python number would be baked into the recording.
- **Fresh noise per replay.** The default CUDA generator is graph-safe: a replay advances its
  offset, so each replay draws new noise, the same numbers the eager step would draw from that
  state.
- **Nothing waits for the host.** A recorded step cannot read a value back (``.item()``, a
  Python branch on a tensor); the capture check runs the first step of each batch size with
  ``torch.cuda.set_sync_debug_mode("error")``, which names any such read.

``cuda_graph="auto"`` (the default) records where the checks pass (a CUDA device, one process,
an optimizer with a ``capturable`` option, an objective that changes nothing in Python between
epochs (:meth:`~probgen.infer.Objective.recordable`), a step that never waits for the host, a
capture that succeeds) and otherwise trains eagerly, saying why in one line; ``True`` raises the reason
instead; ``False`` trains eagerly. :attr:`probgen.infer.FitResult.step_mode` says which it did.
"""

from __future__ import annotations

import inspect
import warnings

import torch

__all__ = [
    "CapturedSteps",
    "EagerSteps",
    "check_cuda_graph",
    "graph_obstacle",
    "make_capturable",
    "portable_optimizer_state",
    "release_capturable",
]

#: eager steps of each batch size before its step is recorded (the first runs the sync check;
#: all of them create the optimizers' state and let the CUDA libraries pick their kernels)
WARMUP_STEPS = 3


def check_cuda_graph(value) -> None:
    """Raise a clear error unless ``value`` is ``"auto"``, ``True`` or ``False``."""
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise ValueError(f"cuda_graph must be 'auto', True or False, got {value!r}")


def graph_obstacle(device: torch.device, distributed: bool, optimizer: type, objective=None) -> str | None:
    """Why the step cannot be recorded before any step runs, or ``None`` when nothing stands in
    the way so far (the sync check and the capture itself come at the first steps)."""
    if device.type != "cuda":
        return f"the model trains on {device.type}; CUDA graphs need a CUDA device"
    if distributed:
        return "a distributed run averages gradients between processes at every step; it trains eagerly"
    if "capturable" not in inspect.signature(optimizer).parameters:
        return (f"{optimizer.__module__}.{optimizer.__qualname__} has no capturable option (its step would read its "
                "state on the host); Adam, AdamW and most of torch.optim's adaptive optimizers have one")
    if objective is not None and not objective.recordable():
        return (f"{type(objective).__name__} changes in Python between epochs (begin_epoch) and does not say that a "
                "recorded step would follow it (Objective.recordable)")
    return None


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Let ``optimizer``'s step run inside a CUDA graph: ``capturable=True``, each group's
    learning rate a device tensor (the schedulers then update it in place) and the step counts
    on the parameters' device. Works on a fresh optimizer and on one loaded from a checkpoint."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=group["params"][0].device)
        _move_step_counts(optimizer, group, on_host=False)


def release_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Undo :func:`make_capturable` for eager training: ``capturable=False``, numbers as rates
    and the step counts on the host (a capturable step out of a graph costs time, and an eager
    one with its counts on the device would read them back at every step)."""
    for group in optimizer.param_groups:
        group["capturable"] = False
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])
        _move_step_counts(optimizer, group, on_host=True)


def _move_step_counts(optimizer: torch.optim.Optimizer, group: dict, on_host: bool) -> None:
    """The group's per-parameter step counts as float32 tensors on the host or beside each parameter."""
    for p in group["params"]:
        state = optimizer.state.get(p, {})
        if isinstance(state.get("step"), torch.Tensor):
            state["step"] = state["step"].to("cpu" if on_host else p.device, torch.float32)


def portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` as a checkpoint keeps it: learning rates as numbers and
    ``capturable`` off, so that a run recorded on a GPU resumes anywhere (and records again on
    one: :func:`make_capturable`)."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        if "capturable" in group:
            group["capturable"] = False
    return state


class EagerSteps:
    """Runs each step as Python calls it."""

    mode = "eager"

    def __init__(self, step, reason: str | None = None):
        self.step = step
        self.reason = reason

    def __call__(self, batch: torch.Tensor) -> None:
        self.step(batch)


class CapturedSteps:
    """Records ``step`` once per batch shape after :data:`WARMUP_STEPS` eager steps and replays
    it per batch.

    ``step(batch)`` must write everything it produces into tensors that outlive it and
    ``step.rewind()`` must undo the in-place counting of a step abandoned by the sync check
    (the loop's step does both). The ``optimizers`` the step uses are made capturable
    (:func:`make_capturable`), and given back their eager form if training falls back to eager
    steps. ``required``: a failed check raises instead of falling back; ``say(line)`` reports a
    fall-back.
    """

    def __init__(self, step, optimizers=(), *, required: bool, say=print):
        self.step = step
        self.optimizers = list(optimizers)
        for optimizer in self.optimizers:
            make_capturable(optimizer)
        self.required = required
        self.say = say
        self.graphs: dict[torch.Size, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.eager_steps: dict[torch.Size, int] = {}
        self.gave_up: str | None = None  # why training fell back to eager steps
        self.side = torch.cuda.Stream()

    @property
    def mode(self) -> str:
        return "captured" if self.gave_up is None and self.graphs else "eager"

    @property
    def reason(self) -> str | None:
        """Why the steps ran eagerly, or ``None`` when they were recorded."""
        if self.gave_up is None and not self.graphs:
            return f"no batch size came to more than {WARMUP_STEPS} steps (the eager steps before recording)"
        return self.gave_up

    def __call__(self, batch: torch.Tensor) -> None:
        if self.gave_up is not None:
            self.step(batch)
            return
        recorded = self.graphs.get(batch.shape)
        if recorded is not None:
            graph, static = recorded
            static.copy_(batch)
            graph.replay()
            return
        done = self.eager_steps.get(batch.shape, 0)
        self.eager_steps[batch.shape] = done + 1
        if done == 0:
            self._checked_step(batch)
        elif done < WARMUP_STEPS:
            self._on_side_stream(batch)
        else:
            self._record(batch)

    def _on_side_stream(self, batch):
        # eager warm-up steps run on a side stream, as recording does, so that the libraries'
        # per-stream state is set up where the graph will be recorded
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side), warnings.catch_warnings():
            # torch.optim warns that a capturable optimizer steps outside a graph: here it must
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            self.step(batch)
        torch.cuda.current_stream().wait_stream(self.side)

    def _checked_step(self, batch):
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            self._on_side_stream(batch)
            return
        except RuntimeError as error:
            if "synchroniz" not in str(error):
                raise
            failure = error
        finally:
            torch.cuda.set_sync_debug_mode(previous)
        torch.cuda.synchronize()  # the abandoned step's kernels, before the step runs again
        self.step.rewind()
        self._give_up("the training step waits for the host (a value read back, or a copy from host memory): "
                      + str(failure).strip().splitlines()[0], failure)
        self.step(batch)  # the step the check abandoned, eagerly

    def _record(self, batch):
        static = batch.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.side):
                self.step(static)
        except RuntimeError as error:  # recording launches no work: there is nothing to undo
            torch.cuda.synchronize()
            self._give_up("recording the training step failed: " + str(error).strip().splitlines()[0], error)
            self.step(batch)
            return
        self.graphs[batch.shape] = (graph, static)
        graph.replay()  # recording ran nothing: this replay is the step on this batch

    def _give_up(self, reason: str, error: Exception) -> None:
        if self.required:
            raise RuntimeError(f"cuda_graph=True, but {reason}. Train with cuda_graph='auto' or False, or "
                               "remove the host read from the step") from error
        self.gave_up = reason
        for optimizer in self.optimizers:
            release_capturable(optimizer)
        self.say(f"cuda_graph: training eagerly, because {reason}")
