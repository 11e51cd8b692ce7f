"""Run a sweep of trials in parallel (processes or Ray) and store each as it completes.

Only the parent process writes to the store, one transaction per finished run: killing the
sweep loses at most the runs in flight, and running the same command again trains only the
trials whose keys are not stored yet.

The process backend runs `workers` worker processes, each training one trial at a time:

* a worker that dies (``kill -9``, the out-of-memory killer) fails only the trial it was
  running, with the reason; a fresh worker takes the next trial and the sweep goes on;
* every worker watches a lifeline pipe whose only writing end this process holds, and ends
  itself the moment it closes: when the sweep ends, and when its process dies, even by
  ``kill -9`` (then the forkserver and its resource tracker, which live as long as a worker or
  this process does, end too);
* Ctrl-C (SIGINT) and SIGTERM stop the sweep at once: no new trial starts, in-flight trials
  are abandoned (their workers killed; workers ignore both signals themselves), every finished
  run stays stored, and `SweepInterrupted` says what was kept.

A parent-death signal (Linux ``PR_SET_PDEATHSIG``) would not do instead of the lifeline: a
worker's parent is the forkserver, which lives as long as any worker holds its pipe.

docs/reliability.md states these guarantees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import torch

from lrkit.experiments.results import RunResult
from lrkit.experiments.store import ResultsStore
from lrkit.experiments.strategies import Strategy
from lrkit.experiments.training import Trial, train_trial
from lrkit.experiments.workers import worker_context
from lrkit.progress import progress_bar

logger = logging.getLogger(__name__)

BACKENDS = ("process", "ray")


@dataclass
class SweepReport:
    """What a sweep did: runs trained now, runs found already stored, trials that failed."""

    trained: list[RunResult] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[Trial, str]] = field(default_factory=list)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped a sweep. Every run it finished is stored.

    `report`: what the sweep did until then; `not_run`: trials it neither stored nor failed (in
    flight or waiting), which the same command trains when run again; `signal`: the signal that
    stopped it (a command exits with status 128 + signal). ``str()`` is the one line to print.
    A KeyboardInterrupt, so code that does not know it stops as Ctrl-C would stop it.
    """

    def __init__(self, report: SweepReport, not_run: int, db: Path, signal_number: int):
        super().__init__()
        self.report = report
        self.not_run = not_run
        self.db = db
        self.signal = signal_number

    def __str__(self) -> str:
        kept = len(self.report.trained)
        text = (f"interrupted: kept {kept} finished run{'' if kept == 1 else 's'} in {self.db}; "
                f"{self.not_run} trial{'' if self.not_run == 1 else 's'} not run")
        if self.report.failed:
            text += f", {len(self.report.failed)} failed"
        return text + " — run the same command to continue"


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
    """Train the trials not yet in the store at `db`, `workers` at a time (default: all cores).

    A store that cannot be written is refused (`StoreError`) before anything trains. A trial that
    raises, or whose worker process dies, is reported in `SweepReport.failed` with the reason and
    the sweep goes on. Ctrl-C or SIGTERM raise `SweepInterrupted` once the workers are stopped;
    a Ray backend that cannot start raises `BackendError` (one line).
    """
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
        signals = _Signals()
        if backend == "ray":
            outcomes = _run_ray(todo, workers, address)
        elif workers == 1 or len(todo) <= 1:
            outcomes = _run_here(todo)
        else:
            outcomes = _run_processes(todo, workers, signals)
            signals.deferred = True
        try:
            with signals, contextlib.closing(outcomes), \
                    progress_bar("training", len(todo), enabled=progress, transient=False) as bar:
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
        except KeyboardInterrupt as stop:
            number = signal.SIGTERM if isinstance(stop, _Terminated) else signal.SIGINT
            not_run = len(todo) - len(report.trained) - len(report.failed)
            raise SweepInterrupted(report, not_run, Path(db), number) from None
    return report


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, as Ctrl-C raises KeyboardInterrupt."""


class _Signals:
    """Ctrl-C (SIGINT) and SIGTERM during a sweep.

    Training in this process (one worker), they raise where the main thread is (SIGTERM as
    `_Terminated`), so training stops at once. With worker processes (``deferred``), they are only
    noted, and a byte on `wake` makes the sweep's wait return: the sweep raises them there, never
    in the middle of starting a worker or writing a run to the store. Only the main thread can set
    handlers; elsewhere the defaults stay.
    """

    def __init__(self) -> None:
        self.deferred = False
        self.caught: list[int] = []
        self.wake, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            handler = self._note if self.deferred else self._raise
            for number in (signal.SIGINT, signal.SIGTERM) if self.deferred else (signal.SIGTERM,):
                self._previous[number] = signal.signal(number, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        os.close(self.wake)
        os.close(self._write)

    def _note(self, number: int, frame: object) -> None:
        self.caught.append(number)
        with contextlib.suppress(OSError):  # the pipe is full: a wake-up is pending already
            os.write(self._write, b"\0")

    @staticmethod
    def _raise(number: int, frame: object) -> None:
        raise _Terminated() if number == signal.SIGTERM else KeyboardInterrupt()

    def raise_caught(self) -> None:
        """Raise the first signal noted (called where the sweep waits)."""
        if self.caught:
            raise _Terminated() if self.caught[0] == signal.SIGTERM else KeyboardInterrupt()


#: A trial and its run, or the error's text.
Outcome = tuple[Trial, RunResult | str]
#: The outcomes of a sweep's trials as they finish; closing it stops the work still running.
Outcomes = Generator[Outcome, None, None]


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


def _run_here(trials: list[Trial]) -> Outcomes:
    for trial in trials:
        yield _attempt(trial)


def _run_processes(trials: list[Trial], workers: int, signals: _Signals) -> Outcomes:
    """The trials' outcomes, in the order they finish, from `workers` worker processes; a signal
    noted by `signals` is raised while waiting for them.

    forkserver: workers fork from a clean server that has imported torch and lrkit once (fast
    start), never from this process, which may already run torch threads.
    """
    context = worker_context()
    waiting = deque(trials)
    lifeline, keep_alive = context.Pipe(duplex=False)  # only this process holds `keep_alive`
    slots: list[_Worker | None] = [None] * min(workers, len(trials))
    try:
        while True:
            for i, worker in enumerate(slots):
                if waiting and (worker is None or worker.trial is None):
                    if worker is None or not worker.process.is_alive():  # a worker may die while idle
                        if worker is not None:
                            worker.stop()
                        worker = slots[i] = _Worker(context, lifeline)
                    worker.give(waiting.popleft())
            busy = [worker for worker in slots if worker is not None and worker.trial is not None]
            if not busy:
                return
            signals.raise_caught()
            ready = set(wait([signals.wake, *(handle for worker in busy for handle in (worker.conn,
                                                                                       worker.process.sentinel))]))
            signals.raise_caught()
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    yield worker.take()
    finally:
        keep_alive.close()  # every worker ends itself now, whatever happens below
        for worker in slots:
            if worker is not None:
                worker.stop()
        lifeline.close()


class _Worker:
    """A worker process, our end of its connection, and the trial it is running (None when idle)."""

    def __init__(self, context: ForkServerContext, lifeline: Connection):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, lifeline), name="lrkit-worker")
        self.process.start()
        child.close()
        self.trial: Trial | None = None

    def give(self, trial: Trial) -> None:
        """Start `trial` here. Should the process be dead already, `take` reports why."""
        self.trial = trial
        with contextlib.suppress(OSError):
            self.conn.send(trial)

    def take(self) -> Outcome:
        """The outcome of the running trial, once the process sent it or died (then the reason is the error)."""
        trial, self.trial = self.trial, None
        assert trial is not None  # only a busy worker is asked
        try:
            return self.conn.recv()
        except (EOFError, OSError):  # it died before (or while) sending
            self.process.join()
            return trial, _death(self.process.exitcode)

    def stop(self) -> None:
        if self.process.exitcode is None:  # never signal a pid that may already be another process's
            self.process.kill()
        self.process.join()
        self.conn.close()


def _death(exitcode: int | None) -> str:
    """Why a worker sent no result, as its trial's one-line error."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "an unknown signal"
        hint = ", which the out-of-memory killer sends" if number == signal.SIGKILL else ""
        return (f"worker process died: killed by signal {number} ({name}{hint}); the trial was not stored "
                "(run the same command to retry it)")
    return (f"worker process died: it exited with status {exitcode} without a result; the trial was not stored "
            "(run the same command to retry it)")


