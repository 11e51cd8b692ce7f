"""The check of the finder's suggestion: it never returns an LR whose hold diverged, restores
exactly, stays within its budget, keeps the groups' ratios, and can be turned off."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lrkit.torch import find_group_lrs, find_lr
from lrkit.torch.finder_check import BACKOFF, CheckResult, Hold
from test_finder import (
    assert_identical,
    everything,
    group_lrs_recording_step,
    make_data,
    make_loader,
    make_model,
    two_group_setup,
    warmed,
)


def fixed(lr):
    """A rule that suggests `lr` whatever the curve."""
    def rule(lrs, losses):
        return lr

    return rule


def quadratic():
    """Least squares on a fixed batch: the Hessian of the MSE is ``2 XᵀX / n``, so heavy-ball SGD
    (momentum 0.9) is stable exactly below ``lr = 2 (1 + 0.9) / lambda_max`` (the edge of stability)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    x[:, 0] = 10 * (x[:, 0] - x[:, 0].mean())  # one sharp direction, which the targets do not use
    w = torch.randn(8, generator=g)
    w[0] = 0.0
    y = (x @ w).unsqueeze(1)
    edge = 2 * 1.9 / torch.linalg.eigvalsh(2 * x.T @ x / 64).max().item()
    model = nn.Linear(8, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), [(x, y)], edge


@pytest.mark.parametrize("factor, holds", [(1.5, False), (0.9, True)])
def test_the_hold_finds_the_heavy_ball_edge_of_stability_on_a_quadratic(factor, holds):
    model, optimizer, batches, edge = quadratic()
    result = find_lr(model, optimizer, nn.MSELoss(), batches, num_iter=60, end_lr=1.0, method=fixed(factor * edge),
                     hold_margin=1.0, progress=False)
    check = result.check
    assert check.candidate == result.found.lr == pytest.approx(factor * edge)
    assert check.holds[0].passed is holds
    assert check.verified and check.holds[-1].passed and check.holds[-1].lr == result.suggestion
    assert result.suggestion < edge  # above the edge the hold diverges, below it it holds
    if not holds:
        assert "non-finite" in check.holds[0].why or "rose" in check.holds[0].why
        assert result.suggestion == pytest.approx(factor * edge * BACKOFF)
        assert "did not hold" in result.notes[-1] and "backed off to" in result.notes[-1]
    else:
        assert result.notes[-1] == f"check: {result.suggestion:.3g} held at 1x ({result.suggestion:.3g}) for 40 updates"


@pytest.mark.parametrize("optimizer_cls, kwargs", [(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
                                                   (torch.optim.Adam, {"lr": 1e-3})], ids=["sgd", "adam"])
def test_the_check_never_returns_an_lr_whose_hold_diverged_and_restores_exactly(optimizer_cls, kwargs):
    model, optimizer, loader = warmed(optimizer_cls, **kwargs)
    before = everything(model, optimizer, loader)
    too_high = 30.0 if optimizer_cls is torch.optim.SGD else 3.0
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=100, method=fixed(too_high),
                     hold_steps=10, progress=False)
    check = result.check
    assert not check.holds[0].passed and result.suggestion < too_high
    assert check.verified and check.holds[-1].passed and check.holds[-1].lr == result.suggestion
    assert all(hold.lr > result.suggestion for hold in check.holds if not hold.passed)
    assert result.group_lrs == (result.suggestion,)
    assert_identical(before, everything(model, optimizer, loader))


def test_training_after_a_backed_off_check_is_bit_identical_to_training_without_it():
    def train(run_finder):
        model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
        model.train()
        if run_finder:
            result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=30, method=fixed(30.0),
                             hold_steps=10, progress=False)
            assert len(result.check.holds) > 1
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        return model.state_dict()

    assert_identical(train(False), train(True))


def test_restore_is_exact_after_a_check_with_grad_scaler_autocast_and_accumulation():
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)
    before, scale = everything(model, optimizer, loader), scaler.state_dict()
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=40, grad_scaler=scaler,
                     autocast_dtype=torch.bfloat16, accumulation_steps=2, method=fixed(30.0), hold_steps=10,
                     progress=False)
    assert len(result.check.holds) > 1 and result.suggestion < 30.0
    assert scaler.state_dict() == scale
    assert_identical(before, everything(model, optimizer, loader))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_the_check_spends_at_most_the_sweeps_updates(accumulation):
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    steps, batches = [], []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))

    def step(m, batch):
        batches.append(1)
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    result = find_lr(model, optimizer, None, loader, end_lr=1e-2, num_iter=40, step_fn=step, method=fixed(30.0),
                     hold_steps=15, accumulation_steps=accumulation, progress=False)
    check = result.check
    assert result.stop_reason == "completed" and len(result.lrs) == 40
    assert len(steps) == 40 + check.updates and len(batches) == accumulation * len(steps)
    assert check.updates <= 40 and all(hold.updates <= 15 for hold in check.holds)
    assert check.updates == sum(hold.updates for hold in check.holds) == check.to_dict()["updates"]


def test_the_check_can_be_turned_off():
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, end_lr=1e-2, num_iter=40, method=fixed(30.0),
                     check="none", progress=False)
    assert result.check is None and result.suggestion == result.found.lr == 30.0 and len(steps) == 40
    assert not any(note.startswith("check") for note in result.notes)


