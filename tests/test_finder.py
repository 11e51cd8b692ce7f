"""find_lr / find_group_lrs: the ramp, smoothing, stops, exact restore on every path, groups, options."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrkit.suggest import Suggestion
from lrkit.torch import FinderResult, find_group_lrs, find_lr
from lrkit.torch.finder import BiasCorrectedAverage, FinderOptions, ramp
from lrkit.torch.finder_state import TrainingSnapshot


# -- fixtures -------------------------------------------------------------------------------
def make_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return TensorDataset(x, y)


def make_model():
    """Linear-BatchNorm-ReLU-Dropout-Linear: parameters, running buffers and RNG use."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def make_loader(batch_size=32, seed=0):
    return DataLoader(make_data(), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def warmed(optimizer_cls=torch.optim.SGD, **kwargs):
    """A model and optimizer that have trained a few steps (non-empty optimizer state, grads set)."""
    model, loader = make_model(), make_loader()
    optimizer = optimizer_cls(model.parameters(), **kwargs)
    for i, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if i == 2:
            break
    model.eval()  # a mode the finder must give back
    return model, optimizer, loader


def everything(model, optimizer, loader):
    """Deep copies of every piece of state the finder must restore."""
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "optimizer": _clone(optimizer.state_dict()),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
        "loader_rng": loader.generator.get_state(),
    }


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


def assert_identical(a, b, path="state"):
    """Every tensor torch.equal (and same dtype), every other value ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_identical(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    else:
        assert a == b, path


OPTIMIZERS = [(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}), (torch.optim.Adam, {"lr": 1e-3})]


def test_find_lr_is_exported_lazily_from_lrkit():
    import lrkit

    assert lrkit.find_lr is find_lr


# -- formulas -------------------------------------------------------------------------------
def test_ramp_by_hand():
    assert ramp(1e-3, 1.0, 4) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0], rel=1e-12)
    assert ramp(0.1, 1.0, 4, mode="linear") == pytest.approx([0.1, 0.4, 0.7, 1.0], rel=1e-12)
    assert ramp(1e-7, 10.0, 100)[-1] == 10.0


def test_ramp_matches_torch_lr_finder_formula():
    # torch-lr-finder ExponentialLR/LinearLR.get_lr at last_epoch = i: base * (end/base) ** (i/(n-1))
    start, end, n = 1e-7, 10.0, 100
    expected_exp = [start * (end / start) ** (i / (n - 1)) for i in range(n)]
    expected_lin = [start + i / (n - 1) * (end - start) for i in range(n)]
    np.testing.assert_allclose(ramp(start, end, n), expected_exp, rtol=1e-13)
    np.testing.assert_allclose(ramp(start, end, n, "linear"), expected_lin, rtol=1e-13)


def test_bias_corrected_average_by_hand():
    average = BiasCorrectedAverage(0.5)
    # a0 = 0.5*2 = 1, S0 = 1/0.5 = 2; a1 = 0.5*1 + 0.5*4 = 2.5, S1 = 2.5/0.75
    assert average(2.0) == 2.0
    assert average(4.0) == pytest.approx(2.5 / 0.75, rel=1e-15)
    assert BiasCorrectedAverage(0.0)(7.0) == 7.0


# -- what is recorded -------------------------------------------------------------------------
def lr_recording_step(optimizer, seen):
    """A `step_fn` (cross-entropy on an ``(x, y)`` batch) that appends the first group's LR to `seen`."""
    def step(m, batch):
        seen.append(optimizer.param_groups[0]["lr"])
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    return step