def _serve(conn: Connection, lifeline: Connection) -> None:
    """A worker's life: train each trial that arrives on `conn` and send back its outcome, until
    `conn` closes; end at once when the sweep's process closes the lifeline or dies."""
    # Ctrl-C (and a service manager's SIGTERM) reach the whole process group: the sweep decides, and
    # the lifeline ends this process when the sweep's does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_end_with_sweep, args=(lifeline,), name="lrkit-lifeline", daemon=True).start()
    while True:
        try:
            trial = conn.recv()
        except EOFError:
            return
        conn.send(_attempt(trial))


def _end_with_sweep(lifeline: Connection) -> None:
    """Wait for end-of-file on the lifeline (nothing is ever written to it), then end this process."""
    try:
        lifeline.poll(None)
    finally:
        os._exit(1)


class BackendError(ValueError):
    """The backend could not start (Ray missing, its cluster unreachable or slow to start)."""


def _run_ray(trials: list[Trial], workers: int, address: str | None) -> Outcomes:
    try:
        import ray
    except ImportError:
        raise BackendError("backend 'ray' needs Ray: pip install 'lrkit[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        except Exception as err:  # Ray raises ConnectionError, TimeoutError, RuntimeError, ...
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            reason = (str(err).strip().splitlines() or [""])[0]
            raise BackendError(f"could not start or reach {where}: {type(err).__name__}: {reason}") from None
    remote_attempt = ray.remote(num_cpus=1)(_attempt)
    try:
        pending = [remote_attempt.remote(trial) for trial in trials]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        if started_here:
            ray.shutdown()
