"""`tune_lr`: the LR for a whole training run, bought with short real runs.

1. The LR range test (`lrkit.torch.find_lr`, Smith 2017) on a fresh model bounds the search: the
   candidates are log-spaced below the LR of its lowest smoothed loss (`plan.candidate_lrs`), and
   its suggestion says which to try first (`plan.trial_order`).
2. Successive halving chooses among them (Jamieson & Talwalkar 2016; ASHA, Li et al. 2020, the
   rule of Optuna's `SuccessiveHalvingPruner`; Hyperband's building block, Li et al. 2017, JMLR
   18(185)): every candidate is the start of a real training run from the same initialisation
   and batch order, at its LR and on the run's schedule (`lrkit.tuning.schedule`: truncated, not
   compressed); it is scored at each rung, and only the best ``1/η`` of the trials at a rung
   train on.
3. The answer is the best trial at the highest rung reached (ties: the middle LR of the tied ones).

Everything is counted in optimizer steps (a hook on the optimizer counts the range test's), and
never exceeds ``⌊budget · epochs · len(train_loader)⌋``: the budget is checked before anything
runs against the range test's `num_iter` steps, the rungs are planned on what it really spent,
and a trial starts only if the budget pays for its first rung and goes on to the next rung only
if it pays for that stretch (`plan`).

The candidates are a fixed log grid, not drawn by a sampler: in one dimension and with about ten
trials a grid covers the range evenly, where TPE (Bergstra et al. 2011) would still be in its
random start-up trials. Each is enqueued (`Study.enqueue_trial`) and run through Optuna's ask/tell
interface, so the study, its pruner and its storage do the bookkeeping: with an SQLite `storage`
a second call with the same `study_name` and settings reuses the range test and every finished
trial, and trains only the candidates still missing (a trial cut off by a crash is retrained).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from torch import nn

from lrkit.progress import ProgressBar, progress_bar
from lrkit.torch.finder import FinderOptions, find_lr
from lrkit.torch.finder_result import FinderResult
from lrkit.torch.finder_state import loader_generators
from lrkit.tuning.plan import Rungs, candidate_lrs, check_budget, trial_order
from lrkit.tuning.result import STATUSES, TuneResult, TuneTrial
from lrkit.tuning.runs import MetricFn, Setup, resolve_metric, train_candidate
from lrkit.tuning.schedule import full_run, template_of
from lrkit.validation import callable_arg, fail, flag, instance, integer, optional, positive

__all__ = ["DEFAULT_STUDY", "tune_lr"]

logger = logging.getLogger(__name__)

DEFAULT_STUDY = "lrkit-tune_lr"
#: The trial states `tune_lr` reads results from (a failed or interrupted trial is retrained).
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: `find_lr` settings that `tune_lr` sets itself.
_FINDER_OWN = ("seed", "progress")


def tune_lr(make_model: Callable[[], nn.Module], make_optimizer: Callable[[Any, float], torch.optim.Optimizer],
            criterion: Callable[..., torch.Tensor], train_loader: Iterable, val_loader: Iterable, *, epochs: int,
            schedule: str = "constant", budget: float = 1.0, metric: str | MetricFn = "accuracy",
            higher_is_better: bool | None = None, seed: int = 0, candidates: int = 9, reduction_factor: int = 3,
            finder: Mapping[str, Any] | None = None, storage: str | None = None, study_name: str = DEFAULT_STUDY,
            progress: bool = True) -> TuneResult:
    """Choose the LR of a training run of `epochs` epochs with short real runs, spending at most
    `budget` runs (``budget · epochs · len(train_loader)`` optimizer steps, range test included).

    `make_model()` returns a fresh model (torch, numpy, Python and the loader's generators are
    seeded with `seed` before every call, so it starts from the same weights each time);
    `make_optimizer(params, lr)` an optimizer over them; ``criterion(model(x), y)`` is the training
    loss of an ``(x, y)`` batch of `train_loader`. `schedule` is ``"constant"``, ``"cosine"`` (to 0),
    ``"one_cycle"`` or a spec template with ``{lr}`` (and any of ``{total_steps}``,
    ``{steps_per_epoch}``, ``{epochs}``), e.g. ``"warmup(cosine(lr={lr}, decay_steps={total_steps}),
    steps=100)"``. `metric` scores a trial on `val_loader`: ``"accuracy"``, ``"loss"`` (`criterion`
    over the validation set) or a callable ``(model, val_loader) -> float`` with `higher_is_better`.

    `candidates` LRs are tried under successive halving with reduction factor `reduction_factor`;
    `finder` holds `find_lr` settings (`FinderOptions` fields except ``seed`` and ``progress``).
    The range test keeps its 100 iterations however small the budget: a shorter sweep gives each
    LR fewer updates before the next, which moves its whole curve, and so the candidates and the
    first trial, to higher LRs (1.5-2x from 100 to 55 iterations on digits-mlp and mnist1d-cnn).
    `storage` (an SQLite URL such as
    ``"sqlite:///tune.db"``) keeps the study under `study_name` so that an interrupted call can be
    resumed by repeating it. The random generators and the loader's generators are restored
    afterwards. `progress` shows one bar: steps spent out of the budget.
    """
    owner = "tune_lr"
    for name, value, signature in (("make_model", make_model, "() -> nn.Module"),
                                   ("make_optimizer", make_optimizer, "(params, lr) -> Optimizer"),
                                   ("criterion", criterion, "(outputs, targets) -> loss")):
        callable_arg(owner, name, value, signature)
    integer(owner, "epochs", epochs, minimum=1)
    steps_per_epoch = _batches(train_loader)
    run_steps = epochs * steps_per_epoch
    positive(owner, "budget", budget)
    budget_steps = math.floor(budget * run_steps + 1e-9)
    template = template_of(schedule)
    full_run(template, 0.1, steps_per_epoch, epochs)  # a template the parser refuses fails here
    scorer = resolve_metric(metric, higher_is_better, criterion)
    integer(owner, "seed", seed, minimum=0)
    integer(owner, "candidates", candidates, minimum=2)
    integer(owner, "reduction_factor", reduction_factor, minimum=2)
    options = _finder_options(finder, seed)
    check_budget(budget, budget_steps, options.num_iter, run_steps, candidates, reduction_factor)  # before any step
    optional(instance, owner, "storage", storage, str, "an RDB URL such as 'sqlite:///tune.db', or None")
    instance(owner, "study_name", study_name, str, "a string")
    flag(owner, "progress", progress)

    setup = Setup(make_model, make_optimizer, criterion, train_loader, val_loader, scorer, seed)
    config = {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "budget": budget, "schedule": template,
              "metric": scorer.name, "higher_is_better": scorer.higher_is_better, "seed": seed,
              "candidates": candidates, "reduction_factor": reduction_factor,
              "finder": {key: repr(value) for key, value in sorted((finder or {}).items())}}
    with _quiet_optuna(), _random_state_kept(train_loader):
        study = _open_study(storage, study_name, config, scorer.higher_is_better)
        spent = _steps_stored(study)
        with progress_bar("tune_lr", budget_steps - spent, enabled=progress, transient=True) as bar:
            meter = _Budget(budget_steps, spent, bar)
            found, finder_steps, resumed = _range_test(study, setup, options, meter)
            # planned on what the range test really spent (a finder's check may add to its sweep)
            rungs = check_budget(budget, budget_steps, finder_steps, run_steps, candidates, reduction_factor)
            study.pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs.steps[0],
                                                                  reduction_factor=rungs.reduction_factor)
            lrs = candidate_lrs(found.clr_bounds[1], candidates)
            _run_trials(study, setup, template, rungs, lrs, found.suggestion, (epochs, steps_per_epoch), meter)
    trials = _records(study)
    best = _choose(trials, scorer.higher_is_better)
    notes = _notes(found, finder_steps, lrs, rungs, run_steps, trials, best, resumed, study_name)
    for note in notes:
        logger.info("tune_lr: %s", note)
    return TuneResult(best=best, schedule=full_run(template, best.lr, steps_per_epoch, epochs),
                      cost=meter.spent / run_steps, budget=budget, steps_per_run=run_steps,
                      finder_steps=finder_steps, rungs=rungs.steps, metric_name=scorer.name,
                      higher_is_better=scorer.higher_is_better, trials=trials, finder=found, notes=notes)


# -- arguments ------------------------------------------------------------------------------
def _batches(train_loader: Iterable) -> int:
    try:
        count = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        raise fail("tune_lr", "train_loader", "a loader with a length (a DataLoader)", train_loader) from None
    return integer("tune_lr", "len(train_loader)", count, minimum=1)


def _finder_options(finder: Mapping[str, Any] | None, seed: int) -> FinderOptions:
    """The range test's settings: `finder`, `seed`, no bar (the tuning bar counts its steps) and, unless
    `finder` asks for it, no divergence check: the trials hold every candidate for longer runs themselves."""
    kwargs = dict(optional(instance, "tune_lr", "finder", finder, Mapping, "a dict of find_lr settings or None")
                  or {})
    if any(name in kwargs for name in _FINDER_OWN):
        raise fail("tune_lr", "finder", f"find_lr settings other than {' and '.join(map(repr, _FINDER_OWN))} "
                   "(tune_lr sets them)", finder)
    try:
        return FinderOptions(**{"check": "none", **kwargs}, seed=seed, progress=False)
    except TypeError as err:  # an unknown field
        raise fail("tune_lr", "finder", f"a dict of FinderOptions fields ({err})", finder) from None


# -- the budget and its bar -----------------------------------------------------------------
class _Budget:
    """Optimizer steps spent out of `total`; each step moves the bar (its label names the trial)."""

    def __init__(self, total: int, spent: int, bar: ProgressBar):
        self.total, self.spent, self.bar = total, spent, bar
        self._label: str | None = None

    def affords(self, steps: int) -> bool:
        return self.spent + steps <= self.total

    def relabel(self, label: str) -> None:
        self._label = label

    def spend(self) -> None:
        self.spent += 1
        self.bar.advance(self._label)
        self._label = None


# -- the study --------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial at INFO: WARNING and above only, inside the call."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


@contextlib.contextmanager
def _random_state_kept(train_loader: Iterable) -> Iterator[None]:
    """Each trial seeds the generators; the caller's torch, numpy, Python and loader states come back."""
    generators = [(g, g.get_state()) for g in loader_generators([train_loader])]
    numpy_state, python_state = np.random.get_state(), random.getstate()
    cuda = range(torch.cuda.device_count()) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        for generator, state in generators:
            generator.set_state(state)


