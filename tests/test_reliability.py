"""Reliability probes (issue 10): two first writers of a store, read-only stores, a dead worker,
killing / interrupting a sweep, bad output paths and huge sizes. Each asserts the outcome a user
must get; docs/reliability.md states the guarantees."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import pickle
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lrkit.experiments import runner
from lrkit.experiments.runner import plan, run_sweep
from lrkit.experiments.store import ResultsStore, StoreError
from lrkit.experiments.strategies import Strategy
from lrkit.report import load_runs
from report_runs import CLASSIFICATION, make_run

SHORT = Strategy("short", "test", lr=0.01)

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")


def _store_with_runs(path: Path, count: int = 2) -> Path:
    schedule, final, tau = CLASSIFICATION["cosine"]
    with ResultsStore(path) as store:
        for seed in range(count):
            store.save(make_run("t", "cosine", seed, schedule, final, tau))
    return path


# -- the store: two first writers, read-only files ---------------------------------------------
def _open_when_released(path: Path, barrier, results) -> None:
    barrier.wait()
    try:
        with ResultsStore(path) as store:
            store.completed_keys()
        results.put("ok")
    except Exception as err:  # reported to the test, which shows it
        results.put(repr(err))


def test_processes_creating_the_same_new_store_at_once_all_open_it(tmp_path):
    context = multiprocessing.get_context("fork")  # the children only open SQLite files
    for attempt in range(4):
        path = tmp_path / f"new{attempt}.sqlite"
        barrier, results = context.Barrier(6), context.Queue()
        processes = [context.Process(target=_open_when_released, args=(path, barrier, results)) for _ in range(6)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join()
        assert outcomes == ["ok"] * 6
        with ResultsStore(path) as store:
            assert store._version() == "2" and store.runs() == []


@contextlib.contextmanager
def _shared_folder() -> Iterator[Path]:
    """A folder an unprivileged user can enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="lrkit-ro-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in (folder, *folder.rglob("*")):
            path.chmod(0o777 if path.is_dir() else 0o666)
        shutil.rmtree(folder)


def _unprivileged(function: Callable[[], object]) -> object:
    """`function()` run where file permissions apply: here, or (as root, whom chmod does not stop)
    in a child process that became the user nobody. Returns its value; re-raises its exception."""
    if os.geteuid() != 0:
        return function()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, send the outcome, never return to pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
        except OSError as err:
            outcome: object = ("skip", f"cannot become an unprivileged user to test file permissions: {err}")
        else:
            try:
                outcome = ("value", function())
            except BaseException as err:
                outcome = ("error", err)
        with os.fdopen(writer, "wb") as pipe:
            pickle.dump(outcome, pipe)
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "skip":
        pytest.skip(value)
    if kind == "error":
        raise value
    return value


def _freeze(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)


def _stored_strategies(path: Path) -> list[tuple[str, int]]:
    return [(run.row.strategy, run.row.seed) for run in load_runs(path)]


@pytest.mark.parametrize("leftover_wal", [False, True], ids=["closed-cleanly", "killed-with-wal"])
def test_a_read_only_store_in_a_read_only_folder_can_be_reported(leftover_wal):
    with _shared_folder() as folder:
        path = _store_with_runs(folder / "r.sqlite")
        if leftover_wal:  # a writer killed with a run in the WAL file only
            pid = os.fork()
            if pid == 0:
                store = ResultsStore(path)
                schedule, final, tau = CLASSIFICATION["constant"]
                store.save(make_run("t", "constant", 0, schedule, final, tau))
                os._exit(0)  # no close: no checkpoint, the -wal file stays
            os.waitpid(pid, 0)
            assert Path(f"{path}-wal").stat().st_size > 0
        _freeze(folder)
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        expected = [("cosine", 0), ("cosine", 1)] + ([("constant", 0)] if leftover_wal else [])
        assert sorted(_unprivileged(lambda: _stored_strategies(path))) == sorted(expected)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_sweep_into_a_read_only_store_stops_before_training(monkeypatch):
    def must_not_train(trial):
        raise AssertionError("trained although the store cannot be written")

    monkeypatch.setattr(runner, "train_trial", must_not_train)
    trials = plan("diabetes-mlp", [SHORT], seeds=1, epochs=1, batch_size=32)
    with _shared_folder() as folder:
        path = _store_with_runs(folder / "r.sqlite")
        path.chmod(0o444)
        with pytest.raises(StoreError, match=r"^cannot write to the results store .*read-only") as caught:
            _unprivileged(lambda: run_sweep(trials, path, workers=1, progress=False))
        assert "\n" not in str(caught.value)


