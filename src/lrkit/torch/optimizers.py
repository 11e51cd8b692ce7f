"""The optimizer table: one place that turns a name into a torch optimizer.

Names are what strategies, the CLI and the task helpers accept. ``sgd`` means SGD with
momentum 0.9 (the setting the LR range test and the case study assume); every other entry is
the torch class at its own defaults. Keyword arguments override the table's defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from lrkit.validation import choice, positive

#: name -> (class, default keyword arguments)
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adagrad": (torch.optim.Adagrad, {}),
    "adadelta": (torch.optim.Adadelta, {}),
}


def make_optimizer(name: str, params: Iterable[Any], lr: float | None = None,
                   **overrides: Any) -> torch.optim.Optimizer:
    """The optimizer called `name` over `params` (tensors or param-group dicts).

    `lr=None` keeps the optimizer's own default LR (Adam's 1e-3, Adadelta's 1.0, ...);
    `overrides` replace the table's defaults (e.g. ``momentum=0.0``).
    """
    choice("make_optimizer", "optimizer", name, OPTIMIZERS)
    cls, defaults = OPTIMIZERS[name]
    kwargs = {**defaults, **overrides}
    if lr is not None:
        kwargs["lr"] = positive("make_optimizer", "lr", lr)
    return cls(params, **kwargs)