def test_records_the_lr_of_each_update_and_the_loss_before_it():
    model, loader = make_model(), make_loader()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    step = lr_recording_step(optimizer, seen)
    reference = make_model()
    x0, y0 = next(iter(make_loader(seed=5)))  # `seed` reseeds the loader's generator too
    torch.manual_seed(5)
    expected_first = nn.functional.cross_entropy(reference.train()(x0), y0).item()
    result = find_lr(model, optimizer, None, loader, start_lr=1e-4, end_lr=1e-1, num_iter=20, step_fn=step,
                     smooth=0.9, seed=5, check="none", progress=False)
    assert seen == ramp(1e-4, 1e-1, 20).tolist()
    np.testing.assert_array_equal(result.lrs, ramp(1e-4, 1e-1, 20))
    assert result.raw_losses[0] == expected_first
    average = BiasCorrectedAverage(0.9)
    assert result.losses.tolist() == [average(v) for v in result.raw_losses]
    assert result.stop_reason == "completed" and result.suggestion == result.suggestions[result.method]


def test_seed_makes_the_curve_reproducible_and_is_undone():
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    before = everything(model, optimizer, loader)
    a = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=30, seed=3, progress=False)
    b = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=30, seed=3, progress=False)
    np.testing.assert_array_equal(a.raw_losses, b.raw_losses)
    assert_identical(before, everything(model, optimizer, loader))


# -- exact restore ----------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer_cls, kwargs", OPTIMIZERS, ids=["sgd", "adam"])
def test_restore_is_exact_after_a_diverged_run(optimizer_cls, kwargs):
    model, optimizer, loader = warmed(optimizer_cls, **kwargs)
    before = everything(model, optimizer, loader)
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, end_lr=100.0, num_iter=100, progress=False)
    assert result.stop_reason == "diverged" and len(result.lrs) < 100
    assert result.losses[-1] > 4.0 * result.losses.min()
    assert_identical(before, everything(model, optimizer, loader))


@pytest.mark.parametrize("optimizer_cls, kwargs", OPTIMIZERS, ids=["sgd", "adam"])
def test_restore_is_exact_after_a_completed_run(optimizer_cls, kwargs):
    model, optimizer, loader = warmed(optimizer_cls, **kwargs)
    before = everything(model, optimizer, loader)
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, end_lr=1e-2, num_iter=30, progress=False)
    assert result.stop_reason == "completed" and len(result.lrs) == 30
    assert_identical(before, everything(model, optimizer, loader))


def test_training_after_the_finder_is_bit_identical_to_training_without_it():
    def train(run_finder):
        model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
        model.train()
        if run_finder:
            find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=25, progress=False)
        losses = []
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses, model.state_dict()

    plain, with_finder = train(False), train(True)
    assert plain[0] == with_finder[0]
    assert_identical(plain[1], with_finder[1])


def test_restore_is_exact_when_the_loss_turns_nan():
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    before = everything(model, optimizer, loader)
    calls = []

    def step(m, batch):
        calls.append(1)
        loss = nn.functional.cross_entropy(m(batch[0]), batch[1])
        return loss * float("nan") if len(calls) > 12 else loss

    result = find_lr(model, optimizer, None, loader, num_iter=50, step_fn=step, progress=False)
    assert result.stop_reason == "non-finite" and len(result.raw_losses) == 12
    assert np.all(np.isfinite(result.raw_losses))
    assert_identical(before, everything(model, optimizer, loader))


def test_restore_is_exact_when_the_loss_is_inf_from_the_start():
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    before = everything(model, optimizer, loader)
    with pytest.raises(RuntimeError, match="recorded 0 finite loss"):
        find_lr(model, optimizer, None, loader, step_fn=lambda m, b: m(b[0]).sum() * math.inf, progress=False)
    assert_identical(before, everything(model, optimizer, loader))


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "interrupt"])
def test_restore_is_exact_when_an_exception_escapes(error):
    model, optimizer, loader = warmed(torch.optim.Adam, lr=1e-3)
    before = everything(model, optimizer, loader)
    calls = []

    def step(m, batch):
        calls.append(1)
        if len(calls) == 7:
            raise error
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    with pytest.raises(type(error)):
        find_lr(model, optimizer, None, loader, num_iter=50, step_fn=step, progress=False)
    assert_identical(before, everything(model, optimizer, loader))