def _open_study(storage: str | None, study_name: str, config: dict[str, Any], higher_is_better: bool) -> optuna.Study:
    """The study (created, or loaded from `storage` when it exists there with the same settings);
    its pruner is set once the range test has said how much budget is left for the trials."""
    study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                direction="maximize" if higher_is_better else "minimize")
    config = json.loads(json.dumps(config))  # as the storage gives it back
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", config)
    elif stored != config:
        changed = sorted(key for key in set(stored) | set(config) if stored.get(key) != config.get(key))
        raise ValueError(f"tune_lr: study {study_name!r} in {storage} was run with other settings (changed: "
                         f"{', '.join(changed)}); repeat the same call to resume it, or choose another study_name")
    return study


def _steps_stored(study: optuna.Study) -> int:
    """Steps an earlier call spent: its range test and every trial it started."""
    return (int(study.user_attrs.get("finder_steps", 0))
            + sum(int(t.user_attrs.get("steps", 0)) for t in study.get_trials(deepcopy=False)))


def _range_test(study: optuna.Study, setup: Setup, options: FinderOptions,
                meter: _Budget) -> tuple[FinderResult, int, bool]:
    """The range test (its steps counted by a hook on the optimizer), or the one the study holds.
    Returns it, its steps and whether it was reused."""
    if "finder" in study.user_attrs:
        return FinderResult.from_dict(study.user_attrs["finder"]), int(study.user_attrs["finder_steps"]), True
    model = setup.fresh_model()
    optimizer = setup.make_optimizer(model.parameters(), options.start_lr)
    before = meter.spent
    meter.relabel("tune_lr: range test")
    hook = optimizer.register_step_post_hook(lambda *_: meter.spend())
    try:
        found = find_lr(model, optimizer, setup.criterion, setup.train_loader, options)
    finally:
        hook.remove()
    study.set_user_attr("finder", found.to_dict())
    study.set_user_attr("finder_steps", meter.spent - before)
    return found, meter.spent - before, False


