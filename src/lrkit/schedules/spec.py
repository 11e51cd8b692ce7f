"""Parse textual schedule specs such as ``warmup(cosine(lr=0.1, decay_steps=10000), steps=500)``.

The text is parsed with Python's own grammar (`ast.parse`) and then *interpreted*, never
evaluated: only calls to registered schedule names and literal numbers, strings, booleans,
None and lists are accepted. Every error is a one-line ValueError naming the column of the
offending token.
"""

from __future__ import annotations

import ast
import difflib
import warnings
from typing import Any

from lrkit.schedules.base import Schedule, build, registered_names
from lrkit.validation import fail, in_range, instance

MAX_SPEC_LENGTH = 10_000


class _SpecError(ValueError):
    """Raised while interpreting; carries the node so the message can point at it."""

    def __init__(self, node: ast.AST, message: str):
        super().__init__(message)
        self.node = node


def parse(spec: str) -> Schedule:
    """Build the schedule a spec describes; the result equals the Python-built object."""
    text = instance("parse", "spec", spec, str, "a string").strip()
    in_range("parse", "len(spec.strip())", len(text), 1, MAX_SPEC_LENGTH)
    try:
        with warnings.catch_warnings():  # e.g. "invalid decimal literal": the error below says it
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"parse: bad schedule spec at column {err.offset or 1}: {err.msg}: {text!r}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ValueError(f"parse: bad schedule spec: too deeply nested or malformed: {text[:80]!r}") from None
    try:
        result = _interpret(tree.body)
    except _SpecError as err:
        column = getattr(err.node, "col_offset", 0) + 1
        token = (ast.get_source_segment(text, err.node) or "")[:40]
        raise ValueError(f"parse: bad schedule spec at column {column} ({token!r}): {err}") from None
    except RecursionError:
        raise ValueError(f"parse: bad schedule spec: too deeply nested: {text[:80]!r}") from None
    if not isinstance(result, Schedule):
        raise fail("parse", "spec", "a schedule call like 'cosine(lr=0.1, decay_steps=1000)'", text)
    return result


def _interpret(node: ast.AST) -> Any:
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _interpret(node.operand)
        if type(value) not in (int, float):  # a literal: bools and strings are refused
            raise _SpecError(node, "a sign may only precede a number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_interpret(item) for item in node.elts]
    raise _SpecError(node, f"unexpected {type(node).__name__.lower()}: only schedule calls, numbers, "
                           "strings, True/False/None and [lists] are allowed")


def _call(node: ast.Call) -> Schedule:
    if not isinstance(node.func, ast.Name):
        raise _SpecError(node.func, "a schedule name must be a plain name like 'cosine'")
    name = node.func.id
    if name not in registered_names():
        close = difflib.get_close_matches(name, registered_names(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(registered_names())}"
        raise _SpecError(node.func, f"unknown schedule {name!r}; {hint}")
    args = [_interpret(arg) for arg in node.args]
    kwargs = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise _SpecError(keyword.value, "'**' is not allowed in a spec")
        if keyword.arg in kwargs:  # ast.parse accepts repeats; only compile() refuses them
            raise _SpecError(keyword.value, f"keyword argument {keyword.arg!r} repeated")
        kwargs[keyword.arg] = _interpret(keyword.value)
    try:
        return build(name, *args, **kwargs)
    except ValueError as err:
        raise _SpecError(node, str(err)) from None
