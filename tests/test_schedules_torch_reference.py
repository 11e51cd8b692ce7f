"""lrkit schedules driven through `ScheduledLR` agree with torch's own schedulers.

Each test runs the same real optimizer twice, once under a torch scheduler and once under
`ScheduledLR(optimizer, <lrkit schedule>)`, records every group's LR (and momentum) before
each update, and compares the sequences over long runs (>= 5 cycles for cyclic schedules).
Several param groups with different initial LRs check that the group ratios are kept.
The gradient is fixed at 1, so the parameters after the run also prove the optimizer used
the recorded LRs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.optim import SGD, Adam
from torch.optim import lr_scheduler as T

import lrkit.schedules as S
from lrkit.torch import ScheduledLR

RTOL = 1e-9
ATOL = 1e-12
ONE_GROUP = [0.1]
GROUPS = [0.1, 0.025, 0.3]  # ratios 1 : 0.25 : 3


def _optimizer(lrs, kind="sgd", momentum=0.0):
    """A real optimizer with one scalar parameter per group and a constant gradient of 1."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    for p in params:
        p.grad = torch.ones(1)
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, lrs)]
    if kind == "adam":
        return Adam(groups, betas=(0.9, 0.999))
    return SGD(groups, momentum=momentum)


def _run(optimizer, scheduler, steps):
    """(lrs[step][group], momenta[step][group], final params) over `steps` updates."""
    lrs, momenta = [], []
    for _ in range(steps):
        groups = optimizer.param_groups
        lrs.append([float(g["lr"]) for g in groups])
        momenta.append([float(g["betas"][0]) if "betas" in g else float(g["momentum"]) for g in groups])
        optimizer.step()
        scheduler.step()
    params = [float(g["params"][0].detach()) for g in optimizer.param_groups]
    return np.array(lrs), np.array(momenta), np.array(params)


def _compare(make_torch, schedule, lrs, steps, *, momentum=None, kind="sgd", sgd_momentum=0.0,
             torch_lrs=None, rtol=RTOL):
    """Run torch's scheduler and ScheduledLR on identical optimizers; assert equal LRs."""
    opt_t = _optimizer(torch_lrs or lrs, kind, sgd_momentum)
    torch_lr, torch_mom, torch_params = _run(opt_t, make_torch(opt_t), steps)
    opt_l = _optimizer(lrs, kind, sgd_momentum)
    ours_lr, ours_mom, ours_params = _run(opt_l, ScheduledLR(opt_l, schedule, momentum=momentum), steps)
    np.testing.assert_allclose(ours_lr, torch_lr, rtol=rtol, atol=ATOL)
    if momentum is not None:
        np.testing.assert_allclose(ours_mom, torch_mom, rtol=rtol, atol=ATOL)
    if kind == "sgd" and sgd_momentum == 0.0:  # p = -sum(lr): the optimizer really used them
        np.testing.assert_allclose(ours_params, torch_params, rtol=1e-9)
        np.testing.assert_allclose(ours_params, -ours_lr.sum(axis=0), rtol=1e-5)
    return ours_lr, torch_lr


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_step(lrs):
    ours, _ = _compare(lambda o: T.StepLR(o, step_size=7, gamma=0.5), S.step(lrs[0], 7, 0.5), lrs, 210)
    assert ours[6, 0] == lrs[0] and ours[7, 0] == lrs[0] * 0.5  # last step before / first after


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_multistep_with_repeated_milestone(lrs):
    milestones = [10, 25, 25, 60]
    ours, _ = _compare(lambda o: T.MultiStepLR(o, milestones, gamma=0.3),
                       S.multistep(lrs[0], milestones, 0.3), lrs, 100)
    np.testing.assert_allclose(ours[[24, 25], 0], [lrs[0] * 0.3, lrs[0] * 0.3**3], rtol=1e-12)


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_exponential(lrs):
    _compare(lambda o: T.ExponentialLR(o, gamma=0.99), S.exponential(lrs[0], 1, 0.99), lrs, 1500)


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_polynomial(lrs, power):
    ours, _ = _compare(lambda o: T.PolynomialLR(o, total_iters=120, power=power),
                       S.polynomial(lrs[0], 120, end_lr=0.0, power=power), lrs, 160)
    assert np.all(ours[120:] == 0.0)  # held at end_lr = 0 after total_iters, as torch


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_cosine_annealing(lrs):
    # t <= T_max only: past T_max torch's curve rises again, lrkit's stays at alpha * lr.
    _compare(lambda o: T.CosineAnnealingLR(o, T_max=400), S.cosine(lrs[0], 400), lrs, 401)


