"""`ScheduledLR`: the step convention, group scales, momentum, validation and exact resume.

Resume is checked for every schedule family of the catalogue (tests/conftest.py) and a
warmup + join + clip composition: save at a hypothesis-chosen step, go through
`torch.save`/`torch.load(weights_only=True)`, rebuild a fresh optimizer and scheduler, load,
and require the remaining LR (and momentum) sequence to be identical (==) to an
uninterrupted run, across the 1024-step evaluation blocks.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim import SGD, Adagrad, Adam
from torch.optim.lr_scheduler import ChainedScheduler, ExponentialLR, LRScheduler, SequentialLR

import lrkit.schedules as S
from lrkit.torch import PlateauFactor, ScheduledLR

# Most tests drive the scheduler without an optimizer step; torch's order warning is tested below.
pytestmark = pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before:UserWarning")

GROUP_LRS = [0.1, 0.025, 0.3]
SCALES = [lr / GROUP_LRS[0] for lr in GROUP_LRS]  # how ScheduledLR computes the group scales
RUN = 1300  # crosses the 1024-step block boundary of ScheduledLR's evaluation cache


def _optimizer(lrs=GROUP_LRS, kind="sgd"):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    if kind == "adam":
        return Adam(groups, betas=(0.9, 0.99))
    return SGD(groups, momentum=0.9)


def _momentum_of(example):
    return example if isinstance(example, S.one_cycle_momentum) else None


def _record(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(tuple(g["lr"] for g in optimizer.param_groups)
                   + tuple(g.get("momentum", g.get("betas", (None,))[0]) for g in optimizer.param_groups))
        scheduler.step()
    return out


def _through_disk(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stop=st.integers(0, RUN))
def test_resume_continues_identically(schedule_example, stop):
    momentum = _momentum_of(schedule_example)
    lr_schedule = S.constant(0.1) if momentum is not None else schedule_example
    opt = _optimizer()
    full = _record(ScheduledLR(opt, lr_schedule, momentum=momentum), opt, RUN)

    opt = _optimizer()
    first = ScheduledLR(opt, lr_schedule, momentum=momentum)
    head = _record(first, opt, stop)
    state = _through_disk(first.state_dict())

    fresh_opt = _optimizer()
    resumed = ScheduledLR(fresh_opt, lr_schedule, momentum=momentum)
    resumed.load_state_dict(state)
    tail = _record(resumed, fresh_opt, RUN - stop)
    assert head + tail == full  # exact, not approximate


@pytest.mark.parametrize("order", ["optimizer_state_first", "scheduler_first"])
def test_resume_with_the_optimizer_state_as_well(order):
    """The usual checkpoint: optimizer and scheduler state, loaded in either order."""
    schedule = S.clip(S.warmup(S.join([S.cosine(0.1, 300), S.constant(0.01)], [300]), 40, start_lr=1e-4),
                      min_lr=1e-3)
    opt = _optimizer()
    full = _record(ScheduledLR(opt, schedule), opt, 500)
    opt = _optimizer()
    first = ScheduledLR(opt, schedule)
    head = _record(first, opt, 123)
    checkpoint = _through_disk({"optimizer": opt.state_dict(), "scheduler": first.state_dict()})

    fresh = _optimizer()
    if order == "optimizer_state_first":
        fresh.load_state_dict(checkpoint["optimizer"])
        resumed = ScheduledLR(fresh, schedule)
    else:
        resumed = ScheduledLR(fresh, schedule)
        fresh.load_state_dict(checkpoint["optimizer"])
    resumed.load_state_dict(checkpoint["scheduler"])
    assert head + _record(resumed, fresh, 500 - 123) == full


def test_state_dict_is_just_the_step_and_scales():
    opt = _optimizer()
    scheduler = ScheduledLR(opt, S.cosine(0.1, 100))
    for _ in range(17):
        scheduler.step()
    assert scheduler.state_dict() == {"step": 17, "scales": [lr / 0.1 for lr in GROUP_LRS]}
    assert scheduler.state_dict()["scales"] == pytest.approx([1.0, 0.25, 3.0], rel=1e-15)


def test_step_convention_and_group_scales():
    """Construction gives schedule(0); after k steps each group has scale_g * schedule(k)."""
    schedule = S.one_cycle(0.1, 300)
    opt = _optimizer()
    scheduler = ScheduledLR(opt, schedule)
    for k in range(300):
        expected = [lr / 0.1 * schedule(k) for lr in GROUP_LRS]
        assert [g["lr"] for g in opt.param_groups] == expected
        assert scheduler.get_last_lr() == expected
        scheduler.step()


def test_explicit_step_jumps_like_a_fresh_count():
    schedule = S.sgdr(0.1, 10, t_mul=2.0)
    opt = _optimizer()
    scheduler = ScheduledLR(opt, schedule)
    scheduler.step(777)
    assert opt.param_groups[0]["lr"] == schedule(777)
    scheduler.step()
    assert opt.param_groups[1]["lr"] == (0.025 / 0.1) * schedule(778)
    scheduler.step(3)
    assert opt.param_groups[2]["lr"] == (0.3 / 0.1) * schedule(3)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None.__class__])
def test_explicit_step_refuses_non_integers(bad):
    scheduler = ScheduledLR(_optimizer(), S.constant(0.1))
    with pytest.raises(ValueError, match="ScheduledLR.step"):
        scheduler.step(bad)


def test_a_metric_passed_to_step_is_refused_with_the_way_to_report_it():
    scheduler = ScheduledLR(_optimizer(), S.constant(0.1), plateau=PlateauFactor())
    with pytest.raises(ValueError, match=r"update number.*report\(metric\).*lrkit.lightning.ReportMetric"):
        scheduler.step(torch.tensor(0.73))  # what Lightning's 'monitor' would pass


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_momentum_sets_momentum_or_beta1(kind):
    cycle = S.one_cycle(0.1, 200)
    momentum = cycle.momentum_schedule(0.8, 0.95)
    opt = _optimizer(kind=kind)
    scheduler = ScheduledLR(opt, cycle, momentum=momentum)
    for k in range(200):
        for group in opt.param_groups:
            if kind == "adam":
                assert group["betas"] == (momentum(k), 0.99)
            else:
                assert group["momentum"] == momentum(k)
        scheduler.step()


def test_from_epochs_scales_momentum_too():
    cycle = S.one_cycle(0.1, 10)  # 10 epochs
    opt = _optimizer()
    scheduler = ScheduledLR.from_epochs(opt, cycle, 5, momentum=cycle.momentum_schedule())
    for _ in range(15):  # 3 epochs of 5 steps
        scheduler.step()
    assert opt.param_groups[0]["lr"] == cycle(3.0)
    assert opt.param_groups[0]["momentum"] == cycle.momentum_schedule()(3.0)


def test_user_function_is_called_only_at_the_steps_used():
    """Non-cacheable schedules (user functions) are evaluated step by step, never ahead."""
    seen = []

    def fn(step):
        seen.append(step)
        return 1.0 / (1 + step)

    opt = _optimizer()
    scheduler = ScheduledLR(opt, S.from_function(fn, lr=0.1))
    for _ in range(5):
        scheduler.step()
    assert seen == [0, 1, 2, 3, 4, 5]
    assert opt.param_groups[0]["lr"] == 0.1 / 6


@pytest.mark.parametrize("make", [
    lambda: ScheduledLR("not an optimizer", S.constant(0.1)),
    lambda: ScheduledLR(_optimizer(), lambda step: 0.1),
    lambda: ScheduledLR(_optimizer(), S.constant(0.1), momentum=0.9),
    lambda: ScheduledLR(Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1), S.constant(0.1),
                        momentum=S.constant(0.9)),
    lambda: ScheduledLR(_optimizer([0.0, 0.1]), S.constant(0.1)),
])
def test_constructor_validation(make):
    with pytest.raises(ValueError, match="ScheduledLR"):
        make()


@pytest.mark.parametrize("state", [{}, {"step": 3}, {"scales": [1.0, 0.25, 3.0]},
                                   {"step": 3, "scales": [1.0]}, {"step": -2, "scales": [1.0, 0.25, 3.0]},
                                   {"step": 2.5, "scales": [1.0, 0.25, 3.0]},
                                   {"step": True, "scales": [1.0, 0.25, 3.0]},
                                   {"step": 3, "scales": ["a", 1, 2]}, {"step": 3, "scales": None},
                                   {"step": 3, "scales": ["1", 0.25, 3.0]},
                                   {"step": 3, "scales": [math.nan, 0.25, 3.0]},
                                   {"step": 3, "scales": [1.0, math.inf, 3.0]},
                                   {"step": 3, "scales": [1.0, 0.25, -1]}, {"step": 3, "scales": [1.0, 0.0, 3.0]},
                                   {"step": 3, "scales": [1.0, True, 3.0]}, None, [3, [1.0, 0.25, 3.0]]])
def test_load_state_dict_refuses_bad_states(state):
    scheduler = ScheduledLR(_optimizer(), S.constant(0.1))
    with pytest.raises(ValueError, match="ScheduledLR.load_state_dict"):
        scheduler.load_state_dict(state)


def test_block_cache_matches_scalar_evaluation_far_out():
    """Values served from 1024-step blocks equal direct scalar calls, also at huge steps."""
    schedule = S.noisy_linear_cosine(0.1, 5000, seed=3)
    opt = _optimizer()
    scheduler = ScheduledLR(opt, schedule)
    for step in [0, 1023, 1024, 5000, 10**9 + 7]:
        scheduler.step(step)
        assert opt.param_groups[0]["lr"] == schedule(step)
    values = schedule(np.arange(2048.0))
    scheduler.step(1500)
    assert opt.param_groups[0]["lr"] == values[1500]


def test_bad_scales_leave_the_scheduler_untouched():
    opt = _optimizer()
    scheduler = ScheduledLR(opt, S.cosine(0.1, 100))
    scheduler.step(5)
    before = (scheduler.state_dict(), [g["lr"] for g in opt.param_groups])
    with pytest.raises(ValueError, match=r"ScheduledLR.load_state_dict: each of scales must be > 0, got -1"):
        scheduler.load_state_dict({"step": 50, "scales": [1.0, 0.25, -1]})
    assert (scheduler.state_dict(), [g["lr"] for g in opt.param_groups]) == before


# ---- torch's LRScheduler contract -----------------------------------------------------------------

def _train_steps(optimizer, scheduler, steps):
    """A normal loop: backward, optimizer.step(), then scheduler.step()."""
    for _ in range(steps):
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = torch.ones_like(param)
        optimizer.step()
        scheduler.step()


def test_is_a_torch_scheduler_with_its_counters():
    schedule = S.cosine(0.1, 50)
    opt = _optimizer()
    scheduler = ScheduledLR(opt, schedule)
    assert isinstance(scheduler, LRScheduler)
    assert (scheduler.last_epoch, scheduler._step_count) == (0, 1)  # torch's initial step made in __init__
    assert scheduler.base_lrs == GROUP_LRS
    assert all(g["initial_lr"] == lr for g, lr in zip(opt.param_groups, GROUP_LRS))
    _train_steps(opt, scheduler, 7)
    assert (scheduler.last_epoch, scheduler._step_count) == (7, 8)
    assert scheduler.get_last_lr() == [g["lr"] for g in opt.param_groups] == [s * schedule(7) for s in SCALES]
    scheduler.step(30)  # an explicit jump is one more step() call
    assert (scheduler.last_epoch, scheduler._step_count) == (30, 9)
    assert scheduler.get_last_lr() == [g["lr"] for g in opt.param_groups]
    scheduler._step_count += 1  # what Accelerate does for skipped optimizer steps
    scheduler.step()
    assert scheduler.last_epoch == 31 and opt.param_groups[0]["lr"] == schedule(31)


def test_no_torch_warning_in_a_normal_loop():
    opt = _optimizer(kind="adam")
    schedule = S.one_cycle(0.1, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = ScheduledLR(opt, schedule, momentum=schedule.momentum_schedule())
        _train_steps(opt, scheduler, 40)
    assert opt.param_groups[0]["lr"] == schedule(40)


def test_torchs_order_warning_reaches_a_wrong_loop():
    """torch wraps optimizer.step in LRScheduler.__init__: stepping the scheduler first is reported."""
    opt = _optimizer()
    scheduler = ScheduledLR(opt, S.constant(0.1))
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        scheduler.step()


def test_in_chained_scheduler_the_closed_form_overwrites():
    """ChainedScheduler steps each member in turn; ScheduledLR sets its closed form, so a chainable
    scheduler after it multiplies once per step (not gamma**k) and one before it has no effect."""
    schedule, gamma = S.cosine(0.1, 60), 0.9
    opt = _optimizer()
    chain = ChainedScheduler([ScheduledLR(opt, schedule), ExponentialLR(opt, gamma)])
    assert [g["lr"] for g in opt.param_groups] == [s * schedule(0) for s in SCALES]
    for k in range(1, 40):
        _train_steps(opt, chain, 1)
        assert [g["lr"] for g in opt.param_groups] == [s * schedule(k) * gamma for s in SCALES]
    assert chain.get_last_lr() == [g["lr"] for g in opt.param_groups]

    opt = _optimizer()
    chain = ChainedScheduler([ExponentialLR(opt, gamma), ScheduledLR(opt, schedule)])
    for k in range(1, 40):
        _train_steps(opt, chain, 1)
        assert [g["lr"] for g in opt.param_groups] == [s * schedule(k) for s in SCALES]


def test_in_sequential_lr_each_schedule_runs_in_local_time():
    """SequentialLR restarts the next scheduler at its milestone: schedule(k - milestone), as S.join."""
    first, second, milestone = S.exponential(0.01, 10, 0.5), S.cosine(0.1, 100), 25
    opt = _optimizer()
    sequence = SequentialLR(opt, [ScheduledLR(opt, first), ScheduledLR(opt, second)], milestones=[milestone])
    joined = S.join([first, second], [milestone])
    for k in range(120):
        expected = first(k) if k < milestone else second(k - milestone)
        assert [g["lr"] for g in opt.param_groups] == [s * expected for s in SCALES]
        assert opt.param_groups[0]["lr"] == pytest.approx(joined(k), rel=1e-15)
        _train_steps(opt, sequence, 1)
