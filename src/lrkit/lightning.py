"""Lightning integration: lrkit's schedulers and range test inside a ``lightning.pytorch`` Trainer.

What needs no code from here (see docs/lightning.md):

- `lrkit.torch.ReduceLROnPlateau` is a subclass of torch's class: return it from
  ``configure_optimizers`` as ``{"scheduler": plateau, "monitor": "val_loss"}`` and Lightning steps
  it with the metric after each training epoch, as it would torch's.
- `lrkit.torch.ScheduledLR` is a torch ``LRScheduler``: return it with ``"interval": "step"`` and
  Lightning steps it after every optimizer update; its `state_dict` (the step, the group scales,
  a plateau's counters) travels in Lightning's checkpoints, so ``fit(ckpt_path=...)`` resumes it.

What this module adds: `ReportMetric`, which feeds a logged validation metric to a `ScheduledLR`'s
`lrkit.torch.PlateauFactor` (Lightning hands a ``monitor`` metric only to torch's
``ReduceLROnPlateau``), and `LRFinder`, which runs `lrkit.torch.find_lr` through the module's own
``training_step`` when training starts and sets the optimizer's LR to the suggestion.

``import lrkit`` never imports this module (nor Lightning); ``import lrkit.lightning`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature
from torch.optim.lr_scheduler import ReduceLROnPlateau as TorchReduceLROnPlateau

from lrkit.schedules import schedule_kind
from lrkit.suggest import DEFAULT_METHOD
from lrkit.torch import FinderOptions, FinderResult, ScheduledLR, find_lr
from lrkit.torch._group_lrs import write_lrs
from lrkit.torch.finder_batches import StepFn
from lrkit.validation import fail, flag, instance, with_overrides

__all__ = ["LRFinder", "ReportMetric"]

logger = logging.getLogger(__name__)


# -- plateau on a schedule ----------------------------------------------------------------------
class ReportMetric(pl.Callback):
    """Report a logged metric to the plateau of every `ScheduledLR` the module configured, after
    each validation run of ``trainer.fit`` (the sanity check excluded).

    Lightning steps a ``ScheduledLR(opt, schedule, plateau=PlateauFactor(...))`` itself when
    ``configure_optimizers`` returns it with ``"interval": "step"``, but never gives it a metric:
    Lightning passes the ``"monitor"`` value only to torch's ``ReduceLROnPlateau`` (and ignores the
    key for any other scheduler). This callback calls ``scheduler.report(trainer.callback_metrics[monitor])``
    at ``on_validation_end``; the cut reaches the optimizer at once. ModelCheckpoint runs after it
    (Lightning puts checkpoint callbacks last), so a checkpoint saved at that validation holds the
    plateau's counters and multipliers after the report, inside the scheduler's `state_dict`, and
    ``trainer.fit(..., ckpt_path=...)`` continues the identical LR sequence.

    `monitor` is the name the metric was logged under (``self.log("val_loss", ...)``); under DDP
    log it with ``sync_dist=True`` so that every rank reports the same value. `strict`: a metric
    that was not logged raises (default), or is skipped with a warning.
    """

    def __init__(self, monitor: str, *, strict: bool = True):
        instance("ReportMetric", "monitor", monitor, str, "the name of a logged metric (a string)")
        if not monitor:
            raise fail("ReportMetric", "monitor", "the name of a logged metric (a non-empty string)", monitor)
        self.monitor = monitor
        self.strict = flag("ReportMetric", "strict", strict)
        self.schedulers: list[ScheduledLR] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the ScheduledLRs with a plateau among the configured schedulers."""
        self.schedulers = _plateau_schedulers(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report the metric of this validation run to each plateau."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            available = sorted(trainer.callback_metrics)
            if self.strict:
                raise fail("ReportMetric", "monitor", f"a metric logged by validation (logged: {available})",
                           self.monitor)
            logger.warning("ReportMetric: no metric %r was logged (logged: %s); nothing reported", self.monitor,
                           available)
            return
        for scheduler in self.schedulers:
            scheduler.report(float(value))


def _plateau_schedulers(trainer: pl.Trainer) -> list[ScheduledLR]:
    """The configured ScheduledLRs that have a plateau; a clear error when there is none or when
    Lightning would call one with a metric."""
    found = []
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if isinstance(scheduler, ScheduledLR) and scheduler.plateau is not None:
            if config.reduce_on_plateau:
                raise fail("ReportMetric", "'reduce_on_plateau' in the lr_scheduler dict", "False for a ScheduledLR "
                           "(True makes Lightning call ScheduledLR.step(metric); ReportMetric reports the metric "
                           "instead)", True)
            found.append(scheduler)
    if not found:
        kinds = [type(config.scheduler).__name__ for config in trainer.lr_scheduler_configs]
        raise fail("ReportMetric", "the lr_scheduler of configure_optimizers", "a ScheduledLR(optimizer, schedule, "
                   "plateau=PlateauFactor(...))", f"schedulers {kinds}")
    return found


# -- the range test -----------------------------------------------------------------------------
class LRFinder(pl.Callback):
    """Run lrkit's LR range test (`lrkit.torch.find_lr`) when ``trainer.fit`` starts training, and
    set the optimizer's LR to its suggestion.

    The test runs at ``on_train_start`` (the optimizer and the train dataloader exist then; after the
    sanity check), on the trainer's train dataloader, one optimizer update per iteration through the
    module's own ``training_step`` (via the strategy, so DDP synchronises the gradients and the
    precision plugin's autocast applies). The settings are `options` (`FinderOptions`) with any of
    its fields replaced by keyword, e.g. ``LRFinder(num_iter=100, schedule="decaying", progress=False)``.
    Fields left at their defaults are taken from the trainer: ``step_fn`` (the ``training_step``),
    ``device`` (the strategy's), ``accumulation_steps`` (``accumulate_grad_batches``),
    ``grad_scaler`` (the precision plugin's, for ``"16-mixed"``), and ``schedule`` (see below).

    Afterwards the weights, buffers, gradients, optimizer state, random generators and loader
    generators are as they were (find_lr restores them); then each param group's LR becomes
    ``result.group_lrs`` (the suggestion, keeping the groups' ratios). `result` keeps the
    `FinderResult`; the suggestion is logged (`logging`, and as ``lr_finder/suggestion`` to the
    trainer's loggers) and, with `plot`, its plot saved as ``lr_finder.png`` in ``trainer.log_dir``
    (`plot_path`).

    Schedulers: with a `ScheduledLR` attached, the suggestion becomes the schedule's **peak** over
    the run (the highest LR of its ``estimated_stepping_batches`` steps, or ``max_epochs`` for
    ``"interval": "epoch"``): its group scales are multiplied so that each group peaks at its
    ``group_lrs`` value, which `ScheduledLR.state_dict` saves, so a resumed run keeps it; unless
    `schedule` or `method` is given, the rule is the one for the schedule's shape over the run
    (`lrkit.schedules.schedule_kind`). A ``ReduceLROnPlateau`` cuts from the LR set here. Any other
    scheduler would override or ignore the LR set here, so it is refused.

    Refused with a clear error: manual optimization, more than one optimizer, no or several train
    dataloaders. Resuming (``fit(ckpt_path=...)``, or a trainer that already trained) skips the
    test: the checkpoint's LRs stand, and `result` is the one saved in the checkpoint. Under DDP
    every rank runs the test; the losses are averaged over the ranks, so all see one curve and one
    suggestion. Not applied during the test: gradient clipping, the backward and optimizer-step
    hooks, and ``self.log`` in ``training_step`` (ignored).
    """

    def __init__(self, options: FinderOptions | None = None, *, plot: bool = True, **finder_options: Any):
        self.options = with_overrides("LRFinder", FinderOptions, options, finder_options)
        self.plot = flag("LRFinder", "plot", plot)
        self.result: FinderResult | None = None
        self.plot_path: str | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Run the test, set the LRs, report; skipped when resuming."""
        if trainer.ckpt_path is not None or trainer.global_step > 0:
            logger.info("LRFinder: resuming (ckpt_path=%s, global_step=%d); the range test is skipped",
                        trainer.ckpt_path, trainer.global_step)
            return
        optimizer = _single_optimizer(trainer, pl_module)
        loader = _train_loader(trainer)
        scheduled = _scheduled_lr(trainer)
        options = self._options_for(trainer, pl_module, scheduled)
        if scheduled is not None:  # sweep with the schedule's group ratios (its LR at step 0 may be 0)
            write_lrs(optimizer, list(scheduled.scheduler.scales))
        with _logging_off(pl_module), torch.enable_grad():
            result = find_lr(pl_module, optimizer, None, loader, options)
        if scheduled is None:
            write_lrs(optimizer, list(result.group_lrs))
        else:
            _rescale(scheduled, result.group_lrs)
        self.result = result
        self._report(trainer, result, scheduled is not None)

    def _options_for(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     scheduled: _Scheduled | None) -> FinderOptions:
        """`options` with the fields left at their defaults taken from the trainer."""
        options = self.options
        changes: dict[str, Any] = {}
        if options.step_fn is None:
            changes["step_fn"] = _training_step(trainer, pl_module)
        if options.device is None:
            changes["device"] = trainer.strategy.root_device
        if options.accumulation_steps == 1:
            changes["accumulation_steps"] = trainer.accumulate_grad_batches
        if options.grad_scaler is None:
            changes["grad_scaler"] = getattr(trainer.precision_plugin, "scaler", None)
        if scheduled is not None and options.schedule is None and options.method == DEFAULT_METHOD:
            shape = schedule_kind(scheduled.scheduler.schedule, scheduled.steps)
            logger.info("LRFinder: the ScheduledLR's schedule is %s over the run (%s)", shape.kind, shape.describe())
            changes["schedule"] = shape.kind
        return dataclasses.replace(options, **changes)

    def _report(self, trainer: pl.Trainer, result: FinderResult, scheduled: bool) -> None:
        logger.info("LRFinder: suggestion %.4g (%s, %s confidence)%s; group LRs %s", result.suggestion, result.method,
                    result.confidence, " as the ScheduledLR's peak" if scheduled else "",
                    [f"{lr:.4g}" for lr in result.group_lrs])
        for run_logger in trainer.loggers:
            run_logger.log_metrics({"lr_finder/suggestion": result.suggestion}, step=trainer.global_step)
        if not self.plot:
            return
        directory = trainer.log_dir  # every rank calls it: it broadcasts rank 0's
        if directory is None or not trainer.is_global_zero:
            return
        from matplotlib.figure import Figure  # no pyplot: no global figure, no GUI backend

        os.makedirs(directory, exist_ok=True)
        self.plot_path = os.path.join(directory, "lr_finder.png")
        figure = Figure(figsize=(7, 4.5))
        result.plot(figure.subplots())
        figure.savefig(self.plot_path, dpi=100, bbox_inches="tight")
        logger.info("LRFinder: plot saved to %s", self.plot_path)

    def state_dict(self) -> dict[str, Any]:
        """The result as JSON text (plain types only, whatever the checkpoint loader allows)."""
        return {} if self.result is None else {"result": json.dumps(self.result.to_dict())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "result" in state_dict:
            self.result = FinderResult.from_dict(json.loads(state_dict["result"]))


def _single_optimizer(trainer: pl.Trainer, pl_module: pl.LightningModule) -> torch.optim.Optimizer:
    if not pl_module.automatic_optimization:
        raise fail("LRFinder", "automatic_optimization", "True (the range test steps the optimizer itself; with "
                   "manual optimization call lrkit.torch.find_lr with your own step_fn)", False)
    if len(trainer.optimizers) != 1:
        raise fail("LRFinder", "the number of optimizers", "1 (with several, run lrkit.torch.find_lr on each)",
                   len(trainer.optimizers))
    return trainer.optimizers[0]


def _train_loader(trainer: pl.Trainer) -> Iterable:
    loader = trainer.train_dataloader
    if isinstance(loader, Mapping):
        loader = list(loader.values())
    if isinstance(loader, (list, tuple)):
        if len(loader) != 1:
            raise fail("LRFinder", "the number of train dataloaders", "1", len(loader))
        loader = loader[0]
    if loader is None:
        raise fail("LRFinder", "the train dataloader", "given to trainer.fit (train_dataloaders=, a datamodule or "
                   "the module's train_dataloader())", None)
    return loader


class _Scheduled(NamedTuple):
    """A ScheduledLR attached to the optimizer and how many times Lightning will step it in the run."""

    scheduler: ScheduledLR
    steps: int


def _scheduled_lr(trainer: pl.Trainer) -> _Scheduled | None:
    """The attached ScheduledLR, or None; refuses schedulers that would override or ignore the LR
    the finder sets."""
    scheduled = []
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if isinstance(scheduler, ScheduledLR):
            scheduled.append(_Scheduled(scheduler, _run_steps(trainer, config.interval, config.frequency)))
        elif not isinstance(scheduler, TorchReduceLROnPlateau):
            raise fail("LRFinder", "the lr_scheduler", "an lrkit.torch.ScheduledLR (the suggestion becomes its "
                       "peak), a ReduceLROnPlateau or none: another scheduler overrides or ignores the LR the "
                       "finder sets", type(scheduler).__name__)
    if len(scheduled) > 1:
        raise fail("LRFinder", "the number of ScheduledLRs", "at most 1", len(scheduled))
    return scheduled[0] if scheduled else None


def _run_steps(trainer: pl.Trainer, interval: str, frequency: int) -> int:
    """How many times Lightning will step a scheduler of this interval and frequency in the run."""
    total = trainer.estimated_stepping_batches if interval == "step" else trainer.max_epochs
    if total is None or not math.isfinite(total) or total < 1:
        raise fail("LRFinder", f"the run's number of {interval}s", "finite (set max_epochs or max_steps) to find "
                   "a ScheduledLR's peak", total)
    return max(1, math.ceil(total / frequency))


def _rescale(scheduled: _Scheduled, group_lrs: tuple[float, ...]) -> None:
    """Set the group scales so that each group's highest LR in the run is its `group_lrs` value, through
    `ScheduledLR.load_state_dict` (which sets the LRs of the current step at once)."""
    scheduler = scheduled.scheduler
    values = np.asarray(scheduler.schedule(np.arange(scheduled.steps, dtype=np.float64)), dtype=np.float64)
    peak = float(values.max())
    if not peak > 0:
        raise fail("LRFinder", "the ScheduledLR's schedule", "one whose LR rises above 0 within the run",
                   scheduler.schedule)
    state = scheduler.state_dict()
    state["scales"] = [lr / peak for lr in group_lrs]
    scheduler.load_state_dict(state)


def _training_step(trainer: pl.Trainer, pl_module: pl.LightningModule) -> StepFn:
    """``step_fn(model, batch) -> loss`` through the strategy's ``training_step``, as the fit loop calls it."""
    takes_index = is_param_in_hook_signature(pl_module.training_step, "batch_idx", min_args=2)
    indices = itertools.count()

    def step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        batch = trainer.strategy.batch_to_device(batch)
        output = trainer.strategy.training_step(*((batch, next(indices)) if takes_index else (batch,)))
        loss = output.get("loss") if isinstance(output, Mapping) else output
        if not isinstance(loss, torch.Tensor):
            raise fail("LRFinder", "training_step's output", "the loss (a tensor, or a dict with a 'loss' tensor)",
                       output)
        return loss

    return step


@contextlib.contextmanager
def _logging_off(pl_module: pl.LightningModule) -> Iterator[None]:
    """``self.log``/``self.log_dict`` do nothing inside (outside the fit loop they would raise)."""
    names = ("log", "log_dict")
    for name in names:
        setattr(pl_module, name, _ignore)
    try:
        yield
    finally:
        for name in names:
            delattr(pl_module, name)


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None
