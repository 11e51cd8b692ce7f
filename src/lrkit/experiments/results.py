"""What one training run produces: the record the runner returns and the store keeps."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any


def run_key(task: str, strategy: dict[str, Any], seed: int, epochs: int, batch_size: int,
            task_version: int = 1) -> str:
    """Stable identity of a trial: the same command asks for the same keys, so a re-run
    can skip what the store already holds. A task's `version` above 1 (its data or model
    changed) is part of it; version 1 leaves the keys as they were before versions existed."""
    fields: dict[str, Any] = {"task": task, "strategy": strategy, "seed": seed, "epochs": epochs,
                              "batch_size": batch_size}
    if task_version != 1:
        fields["task_version"] = task_version
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class RunResult:
    """One (task, strategy, seed) run with its per-step and per-epoch series.

    `status` is "complete" or "diverged" (a non-finite loss stopped training early).
    `metric` values follow the task's `metric_name` / `higher_is_better`.
    `steps_per_epoch`: optimizer updates in a full epoch (None only for a diverged run read
    from a store written before lrkit recorded it).
    """

    key: str
    task: str
    strategy: str
    config: dict[str, Any]
    seed: int
    epochs: int
    batch_size: int
    metric_name: str
    higher_is_better: bool
    status: str
    base_lr: float
    wall_time: float
    steps_per_epoch: int | None
    step_lr: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    epoch_train_loss: list[float] = field(default_factory=list)
    epoch_val_loss: list[float] = field(default_factory=list)
    epoch_metric: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def final_metric(self) -> float:
        return self.epoch_metric[-1] if self.epoch_metric else math.nan

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the best finite metric; 0 if there is none."""
        return self._best()[0]

    @property
    def best_metric(self) -> float | None:
        """The best finite metric; None if there is none."""
        return self._best()[1]

    def _best(self) -> tuple[int, float | None]:
        finite = [(m, i) for i, m in enumerate(self.epoch_metric, 1) if math.isfinite(m)]
        if not finite:
            return 0, None
        metric, epoch = (max if self.higher_is_better else min)(finite)
        return epoch, metric
