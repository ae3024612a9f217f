"""The one training loop, shared by every family and objective."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import math
import time
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from ..checks import boolean, optional_positive_number, positive_int, positive_number, writable_folder
from ..checks import options as check_options
from ..checks import seed as check_seed
from ..models import upgrade_config
from .averaging import WeightAverage, check_ema
from .checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from .distributed import Ranks, current, join, launched, rank_seed
from .graphs import CapturedSteps, EagerSteps, check_cuda_graph, graph_obstacle, portable_optimizer_state
from .logs import TensorBoardLog
from .objectives import Objective, objective_identity, resolve_objective
from .weights import evaluating, seed_everything

__all__ = ["fit", "FitResult", "NonFiniteLossError", "Callback", "TrainingState", "resolve_device"]

LAST, BEST = "last.pt", "best.pt"

#: how far below the model dtype's largest value a learning rate must stay
LR_HEADROOM = 2.0**20


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; parameters were not updated with it."""


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    :ivar history: per-epoch lists: ``"train_loss"`` and ``"valid_loss"`` (nats per data
        point; ``valid_loss`` is empty without validation data) and ``"seconds"``.
    :ivar best_epoch: 1-based epoch of the lowest validation loss (training loss without
        validation data).
    """

    history: dict[str, list[float]]
    best_epoch: int
    best_loss: float
    epochs_run: int
    stopped_early: bool
    checkpoint_dir: Path | None = None
    loss_unit: str = "nats"
    #: ``"captured"`` (the step ran as a recorded CUDA graph) or ``"eager"``
    step_mode: str = "eager"
    #: why the step ran eagerly (``None`` when it was recorded)
    eager_reason: str | None = None

    def __repr__(self):
        return (
            f"FitResult(epochs_run={self.epochs_run}, best_epoch={self.best_epoch}, "
            f"best_loss={self.best_loss:.4f} {self.loss_unit}, stopped_early={self.stopped_early})"
        )


def resolve_device(device) -> torch.device:
    """``"auto"`` (or ``None``): CUDA when available, else the CPU; otherwise ``"cpu"``,
    ``"cuda"``, ``"cuda:i"`` or a :class:`torch.device` of those types, checked to exist."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}: probgen trains on "
                         "CPUs and CUDA devices")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} was asked for, but this machine has {torch.cuda.device_count()} CUDA "
                             "device(s)")
    return resolved


def _rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# what fit uses for an option that neither the call nor the model's fit_defaults sets
FIT_DEFAULTS = {"batch_size": 128, "lr": 1e-3, "optimizer_options": None, "lr_schedule": None, "ema": None}


def _with_model_defaults(model, optimizer, **given):
    """The call's values, with the model's ``fit_defaults`` (then :data:`FIT_DEFAULTS`) for
    those left ``None``. A model's ``optimizer_options`` are Adam's (the default optimizer):
    they are merged under the call's own options, and dropped for another optimizer."""
    declared = dict(getattr(model, "fit_defaults", None) or {})
    unknown = set(declared) - set(FIT_DEFAULTS)
    if unknown:
        raise ValueError(f"{type(model).__name__}.fit_defaults sets {sorted(unknown)}; it may set {sorted(FIT_DEFAULTS)}")
    adam_options = declared.pop("optimizer_options", None)
    if optimizer is torch.optim.Adam and adam_options:
        given["optimizer_options"] = {**adam_options, **(given["optimizer_options"] or {})}
    return tuple(
        value if value is not None else declared.get(name, FIT_DEFAULTS[name]) for name, value in given.items()
    )


def _cosine_tail(name, epochs):
    """The factor of epoch ``e`` (the scheduler has stepped ``e`` times) for ``"cosine:N"``
    or ``"cosine:P%"``: 1 until the last ``N`` of ``epochs`` (``P`` percent of them, rounded,
    at least one), then a half cosine down to 0; ``None`` if ``name`` is not of that form."""
    head, _, tail = name.partition(":")
    if head != "cosine":
        return None
    if tail.endswith("%") and tail[:-1].isdigit() and 0 < int(tail[:-1]) <= 100:
        tail = str(max(1, round(epochs * int(tail[:-1]) / 100)))
    if not tail.isdigit() or not 1 <= int(tail) <= epochs:
        return None
    tail = int(tail)
    hold = epochs - tail
    return lambda e: 1.0 if e < hold else 0.5 * (1 + math.cos(math.pi * (e - hold) / tail))


def _make_scheduler(lr_schedule, optimizer, epochs):
    if lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    factor = _cosine_tail(lr_schedule, epochs) if isinstance(lr_schedule, str) else None
    if factor is not None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if isinstance(lr_schedule, str) or not callable(lr_schedule):
        raise ValueError(
            f"lr_schedule must be None, 'constant', 'cosine' or a callable optimizer -> scheduler, or 'cosine:N' with N an "
            f"integer from 1 to epochs ({epochs}), or 'cosine:P%' with P from 1 to 100; got {lr_schedule!r}"
        )
    scheduler = lr_schedule(optimizer)
    if not hasattr(scheduler, "step") or not hasattr(scheduler, "state_dict"):
        raise TypeError(f"lr_schedule returned {type(scheduler).__name__}, not a torch.optim.lr_scheduler scheduler")
    return scheduler


