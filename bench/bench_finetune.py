"""Fine-tuning comparison on `digits-transfer` and `mnist-transfer`: one LR vs discriminative LRs
vs discriminative LRs plus gradual unfreezing, every run the full `lrkit.fine_tune` recipe.

    .venv/bin/python bench/bench_finetune.py [--seeds 3] [--digits-seeds 10] [--mnist-seeds 5] [--no-write]

Two LR modes: ``finder`` (the recipe as users run it: both LRs chosen by the LR range test) and
``fixed`` (the same LRs for every variant, which isolates the technique from the finder's choice).
Two references show what pretraining is worth: the head alone on the frozen pretrained body, and
the CNN trained from scratch, both for the same 9 epochs. Each seed draws its own 5-label-per-digit
training split, head initialisation and data order; every row sees the same seeds, so differences
are also reported paired by seed. The tables go into docs/finetune.md and docs/benchmarks.md
(between markers).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from lrkit.experiments.finetune_on_task import fine_tune_task
from lrkit.finetune import train_head
from lrkit.tasks import get_task
from lrkit.tasks.transfer import DATASETS, TransferCNN, pretrained_state
from lrkit.torch import layer_groups

ROOT = Path(__file__).resolve().parents[1]
DATE = "2026-11-22"
MACHINE = "2-core shared CPU VM, torch 2.13.0 CPU"
FREEZE_EPOCHS, EPOCHS = 2, 7  # head 2 epochs; unfrozen 7 epochs = SGDR cycles of 1, 2 and 4 epochs
FIXED = {"head_lr": 1e-2, "lr": 3e-3}
TASKS = {"digits-transfer": "digits", "mnist-transfer": "mnist"}
VARIANTS = {
    "one LR (factor 1)": {"factor": 1.0},
    "discriminative (factor 2.6)": {"factor": 2.6},
    "discriminative + gradual unfreezing": {"factor": 2.6, "gradual_every": 1},
}
HEAD_ONLY = "reference: head only, body frozen"
SCRATCH = "reference: from scratch, one LR"
ROWS = [*VARIANTS, HEAD_ONLY, SCRATCH]
START, END = "<!-- bench_finetune:start -->", "<!-- bench_finetune:end -->"


class LowConfidence(logging.Handler):
    """Counts the recipe's low-confidence range-test warnings instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "low-confidence LR range test" in record.getMessage()


LOW = LowConfidence()
FINDER_RUNS = {"count": 0}


def run(task_name: str, row: str, seed: int, mode: str) -> float:
    """Validation accuracy after the last epoch of one run (every row: 9 epochs in all)."""
    task = get_task(task_name)
    fixed = mode == "fixed"
    if not fixed:  # range tests run: one for the head-only reference and for scratch, two for the variants
        FINDER_RUNS["count"] += 1 if row in (HEAD_ONLY, SCRATCH) else 2
    if row == HEAD_ONLY:  # a linear probe on the pretrained features, one-cycle for all 9 epochs
        torch.manual_seed(seed)
        model = task.build_model()
        train, val = task.loaders(seed)
        return train_head(model, layer_groups(model, 3), train, val, nn.CrossEntropyLoss(),
                          epochs=FREEZE_EPOCHS + EPOCHS, lr=FIXED["head_lr"] if fixed else None,
                          progress=False).metric
    if row == SCRATCH:  # random body: no head stage, 9 epochs unfrozen, SGDR cycles of 3 and 6 epochs
        size = DATASETS[TASKS[task_name]].size
        scratch = dataclasses.replace(task, build_model=lambda: TransferCNN(5, size))
        return fine_tune_task(scratch, seed=seed, epochs=FREEZE_EPOCHS + EPOCHS, freeze_epochs=0, cycle_len=3,
                              factor=1.0, lr=FIXED["lr"] if fixed else None, progress=False).metric
    options = dict(VARIANTS[row], **(FIXED if fixed else {}))
    return fine_tune_task(task, seed=seed, epochs=EPOCHS, freeze_epochs=FREEZE_EPOCHS, progress=False,
                          **options).metric


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * spread:.2f}"


