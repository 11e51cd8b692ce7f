"""`from_timm` and the timm cycle families against timm's formulas.

timm cannot be installed here, so the reference is `_timm_lr` below: a transcription of
``_get_lr(t)`` of ``timm/scheduler/{cosine_lr,tanh_lr,poly_lr,step_lr,multistep_lr}.py`` and
of their constructors' warmup set-up (huggingface/pytorch-image-models at commit aa4b5850),
written with ``math`` and ``bisect`` exactly as timm writes it. timm's step convention: the
training loop calls ``scheduler.step(epoch + 1)`` after each epoch (or
``step_update(num_updates)`` after each update), so epoch/update ``t`` runs with ``_get_lr(t)``;
lrkit's step ``t`` is that ``t``. Hand-derived numbers follow for the behaviours that matter.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest

import lrkit.schedules as S

cos, pi, tanh = math.cos, math.pi, math.tanh
LR = 0.1


def _timm_lr(sched: str, lr: float, t: int, *, t_initial: float = 1, lr_min: float = 0.0, cycle_mul: float = 1.0,
             cycle_decay: float = 1.0, cycle_limit: int = 1, warmup_t: float = 0, warmup_lr_init: float = 0.0,
             warmup_prefix: bool = False, k_decay: float = 1.0, power: float = 0.5, decay_t=None,
             decay_rate: float = 1.0) -> float:
    """timm's ``_get_lr(t)`` for one parameter group whose base LR is `lr` (lb=-7, ub=3 for tanh)."""
    lb, ub = -7.0, 3.0

    def main(t):
        if sched == "step":  # StepLRScheduler
            return lr * (decay_rate ** (t // decay_t))
        if sched == "multistep":  # MultiStepLRScheduler.get_curr_decay_steps
            return lr * (decay_rate ** bisect.bisect_right(decay_t, t + 1))
        if cycle_mul != 1:  # CosineLRScheduler / TanhLRScheduler / PolyLRScheduler
            i = math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))
            t_i = cycle_mul**i * t_initial
            t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
        else:
            i = t // t_initial
            t_i = t_initial
            t_curr = t - (t_initial * i)
        if i >= cycle_limit:
            return lr_min
        lr_max = lr * cycle_decay**i
        k = k_decay
        if sched == "cosine":
            return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr**k / t_i**k))
        if sched == "tanh":
            tr = t_curr / t_i
            return lr_min + 0.5 * (lr_max - lr_min) * (1 - math.tanh(lb * (1.0 - tr) + ub * tr))
        return lr_min + (lr_max - lr_min) * (1 - t_curr**k / t_i**k) ** power

    if warmup_t:  # the constructors: tanh without prefix ramps to its own value at warmup_t
        target = main(warmup_t) if sched == "tanh" and not warmup_prefix else lr
        warmup_step = (target - warmup_lr_init) / warmup_t
    if t < warmup_t:
        return warmup_lr_init + t * warmup_step
    if warmup_prefix:
        t = t - warmup_t
    return main(t)


