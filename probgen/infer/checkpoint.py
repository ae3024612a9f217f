"""Atomic checkpoints, loaded with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


__all__ = ["CheckpointError", "CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "save_model", "load_model"]

#: the layout of the checkpoints this version writes: 1, models configured by ``event_shape``
#: and per-family support options; 2, by the data's description (``"data"``). Format 1 loads
#: (its configs are rewritten, :func:`probgen.models.upgrade_config`); a newer one is refused.
CHECKPOINT_FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint file is missing parts, corrupt, or belongs to another model."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed
    to disk, then renamed over ``path``. A crash leaves the previous file intact."""
    path = Path(path)
    if path.is_dir():  # writability needs no probe here: the temporary file below is one
        raise ValueError(f"the checkpoint path {str(path)!r} is a folder, expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location="cpu", required=("model",)) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, tensors only (``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise CheckpointError(
            f"{path} is not a readable probgen checkpoint (corrupt, truncated or not written by "
            f"probgen): {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from error
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise CheckpointError(f"{path} lacks the entries {list(required)} of a probgen checkpoint")
    written = state.get("format", 1)
    if not isinstance(written, int) or written > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written in checkpoint format {written!r}, by a newer probgen; this version "
            f"reads formats 1 to {CHECKPOINT_FORMAT}: upgrade probgen to load it"
        )
    return state


def save_model(model, path: str | Path, **metadata) -> Path:
    """Save a model's ``config`` and weights, so :func:`load_model` can rebuild it;
    ``metadata`` (plain values, e.g. ``data="optdigits"``) is saved beside them."""
    if not getattr(model, "config", None):
        raise ValueError(
            "this model was built from custom modules and has no config to rebuild it from; "
            "save its state_dict() and rebuild it in your own code"
        )
    reserved = {"format", "config", "model"} & set(metadata)
    if reserved:
        raise ValueError(f"metadata may not use the checkpoint's own keys {sorted(reserved)}")
    return save_checkpoint({"format": CHECKPOINT_FORMAT, "config": model.config, "model": model.state_dict(), **metadata}, path)


def load_model(path: str | Path, map_location="cpu"):
    """Rebuild a model saved by :func:`save_model` (or a :func:`probgen.fit` checkpoint)."""
    from ..models import build_model

    state = load_checkpoint(path, map_location, required=("model", "config"))
    if not state["config"]:
        raise CheckpointError(f"{path} holds no model config; it cannot be rebuilt by name")
    try:
        model = build_model(state["config"])
    except (ValueError, TypeError) as error:  # our checks of the config and of the family's arguments
        raise CheckpointError(f"{path} holds a config that builds no model: {error}") from error
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match the model its config describes: {error}") from error
    return model.to(map_location)
