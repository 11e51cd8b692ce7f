"""`from_hf` against ``transformers.get_scheduler``: every schedule name, several parameter sets each.

transformers' schedules are ``LambdaLR``s: after ``k`` calls to ``scheduler.step()`` the LR is
``lr * lr_lambda(k)``; lrkit's step ``k`` is that LR. Every case compares every step from 0 to
``num_training_steps + 20``, so both sides of every boundary (warmup end, stable and decay ends,
restarts, the end of training and past it) are checked. Tolerance: ``rtol=1e-12``, and an absolute
``1e-15 * lr`` for the ends of cosine cycles, where ``1 + cos(pi * x)`` is about 1e-5 and the two
libraries' roundings of ``x`` differ by 1e-11 of that (5e-18 absolute).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

import lrkit.schedules as S

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

LR = 0.1

#: (name, num_warmup_steps, num_training_steps, scheduler_specific_kwargs)
CASES = [
    ("linear", 10, 100, {}),
    ("linear", 0, 50, {}),
    ("linear", 1, 7, {}),
    ("cosine", 10, 100, {}),
    ("cosine", 10, 100, {"num_cycles": 1.5}),
    ("cosine", 0, 37, {}),
    ("cosine", 5, 60, {"num_cycles": 0.25}),
    ("cosine_with_restarts", 10, 100, {}),
    ("cosine_with_restarts", 10, 100, {"num_cycles": 3}),
    ("cosine_with_restarts", 7, 97, {"num_cycles": 7}),
    ("cosine_with_restarts", 0, 120, {"num_cycles": 4}),
    ("polynomial", 10, 100, {}),
    ("polynomial", 10, 100, {"power": 2.0, "lr_end": 1e-3}),
    ("polynomial", 0, 80, {"power": 0.5, "lr_end": 0.0}),
    ("constant", None, None, {}),
    ("constant", 0, 100, {}),
    ("constant_with_warmup", 10, 100, {}),
    ("constant_with_warmup", 0, 100, {}),
    ("constant_with_warmup", 1, 10, {}),
    ("inverse_sqrt", 10, None, {}),
    ("inverse_sqrt", 0, None, {}),  # timescale 10 000
    ("inverse_sqrt", 10, 100, {"timescale": 25}),
    ("inverse_sqrt", 10, None, {"timescale": 1}),
    ("inverse_sqrt", 3, None, {"timescale": 40}),
    ("cosine_with_min_lr", 10, 100, {"min_lr": 1e-3}),
    ("cosine_with_min_lr", 10, 100, {"min_lr_rate": 0.05, "num_cycles": 1.0}),
    ("cosine_with_min_lr", 0, 64, {"min_lr_rate": 0.0}),
    ("cosine_warmup_with_min_lr", 10, 100, {"min_lr": 1e-3}),
    ("cosine_warmup_with_min_lr", 10, 100, {"min_lr_rate": 0.1, "warmup_lr_rate": 0.2}),
    ("cosine_warmup_with_min_lr", 10, 100, {"min_lr_rate": 0.1, "num_cycles": 1.0}),
    ("cosine_warmup_with_min_lr", 2, 100, {"min_lr_rate": 0.1, "warmup_lr_rate": 0.0}),
    ("cosine_warmup_with_min_lr", 1, 100, {"min_lr_rate": 0.1, "warmup_lr_rate": 0.2}),
    ("cosine_warmup_with_min_lr", 1, 100, {"min_lr_rate": 0.1}),
    ("cosine_warmup_with_min_lr", 0, 100, {"min_lr_rate": 0.1}),
    ("warmup_stable_decay", 10, 100, {"num_decay_steps": 20}),
    ("warmup_stable_decay", 10, 100, {"num_decay_steps": 20, "min_lr_ratio": 0.1, "warmup_type": "1-sqrt",
                                      "decay_type": "1-sqrt"}),
    ("warmup_stable_decay", 10, 100, {"num_decay_steps": 30, "min_lr_ratio": 0.05, "warmup_type": "cosine",
                                      "decay_type": "linear"}),
    ("warmup_stable_decay", 10, None, {"num_decay_steps": 30, "num_stable_steps": 40, "num_cycles": 1.0}),
    ("warmup_stable_decay", 10, 40, {"num_decay_steps": 30}),  # no stable phase
    ("warmup_stable_decay", 0, 100, {"num_decay_steps": 100, "decay_type": "linear"}),
    ("warmup_stable_decay", 0, 50, {"num_decay_steps": 0}),
]


def _transformers_lrs(name, warmup, total, kwargs, steps: int) -> np.ndarray:
    """The LR of each update 0..steps-1 that transformers' scheduler sets on a torch SGD."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    with warnings.catch_warnings():  # wsd warns when both num_training_steps and num_stable_steps are given
        warnings.simplefilter("ignore")
        scheduler = transformers.get_scheduler(name, optimizer, warmup, total, scheduler_specific_kwargs=kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(lrs)


def _steps(total) -> int:
    return (total or 100) + 20


@pytest.mark.parametrize("name, warmup, total, kwargs", CASES,
                         ids=[f"{c[0]}-W{c[1]}-N{c[2]}-{'-'.join(f'{k}={v}' for k, v in c[3].items())}" for c in CASES])
def test_from_hf_equals_transformers(name, warmup, total, kwargs):
    steps = _steps(total)
    expected = _transformers_lrs(name, warmup, total, kwargs, steps)
    schedule = S.from_hf(name, LR, warmup, total, **kwargs)
    np.testing.assert_allclose(schedule(np.arange(steps, dtype=float)), expected, rtol=1e-12, atol=1e-15 * LR)


def test_every_transformers_name_is_covered():
    names = {kind.value for kind in transformers.SchedulerType}
    assert names == set(S.HF_SCHEDULES) | {"reduce_lr_on_plateau", "greedy"}
    assert {case[0] for case in CASES} == set(S.HF_SCHEDULES)
    assert S.from_hf(transformers.SchedulerType.COSINE, LR, 10, 100) == S.from_hf("cosine", LR, 10, 100)


def test_the_composition_is_an_ordinary_schedule():
    """It saves, parses back and drives ScheduledLR: the LRs of a training loop are transformers'."""
    from lrkit.torch import ScheduledLR

    schedule = S.from_hf("warmup_stable_decay", LR, 10, 100, num_decay_steps=20, min_lr_ratio=0.1)
    assert S.parse(schedule.to_spec()) == schedule == S.from_dict(schedule.to_dict())
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    scheduler = ScheduledLR(optimizer, schedule)
    lrs = []
    for _ in range(120):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = _transformers_lrs("warmup_stable_decay", 10, 100, {"num_decay_steps": 20, "min_lr_ratio": 0.1}, 120)
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_the_compositions_read_as_documented():
    assert S.from_hf("linear", LR, 10, 100) == S.warmup(S.polynomial(LR, 90, end_lr=0.0), 10)
    assert S.from_hf("cosine", LR, 0, 100) == S.cosine_wave(LR, 100)
    assert S.from_hf("inverse_sqrt", LR, 10) == S.warmup(S.shift(S.inverse_sqrt(LR, 10), 9), 10)
    assert S.from_hf("cosine_warmup_with_min_lr", LR, 10, 100, min_lr_rate=0.1) == S.warmup(
        S.cosine_wave(LR, 90, alpha=0.1), 9, start_lr=LR / 10)
    assert S.from_hf("constant", LR, 0, 100) == S.constant(LR)


ERRORS = [
    (("reduce_lr_on_plateau", LR), {},
     r"^from_hf: name must be a schedule of the step; .*lrkit\.torch\.ReduceLROnPlateau"),
    (("greedy", LR), {}, r"^from_hf: name must be a schedule of the step; 'greedy' reacts to a metric"),
    (("cosine_annealing", LR, 10, 100), {},
     r"^from_hf: name must be one of 'linear', 'cosine', .*got 'cosine_annealing'"),
    (("linear", LR, None, 100), {},
     r"^from_hf: num_warmup_steps must be an integer >= 0 \(required by 'linear'\), got None"),
    (("cosine", LR, 10), {}, r"^from_hf: num_training_steps must be an integer > num_warmup_steps \(required by "
                             r"'cosine'\), got None"),
    (("cosine", LR, 10, 10), {}, r"^from_hf: num_training_steps must be > num_warmup_steps=10, got 10"),
    (("linear", LR, 2.5, 100), {}, r"^from_hf: num_warmup_steps must be an integer >= 0, got 2.5"),
    (("cosine", LR, 10, 100), {"power": 2.0},
     r"^from_hf: the scheduler_specific_kwargs of 'cosine' must be among \['num_cycles'\], got \['power'\]"),
    (("constant_with_warmup", LR, 10, 100), {"num_cycles": 1},
     r"^from_hf: the scheduler_specific_kwargs of 'constant_with_warmup' must be among \[\], got \['num_cycles'\]"),
    (("constant", LR, 5, 100), {}, r"^from_hf: num_warmup_steps must be 0 or None for 'constant'.*got 5"),
    (("cosine_with_min_lr", LR, 10, 100), {},
     r"^from_hf: exactly one of min_lr and min_lr_rate must be given, got \{'min_lr': None, 'min_lr_rate': None\}"),
    (("cosine_warmup_with_min_lr", LR, 10, 100), {"min_lr": 0.001, "min_lr_rate": 0.1},
     r"^from_hf: exactly one of min_lr and min_lr_rate must be given"),
    (("cosine_with_min_lr", LR, 10, 100), {"min_lr": 0.2}, r"^from_hf: min_lr must be <= lr=0.1, got 0.2"),
    (("polynomial", LR, 10, 100), {"lr_end": 0.1}, r"^from_hf: lr_end must be < lr=0.1 .*got 0.1"),
    (("inverse_sqrt", LR, 10), {"timescale": 0}, r"^from_hf: timescale must be an integer >= 1, got 0"),
    (("warmup_stable_decay", LR, 10, 100), {},
     r"^from_hf: num_decay_steps must be an integer >= 0 \(required by 'warmup_stable_decay'\), got None"),
    (("warmup_stable_decay", LR, 10), {"num_decay_steps": 20},
     r"^from_hf: num_training_steps or num_stable_steps must be given for 'warmup_stable_decay', got None"),
    (("warmup_stable_decay", LR, 10, 25), {"num_decay_steps": 20},
     r"^from_hf: num_training_steps must be >= num_warmup_steps \+ num_decay_steps = 30, got 25"),
    (("warmup_stable_decay", LR, 10, 100), {"num_decay_steps": 20, "warmup_type": "exp"},
     r"^from_hf: warmup_type must be one of 'linear', 'cosine', '1-sqrt', got 'exp'"),
    (("warmup_stable_decay", LR, 10, 100), {"num_decay_steps": 20, "min_lr_ratio": 1.5},
     r"^from_hf: min_lr_ratio must be in \[0.0, 1.0\], got 1.5"),
]


@pytest.mark.parametrize("args, kwargs, message", ERRORS, ids=range(len(ERRORS)))
def test_bad_arguments_are_one_line_value_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        S.from_hf(*args, **kwargs)


def test_stable_steps_win_over_training_steps_with_a_log_line(caplog):
    """As transformers (which warns): num_stable_steps is used, the phases end where they end."""
    with caplog.at_level(logging.WARNING, logger="lrkit.schedules.hf"):
        schedule = S.from_hf("warmup_stable_decay", LR, 10, 100, num_decay_steps=20, num_stable_steps=30)
    assert "phases end at step 60, not at num_training_steps=100" in caplog.text
    assert schedule(59) > schedule(60) == 0.0
