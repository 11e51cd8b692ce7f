"""The seeds' claims re-measured on the realistic workloads (issue 12, item 3).

    .venv/bin/python bench/bench_claims.py [--studies ttt,lipschitz,lr-free,finetune,warmup] [--seeds 3]
                                            [--out /tmp/lrkit-claims] [--plan] [--full --workers N
                                            --backend process|ray --address HOST:PORT]

Five studies, each with its own SQLite store under ``--out`` (`run_sweep`: running the same command again
trains only what is not stored yet; the fine-tuning study appends one JSON line per run instead):

* ``ttt`` — time to target (Smith 2017, arXiv 1506.01186; Smith & Topin 2017, arXiv 1708.07120): on the
  Fashion-MNIST CNN, one-cycle, cosine and CLR triangular2 against the constant LR of the range test
  (``constant-finder``, the baseline): the first epoch whose validation accuracy reaches the baseline's
  median final accuracy, as a fraction of the baseline's steps, and the final accuracy (Welch's t-test
  against the baseline).
* ``lr-free`` — LR-free optimizers vs tuned schedules on the same task: schedule-free SGD, Prodigy and
  D-Adaptation SGD against one-cycle and cosine at the range test's LR (the ``ttt`` runs, not trained
  twice): final accuracy and wall time of the whole strategy, the range test included.
* ``lipschitz`` — LipschitzLR (Yedida & Saha 2019, arXiv 1902.07399) on the same task, as the library
  defines it (``lipschitz``), and with its LR capped (`LipschitzLR` ``max_lr``) at 1x and 10x the
  baseline's range-test LR (the median ``base_lr`` of the ``ttt`` baseline's seeds).
* ``finetune`` — one LR vs discriminative LRs vs discriminative LRs plus gradual unfreezing (Howard &
  Ruder 2018) on ``fashion-transfer`` (100 labels per class), the variants of ``bench/bench_finetune.py``
  run through `fine_tune_task`, LRs from the range tests (the recipe as users run it).
* ``warmup`` — on the character transformer: AdamW with warm-up + cosine vs the same cosine from the same
  peak LR without warm-up (Goyal et al. 2017; Vaswani et al. 2017), AdamW at that constant LR, and the
  LR-free schedule-free AdamW (Defazio et al. 2024, arXiv 2405.15682) and Prodigy (Mishchenko & Defazio
  2023): final validation loss (nats per character, lower is better) and perplexity.

Budget (default, one CPU thread): the Fashion studies train ``fashion-cnn-8k``, a task registered here:
the ``fashion-cnn`` model on a fixed stratified 8 000-image subset of the 60 000 training images
(800 per class) for `FASHION_EPOCHS` epochs, validated on a fixed stratified 2 000-image subset of the
10 000 test images (200 per class); both subsets are drawn by `stratified_split` with the library's
``SPLIT_SEED``, never by the run's seed. The transformer study trains ``charlm-transformer-q``, the
``charlm-transformer`` model on every `CHARLM_KEEP`-th of its training windows for `CHARLM_EPOCHS`
epoch(s), validated on its full validation set; its three AdamW strategies share one peak LR, the
range test's (decaying rule, hold check) on seed 0 of that task (`charlm_peak_lr`, stored beside
the store), so "same peak LR" holds exactly and one range test is paid instead of nine.
``--full`` runs the real protocol instead: ``fashion-cnn`` (60 000 / 10 000, its 10 epochs) and
``charlm-transformer`` (its 4 epochs, the library's strategies with their own range tests), where
``--workers``/``--backend ray`` parallelise the sweeps (the tasks registered here exist only in this
process, so without ``--full`` the sweeps run in-process, one trial at a time).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import traceback
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy.stats import ttest_ind
from torch.utils.data import TensorDataset

from lrkit.experiments.finder_on_task import find_lr_on_task
from lrkit.experiments.finetune_on_task import fine_tune_task
from lrkit.experiments.runner import plan, run_sweep
from lrkit.experiments.strategies import (
    DEFAULT_STRATEGIES,
    LR_FREE_STRATEGIES,
    TRANSFORMER_STRATEGIES,
    Strategy,
)
from lrkit.report import load_runs, summarize
from lrkit.report.summary import Summary, steps_to_target
from lrkit.tasks import TaskData, get_task, register_task
from lrkit.tasks.charlm import load_charlm_data, perplexity
from lrkit.tasks.fashion import load_fashion
from lrkit.tasks.splits import stratified_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import EPOCHS as FT_EPOCHS  # the fine-tuning protocol, not a copy of it
from bench_finetune import FIXED as FT_FIXED
from bench_finetune import FREEZE_EPOCHS as FT_FREEZE_EPOCHS
from bench_finetune import VARIANTS as FT_VARIANTS

STUDIES = ("ttt", "warmup", "lipschitz", "lr-free", "finetune")
#: The fixed Fashion-MNIST subsets of the default (budget) protocol.
FASHION_TRAIN, FASHION_VAL, FASHION_EPOCHS = 8_000, 2_000, 4
#: The transformer's budget: every CHARLM_KEEP-th training window of charlm-transformer, CHARLM_EPOCHS epochs.
CHARLM_KEEP, CHARLM_EPOCHS = 4, 1

BY_NAME = {s.name: s for s in (*DEFAULT_STRATEGIES, *TRANSFORMER_STRATEGIES, *LR_FREE_STRATEGIES)}
TTT = ("constant-finder", "one-cycle", "cosine", "clr-triangular2")
TUNED = ("one-cycle", "cosine")
LR_FREE = ("schedule-free-sgd", "prodigy", "dadapt-sgd")
WARMUP = ("adamw-warmup-cosine", "adamw-cosine", "adamw-constant", "schedule-free-adamw", "prodigy")
LIPSCHITZ_CAPS = (1.0, 10.0)


# -- the budget tasks -------------------------------------------------------------------------
def fashion_subset(train_size: int, val_size: int) -> TaskData:
    """A fixed stratified `train_size` / `val_size` subset of Fashion-MNIST's official split (the
    same for every seed); also bench_throughput.py's data."""
    data = load_fashion(0)
    x, y = data.train.tensors
    x_val, y_val = data.val.tensors
    _, train = stratified_split(y.numpy(), train_size / len(y))
    _, val = stratified_split(y_val.numpy(), val_size / len(y_val))
    train, val = torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(val))
    return TaskData(TensorDataset(x[train], y[train]), TensorDataset(x_val[val], y_val[val]))