# -- killing and interrupting a sweep -----------------------------------------------------------
SWEEPS = textwrap.dedent("""
    import dataclasses, json, signal, sys
    from lrkit.experiments.runner import SweepInterrupted, plan, run_sweep
    from lrkit.experiments.strategies import Strategy
    from lrkit.experiments.training import Trial


    @dataclasses.dataclass(frozen=True)
    class KilledInWorker(Trial):
        # Its worker is killed by SIGKILL (what the out-of-memory killer sends) as it unpickles it.
        def __reduce__(self):
            return signal.raise_signal, (signal.SIGKILL,)


    if __name__ == "__main__":  # a sweep with a dying worker, then one sweep per store, each stopped by the test
        short = plan("diabetes-mlp", [Strategy("short", "test", lr=0.01)], seeds=3, epochs=1, batch_size=32)
        doomed = KilledInWorker("diabetes-mlp", Strategy("doomed", "test", lr=0.01), 0, 1, 32)
        report = run_sweep([short[0], doomed, short[1], short[2]], sys.argv[1], workers=2, progress=False)
        print(json.dumps({"failed": [[trial.strategy.name, why] for trial, why in report.failed],
                          "trained": sorted(run.seed for run in report.trained)}), flush=True)
        long = plan("diabetes-mlp", [Strategy(f"long{i}", "test", lr=0.01) for i in range(4)], seeds=1,
                    epochs=5000, batch_size=32)
        for db in sys.argv[2:]:
            try:
                run_sweep(short[:1] + long, db, workers=2, progress=False)
            except SweepInterrupted as stop:
                print(128 + stop.signal, stop, flush=True)
""")


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                table[int(entry)] = (int(fields[1]), fields[0])
    return table


def _descendants(pid: int) -> set[int]:
    table, found, frontier = _proc_table(), set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    table = _proc_table()
    return {pid for pid in pids if pid in table and table[pid][1] not in "ZX"}


def _wait_until_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pids)