def _run_trials(study: optuna.Study, setup: Setup, template: str, rungs: Rungs, lrs: tuple[float, ...],
                suggestion: float, run: tuple[int, int], meter: _Budget) -> None:
    """Train every candidate the study has not finished, nearest the suggestion first, while the
    budget pays for a first rung. `run` is ``(epochs, steps_per_epoch)`` of the full run."""
    done = {t.params["lr"] for t in study.get_trials(deepcopy=False, states=_FINISHED)}
    pending = [lr for lr in trial_order(lrs, suggestion) if lr not in done]
    epochs, steps_per_epoch = run
    for k, lr in enumerate(pending):
        if not meter.affords(rungs.steps[0]):
            break
        study.enqueue_trial({"lr": lr})
        trial = study.ask()
        lr = trial.suggest_float("lr", lrs[0], lrs[-1], log=True)
        schedule = full_run(template, lr, steps_per_epoch, epochs)

        def on_rung(value: float, steps: int, trial: optuna.Trial = trial) -> bool:
            trial.report(value, steps)
            trial.set_user_attr("steps", steps)
            return steps == rungs.horizon or not trial.should_prune()

        start = meter.spent
        meter.relabel(f"tune_lr: lr {lr:.3g} ({k + 1}/{len(pending)})")
        try:
            outcome = train_candidate(setup, lr, schedule, rungs.steps, meter.affords, meter.spend, on_rung)
        except BaseException:
            trial.set_user_attr("steps", meter.spent - start)
            study.tell(trial, state=TrialState.FAIL)
            raise
        trial.set_user_attr("steps", outcome.steps)
        trial.set_user_attr("status", outcome.status)
        trial.set_user_attr("metric", outcome.metric if math.isfinite(outcome.metric) else None)
        if outcome.status == "complete":
            study.tell(trial, outcome.metric)
        else:
            study.tell(trial, state=TrialState.PRUNED)
        logger.info("tune_lr: lr %.4g: %s after %d steps, metric %.4g", lr, outcome.status, outcome.steps,
                    outcome.metric)