_SUBSETS: dict[int, TaskData] = {}


def load_fashion_subset(seed: int) -> TaskData:
    """`fashion_subset` at the study's sizes, built once per process (`seed` only names the run)."""
    if not _SUBSETS:
        _SUBSETS[0] = fashion_subset(FASHION_TRAIN, FASHION_VAL)
    return _SUBSETS[0]


def load_charlm_quarter(seed: int) -> TaskData:
    """Every `CHARLM_KEEP`-th training window of charlm-transformer (2 442 of 9 767 at 4); validation unchanged."""
    data = load_charlm_data(seed)
    x, y = data.train.tensors
    return TaskData(TensorDataset(x[::CHARLM_KEEP], y[::CHARLM_KEEP]), data.val)


def register_bench_tasks() -> tuple[str, str]:
    """Register ``fashion-cnn-8k`` and ``charlm-transformer-q`` (this process only); their names."""
    fashion, charlm = get_task("fashion-cnn"), get_task("charlm-transformer")
    names = ("fashion-cnn-8k", "charlm-transformer-q")
    from lrkit.tasks import available_tasks
    if names[0] not in available_tasks():
        register_task(replace(fashion, name=names[0], load_data=load_fashion_subset, epochs=FASHION_EPOCHS,
                              description=f"fashion-cnn on a fixed stratified {FASHION_TRAIN} / {FASHION_VAL} subset"))
        register_task(replace(charlm, name=names[1], load_data=load_charlm_quarter, epochs=CHARLM_EPOCHS,
                              description=f"charlm-transformer on every {CHARLM_KEEP}th training window"))
    return names


# -- helpers ----------------------------------------------------------------------------------
def welch(a: list[float], b: list[float]) -> float:
    """Two-sided p of Welch's t-test (scipy), nan when a side has fewer than 2 values or no spread."""
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return math.nan
    return float(ttest_ind(a, b, equal_var=False).pvalue)


def fmt_p(p: float) -> str:
    return "—" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "—"
    spread = statistics.stdev(values) * scale if len(values) > 1 else math.nan
    return f"{statistics.fmean(values) * scale:.{digits}f} ± {spread:.{digits}f}"


