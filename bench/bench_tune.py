"""tune_lr benchmark: the LR of a whole run from short real runs, against the range test's
suggestion and a full LR grid.

For every task x schedule (constant LR, cosine to 0; one-cycle on request) x seed, with SGD (momentum 0.9):
  - grid: one full run at each of G log-spaced LRs (16 from 1e-5 to 1; --quick: 10 from 1e-3 to 1),
    G runs of compute; its best final metric is the reference;
  - finder: `find_lr`'s suggestion (100 iterations, the default rule) trained for the full run;
    compute = the range test's optimizer steps + 1 run;
  - tune_lr(budget=B, default 1): its LR trained for the full run; compute = its cost + 1 run.
Score: final validation metric / the grid's best (best / metric when lower is better; 0 when the
run diverged). Compute is counted in runs of the task (epochs x batches optimizer steps). Every
run is `lrkit.experiments.training.train_trial` (the comparison runner's loop), from the same
initialisation and batch order for a seed.

Run:  .venv/bin/python bench/bench_tune.py             (3 tasks x 2 schedules x 3 seeds; long)
      .venv/bin/python bench/bench_tune.py --quick     (2 tasks, 1 seed, 10-point grid, mnist1d-cnn at
                                                        10 epochs: a few minutes on one core)
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from lrkit.experiments.strategies import Strategy
from lrkit.experiments.training import Trial, train_trial
from lrkit.experiments.tune_on_task import tune_lr_on_task
from lrkit.tasks import Task, get_task
from lrkit.torch import find_lr
from lrkit.torch.optimizers import make_optimizer

TASKS = ("digits-mlp", "mnist1d-cnn", "diabetes-mlp")
SCHEDULES = {"constant": None, "cosine": "cosine(lr={lr}, decay_steps={total_steps})",
             "one_cycle": "one_cycle(max_lr={lr}, total_steps={total_steps})"}
OPTIMIZER = "sgd"


def final_metric(task: Task, epochs: int, seed: int, lr: float, schedule: str) -> float:
    """The validation metric after a full run at `lr` (nan when it diverged)."""
    strategy = Strategy(f"bench-{lr:.4g}", "bench", optimizer=OPTIMIZER, lr=float(lr), schedule=SCHEDULES[schedule])
    result = train_trial(Trial(task.name, strategy, seed, epochs, task.batch_size))
    return result.epoch_metric[-1] if result.status == "complete" else math.nan


def score(metric: float, best: float, higher_is_better: bool) -> float:
    if not math.isfinite(metric):
        return 0.0
    return metric / best if higher_is_better else best / metric


def finder_suggestion(task: Task, seed: int, run_steps: int) -> tuple[float, float]:
    """The range test's suggestion and its cost in runs (every optimizer step counted)."""
    torch.manual_seed(seed)
    model = task.build_model()
    train, _ = task.loaders(seed)
    optimizer = make_optimizer(OPTIMIZER, model.parameters(), lr=1e-7)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    result = find_lr(model, optimizer, task.criterion(), train, seed=seed, progress=False)
    return float(result.suggestion), len(steps) / run_steps


def measure(task: Task, epochs: int, seed: int, schedule: str, grid: np.ndarray, budget: float) -> dict:
    run_steps = epochs * len(task.loaders(seed)[0])
    grid_metrics = [final_metric(task, epochs, seed, lr, schedule) for lr in grid]
    finite = [m for m in grid_metrics if math.isfinite(m)]
    best = (max if task.higher_is_better else min)(finite)
    finder_lr, finder_cost = finder_suggestion(task, seed, run_steps)
    started = time.perf_counter()
    tuned = tune_lr_on_task(task, OPTIMIZER, schedule=schedule, budget=budget, epochs=epochs, seed=seed,
                            progress=False)
    tune_seconds = time.perf_counter() - started
    finder_metric = final_metric(task, epochs, seed, finder_lr, schedule)
    tuned_metric = final_metric(task, epochs, seed, tuned.lr, schedule)
    return {"task": task.name, "schedule": schedule, "seed": seed, "epochs": epochs, "run_steps": run_steps,
            "grid": grid.tolist(), "grid_metrics": grid_metrics, "best": best,
            "best_lr": float(grid[grid_metrics.index(best)]), "higher_is_better": task.higher_is_better,
            "finder": {"lr": finder_lr, "metric": finder_metric, "score": score(finder_metric, best,
                                                                                 task.higher_is_better),
                       "compute": finder_cost + 1},
            "tune": {"lr": tuned.lr, "metric": tuned_metric, "score": score(tuned_metric, best, task.higher_is_better),
                     "compute": tuned.cost + 1, "cost": tuned.cost, "seconds": tune_seconds,
                     "trials": len(tuned.trials), "horizon": tuned.horizon / run_steps, "notes": list(tuned.notes)}}


def report(records: list[dict], grid_points: int, budget: float, elapsed: float) -> None:
    print(f"\nelapsed {elapsed:.0f} s; compute in runs (the final training run included)\n")
    print("| task | schedule | seed | grid best LR | finder LR | finder score | tune_lr LR | tune_lr score | "
          "tune_lr cost | trials | horizon |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in records:
        f, t = r["finder"], r["tune"]
        print(f"| {r['task']} | {r['schedule']} | {r['seed']} | {r['best_lr']:.3g} | {f['lr']:.3g} | "
              f"{f['score']:.3f} | {t['lr']:.3g} | {t['score']:.3f} | {t['cost']:.2f} | {t['trials']} | "
              f"{t['horizon']:.0%} |")
    print("\n| method | median score | worst score | compute (runs) |\n|---|---:|---:|---:|")
    for name, label in (("finder", "range test's suggestion"), ("tune", f"tune_lr (budget {budget:g})")):
        scores = [r[name]["score"] for r in records]
        compute = [r[name]["compute"] for r in records]
        print(f"| {label} | {np.median(scores):.3f} | {min(scores):.3f} | {np.mean(compute):.2f} |")
    print(f"| {grid_points}-point grid | 1.000 | 1.000 | {grid_points} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 tasks, 1 seed, 10-point grid, mnist1d-cnn at 10 epochs")
    parser.add_argument("--epochs", type=int, help="epochs of every run (default: the task's; --quick: mnist1d-cnn 10)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, help=f"tasks (default {' '.join(TASKS)})")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--schedules", nargs="+", choices=list(SCHEDULES), default=["constant", "cosine"],
                        help="schedules (default constant cosine)")
    parser.add_argument("--budget", type=float, default=1.0, help="tune_lr's budget in runs (default 1)")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    names = args.tasks or (TASKS[:2] if args.quick else TASKS)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    grid = np.logspace(-3, 0, 10) if args.quick else np.logspace(-5, 0, 16)
    epochs = {"mnist1d-cnn": 10} if args.quick else {}
    if args.epochs:
        epochs = dict.fromkeys(names, args.epochs)
    began = time.perf_counter()
    records = []
    for task in map(get_task, names):
        for schedule in args.schedules:
            for seed in seeds:
                record = measure(task, epochs.get(task.name, task.epochs), seed, schedule, grid, args.budget)
                records.append(record)
                print(f"{task.name} {schedule} seed {seed}: grid best {record['best']:.4g} at {record['best_lr']:.3g}; "
                      f"finder {record['finder']['lr']:.3g} -> {record['finder']['score']:.3f}; "
                      f"tune_lr {record['tune']['lr']:.3g} -> {record['tune']['score']:.3f} "
                      f"(cost {record['tune']['cost']:.2f}, {record['tune']['seconds']:.0f} s)", flush=True)
    report(records, len(grid), args.budget, time.perf_counter() - began)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
