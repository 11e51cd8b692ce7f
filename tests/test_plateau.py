"""ReduceLROnPlateau (torch's class, exact) standalone; PlateauFactor, a resumable factor on lrkit schedules."""

from __future__ import annotations

import io
import logging
import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lrkit.schedules as S
from lrkit.torch import PlateauFactor, ReduceLROnPlateau, ScheduledLR
from lrkit.torch.plateau import _PlateauRule

# Most tests drive the schedulers without an optimizer step; torch's order warning is tested in
# test_scheduled_lr.py.
pytestmark = pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before:UserWarning")


def make_optimizer(lrs=(0.1, 0.03)) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def noisy_plateaus(seed: int, n: int = 90, sign: float = 1.0) -> list[float]:
    """Improves for 6 reports, stalls for 12, ...: exercises every branch of the rule."""
    rng = random.Random(seed)
    values, level = [], 5.0
    for i in range(n):
        improving = (i // 6) % 3 == 0
        if improving:
            level *= rng.uniform(0.7, 1.0)
        values.append(sign * (level + rng.uniform(0.0, 0.05) + (0.0 if improving else 0.05)))
    return values


CASES = [
    dict(mode="min", threshold_mode="rel"),
    dict(mode="min", threshold_mode="abs", threshold=0.05),
    dict(mode="max", threshold_mode="rel", threshold=0.01),
    dict(mode="max", threshold_mode="abs", threshold=0.02),
    dict(mode="min", threshold_mode="rel", patience=0, cooldown=2, factor=0.5),
    dict(mode="min", threshold_mode="abs", patience=2, cooldown=1, factor=0.3, min_lr=[0.004, 0.01]),
    dict(mode="max", threshold_mode="rel", patience=1, cooldown=3, factor=0.2, min_lr=0.002),
    dict(mode="min", threshold_mode="rel", patience=1, factor=0.9, eps=0.005),  # small cuts are skipped
]


@pytest.mark.parametrize("kwargs", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_standalone_equals_torch_exactly(kwargs, seed):
    ours_opt, ref_opt = make_optimizer(), make_optimizer()
    ours, ref = ReduceLROnPlateau(ours_opt, **kwargs), torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **kwargs)
    sign = -1.0 if kwargs["mode"] == "max" else 1.0
    cuts = 0
    for value in noisy_plateaus(seed, sign=sign):
        cuts += ours.step(value)
        ref.step(value)
        assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter, ours.last_epoch) == \
               (ref.best, ref.num_bad_epochs, ref.cooldown_counter, ref.last_epoch)
        assert ours.get_last_lr() == ref.get_last_lr()
    assert cuts > 0  # the sequences do trigger the rule


@given(
    metrics=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=40),
    mode=st.sampled_from(["min", "max"]), threshold_mode=st.sampled_from(["rel", "abs"]),
    patience=st.integers(0, 3), cooldown=st.integers(0, 3), factor=st.floats(0.05, 0.95),
    threshold=st.floats(0.0, 0.3), min_lr=st.floats(0.0, 0.02),
)
def test_standalone_equals_torch_on_any_sequence(metrics, mode, threshold_mode, patience, cooldown, factor,
                                                 threshold, min_lr):
    kwargs = dict(mode=mode, threshold_mode=threshold_mode, patience=patience, cooldown=cooldown,
                  factor=factor, threshold=threshold, min_lr=min_lr)
    ours_opt, ref_opt = make_optimizer(), make_optimizer()
    ours, ref = ReduceLROnPlateau(ours_opt, **kwargs), torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **kwargs)
    for value in metrics:
        ours.step(value)
        ref.step(value)
        assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]


