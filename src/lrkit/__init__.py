"""lrkit: find, schedule, adapt and compare learning rates for PyTorch.

`import lrkit` stays light: the torch-dependent parts load on first use, so
`lrkit.schedules` and `lrkit.suggest` never pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (loaded lazily, PEP 562)
_LAZY = {
    "plot_schedule": "lrkit.plotting",
    "ScheduledLR": "lrkit.torch",
    "layer_groups": "lrkit.torch",
    "discriminative_param_groups": "lrkit.torch",
    "freeze": "lrkit.torch",
    "unfreeze": "lrkit.torch",
    "GradualUnfreezing": "lrkit.torch",
    "fine_tune": "lrkit.finetune",
    "find_lr": "lrkit.torch",
    "tune_lr": "lrkit.tuning",
    "TuneResult": "lrkit.tuning",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lrkit' has no attribute {name!r}")
