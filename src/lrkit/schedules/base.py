"""The `Schedule` base class and its registry.

A schedule is a frozen dataclass and a pure function of the step: ``sched(step) -> lr``.
``step`` counts optimizer updates from 0 (update ``k`` uses ``sched(k)``); it may be a
scalar (a ``float`` comes back) or a numpy array (an array comes back).
"""

from __future__ import annotations

from dataclasses import Field, fields
from typing import Any, ClassVar

import numpy as np

from lrkit.validation import choice, fail, instance

_REGISTRY: dict[str, type[Schedule]] = {}


def register(name: str):
    """Class decorator: make a schedule known to `from_dict` and the spec parser as `name`."""

    def decorate(cls: type[Schedule]) -> type[Schedule]:
        if name in _REGISTRY:
            raise fail("register", "name", "a schedule name not registered yet", name)
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def schedule_class(name: str) -> type[Schedule]:
    """The class registered as `name`; ValueError (listing the known names) otherwise."""
    return _REGISTRY[choice("schedule_class", "name", name, registered_names())]


class Schedule:
    """Base class: subclasses are frozen dataclasses that implement ``_lr(t)``.

    ``_lr`` receives a float64 array of validated steps (any shape) and returns an array of
    the same shape. Everything else (scalar/array handling, serialisation) lives here.
    """

    name: ClassVar[str] = ""
    #: set on every subclass by ``@dataclass`` (declared so type checkers accept `fields(self)`)
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @property
    def cacheable(self) -> bool:
        """Whether values may be evaluated ahead in blocks (False for user functions, which
        might not accept steps beyond the ones actually used)."""
        return True

    def __call__(self, step: Any) -> Any:
        t = as_steps(self.name, step)
        # Always evaluate a 1-d array: numpy computes 0-d inputs with scalar math (C pow, exp,
        # cos) and arrays with SIMD loops, which can differ in the last bit.
        values = np.asarray(self._lr(t.reshape(-1)), dtype=np.float64).reshape(t.shape)
        return float(values) if values.ndim == 0 else values

    def _lr(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict ``{"name": ..., <parameters>}``; nested schedules nest."""
        return {"name": self.name, **{f.name: _encode(getattr(self, f.name)) for f in fields(self)}}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Schedule:
        """Rebuild a schedule from `to_dict` output (only registered names are accepted)."""
        if not isinstance(data, dict) or "name" not in data:
            raise fail("from_dict", "data", "a schedule dict with a 'name' key", data)
        if not all(isinstance(key, str) for key in data):
            raise fail("from_dict", "data's keys", "strings", list(data))
        choice("from_dict", "data['name']", data["name"], registered_names())
        try:
            params = {key: _decode(value) for key, value in data.items() if key != "name"}
        except RecursionError:  # its repr would overflow as well: the message cannot show it
            raise ValueError("from_dict: data is too deeply nested") from None
        return build(data["name"], **params)

    def to_spec(self) -> str:
        """The textual spec, e.g. ``cosine(lr=0.1, decay_steps=1000, alpha=0.0)``."""
        args = ", ".join(f"{f.name}={_spec_value(getattr(self, f.name))}" for f in fields(self))
        return f"{self.name}({args})"

    def __str__(self) -> str:
        return self.to_spec()


def build(name: str, *args: Any, **kwargs: Any) -> Schedule:
    """Construct the schedule registered as `name`; wrong arguments raise ValueError."""
    cls = schedule_class(name)
    try:
        return cls(*args, **kwargs)
    except TypeError as err:  # unknown/missing keyword: say it as a ValueError
        raise ValueError(f"{name}: {err}".replace(f"{cls.__name__}.__init__() ", "")) from None


def _encode(value: Any) -> Any:
    if isinstance(value, np.generic):  # numpy scalars: plain Python numbers for JSON and specs
        return value.item()
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return Schedule.from_dict(value)
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def _spec_value(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Schedule):
        return value.to_spec()
    if isinstance(value, tuple):
        return "[" + ", ".join(_spec_value(v) for v in value) + "]"
    return repr(value)


# -- steps ---------------------------------------------------------------------------
def as_steps(owner: str, step: Any) -> np.ndarray:
    """Validate steps (finite, >= 0, numeric) and return them as a float64 array."""
    if isinstance(step, (str, bytes)) or step is None:
        raise fail(owner, "step", "a number or an array of numbers", step)
    try:
        t = np.asarray(step, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(owner, "step", "a number or an array of numbers", step) from None
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise fail(owner, "step", "finite and >= 0", step)
    return t


def schedule_arg(owner: str, name: str, value: Any) -> Schedule:
    """A `Schedule` instance."""
    return instance(owner, name, value, Schedule, "a schedule")