def table(scores: dict[tuple[str, str], list[float]], n: int, modes: list[str]) -> str:
    """Rows: variants and references; per mode: accuracy mean ± std over the first `n` seeds,
    paired difference to one LR (same seeds), and on how many seeds the row beat one LR."""
    base = ROWS[0]
    head = ["variant"]
    for m in modes:
        head += [f"{m}: accuracy %", f"{m}: Δ vs one LR (pp, paired)", f"{m}: wins"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (3 * len(modes))]
    for row in ROWS:
        cells = [row]
        for m in modes:
            ours, ref = scores[row, m][:n], scores[base, m][:n]
            diff = [a - b for a, b in zip(ours, ref)]
            cells += [summary(ours), "—" if row == base else summary(diff),
                      "—" if row == base else f"{sum(d > 0 for d in diff)}/{n}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure(task_name: str, seeds: int, modes: list[str]) -> dict[tuple[str, str], list[float]]:
    scores: dict[tuple[str, str], list[float]] = {}
    for mode in modes:
        for row in ROWS:
            started = time.perf_counter()
            scores[row, mode] = [run(task_name, row, seed, mode) for seed in range(seeds)]
            print(f"{task_name:16s} {mode:6s} {row:38s} {summary(scores[row, mode]):>14s}"
                  f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return scores


def replace_block(path: Path, block: str, heading: str) -> None:
    text = path.read_text() if path.exists() else ""
    section = f"{START}\n{block}\n{END}"
    if START in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{section}\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the main table")
    parser.add_argument("--digits-seeds", type=int, default=10, help="all seeds run on digits-transfer")
    parser.add_argument("--mnist-seeds", type=int, default=5, help="all seeds run on mnist-transfer")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    finetune_log = logging.getLogger("lrkit.finetune")
    finetune_log.addHandler(LOW)
    finetune_log.propagate = False
    modes = ["finder", "fixed"]
    seeds = {"digits-transfer": args.digits_seeds, "mnist-transfer": args.mnist_seeds}
    if any(n < args.seeds for n in seeds.values()):
        raise SystemExit("--digits-seeds and --mnist-seeds must be >= --seeds")

    start = time.perf_counter()
    pretrain = {}
    for name, dataset in TASKS.items():
        began = time.perf_counter()
        pretrained_state(dataset)
        pretrain[name] = time.perf_counter() - began
    blocks = []
    for name in TASKS:
        scores = measure(name, seeds[name], modes)
        blocks.append(f"### `{name}`, {args.seeds} seeds (0–{args.seeds - 1})\n\n{table(scores, args.seeds, modes)}")
        blocks.append(f"### `{name}`, {seeds[name]} seeds (0–{seeds[name] - 1}), same protocol\n\n"
                      f"{table(scores, seeds[name], modes)}")
    total_s = time.perf_counter() - start
    block = (
        f"Command: `.venv/bin/python bench/bench_finetune.py --seeds {args.seeds} --digits-seeds "
        f"{args.digits_seeds} --mnist-seeds {args.mnist_seeds}` — {DATE}, {MACHINE}, `torch.set_num_threads(1)`; "
        f"wall time {total_s:.0f} s in all (pretraining, once, cached: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in pretrain.items()) + ").\n\n"
        f"Protocol: 5 labels per digit 5–9 (25 images, batch 5, 5 updates per epoch), a fixed validation set "
        f"(600 digits / 1000 MNIST images), 3 layer groups ([stem, layer1], [layer2], [head]), AdamW "
        f"(weight decay 0.01). Variants: head {FREEZE_EPOCHS} epochs (one-cycle), then {EPOCHS} epochs "
        f"unfrozen (SGDR, cycles of 1, 2, 4 epochs); gradual unfreezing starts the unfrozen stage with 2 groups "
        f"and adds the first one after 1 epoch. References, same 9 epochs: the head alone on the frozen "
        f"pretrained body (one-cycle), and the same CNN from random initialisation (SGDR cycles of 3 and 6 "
        f"epochs). `finder`: both LRs from `lrkit.torch.find_lr`'s default suggestion; `fixed`: head LR "
        f"{FIXED['head_lr']:g} and unfrozen head LR {FIXED['lr']:g} for every variant. Accuracy after the last "
        f"epoch, mean ± sample std over seeds; Δ: per-seed difference to one LR (same seed, same split, same "
        f"head init), mean ± std, in percentage points; wins: seeds where the row beat one LR. "
        f"{LOW.count} of the {FINDER_RUNS['count']} range tests in the `finder` columns reported low confidence "
        f"(their heuristics disagree by more than a decade, or a warning about the curve).\n\n"
        + "\n\n".join(blocks)
    )
    print(block)
    if not args.no_write:
        replace_block(ROOT / "docs" / "finetune.md", block, "## Comparison")
        replace_block(ROOT / "docs" / "benchmarks.md", block,
                      "## Fine-tuning: one LR vs discriminative LRs vs gradual unfreezing (`bench/bench_finetune.py`)")


if __name__ == "__main__":
    main()
