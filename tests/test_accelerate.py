"""lrkit's schedulers under Hugging Face Accelerate, on CPU: one process, then two gloo processes.

``accelerator.prepare(..., scheduler)`` wraps the scheduler in ``AcceleratedScheduler``
(accelerate ``scheduler.py``). Its ``step()``:

* with ``step_scheduler_with_optimizer=True`` (the default) does nothing on an accumulation
  micro-batch (``sync_gradients`` False) except ``scheduler._step_count += 1`` when the gradient
  state's ``adjust_scheduler`` is on, nothing after a skipped optimizer step, and otherwise steps
  the scheduler once with ``split_batches=True`` but ``num_processes`` times without it;
* with ``step_scheduler_with_optimizer=False`` steps it once per call, whatever the batch.

The recipe lrkit documents for "one schedule step = one optimizer update" (docs/hf-accelerate.md):
``Accelerator(step_scheduler_with_optimizer=False)``, prepare the scheduler (so ``save_state``/
``load_state`` keep it), and call ``scheduler.step()`` after ``optimizer.step()`` when
``accelerator.sync_gradients``. The two-process test measures every variant on one launch.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrkit.schedules as S
from lrkit.torch import ReduceLROnPlateau, ScheduledLR

pytest.importorskip("accelerate")
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.scheduler import AcceleratedScheduler
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import GradientAccumulationPlugin

from two_processes import run_on_two_processes

SCHEDULE = S.warmup(S.cosine(0.1, 40), 5, start_lr=0.01)
GROUP_LRS = [0.1, 0.02]
SCALES = [lr / GROUP_LRS[0] for lr in GROUP_LRS]


def reset_accelerate(partial: bool = True) -> None:
    """Accelerate keeps its state in process-wide singletons; each test (and configuration) starts afresh."""
    AcceleratorState._reset_state(reset_partial_state=partial)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    reset_accelerate()
    yield
    reset_accelerate()


def build(batches: int = 12, batch_size: int = 4):
    """Model, two-group SGD, a ScheduledLR and a loader of `batches` batches per process."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD([{"params": [model.weight], "lr": GROUP_LRS[0]},
                                 {"params": [model.bias], "lr": GROUP_LRS[1]}], momentum=0.9)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(batches * batch_size, 3, generator=g), torch.randn(batches * batch_size, 1,
                                                                                        generator=g))
    return model, optimizer, ScheduledLR(optimizer, SCHEDULE), DataLoader(data, batch_size=batch_size)


def train(accelerator, model, optimizer, scheduler, loader, *, step_when_synced: bool = False,
          max_updates: int | None = None) -> list[list[float]]:
    """Accelerate's loop; returns the groups' LRs each optimizer update used.

    `step_when_synced` is the documented recipe: the loop steps the scheduler itself, once per update.
    """
    lrs: list[list[float]] = []
    for x, y in loader:
        with accelerator.accumulate(model):
            loss = nn.functional.mse_loss(model(x), y)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                lrs.append([float(group["lr"]) for group in optimizer.param_groups])
            optimizer.step()
            if not step_when_synced or accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad()
        if max_updates is not None and len(lrs) == max_updates and accelerator.sync_gradients:
            break
    return lrs


def expected(updates: int, start: int = 0, per_update: int = 1) -> list[list[float]]:
    return [[s * SCHEDULE(per_update * k) for s in SCALES] for k in range(start, start + updates)]


# ---- one process ------------------------------------------------------------------------------------

def test_prepared_scheduled_lr_follows_the_schedule_per_update():
    accelerator = Accelerator(cpu=True)
    model, optimizer, scheduler, loader = build()
    model, optimizer, loader, prepared = accelerator.prepare(model, optimizer, loader, scheduler)
    assert isinstance(prepared, AcceleratedScheduler) and prepared.scheduler is scheduler
    assert train(accelerator, model, optimizer, prepared, loader) == expected(12)
    assert prepared.get_last_lr() == scheduler.get_last_lr() == [s * SCHEDULE(12) for s in SCALES]
    assert (scheduler.last_epoch, scheduler._step_count) == (12, 13)


@pytest.mark.parametrize("adjust", [True, False])
def test_gradient_accumulation_one_schedule_step_per_update(adjust):
    """Micro-batches step nothing; ``_step_count`` gets Accelerate's ``+= 1`` only where its gradient state
    says ``adjust_scheduler`` (accelerate 1.16 drops a default ``adjust_scheduler=True`` from the plugin's
    kwargs, so that reads False either way; the next test forces the path)."""
    plugin = GradientAccumulationPlugin(num_steps=2, adjust_scheduler=adjust)
    accelerator = Accelerator(cpu=True, gradient_accumulation_plugin=plugin)
    model, optimizer, scheduler, loader = build()
    model, optimizer, loader, prepared = accelerator.prepare(model, optimizer, loader, scheduler)
    assert train(accelerator, model, optimizer, prepared, loader) == expected(6)  # 12 batches, 6 updates
    micro = 6 if accelerator.gradient_state.adjust_scheduler else 0
    assert (scheduler.last_epoch, scheduler._step_count) == (6, 1 + 6 + micro)


