"""LR finder benchmark: suggestion quality, seed stability and wall time vs torch-lr-finder.

For every task x optimizer (SGD momentum 0.9, Adam) x seed (0, 1, 2):
  1. run lrkit's `find_lr` (100 iterations, 1e-7 .. 10) and torch-lr-finder's `range_test` on the same
     model initialisation and batch order; read every lrkit heuristic and torch-lr-finder's
     steepest-gradient rule (with its default plot skips 10/5, and without skips);
  2. train a fixed budget at every point of a 16-point log grid (1e-5 .. 1, a third of a decade
     apart) and at every suggestion: constant LR (primary) and cosine decay to 0 (secondary);
  3. score = final validation accuracy(suggestion) / best grid accuracy.
Seed stability: log10(max/min) of a heuristic's suggestion over the 3 seeds.
Wall time: lrkit `find_lr` vs torch-lr-finder (`LRFinder` + `range_test` + `reset`), both 100 iterations
with no early stop, progress bars off, interleaved, best of 7.

Run: .venv/bin/python bench/bench_finder.py   (needs bench/requirements.txt; ~5-10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import time
import warnings
from dataclasses import replace

import numpy as np
import torch
from torch import nn

import lrkit.schedules as S
from lrkit.suggest import HEURISTICS
from lrkit.tasks import Task, accuracy, get_task
from lrkit.tasks.digits import standardised_split
from lrkit.torch import ScheduledLR, find_lr
from lrkit.torch.optimizers import make_optimizer

warnings.filterwarnings("ignore")
import torch_lr_finder.lr_finder as tlf  # noqa: E402  (bench-only dependency)

tlf.tqdm = lambda iterable, *args, **kwargs: iterable  # progress bars off on both sides

GRID = np.logspace(-5, 0, 16)
SEEDS = (0, 1, 2)
NUM_ITER = 100


def _sklearn_task(name: str, loader: str, n_in: int, n_out: int, batch_size: int, epochs: int) -> Task:
    import sklearn.datasets

    data = standardised_split(*getattr(sklearn.datasets, loader)(return_X_y=True))
    return Task(name=name, description=name, load_data=lambda seed: data,
                build_model=lambda: nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, n_out)),
                criterion=nn.CrossEntropyLoss, metric=accuracy, metric_name="accuracy",
                batch_size=batch_size, epochs=epochs)


def _mnist1d_mlp() -> Task:
    """MNIST-1D (bundled mnist1d-cnn task's data: 4 000 train / 1 000 val) with a 2-hidden-layer MLP."""
    return replace(get_task("mnist1d-cnn"), name="mnist1d-mlp", description="mnist1d-mlp", epochs=15,
                   build_model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(40, 128), nn.ReLU(),
                                                     nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)))


def tasks() -> dict[str, Task]:
    """The benchmark's tasks by name; the default run uses the four MLP tasks (DEFAULT_TASKS)."""
    chosen = [get_task("digits-mlp"), _mnist1d_mlp(),
              _sklearn_task("breast-cancer-mlp", "load_breast_cancer", 30, 2, batch_size=32, epochs=20),
              _sklearn_task("wine-mlp", "load_wine", 13, 3, batch_size=16, epochs=30),
              get_task("mnist1d-cnn")]  # the demo's CNN at its own budget (30 epochs, batch 100)
    return {task.name: task for task in chosen}


DEFAULT_TASKS = ("digits-mlp", "mnist1d-mlp", "breast-cancer-mlp", "wine-mlp")


def fresh(task: Task, optimizer: str, seed: int):
    torch.manual_seed(seed)
    model = task.build_model()
    train, _ = task.loaders(seed)
    return model, make_optimizer(optimizer, model.parameters(), lr=1e-7), train


# -- the two finders ------------------------------------------------------------------------
def lrkit_suggestions(task: Task, optimizer: str, seed: int) -> dict[str, float]:
    model, opt, train = fresh(task, optimizer, seed)
    result = find_lr(model, opt, task.criterion(), train, num_iter=NUM_ITER, seed=seed, check="none", progress=False)
    return dict(result.suggestions)  # every rule on the curve; the check (bench_finder_check.py) is not scored here


