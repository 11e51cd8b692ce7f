"""LipschitzLR (Yedida & Saha, arXiv 1902.07399): paper-table reproduction, hook overhead, accuracy.

Three parts, each printing a markdown table (pick with ``--part``; default all):

* ``paper``    — the authors' classical rows: softmax regression on iris / digits (200 full-batch
  iterations, unscaled data) and logistic regression on iris (2 classes) / breast cancer (1000
  iterations, features scaled to sum to 1), LR 0.1 vs LR 1/L, 70/30 splits, several seeds.
* ``mlp``      — which norm: the 1/L rule with the Frobenius vs the per-example ``K_z`` on a small
  MLP (iris), against a constant LR.
* ``overhead`` — epoch time of plain training vs LipschitzLR collecting K_z with forward hooks
  vs the paper's separate full pass, on the bundled ``mnist-cnn`` task. The three runs are
  interleaved epoch by epoch (rotating order); the ratio of each repeat's times is reported.
* ``accuracy`` — ``mnist-cnn`` validation accuracy of LipschitzLR vs a constant LR and a
  one-cycle schedule, both tuned on a held-out part of the training split, over seeds.

    .venv/bin/python bench/bench_lipschitz.py                 # everything, ~10 min on 2 cores
    .venv/bin/python bench/bench_lipschitz.py --part overhead --repeats 12
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from contextlib import nullcontext
from datetime import date

import numpy as np
import torch
from rich.progress import Progress
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, Subset

from lrkit import schedules as S
from lrkit.tasks import get_task
from lrkit.torch import LipschitzLR, ScheduledLR

# ---- part 1: the paper's classical rows ----------------------------------------------------------

# The authors' numbers: "Role of Lipschitz constant in Gradient Learning" (their KDD draft,
# github.com/yrahul3910/lipschitz-learning-rate, paper/KDD/paper.tex, tables "Softmax
# classification" and "Binary classification"); the softmax rows are the ones arXiv 1902.07399
# reports for the classical models (iris 93.33 % vs 97.78 %, digits 91.3 % vs 94.63 %).
PAPER = {
    "iris": dict(loss="softmax_ce", iterations=200, inv_l=1.936, acc_01=93.33, acc_inv=97.78),
    "digits": dict(loss="softmax_ce", iterations=200, inv_l=0.635, acc_01=91.3, acc_inv=94.63),
    "iris (classes 0/1)": dict(loss="bce", iterations=1000, inv_l=830.22, acc_01=50.0, acc_inv=100.0),
    "breast cancer": dict(loss="bce", iterations=1000, inv_l=4280.22, acc_01=43.23, acc_inv=90.5),
}


def classical_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Softmax rows: raw features. Binary rows: each feature scaled to sum to 1 (the paper)."""
    if name == "iris":
        return load_iris(return_X_y=True)
    if name == "digits":
        return load_digits(return_X_y=True)
    if name == "iris (classes 0/1)":
        x, y = load_iris(return_X_y=True)
        x, y = x[y < 2], y[y < 2]
    else:
        x, y = load_breast_cancer(return_X_y=True)
    return x / x.sum(axis=0), y


