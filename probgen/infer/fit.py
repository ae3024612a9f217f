"""The one training loop, shared by every family and objective."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from ..checks import positive_int
from .averaging import WeightAverage, check_ema
from .checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from .objectives import Objective, resolve_objective
from .weights import seed_everything

__all__ = ["fit", "FitResult", "NonFiniteLossError", "resolve_device"]

LAST, BEST = "last.pt", "best.pt"


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

    def __repr__(self):
        return (
            f"FitResult(epochs_run={self.epochs_run}, best_epoch={self.best_epoch}, "
            f"best_loss={self.best_loss:.4f} {self.loss_unit}, stopped_early={self.stopped_early})"
        )


def resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for, but CUDA is not available on this machine")
    return device


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
    order = torch.randperm(len(data), generator=generator) if generator is not None else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        yield data[order[start : start + batch_size].to(data.device)]


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
        sets the rates of a run that starts afresh.
    :param progress: show a tqdm progress bar.

    ``batch_size``, ``lr``, ``optimizer_options``, ``lr_schedule`` and ``ema`` left as ``None`` take
    the model's ``fit_defaults`` where it has them (a GAN's Adam betas, say), else the
    defaults above: the obvious call trains each family with its measured recipe, and any
    value given here wins.

    Data are validated once, before training; inside the loop Pyro's per-step argument
    checks are switched off (they cost about a quarter of a small step's time), and so are
    the ``param`` statements that only :class:`pyro.infer.SVI` reads (see
    :func:`probgen.models.pyro_params.param_sites_unread`).

    Losses are nats per data point (the negative ELBO for SVI objectives). A NaN or
    infinite loss raises :class:`NonFiniteLossError` naming the epoch and step before any
    parameter is updated with it; checkpoints already written stay as they were.
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
    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    model.validate(train, "train")
    if valid is not None:
        model.validate(valid, "valid")
    objective.check_batches(model, _batch_sizes(train, batch_size) | _batch_sizes(valid, batch_size))
    device = resolve_device(device)

    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = None
    if checkpoint_dir is not None:
        if resume and (checkpoint_dir / LAST).exists():
            state = load_checkpoint(checkpoint_dir / LAST, required=("model", "optimizers", "epoch", "history", "rng"))
        elif not resume and any((checkpoint_dir / name).exists() for name in (LAST, BEST)):
            raise FileExistsError(
                f"{checkpoint_dir} already holds a checkpoint; pass resume=True to continue it, "
                "or choose another checkpoint_dir (nothing was overwritten)"
            )
    elif resume:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")

    model.to(device)
    train = train.to(device)
    valid = valid.to(device) if valid is not None else None
    seed_everything(seed)

    groups = objective.parameter_groups(model)
    rates = lr if isinstance(lr, dict) else {name: lr for name in groups}
    missing = set(groups) - set(rates)
    if missing:
        raise ValueError(f"lr gives no learning rate for the parameter groups {sorted(missing)}")
    for name, params in groups.items():
        if not params:
            raise ValueError(f"parameter group {name!r} has no trainable parameters")
    optimizers = {
        name: optimizer(params, lr=rates[name], **(optimizer_options or {})) for name, params in groups.items()
    }
    schedulers = {} if lr_schedule in (None, "constant") else {
        name: _make_scheduler(lr_schedule, opt, epochs) for name, opt in optimizers.items()
    }
    average = WeightAverage(model, ema) if ema else None  # 0 turns a model's default average off

    history = {"train_loss": [], "valid_loss": [], "seconds": []}
    start_epoch = 1
    best_state = None
    if state is not None:
        _check_config(model, state, checkpoint_dir / LAST)
        model.load_state_dict(state["model"])
        if ("ema" in state) != (average is not None):
            raise ValueError(
                f"{checkpoint_dir / LAST} was written {'with' if 'ema' in state else 'without'} a weight average "
                f"(ema), this call asks for {'one' if average is not None else 'none'}: resume with the same ema"
            )
        if average is not None:
            if state["ema"].get("decay") != average.decay:
                raise ValueError(f"{checkpoint_dir / LAST} was written with ema={state['ema'].get('decay')}, this call "
                                 f"asks for ema={average.decay}: resume with the same ema")
            average.load_state_dict(state["ema"])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        saved_schedulers = state.get("schedulers", {})
        if set(saved_schedulers) != set(schedulers):
            raise ValueError(
                f"{checkpoint_dir / LAST} was written with lr_schedule for groups {sorted(saved_schedulers)}, "
                f"this call has {sorted(schedulers)}: resume with the same lr_schedule"
            )
        for name, sched in schedulers.items():
            sched.load_state_dict(saved_schedulers[name])
        history = {key: list(values) for key, values in state["history"].items()}
        start_epoch = state["epoch"] + 1
        _set_rng_state(state["rng"])
        if restore_best and (checkpoint_dir / BEST).exists():
            best_state = load_checkpoint(checkpoint_dir / BEST)["model"]

    monitor = "valid_loss" if valid is not None else "train_loss"
    # an objective whose loss does not rank epochs (a GAN's divergence estimate depends on
    # the discriminator of that epoch) has no best epoch but the last
    ranks = objective.loss_ranks_epochs
    best_epoch, best_loss = _best(history[monitor]) if ranks else (len(history[monitor]), math.inf)
    stopped_early = False
    epoch = start_epoch - 1
    step = 0

    def update(group: str, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            saved = f"; the last good checkpoint is {checkpoint_dir / LAST}" if checkpoint_dir and epoch > 1 else ""
            raise NonFiniteLossError(
                f"the {group} loss is {loss.item()} at epoch {epoch}, step {step}; no parameter was "
                f"updated with it{saved}. Try a smaller lr or clip_grad."
            )
        opt = optimizers[group]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(groups[group], clip_grad)
        opt.step()

    bar = tqdm(total=epochs, initial=start_epoch - 1, desc=f"fit {getattr(model, 'family', 'model')}",
               unit="epoch", disable=not progress, dynamic_ncols=True)
    with pyro.validation_enabled(False), model.without_param_sites(), bar:
        for epoch in range(start_epoch, epochs + 1):
            began = time.perf_counter()
            model.train()
            objective.begin_epoch(epoch)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            total = 0.0
            for step, batch in enumerate(_batches(train, batch_size, generator), 1):
                total += objective.train_step(model, batch, update) * len(batch)
                if average is not None:
                    average.update()
            history["train_loss"].append(total / len(train))
            for sched in schedulers.values():
                sched.step()
            if valid is not None:
                with average.swapped() if average is not None else contextlib.nullcontext():
                    history["valid_loss"].append(evaluate_loss(model, objective, valid, batch_size))
            history["seconds"].append(time.perf_counter() - began)

            current = history[monitor][-1]
            improved = ranks and current < best_loss
            if improved:
                best_epoch, best_loss = epoch, current
                if restore_best and valid is not None:
                    best_state = _evaluation_state(model, average)
            elif not ranks:
                best_epoch, best_loss = epoch, current
            if checkpoint_dir is not None:
                snapshot = {
                    "format": CHECKPOINT_FORMAT,
                    "config": getattr(model, "config", None),
                    "model": average.averaged_state_dict(model) if average is not None else model.state_dict(),
                    "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                    "schedulers": {name: sched.state_dict() for name, sched in schedulers.items()},
                    "epoch": epoch,
                    "history": history,
                    "rng": _rng_state(),
                    "seed": seed,
                }
                if average is not None:
                    snapshot["ema"] = average.state_dict()
                if improved:
                    save_checkpoint(snapshot, checkpoint_dir / BEST)
                save_checkpoint(snapshot, checkpoint_dir / LAST)
            postfix = {"train": f"{history['train_loss'][-1]:.3f}"}
            if valid is not None:
                postfix["valid"] = f"{history['valid_loss'][-1]:.3f}"
            bar.set_postfix(postfix)
            bar.update(1)
            if patience is not None and epoch - best_epoch >= patience:
                stopped_early = True
                break

    if restore_best and valid is not None and best_state is not None:
        model.load_state_dict(best_state)
    elif average is not None:
        average.copy_to_model()
    return FitResult(history, best_epoch, best_loss, epoch, stopped_early, checkpoint_dir,
                     loss_unit=getattr(objective, "loss_unit", "nats"))


@torch.no_grad()
def evaluate_loss(model, objective: Objective, data: torch.Tensor, batch_size: int) -> float:
    """The objective's loss over ``data`` in nats per data point, without updates."""
    model.eval()
    total = sum(objective.eval_loss(model, batch) * len(batch) for batch in _batches(data, batch_size))
    model.train()
    return total / len(data)


def _evaluation_state(model, average):
    """A copy of the weights that are evaluated: the averaged ones when there is an average."""
    if average is not None:
        return average.averaged_state_dict(model)
    return copy.deepcopy(model.state_dict())


def _best(values):
    if not values:
        return 0, math.inf
    index = min(range(len(values)), key=values.__getitem__)
    return index + 1, values[index]


def _check_config(model, state, path):
    saved, current = state.get("config"), getattr(model, "config", None)
    if saved and current and saved != current:
        raise CheckpointError(f"{path} was written for a different model: saved config {saved}, this model {current}")