def sweep(task: str, strategies: list[Strategy], args: argparse.Namespace, epochs: int, batch_size: int,
          db: Path) -> None:
    trials = plan(task, strategies, list(range(args.seeds)), epochs, batch_size)
    started = time.perf_counter()
    report = run_sweep(trials, db, workers=args.workers, backend=args.backend, address=args.address,
                       progress=False, on_result=lambda r: print(
                           f"  {now()} {r.strategy:24s} seed {r.seed}: {r.status}, final {r.final_metric:.4f}, "
                           f"{r.wall_time:.0f} s", flush=True))
    print(f"  {db.name}: {len(report.trained)} trained, {report.skipped} stored already, "
          f"{len(report.failed)} failed ({time.perf_counter() - started:.0f} s)", flush=True)
    for trial, error in report.failed:
        print(f"  FAILED {trial.strategy.name} seed {trial.seed}: {error.strip().splitlines()[-1]}", flush=True)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%H:%M:%S")


def summary_of(db: Path, task: str, epochs: int, batch_size: int, names: tuple[str, ...] | None = None,
               baseline: str | None = None, target: float | None = None) -> tuple[Summary, dict]:
    runs = [r for r in load_runs(db, task=task) if names is None or r.row.strategy in names]
    return summarize(runs, epochs=epochs, batch_size=batch_size, baseline=baseline, target=target), {
        name: [r for r in runs if r.row.strategy == name] for name in {r.row.strategy for r in runs}}


# -- the studies ------------------------------------------------------------------------------
def fashion_setting(args: argparse.Namespace) -> tuple[str, int, int]:
    task = get_task("fashion-cnn" if args.full else "fashion-cnn-8k")
    return task.name, task.epochs, task.batch_size


