"""Run a sweep of trials in parallel (processes or Ray) and store each as it completes.

Only the parent process writes to the store, one transaction per finished run: killing the
sweep loses at most the runs in flight, and running the same command again trains only the
trials whose keys are not stored yet.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

from lrkit.experiments.results import RunResult
from lrkit.experiments.store import ResultsStore
from lrkit.experiments.strategies import Strategy
from lrkit.experiments.training import Trial, train_trial
from lrkit.progress import progress_bar

logger = logging.getLogger(__name__)

BACKENDS = ("process", "ray")


@dataclass
class SweepReport:
    """What a sweep did: runs trained now, runs found already stored, trials that failed."""

    trained: list[RunResult] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[Trial, str]] = field(default_factory=list)


def plan(task: str, strategies: Iterable[Strategy], seeds: int | Iterable[int], epochs: int,
         batch_size: int) -> list[Trial]:
    """Every (strategy, seed) trial of a task; `seeds` is a count (0..n-1) or explicit seeds."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("seeds: need at least one seed")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    return [Trial(task, strategy, seed, epochs, batch_size) for strategy in strategies for seed in seed_list]


def run_sweep(trials: list[Trial], db: str | Path, *, workers: int | None = None, backend: str = "process",
              address: str | None = None, progress: bool = True,
              on_result: Callable[[RunResult], None] | None = None) -> SweepReport:
    """Train the trials not yet in the store at `db`, `workers` at a time (default: all cores)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    report = SweepReport()
    with ResultsStore(db) as store:
        done = store.completed_keys()
        todo = [trial for trial in trials if trial.key not in done]
        report.skipped = len(trials) - len(todo)
        if report.skipped:
            logger.info("%d of %d trials already stored in %s; running the other %d",
                        report.skipped, len(trials), db, len(todo))
        if backend == "ray":
            outcomes = _run_ray(todo, workers, address)
        elif workers == 1 or len(todo) <= 1:
            outcomes = _run_here(todo)
        else:
            outcomes = _run_processes(todo, workers)
        with progress_bar("training", len(todo), enabled=progress, transient=False) as bar:
            for trial, outcome in outcomes:
                if isinstance(outcome, str):
                    logger.error("trial %s seed %d failed:\n%s", trial.strategy.name, trial.seed, outcome)
                    report.failed.append((trial, outcome))
                else:
                    store.save(outcome)
                    report.trained.append(outcome)
                    if on_result is not None:
                        on_result(outcome)
                bar.advance(f"done: {trial.strategy.name} seed {trial.seed}")
    return report


#: A trial and its run, or the error's traceback text.
Outcome = tuple[Trial, RunResult | str]


def _attempt(trial: Trial) -> Outcome:
    """Run a trial single-threaded, returning the error text instead of raising."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return trial, train_trial(trial)
    except Exception:  # one failing trial must not sink the sweep
        return trial, traceback.format_exc()
    finally:
        torch.set_num_threads(threads)


def _run_here(trials: list[Trial]) -> Iterator[Outcome]:
    for trial in trials:
        yield _attempt(trial)


def _run_processes(trials: list[Trial], workers: int) -> Iterator[Outcome]:
    # forkserver: workers fork from a clean server that has imported torch and lrkit once
    # (fast start), never from this process, which may already run torch threads.
    context = get_context("forkserver")
    context.set_forkserver_preload(["lrkit.experiments.training"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = {pool.submit(_attempt, trial) for trial in trials}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _run_ray(trials: list[Trial], workers: int, address: str | None) -> Iterator[Outcome]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote_attempt = ray.remote(num_cpus=1)(_attempt)
    try:
        pending = [remote_attempt.remote(trial) for trial in trials]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        if started_here:
            ray.shutdown()