def _busy_workers(process: subprocess.Popen, db: Path) -> set[int]:
    """The worker processes (the forkserver's children) once the sweep into `db` has stored its short
    trial and both workers train a long one."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
        family = _descendants(process.pid)
        table = _proc_table()
        workers = {pid for pid in family if table.get(pid, (0, ""))[0] in family}  # grandchildren
        with contextlib.suppress(StoreError, FileNotFoundError, sqlite3.Error), \
                ResultsStore(db, readonly=True) as store:
            if len(store.completed_keys()) == 1 and len(workers) == 2:
                return workers
    raise AssertionError(f"the sweep into {db.name} did not get going")


class _Lines:
    """The lines a process prints, read by a thread, so that waiting for one can time out."""

    def __init__(self, stream):
        self._lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in stream:
                self._lines.put(line)
            self._lines.put(None)  # end of output

        threading.Thread(target=read, daemon=True).start()

    def next(self, timeout: float) -> str:
        line = self._lines.get(timeout=timeout)
        assert line is not None, "the process ended before printing the line (its stderr is in the test's tmp_path)"
        return line.strip()


@needs_proc
def test_a_dead_worker_ctrl_c_sigterm_and_kill_9(tmp_path):
    """One parent (the forkserver starts once), four sweeps: a worker killed by SIGKILL fails only its
    trial and the sweep goes on; Ctrl-C, then SIGTERM stop a sweep at once keeping its finished run;
    kill -9 of the parent leaves no process behind."""
    script, stderr = tmp_path / "sweeps.py", tmp_path / "stderr.txt"
    script.write_text(SWEEPS)
    dead_worker = tmp_path / "dead-worker.sqlite"
    dbs = [tmp_path / f"{name}.sqlite" for name in ("ctrl-c", "sigterm", "kill-9")]
    with stderr.open("w") as err:
        process = subprocess.Popen([sys.executable, str(script), str(dead_worker), *map(str, dbs)],
                                   stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    lines = _Lines(process.stdout)
    try:
        outcome = json.loads(lines.next(timeout=180))
        [(name, why)] = outcome["failed"]
        assert name == "doomed" and why.startswith("worker process died: killed by signal 9 (SIGKILL")
        assert outcome["trained"] == [0, 1, 2]
        with ResultsStore(dead_worker, readonly=True) as store:
            assert sorted(run.seed for run in store.runs()) == [0, 1, 2]
        for db, how, number in ((dbs[0], "ctrl-c", signal.SIGINT), (dbs[1], "sigterm", signal.SIGTERM)):
            workers = _busy_workers(process, db)
            started = time.monotonic()
            if how == "ctrl-c":  # the terminal sends SIGINT to the whole process group
                os.killpg(process.pid, signal.SIGINT)
            else:  # `kill PID`
                os.kill(process.pid, signal.SIGTERM)
            line = lines.next(timeout=30)
            assert time.monotonic() - started < 5.0, f"{how}: in-flight trials were not abandoned quickly"
            assert line == (f"{128 + number} interrupted: kept 1 finished run in {db}; 4 trials not run — "
                            "run the same command to continue")
            assert _wait_until_gone(workers, 5.0) == set(), f"{how}: workers survived"
            with ResultsStore(db, readonly=True) as store:
                assert [run.strategy for run in store.runs()] == ["short"]
        _busy_workers(process, dbs[2])
        family = _descendants(process.pid)
        assert len(family) >= 4  # the forkserver, its resource tracker, two workers
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert _wait_until_gone(family, 5.0) == set(), "processes survived the sweep's kill -9"
        assert "Traceback" not in stderr.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in _alive(_descendants(process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def test_an_interrupt_in_a_single_process_sweep_keeps_what_finished(tmp_path, monkeypatch):
    trials = plan("diabetes-mlp", [SHORT], seeds=3, epochs=1, batch_size=32)
    schedule, final, tau = CLASSIFICATION["cosine"]

    def interrupted_at_the_second(trial):
        if trial.seed == 1:
            raise KeyboardInterrupt
        return dataclasses.replace(make_run("diabetes-mlp", "short", trial.seed, schedule, final, tau), key=trial.key)

    monkeypatch.setattr(runner, "train_trial", interrupted_at_the_second)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(runner.SweepInterrupted) as caught:
        run_sweep(trials, tmp_path / "r.sqlite", workers=1, progress=False)
    stop = caught.value
    assert (len(stop.report.trained), stop.not_run, stop.signal) == (1, 2, signal.SIGINT)
    assert str(stop) == (f"interrupted: kept 1 finished run in {tmp_path / 'r.sqlite'}; 2 trials not run — "
                         "run the same command to continue")
    assert isinstance(stop, KeyboardInterrupt)  # code that does not know it stops as on Ctrl-C
    with ResultsStore(tmp_path / "r.sqlite", readonly=True) as store:
        assert [run.seed for run in store.runs()] == [0]
    assert signal.getsignal(signal.SIGTERM) is handler  # the sweep's own handler is gone


# -- bad output paths, huge sizes, values that overflow ------------------------------------------
SPEC = "cosine(lr=0.1, decay_steps=10)"


def _cli(*args: str):
    from typer.testing import CliRunner

    from lrkit.cli import app

    return CliRunner().invoke(app, list(args))


def _words(output: str) -> str:
    """A usage error's text without rich's panel, line wrapping or spaces (rich may break a long path
    anywhere, at a width that depends on the terminal); match it with `_unspaced` patterns."""
    return re.sub(r"[│╭╮╰╯─\s]", "", output)


def _unspaced(pattern: str) -> str:
    return pattern.replace(" ", "")


@pytest.mark.parametrize("name, message", [
    ("nodir/s.png", r"the folder \S*nodir does not exist \(create it first\)"),
    (".", r"\S+ is a directory; give a file name"),
    ("s.xyz", r"\S*/s\.xyz: unknown file type \.xyz; use one of \.png, "),
    ("schedule", r"\S*/schedule: unknown file type \(no extension\)"),
])
@pytest.mark.parametrize("command", ["plot", "report"])
def test_a_bad_output_path_is_one_usage_error_before_any_work(tmp_path, command, name, message):
    args = ["plot", SPEC, "-n", "5"] if command == "plot" else ["report", str(tmp_path / "missing.sqlite")]
    if command == "report":
        name, message = name.replace(".png", ".html"), message.replace(r"\.png", r"\.html")
    result = _cli(*args, "-o", str(tmp_path / name))
    assert result.exit_code == 2, result.output
    assert re.search(_unspaced(r"Invalid value for --output: " + message), _words(result.output)), result.output
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder made


def test_plot_writes_the_file_it_names(tmp_path):
    result = _cli("plot", SPEC, "-n", "5", "-o", str(tmp_path / "s.svg"))
    assert result.exit_code == 0 and result.stdout == f"wrote {tmp_path / 's.svg'}\n"
    assert (tmp_path / "s.svg").read_text().startswith("<?xml")


@pytest.mark.parametrize("steps", ["10000001", str(10**30), "1e8"])
def test_plot_steps_are_bounded(steps):
    result = _cli("plot", SPEC, "-n", steps, "--json")
    assert result.exit_code == 2
    assert re.search(_unspaced(r"less than or equal to 10000000|should be a valid integer"), _words(result.output))


def test_plot_json_is_valid_json_with_null_for_non_finite_values():
    result = _cli("plot", "exponential(lr=0.1, decay_steps=1, decay_rate=1e300)", "-n", "4", "--json")
    assert result.exit_code == 0
    values = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert values["lr"][:2] == [0.1, pytest.approx(1e299)] and values["lr"][2:] == [None, None]


@pytest.mark.parametrize("kwargs, message", [
    ({"t_mul": 1e308}, r"t_mul must be in \[1.0, 1000000.0\]"),
    ({"first_cycle_steps": 1e-300}, r"first_cycle_steps must be >= 1e-06"),
    ({"m_mul": 1e308}, r"m_mul must be in \(0.0, 1.0\]"),
])
def test_sgdr_refuses_parameters_whose_lrs_overflow(kwargs, message):
    from lrkit.schedules import sgdr

    with pytest.raises(ValueError, match="sgdr: " + message):
        sgdr(**{"lr": 0.1, "first_cycle_steps": 100, **kwargs})


def test_sgdr_at_its_bounds_stays_finite_for_every_step():
    import numpy as np

    from lrkit.schedules import sgdr
    from lrkit.schedules.cosine import MAX_T_MUL, MIN_CYCLE_STEPS

    steps = np.concatenate([np.arange(3000.0), np.geomspace(1.0, 2.0**53, 3000)])
    for first in (MIN_CYCLE_STEPS, 1.0, 100.0, 1e300):
        for t_mul in (1.0, 1.0 + 1e-12, 2.0, MAX_T_MUL):
            assert np.isfinite(sgdr(0.1, first, t_mul=t_mul, m_mul=0.5)(steps)).all(), (first, t_mul)


@pytest.mark.parametrize("failure", [TimeoutError("Ray did not start in time\nsee the logs"), None])
def test_a_ray_backend_that_cannot_start_is_one_line(tmp_path, monkeypatch, failure):
    import types

    if failure is None:  # Ray not installed
        monkeypatch.setitem(sys.modules, "ray", None)
        message = r"backend 'ray' needs Ray: pip install 'lrkit\[ray\]'"
    else:
        def init(**kwargs):
            raise failure

        monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False, init=init))
        message = (r"could not start or reach the Ray cluster at ray://nowhere:1: "
                   r"TimeoutError: Ray did not start in time$")
    trials = plan("diabetes-mlp", [SHORT], seeds=2, epochs=1, batch_size=32)
    with pytest.raises(runner.BackendError, match=message):
        run_sweep(trials, tmp_path / "r.sqlite", workers=2, backend="ray", address="ray://nowhere:1", progress=False)


def test_a_sweep_whose_every_trial_fails_lists_the_failures_without_a_traceback(tmp_path):
    import dataclasses

    from lrkit.tasks import available_tasks, get_task, register_task

    def broken_model():
        raise RuntimeError("this model cannot be built")

    if "broken-model-test" not in available_tasks():
        register_task(dataclasses.replace(get_task("diabetes-mlp"), name="broken-model-test", build_model=broken_model))
    result = _cli("compare", "--task", "broken-model-test", "-s", "adam", "--seeds", "2", "--epochs", "1",
                  "--db", str(tmp_path / "r.sqlite"), "-w", "1", "-q")
    assert result.exit_code == 1, result.output
    assert "trained 0 run(s), 0 already stored, 2 failed" in result.output
    assert result.output.count("RuntimeError: this model cannot be built") == 2
    assert isinstance(result.exception, SystemExit)  # typer.Exit(1), not a crash of the summary
