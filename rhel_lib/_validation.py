"""Argument checks with error messages that name the offending argument."""

from __future__ import annotations

import math
from collections.abc import Iterable

import jax
import numpy as np


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming ``name``."""
    choices = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {choices}; got {value!r}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")
    return value


def check_positive(name: str, value, *, allow_none: bool = False) -> float | None:
    """Return ``value`` as a float if it is a finite number > 0, else raise naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive number; got {value!r}")
    if not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def check_positive_int(name: str, value, *, allow_none: bool = False) -> int | None:
    """Return ``value`` if it is an int ≥ 1, else raise naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be ≥ 1; got {value!r}")
    return int(value)


def is_concrete(x) -> bool:
    """Whether ``x`` holds values now (not a tracer inside ``jit``/``grad``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(name: str, x) -> None:
    """Raise naming ``name`` if a concrete array holds NaN or Inf (tracers are not checked)."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name} contains NaN or Inf values")


def check_last_dim(name: str, x, expected: int, what: str) -> None:
    """Raise naming ``name`` if ``x.shape[-1] != expected``."""
    if x.ndim < 1 or x.shape[-1] != expected:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, but its last axis must be {what} = {expected}"
        )