def test_restore_survives_a_mutated_snapshot_source():
    """The optimizer keeps the tensors load_state_dict gets: a second restore must still be exact."""
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    before = everything(model, optimizer, loader)
    snapshot = TrainingSnapshot.take(model, optimizer, loaders=[loader])
    for _ in range(2):
        snapshot.restore()
        x, y = next(iter(loader))
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    snapshot.restore()
    assert_identical(before, everything(model, optimizer, loader))


def test_grad_scaler_and_autocast_are_restored():
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)
    x, y = next(iter(loader))
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    scaler.step(optimizer)
    scaler.update()
    before, scale = everything(model, optimizer, loader), scaler.state_dict()
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=20, grad_scaler=scaler,
                     autocast_dtype=torch.bfloat16, progress=False)
    assert len(result.raw_losses) >= 2
    assert scaler.state_dict() == scale
    assert_identical(before, everything(model, optimizer, loader))


# -- parameter groups ---------------------------------------------------------------------------
def group_lrs_recording_step(optimizer, seen: list):
    """A finder `step_fn` (cross-entropy on ``(x, y)``) that records every group's LR at each call in `seen`."""
    def step(m, batch):
        seen.append([g["lr"] for g in optimizer.param_groups])
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    return step


def two_group_setup():
    model, loader = make_model(), make_loader()
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.01},
                                 {"params": list(model[1].parameters()) + list(model[4].parameters()), "lr": 0.1}],
                                momentum=0.9)
    return model, optimizer, loader


def test_groups_sweep_together_keeping_their_ratio():
    model, optimizer, loader = two_group_setup()
    seen = []

    step = group_lrs_recording_step(optimizer, seen)

    result = find_lr(model, optimizer, None, loader, num_iter=30, step_fn=step, check="none", progress=False)
    seen = np.array(seen)
    np.testing.assert_allclose(seen[:, 0], result.lrs)
    np.testing.assert_allclose(seen[:, 1], 10.0 * result.lrs)
    assert result.group_lrs == pytest.approx((result.suggestion, 10.0 * result.suggestion))
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]


def test_groups_sweep_one_at_a_time():
    model, optimizer, loader = two_group_setup()
    before = everything(model, optimizer, loader)
    seen = []

    step = group_lrs_recording_step(optimizer, seen)

    results = find_group_lrs(model, optimizer, None, loader, num_iter=20, end_lr=1.0, step_fn=step, seed=0,
                             check="none", progress=False)
    seen = np.array(seen)
    assert [r.group for r in results] == [0, 1]
    first, second = seen[: len(results[0].lrs)], seen[len(results[0].lrs):]
    np.testing.assert_allclose(first[:, 0], results[0].lrs)
    assert np.all(first[:, 1] == 0.1)
    np.testing.assert_allclose(second[:, 1], results[1].lrs)
    assert np.all(second[:, 0] == 0.01)
    assert results[0].group_lrs == (results[0].suggestion, 0.1)
    assert results[1].group_lrs == (0.01, results[1].suggestion)
    # each sweep starts from the same state with the same seed: the first loss is the same
    assert results[0].raw_losses[0] == results[1].raw_losses[0]
    assert_identical(before, everything(model, optimizer, loader))


def test_several_groups_need_a_positive_first_lr():
    model, optimizer, loader = two_group_setup()
    optimizer.param_groups[0]["lr"] = 0.0
    with pytest.raises(ValueError, match="first group's lr must be > 0.*got 0.0"):
        find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, progress=False)


# -- options ----------------------------------------------------------------------------------
def test_gradient_accumulation_matches_a_larger_batch():
    """Two micro-batches of 16 with the loss halved = one batch of 32 (no BatchNorm/Dropout)."""
    def run(batch_size, accumulation):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        loader = DataLoader(make_data(), batch_size=batch_size, shuffle=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=40, end_lr=1.0,
                       accumulation_steps=accumulation, progress=False)

    big, accumulated = run(32, 1), run(16, 2)
    assert len(big.raw_losses) == len(accumulated.raw_losses)
    np.testing.assert_allclose(accumulated.raw_losses, big.raw_losses, rtol=1e-5)


