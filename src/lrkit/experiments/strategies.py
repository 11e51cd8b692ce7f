"""Strategies: an optimizer + where its LR comes from + how it moves during training.

A strategy's schedule is a spec *template*: ``{lr}``, ``{total_steps}``, ``{steps_per_epoch}``
and ``{epochs}`` are filled in with numbers for the run at hand (plain string substitution of
numbers — the result is then parsed like any spec, never evaluated). Shapes are written
relative to the run: ``in_epochs(s, steps_per_epoch={total_steps})`` puts `s` on training
progress 0..1, and ``scale(s, factor={lr})`` sets the level of a unit-height shape.
"""

from __future__ import annotations

import inspect
import string
from dataclasses import asdict, dataclass, field
from typing import Any

from lrkit.schedules import Schedule, parse
from lrkit.suggest import DEFAULT_METHOD, HEURISTICS
from lrkit.torch.optimizers import OPTIMIZERS
from lrkit.validation import choice, fail, flag, instance, optional, positive

TEMPLATE_FIELDS = ("lr", "total_steps", "steps_per_epoch", "epochs")
#: what `Strategy.lr` may name instead of a number
LR_SOURCES = ("finder", "default")


@dataclass(frozen=True)
class Strategy:
    """How one run sets its learning rate.

    `lr`: a number, ``"finder"`` (the LR range test's suggestion on this model and data by the
    rule `finder_method` of `lrkit.suggest`, times `lr_factor`) or ``"default"`` (the
    optimizer's own default LR). The default strategies read ``"minimum"`` when the LR then
    stays constant and ``"consensus"`` when a schedule decays it: the rules that scored best
    for each case in the finder benchmark (docs/benchmarks.md, "LR finder").
    `schedule` / `momentum`: spec templates (None: constant LR / no momentum schedule).
    `plateau`: keyword arguments of `lrkit.torch.PlateauFactor` (stepped on the
    validation loss each epoch). `lipschitz`: keyword arguments of `lrkit.torch.LipschitzLR`
    (the LR is recomputed every epoch; `lr` is then only the first epoch's), which owns the LR,
    so it takes no schedule, momentum schedule or plateau.
    `baseline`: the constant-LR strategy the report measures the others against (steps to
    reach its final metric); a role in the report, not a training setting.
    Every combination that training would not honour is refused here.
    """

    name: str
    description: str
    optimizer: str = "sgd"
    lr: float | str = "finder"
    lr_factor: float = 1.0
    finder_method: str = DEFAULT_METHOD
    schedule: str | None = None
    momentum: str | None = None
    plateau: dict[str, Any] | None = None
    lipschitz: dict[str, Any] | None = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False

    def __post_init__(self) -> None:
        owner = f"strategy {self.name!r}"
        instance(owner, "name", self.name, str, "a string")
        instance(owner, "description", self.description, str, "a string")
        choice(owner, "optimizer", self.optimizer, OPTIMIZERS)
        if isinstance(self.lr, str):
            choice(owner, "lr", self.lr, LR_SOURCES)
        else:
            positive(owner, "lr", self.lr)
        positive(owner, "lr_factor", self.lr_factor)
        choice(owner, "finder_method", self.finder_method, HEURISTICS)
        for name in ("schedule", "momentum"):
            template = optional(instance, owner, name, getattr(self, name), str, "a spec template or None")
            if template is not None:
                self.resolve(template, lr=0.1, total_steps=100, steps_per_epoch=10, epochs=10)
        for name in ("plateau", "lipschitz"):
            optional(instance, owner, name, getattr(self, name), dict, "a dict of keyword arguments or None")
        instance(owner, "optimizer_kwargs", self.optimizer_kwargs, dict, "a dict of keyword arguments")
        flag(owner, "baseline", self.baseline)
        self._refuse_ignored_settings(owner)

    def _refuse_ignored_settings(self, owner: str) -> None:
        """Combinations whose settings training would not use, or could not honour."""
        if self.lipschitz is not None:
            for name in ("schedule", "momentum", "plateau"):
                if getattr(self, name) is not None:
                    raise fail(owner, name, "None with lipschitz (LipschitzLR sets the LR every epoch)",
                               getattr(self, name))
        if self.lr != "finder" and self.finder_method != DEFAULT_METHOD:
            raise fail(owner, "finder_method", f"left at {DEFAULT_METHOD!r} unless lr='finder' (no LR range "
                       f"test runs for lr={self.lr!r})", self.finder_method)
        if self.lr == "default" and self.lr_factor != 1.0:
            raise fail(owner, "lr_factor", "1.0 with lr='default' (the optimizer's default LR is used as is)",
                       self.lr_factor)
        if "lr" in self.optimizer_kwargs:
            raise fail(owner, "optimizer_kwargs", "free of 'lr' (set it with the strategy's lr)",
                       self.optimizer_kwargs)
        if self.momentum is not None and not _has_momentum(self.optimizer):
            raise fail(owner, "momentum", f"None with optimizer {self.optimizer!r}, which has no momentum or betas",
                       self.momentum)

    def config(self) -> dict[str, Any]:
        """JSON-ready definition (stored with every run of the strategy)."""
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What identifies the strategy's runs (see `run_key`): `config()` without `baseline`, which
        changes no number of a run, so flagging a baseline keeps the keys of stored runs."""
        config = self.config()
        del config["baseline"]
        return config

    @staticmethod
    def resolve(template: str, **values: float) -> Schedule:
        """Fill a spec template with numbers and parse it."""
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as err:
            raise ValueError(f"bad schedule template {template!r}: {err}") from None
        unknown = names - set(TEMPLATE_FIELDS)
        if unknown:
            raise ValueError(f"bad schedule template {template!r}: unknown field(s) {sorted(unknown)}; "
                             f"allowed: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}")
        return parse(template.format(**{name: repr(values[name]) for name in names}))


def _has_momentum(optimizer: str) -> bool:
    """Whether the optimizer has a ``momentum`` or ``betas`` that a momentum schedule can set."""
    parameters = inspect.signature(OPTIMIZERS[optimizer][0]).parameters
    return "momentum" in parameters or "betas" in parameters


def _progress(spec: str) -> str:
    """A shape on training progress 0..1 (see module docstring)."""
    return f"in_epochs({spec}, steps_per_epoch={{total_steps}})"


#: The finder rule for strategies whose LR stays constant (plateau: until the first cut).
CONSTANT_LR_RULE = "minimum"

DEFAULT_STRATEGIES: tuple[Strategy, ...] = (
    Strategy("constant-too-small", "SGD, constant LR 100x below the finder's", lr_factor=0.01,
             finder_method=CONSTANT_LR_RULE),
    Strategy("constant-too-large", "SGD, constant LR 10x above the finder's", lr_factor=10.0,
             finder_method=CONSTANT_LR_RULE),
    Strategy("constant-finder", "SGD, constant LR from the LR range test (minimum rule)",
             finder_method=CONSTANT_LR_RULE, baseline=True),
    Strategy("step", "SGD, x0.1 at 1/3 and 2/3 of training",
             schedule=_progress("step(lr={lr}, step_size=0.34, gamma=0.1)")),
    Strategy("multistep", "SGD, x0.1 at 50 % and 75 % of training",
             schedule=_progress("multistep(lr={lr}, milestones=[0.5, 0.75], gamma=0.1)")),
    Strategy("exponential", "SGD, exponential decay to 1 % of the LR",
             schedule="exponential(lr={lr}, decay_steps={total_steps}, decay_rate=0.01)"),
    Strategy("cosine", "SGD, cosine decay to 0", schedule="cosine(lr={lr}, decay_steps={total_steps})"),
    Strategy("warmup-cosine", "SGD, 10 % linear warmup then cosine",
             schedule=_progress("warmup(cosine(lr={lr}, decay_steps=0.9), steps=0.1)")),
    Strategy("sgdr", "SGD, cosine restarts, first cycle 1 epoch, t_mul=2",
             schedule="sgdr(lr={lr}, first_cycle_steps={steps_per_epoch}, t_mul=2)"),
    Strategy("clr-triangular2", "SGD, CLR triangular2 between LR/4 and LR, half-cycle 2 epochs",
             schedule="scale(in_epochs(triangular2(base_lr=0.25, max_lr=1.0, step_size_up=2), "
                      "steps_per_epoch={steps_per_epoch}), factor={lr})"),
    Strategy("one-cycle", "SGD, one-cycle to the finder LR with cycled momentum",
             schedule="one_cycle(max_lr={lr}, total_steps={total_steps})",
             momentum="one_cycle_momentum(total_steps={total_steps})"),
    Strategy("plateau", "SGD, finder LR, x0.1 when validation loss stalls 2 epochs",
             plateau={"factor": 0.1, "patience": 2}, finder_method=CONSTANT_LR_RULE),
    Strategy("lipschitz", "SGD, LR = 1/L recomputed each epoch (Yedida & Saha 2019)",
             lipschitz={}, optimizer_kwargs={"momentum": 0.0}),
    Strategy("adagrad", "Adagrad at its defaults", optimizer="adagrad", lr="default"),
    Strategy("rmsprop", "RMSprop at its defaults", optimizer="rmsprop", lr="default"),
    Strategy("adadelta", "Adadelta at its defaults", optimizer="adadelta", lr="default"),
    Strategy("adam", "Adam at its defaults", optimizer="adam", lr="default"),
)


def default_strategies() -> dict[str, Strategy]:
    return {strategy.name: strategy for strategy in DEFAULT_STRATEGIES}


def select_strategies(names: str | None, custom: list[str] | None = None) -> list[Strategy]:
    """Strategies named in a comma list (None: all defaults), plus custom ``name=template``
    schedule strategies (SGD, finder LR)."""
    known = default_strategies()
    chosen = list(known.values()) if not names else []
    for name in filter(None, (part.strip() for part in (names or "").split(","))):
        if name not in known:
            raise ValueError(f"unknown strategy {name!r}; known: {', '.join(known)}")
        chosen.append(known[name])
    for item in custom or []:
        name, sep, template = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"a custom strategy is NAME=TEMPLATE, got {item!r}")
        chosen.append(Strategy(name.strip(), f"custom: {template.strip()}", schedule=template.strip()))
    names_seen = [s.name for s in chosen]
    duplicates = {n for n in names_seen if names_seen.count(n) > 1}
    if duplicates:
        raise ValueError(f"strategy names must be unique, repeated: {', '.join(sorted(duplicates))}")
    return chosen