def study_ttt(args: argparse.Namespace) -> str:
    task, epochs, batch = fashion_setting(args)
    db = args.out / "claims-ttt.sqlite"
    sweep(task, [BY_NAME[n] for n in TTT], args, epochs, batch, db)
    summary, runs = summary_of(db, task, epochs, batch, TTT, baseline="constant-finder")
    base = summary.strategy("constant-finder")
    lines = [f"Task `{task}`, {epochs} epochs, batch {batch}, seeds {list(range(args.seeds))}; target = "
             f"median final accuracy of constant-finder = {summary.target * 100:.2f} %; steps to target at "
             f"epoch resolution (1/{epochs} of the run).", "",
             "| strategy | final accuracy % | p vs constant (Welch) | median steps to target / baseline steps | "
             "per seed | reached | peak LR (median) | wall s (range test incl.) |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    for name in TTT:
        item = summary.strategy(name)
        spe = {r.row.key: r.row.steps_per_epoch for r in runs[name]}
        per_seed = [steps_to_target(r, summary.target, spe[r.row.key]) / base.total_steps
                    for r in sorted(runs[name], key=lambda r: r.row.seed)]
        frac = item.steps_to_target / base.total_steps
        p = "—" if name == "constant-finder" else fmt_p(welch(list(item.final_values), list(base.final_values)))
        lines.append(f"| {name} | {mean_std(list(item.final_values), 100)} | {p} | "
                     f"{frac:.2f} | {', '.join(f'{f:.2f}' if math.isfinite(f) else 'never' for f in per_seed)} | "
                     f"{item.n_reached}/{item.n_runs} | {item.peak_lr:.3g} | {item.wall_time:.0f} |")
    return "\n".join(lines)


def study_lr_free(args: argparse.Namespace) -> str:
    task, epochs, batch = fashion_setting(args)
    ttt_db, db = args.out / "claims-ttt.sqlite", args.out / "claims-lr-free.sqlite"
    sweep(task, [BY_NAME[n] for n in TUNED], args, epochs, batch, ttt_db)  # stored by `ttt`: nothing retrains
    sweep(task, [BY_NAME[n] for n in LR_FREE], args, epochs, batch, db)
    _, tuned = summary_of(ttt_db, task, epochs, batch, TUNED)
    _, free = summary_of(db, task, epochs, batch, LR_FREE)
    runs = {**tuned, **free}
    best = max(TUNED, key=lambda n: statistics.fmean(r.row.final_metric for r in runs[n]))
    ref = [r.row.final_metric for r in runs[best] if r.row.status == "complete"]
    lines = [f"Task `{task}`, {epochs} epochs, batch {batch}; tuned = the range test's LR (run per seed, its time "
             f"included); p: Welch's t-test against the better tuned schedule ({best}).", "",
             "| strategy | final accuracy % | p vs " + best + " | diverged | LR / multiplier | "
             "wall s per run (mean) | of which range test s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in (*TUNED, *LR_FREE):
        group = runs[name]
        finals = [r.row.final_metric for r in group if r.row.status == "complete"]
        walls = [r.row.wall_time for r in group]
        finder = [r.row.wall_time - sum(r.row.epoch_time) for r in group]
        p = "—" if name == best else fmt_p(welch(finals, ref))
        lines.append(f"| {name} | {mean_std(finals, 100)} | {p} | {sum(r.diverged for r in group)}/{len(group)} | "
                     f"{statistics.median(r.row.base_lr for r in group):.3g} | {statistics.fmean(walls):.0f} | "
                     f"{statistics.fmean(finder):.0f} |")
    return "\n".join(lines)


def baseline_lr(args: argparse.Namespace) -> float:
    """The ttt baseline's median range-test LR (3 significant digits), else a range test on seed 0."""
    task, epochs, _ = fashion_setting(args)
    db = args.out / "claims-ttt.sqlite"
    if db.exists():
        runs = [r for r in load_runs(db, task=task) if r.row.strategy == "constant-finder" and r.row.epochs == epochs]
        if runs:
            return float(f"{statistics.median(r.row.base_lr for r in runs):.3g}")
    return float(f"{find_lr_on_task(task, 'sgd', seed=0, schedule='constant', progress=False).suggestion:.3g}")


def study_lipschitz(args: argparse.Namespace) -> str:
    task, epochs, batch = fashion_setting(args)
    db = args.out / "claims-lipschitz.sqlite"
    lr = baseline_lr(args)
    plain = BY_NAME["lipschitz"]
    capped = [replace(plain, name=f"lipschitz-cap-{c:g}x", description=f"{plain.description}, max_lr {c:g} x {lr:g}",
                      lipschitz={**plain.lipschitz, "max_lr": c * lr}) for c in LIPSCHITZ_CAPS]
    sweep(task, [plain, *capped], args, epochs, batch, db)
    _, base = summary_of(args.out / "claims-ttt.sqlite", task, epochs, batch, ("constant-finder",))
    _, runs = summary_of(db, task, epochs, batch)
    ref = [r.row.final_metric for r in base.get("constant-finder", [])]
    lines = [f"Task `{task}`, {epochs} epochs, batch {batch}; SGD without momentum, LR = 1/L from epoch 2 (epoch 1 "
             f"at the range test's LR); caps: `LipschitzLR(max_lr=c x {lr:g})`, {lr:g} = the median range-test LR "
             "of the constant-finder baseline. p: Welch's t-test against constant-finder.", "",
             "| strategy | diverged | epoch of divergence | final accuracy % (complete runs) | p vs constant-finder | "
             "LR per epoch (seed 0) |", "|---|---:|---:|---:|---:|---|"]
    for name in ("lipschitz", *(s.name for s in capped)):
        group = sorted(runs.get(name, []), key=lambda r: r.row.seed)
        if not group:
            lines.append(f"| {name} | not run | | | | |")
            continue
        finals = [r.row.final_metric for r in group if r.row.status == "complete"]
        where = [len(r.row.epoch_metric) for r in group if r.row.status != "complete"]
        lrs = _epoch_lrs(group[0])
        lines.append(f"| {name} | {len(group) - len(finals)}/{len(group)} | {where or '—'} | {mean_std(finals, 100)} | "
                     f"{fmt_p(welch(finals, ref))} | {', '.join(f'{v:.3g}' for v in lrs)} |")
    if ref:
        lines.append(f"| constant-finder (ttt) | 0/{len(ref)} | — | {mean_std(ref, 100)} | — | |")
    return "\n".join(lines)


def _epoch_lrs(run) -> list[float]:
    lrs, spe = np.asarray(run.steps["lr"]), run.row.steps_per_epoch
    return [float(lrs[i * spe]) for i in range(len(run.row.epoch_metric)) if i * spe < len(lrs)]


def study_finetune(args: argparse.Namespace) -> str:
    log = args.out / "claims-finetune.jsonl"
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            done[row["mode"], row["variant"], row["seed"]] = row
    modes = {"finder": {}, "fixed": FT_FIXED}
    for mode, lrs in modes.items():
        for variant, options in FT_VARIANTS.items():
            for seed in range(args.seeds):
                if (mode, variant, seed) in done:
                    continue
                started = time.perf_counter()
                result = fine_tune_task("fashion-transfer", seed=seed, epochs=FT_EPOCHS,
                                        freeze_epochs=FT_FREEZE_EPOCHS, progress=False, **options, **lrs)
                row = {"mode": mode, "variant": variant, "seed": seed, "metric": result.metric,
                       "wall": time.perf_counter() - started,
                       "lrs": [list(stage.lrs) for stage in result.stages]}
                done[mode, variant, seed] = row
                with log.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(f"  {now()} {mode:6s} {variant:38s} seed {seed}: {result.metric:.4f} ({row['wall']:.0f} s)",
                      flush=True)
    one = next(iter(FT_VARIANTS))
    lines = [f"Task `fashion-transfer` (the library's protocol: 100 labels per class 5-9, batch 25, validation 5 000 "
             f"test images); head {FT_FREEZE_EPOCHS} epochs (one-cycle), then {FT_EPOCHS} epochs unfrozen (SGDR), "
             "3 layer groups; `finder`: both LRs from the range tests (the recipe as users run it); `fixed`: head LR "
             f"{FT_FIXED['head_lr']:g}, unfrozen head LR {FT_FIXED['lr']:g} for every variant. Seeds draw the labels, "
             "head and order. p: Welch's t-test against one LR of the same mode; Δ paired by seed.", "",
             "| mode | variant | accuracy % | Δ vs one LR (pp, paired) | wins | p vs one LR (Welch) | "
             "unfrozen head LR (median) | wall s per run |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for mode in modes:
        ref = [done[mode, one, s]["metric"] for s in range(args.seeds)]
        for variant in FT_VARIANTS:
            rows = [done[mode, variant, s] for s in range(args.seeds)]
            values = [r["metric"] for r in rows]
            diff = [a - b for a, b in zip(values, ref)]
            wall = statistics.fmean(r["wall"] for r in rows)
            head = statistics.median(r["lrs"][-1][-1] for r in rows)
            first = variant == one
            lines.append(f"| {mode} | {variant} | {mean_std(values, 100)} | {'—' if first else mean_std(diff, 100)} | "
                         f"{'—' if first else f'{sum(d > 0 for d in diff)}/{len(diff)}'} | "
                         f"{'—' if first else fmt_p(welch(values, ref))} | {head:.3g} | {wall:.0f} |")
    return "\n".join(lines)


def charlm_peak_lr(args: argparse.Namespace, task: str) -> float:
    """The range test's LR for a decaying AdamW schedule on seed 0 of `task` (cached in the out folder)."""
    cache = args.out / f"claims-warmup-peak-lr-{task}.json"
    if cache.exists():
        return float(json.loads(cache.read_text())["lr"])
    started = time.perf_counter()
    result = find_lr_on_task(task, "adamw", seed=0, schedule="decaying", progress=False)
    lr = float(f"{result.suggestion:.3g}")
    cache.write_text(json.dumps({"lr": lr, "seconds": time.perf_counter() - started,
                                 "confidence": result.found.confidence}))
    print(f"  peak LR {lr:g} (range test on seed 0, {time.perf_counter() - started:.0f} s)", flush=True)
    return lr


def warmup_strategies(args: argparse.Namespace, task: str) -> list[Strategy]:
    chosen = [BY_NAME[n] for n in WARMUP]
    if args.full:
        return chosen
    lr = charlm_peak_lr(args, task)
    return [replace(s, lr=lr, description=f"{s.description} (peak LR fixed at {lr:g})") if s.lr == "finder" else s
            for s in chosen]


def study_warmup(args: argparse.Namespace) -> str:
    task_obj = get_task("charlm-transformer" if args.full else "charlm-transformer-q")
    task, epochs, batch = task_obj.name, task_obj.epochs, task_obj.batch_size
    db = args.out / "claims-warmup.sqlite"
    sweep(task, warmup_strategies(args, task), args, epochs, batch, db)
    summary, runs = summary_of(db, task, epochs, batch, WARMUP, baseline="adamw-constant")
    ref = list(summary.strategy("adamw-cosine").final_values)
    lines = [f"Task `{task}`, {epochs} epoch(s), batch {batch}, {runs[WARMUP[0]][0].row.steps_per_epoch} steps per "
             f"epoch; metric: validation loss in nats per character (lower is better). p: Welch's t-test "
             "against adamw-cosine (the same cosine and peak LR without warm-up).", "",
             "| strategy | final val loss | perplexity | p vs adamw-cosine | diverged | LR / multiplier | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in WARMUP:
        item = summary.strategy(name)
        finals = list(item.final_values)
        ppl = [perplexity(v) for v in finals]
        p = "—" if name == "adamw-cosine" else fmt_p(welch(finals, ref))
        lines.append(f"| {name} | {mean_std(finals, 1, 4)} | {mean_std(ppl, 1, 3)} | {p} | "
                     f"{item.n_diverged}/{item.n_runs} | {statistics.median(r.row.base_lr for r in runs[name]):.3g} | "
                     f"{item.wall_time:.0f} |")
    return "\n".join(lines)


RUNNERS = {"ttt": study_ttt, "lipschitz": study_lipschitz, "lr-free": study_lr_free, "finetune": study_finetune,
           "warmup": study_warmup}
TITLES = {"ttt": "Time to target", "lipschitz": "LipschitzLR", "lr-free": "LR-free optimizers vs tuned schedules",
          "finetune": "Fine-tuning: one LR vs discriminative LRs vs gradual unfreezing",
          "warmup": "Warm-up on the transformer"}


def print_plan(args: argparse.Namespace, studies: list[str]) -> None:
    fashion, epochs, batch = fashion_setting(args)
    counts = {"ttt": len(TTT), "lipschitz": 1 + len(LIPSCHITZ_CAPS), "lr-free": len(LR_FREE),
              "finetune": 2 * len(FT_VARIANTS), "warmup": len(WARMUP)}
    # seconds per run measured on one thread of the 2-core VM (budget protocol): range test ~15 s, fashion epoch
    # ~8.5 s, transformer epoch ~40 s, fine-tuning run ~15 s; plus the transformer's one range test (~65 s)
    per_run = {"ttt": 50, "lipschitz": 50, "lr-free": 40, "finetune": 15, "warmup": 40}
    eta = sum(counts[s] * args.seeds * per_run[s] for s in studies) + (65 if "warmup" in studies else 0)
    print(f"Plan ({args.seeds} seeds each): " + "; ".join(f"{s}: {counts[s] * args.seeds} runs" for s in studies))
    if not args.full:
        print(f"ETA on one thread (budget protocol, nothing stored yet): about {eta / 60:.0f} min")
    print(f"Fashion studies on `{fashion}` ({epochs} epochs, batch {batch}); stores under {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default=",".join(STUDIES), help=f"comma list of {', '.join(STUDIES)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lrkit-claims"), help="folder of the stores")
    parser.add_argument("--full", action="store_true", help="the real protocol (full data, the tasks' epochs)")
    parser.add_argument("--workers", type=int, default=1, help="sweep workers (needs --full above 1)")
    parser.add_argument("--backend", choices=("process", "ray"), default="process")
    parser.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    parser.add_argument("--plan", action="store_true", help="print the plan and exit")
    parser.add_argument("--smoke", action="store_true", help="tiny subsets and epochs (checks the script only)")
    args = parser.parse_args()
    studies = [s.strip() for s in args.studies.split(",") if s.strip()]
    unknown = set(studies) - set(STUDIES)
    if unknown:
        parser.error(f"unknown studies {sorted(unknown)}; choose from {', '.join(STUDIES)}")
    if not args.full and (args.workers != 1 or args.backend != "process"):
        parser.error("the budget tasks are registered in this process only: --workers/--backend ray need --full")
    torch.set_num_threads(1)
    if args.smoke:
        global FASHION_TRAIN, FASHION_VAL, FASHION_EPOCHS, CHARLM_KEEP, FT_EPOCHS, FT_FREEZE_EPOCHS
        FASHION_TRAIN, FASHION_VAL, FASHION_EPOCHS, CHARLM_KEEP, FT_EPOCHS, FT_FREEZE_EPOCHS = 600, 300, 2, 64, 1, 1
    register_bench_tasks()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"bench_claims {date.today()} {now()} UTC, {platform.machine()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
    print_plan(args, studies)
    if args.plan:
        return
    tables = []
    for study in studies:
        print(f"\n== {study} ({now()} UTC)", flush=True)
        started = time.perf_counter()
        try:
            table = RUNNERS[study](args)
        except Exception:  # one broken study must not stop the others; its stored runs stay
            table = "FAILED:\n```\n" + traceback.format_exc() + "```"
        tables.append(f"## {TITLES[study]}\n\n{table}\n\n(study wall time {time.perf_counter() - started:.0f} s)")
        print("\n" + tables[-1] + "\n", flush=True)
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