def _batches(data, batch_size, generator=None):
    """``data`` in batches of ``batch_size``, in the order ``generator`` draws (in order without
    one). The order moves to the data's device once, so cutting a batch never waits for it."""
    if generator is None:
        yield from data.split(batch_size)
        return
    order = torch.randperm(len(data), generator=generator).to(data.device)
    for start in range(0, len(data), batch_size):
        yield data[order[start : start + batch_size]]


def _batch_sizes(data, batch_size):
    """The sizes of the batches ``_batches`` cuts ``data`` into (empty for no data)."""
    n = 0 if data is None else len(data)
    return {min(batch_size, n), n % batch_size} - {0}


def fit(
    model,
    train: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    epochs: int = 10,
    batch_size: int | None = None,
    lr: float | dict[str, float] | None = None,
    objective=None,
    optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
    optimizer_options: dict | None = None,
    lr_schedule=None,
    ema: float | None = None,
    device="auto",
    seed: int = 0,
    clip_grad: float | None = None,
    patience: int | None = None,
    restore_best: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks=(),
    distributed="auto",
    log_dir: str | Path | None = None,
    log_every: int = 5,
    cuda_graph="auto",
) -> FitResult:
    """Train any probgen model (or any object keeping the model protocol).

    :param model: a model with ``model``/``guide`` methods, e.g. :class:`probgen.VAE`.
    :param train: training data, data points along dim 0.
    :param valid: optional validation data: its loss is recorded every epoch, picks the
        best epoch, drives early stopping (``patience``) and, with ``restore_best``, the
        weights the model ends with. An objective whose loss does not rank epochs
        (``Objective.loss_ranks_epochs`` false: the adversarial objective) only records it;
        its best epoch is the last, and no ``best.pt`` is written.
    :param batch_size: data points per step (default 128).
    :param lr: one learning rate, or one per parameter group (``{"generator": ...}``);
        default ``1e-3``.
    :param objective: ``None`` (the model's default), a name (``"elbo"``, ``"meanfield"``,
        ``"iwae"``, ``"iwae:k"``), a Pyro ELBO, or an :class:`~probgen.infer.Objective`.
    :param lr_schedule: ``None`` (the model's default, else constant rates), ``"constant"``,
        ``"cosine"`` (every group's rate falls
        along a half cosine to 0 at the last of ``epochs``), ``"cosine:N"`` (constant, then
        the same fall over the last ``N`` epochs only), ``"cosine:P%"`` (the same over the
        last ``P`` percent of the epochs), or a callable
        ``f(optimizer) -> torch.optim.lr_scheduler.LRScheduler`` applied to each group's
        optimizer. Schedulers step once per epoch; their state is checkpointed, so a resumed
        run follows the same rates (for ``"cosine"``, those of the ``epochs`` the run was
        started with).
    :param ema: keep an exponential moving average of the weights with this decay (e.g.
        ``0.999``; see :mod:`probgen.infer.averaging`): validation, checkpoints' ``"model"``
        and the model :func:`fit` returns use the averaged weights. ``None``: the model's
        default (:class:`probgen.Diffusion` keeps one), else none; ``0``: none.
    :param device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    :param seed: seeds torch and Pyro; the data order of epoch ``e`` depends only on
        ``seed`` and ``e``, which, with the random state saved in checkpoints, makes a
        resumed run repeat an uninterrupted one exactly.
    :param clip_grad: clip each group's gradient norm to this value.
    :param checkpoint_dir: write ``last.pt`` every epoch and ``best.pt`` at each new best,
        atomically. A folder that already holds a checkpoint is refused unless ``resume``.
    :param resume: continue from ``checkpoint_dir/last.pt`` (start afresh if there is none).
        The optimizers' saved state, learning rates included, is restored, so ``lr`` only
        sets the rates of a run that starts afresh. A call whose seed, batch size, objective,
        ema or lr_schedule differs from the saved run's is refused before any work (it would
        not repeat the run); the objective is compared by its repr (``"iwae:10"`` records
        ``SVIObjective(IWAE(num_particles=10))``).
    :param progress: show a tqdm progress bar.
    :param callbacks: :class:`Callback` objects called at the start and end of every epoch
        (on every rank of a distributed run: write files where ``state.is_main``).
    :param distributed: ``"auto"`` trains data-parallel when the script was launched by
        torchrun with several workers (or a process group of several ranks exists), ``True``
        requires that, ``False`` trains in this process alone. See
        :mod:`probgen.infer.distributed`: ``batch_size`` stays the global batch, only rank 0
        writes checkpoints, logs and the progress bar.
    :param log_dir: write TensorBoard logs there (:mod:`probgen.infer.logs`): losses, learning
        rates, gradient norms, the per-term breakdown of the ELBO where the family has one,
        and samples every ``log_every`` epochs.
    :param cuda_graph: on a CUDA device, record the whole training step (model and guide,
        backward, every optimizer of the objective) once per batch size as a CUDA graph and
        replay it per batch (:mod:`probgen.infer.graphs`). ``"auto"`` does so where the capture
        checks pass and otherwise trains eagerly, saying why in one line (with ``progress``);
        ``True`` raises the reason instead; ``False`` trains eagerly. The result's
        ``step_mode`` and ``eager_reason`` say what happened. On the CPU every step is eager.

    ``batch_size``, ``lr``, ``optimizer_options``, ``lr_schedule`` and ``ema`` left as ``None`` take
    the model's ``fit_defaults`` where it has them (a GAN's Adam betas, say), else the
    defaults above: the obvious call trains each family with its measured recipe, and any
    value given here wins.

    Data are validated once, before training, and cast to the model's dtype (float64 data, as
    NumPy gives them, and float16 data train a float32 model); inside the loop Pyro's per-step argument
    checks are switched off (they cost about a quarter of a small step's time), and so are
    the ``param`` statements that only :class:`pyro.infer.SVI` reads (see
    :func:`probgen.models.pyro_params.param_sites_unread`).

    Losses are nats per data point (the negative ELBO for SVI objectives). The loop reads the
    device once per epoch: a NaN or infinite loss raises :class:`NonFiniteLossError` at the end
    of its epoch, naming the epoch and step, after giving the model back the weights the epoch
    started from; nothing of that epoch is saved, and checkpoints already written stay as they
    were.
    """
    batch_size, lr, optimizer_options, lr_schedule, ema = _with_model_defaults(
        model, optimizer, batch_size=batch_size, lr=lr, optimizer_options=optimizer_options, lr_schedule=lr_schedule,
        ema=ema,
    )
    check_ema(ema)
    objective = resolve_objective(model, objective)
    if patience is not None and not objective.loss_ranks_epochs:
        raise ValueError(
            f"patience needs a loss that ranks epochs; {type(objective).__name__}'s loss {objective.loss_unit} does "
            "not (it depends on that epoch's discriminator): train for a fixed number of epochs"
        )
    _check_options(model, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                   optimizer_options=optimizer_options, seed=seed, clip_grad=clip_grad, patience=patience,
                   restore_best=restore_best, resume=resume, progress=progress, callbacks=callbacks)
    check_cuda_graph(cuda_graph)
    model.validate(train, "train")
    if valid is not None:
        model.validate(valid, "valid")
    objective.check_batches(model, _batch_sizes(train, batch_size) | _batch_sizes(valid, batch_size))
    device = resolve_device(device)
    ranks = _join(distributed, device)
    if ranks is not None:
        if device.type == "cuda":  # one device per local rank
            device = torch.device("cuda", ranks.local_rank)
        sizes = _batch_sizes(train, batch_size) | _batch_sizes(valid, batch_size)
        if min(sizes) < ranks.world_size:
            raise ValueError(f"a batch of {min(sizes)} points cannot give each of {ranks.world_size} processes a "
                             "share: choose batch_size (and the data's length) so that every batch holds at least one "
                             "point per process")
        objective.check_batches(model, ranks.share_sizes(sizes))
    obstacle = graph_obstacle(device, ranks is not None, optimizer, objective) if cuda_graph is not False \
        else "cuda_graph=False"
    if cuda_graph is True and obstacle is not None:
        raise ValueError(f"cuda_graph=True, but {obstacle}")
    callbacks = tuple(callbacks)
    positive_int(log_every, "log_every")
    log = TensorBoardLog(log_dir, log_every) if log_dir is not None and (ranks is None or ranks.is_main) else None
    if checkpoint_dir is None and resume:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    folder = CheckpointFolder(checkpoint_dir, resume, seed=seed, batch_size=batch_size, ranks=ranks,
                              objective=objective_identity(objective)) \
        if checkpoint_dir is not None else None

    model.to(device)
    for module in objective.modules():  # a discriminator of the objective's own trains beside the model
        module.to(device)
    train = train.to(device, model.dtype)  # float64 (NumPy's) and float16 data take the model's dtype
    valid = valid.to(device, model.dtype) if valid is not None else None
    seed_everything(seed if ranks is None else rank_seed(seed, ranks.rank))
    if ranks is not None:
        for module in (model, *objective.modules()):
            ranks.broadcast_module(module)  # every rank starts from rank 0's weights
    optimization = Optimization(model, objective, optimizer, lr, optimizer_options, lr_schedule, ema, epochs, clip_grad,
                                ranks=ranks, track_grad_norms=log is not None)
    state = TrainingState(model, objective, {"train_loss": [], "valid_loss": [], "seconds": []},
                          monitor="valid_loss" if valid is not None else "train_loss", ranks=ranks)
    best_weights = None
    if folder is not None and folder.saved is not None:
        state.history, state.epoch = folder.restore(model, optimization)
        if restore_best and valid is not None:
            best_weights = folder.best_weights()
    state.rank_history()

    step = _Step(state, optimization, optimization.updater(folder))
    say = tqdm.write if progress and state.is_main else (lambda line: None)
    if obstacle is None:
        steps = CapturedSteps(step, optimization.optimizers.values(), required=cuda_graph is True, say=say)
    else:
        steps = EagerSteps(step, obstacle)
        if cuda_graph == "auto" and device.type == "cuda":  # on a CPU there is nothing to record
            say(f"cuda_graph: training eagerly, because {obstacle}")
    bar = tqdm(total=epochs, initial=state.epoch, desc=f"fit {model.family}", unit="epoch",
               disable=not progress or not state.is_main,
               dynamic_ncols=True)
    with pyro.validation_enabled(False), model.without_param_sites(), bar, log or contextlib.nullcontext():
        for state.epoch in range(state.epoch + 1, epochs + 1):
            for callback in callbacks:
                callback.on_epoch_start(state)
            began = time.perf_counter()
            train_loss = _train_epoch(state, optimization, train, batch_size, seed, steps)
            state.history["train_loss"].append(train_loss)
            if valid is not None:
                with optimization.evaluation_weights():
                    state.history["valid_loss"].append(evaluate_loss(model, objective, valid, batch_size, ranks))
            state.history["seconds"].append(time.perf_counter() - began)
            optimization.check_finite(state, folder)
            improved = state.rank_last_epoch()
            if improved and restore_best and valid is not None:
                best_weights = optimization.evaluation_state()
            if folder is not None:
                folder.save(optimization.snapshot(state, seed, batch_size), improved)
            if log is not None:
                log.epoch(state, optimization, valid if valid is not None else train)
            bar.set_postfix({name.split("_")[0]: f"{values[-1]:.3f}" for name, values in state.history.items()
                             if name != "seconds" and values})
            bar.update(1)
            for callback in callbacks:
                callback.on_epoch_end(state)
            if patience is not None and state.epoch - state.best_epoch >= patience:
                state.stopped_early = True
                break

    if best_weights is not None:
        model.load_state_dict(best_weights)
    else:
        optimization.leave_evaluation_weights()
    return FitResult(state.history, state.best_epoch, state.best_loss, state.epoch, state.stopped_early,
                     folder.path if folder is not None else None, loss_unit=objective.loss_unit,
                     step_mode=steps.mode, eager_reason=steps.reason)