#: (sched, from_timm's create_scheduler_v2 arguments, the scheduler's own arguments for `_timm_lr`)
CASES = [
    ("cosine", dict(num_epochs=50), dict(t_initial=50)),
    ("cosine", dict(num_epochs=50, warmup_epochs=5, warmup_lr=1e-4, min_lr=1e-3),
     dict(t_initial=50, warmup_t=5, warmup_lr_init=1e-4, lr_min=1e-3)),
    ("cosine", dict(num_epochs=50, warmup_epochs=5, warmup_prefix=True, min_lr=1e-3),
     dict(t_initial=50, warmup_t=5, warmup_lr_init=1e-5, warmup_prefix=True, lr_min=1e-3)),
    ("cosine", dict(num_epochs=20, cycle_mul=2, cycle_decay=0.5, cycle_limit=3, k_decay=2.0, min_lr=1e-3),
     dict(t_initial=20, cycle_mul=2, cycle_decay=0.5, cycle_limit=3, k_decay=2.0, lr_min=1e-3)),
    ("cosine", dict(num_epochs=10, cycle_mul=1.5, cycle_decay=0.7, cycle_limit=4, warmup_epochs=3),
     dict(t_initial=10, cycle_mul=1.5, cycle_decay=0.7, cycle_limit=4, warmup_t=3, warmup_lr_init=1e-5)),
    ("cosine", dict(num_epochs=2, warmup_epochs=1, step_on_epochs=False, updates_per_epoch=25, min_lr=1e-4),
     dict(t_initial=50, warmup_t=25, warmup_lr_init=1e-5, lr_min=1e-4)),
    ("tanh", dict(num_epochs=50), dict(t_initial=50)),
    ("tanh", dict(num_epochs=50, warmup_epochs=5, min_lr=1e-3, cycle_limit=2, cycle_decay=0.5),
     dict(t_initial=50, warmup_t=5, warmup_lr_init=1e-5, lr_min=1e-3, cycle_limit=2, cycle_decay=0.5)),
    ("tanh", dict(num_epochs=50, warmup_epochs=5, warmup_prefix=True),
     dict(t_initial=50, warmup_t=5, warmup_lr_init=1e-5, warmup_prefix=True)),
    ("tanh", dict(num_epochs=10, cycle_mul=2, cycle_limit=3, cycle_decay=0.5),
     dict(t_initial=10, cycle_mul=2, cycle_limit=3, cycle_decay=0.5)),
    ("poly", dict(num_epochs=50, decay_rate=2.0, warmup_epochs=4, k_decay=0.5, min_lr=1e-4),
     dict(t_initial=50, power=2.0, warmup_t=4, warmup_lr_init=1e-5, k_decay=0.5, lr_min=1e-4)),
    ("poly", dict(num_epochs=10, cycle_mul=2, cycle_limit=3, cycle_decay=0.5),  # factory: power = decay_rate = 0.1
     dict(t_initial=10, power=0.1, cycle_mul=2, cycle_limit=3, cycle_decay=0.5)),
    ("step", dict(decay_epochs=7, decay_rate=0.5, warmup_epochs=3),
     dict(decay_t=7, decay_rate=0.5, warmup_t=3, warmup_lr_init=1e-5)),
    ("step", dict(decay_epochs=7, decay_rate=0.5, warmup_epochs=3, warmup_prefix=True),
     dict(decay_t=7, decay_rate=0.5, warmup_t=3, warmup_lr_init=1e-5, warmup_prefix=True)),
    ("multistep", dict(decay_milestones=[10, 20, 20, 35], decay_rate=0.5),
     dict(decay_t=[10, 20, 20, 35], decay_rate=0.5)),
    ("multistep", dict(decay_milestones=[0, 1, 10], decay_rate=0.5, warmup_epochs=4),
     dict(decay_t=[0, 1, 10], decay_rate=0.5, warmup_t=4, warmup_lr_init=1e-5)),
    ("multistep", dict(decay_milestones=[2, 3], decay_rate=0.5, warmup_epochs=1, warmup_prefix=True,
                       step_on_epochs=False, updates_per_epoch=10),
     dict(decay_t=[20, 30], decay_rate=0.5, warmup_t=10, warmup_lr_init=1e-5, warmup_prefix=True)),
]


