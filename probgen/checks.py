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
from typing import TypeVar

__all__ = ["positive_int", "positive_number", "non_negative_number", "choice"]

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


def positive_number(value, name: str) -> float:
    """``value`` as a float if it is a finite number > 0."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def non_negative_number(value, name: str) -> float:
    """``value`` as a float if it is a finite number >= 0."""
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def choice(value, kind: type[E], name: str) -> E:
    """The member of the ``str`` enum ``kind`` named by ``value`` (or ``value`` itself if it is one)."""
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"unknown {name} {value!r}; expected one of {[member.value for member in kind]}") from None