def test_tensor_metric_is_accepted():
    opt = make_optimizer()
    plateau = ReduceLROnPlateau(opt, patience=0)
    plateau.step(torch.tensor(1.0))
    assert plateau.step(torch.tensor(2.0)) is True
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_nan_metric_is_ignored_and_logged(caplog):
    opt = make_optimizer()
    plateau = ReduceLROnPlateau(opt, patience=1)
    plateau.step(1.0)
    plateau.step(2.0)  # one bad epoch
    before = plateau.state_dict()
    with caplog.at_level(logging.WARNING, logger="lrkit.torch.plateau"):
        for _ in range(5):
            assert plateau.step(float("nan")) is False
    assert "NaN" in caplog.text
    after = plateau.state_dict()
    assert after.pop("nan_reports") == 5
    before.pop("nan_reports")
    assert after == before
    assert opt.param_groups[0]["lr"] == 0.1  # torch would have counted 5 bad epochs and cut
    assert plateau.step(3.0) is True  # the second real bad epoch cuts


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="mean"), "mode"), (dict(threshold_mode="pct"), "threshold_mode"), (dict(factor=1.0), "factor"),
    (dict(factor=0.0), "factor"), (dict(patience=-1), "patience"), (dict(patience=1.5), "patience"),
    (dict(cooldown=True), "cooldown"), (dict(threshold=-0.1), "threshold"), (dict(eps=float("nan")), "eps"),
    (dict(min_lr=-1e-3), "min_lr"), (dict(min_lr=[0.0]), "min_lr"),
])
def test_bad_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReduceLROnPlateau(make_optimizer(), **kwargs)


# ---- as a factor on a schedule -----------------------------------------------------------------

def test_factor_on_constant_schedule_matches_torch_standalone():
    metrics = noisy_plateaus(3) + [10.0] * 30
    kwargs = dict(patience=2, cooldown=1, factor=0.3, min_lr=[0.004, 0.001])
    ref_opt = make_optimizer()
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **kwargs)
    opt = make_optimizer()
    sched = ScheduledLR(opt, S.constant(0.1), plateau=PlateauFactor(**kwargs))
    for value in metrics:
        sched.step()
        ref.step(value)
        sched.report(value)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in ref_opt.param_groups],
                                                                     rel=1e-12, abs=0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.004, 0.001])  # both floors reached


def test_factor_multiplies_any_schedule_and_min_lr_never_lifts_it():
    schedule = S.warmup(S.cosine(0.1, 100), 10, start_lr=0.0)
    plateau = PlateauFactor(patience=0, factor=0.5, min_lr=0.02)
    opt = make_optimizer((0.1,))
    sched = ScheduledLR(opt, schedule, plateau=plateau)
    assert opt.param_groups[0]["lr"] == 0.0  # warmup starts at 0; the floor does not lift it
    for _ in range(30):
        sched.step()
    sched.report(1.0)
    assert sched.report(2.0) is True  # applied at once, same step
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * schedule(30))
    assert plateau.multipliers == [0.5]
    for _ in range(40):
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(max(0.5 * schedule(sched.last_epoch),
                                                              min(schedule(sched.last_epoch), 0.02)))
    sched.step(109)  # the cosine ends below min_lr: the schedule's own value is kept
    assert schedule(109) < 0.02
    assert opt.param_groups[0]["lr"] == pytest.approx(schedule(109))


def test_factor_keeps_group_ratios():
    opt = make_optimizer((0.1, 0.01))
    sched = ScheduledLR(opt, S.cosine(0.1, 200), plateau=PlateauFactor(patience=0, factor=0.1))
    sched.step(50)
    sched.report(1.0)
    sched.report(1.0)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([0.1 * S.cosine(0.1, 200)(50), 0.01 * S.cosine(0.1, 200)(50)])