def _check_options(model, *, epochs, batch_size, lr, optimizer, optimizer_options, seed, clip_grad, patience,
                   restore_best, resume, progress, callbacks) -> None:
    """fit's options, each checked before any work (the data are checked by the model)."""
    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    check_seed(seed)
    # a rate must stay finite in the model's dtype after the optimizer's own scalings: Adam
    # divides it by 1 - beta1**step, 1e-3 for beta1 = 0.999 (3e37 overflows float32 there)
    largest = torch.finfo(model.dtype).max / LR_HEADROOM
    if isinstance(lr, dict):
        for group, rate in lr.items():
            positive_number(rate, f"lr[{group!r}]", maximum=largest)
    else:
        positive_number(lr, "lr", maximum=largest)
    if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer class (e.g. torch.optim.Adam), got {optimizer!r}")
    accepted = [name for name in inspect.signature(optimizer).parameters if name not in ("self", "params", "lr")]
    check_options(optimizer_options, "optimizer_options", accepted)
    optional_positive_number(clip_grad, "clip_grad")
    if patience is not None:
        positive_int(patience, "patience")
    for name, flag in (("restore_best", restore_best), ("resume", resume), ("progress", progress)):
        boolean(flag, name)
    for callback in callbacks:
        if not all(callable(getattr(callback, hook, None)) for hook in ("on_epoch_start", "on_epoch_end")):
            raise TypeError(f"callbacks must be probgen.infer.Callback objects (on_epoch_start and on_epoch_end), "
                            f"got {callback!r}")