def test_validation_loss_is_measured_after_each_update():
    model, loader = make_model(), make_loader()
    val = DataLoader(make_data(100, seed=1), batch_size=30)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = make_model()
    reference.load_state_dict(model.state_dict())
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=10, val_loader=val, seed=0,
                     progress=False)
    assert result.validation
    # replay the first iteration by hand: one update at start_lr, then the example-weighted val loss
    torch.manual_seed(0)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=1e-7)
    x, y = next(iter(make_loader()))
    reference.train()
    nn.functional.cross_entropy(reference(x), y).backward()
    reference_optimizer.step()
    reference.eval()
    with torch.no_grad():
        xs, ys = make_data(100, seed=1).tensors
        expected = nn.functional.cross_entropy(reference(xs), ys).item()
    assert result.raw_losses[0] == pytest.approx(expected, rel=1e-6)


def test_step_fn_handles_dict_batches():
    data = make_data()
    batches = [{"features": data.tensors[0][i:i + 32], "label": data.tensors[1][i:i + 32]} for i in range(0, 256, 32)]
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = find_lr(model, optimizer, None, batches, num_iter=30,
                     step_fn=lambda m, b: nn.functional.cross_entropy(m(b["features"]), b["label"]), progress=False)
    assert len(result.raw_losses) >= 2  # 8 batches per pass: passes restart transparently


def test_plain_batches_must_be_pairs():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="a batch must be \\(inputs, targets\\), got tuple of length 3"):
        find_lr(model, optimizer, nn.CrossEntropyLoss(), [(torch.ones(2, 8), torch.ones(2), torch.ones(2))],
                progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"start_lr": 0.0}, "start_lr must be > 0, got 0.0"),
    ({"end_lr": 1e-8}, r"end_lr must be in \(1e-07, inf\), got 1e-08"),
    ({"num_iter": 1}, "num_iter must be an integer >= 2, got 1"),
    ({"mode": "cosine"}, "mode must be one of 'exp', 'linear', got 'cosine'"),
    ({"smooth": 1.0}, r"smooth must be in \[0.0, 1.0\), got 1.0"),
    ({"diverge_factor": 1.0}, r"diverge_factor must be in \(1.0, inf\), got 1.0"),
    ({"accumulation_steps": 0}, "accumulation_steps must be an integer >= 1, got 0"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"method": "magic"}, "method must be one of .*got 'magic'"),
    ({"step_fn": 3}, "step_fn must be callable"),
    ({"schedule": "cyclic"}, "schedule must be one of 'constant', 'decaying', a Schedule or a schedule spec"),
    ({"schedule": "constant", "method": "valley"},
     "method must be left at 'consensus' when schedule is given \\(schedule='constant' picks the rule\\)"),
    ({"check": False}, "check must be one of 'hold', 'none', got False"),
    ({"hold_steps": 0}, "hold_steps must be an integer >= 1, got 0"),
    ({"hold_margin": 0.5}, r"hold_margin must be in \[1.0, inf\), got 0.5"),
])
def test_bad_arguments_are_named(kwargs, message):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        find_lr(model, optimizer, nn.CrossEntropyLoss(), make_loader(), progress=False, **kwargs)


def test_missing_criterion_and_unknown_group_options_are_named():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="criterion must be given unless step_fn"):
        find_lr(model, optimizer, None, make_loader(), progress=False)
    with pytest.raises(ValueError, match=r"unknown arguments \['num_iters'\]"):
        find_group_lrs(model, optimizer, nn.CrossEntropyLoss(), make_loader(), num_iters=3)


