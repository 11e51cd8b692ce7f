"""The runner's training loop vs a plain PyTorch loop on the same model and data (issue 12, item 4).

    .venv/bin/python bench/bench_throughput.py [--train 6000] [--epochs 2] [--repeats 3] [--lr 0.05]

Both sides train the ``fashion-cnn`` model (BatchNorm CNN, batch 128) on the same fixed stratified subset
of the Fashion-MNIST training images (`--train`, default 6 000) for `--epochs` epochs and evaluate it after
every epoch on the same fixed stratified 2 000 test images; same seed (torch seeded, then the model built,
then the loaders with the task's seeded generator), so both see the same initial weights and batch order and
should end at the same accuracy (checked and printed). One CPU thread, interleaved (the order alternates every
repeat), best of `--repeats`.

* runner: `run_sweep` with one trial (in-process, `workers=1`) into a fresh SQLite store, the progress bar on
  (and, as a third side, off):
  `train_trial` (step and epoch records, `ScheduledLR`, the evaluation point, the per-step finiteness check),
  the store's transaction and the bar. The strategy has a fixed LR (`--lr`, SGD momentum 0.9, constant
  `ScheduledLR`) so no LR range test runs; the range test's cost is timed separately below.
* plain: ``torch.optim.SGD(lr, momentum=0.9)``, ``zero_grad / forward / backward / step`` over the loader,
  then a plain ``model.eval()`` + ``no_grad`` pass over the validation loader that keeps the logits and
  computes the loss and accuracy (what the runner's evaluation computes).

Reported: time of the whole call (model and loaders built, training, evaluations, store write), per epoch,
wall and CPU (process) time; overhead = runner / plain - 1, per epoch (target <= 3 %). Also the runner's own
per-epoch times (`RunResult.epoch_time`) against the plain loop's, and the cost of one range test (100
iterations plus its hold check) on the same data, which a ``lr="finder"`` strategy pays once per run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import torch

from bench_claims import fashion_subset  # the claims' subset, at this script's sizes
from lrkit.experiments.runner import run_sweep
from lrkit.experiments.strategies import Strategy, default_strategies
from lrkit.experiments.training import Trial, finder_lr
from lrkit.tasks import TaskData, get_task, register_task

TASK = "fashion-cnn-throughput"
VAL = 2_000
BATCH = 128
SEED = 0


def register(train: int, epochs: int) -> None:
    """``fashion-cnn`` on a fixed stratified `train`-image subset, validated on 2 000 test images."""
    cache: dict[int, TaskData] = {}

    def load(seed: int) -> TaskData:
        if not cache:
            cache[0] = fashion_subset(train, VAL)
        return cache[0]

    register_task(replace(get_task("fashion-cnn"), name=TASK, load_data=load, epochs=epochs,
                          description=f"fashion-cnn on a fixed {train} / {VAL} subset"))


def runner(strategy: Strategy, epochs: int, folder: Path, tag: str, progress: bool = True) -> dict:
    trial = Trial(TASK, strategy, SEED, epochs, BATCH)
    wall, cpu = time.perf_counter(), time.process_time()
    report = run_sweep([trial], folder / f"throughput-{tag}-{progress}.sqlite", workers=1, progress=progress)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(report.trained) == 1 and not report.failed, report.failed
    result = report.trained[0]
    return {"wall": wall, "cpu": cpu, "epochs": list(result.epoch_time), "metric": result.final_metric}


@torch.no_grad()
def plain_evaluate(model: torch.nn.Module, loader, criterion) -> tuple[float, float]:
    model.eval()
    outputs, targets = [], []
    for x, y in loader:
        outputs.append(model(x))
        targets.append(y)
    model.train()
    out, target = torch.cat(outputs), torch.cat(targets)
    return criterion(out, target).item(), (out.argmax(dim=1) == target).float().mean().item()


def plain(lr: float, epochs: int) -> dict:
    task = get_task(TASK)
    wall, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    model = task.build_model()
    train_loader, val_loader = task.loaders(SEED, BATCH)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    criterion = task.criterion()
    epoch_times, metric = [], float("nan")
    for _ in range(epochs):
        start = time.perf_counter()
        for inputs, targets in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
        _, metric = plain_evaluate(model, val_loader, criterion)
        epoch_times.append(time.perf_counter() - start)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "epochs": epoch_times,
            "metric": metric}


def range_test_seconds(epochs: int) -> float:
    """One LR range test of the ``constant-finder`` strategy on the same model and data."""
    task = get_task(TASK)
    torch.manual_seed(SEED)
    model = task.build_model()
    train_loader, _ = task.loaders(SEED, BATCH)
    start = time.perf_counter()
    finder_lr(task, default_strategies()["constant-finder"], model, train_loader, len(train_loader) * epochs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=6000, help="training images (fixed stratified subset)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05, help="the fixed SGD LR of both loops")
    args = parser.parse_args()
    torch.set_num_threads(1)
    register(args.train, args.epochs)
    strategy = Strategy(f"constant-{args.lr:g}", "SGD, fixed constant LR (no range test)", lr=args.lr)
    get_task(TASK).load_data(SEED)  # decode the data once, outside every timing
    print(f"bench_throughput {date.today()}, {platform.machine()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread; {args.train} images x {args.epochs} epochs, "
          f"validation {VAL} images, batch {BATCH}, best of {args.repeats}, interleaved", flush=True)
    times: dict[str, list[dict]] = {"plain": [], "runner": [], "runner, no bar": []}
    with tempfile.TemporaryDirectory() as folder:
        plain(args.lr, 1)  # warm-up: first-call costs (allocator, kernels) outside the timings
        for repeat in range(args.repeats):
            order = list(times) if repeat % 2 == 0 else list(reversed(times))
            for side in order:
                times[side].append(plain(args.lr, args.epochs) if side == "plain"
                                   else runner(strategy, args.epochs, Path(folder), str(repeat), side == "runner"))
                print(f"  repeat {repeat} {side:6s}: wall {times[side][-1]['wall']:.2f} s, cpu "
                      f"{times[side][-1]['cpu']:.2f} s, final accuracy {times[side][-1]['metric']:.4f}",
                      file=sys.stderr, flush=True)
    finder_s = range_test_seconds(args.epochs)
    best = {side: {clock: min(t[clock] for t in runs) for clock in ("wall", "cpu")} for side, runs in times.items()}
    epoch_best = {side: min(min(t["epochs"]) for t in runs) for side, runs in times.items()}
    epoch_sum = {side: min(sum(t["epochs"]) for t in runs) for side, runs in times.items()}
    same = {round(t["metric"], 6) for runs in times.values() for t in runs}
    for side in ("runner", "runner, no bar"):
        print(f"\n| measure | plain s | {side} s | overhead |\n|---|---:|---:|---:|")
        for clock in ("wall", "cpu"):
            p, r = best["plain"][clock] / args.epochs, best[side][clock] / args.epochs
            print(f"| whole call per epoch, {clock} (best of {args.repeats}) | {p:.3f} | {r:.3f} | {r / p - 1:+.1%} |")
        p, r = epoch_sum["plain"] / args.epochs, epoch_sum[side] / args.epochs
        print(f"| epoch loop only (train + evaluation), best repeat | {p:.3f} | {r:.3f} | {r / p - 1:+.1%} |")
        p, r = epoch_best["plain"], epoch_best[side]
        print(f"| fastest single epoch | {p:.3f} | {r:.3f} | {r / p - 1:+.1%} |")
    print(f"\nFinal accuracies of every run: {sorted(same)} ({'identical' if len(same) == 1 else 'NOT identical'}).")
    print(f"One LR range test (constant-finder: 100 iterations + hold check) on the same data: {finder_s:.2f} s "
          f"= {finder_s / (best['plain']['wall'] / args.epochs):.2f} plain epochs; not in the numbers above.")


if __name__ == "__main__":
    main()