def test_accelerates_step_count_path_with_adjust_scheduler_on():
    """The ``scheduler._step_count += 1`` of each micro-batch (an AttributeError before ScheduledLR called
    LRScheduler.__init__): it runs, and the LR per update is still the schedule's."""
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    accelerator.gradient_state.plugin_kwargs["adjust_scheduler"] = True  # what the plugin's default means
    assert accelerator.gradient_state.adjust_scheduler
    model, optimizer, scheduler, loader = build()
    model, optimizer, loader, prepared = accelerator.prepare(model, optimizer, loader, scheduler)
    assert train(accelerator, model, optimizer, prepared, loader) == expected(6)
    assert (scheduler.last_epoch, scheduler._step_count) == (6, 1 + 12)


def test_save_state_load_state_resumes_the_identical_sequence(tmp_path):
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model, optimizer, scheduler, loader = build()
    model, optimizer, loader, prepared = accelerator.prepare(model, optimizer, loader, scheduler)
    head = train(accelerator, model, optimizer, prepared, loader, max_updates=3)
    accelerator.save_state(str(tmp_path / "checkpoint"))
    assert torch.load(tmp_path / "checkpoint" / "scheduler.bin", weights_only=True) == {"step": 3, "scales": SCALES}

    reset_accelerate()
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model, optimizer, scheduler, loader = build()
    model, optimizer, loader, prepared = accelerator.prepare(model, optimizer, loader, scheduler)
    accelerator.load_state(str(tmp_path / "checkpoint"))  # loads with weights_only=True
    assert scheduler.last_epoch == 3
    assert [group["lr"] for group in optimizer.param_groups] == expected(1, start=3)[0]
    tail = train(accelerator, model, optimizer, prepared, accelerator.skip_first_batches(loader, 6))
    assert head + tail == expected(6)


# ---- two processes ------------------------------------------------------------------------------------

def _configurations(accelerator_kwargs: dict) -> dict:
    """Each way of stepping a ScheduledLR on this process; the LRs each update used, and the step reached."""
    results = {}
    variants = {
        "prepared": ({}, False, True),
        "prepared_split_batches": ({"dataloader_config": DataLoaderConfiguration(split_batches=True)}, False, True),
        "recipe_step_when_synced": ({"step_scheduler_with_optimizer": False, "gradient_accumulation_steps": 2},
                                    True, True),
        "not_prepared": ({}, False, False),
    }
    for name, (kwargs, step_when_synced, prepare) in variants.items():
        reset_accelerate(partial=False)  # keep the process group
        accelerator = Accelerator(**accelerator_kwargs, **kwargs)
        model, optimizer, scheduler, loader = build(batches=8, batch_size=4)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        stepped = accelerator.prepare(scheduler) if prepare else scheduler
        lrs = train(accelerator, model, optimizer, stepped, loader, step_when_synced=step_when_synced)
        results[name] = {"lrs": lrs, "step": scheduler.last_epoch, "processes": accelerator.num_processes}

    for name, kwargs in {"prepared_plateau": {}, "prepared_plateau_step_itself": {
            "step_scheduler_with_optimizer": False}}.items():
        reset_accelerate(partial=False)
        accelerator = Accelerator(**accelerator_kwargs, **kwargs)
        _, optimizer, _, _ = build()
        plateau = ReduceLROnPlateau(optimizer, patience=3)
        optimizer, prepared = accelerator.prepare(optimizer, plateau)
        prepared.step(1.0)  # one evaluation's metric
        results[name] = {"reports": plateau.last_epoch}
    return results


def _two_process_worker(out_dir: str) -> None:
    torch.set_num_threads(1)
    rank = dist.get_rank()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(_configurations({"cpu": True}), f)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_processes_step_the_prepared_scheduler_twice_per_update(tmp_path, monkeypatch):
    """Measured on 2 gloo processes (tests/two_processes.py):
    a prepared scheduler makes 2 schedule steps per optimizer update (1 with split_batches), the recipe 1."""
    ranks = run_on_two_processes(_two_process_worker, tmp_path, monkeypatch)
    assert ranks[0] == ranks[1]  # both processes set the same LRs
    run = ranks[0]
    assert {result["processes"] for result in run.values() if "processes" in result} == {2}
    # 32 examples, batch 4 per process: 4 updates each
    assert run["prepared"] == {"lrs": expected(4, per_update=2), "step": 8, "processes": 2}
    assert run["prepared_split_batches"]["lrs"] == expected(8)  # batch 4 split over 2: 8 updates, 1 step each
    assert run["prepared_split_batches"]["step"] == 8
    assert run["recipe_step_when_synced"] == {"lrs": expected(2), "step": 2, "processes": 2}  # 4 batches, GA 2
    assert run["not_prepared"] == {"lrs": expected(4), "step": 4, "processes": 2}
    assert run["prepared_plateau"] == {"reports": 2}  # a prepared plateau counts each metric twice
    assert run["prepared_plateau_step_itself"] == {"reports": 1}
