"""The LR case study behind `lrkit demo`: every strategy of a bundled task's family, stored,
reported, and a gallery of the schedule families beside it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lrkit.experiments.runner import SweepReport, plan, run_sweep
from lrkit.experiments.strategies import Strategy, strategies_for
from lrkit.gallery import render_gallery
from lrkit.report import write_report
from lrkit.tasks import get_task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseStudy:
    """What to run: a task, its strategies (None: the task family's, `strategies_for`), seeds
    and training length."""

    task: str = "mnist1d-cnn"
    strategies: tuple[Strategy, ...] | None = None
    seeds: int = 3
    epochs: int = 30
    batch_size: int = 100

    def chosen_strategies(self) -> tuple[Strategy, ...]:
        """`strategies`, or the strategies of the task's family."""
        return self.strategies if self.strategies is not None else strategies_for(get_task(self.task).family)


FULL = CaseStudy()
#: A short version for CI and first contact: every strategy of the family, one seed, a few epochs.
QUICK = CaseStudy(seeds=1, epochs=4)


def case_study_for(task: str | None = None, *, quick: bool = False) -> CaseStudy:
    """`FULL` / `QUICK` on the default task; on another registered task, its family's strategies at
    the task's own epochs and batch size x 3 seeds (quick: 1 epoch x 1 seed)."""
    if task is None or task == FULL.task:
        return QUICK if quick else FULL
    spec = get_task(task)
    return CaseStudy(task=task, seeds=1 if quick else 3, epochs=1 if quick else spec.epochs,
                     batch_size=spec.batch_size)


@dataclass(frozen=True)
class CaseStudyResult:
    db: Path
    report: Path
    gallery: Path
    sweep: SweepReport


def run_case_study(study: CaseStudy, output_dir: str | Path, *, workers: int | None = None,
                   backend: str = "process", progress: bool = True) -> CaseStudyResult:
    """Train every (strategy, seed), store the runs in ``output_dir/runs.sqlite`` (resuming
    whatever is already there), write ``report.html`` and ``schedules.png``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "runs.sqlite"
    trials = plan(study.task, study.chosen_strategies(), study.seeds, study.epochs, study.batch_size)
    sweep = run_sweep(trials, db, workers=workers, backend=backend, progress=progress)
    report = write_report(db, out / "report.html", task=study.task, epochs=study.epochs, batch_size=study.batch_size)
    gallery = render_gallery(out / "schedules.png")
    logger.info("case study written to %s", out)
    return CaseStudyResult(db=db, report=report, gallery=gallery, sweep=sweep)