def torch_lr_finder_suggestions(task: Task, optimizer: str, seed: int) -> dict[str, float]:
    model, opt, train = fresh(task, optimizer, seed)
    finder = tlf.LRFinder(model, opt, task.criterion())
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        finder.range_test(train, start_lr=1e-7, end_lr=10, num_iter=NUM_ITER)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for label, skips in (("tlf steepest", (10, 5)), ("tlf steepest, no skip", (0, 0))):
            fig, ax = plt.subplots()
            _, out[label] = finder.plot(skip_start=skips[0], skip_end=skips[1], suggest_lr=True, ax=ax)
            plt.close(fig)
        finder.reset()
    return out


# -- training at a fixed LR -------------------------------------------------------------------
def train_outputs(task: Task, optimizer: str, seed: int, lr: float, cosine: bool, epochs: int,
                  fraction: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation outputs and targets after ``max(1, round(fraction * epochs * batches per epoch))``
    updates at `lr`, constant or cosine-decayed to 0 over those updates; each epoch's batch order drawn
    from a generator seeded with `seed`. One loop for the finder benchmarks (bench_finder_check.py and
    bench_heldout.py train with it too)."""
    torch.manual_seed(seed)
    model = task.build_model()
    data = task.load_data(seed)
    x, y = data.train.tensors
    vx, vy = data.val.tensors
    opt = make_optimizer(optimizer, model.parameters(), lr=lr)
    steps = max(1, round(fraction * (epochs * math.ceil(len(x) / task.batch_size))))
    scheduler = ScheduledLR(opt, S.cosine(lr, steps)) if cosine else None
    criterion = task.criterion()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    done = 0
    while done < steps:
        for batch in torch.randperm(len(x), generator=generator).split(task.batch_size):
            if done == steps:
                break
            opt.zero_grad(set_to_none=True)
            criterion(model(x[batch]), y[batch]).backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            done += 1
    model.eval()
    with torch.no_grad():
        return model(vx), vy


def train_accuracy(task: Task, optimizer: str, seed: int, lr: float, cosine: bool) -> float:
    """Validation accuracy after `task.epochs` epochs at `lr` (constant, or cosine-decayed to 0)."""
    outputs, targets = train_outputs(task, optimizer, seed, lr, cosine, task.epochs)
    return 0.0 if not torch.isfinite(outputs).all() else accuracy(outputs, targets)


# -- wall time ----------------------------------------------------------------------------
def wall_times(task: Task, optimizer: str, rounds: int = 7) -> dict[str, float]:
    """Seconds per 100-iteration range test (best of `rounds`), no early stop, bars off.
    Also checks that both finders record bit-identical raw losses (no smoothing) on the same batches."""
    def ours():
        model, opt, train = fresh(task, optimizer, 0)
        start = time.perf_counter()
        result = find_lr(model, opt, task.criterion(), train, end_lr=0.1, num_iter=NUM_ITER, smooth=0.0,
                         diverge_factor=1e12, check="none", progress=False)  # the sweep alone, like theirs
        return time.perf_counter() - start, result.raw_losses

    def theirs():
        model, opt, train = fresh(task, optimizer, 0)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            finder = tlf.LRFinder(model, opt, task.criterion())
            finder.range_test(train, start_lr=1e-7, end_lr=0.1, num_iter=NUM_ITER, smooth_f=0.0, diverge_th=1e12)
            finder.reset()
        return time.perf_counter() - start, np.array(finder.history["loss"])

    best = {"lrkit": math.inf, "torch-lr-finder": math.inf}
    same = True
    for _ in range(rounds):
        (t_ours, ours_losses), (t_theirs, their_losses) = ours(), theirs()
        best["lrkit"] = min(best["lrkit"], t_ours)
        best["torch-lr-finder"] = min(best["torch-lr-finder"], t_theirs)
        same &= len(ours_losses) == len(their_losses) == NUM_ITER and np.array_equal(ours_losses, their_losses)
    best["identical raw losses"] = same
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds (default 0 1 2)")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=list(tasks()),
                        help=f"tasks (default {' '.join(DEFAULT_TASKS)})")
    args = parser.parse_args()
    torch.set_num_threads(1)
    began = time.perf_counter()
    records, timings = [], []
    known = tasks()
    for task in (known[name] for name in args.tasks):
        for optimizer in ("sgd", "adam"):
            timings.append({"task": task.name, "optimizer": optimizer, **wall_times(task, optimizer)})
            for seed in args.seeds:
                found = {**lrkit_suggestions(task, optimizer, seed),
                         **torch_lr_finder_suggestions(task, optimizer, seed)}
                for cosine in (False, True):
                    grid = [train_accuracy(task, optimizer, seed, lr, cosine) for lr in GRID]
                    best = max(grid)
                    scores = {name: train_accuracy(task, optimizer, seed, lr, cosine) / best
                              for name, lr in found.items()}
                    records.append({"task": task.name, "optimizer": optimizer, "seed": seed, "cosine": cosine,
                                    "suggestions": found, "scores": scores, "grid": grid,
                                    "best_grid_lr": float(GRID[int(np.argmax(grid))]), "best": best})
                print(f"{task.name:18s} {optimizer:4s} seed {seed}: " + ", ".join(
                    f"{k} {v:.3g}" for k, v in found.items()), flush=True)
    report(records, timings, time.perf_counter() - began)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"records": records, "timings": timings}, f, indent=1)


def report(records: list[dict], timings: list[dict], elapsed: float) -> None:
    names = list(records[0]["scores"])
    print(f"\nelapsed {elapsed:.0f} s\n")
    for cosine in (False, True):
        rows = [r for r in records if r["cosine"] == cosine]
        print(f"### accuracy(suggestion) / best grid accuracy, {'cosine decay' if cosine else 'constant LR'} "
              f"({len(rows)} runs)\n")
        print("| heuristic | median | worst | runs ≥ 0.98 |\n|---|---:|---:|---:|")
        for name in names:
            s = np.array([r["scores"][name] for r in rows])
            print(f"| {name} | {np.median(s):.3f} | {s.min():.3f} | {np.sum(s >= 0.98)}/{len(s)} |")
        print()
    print("### per task x optimizer (constant LR): median score, seed spread log10(max/min)\n")
    print("| task | optimizer | best grid LR (seeds) | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---:|" * len(names))
    spreads = {name: [] for name in names}
    for task, optimizer in dict.fromkeys((r["task"], r["optimizer"]) for r in records):
        rows = [r for r in records if r["task"] == task and r["optimizer"] == optimizer and not r["cosine"]]
        cells = []
        for name in names:
            lrs = [r["suggestions"][name] for r in rows]
            spread = math.log10(max(lrs) / min(lrs))
            spreads[name].append(spread)
            cells.append(f"{np.median([r['scores'][name] for r in rows]):.3f} / {spread:.2f}")
        best_lrs = ", ".join(f"{r['best_grid_lr']:.2g}" for r in rows)
        print(f"| {task} | {optimizer} | {best_lrs} | " + " | ".join(cells) + " |")
    print("\n### seed stability: log10(max/min) of the suggestion over the seeds\n")
    print("| heuristic | median | worst |\n|---|---:|---:|")
    for name in names:
        print(f"| {name} | {np.median(spreads[name]):.2f} | {max(spreads[name]):.2f} |")
    print("\n### wall time, 100 iterations (best of 7)\n")
    print("| task | optimizer | lrkit s | torch-lr-finder s | lrkit / tlf | identical raw losses |")
    print("|---|---|---:|---:|---:|---|")
    for t in timings:
        print(f"| {t['task']} | {t['optimizer']} | {t['lrkit']:.3f} | {t['torch-lr-finder']:.3f} | "
              f"{t['lrkit'] / t['torch-lr-finder']:.2f}× | {t['identical raw losses']} |")
    ratios = [t["lrkit"] / t["torch-lr-finder"] for t in timings]
    print(f"\nmedian ratio {np.median(ratios):.2f}×, worst {max(ratios):.2f}×")
    primary = [r for r in records if not r["cosine"]]

    def merit(name: str) -> tuple:
        scores = [r["scores"][name] for r in primary]
        met = int(np.median(scores) >= 0.995) + int(min(scores) >= 0.98) + int(np.median(spreads[name]) <= 0.3)
        return met, min(scores), np.median(scores)

    ranking = sorted((name for name in names if name in HEURISTICS), key=merit, reverse=True)
    print("\nlrkit heuristics ranked by targets met (median >= 0.995, worst >= 0.98, median seed spread <= 0.3; "
          f"constant LR), then worst, then median: {', '.join(f'{n} {merit(n)[0]}/3' for n in ranking)}")


if __name__ == "__main__":
    main()
