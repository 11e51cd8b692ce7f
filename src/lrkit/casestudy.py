"""The LR case study behind `lrkit demo`: every default strategy on a bundled task, stored,
reported, and a gallery of the schedule families beside it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lrkit.experiments.runner import SweepReport, plan, run_sweep
from lrkit.experiments.strategies import DEFAULT_STRATEGIES, Strategy
from lrkit.gallery import render_gallery
from lrkit.report import write_report

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseStudy:
    """What to run: a task, its strategies, seeds and training length."""

    task: str = "mnist1d-cnn"
    strategies: tuple[Strategy, ...] = DEFAULT_STRATEGIES
    seeds: int = 3
    epochs: int = 30
    batch_size: int = 100


FULL = CaseStudy()
#: A short version for CI and first contact: every strategy, one seed, a few epochs.
QUICK = CaseStudy(seeds=1, epochs=4)


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
    trials = plan(study.task, study.strategies, study.seeds, study.epochs, study.batch_size)
    sweep = run_sweep(trials, db, workers=workers, backend=backend, progress=progress)
    report = write_report(db, out / "report.html", task=study.task)
    gallery = render_gallery(out / "schedules.png")
    logger.info("case study written to %s", out)
    return CaseStudyResult(db=db, report=report, gallery=gallery, sweep=sweep)