def _train_epoch(state, optimization, train, batch_size, seed, steps) -> float:
    """One pass over ``train`` in the epoch's own order; the mean training loss. In a
    distributed run every rank walks the same order and trains on its share of each batch."""
    state.model.train()
    state.objective.begin_epoch(state.epoch)
    order = torch.Generator().manual_seed(seed * 1_000_003 + state.epoch)
    ranks = state.ranks
    optimization.begin_epoch()
    for state.step, batch in enumerate(_batches(train, batch_size, order), 1):
        if ranks is not None:
            share = batch[ranks.share(len(batch))]
            optimization.batch_fraction = len(share) / len(batch)
            batch = share
        steps(batch)
    optimization.end_epoch(state)  # the epoch's reads of the device: stops on a non-finite loss
    total = float(optimization.total)
    return (total if ranks is None else ranks.sum(total)) / len(train)


class _Step:
    """One training step as the loop runs it, eagerly or recorded (:mod:`probgen.infer.graphs`):
    everything it counts or sums (the step number of the loss notes, the epoch's loss total,
    the weight average) is updated in place on the device, so that a replay updates it too."""

    def __init__(self, state: TrainingState, optimization: Optimization, update):
        self.state, self.optimization, self.update = state, optimization, update

    def __call__(self, batch: torch.Tensor) -> None:
        optimization = self.optimization
        optimization.watch.tick()
        loss = self.state.objective.train_step(self.state.model, batch, self.update)
        optimization.total.add_(_detached(loss) * len(batch))
        optimization.after_step()

    def rewind(self) -> None:
        """Undo the count of a step abandoned before it updated anything."""
        self.optimization.watch.untick()


def _detached(loss):
    """A step's loss to sum: summing tensors that still carry their graphs would keep every
    step's graph alive until the epoch ends."""
    return loss.detach() if isinstance(loss, torch.Tensor) else loss


