"""The optimizer table: one place that turns a name into a torch optimizer.

Names are what strategies, the CLI and the task helpers accept. Every row has a `kind`, which
says what its ``lr`` means and what lrkit may do around it:

- ``"scheduled"``: torch's optimizers; ``lr`` is the step size, which lrkit sets (LR range
  test, schedule, plateau, Lipschitz). ``sgd`` means SGD with momentum 0.9 (the setting the LR
  range test and the case study assume); the others are at torch's defaults.
- ``"lr-free"``: the optimizer estimates its step size from the gradients and ``lr`` multiplies
  it. D-Adaptation (Defazio & Mishchenko 2023, "Learning-Rate-Free Learning by D-Adaptation",
  arXiv 2301.07733; package ``dadaptation``) keeps ``d`` a lower bound on the distance to the
  solution; for SGD the step is ``lam_k = d_k lr / |g_0|``, ``s_{k+1} = s_k + lam_k g_k`` and
  ``d_{k+1} = max(d_k, 2 sum_i lam_i g_i . s_i / |s_{k+1}|)``. Prodigy (Mishchenko & Defazio
  2023, arXiv 2306.06101; package ``prodigyopt``) weights the same estimate by ``d_k`` so it
  grows faster. Both READMEs: "leave lr at 1.0", the class default. ``dadapt-sgd`` has
  momentum 0.9 like ``sgd`` (the package's default is 0).
- ``"schedule-free"``: averaging replaces the schedule (Defazio et al. 2024, "The Road Less
  Scheduled", arXiv 2405.15682; package ``schedulefree``): gradients at
  ``y_t = (1 - beta) z_t + beta x_t``, the base step ``z_{t+1} = z_t - lr_t g(y_t)``, the
  average ``x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}`` with ``c_{t+1} = w_t / sum_{i<=t} w_i``
  and ``w_t = max_{i<=t} lr_i^2`` (without warm-up ``1 / (t + 1)``, a uniform average). The
  model holds y while training and must hold x for evaluation: ``optimizer.eval()`` and
  ``.train()`` move it (`lrkit.torch.evaluation.evaluation_point`). The LRs are the class
  defaults: AdamW 0.0025 (also the README's MNIST example; "1x-10x larger than with
  schedule-based approaches"), SGD 1.0 ("10x-50x larger than classical rates"). Warm-up is the
  optimizer's own ``warmup_steps`` (README: "using learning rate warmup is recommended").

The third-party classes are imported on first use: importing the three packages adds about
90 ms (7 %) to ``import lrkit.torch``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from lrkit.torch.evaluation import training_point
from lrkit.validation import choice, positive

#: what an optimizer's ``lr`` means (module docstring)
KINDS = ("scheduled", "lr-free", "schedule-free")


@dataclass(frozen=True)
class OptimizerRow:
    """One row of the table: the class as ``"module:Class"`` (imported on first use), lrkit's
    default keyword arguments, and the row's kind (one of `KINDS`)."""

    path: str
    defaults: dict[str, Any] = field(default_factory=dict)
    kind: str = "scheduled"

    def __post_init__(self) -> None:
        choice("OptimizerRow", "kind", self.kind, KINDS)

    @property
    def cls(self) -> type[torch.optim.Optimizer]:
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(module), name)


OPTIMIZERS: dict[str, OptimizerRow] = {
    "sgd": OptimizerRow("torch.optim:SGD", {"momentum": 0.9}),
    "adam": OptimizerRow("torch.optim:Adam"),
    "adamw": OptimizerRow("torch.optim:AdamW"),
    "rmsprop": OptimizerRow("torch.optim:RMSprop"),
    "adagrad": OptimizerRow("torch.optim:Adagrad"),
    "adadelta": OptimizerRow("torch.optim:Adadelta"),
    "schedule-free-adamw": OptimizerRow("schedulefree:AdamWScheduleFree", kind="schedule-free"),
    "schedule-free-sgd": OptimizerRow("schedulefree:SGDScheduleFree", kind="schedule-free"),
    "prodigy": OptimizerRow("prodigyopt:Prodigy", kind="lr-free"),
    "dadapt-adam": OptimizerRow("dadaptation:DAdaptAdam", kind="lr-free"),
    "dadapt-sgd": OptimizerRow("dadaptation:DAdaptSGD", {"momentum": 0.9}, kind="lr-free"),
}


def make_optimizer(name: str, params: Iterable[Any], lr: float | None = None,
                   **overrides: Any) -> torch.optim.Optimizer:
    """The optimizer called `name` over `params` (tensors or param-group dicts), ready to step.

    `lr=None` keeps the optimizer's own default LR (Adam's 1e-3, Adadelta's 1.0, Prodigy's 1.0,
    ...); `overrides` replace the table's defaults (e.g. ``momentum=0.0``). A schedule-free
    optimizer is returned in training mode (its package builds it in eval mode, where `step`
    raises): a fresh model trains too.
    """
    choice("make_optimizer", "optimizer", name, OPTIMIZERS)
    row = OPTIMIZERS[name]
    kwargs = {**row.defaults, **overrides}
    if lr is not None:
        kwargs["lr"] = positive("make_optimizer", "lr", lr)
    optimizer = row.cls(params, **kwargs)
    training_point(optimizer)
    return optimizer
