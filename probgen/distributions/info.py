r"""The description of the data a model is built for: :class:`DataInfo`.

A data point has a shape (``event_shape``) and a *support*, the set its values lie in:

- ``"binary"``: every value is 0 or 1;
- ``"discrete"``: every value is one of the integer levels :math:`0, 1, \dots, K-1`;
- ``"real"``: any finite real number.

The support decides what a likelihood means. On binary and discrete data a model assigns
*probabilities* to the values, so its log-likelihoods are comparable across families and
bits/dim are bits of the data; on real data it assigns a *density*, which depends on the
units of the data and compares only with other densities on the same space. Every probgen
model takes a :class:`DataInfo` first and picks what the support needs (its likelihood, a
flow's dequantization, a diffusion's decoder, a GAN's observation model). An event shape
alone means real-valued data.

Example::

    >>> import probgen as pg
    >>> info = pg.DataInfo((8, 8), "discrete", 17)
    >>> info.num_dims, info.describe_support()
    (64, 'integer levels {0, 1, ..., 16}')
    >>> pg.DataInfo.of((2,)).support
    'real'
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import torch

__all__ = ["DataInfo", "Support", "validate_data", "integer_levels"]


class Support(str, enum.Enum):
    """The set the values of a data point lie in."""

    BINARY = "binary"
    DISCRETE = "discrete"
    REAL = "real"


def _check_event_shape(event_shape) -> tuple[int, ...]:
    if isinstance(event_shape, int) and not isinstance(event_shape, bool):
        event_shape = (event_shape,)
    try:
        shape = tuple(event_shape)
    except TypeError:
        raise TypeError(f"event_shape must be a tuple of positive integers, got {event_shape!r}") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"event_shape must be a non-empty tuple of positive integers, got {event_shape!r}")
    return shape


#: values per chunk of the levels check (1 MiB of float32)
_CHUNK = 1 << 18


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data: the shape of one data point and its support.

    :param event_shape: the shape of one data point, e.g. ``(8, 8)`` or ``(2,)``.
    :param support: ``"binary"`` (values 0 and 1), ``"discrete"`` (the integer levels
        ``0, 1, ..., num_levels - 1``) or ``"real"`` (the default).
    :param num_levels: the number of levels of discrete data (2 for binary data, set by
        itself); ``None`` for real data.
    :param name: the dataset's name, as given to :func:`probgen.datasets.load` (optional).
    """

    event_shape: tuple[int, ...]
    support: str = "real"
    num_levels: int | None = None
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "event_shape", _check_event_shape(self.event_shape))
        try:
            support = Support(self.support).value
        except ValueError:
            raise ValueError(
                f"support must be one of {[s.value for s in Support]}, got {self.support!r}"
            ) from None
        object.__setattr__(self, "support", support)
        levels = self.num_levels
        if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int)):
            raise TypeError(f"num_levels must be an integer or None, got {levels!r}")
        if support == "binary":
            if levels not in (None, 2):
                raise ValueError(f"binary data has 2 levels, got num_levels={levels}")
            object.__setattr__(self, "num_levels", 2)
        elif support == "discrete" and (levels is None or levels < 2):
            raise ValueError(f"discrete data needs num_levels >= 2, got num_levels={levels}")
        elif support == "real" and levels is not None:
            raise ValueError(f"real data has no num_levels, got num_levels={levels}")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {type(self.name).__name__}")

    @classmethod
    def of(cls, data) -> "DataInfo":
        """A :class:`DataInfo` from what a model was given: a :class:`DataInfo` (itself), the
        dict of :meth:`to_config`, or an event shape alone (real-valued data)."""
        if isinstance(data, DataInfo):
            return data
        if isinstance(data, dict):
            return cls.from_config(data)
        return cls(data)

    @property
    def num_dims(self) -> int:
        """Number of dimensions of one data point: the divisor of bits/dim."""
        return math.prod(self.event_shape)

    @property
    def is_discrete(self) -> bool:
        """True for binary and discrete data: likelihoods are probabilities, not densities."""
        return self.support != "real"

    def describe_support(self) -> str:
        """The support in words, for error messages."""
        if self.support == "binary":
            return "binary values {0, 1}"
        if self.support == "discrete":
            return f"integer levels {{0, 1, ..., {self.num_levels - 1}}}"
        return "finite real values"

    def contains(self, other: "DataInfo") -> bool:
        """Whether every data point ``other`` describes lies in this support (same shape)."""
        if tuple(other.event_shape) != self.event_shape:
            return False
        if self.support == "real":
            return True
        return other.is_discrete and other.num_levels <= self.num_levels

    def to_unit_interval(self, x: torch.Tensor) -> torch.Tensor:
        """Levels :math:`0..K-1` to :math:`[0, 1]` (a network's input); binary and real data unchanged."""
        return x / (self.num_levels - 1) if self.is_discrete and self.num_levels > 2 else x

    def to_signed_interval(self, x: torch.Tensor) -> torch.Tensor:
        """Levels :math:`0..K-1` to :math:`[-1, 1]`; real data unchanged."""
        return x * (2.0 / (self.num_levels - 1)) - 1.0 if self.is_discrete else x

    def validate(self, x: torch.Tensor, what: str = "data", owner: str = "", fix: str = "") -> None:
        """Raise a clear error unless ``x`` is a batch of data points of this description:
        a floating-point tensor of shape ``(n,) + event_shape``, ``n >= 1``, finite, and on
        the support. ``owner`` names who needs it (e.g. ``"this VAE"``) and ``fix`` says what
        to do about data off the support, in the message."""
        validate_data(x, self.event_shape, what)
        if self.support == "real" or self._on_levels(x):
            return
        off = (x != torch.round(x)) | (x < 0) | (x > self.num_levels - 1)
        if off.any():
            who = f"{owner} models" if owner else "expected"
            raise ValueError(
                f"{who} {self.describe_support()}, but {what} holds {int(off.sum())} values off that "
                f"support (e.g. {x[off][0].item():g})" + (f"; {fix}" if fix else "")
            )

    def _on_levels(self, x: torch.Tensor) -> bool:
        """Whether every value is one of the levels, in one pass over ``x`` (validation runs
        over whole datasets): chunk by chunk, so that each chunk is checked while it is in the
        cache and rounding never allocates a copy of the dataset (a third of the time)."""
        top = self.num_levels - 1
        for chunk in x.reshape(-1).split(_CHUNK):
            low, high = torch.aminmax(chunk)
            if low.item() < 0 or high.item() > top or not torch.equal(chunk, torch.round(chunk)):
                return False
        return True

    def to_config(self) -> dict[str, Any]:
        """A plain dict (JSON- and checkpoint-safe) that :meth:`from_config` turns back into this."""
        return {"event_shape": list(self.event_shape), "support": self.support,
                "num_levels": self.num_levels, "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "DataInfo":
        if not isinstance(config, dict):
            raise TypeError(f"a DataInfo config must be a dict, got {type(config).__name__}")
        unknown = set(config) - {"event_shape", "support", "num_levels", "name"}
        if unknown or "event_shape" not in config:
            raise ValueError(f"a DataInfo config has the keys event_shape, support, num_levels, name; got {sorted(config)}")
        return cls(tuple(config["event_shape"]), config.get("support", "real"), config.get("num_levels"),
                   config.get("name", ""))

    def __repr__(self) -> str:
        levels = f", num_levels={self.num_levels}" if self.support == "discrete" else ""
        name = f", name={self.name!r}" if self.name else ""
        return f"DataInfo(event_shape={self.event_shape}, support={self.support!r}{levels}{name})"


def validate_data(x: torch.Tensor, event_shape: tuple[int, ...], what: str = "data") -> None:
    """Check the type, shape and finiteness of a batch of data points.

    Raises :class:`ValueError` or :class:`TypeError` naming what was expected.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
    event_shape = tuple(event_shape)
    if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != event_shape:
        raise ValueError(
            f"{what} must have shape (num_data, {', '.join(map(str, event_shape))}) "
            f"for event_shape {event_shape}, got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty: expected at least one data point")
    if bool(torch.isfinite(x.sum())):  # one fast pass; the exact check only on doubt (or overflow)
        return
    bad = ~torch.isfinite(x)
    if bad.any():
        first = int(bad.reshape(len(x), -1).any(-1).nonzero()[0])
        raise ValueError(
            f"{what} holds NaN or infinite values ({int(bad.sum())} entries; first in data point {first})"
        )


def integer_levels(x: torch.Tensor) -> int | None:
    """``K`` if every value of ``x`` is one of the integers ``0..K-1`` (``K`` = the largest
    value + 1, at least 2), else ``None``: how data that were described as real can be
    recognised as levels."""
    low, high = torch.aminmax(x)
    if low.item() < 0 or not torch.equal(x, torch.round(x)):
        return None
    return max(2, int(high.item()) + 1)