@dataclasses.dataclass
class TrainingState:
    """What the loop knows between steps, and what callbacks read (:class:`Callback`).

    :ivar epoch: the current (1-based) epoch; 0 before the first.
    :ivar step: the step within the epoch.
    :ivar history: the per-epoch records so far (see :class:`FitResult`).
    :ivar monitor: the history entry that picks the best epoch.
    :ivar ranks: the process group of a distributed run (:class:`~probgen.infer.distributed.Ranks`),
        ``None`` in one process; ``is_main`` says whether this process writes files.
    """

    model: torch.nn.Module
    objective: Objective
    history: dict[str, list[float]]
    monitor: str
    epoch: int = 0
    step: int = 0
    best_epoch: int = 0
    best_loss: float = math.inf
    stopped_early: bool = False
    ranks: Ranks | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes files: always in one process, rank 0 in several."""
        return self.ranks is None or self.ranks.is_main

    def rank_history(self) -> None:
        """The best epoch of the history so far (after a resume)."""
        values = self.history[self.monitor]
        if not self.objective.loss_ranks_epochs:
            self.best_epoch, self.best_loss = len(values), values[-1] if values else math.inf
        elif values:
            index = min(range(len(values)), key=values.__getitem__)
            self.best_epoch, self.best_loss = index + 1, values[index]

    def rank_last_epoch(self) -> bool:
        """Whether the epoch just recorded is the new best; an objective whose loss does not
        rank epochs (a GAN's divergence estimate depends on that epoch's discriminator) has
        no best epoch but the last, and never an improvement to save."""
        current = self.history[self.monitor][-1]
        if not self.objective.loss_ranks_epochs:
            self.best_epoch, self.best_loss = self.epoch, current
            return False
        if current < self.best_loss:
            self.best_epoch, self.best_loss = self.epoch, current
            return True
        return False


class Callback:
    """Hooks into :func:`fit`: each is called with the :class:`TrainingState`; the defaults do
    nothing. For figures, logs or diagnostics during training (e.g. mode coverage every few
    epochs) without touching the objective."""

    def on_epoch_start(self, state: TrainingState) -> None:
        """Before the epoch ``state.epoch`` trains."""

    def on_epoch_end(self, state: TrainingState) -> None:
        """After the epoch ``state.epoch`` is recorded (and checkpointed)."""


class LossWatch:
    """The non-finite-loss guard of the loop, kept on the device: each update notes, per
    parameter group, the first step whose loss was not finite and that loss, without waiting
    for the device; :meth:`first_non_finite` reads the notes back (once per epoch).

    The step counter and the notes are device tensors updated in place, so that a training
    step recorded as a CUDA graph counts and notes on every replay."""

    def __init__(self, groups, device: torch.device):
        self.step = torch.zeros((), dtype=torch.long, device=device)  # the step being taken, from 1
        # group -> (first non-finite step, 0 for none; its loss)
        self.notes = {group: (torch.zeros((), dtype=torch.long, device=device),
                              torch.zeros((), dtype=torch.float64, device=device)) for group in groups}

    def clear(self) -> None:
        self.step.zero_()
        for first, value in self.notes.values():
            first.zero_()
            value.zero_()

    def tick(self) -> None:
        """A step begins."""
        self.step.add_(1)

    def untick(self) -> None:
        self.step.sub_(1)

    def note(self, group: str, loss: torch.Tensor) -> None:
        first, value = self.notes[group]
        loss = loss.detach()
        bad = (first == 0) & ~torch.isfinite(loss)
        first.copy_(torch.where(bad, self.step, first))
        value.copy_(torch.where(bad, loss.to(value.dtype), value))

    def first_non_finite(self) -> tuple[str, int, float] | None:
        """``(group, step, loss)`` of the earliest non-finite loss noted, or ``None``."""
        found = [(int(step), group, float(loss)) for group, (step, loss) in self.notes.items()]
        found = [entry for entry in found if entry[0] > 0]
        if not found:
            return None
        step, group, loss = min(found)
        return group, step, loss


def _last_good(folder: CheckpointFolder | None, state: TrainingState) -> str:
    """The clause of an error message that names the last checkpoint written, if any."""
    return f"; the last good checkpoint is {folder.last}" if folder is not None and state.epoch > 1 else ""


class Optimization:
    """The optimizers (one per parameter group of the objective), their learning-rate
    schedulers, the optional weight average, and the guarded update step."""

    def __init__(self, model, objective, optimizer, lr, optimizer_options, lr_schedule, ema, epochs, clip_grad, *,
                 ranks=None, track_grad_norms=False):
        self.model = model
        self.modules = [model, *objective.modules()]  # what holds the weights being trained
        self.ranks = ranks
        self.batch_fraction = 1.0  # this rank's share of the current batch
        self.groups = objective.parameter_groups(model)
        rates = lr if isinstance(lr, dict) else {name: lr for name in self.groups}
        missing, unknown = set(self.groups) - set(rates), set(rates) - set(self.groups)
        if missing or unknown:
            raise ValueError(f"lr must give one learning rate for each parameter group {sorted(self.groups)}; "
                             f"it has none for {sorted(missing)} and names no group {sorted(unknown)}")
        for name, params in self.groups.items():
            if not params:
                raise ValueError(f"parameter group {name!r} has no trainable parameters")
        self.optimizers = {name: optimizer(params, lr=rates[name], **(optimizer_options or {}))
                           for name, params in self.groups.items()}
        self.schedulers = {} if lr_schedule in (None, "constant") else {
            name: _make_scheduler(lr_schedule, opt, epochs) for name, opt in self.optimizers.items()
        }
        self.average = WeightAverage(model, ema) if ema else None  # 0 turns a model's default average off
        self.clip_grad = clip_grad
        device = next(iter(self.groups.values()))[0].device
        self.watch = LossWatch(self.groups, device)
        self.total = torch.zeros((), dtype=torch.float64, device=device)  # the epoch's loss, summed over points
        # group -> (sum of gradient norms, steps) this epoch, summed on the device
        self.grad_norms = {group: torch.zeros(2, dtype=torch.float64, device=device) for group in self.groups} \
            if track_grad_norms else None
        self.folder = None  # where checkpoints go, for messages (set by updater)
        self.finite_state = None  # the state at the start of the epoch, restored if the epoch goes non-finite

    def updater(self, folder: "CheckpointFolder | None"):
        """``update(group, loss)`` for the objective: back-propagate, step that group's
        optimizer, and note on the device whether the loss was finite (:meth:`end_epoch`
        reads the notes). Nothing in it waits for the device."""
        self.folder = folder

        def update(group: str, loss: torch.Tensor) -> None:
            opt = self.optimizers[group]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.ranks is not None:  # the batch's loss and gradient, on every rank alike
                loss = self.ranks.average_gradients(loss, self.groups[group], self.batch_fraction)
            self.watch.note(group, loss)
            params = self.groups[group]
            if self.clip_grad is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
            elif self.grad_norms is not None:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            if self.grad_norms is not None:  # summed on the device: no host synchronisation per step
                record = self.grad_norms[group]
                record[0].add_(norm.detach())
                record[1].add_(1)
            opt.step()

        return update

    def check_finite(self, state: TrainingState, folder: "CheckpointFolder | None") -> None:
        """Stop before a checkpoint is written if the epoch left anything non-finite: a
        parameter or optimizer state (a step whose loss was finite but whose gradient was
        not steps the weights to NaN), or a loss it recorded (the validation loss)."""
        saved = _last_good(folder, state)
        for name, values in state.history.items():
            if name != "seconds" and values and not math.isfinite(values[-1]):
                raise NonFiniteLossError(
                    f"the {name.replace('_', ' ')} is {values[-1]} at epoch {state.epoch}; nothing of this epoch was "
                    f"saved{saved}. Try a smaller lr or clip_grad."
                )
        tensors = [("parameter " + name, p) for name, p in self.model.named_parameters()]
        if self.average is not None:
            tensors += [("averaged parameter " + name, a) for name, a in zip(self.average.names, self.average.average)]
        for group, opt in self.optimizers.items():
            tensors += [(f"{group} optimizer state {key}", value) for entry in opt.state.values()
                        for key, value in entry.items() if isinstance(value, torch.Tensor) and value.is_floating_point()]
        # one read for all: a tensor's sum is finite when all its values are (a finite sum
        # that overflows float32 only sends the check to the exact pass below)
        if not tensors or bool(torch.isfinite(torch.stack([t.detach().sum().float() for _, t in tensors])).all()):
            return
        for what, tensor in tensors:
            if not bool(torch.isfinite(tensor).all()):
                raise NonFiniteLossError(
                    f"the {what} holds NaN or infinite values after epoch {state.epoch} (a step whose loss was finite "
                    f"had a non-finite gradient); nothing of this epoch was saved{saved}. Try a smaller lr or clip_grad."
                )

    def take_grad_norms(self) -> dict[str, float]:
        """Each group's mean gradient norm over the steps since the last call (for the logs)."""
        means = {}
        for group, record in (self.grad_norms or {}).items():
            total, count = record.tolist()
            means[group] = total / max(count, 1)
            record.zero_()
        return means

    def after_step(self) -> None:
        if self.average is not None:
            self.average.update()

    def begin_epoch(self) -> None:
        """Keep the weights every step of the epoch starts from: the last finite ones."""
        self.watch.clear()
        self.total.zero_()
        self.finite_state = [{name: value.detach().clone() for name, value in module.state_dict().items()}
                             for module in self.modules]

    def end_epoch(self, state: TrainingState) -> None:
        """Read the epoch's notes on its losses (the loop's one wait for the device per epoch):
        after a non-finite loss, give the model back the weights the epoch started from and
        stop with an error naming the first such step; otherwise step the learning-rate
        schedules. (The optimizers and the weight average end with the run, so they are not
        restored; the checkpoint of the last epoch holds them.)"""
        bad = self.watch.first_non_finite()
        if bad is not None:
            group, step, value = bad
            for module, weights in zip(self.modules, self.finite_state):
                module.load_state_dict(weights)
            raise NonFiniteLossError(
                f"the {group} loss is {value} at epoch {state.epoch}, step {step}; no update of this epoch was kept "
                f"(the model is back at its weights after epoch {state.epoch - 1}){_last_good(self.folder, state)}. "
                "Try a smaller lr or clip_grad."
            )
        self.finite_state = None
        for scheduler in self.schedulers.values():
            scheduler.step()

    def evaluation_weights(self):
        """A context in which the model holds the weights that are evaluated."""
        return self.average.swapped() if self.average is not None else contextlib.nullcontext()

    def evaluation_state(self) -> dict:
        """A copy of the weights that are evaluated: the averaged ones when there is an average."""
        if self.average is not None:
            return self.average.averaged_state_dict(self.model)
        return copy.deepcopy(self.model.state_dict())

    def leave_evaluation_weights(self) -> None:
        """The end of training: the model keeps the weights that were evaluated."""
        if self.average is not None:
            self.average.copy_to_model()

    def snapshot(self, state: TrainingState, seed: int, batch_size: int) -> dict:
        """Everything a resumed run needs to repeat an uninterrupted one."""
        snapshot = {
            "format": CHECKPOINT_FORMAT,
            "config": self.model.config,
            "model": self.average.averaged_state_dict(self.model) if self.average is not None else self.model.state_dict(),
            "optimizers": {name: portable_optimizer_state(opt) for name, opt in self.optimizers.items()},
            "schedulers": {name: sched.state_dict() for name, sched in self.schedulers.items()},
            "epoch": state.epoch,
            "history": state.history,
            "rng": _rng_state(),
            "seed": seed,
            "batch_size": batch_size,
            "world_size": 1,
            "objective": objective_identity(state.objective),
        }
        if self.ranks is not None:  # a collective: every rank takes part, rank 0 writes
            snapshot["world_size"] = self.ranks.world_size
            snapshot["rng_ranks"] = self.ranks.gather_objects(snapshot["rng"])
        if self.average is not None:
            snapshot["ema"] = self.average.state_dict()
        if len(self.modules) > 1:
            snapshot["objective_modules"] = [module.state_dict() for module in self.modules[1:]]
        return snapshot

    def load(self, saved: dict, path: Path) -> None:
        """Resume from a snapshot (the model's weights already loaded)."""
        if ("ema" in saved) != (self.average is not None):
            raise ValueError(
                f"{path} was written {'with' if 'ema' in saved else 'without'} a weight average (ema), this call "
                f"asks for {'one' if self.average is not None else 'none'}: resume with the same ema"
            )
        if self.average is not None:
            if saved["ema"].get("decay") != self.average.decay:
                raise ValueError(f"{path} was written with ema={saved['ema'].get('decay')}, this call asks for "
                                 f"ema={self.average.decay}: resume with the same ema")
            self.average.load_state_dict(saved["ema"])
        if set(saved["optimizers"]) != set(self.optimizers):
            raise ValueError(f"{path} was written with the parameter groups {sorted(saved['optimizers'])}, this call "
                             f"trains {sorted(self.optimizers)}: resume with the same objective")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        extra = saved.get("objective_modules", [])
        if len(extra) != len(self.modules) - 1:
            raise ValueError(f"{path} holds the weights of {len(extra)} module(s) of the objective besides the model, "
                             f"this call's objective trains {len(self.modules) - 1}: resume with the same objective")
        for module, weights in zip(self.modules[1:], extra):
            module.load_state_dict(weights)
        saved_schedulers = saved.get("schedulers", {})
        if set(saved_schedulers) != set(self.schedulers):
            raise ValueError(
                f"{path} was written with lr_schedule for groups {sorted(saved_schedulers)}, this call has "
                f"{sorted(self.schedulers)}: resume with the same lr_schedule"
            )
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(saved_schedulers[name])


