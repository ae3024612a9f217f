"""Shared argument checkers: one per kind of check, each raising :class:`ValueError` that
names the argument, the value given and what was expected, before any work starts.

Every public entry point of probgen validates its options through these, so the same
mistake gets the same message wherever it is made.

Example::

    >>> from probgen.checks import positive_int
    >>> positive_int(3, "num_samples")
    3
    >>> positive_int(2.5, "num_samples")
    Traceback (most recent call last):
    ...
    ValueError: num_samples must be a positive integer, got 2.5
"""

from __future__ import annotations

import enum
import math
import os
import tempfile
from pathlib import Path
from typing import TypeVar

__all__ = [
    "positive_int", "integer", "seed", "layer_sizes", "positive_number", "number", "optional_positive_number",
    "non_negative_number", "boolean", "choice", "options", "writable_folder", "new_file", "sample_count",
]

#: the largest seed every generator probgen seeds accepts (NumPy's legacy seeding)
MAX_SEED = 2**32 - 1

E = TypeVar("E", bound=enum.Enum)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(value, name: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool, not a float that happens to be whole)."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def integer(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) in ``[minimum, maximum]`` (either end open
    when ``None``)."""
    if not _is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = {(False, False): "", (True, False): f" >= {minimum}", (False, True): f" <= {maximum}",
                  (True, True): f" from {minimum} to {maximum}"}[minimum is not None, maximum is not None]
        raise ValueError(f"{name} must be an integer{bounds}, got {value!r}")
    return value


def seed(value, name: str = "seed") -> int:
    """``value`` if it is a seed every generator accepts: an integer from 0 to 2**32 - 1."""
    return integer(value, name, 0, MAX_SEED)


def layer_sizes(value, name: str) -> tuple[int, ...]:
    """``value`` as a tuple if it is a non-empty sequence of positive integers (hidden layer widths)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) == 0 \
            or not all(_is_int(size) and size >= 1 for size in value):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers (layer widths), got {value!r}")
    return tuple(value)


def positive_number(value, name: str, maximum: float | None = None) -> float:
    """``value`` as a float if it is a finite number > 0 (and below ``maximum``, e.g. the
    largest value of the dtype it will be stored in)."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0 or (maximum is not None and value >= maximum):
        below = f" below {maximum:.4g}" if maximum is not None else ""
        raise ValueError(f"{name} must be a positive finite number{below}, got {value!r}")
    return float(value)


def number(value, name: str, minimum: float, below: float) -> float:
    """``value`` as a float if it is a finite number in ``[minimum, below)``."""
    if not _is_number(value) or not math.isfinite(value) or not minimum <= value < below:
        raise ValueError(f"{name} must be a number from {minimum:g} up to (not including) {below:g}, got {value!r}")
    return float(value)


def optional_positive_number(value, name: str) -> float | None:
    """``None``, or ``value`` as a float if it is a finite number > 0."""
    return None if value is None else positive_number(value, name)


def non_negative_number(value, name: str) -> float:
    """``value`` as a float if it is a finite number >= 0."""
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def boolean(value, name: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (not a truthy string such as ``"no"``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def choice(value, kind: type[E], name: str) -> E:
    """The member of the ``str`` enum ``kind`` named by ``value`` (or ``value`` itself if it is one)."""
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"unknown {name} {value!r}; expected one of {[member.value for member in kind]}") from None


def options(value, name: str, accepted=None) -> dict:
    """``value`` as a dict of keyword options (``None``: none), each named in ``accepted``
    when that is given."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise TypeError(f"{name} must be a dict of keyword options, got {value!r}")
    unknown = sorted(set(value) - set(accepted)) if accepted is not None else []
    if unknown:
        raise ValueError(f"{name} has unknown options {unknown}; accepted: {sorted(accepted)}")
    return dict(value)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_folder(value, name: str) -> Path:
    """``value`` as a :class:`~pathlib.Path` if it names a folder that exists or can be made
    (no part of it is a file) and that this process may write to. Nothing is created."""
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {value!r}")
    path = Path(value)
    existing = _nearest_existing(path.absolute())
    if not existing.is_dir():
        raise ValueError(f"{name} {str(path)!r} cannot be a folder: {str(existing)!r} is a file")
    try:  # what may be written is what can be: a file made and removed (os.access trusts root too much)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(f"{name} {str(path)!r} is not writable: {str(existing)!r}: {error.strerror}") from None
    return path


def new_file(value, name: str, overwrite: bool = False) -> Path:
    """``value`` as a :class:`~pathlib.Path` if a file may be written there: its folder is
    writable (:func:`writable_folder`), it is not a folder, and unless ``overwrite`` it does
    not exist yet (nothing is ever overwritten by accident)."""
    path = Path(value) if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(path, Path) or str(value) == "":
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {value!r}")
    writable_folder(path.parent, f"the folder of {name}")
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; nothing was overwritten: choose another {name}")
    return path


#: bytes a sampler may hold per value it returns (the output, the latents, a few temporaries)
BYTES_PER_SAMPLED_VALUE = 16


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return None


def sample_count(value, values_per_sample: int, name: str = "n") -> int:
    """``value`` if it is a positive integer number of samples whose values fit in this
    machine's memory (about :data:`BYTES_PER_SAMPLED_VALUE` bytes each); a larger request is
    refused before any memory is taken, instead of failing inside the allocator."""
    positive_int(value, name)
    memory = _physical_memory()
    needed = value * values_per_sample * BYTES_PER_SAMPLED_VALUE
    if memory is not None and needed > memory:
        raise ValueError(f"{name}={value} samples of {values_per_sample} values need about {needed / 2**30:.0f} GiB, "
                         f"more than this machine's {memory / 2**30:.0f} GiB: draw them in smaller batches")
    return value