def classical_run(name: str, seed: int, lr_rule: str) -> tuple[float, float]:
    """Full-batch GD from a N(0, 1) init (as the authors' numpy code); returns (test acc %, LR used)."""
    spec = PAPER[name]
    x, y = classical_data(name)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    x_tr, x_te = torch.tensor(x_tr), torch.tensor(x_te)
    softmax = spec["loss"] == "softmax_ce"
    outputs = int(y.max()) + 1 if softmax else 1
    y_tr = torch.tensor(y_tr) if softmax else torch.tensor(y_tr, dtype=torch.float64).unsqueeze(1)
    model = nn.Linear(x.shape[1], outputs, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(outputs, x.shape[1], generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    model = nn.Sequential(model)
    criterion = nn.CrossEntropyLoss() if softmax else nn.BCEWithLogitsLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = None
    if lr_rule != "0.1":
        sched = LipschitzLR(opt, model, spec["loss"], norm=lr_rule, batch_size=len(x_tr),
                            full_pass_loader=[(x_tr, y_tr)])
    lr_used = opt.param_groups[0]["lr"]
    for _ in range(spec["iterations"]):
        loss = criterion(model(x_tr), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    with torch.no_grad():
        out = model(x_te)
        pred = out.argmax(1) if softmax else (out[:, 0] > 0).long()
    return 100.0 * (pred.numpy() == y_te).mean(), lr_used


def paper_table(seeds: int, progress: Progress) -> str:
    rules = ("0.1", "frobenius", "per_example")
    task = progress.add_task("paper rows", total=len(PAPER) * seeds * len(rules))
    lines = ["| dataset (loss, iterations) | paper 1/L | ours 1/L (Frobenius) | ours 1/L (per-example) "
             "| paper acc LR 0.1 | ours acc LR 0.1 | paper acc 1/L | ours acc 1/L (Frobenius) "
             "| ours acc 1/L (per-example) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, spec in PAPER.items():
        acc = {rule: [] for rule in rules}
        lr = {rule: [] for rule in rules}
        for seed in range(seeds):
            for rule in rules:
                a, used = classical_run(name, seed, rule)
                acc[rule].append(a)
                lr[rule].append(used)
                progress.advance(task)

        def fmt(values):
            return f"{np.mean(values):.2f} ± {np.std(values):.2f}"
        lines.append(f"| {name} ({spec['loss']}, {spec['iterations']}) | {spec['inv_l']:g} "
                     f"| {np.mean(lr['frobenius']):.4g} | {np.mean(lr['per_example']):.4g} "
                     f"| {spec['acc_01']:.2f} | {fmt(acc['0.1'])} | {spec['acc_inv']:.2f} "
                     f"| {fmt(acc['frobenius'])} | {fmt(acc['per_example'])} |")
    return "\n".join(lines)


# ---- part 1b: which norm on a small MLP ----------------------------------------------------------------

def mlp_run(seed: int, rule: str, epochs: int = 15) -> tuple[float, float, float]:
    """Iris (standardised), MLP 4-16-3, 5 mini-batches of 30; returns (final loss, train acc %, max LR)."""
    x, y = load_iris(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = None if rule == "0.1" else LipschitzLR(opt, model, "softmax_ce", norm=rule)
    criterion = nn.CrossEntropyLoss()
    order = torch.randperm(150, generator=torch.Generator().manual_seed(seed))
    top_lr = 0.1
    for _ in range(epochs):
        for i in range(5):
            batch = order[i::5]
            loss = criterion(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
        top_lr = max(top_lr, opt.param_groups[0]["lr"])
    with torch.no_grad():
        out = model(x)
        return criterion(out, y).item(), 100.0 * (out.argmax(1) == y).float().mean().item(), top_lr


def mlp_table(seeds: int, progress: Progress) -> str:
    rules = ("0.1", "frobenius", "per_example")
    task = progress.add_task("iris MLP", total=seeds * len(rules))
    lines = ["| LR rule | final train loss (median) | runs with loss > 1 | train acc % (mean ± std) "
             "| largest LR (median) |",
             "|---|---:|---:|---:|---:|"]
    for rule in rules:
        results = []
        for seed in range(seeds):
            results.append(mlp_run(seed, rule))
            progress.advance(task)
        losses, accs, lrs = (np.array(col) for col in zip(*results))
        lines.append(f"| {'constant 0.1' if rule == '0.1' else '1/L, ' + rule} | {np.median(losses):.3g} "
                     f"| {int((~(losses <= 1)).sum())}/{seeds} | {accs.mean():.1f} ± {accs.std():.1f} "
                     f"| {np.median(lrs):.3g} |")
    lines.append("")
    lines.append(f"Iris standardised, MLP 4-16-3, plain SGD, 5 mini-batches of 30, 15 epochs, {seeds} seeds; "
                 "LipschitzLR with hooks (epoch 0 at 0.1). A loss > 1 (or NaN) means the run diverged.")
    return "\n".join(lines)


# ---- parts 2 and 3: the mnist-cnn task ---------------------------------------------------------------

STRATEGIES = ("constant (tuned)", "one_cycle (tuned)", "lipschitz sgd, hooks, Frobenius",
              "lipschitz sgd, hooks, per-example", "lipschitz sgd, full pass, Frobenius",
              "lipschitz momentum, hooks, Frobenius", "lipschitz sgd, hooks, Frobenius, max_lr 0.3")
#: the overhead runs cap the LR so that no run diverges (NaNs would change the arithmetic cost)
OVERHEAD = {"plain": "constant", "hooks": "lipschitz sgd, hooks, Frobenius, max_lr 0.05",
            "full pass": "lipschitz sgd, full pass, Frobenius, max_lr 0.05"}
GRIDS = {"constant": (0.01, 0.03, 0.1, 0.3), "one_cycle": (0.03, 0.1, 0.3, 1.0)}


def mnist_splits():
    data = get_task("mnist-cnn").load_data(0)
    order = np.random.default_rng(0).permutation(len(data.train))
    tune_train, tune_val = Subset(data.train, order[600:].tolist()), Subset(data.train, order[:600].tolist())
    return data.train, data.val, tune_train, tune_val


def loader(dataset, seed: int, shuffle: bool = True) -> DataLoader:
    return DataLoader(dataset, batch_size=64, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


def train_epoch(model: nn.Module, opt, data: DataLoader, per_step=None) -> float:
    model.train()
    criterion = nn.CrossEntropyLoss()
    total = 0.0
    for x, y in data:
        loss = criterion(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if per_step is not None:
            per_step.step()
        total += loss.item()
    return total / len(data)


def accuracy(model: nn.Module, dataset) -> float:
    model.eval()
    with torch.no_grad():
        x, y = next(iter(DataLoader(dataset, batch_size=len(dataset))))
        return 100.0 * (model(x).argmax(1) == y).float().mean().item()


def build(strategy: str, lr: float | None, data: DataLoader, epochs: int, seed: int):
    """(model, optimizer, epoch-end scheduler or None, per-step scheduler or None)."""
    torch.manual_seed(seed)
    model = get_task("mnist-cnn").build_model()
    if strategy.startswith("constant"):
        return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), None, None
    if strategy.startswith("one_cycle"):
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        schedule = S.one_cycle(lr, epochs * len(data))
        return model, opt, None, ScheduledLR(opt, schedule, momentum=schedule.momentum_schedule())
    norm = "per_example" if "per-example" in strategy else "frobenius"
    if "momentum" in strategy:  # the paper's EMA momentum: v <- 0.9 v + 0.1 g
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, dampening=0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
    full_pass = loader(data.dataset, 0, shuffle=False) if "full pass" in strategy else None
    max_lr = float(strategy.split("max_lr ")[1]) if "max_lr " in strategy else None
    sched = LipschitzLR(opt, model, "softmax_ce", norm=norm, full_pass_loader=full_pass, max_lr=max_lr,
                        initial_lr=None if full_pass is not None else 0.01)
    return model, opt, sched, None


def overhead_table(repeats: int, progress: Progress) -> str:
    train, _, _, _ = mnist_splits()
    modes = ("plain", "hooks", "full pass")
    runs = {}
    for mode in modes:
        data = loader(train, 0)
        model, opt, sched, _ = build(OVERHEAD[mode], 0.05, data, 1, seed=0)
        if mode == "plain":
            opt = torch.optim.SGD(model.parameters(), lr=0.05)  # same optimizer work as the others
        runs[mode] = (model, opt, sched, data)
    clocks = {"CPU": time.process_time, "wall": time.perf_counter}
    times = {(clock, mode): [] for clock in clocks for mode in modes}
    task = progress.add_task("overhead epochs", total=repeats * len(modes))
    for r in range(repeats + 1):  # repeat 0 warms up and is dropped
        order = modes[r % 3:] + modes[:r % 3]
        for mode in order:
            model, opt, sched, data = runs[mode]
            start = {clock: read() for clock, read in clocks.items()}
            train_epoch(model, opt, data)
            if sched is not None:
                sched.step()
            if r:
                for clock, read in clocks.items():
                    times[clock, mode].append(read() - start[clock])
                progress.advance(task)
    batches = len(runs["plain"][3])
    hook_us = hook_call_microseconds(runs["hooks"][2])
    lines = ["| mode | clock | median epoch s | min epoch s | median of paired ratios to plain | ratio of mins |",
             "|---|---|---:|---:|---:|---:|"]
    for clock in clocks:
        plain = times[clock, "plain"]
        for mode in modes:
            own = times[clock, mode]
            ratios = [t / p for t, p in zip(own, plain)]
            lines.append(f"| {mode} | {clock} | {statistics.median(own):.3f} | {min(own):.3f} "
                         f"| {statistics.median(ratios):.3f}× | {min(own) / min(plain):.3f}× |")
    fastest = min(times["CPU", "plain"])
    lines.append("")
    lines.append(f"Hook alone, timed directly: {hook_us:.1f} µs per batch × {batches} batches = "
                 f"{hook_us * batches / 1e3:.1f} ms per epoch = {100 * hook_us * batches / 1e6 / fastest:.2f} % "
                 f"of the fastest plain epoch (CPU time). {repeats} interleaved repeats (rotating order) after a "
                 "warm-up round; CPU = process time (insensitive to other load on the machine), wall = elapsed.")
    return "\n".join(lines)


def hook_call_microseconds(sched: LipschitzLR, calls: int = 2000) -> float:
    """Time of the forward hook alone on a batch of the last layer's real input size."""
    layer = sched.last_layer
    z = torch.randn(64, layer.in_features)
    out = layer(z)
    start = time.process_time()
    for _ in range(calls):
        sched._layer_hook(layer, (z,), out)
    elapsed = time.process_time() - start
    sched._stats = type(sched._stats)()  # drop what the timing collected
    return elapsed / calls * 1e6


def run(strategy: str, lr: float | None, train, val, epochs: int, seed: int) -> tuple[float, list[float]]:
    data = loader(train, seed)
    model, opt, epoch_sched, step_sched = build(strategy, lr, data, epochs, seed)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        train_epoch(model, opt, data, step_sched)
        if epoch_sched is not None:
            epoch_sched.step()
    return accuracy(model, val), lrs


def accuracy_table(epochs: int, seeds: int, progress: Progress) -> str:
    train, val, tune_train, tune_val = mnist_splits()
    task = progress.add_task("accuracy runs", total=sum(len(g) for g in GRIDS.values()) + len(STRATEGIES) * seeds)
    tuned = {}
    for key, grid in GRIDS.items():
        scores = {}
        for lr in grid:
            scores[lr], _ = run(key, lr, tune_train, tune_val, epochs, seed=100)
            progress.advance(task)
        tuned[key] = max(grid, key=lambda lr: scores[lr])
        tuned[key + "_scores"] = scores
    lines = ["| strategy | LR | val accuracy % (mean ± std) | per seed | LR per epoch (seed 0) |",
             "|---|---|---:|---|---|"]
    for strategy in STRATEGIES:
        key = strategy.split(" ")[0]
        lr = tuned.get(key)
        accs, first_lrs = [], None
        for seed in range(seeds):
            acc, lrs = run(strategy, lr, train, val, epochs, seed)
            accs.append(acc)
            first_lrs = first_lrs or lrs
            progress.advance(task)
        lr_text = f"{lr:g} (grid {', '.join(f'{g:g}: {s:.1f}' for g, s in tuned[key + '_scores'].items())})" \
            if lr is not None else "1/L rule"
        lr_trace = "one-cycle per step" if key == "one_cycle" else ", ".join(f"{v:.3g}" for v in first_lrs)
        lines.append(f"| {strategy} | {lr_text} | {np.mean(accs):.2f} ± {np.std(accs):.2f} "
                     f"| {', '.join(f'{a:.1f}' for a in accs)} | {lr_trace} |")
    lines.append("")
    lines.append(f"mnist-cnn (4 000 train / 1 000 val), batch 64, {epochs} epochs, {seeds} seeds; grids tuned "
                 "on a 3 400 / 600 split of the training set (seed 100). Constant and one-cycle use SGD momentum "
                 "0.9; 'lipschitz sgd' plain SGD; 'lipschitz momentum' SGD momentum 0.9 with dampening 0.9 (the "
                 "paper's EMA form). Epoch 0 of the hook variants runs at 0.01.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "paper", "mlp", "overhead", "accuracy"), default="all")
    parser.add_argument("--paper-seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10, help="interleaved overhead repeats")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"Measured {date.today()} on {platform.machine()} ({torch.get_num_threads()} torch thread), "
          f"torch {torch.__version__}.\n")
    with (nullcontext(Progress(disable=True)) if args.quiet else Progress(transient=True)) as progress:
        if args.part in ("all", "paper"):
            print(paper_table(args.paper_seeds, progress) + "\n")
        if args.part in ("all", "mlp"):
            print(mlp_table(args.paper_seeds, progress) + "\n")
        if args.part in ("all", "overhead"):
            print(overhead_table(args.repeats, progress) + "\n")
        if args.part in ("all", "accuracy"):
            print(accuracy_table(args.epochs, args.seeds, progress) + "\n")


if __name__ == "__main__":
    main()