class CheckpointFolder:
    """``last.pt`` (every epoch) and ``best.pt`` (each new best) in one folder, written
    atomically; a folder that holds a checkpoint is refused unless the run resumes it.

    Opening the folder checks, before any work, that it can be written, removes the
    temporary files of a save that was killed mid-write (the checkpoint itself is intact: it
    is replaced only by a rename), and, on resume, that the saved run is the one asked for:
    its layout, its seed, its batch size and its objective (another of any would give another
    history; a checkpoint written before objectives were recorded is not checked for one)."""

    def __init__(self, path, resume: bool, *, seed: int, batch_size: int, ranks: Ranks | None = None,
                 objective: str | None = None):
        self.path = writable_folder(path, "checkpoint_dir")
        self.ranks = ranks
        self.last, self.best = self.path / LAST, self.path / BEST
        self.saved = None
        if resume and self.last.exists():
            self.saved = load_checkpoint(self.last, required=SNAPSHOT_KEYS)
            _check_snapshot(self.saved, self.last)
            world_size = 1 if ranks is None else ranks.world_size
            for name, value in (("seed", seed), ("batch_size", batch_size), ("world_size", world_size),
                                ("objective", objective)):
                if name in self.saved and value is not None and self.saved[name] != value:
                    raise ValueError(
                        f"{self.last} was written by a run with {name}={self.saved[name]!r}, this call has "
                        f"{name}={value!r}: resume with the same {name} (another would not repeat the run)"
                    )
            if ranks is not None and len(self.saved.get("rng_ranks", [])) != ranks.world_size:
                raise CheckpointError(f"{self.last} holds no random state for each of {ranks.world_size} processes")
        elif not resume and (self.last.exists() or self.best.exists()):
            raise FileExistsError(
                f"{self.path} already holds a checkpoint; pass resume=True to continue it, "
                "or choose another checkpoint_dir (nothing was overwritten)"
            )
        if ranks is None or ranks.is_main:
            for stale in self.stale_files():
                stale.unlink(missing_ok=True)

    def stale_files(self) -> list[Path]:
        """Temporary files left by a save that was killed before its rename."""
        if not self.path.is_dir():
            return []
        return [p for name in (LAST, BEST) for p in self.path.glob(f".{name}.*.tmp")]

    def restore(self, model, optimization: Optimization) -> tuple[dict, int]:
        """Load the saved run into ``model`` and ``optimization``; its history and epoch."""
        _check_config(model, self.saved, self.last)
        try:
            model.load_state_dict(self.saved["model"])
            optimization.load(self.saved, self.last)
            _set_rng_state(self.saved["rng"] if self.ranks is None else self.saved["rng_ranks"][self.ranks.rank])
        except CheckpointError:
            raise
        except (RuntimeError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise CheckpointError(f"{self.last} does not fit this run: {type(error).__name__}: {error}") from error
        return {key: list(values) for key, values in self.saved["history"].items()}, self.saved["epoch"]

    def best_weights(self) -> dict | None:
        if not self.best.exists():
            return None
        saved = load_checkpoint(self.best)
        if not isinstance(saved["model"], dict):
            raise CheckpointError(f"{self.best} holds no state dict under 'model'")
        return saved["model"]

    def save(self, snapshot: dict, improved: bool) -> None:
        """Write the snapshot: rank 0 alone in a distributed run, while the others wait, so
        that no rank can read a checkpoint (a resume) before it is whole."""
        if self.ranks is None or self.ranks.is_main:
            if improved:
                save_checkpoint(snapshot, self.best)
            save_checkpoint(snapshot, self.last)
        if self.ranks is not None:
            self.ranks.barrier()


# what a training snapshot holds, and the type of each entry
SNAPSHOT_KEYS = ("model", "optimizers", "epoch", "history", "rng")
_SNAPSHOT_TYPES = {"model": dict, "optimizers": dict, "schedulers": dict, "epoch": int, "history": dict,
                   "rng": dict, "seed": int, "batch_size": int, "world_size": int, "rng_ranks": list,
                   "config": (dict, type(None)), "ema": dict, "objective_modules": list, "objective": str}


def _check_snapshot(state: dict, path: Path) -> None:
    """Refuse a snapshot whose entries are not of the layout :meth:`Optimization.snapshot`
    writes (a tampered or foreign file), with a :class:`CheckpointError` naming the file."""
    for key, kind in _SNAPSHOT_TYPES.items():
        if key in state and (not isinstance(state[key], kind) or isinstance(state[key], bool)):
            raise CheckpointError(f"{path} is not a probgen training checkpoint: its {key!r} is a "
                                  f"{type(state[key]).__name__}")
    if state["epoch"] < 0:
        raise CheckpointError(f"{path} is not a probgen training checkpoint: epoch {state['epoch']}")
    history = state["history"]
    if set(history) != {"train_loss", "valid_loss", "seconds"} or not all(
        isinstance(values, list) and all(isinstance(v, (int, float)) for v in values) for values in history.values()
    ) or len(history["train_loss"]) != state["epoch"]:
        raise CheckpointError(f"{path} is not a probgen training checkpoint: its history is not one list of numbers "
                              f"per record ('train_loss', 'valid_loss', 'seconds') for each of its {state['epoch']} "
                              "epochs")
    if not isinstance(state["rng"].get("torch"), torch.Tensor) or state["rng"]["torch"].dtype != torch.uint8:
        raise CheckpointError(f"{path} is not a probgen training checkpoint: it holds no torch random state")
    if not all(isinstance(value, torch.Tensor) for value in state["model"].values()):
        raise CheckpointError(f"{path} is not a probgen training checkpoint: its 'model' is not a state dict")


def evaluate_loss(model, objective: Objective, data: torch.Tensor, batch_size: int, ranks: Ranks | None = None) -> float:
    """The objective's loss over ``data`` in nats per data point, without updates; sharded
    over the ranks of a distributed run (each scores a contiguous part)."""
    part = data if ranks is None else data[ranks.share(len(data))]
    with evaluating(model, seed=None):
        total = float(sum(_detached(objective.eval_loss(model, batch)) * len(batch)
                          for batch in _batches(part, batch_size)))
    return (total if ranks is None else ranks.sum(total)) / len(data)


def _join(distributed, device) -> Ranks | None:
    """The process group ``fit`` trains in, or ``None`` for one process."""
    if distributed == "auto":
        return join(device) if launched() or current() is not None else None
    if boolean(distributed, "distributed"):
        return join(device)
    return None


def _check_config(model, state, path):
    saved, current = state.get("config"), model.config
    if saved:
        saved = upgrade_config(saved)
    if saved and current and saved != current:
        raise CheckpointError(f"{path} was written for a different model: saved config {saved}, this model {current}")