def test_cosine_annealing_eta_min_is_alpha():
    # torch's eta_min is absolute and shared by every group, lrkit's alpha is a fraction of the
    # reference lr (groups are scaled copies), so eta_min <-> alpha is compared on one group.
    lr, eta_min = 0.1, 0.004
    _compare(lambda o: T.CosineAnnealingLR(o, T_max=400, eta_min=eta_min),
             S.cosine(lr, 400, alpha=eta_min / lr), [lr], 401)


def _cyclic_lrs(lrs, base_lr):
    """torch CyclicLR takes per-group (base_lr, max_lr); keep the group ratios for lrkit."""
    ratios = [lr / lrs[0] for lr in lrs]
    return [base_lr * r for r in ratios], ratios


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("down", [None, 35], ids=["symmetric", "asymmetric"])
@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_cyclic(lrs, mode, down):
    base, top, up, gamma = 0.001, 0.01, 20, 0.997
    base_lrs, ratios = _cyclic_lrs(lrs, base)
    max_lrs = [top * r for r in ratios]
    kwargs = {"gamma": gamma} if mode == "exp_range" else {}
    schedule = getattr(S, mode)(base, top, up, down, **kwargs)
    cycle = up + (down or up)
    steps = 6 * cycle + 3  # six full cycles and into the seventh
    ours, _ = _compare(lambda o: T.CyclicLR(o, base_lrs, max_lrs, step_size_up=up, step_size_down=down,
                                            mode=mode, gamma=gamma, cycle_momentum=False),
                       schedule, base_lrs, steps)
    peaks = np.argmax(ours[: cycle * 6, 0].reshape(6, cycle), axis=1)
    assert list(peaks) == [up] * 6  # each cycle peaks after step_size_up steps


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_cyclic_momentum_not_driven(lrs):
    """With cycle_momentum=True torch cycles SGD momentum; lrkit's CLR has no momentum
    curve, so the LR must still agree and ScheduledLR must leave momentum untouched."""
    base_lrs, _ = _cyclic_lrs(lrs, 0.001)
    opt = _optimizer(base_lrs, "sgd", momentum=0.9)
    _, momenta, _ = _run(opt, ScheduledLR(opt, S.triangular(0.001, 0.01, 20)), 100)
    assert np.all(momenta == 0.9)


ONE_CYCLE_CASES = {
    "cos": dict(pct_start=0.3, anneal="cos", three_phase=False),
    "linear": dict(pct_start=0.3, anneal="linear", three_phase=False),
    "three_phase": dict(pct_start=0.25, anneal="cos", three_phase=True),
    "three_phase_linear": dict(pct_start=0.4, anneal="linear", three_phase=True),
    "odd_pct": dict(pct_start=0.123, anneal="cos", three_phase=False),
}


def _torch_one_cycle(max_lrs, total, case, **extra):
    return lambda o: T.OneCycleLR(o, max_lr=max_lrs, total_steps=total, pct_start=case["pct_start"],
                                  anneal_strategy=case["anneal"], three_phase=case["three_phase"],
                                  div_factor=25.0, final_div_factor=1e4, **extra)


@pytest.mark.parametrize("case", list(ONE_CYCLE_CASES), ids=list(ONE_CYCLE_CASES))
@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_one_cycle_lr(lrs, case):
    total = 1000
    c = ONE_CYCLE_CASES[case]
    schedule = S.one_cycle(lrs[0], total, **c)
    # torch raises past total_steps; compare every step it defines (0 .. total-1).
    ours, _ = _compare(_torch_one_cycle(lrs, total, c, cycle_momentum=False), schedule, lrs, total)
    assert ours[0, 0] == pytest.approx(lrs[0] / 25.0, rel=1e-12)
    assert ours[-1, 0] == pytest.approx(lrs[0] / 25.0 / 1e4, rel=1e-9)