def test_when_no_lr_holds_within_the_budget_the_lr_returned_is_lower_and_flagged():
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    calls = []

    def step(m, batch):  # every loss after the sweep's 20 is NaN: no hold can pass
        calls.append(1)
        loss = nn.functional.cross_entropy(m(batch[0]), batch[1])
        return loss * float("nan") if len(calls) > 20 else loss

    before = everything(model, optimizer, loader)
    result = find_lr(model, optimizer, None, loader, end_lr=1e-2, num_iter=20, step_fn=step, method=fixed(0.1),
                     hold_steps=8, progress=False)
    check = result.check
    assert not check.verified and not any(hold.passed for hold in check.holds)
    assert len(check.holds) == 13  # each fails at its first update; a hold of 8 fits while 12 are spent
    assert result.suggestion == pytest.approx(0.1 * BACKOFF ** 13) and check.updates == 13
    assert "no LR held" in result.notes[-1] and "unchecked" in result.notes[-1]
    assert_identical(before, everything(model, optimizer, loader))


def test_the_check_scales_every_group_together():
    model, optimizer, loader = two_group_setup()
    seen = []

    step = group_lrs_recording_step(optimizer, seen)

    result = find_lr(model, optimizer, None, loader, num_iter=30, end_lr=1e-2, step_fn=step, method=fixed(30.0),
                     hold_steps=10, progress=False)
    held = np.array(seen[30:])
    assert len(held) == result.check.updates > 0
    np.testing.assert_allclose(held[:, 1], 10.0 * held[:, 0])
    assert set(held[:, 0]) == {hold.held_lr for hold in result.check.holds}
    assert result.group_lrs == pytest.approx((result.suggestion, 10.0 * result.suggestion))
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]


def test_find_group_lrs_checks_each_group_alone():
    model, optimizer, loader = two_group_setup()
    before = everything(model, optimizer, loader)
    seen = []

    step = group_lrs_recording_step(optimizer, seen)

    results = find_group_lrs(model, optimizer, None, loader, num_iter=20, end_lr=1e-2, step_fn=step, seed=0,
                             method=fixed(30.0), hold_steps=10, progress=False)
    seen = np.array(seen)
    first_holds = seen[20: 20 + results[0].check.updates]
    second_holds = seen[40 + results[0].check.updates:]
    assert np.all(first_holds[:, 1] == 0.1) and np.all(second_holds[:, 0] == 0.01)
    assert set(first_holds[:, 0]) == {hold.held_lr for hold in results[0].check.holds}
    assert set(second_holds[:, 1]) == {hold.held_lr for hold in results[1].check.holds}
    assert results[0].group_lrs == (results[0].suggestion, 0.1)
    assert results[1].group_lrs == (0.01, results[1].suggestion)
    assert all(r.check.updates > 0 for r in results)
    assert_identical(before, everything(model, optimizer, loader))


def test_the_check_reads_the_training_loss_with_a_val_loader():
    model, loader = make_model(), make_loader()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    val = DataLoader(make_data(100, seed=1), batch_size=50)
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=20, val_loader=val,
                     method=fixed(30.0), hold_steps=10, progress=False)
    assert result.validation and result.check.holds and result.suggestion < 30.0


def test_check_result_json_round_trip():
    check = CheckResult(candidate=0.2, lr=0.2 * BACKOFF, margin=10**0.5, hold_steps=30,
                        holds=(Hold(0.2, 0.2 * 10**0.5, 12, False, "non-finite loss at update 12"),
                               Hold(0.2 * BACKOFF, 0.2 * BACKOFF * 10**0.5, 30, True)), verified=True)
    data = json.loads(json.dumps(check.to_dict()))
    assert data["updates"] == 42 and data["note"] == check.note
    assert check.note == ("check: 0.2 (non-finite loss at update 12) did not hold at 3.16x for 30 updates; backed off "
                          "to 0.112, which held (42 updates spent)")
    assert CheckResult.from_dict(data) == check


def test_schedule_picks_the_rule_of_find_lr_and_find_group_lrs(monkeypatch):
    from lrkit import suggest
    from lrkit.schedules import cosine, one_cycle

    monkeypatch.setitem(suggest.SCHEDULE_RULES, "constant", "minimum")  # kinds reading different rules

    model, optimizer, loader = two_group_setup()
    runs = {"constant": "minimum", "decaying": "consensus", "cosine(lr=0.1, decay_steps=500)": "consensus",
            "constant(lr=0.1)": "minimum"}
    for schedule, rule in runs.items():
        result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=20, schedule=schedule,
                         check="none", progress=False)
        assert result.method == rule and result.suggestion == result.suggestions[rule]
        assert rule in result.reason and result.to_dict()["reason"] == result.reason
    for schedule in (cosine(0.1, 500), one_cycle(max_lr=0.1, total_steps=500)):
        results = find_group_lrs(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=20, schedule=schedule,
                                 check="none", progress=False)
        assert all(r.method == "consensus" and "decaying schedule" in r.reason for r in results)
    default = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=20, check="none", progress=False)
    assert default.method == "consensus" and default.reason == "rule 'consensus': the default rule (no schedule given)"


def test_the_first_call_in_a_fresh_interpreter_leaves_random_as_it_found_it():
    """Importing rich (the progress bar) draws from Python's random: `lrkit.find_lr`, loaded lazily
    on first use, must still give every generator back as it was before the call."""
    code = textwrap.dedent("""
        import random
        import numpy as np
        import torch
        from torch import nn
        import lrkit

        random.seed(0); np.random.seed(0); torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
        x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
        loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
        lrkit.find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=20, progress=True)
        assert "rich" in __import__("sys").modules, "the progress bar was not imported"
        assert random.getstate() == states[0], "random"
        assert (np.random.get_state()[1] == states[1]).all(), "numpy"
        assert torch.equal(torch.get_rng_state(), states[2]), "torch"
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