def test_options_and_keyword_overrides():
    model, loader = make_model(), make_loader()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    step = lr_recording_step(optimizer, seen)
    options = FinderOptions(start_lr=1e-4, end_lr=1e-2, num_iter=30, step_fn=step, seed=2, check="none",
                            progress=False)
    given = find_lr(model, optimizer, None, loader, options)
    assert seen == ramp(1e-4, 1e-2, 30).tolist()
    seen.clear()
    keywords = find_lr(model, optimizer, None, loader, start_lr=1e-4, end_lr=1e-2, num_iter=30, step_fn=step, seed=2,
                       check="none", progress=False)
    np.testing.assert_array_equal(keywords.raw_losses, given.raw_losses)
    seen.clear()
    replaced = find_lr(model, optimizer, None, loader, options, num_iter=12)  # the other options are kept
    assert seen == ramp(1e-4, 1e-2, 12).tolist()
    assert replaced.raw_losses[0] == given.raw_losses[0]  # same seed: same first batch, same weights
    seen.clear()
    groups = find_group_lrs(model, optimizer, None, loader, options, num_iter=12)
    assert seen == ramp(1e-4, 1e-2, 12).tolist() and groups[0].raw_losses.tolist() == replaced.raw_losses.tolist()


@pytest.mark.parametrize("finder", [find_lr, find_group_lrs], ids=["find_lr", "find_group_lrs"])
def test_unknown_overrides_and_bad_options_are_named(finder):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    name = finder.__name__
    with pytest.raises(ValueError, match=rf"{name}: unknown arguments \['num_iters'\]; allowed: \['start_lr', "):
        finder(model, optimizer, nn.CrossEntropyLoss(), make_loader(), num_iters=3)
    with pytest.raises(ValueError, match=f"{name}: options must be a FinderOptions or None, got {{'num_iter': 3}}"):
        finder(model, optimizer, nn.CrossEntropyLoss(), make_loader(), {"num_iter": 3})
    with pytest.raises(ValueError, match="num_iter must be an integer >= 2, got 1"):
        finder(model, optimizer, nn.CrossEntropyLoss(), make_loader(), FinderOptions(progress=False), num_iter=1)


def test_a_callable_method_picks_the_suggestion():
    def tenth_of_lowest(lrs, losses):
        return float(lrs[np.argmin(losses)] / 10)

    model, optimizer, loader = two_group_setup()
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=40, seed=0, method=tenth_of_lowest,
                     progress=False)
    assert result.method == "tenth_of_lowest"
    assert result.found.lr == tenth_of_lowest(result.lrs, result.losses) == result.suggestions["tenth_of_lowest"]
    assert result.group_lrs == pytest.approx((result.suggestion, 10.0 * result.suggestion))
    assert set(result.suggestions) >= {"steepest", "valley", "minimum", "slide", "consensus"}
    with pytest.raises(ValueError, match="find_lr: method must be one of .* or a callable"):
        FinderOptions(method=42)


def test_progress_goes_through_the_shared_bar(monkeypatch):
    import contextlib

    import lrkit.progress

    calls = []

    class Bar:
        def advance(self, description=None):
            calls[-1]["advanced"] += 1

    @contextlib.contextmanager
    def fake(label, total, *, enabled=True, transient=True):
        calls.append({"label": label, "total": total, "enabled": enabled, "transient": transient, "advanced": 0})
        yield Bar()

    monkeypatch.setattr(lrkit.progress, "progress_bar", fake)
    model, optimizer, loader = two_group_setup()
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=20, end_lr=1e-2)
    results = find_group_lrs(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=20, end_lr=1e-2,
                             progress=False)
    assert calls == [
        {"label": "LR range test", "total": 20, "enabled": True, "transient": True,
         "advanced": len(result.raw_losses)},
        {"label": "LR range test: check", "total": 20, "enabled": True, "transient": True,
         "advanced": result.check.updates},
        *(bar for g, r in enumerate(results) for bar in (
            {"label": f"LR range test, group {g}", "total": 20, "enabled": False, "transient": True,
             "advanced": len(r.raw_losses)},
            {"label": f"LR range test, group {g}: check", "total": 20, "enabled": False, "transient": True,
             "advanced": r.check.updates})),
    ]