@pytest.mark.parametrize("sched, args, reference", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_from_timm_equals_timms_get_lr(sched, args, reference):
    schedule = S.from_timm(sched, LR, **args)
    t = np.arange(200)
    expected = [_timm_lr(sched, LR, int(k), **reference) for k in t]
    np.testing.assert_allclose(schedule(t.astype(float)), expected, rtol=1e-12, atol=0)
    assert S.parse(schedule.to_spec()) == schedule


def test_overlapping_warmup_replaces_the_first_steps():
    """warmup_prefix=False (timm's default): ramp 1e-4 + t * (0.1 - 1e-4) / 5 for t < 5, then the
    cosine at its own t: at t = 5 it is already 5 steps in, below the ramp's target 0.1."""
    overlap = S.from_timm("cosine", LR, num_epochs=50, warmup_epochs=5, warmup_lr=1e-4, min_lr=1e-3)
    prefix = S.from_timm("cosine", LR, num_epochs=50, warmup_epochs=5, warmup_lr=1e-4, min_lr=1e-3,
                         warmup_prefix=True)
    for schedule in (overlap, prefix):
        assert schedule(0) == pytest.approx(1e-4, rel=1e-12)
        assert schedule(4) == pytest.approx(1e-4 + 4 * (0.1 - 1e-4) / 5, rel=1e-12)
    assert overlap(5) == pytest.approx(1e-3 + 0.5 * (0.1 - 1e-3) * (1 + cos(pi * 5 / 50)), rel=1e-12)
    assert overlap(50) == overlap(500) == 1e-3  # cycle_limit=1: held at min_lr after t_initial
    assert prefix(5) == pytest.approx(0.1, rel=1e-12)  # the cosine starts after the warmup
    assert prefix(54) == pytest.approx(1e-3 + 0.5 * (0.1 - 1e-3) * (1 + cos(pi * 49 / 50)), rel=1e-12)
    assert prefix(55) == 1e-3


def test_tanh_warmup_ramps_to_its_own_value():
    """TanhLRScheduler without prefix ramps to _get_lr(warmup_t), so there is no jump at the end."""
    schedule = S.from_timm("tanh", LR, num_epochs=50, warmup_epochs=5, warmup_lr=0.0)
    at_5 = 0.5 * 0.1 * (1 - tanh(-7 * (1 - 0.1) + 3 * 0.1))  # r = 5 / 50
    assert schedule(5) == pytest.approx(at_5, rel=1e-12)
    assert schedule(4) == pytest.approx(4 * at_5 / 5, rel=1e-12)
    assert S.timm_tanh(LR, 50)(0) == pytest.approx(0.05 * (1 - tanh(-7)), rel=1e-12)  # 0.99999917 * lr


def test_cycles_decay_and_hold():
    """t_initial=20, cycle_mul=2: cycles [0, 20), [20, 60), [60, 140); peaks 0.1, 0.05, 0.025; then min_lr."""
    schedule = S.timm_cosine(LR, 20, lr_min=1e-3, cycle_mul=2.0, cycle_decay=0.5, cycle_limit=3, k_decay=2.0)
    assert schedule(10) == pytest.approx(1e-3 + 0.5 * 0.099 * (1 + cos(pi * 100 / 400)), rel=1e-12)  # k = 2
    assert schedule(20) == pytest.approx(0.05, rel=1e-12)
    assert schedule(59) == pytest.approx(1e-3 + 0.5 * 0.049 * (1 + cos(pi * 39**2 / 40**2)), rel=1e-12)
    assert schedule(60) == pytest.approx(0.025, rel=1e-12)
    assert schedule(139) > schedule(140) == schedule(10**6) == 1e-3
    poly = S.timm_poly(LR, 50, power=2.0, lr_min=1e-3, k_decay=0.5)
    assert poly(25) == pytest.approx(1e-3 + 0.099 * (1 - 25**0.5 / 50**0.5) ** 2, rel=1e-12)


def test_multistep_drops_one_update_before_torch():
    """timm counts the milestones m <= t + 1 (bisect_right(decay_t, t + 1)), torch's MultiStepLR
    m <= t: for milestones [10, 20], timm's LR is already 0.01 at t = 9 and 0.001 at t = 19; so
    timm's LR at t is torch's after t + 1 steps."""
    torch = pytest.importorskip("torch")
    schedule = S.from_timm("multistep", LR, decay_milestones=[10, 20], decay_rate=0.1)
    assert schedule(8) == LR and schedule(9) == pytest.approx(0.01) and schedule(19) == pytest.approx(0.001)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    reference = torch.optim.lr_scheduler.MultiStepLR(optimizer, [10, 20], gamma=0.1)
    torch_lrs = []
    for _ in range(31):
        torch_lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    np.testing.assert_allclose(schedule(np.arange(30.0)), torch_lrs[1:], rtol=1e-12)
    assert schedule == S.shift(S.multistep(LR, [10, 20], 0.1), 1)


def test_restarts_are_exact_where_timms_logarithm_rounds():
    """cycle_mul=3, t_initial=10: restart 5 is at t = 10 * (3**5 - 1) / 2 = 1210. timm's
    math.log(243, 3) is 4.999..., so its _get_lr(1210) is the end of cycle 4 (lr_min) and the
    restart shows at 1211; lrkit restarts at 1210. Elsewhere the two agree."""
    args = dict(t_initial=10, cycle_mul=3, cycle_limit=10, cycle_decay=1.0)
    schedule = S.timm_cosine(LR, 10, cycle_mul=3.0, cycle_limit=10)
    assert math.log(243, 3) < 5
    assert _timm_lr("cosine", LR, 1210, **args) == 0.0 and schedule(1210) == LR
    for t in (1209, 1211, 1300, 400, 401):
        assert schedule(t) == pytest.approx(_timm_lr("cosine", LR, t, **args), rel=1e-12, abs=1e-18)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sched="plateau"), r"^from_timm: sched must be a schedule of the step; 'plateau' .*ReduceLROnPlateau"),
    (dict(sched="cosine_restarts"), r"^from_timm: sched must be one of 'cosine', 'tanh', 'step', 'multistep', 'poly'"),
    (dict(sched="cosine", noise=0.5), r"^from_timm: noise must be None \(timm's LR noise draws from torch"),
    (dict(sched="cosine", step_on_epochs=False),
     r"^from_timm: updates_per_epoch \(with step_on_epochs=False\) must be an integer >= 1, got 0"),
    (dict(sched="cosine", cycle_mul=0.5), r"^timm_cosine: cycle_mul must be in \[1.0, 1000000.0\], got 0.5"),
    (dict(sched="cosine", cycle_limit=0), r"^timm_cosine: cycle_limit must be an integer >= 1, got 0"),
    (dict(sched="cosine", warmup_epochs=-1), r"^from_timm: warmup_epochs must be >= 0, got -1"),
    (dict(sched="multistep", decay_milestones=[]), r"^from_timm: decay_milestones must be a non-empty list"),
])
def test_bad_arguments_are_value_errors(kwargs, message):
    sched = kwargs.pop("sched")
    with pytest.raises(ValueError, match=message):
        S.from_timm(sched, LR, **kwargs)
