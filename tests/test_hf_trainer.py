"""lrkit's schedulers inside the Hugging Face ``Trainer`` (transformers), on CPU, nothing downloaded.

What the Trainer does with a scheduler passed as ``optimizers=(optimizer, scheduler)`` (transformers
5.x ``trainer.py``): it never prepares it with Accelerate; after each optimizer update that was not
skipped it calls ``scheduler.step()``, unless the scheduler is an instance of torch's
``ReduceLROnPlateau``, which it steps after each evaluation with ``metrics[metric_for_best_model]``.
A checkpoint holds ``scheduler.pt`` (``torch.save(scheduler.state_dict())``), loaded with
``torch.load(..., weights_only=True)`` after the optimizer state on resume. On 2 processes it still
makes one schedule step per optimizer update (measured below), unlike a scheduler prepared by
Accelerate (tests/test_accelerate.py).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
from torch import nn

import lrkit.schedules as S
from lrkit.torch import PlateauFactor, ReduceLROnPlateau, ScheduledLR

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from transformers import Trainer, TrainerCallback, TrainingArguments

from two_processes import run_on_two_processes

# No reporting integration, CPU only, no progress bar; transformers' own logger at error level.
BASE_ARGS = dict(report_to=[], use_cpu=True, disable_tqdm=True, log_level="error", seed=0,
                 dataloader_num_workers=0)


class Mean(nn.Module):
    """Fits ``w + b`` to the labels: loss = batch mean of ‖labels − w − b‖², returned as ``{"loss": ...}``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.b = nn.Parameter(torch.zeros(2))

    def forward(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": ((labels - self.w - self.b) ** 2).sum(-1).mean()}


def dataset(n: int = 16) -> list[dict[str, torch.Tensor]]:
    return [{"labels": torch.tensor([float(i % 4), 1.0 + (i % 3)])} for i in range(n)]


class UpdateLRs(TrainerCallback):
    """The LR of each group at the start of each optimizer update, keyed by the update number."""

    def __init__(self) -> None:
        self.lrs: dict[int, list[float]] = {}

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs[state.global_step] = [float(group["lr"]) for group in optimizer.param_groups]


class EpochLRs(TrainerCallback):
    """The LR at the start of each epoch (after the previous epoch's evaluation) and at the end."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_epoch_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))


def two_groups(model: Mean, lr: float) -> torch.optim.SGD:
    """``w`` at `lr`, ``b`` at a 10x lower LR: ScheduledLR keeps the ratio."""
    return torch.optim.SGD([{"params": [model.w], "lr": lr}, {"params": [model.b], "lr": lr / 10}], momentum=0.9)


# ---- (a) ReduceLROnPlateau, stepped by the Trainer with the eval metric ----------------------------

def run_plateau(tmp_path, make_scheduler, callbacks=()):
    """Six epochs of one full-batch update, an evaluation after each; the LR at each epoch start and the eval losses."""
    model = Mean()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25)
    scheduler = make_scheduler(optimizer)
    recorder = EpochLRs()
    # full batch, lr 0.25 and no clipping: w + b reaches the labels' mean in one update, then eval_loss stalls
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=12, per_device_eval_batch_size=12,
                             num_train_epochs=6, eval_strategy="epoch", save_strategy="no", logging_strategy="epoch",
                             metric_for_best_model="eval_loss", max_grad_norm=0.0, **BASE_ARGS)
    trainer = Trainer(model=model, args=args, train_dataset=dataset(12), eval_dataset=dataset(12),
                      optimizers=(optimizer, scheduler), callbacks=[recorder, *callbacks])
    trainer.train()
    losses = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    return recorder.lrs, losses, scheduler


PLATEAU = dict(patience=1, factor=0.1)
PLATEAU_LRS = [0.25, 0.25, 0.25, 0.025, 0.025, 0.0025, 0.0025]


def test_trainer_steps_reduce_lr_on_plateau_with_the_metric_and_it_cuts(tmp_path):
    lrs, losses, plateau = run_plateau(tmp_path / "lrkit", lambda opt: ReduceLROnPlateau(opt, **PLATEAU))
    assert len(losses) == 6 and max(losses) - min(losses) < 1e-6  # stalled from the first evaluation on
    # epochs 1-3 at 0.25; the 3rd report is the 2nd bad one (> patience=1): cut; again 2 reports later
    assert lrs == pytest.approx(PLATEAU_LRS, rel=1e-12)
    assert plateau.last_epoch == 6  # one report per evaluation

    torch_lrs, torch_losses, _ = run_plateau(tmp_path / "torch",
                                             lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **PLATEAU))
    assert (lrs, losses) == (torch_lrs, torch_losses)  # the Trainer drives both the same way

    reference_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.25)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(reference_optimizer, **PLATEAU)
    expected = [0.25]
    for loss in losses:
        reference.step(loss)
        expected.append(reference_optimizer.param_groups[0]["lr"])
    assert lrs == expected  # torch's class fed the Trainer's metrics by hand


class ReportEvalLoss(TrainerCallback):
    """The documented recipe for a ScheduledLR with a PlateauFactor: report each evaluation's loss."""

    def on_evaluate(self, args, state, control, metrics=None, lr_scheduler=None, **kwargs):
        lr_scheduler.report(metrics["eval_loss"])


def test_plateau_factor_on_a_schedule_through_a_callback(tmp_path):
    """The Trainer steps the ScheduledLR each update (it is no torch ReduceLROnPlateau); the callback reports."""
    lrs, _, scheduler = run_plateau(
        tmp_path, lambda opt: ScheduledLR(opt, S.constant(0.25), plateau=PlateauFactor(**PLATEAU)),
        callbacks=[ReportEvalLoss()])
    assert lrs == pytest.approx(PLATEAU_LRS, rel=1e-12)
    assert scheduler.last_epoch == 6 and scheduler.plateau.last_epoch == 6


# ---- (b) ScheduledLR, one step per optimizer update, exact resume ----------------------------------

SCHEDULE = S.warmup(S.cosine(0.1, 12), 3, start_lr=0.01)
SCALES = [1.0, (0.1 / 10) / 0.1]  # each group's initial LR over the first's, as ScheduledLR computes them


def run_scheduled(output_dir, schedule=SCHEDULE, resume_from=None, accumulation=1, max_steps=12, save_steps=5,
                  save_strategy="steps"):
    torch.manual_seed(0)
    model = Mean()
    optimizer = two_groups(model, 0.1)
    recorder = UpdateLRs()
    args = TrainingArguments(output_dir=str(output_dir), per_device_train_batch_size=2, max_steps=max_steps,
                             gradient_accumulation_steps=accumulation, save_strategy=save_strategy,
                             save_steps=save_steps, logging_steps=1, **BASE_ARGS)
    scheduler = ScheduledLR(optimizer, schedule)
    trainer = Trainer(model=model, args=args, train_dataset=dataset(), optimizers=(optimizer, scheduler),
                      callbacks=[recorder])
    trainer.train(resume_from_checkpoint=resume_from)
    logged = [(entry["step"], entry["learning_rate"], entry["loss"]) for entry in trainer.state.log_history
              if "learning_rate" in entry]
    return recorder.lrs, logged, trainer


@pytest.mark.parametrize("accumulation", [1, 2])
def test_scheduled_lr_follows_the_schedule_per_update(tmp_path, accumulation):
    lrs, logged, trainer = run_scheduled(tmp_path, accumulation=accumulation)
    assert lrs == {k: [s * SCHEDULE(k) for s in SCALES] for k in range(12)}  # exact: one step per update
    assert [lr for _, lr, _ in logged] == [SCHEDULE(k) for k in range(12)]  # the LR each update used
    assert trainer.lr_scheduler.last_epoch == 12


def test_resume_from_checkpoint_continues_the_identical_sequence(tmp_path):
    full, logged, _ = run_scheduled(tmp_path / "full")
    saved = torch.load(tmp_path / "full" / "checkpoint-5" / "scheduler.pt", weights_only=True)
    assert saved == {"step": 5, "scales": SCALES}  # tensor-free: the Trainer's weights_only load takes it
    resumed, resumed_logged, trainer = run_scheduled(tmp_path / "resumed",
                                                     resume_from=str(tmp_path / "full" / "checkpoint-5"))
    assert resumed == {k: full[k] for k in range(5, 12)}
    # updates 1-5 come from the checkpoint's trainer_state.json; 6-12 were trained again: same LRs, same losses
    assert resumed_logged == logged
    assert trainer.lr_scheduler.last_epoch == 12


def _two_process_worker(out_dir: str) -> None:
    torch.set_num_threads(1)
    lrs, _, trainer = run_scheduled(f"{out_dir}/output", max_steps=6, save_strategy="no")
    result = {"lrs": [lrs[k] for k in sorted(lrs)], "step": trainer.lr_scheduler.last_epoch,
              "processes": trainer.args.world_size, "scheduler": type(trainer.lr_scheduler).__name__}
    with open(f"{out_dir}/rank{dist.get_rank()}.json", "w") as f:
        json.dump(result, f)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_processes_one_schedule_step_per_update(tmp_path, monkeypatch):
    """2 gloo processes (tests/two_processes.py): the Trainer
    does not prepare the scheduler, so it steps once per update, not once per process."""
    ranks = run_on_two_processes(_two_process_worker, tmp_path, monkeypatch)
    assert ranks[0] == ranks[1] == {"lrs": [[s * SCHEDULE(k) for s in SCALES] for k in range(6)], "step": 6,
                                    "processes": 2, "scheduler": "ScheduledLR"}


# ---- (c) from_hf: the same LRs as the Trainer's own lr_scheduler_type -------------------------------

def test_from_hf_cosine_matches_the_trainers_own_scheduler(tmp_path):
    from_hf = getattr(S, "from_hf", None)
    if from_hf is None:
        pytest.skip("lrkit.schedules.from_hf does not exist yet (src/lrkit/schedules/hf.py, another change)")
    steps, warmup, lr = 12, 3, 0.1
    ours, _, _ = run_scheduled(tmp_path / "lrkit", schedule=from_hf("cosine", lr=lr, num_warmup_steps=warmup,
                                                                     num_training_steps=steps))
    torch.manual_seed(0)
    model = Mean()
    recorder = UpdateLRs()
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=2, max_steps=steps,
                             learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=warmup, save_strategy="no",
                             **BASE_ARGS)
    Trainer(model=model, args=args, train_dataset=dataset(), callbacks=[recorder]).train()
    assert sorted(ours) == sorted(recorder.lrs) == list(range(steps))
    for k in range(steps):
        assert ours[k][0] == pytest.approx(recorder.lrs[k][0], rel=1e-12, abs=1e-15), k