# -- the result -------------------------------------------------------------------------------
def test_result_round_trips_through_json_and_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=60, progress=False)
    data = json.loads(json.dumps(result.to_dict()))
    again = FinderResult.from_dict(data)
    np.testing.assert_array_equal(again.lrs, result.lrs)
    np.testing.assert_array_equal(again.losses, result.losses)
    assert again.suggestions == result.suggestions and again.interval == result.interval
    assert again.group_lrs == result.group_lrs and again.clr_bounds == result.clr_bounds
    base, top = result.clr_bounds
    assert top == result.lrs[np.argmin(result.losses)] and base == top / 4
    ax = result.plot()
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum(label.split(":")[0] in result.suggestions for label in labels) == len(result.suggestions)
    ax.figure.savefig(tmp_path / "curve.png")
    with pytest.raises(ValueError, match="unknown keys \\['bogus'\\]"):
        FinderResult.from_dict({**data, "bogus": 1})


def test_result_holds_its_suggestion_and_keeps_the_flat_json():
    model, optimizer, loader = warmed(torch.optim.SGD, lr=0.05, momentum=0.9)
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=60, progress=False)
    found = result.found
    assert isinstance(found, Suggestion)
    assert (result.method, result.suggestions, result.interval, result.confidence, result.reason) == (
        found.method, found.suggestions, found.interval, found.confidence, found.reason)
    assert result.suggestion == result.check.lr and result.notes == (*found.notes, result.check.note)
    data = json.loads(json.dumps(result.to_dict()))
    assert list(data) == ["lrs", "losses", "raw_losses", "suggestion", "method", "suggestions", "interval",
                          "confidence", "notes", "reason", "clr_bounds", "group_lrs", "stop_reason", "group",
                          "validation", "check"]
    assert data["suggestion"] == result.check.lr and data["suggestions"][data["method"]] == found.lr
    assert data["notes"] == [*found.notes, result.check.note] and data["check"]["note"] == result.check.note
    assert data["reason"] == found.reason == "rule 'consensus': the default rule (no schedule given)"
    again = FinderResult.from_dict(data)
    assert again.found == found and again.check == result.check and again.to_dict() == data
    unchecked = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=60, check="none", progress=False)
    plain = unchecked.to_dict()
    assert plain["check"] is None and plain["suggestion"] == unchecked.found.lr and plain["notes"] == list(
        unchecked.found.notes)
    assert FinderResult.from_dict(plain).to_dict() == plain
    older = {k: v for k, v in plain.items() if k not in ("reason", "check")}  # written before the check existed
    assert FinderResult.from_dict(older).suggestion == unchecked.suggestion
    with pytest.raises(ValueError, match="missing keys \\['suggestion'\\]"):
        FinderResult.from_dict({k: v for k, v in data.items() if k != "suggestion"})
    with pytest.raises(ValueError, match="stop_reason must be one of 'completed', 'diverged', 'non-finite', got 'x'"):
        FinderResult.from_dict({**data, "stop_reason": "x"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_restore_is_exact():
    model, optimizer, loader = warmed(torch.optim.Adam, lr=1e-3)
    model.cuda()
    optimizer.load_state_dict(optimizer.state_dict())  # move the state next to the parameters
    torch.cuda.manual_seed(0)
    before = everything(model, optimizer, loader)
    cuda_rng = torch.cuda.get_rng_state_all()
    result = find_lr(model, optimizer, nn.CrossEntropyLoss(), loader, num_iter=40, progress=False)
    assert len(result.raw_losses) >= 2
    assert_identical(before, everything(model, optimizer, loader))
    assert all(torch.equal(a, b) for a, b in zip(cuda_rng, torch.cuda.get_rng_state_all()))