def run_composed(metrics_at: dict[int, float], total: int, resume_at: int | None, seed: int) -> list[list[float]]:
    """Steps a warmup+cosine ScheduledLR with a plateau; optionally checkpoints and resumes fresh."""
    def build():
        torch.manual_seed(seed)
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.05}], lr=0.1, momentum=0.9)
        plateau = PlateauFactor(patience=1, cooldown=2, factor=0.5, threshold_mode="abs", threshold=0.01,
                                min_lr=[1e-3, 5e-4])
        schedule = S.warmup(S.cosine(0.1, total), 20, start_lr=1e-3)
        return model, opt, ScheduledLR(opt, schedule, plateau=plateau)

    model, opt, sched = build()
    trace = []
    for step in range(total):
        if resume_at is not None and step == resume_at:
            buffer = io.BytesIO()
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
            buffer.seek(0)
            saved = torch.load(buffer, weights_only=True)
            model, opt, sched = build()
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
        loss = model(torch.ones(4, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step in metrics_at:
            sched.report(metrics_at[step])
        trace.append([g["lr"] for g in opt.param_groups])
    return trace


@pytest.mark.parametrize("seed", range(4))
def test_exact_resume_of_schedule_with_plateau(seed):
    rng = random.Random(seed)
    total = 300
    values = [*noisy_plateaus(seed, n=total // 10), float("nan")]
    metrics_at = {10 * i + 9: values[i] for i in range(total // 10)}
    metrics_at[rng.randrange(total)] = float("nan")
    reference = run_composed(metrics_at, total, None, seed)
    resume_at = rng.randrange(1, total)
    resumed = run_composed(metrics_at, total, resume_at, seed)
    assert resumed == reference  # identical floats, cuts included
    assert len({tuple(lrs) for lrs in reference}) > 100
    assert any(reference[i][0] < 0.99 * S.warmup(S.cosine(0.1, total), 20, start_lr=1e-3)(i + 1)
               for i in range(total))  # the plateau did cut


def test_standalone_resume_matches_uninterrupted_run():
    metrics = noisy_plateaus(5)
    kwargs = dict(patience=1, cooldown=1, factor=0.5)
    opt = make_optimizer()
    plateau = ReduceLROnPlateau(opt, **kwargs)
    expected = []
    for value in metrics:
        plateau.step(value)
        expected.append([g["lr"] for g in opt.param_groups])
    opt = make_optimizer()
    plateau = ReduceLROnPlateau(opt, **kwargs)
    got = []
    for i, value in enumerate(metrics):
        if i == 23:
            state, opt_state = plateau.state_dict(), opt.state_dict()
            opt = make_optimizer()
            opt.load_state_dict(opt_state)
            plateau = ReduceLROnPlateau(opt, **kwargs)
            plateau.load_state_dict(state)
        plateau.step(value)
        got.append([g["lr"] for g in opt.param_groups])
    assert got == expected


def test_scheduled_lr_refuses_a_plateau_with_its_own_optimizer():
    opt = make_optimizer()
    with pytest.raises(ValueError, match="without an optimizer"):
        ScheduledLR(opt, S.constant(0.1), plateau=ReduceLROnPlateau(opt))
    with pytest.raises(ValueError, match="plateau"):
        ScheduledLR(opt, S.constant(0.1), plateau=object())


def test_factor_plateau_must_be_attached_before_reports():
    with pytest.raises(RuntimeError, match="ScheduledLR"):
        plateau = PlateauFactor(patience=0)
        plateau.step(1.0)
        plateau.step(2.0)


def test_load_without_plateau_state_is_refused():
    sched = ScheduledLR(make_optimizer(), S.constant(0.1), plateau=PlateauFactor())
    with pytest.raises(ValueError, match="plateau"):
        sched.load_state_dict({"step": 3, "scales": [1.0, 0.3]})
    with pytest.raises(ValueError, match="missing keys"):
        PlateauFactor().load_state_dict({"best": 1.0})


def test_report_without_plateau_is_an_error():
    with pytest.raises(RuntimeError, match="no plateau"):
        ScheduledLR(make_optimizer(), S.constant(0.1)).report(1.0)


def test_nan_best_never_happens_with_infinite_start():
    plateau = ReduceLROnPlateau(make_optimizer(), mode="max")
    plateau.step(float("nan"))
    assert plateau.best == -math.inf and plateau.last_epoch == 0


# ---- one rule, two classes; torch's contract -----------------------------------------------------

def test_reduce_lr_on_plateau_is_torchs_class():
    """Lightning's `monitor` and the HF Trainer recognise plateau schedulers by this isinstance."""
    plateau = ReduceLROnPlateau(make_optimizer())
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert isinstance(plateau, torch.optim.lr_scheduler.LRScheduler)
    assert not isinstance(PlateauFactor(), torch.optim.lr_scheduler.LRScheduler)  # it drives no optimizer
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):  # torch's own check sees it
        torch.optim.lr_scheduler.ChainedScheduler([plateau])


def test_both_classes_count_with_the_one_rule():
    """Same counting code (not a copy), and the same counters as torch on the same reports."""
    for name in ("_is_better", "_cut_due", "in_cooldown"):
        assert getattr(ReduceLROnPlateau, name) is getattr(_PlateauRule, name)
        assert getattr(PlateauFactor, name) is getattr(_PlateauRule, name)
    kwargs = dict(mode="max", threshold_mode="abs", threshold=0.02, patience=1, cooldown=2, factor=0.5)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(make_optimizer(), **kwargs)
    standalone = ReduceLROnPlateau(make_optimizer(), **kwargs)
    factor = PlateauFactor(**kwargs)
    ScheduledLR(make_optimizer(), S.constant(0.1), plateau=factor)
    for value in noisy_plateaus(4, sign=-1.0):
        ref.step(value)
        standalone.step(value)
        factor.step(value)
        counters = (ref.best, ref.num_bad_epochs, ref.cooldown_counter, ref.last_epoch)
        assert (standalone.best, standalone.num_bad_epochs, standalone.cooldown_counter,
                standalone.last_epoch) == counters
        assert (factor.best, factor.num_bad_epochs, factor.cooldown_counter, factor.last_epoch) == counters


def test_state_dict_is_torchs_and_survives_torch_load():
    metrics = noisy_plateaus(6)
    opt = make_optimizer()
    plateau = ReduceLROnPlateau(opt, patience=1, factor=0.5)
    for value in metrics[:20]:
        plateau.step(value)
    plateau.step(float("nan"))
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "plateau": plateau.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(make_optimizer(), patience=1, factor=0.5)
    assert set(saved["plateau"]) == set(ref.state_dict()) | {"nan_reports"}
    fresh_opt = make_optimizer()
    fresh_opt.load_state_dict(saved["opt"])
    fresh = ReduceLROnPlateau(fresh_opt, patience=1, factor=0.5)
    fresh.load_state_dict(saved["plateau"])
    assert fresh.nan_reports == 1
    for value in metrics[20:]:
        assert fresh.step(value) == plateau.step(value)
        assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def _saved_state(changes):
    """A valid state of either class (ReduceLROnPlateau ignores `multipliers`) with `changes`."""
    return {"best": 1.0, "num_bad_epochs": 0, "cooldown_counter": 0, "last_epoch": 3, "nan_reports": 0,
            "multipliers": []} | changes


@pytest.mark.parametrize("make", [lambda: ReduceLROnPlateau(make_optimizer()), PlateauFactor],
                         ids=["ReduceLROnPlateau", "PlateauFactor"])
@pytest.mark.parametrize("state, message", [
    (None, "state_dict must be a dict"),
    ({"best": 1.0}, r"state_dict must be a plateau state .* \(missing keys \['num_bad_epochs'"),
    (_saved_state({"num_bad_epochs": -1}), "num_bad_epochs must be an integer >= 0, got -1"),
    (_saved_state({"cooldown_counter": -2}), "cooldown_counter must be an integer >= 0"),
    (_saved_state({"last_epoch": 1.5}), "last_epoch must be an integer >= 0"),
    (_saved_state({"nan_reports": -1}), "nan_reports must be an integer >= 0"),
    (_saved_state({"best": float("nan")}), "best must be a number or ±inf"),
    (_saved_state({"best": "1"}), "best must be a number or ±inf"),
])
def test_load_state_dict_refuses_bad_states(make, state, message):
    plateau = make()
    before = dict(vars(plateau))
    with pytest.raises(ValueError, match=f"{type(plateau).__name__}.load_state_dict: {message}"):
        plateau.load_state_dict(state)
    assert vars(plateau) == before  # nothing half-loaded


@pytest.mark.parametrize("multipliers", [[0.0], [1.5], [float("nan")], ["0.5"], 0.5])
def test_plateau_factor_refuses_bad_multipliers(multipliers):
    with pytest.raises(ValueError, match="PlateauFactor.load_state_dict: (each of )?multipliers must be"):
        PlateauFactor().load_state_dict(_saved_state({"multipliers": multipliers}))


def test_a_state_saved_by_torchs_own_class_is_refused_by_name():
    """A state saved by torch's own class lacks `nan_reports`: named, not silently defaulted."""
    torch_state = torch.optim.lr_scheduler.ReduceLROnPlateau(make_optimizer()).state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['nan_reports'\]"):
        ReduceLROnPlateau(make_optimizer()).load_state_dict(torch_state)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="mean"), "PlateauFactor: mode must be one of 'min', 'max', got 'mean'"),
    (dict(threshold_mode="pct"), "threshold_mode must be one of 'rel', 'abs'"),
    (dict(factor=1.0), r"factor must be in \(0.0, 1.0\), got 1.0"), (dict(factor=True), "factor"),
    (dict(patience=-1), "patience must be an integer >= 0"), (dict(cooldown=1.5), "cooldown"),
    (dict(threshold=float("inf")), "threshold must be a finite number"), (dict(eps=-1e-9), "eps must be >= 0"),
    (dict(min_lr=[0.0, -1.0]), "each of min_lr must be >= 0, got -1.0"), (dict(min_lr="0"), "min_lr"),
])
def test_plateau_factor_checks_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlateauFactor(**kwargs)


def test_plateau_factor_min_lr_list_is_checked_against_the_groups():
    with pytest.raises(ValueError, match=r"PlateauFactor: min_lr must be a number or one per param group \(2\)"):
        ScheduledLR(make_optimizer(), S.constant(0.1), plateau=PlateauFactor(min_lr=[0.0, 0.0, 0.0]))


def test_scheduled_lr_takes_only_a_plateau_factor():
    """No duck typing: an object with the same methods is not a PlateauFactor."""

    class LookAlike:
        def adjust_lrs(self, lrs):
            return lrs

        step = state_dict = load_state_dict = adjust_lrs

    with pytest.raises(ValueError, match="ScheduledLR: plateau must be a lrkit.torch.PlateauFactor"):
        ScheduledLR(make_optimizer(), S.constant(0.1), plateau=LookAlike())


@pytest.mark.parametrize("changes, message", [
    ({"factor": -5}, r"factor must be in \(0.0, 1.0\), got -5"),
    ({"patience": -3}, "patience must be an integer >= 0, got -3"),
    ({"min_lrs": [-1.0]}, "each of min_lr must be >= 0, got -1.0"),
    ({"min_lrs": [0.0, 0.0, 0.0]}, r"min_lrs must be a list of one LR >= 0 per param group \(1\)"),
    ({"mode": "bogus"}, "mode must be one of 'min', 'max', got 'bogus'"),
    ({"optimizer": None}, r"state_dict must be a state saved by ReduceLROnPlateau.state_dict\(\) "
                          r"\(unknown keys \['optimizer'\]\)"),
])
def test_reduce_lr_on_plateau_refuses_bad_settings_in_a_state(changes, message):
    """Torch's load sets every key as an attribute: a negative factor or an `optimizer` key got through."""
    plateau = ReduceLROnPlateau(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    before = dict(vars(plateau))
    with pytest.raises(ValueError, match=f"ReduceLROnPlateau.load_state_dict: {message}"):
        plateau.load_state_dict(plateau.state_dict() | changes)
    assert vars(plateau) == before
