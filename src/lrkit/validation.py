"""Argument checks shared by every layer, with one message format.

Every check returns the value it accepted and raises ``ValueError`` with the message
``"<owner>: <name> must be <what is allowed>, got <value>"``, so an error names where it came
from, the parameter, what it received and what it accepts. Pure Python and numpy (no torch):
the schedules and suggestion rules use it too.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def fail(owner: str, name: str, allowed: str, value: Any) -> ValueError:
    """The one error message: ``"<owner>: <name> must be <allowed>, got <value!r>"``."""
    return ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")


def real(owner: str, name: str, value: Any) -> float:
    """A finite real number (bools and strings are refused)."""
    try:
        finite = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        finite = False
    if not finite:
        raise fail(owner, name, "a finite number", value)
    return value


def positive(owner: str, name: str, value: Any) -> float:
    if real(owner, name, value) <= 0:
        raise fail(owner, name, "> 0", value)
    return value


def non_negative(owner: str, name: str, value: Any) -> float:
    if real(owner, name, value) < 0:
        raise fail(owner, name, ">= 0", value)
    return value


def in_range(owner: str, name: str, value: Any, low: float, high: float, *, open_low: bool = False,
             open_high: bool = False) -> float:
    """`value` within [low, high]; `open_low`/`open_high` exclude an end."""
    real(owner, name, value)
    below = value <= low if open_low else value < low
    above = value >= high if open_high else value > high
    if below or above:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise fail(owner, name, f"in {interval}", value)
    return value


def _is_integer(value: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def integer(owner: str, name: str, value: Any, *, minimum: int, allowed: str = "") -> int:
    """An integer >= minimum; `allowed` replaces the message's "an integer >= minimum" with what the value means."""
    if not _is_integer(value) or value < minimum:
        raise fail(owner, name, allowed or f"an integer >= {minimum}", value)
    real(owner, name, value)  # within the float range: it takes part in float arithmetic
    return int(value)


def flag(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(owner, name, "True or False", value)
    return value


def choice(owner: str, name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise fail(owner, name, f"one of {', '.join(map(repr, allowed))}", value)
    return value


def real_sequence(owner: str, name: str, value: Any) -> tuple:
    """A non-empty list/tuple of finite numbers, returned as a tuple."""
    if (isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray))
            or (isinstance(value, np.ndarray) and value.ndim != 1) or len(value) == 0):
        raise fail(owner, name, "a non-empty list of numbers", value)
    for item in value:
        real(owner, f"each of {name}", item)
    return tuple(value)


def increasing(owner: str, name: str, values: tuple, *, strict: bool) -> tuple:
    if any((b <= a) if strict else (b < a) for a, b in itertools.pairwise(values)):
        kind = "strictly increasing" if strict else "non-decreasing"
        raise fail(owner, name, kind, list(values))
    return values


def optional(check, owner: str, name: str, value: Any, *args: Any, **kwargs: Any) -> Any:
    """`value` unchanged when None, otherwise checked by ``check(owner, name, value, ...)``."""
    return None if value is None else check(owner, name, value, *args, **kwargs)


def instance(owner: str, name: str, value: Any, kind: type[T] | tuple[type, ...], what: str) -> T:
    """`value` is an instance of `kind` (described to the user as `what`)."""
    if not isinstance(value, kind):
        raise fail(owner, name, what, value)
    return value  # type: ignore[return-value]


def callable_arg(owner: str, name: str, value: Any, signature: str) -> Any:
    """A callable; `signature` tells the user what it is called with, e.g. ``"(model, batch) -> loss"``."""
    if not callable(value):
        raise fail(owner, name, f"callable {signature}", value)
    return value


def integer_in(owner: str, name: str, value: Any, low: int, high: int, meaning: str = "") -> int:
    """An integer in [low, high]; `meaning` says what the bounds count, e.g. ``"this model's units"``."""
    if not _is_integer(value) or not low <= value <= high:
        raise fail(owner, name, f"an integer in [{low}, {high}]" + (f" ({meaning})" if meaning else ""), value)
    return int(value)


def with_overrides(owner: str, kind: type[T], options: T | None, overrides: Mapping[str, Any]) -> T:
    """`options`, a frozen dataclass `kind` (default: ``kind()``), with the fields named in
    `overrides` replaced: the ``f(..., options=None, **overrides)`` convention of the finder and the
    fine-tuning stages. An unknown name is refused with the list of allowed ones."""
    allowed = [f.name for f in dataclasses.fields(kind)]  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"{owner}: unknown arguments {unknown}; allowed: {allowed}")
    if options is None:
        return kind(**overrides)
    current = instance(owner, "options", options, kind, f"a {kind.__name__} or None")
    return dataclasses.replace(current, **overrides)  # type: ignore[type-var]
