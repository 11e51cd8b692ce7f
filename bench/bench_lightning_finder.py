"""Lightning's own LR finder against lrkit's `LRFinder` callback (issue 9), on sklearn's digits.

For each optimizer (Adam; SGD with momentum 0.9) x seed: a 64-128-10 MLP, batch 64, on the bundled
digits split (1 437 train / 360 validation images, standardised). Three ways to pick a constant LR,
each followed by 5 epochs of training at it and the final validation accuracy:

  - Lightning: ``Tuner(trainer).lr_find(model)`` with its defaults (100 steps, 1e-8 .. 1,
    exponential; the suggestion is the steepest descent of the unsmoothed loss against the LR);
  - lrkit: ``lrkit.lightning.LRFinder()`` with its defaults (100 steps, 1e-7 .. 10, the consensus
    rule, the hold check);
  - grid: the best of 9 LRs (1e-4 .. 1, half a decade apart), the reference.

Run: .venv/bin/python bench/bench_lightning_finder.py [--seeds 0 1 2 3 4] [--no-grid]   (~1 min on 2 shared cores)

Results (Lightning 2.6.6, torch 2.13 CPU, one thread, seeds 0-4; accuracy after 5 epochs):

| optimizer | seed | Lightning LR | acc | lrkit LR | acc | grid best LR | acc |
|---|---:|---:|---:|---:|---:|---:|---:|
| adam | 0 | 0.000912 | 0.919 | 0.0302 | 0.944 | 0.01 | 0.972 |
| adam | 1 | 0.000363 | 0.847 | 0.0107 | 0.975 | 0.01 | 0.975 |
| adam | 2 | 4.79e-05 | 0.339 | 0.019 | 0.969 | 0.01 | 0.978 |
| adam | 3 | 0.000912 | 0.931 | 0.019 | 0.964 | 0.01 | 0.969 |
| adam | 4 | 6.31e-06 | 0.181 | 0.0141 | 0.981 | 0.01 | 0.978 |
| sgd | 0 | 0.000912 | 0.683 | 0.147 | 0.961 | 0.0316 | 0.961 |
| sgd | 1 | 0.000363 | 0.297 | 0.0906 | 0.978 | 0.1 | 0.975 |
| sgd | 2 | 0.000145 | 0.214 | 0.0994 | 0.969 | 0.0316 | 0.969 |
| sgd | 3 | 0.000912 | 0.731 | 0.111 | 0.981 | 0.1 | 0.978 |
| sgd | 4 | 6.31e-06 | 0.167 | 0.177 | 0.972 | 0.1 | 0.975 |

Mean accuracy: Lightning 0.531 (min 0.167), lrkit 0.969 (min 0.944), grid best 0.973 (min 0.961).
Lightning's rule takes the steepest slope of the raw loss against the LR on a linear axis
(``torch.gradient(losses, spacing=[lrs])``) after skipping 10 points, so the noise of the first
flat stretch, where the LR steps are tiny, decides it: 6e-6 .. 9e-4 here, 1-4 decades too low
for 5 epochs (on 4 of the 5 seeds it picks the same LR for Adam and SGD, whose curves barely
differ there).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.tuner import Tuner
from torch import nn
from torch.utils.data import DataLoader

from lrkit.lightning import LRFinder
from lrkit.tasks.digits import load_digits_data

EPOCHS = 5
BATCH = 64
GRID = np.logspace(-4, 0, 9)


class DigitsMLP(pl.LightningModule):
    """64 -> 128 -> ReLU -> 10; `lr` is the attribute Lightning's finder sets."""

    def __init__(self, optimizer: str, lr: float = 1e-3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        self.optimizer, self.lr = optimizer, lr

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def _trainer(root: str, callbacks=()) -> pl.Trainer:
    return pl.Trainer(max_epochs=EPOCHS, default_root_dir=root, accelerator="cpu", devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=list(callbacks), num_sanity_val_steps=0)


def _loaders(seed: int) -> tuple[DataLoader, DataLoader]:
    data = load_digits_data(seed)
    train = DataLoader(data.train, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return train, DataLoader(data.val, batch_size=len(data.val))


def _train(trainer: pl.Trainer, model: DigitsMLP, seed: int) -> float:
    trainer.fit(model, *_loaders(seed))
    return float(trainer.callback_metrics["val_acc"])


def lightning_finder(optimizer: str, seed: int, root: str) -> tuple[float, float]:
    pl.seed_everything(seed, verbose=False)
    model, trainer = DigitsMLP(optimizer), _trainer(root)
    train, _ = _loaders(seed)
    Tuner(trainer).lr_find(model, train_dataloaders=train)  # sets model.lr
    return model.lr, _train(_trainer(root), model, seed)


def lrkit_finder(optimizer: str, seed: int, root: str) -> tuple[float, float]:
    pl.seed_everything(seed, verbose=False)
    finder = LRFinder(progress=False, plot=False)
    accuracy = _train(_trainer(root, [finder]), DigitsMLP(optimizer), seed)
    assert finder.result is not None
    return finder.result.suggestion, accuracy


def grid_best(optimizer: str, seed: int, root: str) -> tuple[float, float]:
    accuracies = []
    for lr in GRID:
        pl.seed_everything(seed, verbose=False)
        accuracies.append(_train(_trainer(root), DigitsMLP(optimizer, float(lr)), seed))
    best = int(np.argmax(accuracies))
    return float(GRID[best]), accuracies[best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-grid", action="store_true", help="skip the grid reference")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    rows, summary = [], {"Lightning": [], "lrkit": [], "grid": []}
    with tempfile.TemporaryDirectory() as root:
        for optimizer in ("adam", "sgd"):
            for seed in args.seeds:
                results = {"Lightning": lightning_finder(optimizer, seed, root),
                           "lrkit": lrkit_finder(optimizer, seed, root)}
                if not args.no_grid:
                    results["grid"] = grid_best(optimizer, seed, root)
                cells = " | ".join(f"{lr:.3g} | {acc:.3f}" for lr, acc in results.values())
                rows.append(f"| {optimizer} | {seed} | {cells} |")
                for name, (_, acc) in results.items():
                    summary[name].append(acc)
    print(f"elapsed {time.perf_counter() - start:.0f} s\n")
    grid_columns = ("", "") if args.no_grid else (" grid best LR | acc |", "---:|---:|")
    print("| optimizer | seed | Lightning LR | acc | lrkit LR | acc |" + grid_columns[0])
    print("|---|---:|---:|---:|---:|---:|" + grid_columns[1])
    print("\n".join(rows))
    print("\nmean accuracy: " + ", ".join(f"{name} {np.mean(accs):.3f} (min {np.min(accs):.3f})"
                                         for name, accs in summary.items() if accs))


if __name__ == "__main__":
    main()