@pytest.mark.parametrize("case", list(ONE_CYCLE_CASES), ids=list(ONE_CYCLE_CASES))
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_one_cycle_momentum_curve(kind, case):
    total = 600
    c = ONE_CYCLE_CASES[case]
    schedule = S.one_cycle(0.1, total, **c)
    momentum = schedule.momentum_schedule(base_momentum=0.8, max_momentum=0.97)
    _compare(_torch_one_cycle(GROUPS, total, c, base_momentum=0.8, max_momentum=0.97),
             schedule, GROUPS, total, momentum=momentum, kind=kind, sgd_momentum=0.5)
    # the momentum curve is not constant: it really was compared
    opt = _optimizer(GROUPS, kind, 0.5)
    _, momenta, _ = _run(opt, ScheduledLR(opt, schedule, momentum=momentum), total)
    assert momenta.min() == pytest.approx(0.8, abs=1e-4) and momenta[0, 0] == 0.97


@pytest.mark.parametrize("t_mult", [1, 2, 3])
@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_sgdr_warm_restarts(lrs, t_mult):
    t0 = 10
    steps = t0 * sum(t_mult**i for i in range(6)) + 5  # six cycles and into the seventh
    _compare(lambda o: T.CosineAnnealingWarmRestarts(o, T_0=t0, T_mult=t_mult),
             S.sgdr(lrs[0], t0, t_mul=float(t_mult), m_mul=1.0), lrs, steps)


@pytest.mark.parametrize("t_mult", [1, 2, 3])
def test_sgdr_eta_min_is_alpha(t_mult):
    lr, eta_min, t0 = 0.1, 0.003, 7
    steps = t0 * sum(t_mult**i for i in range(6)) + 5
    _compare(lambda o: T.CosineAnnealingWarmRestarts(o, T_0=t0, T_mult=t_mult, eta_min=eta_min),
             S.sgdr(lr, t0, t_mul=float(t_mult), alpha=eta_min / lr), [lr], steps)


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_linear_warmup(lrs):
    _compare(lambda o: T.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=25),
             S.warmup(S.constant(lrs[0]), 25, start_lr=0.1 * lrs[0]), lrs, 60)


def _lambda(epoch: int) -> float:
    return 0.95**epoch * (1 + epoch % 3)


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_lambda(lrs):
    _compare(lambda o: T.LambdaLR(o, _lambda), S.from_function(_lambda, lr=lrs[0]), lrs, 120)


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_sequential_linear_then_cosine(lrs):
    """SequentialLR([LinearLR, CosineAnnealingLR], [w]) is both a warmup and a join."""
    w, t_max, lr = 10, 90, lrs[0]
    as_warmup = S.warmup(S.cosine(lr, t_max), w, start_lr=0.01 * lr)
    as_join = S.join([S.warmup(S.constant(lr), w, start_lr=0.01 * lr), S.cosine(lr, t_max)], [w])

    def make(o):
        return T.SequentialLR(o, [T.LinearLR(o, start_factor=0.01, total_iters=w),
                                  T.CosineAnnealingLR(o, T_max=t_max)], milestones=[w])

    for schedule in (as_warmup, as_join):
        ours, _ = _compare(make, schedule, lrs, w + t_max + 1)
        assert ours[w - 1, 0] < lr and ours[w, 0] == lr  # ramp ends just below the peak


@pytest.mark.parametrize("lrs", [ONE_GROUP, GROUPS], ids=["1group", "3groups"])
def test_from_epochs_matches_steplr_per_epoch(lrs):
    steps_per_epoch, epochs = 7, 20
    opt_t = _optimizer(lrs)
    torch_sched = T.StepLR(opt_t, step_size=3, gamma=0.5)
    per_epoch = []
    for _ in range(epochs):
        per_epoch.append([g["lr"] for g in opt_t.param_groups])
        opt_t.step()
        torch_sched.step()
    opt_l = _optimizer(lrs)
    ours, _, _ = _run(opt_l, ScheduledLR.from_epochs(opt_l, S.step(lrs[0], 3, 0.5), steps_per_epoch),
                      steps_per_epoch * epochs)
    expected = np.repeat(np.array(per_epoch), steps_per_epoch, axis=0)
    np.testing.assert_allclose(ours, expected, rtol=RTOL, atol=ATOL)
    assert ours[3 * steps_per_epoch - 1, 0] == lrs[0] and ours[3 * steps_per_epoch, 0] == lrs[0] / 2
