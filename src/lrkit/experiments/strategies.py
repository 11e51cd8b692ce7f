"""Strategies: an optimizer + where its LR comes from + how it moves during training.

A strategy's schedule is a spec *template*: ``{lr}``, ``{total_steps}``, ``{steps_per_epoch}``
and ``{epochs}`` are filled in with numbers for the run at hand (plain string substitution of
numbers — the result is then parsed like any spec, never evaluated). Shapes are written
relative to the run: ``in_epochs(s, steps_per_epoch={total_steps})`` puts `s` on training
progress 0..1, and ``scale(s, factor={lr})`` sets the level of a unit-height shape.

Strategies come in families, one per kind of task (`lrkit.tasks.Task.family`): ``"sgd"``
(`DEFAULT_STRATEGIES`, the case study's SGD set for the CNN/MLP tasks) and ``"transformer"``
(`TRANSFORMER_STRATEGIES`, AdamW with the schedules of transformer training). The LR-free
optimizers (`LR_FREE_STRATEGIES`) run on any task by name; the Adam-type ones are also members
of the transformer family. `select_strategies` picks a family's set by default and any known
strategy by name.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

from lrkit.schedules import Schedule, fill_template
from lrkit.suggest import HEURISTICS
from lrkit.torch.finder_check import CHECKS
from lrkit.torch.optimizers import OPTIMIZERS
from lrkit.validation import choice, fail, flag, in_range, instance, optional, positive

#: The finder fields in the identity of a strategy without a range test: what every strategy
#: stored (``finder_method="consensus"``, no check) before the rule followed the schedule.
_NO_FINDER_IDENTITY = {"finder_method": "consensus"}
#: what `Strategy.lr` may name instead of a number
LR_SOURCES = ("finder", "tuned", "default")


@dataclass(frozen=True)
class Strategy:
    """How one run sets its learning rate.

    `lr`: a number, ``"finder"`` (the LR range test's checked suggestion on this model and data,
    times `lr_factor`), ``"tuned"`` (`lrkit.tune_lr`'s choice for the strategy's schedule over the
    whole run, spending at most `tune_budget` runs of compute, times `lr_factor`; its cost is in
    the run's wall time) or ``"default"`` (the optimizer's own default LR). The range test reads
    its curve with the rule for the strategy's schedule (`lrkit.suggest.SCHEDULE_RULES`:
    ``"minimum"`` when the LR stays constant over most of the run, ``"consensus"`` when the
    schedule decays it), unless `finder_method` names a rule; `finder_check` is its
    divergence check (`lrkit.torch.FinderOptions.check`).
    `schedule` / `momentum`: spec templates (None: constant LR / no momentum schedule).
    `plateau`: keyword arguments of `lrkit.torch.PlateauFactor` (stepped on the
    validation loss each epoch). `lipschitz`: keyword arguments of `lrkit.torch.LipschitzLR`
    (the LR is recomputed every epoch; `lr` is then only the first epoch's), which owns the LR,
    so it takes no schedule, momentum schedule or plateau.
    `optimizer_warmup`: the linear warm-up built into a schedule-free optimizer
    (``warmup_steps``), as a fraction of the run's steps.
    The optimizer's kind (`lrkit.torch.optimizers`) limits the rest: an LR-free optimizer
    (Prodigy, D-Adaptation) takes ``lr="default"`` or a number, which multiplies the step size
    it estimates (so no LR range test, and no LipschitzLR, which would overwrite it); a schedule,
    momentum schedule or plateau then scales that multiplier (Prodigy's README: "no scheduler or
    cosine annealing"; D-Adaptation's: "use the same learning rate scheduler you would normally
    use"). A schedule-free optimizer takes the same LRs but no schedule, momentum schedule or
    plateau at all: its averaging replaces the schedule, and its ``train()``/``eval()`` switch
    moves between y and x with the momentum of the moment, so that must not change.
    `baseline`: the constant-LR strategy the report measures the others against (steps to
    reach its final metric); a role in the report, not a training setting.
    Every combination that training would not honour is refused here.
    """

    name: str
    description: str
    optimizer: str = "sgd"
    lr: float | str = "finder"
    lr_factor: float = 1.0
    finder_method: str | None = None
    finder_check: str = "hold"
    schedule: str | None = None
    momentum: str | None = None
    plateau: dict[str, Any] | None = None
    lipschitz: dict[str, Any] | None = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer_warmup: float | None = None
    tune_budget: float | None = None
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
        optional(choice, owner, "finder_method", self.finder_method, HEURISTICS)
        choice(owner, "finder_check", self.finder_check, CHECKS)
        for name in ("schedule", "momentum"):
            template = optional(instance, owner, name, getattr(self, name), str, "a spec template or None")
            if template is not None:
                self.resolve(template, lr=0.1, total_steps=100, steps_per_epoch=10, epochs=10)
        for name in ("plateau", "lipschitz"):
            optional(instance, owner, name, getattr(self, name), dict, "a dict of keyword arguments or None")
        instance(owner, "optimizer_kwargs", self.optimizer_kwargs, dict, "a dict of keyword arguments")
        optional(in_range, owner, "optimizer_warmup", self.optimizer_warmup, 0.0, 1.0, open_low=True, open_high=True)
        optional(positive, owner, "tune_budget", self.tune_budget)
        flag(owner, "baseline", self.baseline)
        self._refuse_ignored_settings(owner)

    def _refuse_ignored_settings(self, owner: str) -> None:
        """Combinations whose settings training would not use, or could not honour."""
        if self.lipschitz is not None:
            for name in ("schedule", "momentum", "plateau"):
                if getattr(self, name) is not None:
                    raise fail(owner, name, "None with lipschitz (LipschitzLR sets the LR every epoch)",
                               getattr(self, name))
        if self.lr != "finder":
            for name, default in (("finder_method", None), ("finder_check", "hold")):
                if getattr(self, name) != default:
                    raise fail(owner, name, f"left at {default!r} unless lr='finder' (no LR range test runs for "
                               f"lr={self.lr!r})", getattr(self, name))
        if (self.lr == "tuned") != (self.tune_budget is not None):
            raise fail(owner, "tune_budget", "a number of runs with lr='tuned' and None otherwise", self.tune_budget)
        if self.lr == "tuned":
            for name in ("momentum", "plateau", "lipschitz"):
                if getattr(self, name) is not None:
                    raise fail(owner, name, "None with lr='tuned' (tune_lr's trials run the schedule alone)",
                               getattr(self, name))
        if self.lr == "default" and self.lr_factor != 1.0:
            raise fail(owner, "lr_factor", "1.0 with lr='default' (the optimizer's default LR is used as is)",
                       self.lr_factor)
        if "lr" in self.optimizer_kwargs:
            raise fail(owner, "optimizer_kwargs", "free of 'lr' (set it with the strategy's lr)",
                       self.optimizer_kwargs)
        if self.momentum is not None and not _has_momentum(self.optimizer):
            raise fail(owner, "momentum", f"None with optimizer {self.optimizer!r}, which has no momentum or betas",
                       self.momentum)
        self._refuse_by_optimizer_kind(owner)

    def _refuse_by_optimizer_kind(self, owner: str) -> None:
        """What LR-free and schedule-free optimizers cannot use (class docstring)."""
        kind, optimizer = OPTIMIZERS[self.optimizer].kind, repr(self.optimizer)
        if kind != "schedule-free" and self.optimizer_warmup is not None:
            raise fail(owner, "optimizer_warmup", f"None with optimizer {optimizer}, which has no warm-up of its own "
                       "(write the warm-up into the schedule)", self.optimizer_warmup)
        if kind == "scheduled":
            return
        if self.lr in ("finder", "tuned"):
            why = ("lr multiplies the step size it estimates; its authors use 1.0" if kind == "lr-free" else
                   "its built-in warm-up and averaging are not what the LR range test measures")
            raise fail(owner, "lr", f"'default' or a number with optimizer {optimizer} ({why})", self.lr)
        if self.lipschitz is not None:
            raise fail(owner, "lipschitz", f"None with optimizer {optimizer} (it sets its own step size)",
                       self.lipschitz)
        if kind == "lr-free":
            return
        for name, why in (("schedule", "its averaging replaces the schedule; warm up with optimizer_warmup"),
                          ("plateau", "its averaging replaces the schedule"),
                          ("momentum", "its train()/eval() switch needs the momentum that formed y")):
            if getattr(self, name) is not None:
                raise fail(owner, name, f"None with optimizer {optimizer} ({why})", getattr(self, name))
        if "warmup_steps" in self.optimizer_kwargs:
            raise fail(owner, "optimizer_kwargs", "free of 'warmup_steps' (set it with optimizer_warmup, a fraction of "
                       "the run)", self.optimizer_kwargs)

    def config(self) -> dict[str, Any]:
        """JSON-ready definition (stored with every run of the strategy)."""
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What identifies the strategy's runs (see `run_key`): `config()` without `baseline`, which
        changes no number of a run, so flagging a baseline keeps the keys of stored runs; without
        `optimizer_warmup` when it is None, so the keys stored before it existed stay; and, without
        a range test (``lr`` not ``"finder"``), the finder fields as every run stored before the
        rule followed the schedule had them (`_NO_FINDER_IDENTITY`). A strategy with a range test
        is identified by its rule and check: its runs stored before then (an unchecked LR) differ."""
        config = self.config()
        del config["baseline"]
        for name in ("optimizer_warmup", "tune_budget"):  # None: as stored before the field existed
            if config[name] is None:
                del config[name]
        if self.lr != "finder":
            del config["finder_check"]
            config.update(_NO_FINDER_IDENTITY)
        return config

    def optimizer_settings(self, total_steps: int) -> dict[str, Any]:
        """Keyword arguments of the optimizer for a run of `total_steps` updates:
        `optimizer_kwargs`, plus ``warmup_steps`` from `optimizer_warmup`."""
        if self.optimizer_warmup is None:
            return dict(self.optimizer_kwargs)
        return {**self.optimizer_kwargs, "warmup_steps": round(self.optimizer_warmup * total_steps)}

    @staticmethod
    def resolve(template: str, **values: float) -> Schedule:
        """Fill a spec template with numbers and parse it (`lrkit.schedules.fill_template`)."""
        return fill_template(template, **values)


def _has_momentum(optimizer: str) -> bool:
    """Whether the optimizer has a ``momentum`` or ``betas`` that a momentum schedule can set."""
    parameters = inspect.signature(OPTIMIZERS[optimizer].cls).parameters
    return "momentum" in parameters or "betas" in parameters


def _progress(spec: str) -> str:
    """A shape on training progress 0..1 (see module docstring)."""
    return f"in_epochs({spec}, steps_per_epoch={{total_steps}})"


DEFAULT_STRATEGIES: tuple[Strategy, ...] = (
    Strategy("constant-too-small", "SGD, constant LR 100x below the finder's", lr_factor=0.01),
    Strategy("constant-too-large", "SGD, constant LR 10x above the finder's", lr_factor=10.0),
    Strategy("constant-finder", "SGD, constant LR from the LR range test (constant-LR rule)", baseline=True),
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
    Strategy("tuned-cosine", "SGD, cosine decay to 0 from the LR tune_lr picks with one run's worth of short runs",
             lr="tuned", tune_budget=1.0, schedule="cosine(lr={lr}, decay_steps={total_steps})"),
    Strategy("plateau", "SGD, finder LR, x0.1 when validation loss stalls 2 epochs",
             plateau={"factor": 0.1, "patience": 2}),
    Strategy("lipschitz", "SGD, LR = 1/L recomputed each epoch (Yedida & Saha 2019)",
             lipschitz={}, optimizer_kwargs={"momentum": 0.0}),
    Strategy("adagrad", "Adagrad at its defaults", optimizer="adagrad", lr="default"),
    Strategy("rmsprop", "RMSprop at its defaults", optimizer="rmsprop", lr="default"),
    Strategy("adadelta", "Adadelta at its defaults", optimizer="adadelta", lr="default"),
    Strategy("adam", "Adam at its defaults", optimizer="adam", lr="default"),
)


#: Warm-up of the transformer family and of the schedule-free optimizers, as a fraction of the
#: run (Vaswani et al. 2017 warm up 4 000 of 100 000 steps, 4 %); a fraction keeps the warm-up's
#: share the same in a short run and a long one.
WARMUP = 0.05
#: AdamW's decoupled weight decay in the transformer family: GPT-3's (Brown et al. 2020,
#: appendix B) and nanoGPT's, instead of torch's default 0.01. It applies to every parameter
#: (strategies build the optimizer over ``model.parameters()``; nanoGPT exempts biases and norms).
TRANSFORMER_WEIGHT_DECAY = 0.1


def _adamw(name: str, description: str, **fields: Any) -> Strategy:
    """A transformer-family strategy: AdamW with `TRANSFORMER_WEIGHT_DECAY`, LR from the range test."""
    return Strategy(name, description, optimizer="adamw", optimizer_kwargs={"weight_decay": TRANSFORMER_WEIGHT_DECAY},
                    **fields)


#: The LR-free optimizers at their authors' settings (`lrkit.torch.optimizers`), on any task:
#: the default LR and no weight decay (each package's default), so in the transformer family
#: they also differ from the AdamW strategies in weight decay. No schedule: the LR-free ones
#: could take one (`Strategy`), these measure what the estimated step size does alone.
LR_FREE_STRATEGIES: tuple[Strategy, ...] = (
    Strategy("schedule-free-adamw",
             f"Schedule-free AdamW, its LR 0.0025, {WARMUP * 100:g} % warm-up (Defazio et al. 2024)",
             optimizer="schedule-free-adamw", lr="default", optimizer_warmup=WARMUP),
    Strategy("schedule-free-sgd", f"Schedule-free SGD, its LR 1.0, momentum 0.9, {WARMUP * 100:g} % warm-up",
             optimizer="schedule-free-sgd", lr="default", optimizer_warmup=WARMUP),
    Strategy("prodigy", "Prodigy: Adam with an estimated step size x 1.0 (Mishchenko & Defazio 2023)",
             optimizer="prodigy", lr="default"),
    Strategy("dadapt-adam", "D-Adaptation Adam: estimated step size x 1.0 (Defazio & Mishchenko 2023)",
             optimizer="dadapt-adam", lr="default"),
    Strategy("dadapt-sgd", "D-Adaptation SGD, momentum 0.9: estimated step size x 1.0",
             optimizer="dadapt-sgd", lr="default"),
)

#: The transformer family: AdamW (`TRANSFORMER_WEIGHT_DECAY`) at the LR range test's LR, read by
#: the same rules as the SGD family (constant: "minimum", decaying: "consensus"). Warm-up and
#: cosine to 10 % of the peak as GPT-3 (Brown et al. 2020, appendix B); the same cosine
#: from the same peak without warm-up (what the warm-up buys); warmup-stable-decay with the
#: 1-sqrt cool-down over the last 20 % (Hägele et al. 2024, arXiv 2405.18392); inverse square
#: root after a linear warm-up (Vaswani et al. 2017, eq. 3); one-cycle with beta1 cycled (Smith
#: 2018; fastai's ``fit_one_cycle``); then the Adam-type LR-free optimizers.
TRANSFORMER_STRATEGIES: tuple[Strategy, ...] = (
    _adamw("adamw-constant", "AdamW, constant LR from the LR range test (constant-LR rule)", baseline=True),
    _adamw("adamw-warmup-cosine", f"AdamW, {WARMUP * 100:g} % linear warm-up, cosine to 10 % of the peak (GPT-3)",
           schedule=_progress(f"warmup(cosine(lr={{lr}}, decay_steps={1 - WARMUP:g}, alpha=0.1), steps={WARMUP:g})")),
    _adamw("adamw-cosine", "AdamW, the same cosine from the same peak LR without warm-up",
           schedule="cosine(lr={lr}, decay_steps={total_steps}, alpha=0.1)"),
    _adamw("adamw-wsd", f"AdamW, warmup-stable-decay: {WARMUP * 100:g} % warm-up, 1-sqrt cool-down over the last 20 %",
           schedule=_progress(f"wsd(lr={{lr}}, warmup_steps={WARMUP:g}, stable_steps={0.8 - WARMUP:g}, "
                              "decay_steps=0.2, decay='1-sqrt')")),
    _adamw("adamw-inverse-sqrt", f"AdamW, {WARMUP * 100:g} % linear warm-up then LR x sqrt(warmup / step) "
           "(Vaswani et al. 2017)",
           # inverse_sqrt counts steps from 1; on progress units the warm-up is written around it:
           # lr * min(t / w, sqrt(w / t)) with w = WARMUP * total_steps
           schedule=_progress(f"warmup(in_epochs(inverse_sqrt(lr={{lr}}, warmup_steps=1), "
                              f"steps_per_epoch={WARMUP:g}), steps={WARMUP:g})")),
    _adamw("adamw-one-cycle", "AdamW, one-cycle to the finder LR with beta1 cycled 0.95-0.85",
           schedule="one_cycle(max_lr={lr}, total_steps={total_steps})",
           momentum="one_cycle_momentum(total_steps={total_steps})"),
    *(s for s in LR_FREE_STRATEGIES if s.name in ("schedule-free-adamw", "prodigy", "dadapt-adam")),
)

#: Task family (`lrkit.tasks.Task.family`) -> the strategies `lrkit compare` and `lrkit demo` run by default.
FAMILIES: dict[str, tuple[Strategy, ...]] = {"sgd": DEFAULT_STRATEGIES, "transformer": TRANSFORMER_STRATEGIES}


def strategies_for(family: str) -> tuple[Strategy, ...]:
    """The strategies of a task family (`FAMILIES`)."""
    return FAMILIES[choice("strategies_for", "family", family, FAMILIES)]


def default_strategies() -> dict[str, Strategy]:
    return {strategy.name: strategy for strategy in DEFAULT_STRATEGIES}


def known_strategies() -> dict[str, Strategy]:
    """Every strategy lrkit defines, by name: the families' and the LR-free ones."""
    return {strategy.name: strategy for group in (*FAMILIES.values(), LR_FREE_STRATEGIES) for strategy in group}


def select_strategies(names: str | None, custom: list[str] | None = None, family: str = "sgd") -> list[Strategy]:
    """Strategies named in a comma list (any of `known_strategies`; None: all of `family`'s),
    plus custom ``name=template`` schedule strategies, which train like the family's baseline
    (its optimizer and settings) with the LR range test's LR."""
    members = strategies_for(family)
    known = known_strategies()
    chosen = list(members) if not names else []
    for name in filter(None, (part.strip() for part in (names or "").split(","))):
        if name not in known:
            raise ValueError(f"unknown strategy {name!r}; known: {', '.join(known)}")
        chosen.append(known[name])
    baseline = next(strategy for strategy in members if strategy.baseline)
    for item in custom or []:
        name, sep, template = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"a custom strategy is NAME=TEMPLATE, got {item!r}")
        chosen.append(Strategy(name.strip(), f"custom: {template.strip()}", optimizer=baseline.optimizer,
                               optimizer_kwargs=dict(baseline.optimizer_kwargs), schedule=template.strip()))
    names_seen = [s.name for s in chosen]
    duplicates = {n for n in names_seen if names_seen.count(n) > 1}
    if duplicates:
        raise ValueError(f"strategy names must be unique, repeated: {', '.join(sorted(duplicates))}")
    return chosen