# -- the answer -------------------------------------------------------------------------------
def _records(study: optuna.Study) -> tuple[TuneTrial, ...]:
    """The finished trials, in the order they ran."""
    return tuple(TuneTrial(number=t.number, lr=float(t.params["lr"]), steps=int(t.user_attrs["steps"]),
                           metric=math.nan if t.user_attrs["metric"] is None else float(t.user_attrs["metric"]),
                           status=str(t.user_attrs["status"]))
                 for t in study.get_trials(deepcopy=False, states=_FINISHED))


def _choose(trials: tuple[TuneTrial, ...], higher_is_better: bool) -> TuneTrial:
    """The best trial by the metric among those scored at the highest rung any trial reached (the
    rule of successive halving); among tied ones the middle LR, away from both edges of the tie."""
    scored = [t for t in trials if math.isfinite(t.metric)]
    if not scored:
        raise RuntimeError(f"tune_lr: all {len(trials)} trials diverged before their first rung, down to LR "
                           f"{min((t.lr for t in trials), default=math.nan):.3g}; check the model, loss and data")
    top = max(t.steps for t in scored)
    at_top = [t for t in scored if t.steps == top]
    value = (max if higher_is_better else min)(t.metric for t in at_top)
    tied = sorted((t for t in at_top if t.metric == value), key=lambda t: t.lr)
    return tied[(len(tied) - 1) // 2]


def _notes(found: FinderResult, finder_steps: int, lrs: tuple[float, ...], rungs: Rungs, run_steps: int,
           trials: tuple[TuneTrial, ...], best: TuneTrial, resumed: bool, study_name: str) -> tuple[str, ...]:
    counts = {status: sum(t.status == status for t in trials) for status in STATUSES}
    notes = [f"range test: {finder_steps} steps ({found.stop_reason}), suggestion {found.suggestion:.3g}, lowest "
             f"smoothed loss at {found.clr_bounds[1]:.3g}",
             f"{len(lrs)} candidates log-spaced from {lrs[0]:.3g} to {lrs[-1]:.3g}; scored at steps "
             f"{', '.join(map(str, rungs.steps))} (reduction factor {rungs.reduction_factor}); the horizon is "
             f"{rungs.horizon / run_steps:.0%} of a run: trials are its first {rungs.horizon} steps",
             "trials: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n)]
    if len(trials) < len(lrs):
        notes.append(f"the budget ran out before {len(lrs) - len(trials)} candidate(s) could start")
    if best.lr in (lrs[0], lrs[-1]) and len(trials) > 1:
        edge = "lowest" if best.lr == lrs[0] else "highest"
        notes.append(f"the chosen LR is the {edge} candidate: the best LR may lie beyond the range searched")
    if resumed:
        notes.append(f"resumed study {study_name!r}: its range test and finished trials were reused")
    return tuple(notes)
