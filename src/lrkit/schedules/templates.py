"""Spec templates: a schedule written relative to a run, filled with the run's numbers.

A template is a spec (`lrkit.schedules.parse`) with fields ``{lr}``, ``{total_steps}``,
``{steps_per_epoch}`` and ``{epochs}``. Filling substitutes each field by its number's ``repr``
(plain text, no format spec or conversion: ``{lr:>3000000000}`` would allocate before any length
check) and parses the result; nothing is evaluated. Strategies and `lrkit.tune_lr` fill templates.
"""

from __future__ import annotations

import string

from lrkit.schedules.base import Schedule
from lrkit.schedules.spec import parse

__all__ = ["TEMPLATE_FIELDS", "fill_template", "template_fields"]

TEMPLATE_FIELDS = ("lr", "total_steps", "steps_per_epoch", "epochs")


def template_fields(template: str) -> set[str]:
    """The fields `template` names; a ValueError for a malformed template, a field with a format spec
    or conversion, or a field outside `TEMPLATE_FIELDS`."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as err:
        raise ValueError(f"bad schedule template {template!r}: {err}") from None
    formatted = [name for name, spec, conversion in fields if spec or conversion]
    if formatted:
        raise ValueError(f"bad schedule template {template!r}: a field is replaced by its number as it is, "
                         f"so it takes no format spec or conversion (in {{{formatted[0]}...}})")
    names = {name for name, _, _ in fields}
    unknown = names - set(TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(f"bad schedule template {template!r}: unknown field(s) {sorted(unknown)}; "
                         f"allowed: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}")
    return names


def fill_template(template: str, **values: float) -> Schedule:
    """`template` with each field replaced by ``repr(values[field])``, parsed."""
    return parse(template.format(**{name: repr(values[name]) for name in template_fields(template)}))
