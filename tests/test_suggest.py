"""lrkit.suggest: hand-derived values, and agreement with fastai's own loops on random curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit import suggest as S


# -- reference implementations: fastai/callback/schedule.py (fastai 2.7), loops as published --
def fastai_valley(lrs, losses):
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def fastai_wraps_around(losses):
    """True where fastai's valley index is -1: the longest descent has 2 points, from index 0."""
    lds = [1] * len(losses)
    for i in range(1, len(losses)):
        lds[i] = 1 + max([lds[j] for j in range(i) if losses[j] > losses[i]], default=0)
    end = int(np.argmax(lds))
    return lds[end] == 2 and end - lds[end] == -1


def fastai_slide(lrs, losses, lr_diff=15, thresh=.005, adjust_value=1.):
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


def fastai_steep(lrs, losses):
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    return float(lrs[1:][grads.argmin()])


curves = st.integers(min_value=16, max_value=80).flatmap(
    lambda n: st.tuples(st.just(np.logspace(-6, 1, n)),
                        st.lists(st.floats(0.01, 5.0), min_size=n, max_size=n).map(np.array)))


@given(curves)
def test_heuristics_match_fastai_loops(curve):
    lrs, losses = curve
    expected = lrs[0] if fastai_wraps_around(losses) else fastai_valley(lrs, losses)
    assert S.valley(lrs, losses) == expected
    assert S.slide(lrs, losses) == fastai_slide(lrs, losses)
    assert S.steepest(lrs, losses) == fastai_steep(lrs, losses)
    assert S.minimum(lrs, losses) == lrs[np.argmin(losses)] / 10


def test_steepest_by_hand():
    # slopes per unit ln(lr): -0.1/ln10, -0.4/ln10, +0.3/ln10 -> the second, ending at lr 0.1
    assert S.steepest([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.9, 0.5, 0.8]) == pytest.approx(0.1)
    # a linear sweep: slopes -1/ln2 = -1.443, -0.5/ln1.5 = -1.233, -0.1/ln(4/3) = -0.348 -> lr 2
    assert S.steepest([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.5, 2.4]) == 2.0


def test_valley_by_hand():
    # longest decreasing run ending at i: 1 2 1 3 4 4 5 1 -> end 6, start 6-5 = 1,
    # sections 5/3 -> index 1 + int(1.67) + int(0.83) = 2
    lrs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert S.valley(lrs, [5, 4, 6, 3, 2, 2.5, 1, 7]) == 3.0


def test_valley_clamps_where_fastai_wraps_around():
    # longest descent (0, 1) of 2 points: end 1, start 1 - 2 = -1, index -1 + 0 + 0 -> fastai: lrs[-1]
    assert fastai_valley([1.0, 2.0, 3.0], [2.0, 1.0, 3.0]) == 3.0
    assert S.valley([1.0, 2.0, 3.0], [2.0, 1.0, 3.0]) == 1.0
    assert S.valley([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0  # nothing falls: fastai's 0 too


def test_minimum_by_hand():
    assert S.minimum([0.1, 1.0, 10.0], [3.0, 1.0, 2.0]) == pytest.approx(0.1)


def test_slide_by_hand():
    lrs = np.arange(1.0, 21.0)
    # constant gradient: the first window already agrees -> lrs[-16] = lrs[4] = 5
    assert S.slide(lrs, 10.0 - 0.1 * np.arange(20)) == 5.0
    # gradient changes by 1 per step at the right end only: windows whose right end sees the
    # quadratic part differ; the window (1, 16) is linear on both ends -> last differing left 2
    losses = np.where(np.arange(20) < 17, 10.0 - 0.1 * np.arange(20), 0.0)
    losses[17:] = losses[16] + np.array([1.0, 3.0, 6.0])
    grads = np.gradient(losses)
    assert abs(grads[16] - grads[1]) > 0.005 and abs(grads[15] - grads[0]) <= 0.005
    assert S.slide(lrs, losses) == 2.0


def test_clr_bounds_by_hand():
    lrs, losses = [1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.5, 1.0, 3.0]
    assert S.clr_bounds(lrs, losses) == pytest.approx((0.025, 0.1))
    assert S.clr_bounds(lrs, losses, ratio=3.0) == pytest.approx((0.1 / 3, 0.1))


def _falling_then_rising(n=100, tail_dip=True):
    lrs = np.logspace(-5, 1, n)
    x = np.log10(lrs)
    losses = 2.3 - 2.0 / (1.0 + np.exp(-2.5 * (x + 2.5)))  # falls around 1e-2.5
    losses = np.where(x > -0.5, losses + 3.0 * (x + 0.5) ** 2, losses)  # rises after 0.3
    if tail_dip:  # a steep noisy drop in the diverging tail (what fools a global steepest rule)
        losses[-6] -= 3.0
    return lrs, losses


def _consensus_by_hand(lrs, losses):
    """sqrt(minimum * steepest on [n // 10, argmin]); the interval also spans valley and slide there."""
    falling = slice(len(losses) // 10, int(np.argmin(losses)) + 1)
    parts = [S.valley(lrs, losses), S.minimum(lrs, losses), S.steepest(lrs[falling], losses[falling]),
             S.slide(lrs[falling], losses[falling])]
    return math.sqrt(parts[1] * parts[2]), parts


def test_consensus_ignores_the_diverging_tail():
    lrs, losses = _falling_then_rising()
    lowest = lrs[np.argmin(losses)]
    assert S.steepest(lrs, losses) > lowest  # the plain rule is fooled by the tail dip
    expected, parts = _consensus_by_hand(lrs, losses)
    assert max(parts) <= lowest
    assert S.consensus(lrs, losses) == pytest.approx(expected, rel=1e-12)
    assert S.consensus(lrs, losses) < lowest


def test_consensus_ignores_noise_in_the_first_tenth():
    lrs, losses = _falling_then_rising(tail_dip=False)
    losses[3] -= 0.5  # one lucky early batch: the steepest drop of the whole curve
    assert S.steepest(lrs, losses) == lrs[3]
    expected, parts = _consensus_by_hand(lrs, losses)
    assert min(parts) > lrs[10]
    assert S.consensus(lrs, losses) == pytest.approx(expected, rel=1e-12)


def test_suggest_reports_every_heuristic_interval_and_confidence():
    lrs, losses = _falling_then_rising(tail_dip=False)
    found = S.suggest(lrs, losses, method="consensus")
    assert set(found.suggestions) == set(S.HEURISTICS)
    assert found.lr == found.suggestions["consensus"]
    _, parts = _consensus_by_hand(lrs, losses)
    assert found.interval == (min(parts), max(parts))
    spread = abs(math.log10(parts[1] / parts[2]))  # the two votes: minimum, falling-part steepest
    assert spread <= 1.0 and found.notes == ()
    assert found.confidence == ("high" if spread <= 0.5 else "medium")
    assert S.suggest(lrs, losses).method == S.DEFAULT_METHOD


def test_suggest_flags_a_noisy_curve():
    rng = np.random.default_rng(0)
    lrs = np.logspace(-6, 0, 100)
    raw = 2.3 - 0.02 * np.linspace(0, 1, 100) ** 2 + rng.normal(0, 0.2, 100)
    raw[-1] = 5.0
    smooth = np.convolve(raw, np.ones(9) / 9, mode="same")
    found = S.suggest(lrs, smooth, raw)
    assert found.confidence == "low"
    assert any("too noisy" in note for note in found.notes)


def test_suggest_flags_a_curve_that_never_stops_falling():
    lrs = np.logspace(-6, 0, 50)
    found = S.suggest(lrs, np.linspace(3.0, 1.0, 50))
    assert found.confidence == "low" and any("still falling" in note for note in found.notes)


def test_suggest_flags_disagreeing_votes():
    lrs = np.logspace(-5, 1, 60)
    losses = np.concatenate([np.linspace(2.0, 1.0, 10), np.linspace(1.0, 0.9, 40), np.linspace(0.9, 3.0, 10)])
    found = S.suggest(lrs, losses)  # steep drop early (lr 1e-4), lowest loss late (lr ~1): 3 decades apart
    assert found.confidence == "low" and any("disagree by" in note for note in found.notes)


def test_short_curves_leave_out_slide():
    found = S.suggest([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.0, 0.5, 3.0], method="valley")
    assert "slide" not in found.suggestions
    with pytest.raises(ValueError, match="'slide' needs at least 16 points"):
        S.suggest([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.0, 0.5, 3.0], method="slide")


# -- the registry and callable rules ----------------------------------------------------------
def tenth_of_last(lrs, losses):
    """A caller's rule: a tenth of the last LR."""
    return float(lrs[-1] / 10)


def test_every_registered_rule_declares_its_name_function_and_minimum():
    assert list(S.HEURISTICS) == ["steepest", "valley", "minimum", "slide", "consensus"]
    for name, rule in S.HEURISTICS.items():
        assert rule.name == name and rule.fn is getattr(S, name) and rule.min_points >= 1
    assert S.HEURISTICS["slide"].min_points == 16
    lrs, losses = _falling_then_rising()
    assert S.HEURISTICS["valley"](lrs, losses) == S.valley(lrs, losses)  # a rule is called like its function
    assert S.DEFAULT_METHOD in S.HEURISTICS


def test_a_registered_rule_runs_everywhere_with_one_registration(monkeypatch):
    monkeypatch.setattr(S, "HEURISTICS", dict(S.HEURISTICS))
    lrs, losses = _falling_then_rising(tail_dip=False)
    plain = S.suggest(lrs, losses, method="valley")
    S.register(S.Rule("tenth_of_last", tenth_of_last, min_points=3, interval="curve"))
    extended = S.suggest(lrs, losses, method="valley")
    assert extended.suggestions == {**plain.suggestions, "tenth_of_last": lrs[-1] / 10}
    assert lrs[-1] / 10 > plain.interval[1] and extended.interval == (plain.interval[0], lrs[-1] / 10)
    found = S.suggest(lrs, losses, method="tenth_of_last")
    assert found.lr == lrs[-1] / 10 and found.method == "tenth_of_last"
    two = S.suggest([1e-3, 1e-2], [2.0, 1.0])  # too short for the new rule: left out, not an error
    assert "tenth_of_last" not in two.suggestions
    with pytest.raises(ValueError, match="rule 'tenth_of_last' needs at least 3 points, got 2"):
        S.suggest([1e-3, 1e-2], [2.0, 1.0], method="tenth_of_last")
    with pytest.raises(ValueError, match="register: rule.name must be a new name .*got 'valley'"):
        S.register(S.Rule("valley", tenth_of_last, min_points=1))


def test_suggest_takes_a_callable_rule():
    lrs, losses = _falling_then_rising(tail_dip=False)
    default = S.suggest(lrs, losses)
    found = S.suggest(lrs, losses, method=tenth_of_last)
    assert found.method == "tenth_of_last" and found.lr == lrs[-1] / 10
    assert found.suggestions == {**default.suggestions, "tenth_of_last": lrs[-1] / 10}
    assert (found.interval, found.confidence, found.notes) == (default.interval, default.confidence, default.notes)
    assert S.suggest(lrs, losses, method=S.valley) == S.suggest(lrs, losses, method="valley")  # the registered rule
    late = S.Rule("late", tenth_of_last, min_points=200)
    with pytest.raises(ValueError, match="rule 'late' needs at least 200 points, got 100"):
        S.suggest(lrs, losses, method=late)


def valley(lrs, losses):  # named like a registered rule, but another function
    return float(lrs[0])


@pytest.mark.parametrize("method, message", [
    (3, "suggest: method must be one of 'steepest', .* or a callable \\(lrs, losses\\) -> lr, got 3"),
    (valley, "method must be a callable not named like a registered rule, 'valley' is taken"),
    (lambda lrs, losses: -1.0, "the LR of rule '<lambda>' must be > 0, got -1.0"),
    (lambda lrs, losses: float("nan"), "the LR of rule '<lambda>' must be a finite number, got nan"),
])
def test_bad_methods_are_named(method, message):
    with pytest.raises(ValueError, match=message):
        S.suggest([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0], method=method)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": 1}, "Rule: name must be a string, got 1"),
    ({"fn": "steepest"}, "Rule: fn must be callable \\(lrs, losses\\) -> lr, got 'steepest'"),
    ({"min_points": 0}, "Rule: min_points must be an integer >= 1, got 0"),
    ({"interval": "tail"}, "Rule: interval must be one of 'curve', 'falling', got 'tail'"),
])
def test_bad_rules_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        S.Rule(**{"name": "mine", "fn": tenth_of_last, "min_points": 2, **kwargs})
    with pytest.raises(ValueError, match="register: rule must be a Rule, got 'mine'"):
        S.register("mine")


@pytest.mark.parametrize("call, message", [
    (lambda: S.steepest([1, 2], [1.0]), "same length"),
    (lambda: S.steepest([1.0], [1.0]), "at least 2 points"),
    (lambda: S.valley([1, 2], [1.0, float("nan")]), "finite"),
    (lambda: S.minimum([2, 1], [1.0, 2.0]), "strictly increasing"),
    (lambda: S.minimum([0, 1], [1.0, 2.0]), "> 0"),
    (lambda: S.slide(np.arange(1, 21), np.ones(20), lr_diff=0), "lr_diff must be an integer >= 1, got 0"),
    (lambda: S.slide(np.arange(1, 21), np.ones(20), thresh=-1), "thresh must be > 0, got -1"),
    (lambda: S.clr_bounds([1, 2], [1, 2], ratio=1.0), r"ratio must be in \(1.0, inf\), got 1.0"),
    (lambda: S.suggest([1, 2], [1, 2], method="magic"), "method must be one of .*got 'magic'"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_suggest_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, lrkit.suggest; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the rule for a schedule ------------------------------------------------------------------
@pytest.fixture
def constant_reads_minimum(monkeypatch):
    """A mapping whose kinds read different rules, so that the choice by kind shows (today both read
    consensus: see SCHEDULE_RULES)."""
    monkeypatch.setitem(S.SCHEDULE_RULES, "constant", "minimum")


def test_both_schedule_kinds_read_consensus_since_the_held_out_benchmark():
    assert S.SCHEDULE_RULES == {"constant": "consensus", "decaying": "consensus"}


def test_each_schedule_kind_maps_to_its_rule(constant_reads_minimum):
    lrs, losses = _falling_then_rising(tail_dip=False)
    for kind, rule in S.SCHEDULE_RULES.items():
        found = S.suggest(lrs, losses, schedule=kind)
        assert found.method == rule and found.lr == found.suggestions[rule]
        assert found.reason == f"rule {rule!r} for a {kind} LR"
    plain = S.suggest(lrs, losses)
    assert plain.reason == "rule 'consensus': the default rule (no schedule given)"
    assert S.suggest(lrs, losses, method="valley").reason == "rule 'valley': the method given (no schedule given)"


@pytest.mark.parametrize("schedule, rule", [
    ("constant(lr=0.1)", "minimum"),
    ("warmup(constant(lr=0.1), steps=1000)", "minimum"),
    ("cosine(lr=0.1, decay_steps=1600)", "consensus"),
    ("one_cycle(max_lr=0.1, total_steps=1600)", "consensus"),
    ("in_epochs(step(lr=0.1, step_size=0.34, gamma=0.1), steps_per_epoch=1600)", "consensus"),
    ("exponential(lr=0.1, decay_steps=1600, decay_rate=0.01)", "consensus"),
    ("sgdr(lr=0.1, first_cycle_steps=40, t_mul=2)", "consensus"),
])
def test_a_schedule_or_its_spec_is_classified_by_evaluating_it(schedule, rule, constant_reads_minimum):
    from lrkit.schedules import parse

    lrs, losses = _falling_then_rising(tail_dip=False)
    for form in (schedule, parse(schedule)):
        found = S.suggest(lrs, losses, schedule=form)
        assert found.method == rule
        assert found.reason.startswith(f"rule {rule!r} for a {'constant' if rule == 'minimum' else 'decaying'} "
                                       f"schedule: {parse(schedule)} is within 10 % of its peak for ")


def test_schedule_kind_by_hand():
    from lrkit.schedules import constant, cosine, multistep, wsd
    from lrkit.schedules.shape import LONG_RUN, schedule_kind

    # cosine over its own run: 0.5 (1 + cos(pi t / T)) >= 0.9 while t / T <= arccos(0.8) / pi = 0.2048
    shape = schedule_kind(cosine(0.1, 10_000), total_steps=10_000)
    assert shape.kind == "decaying" and shape.near_peak == pytest.approx(math.acos(0.8) / math.pi, abs=2e-4)
    assert schedule_kind(constant(0.1)) == type(shape)("constant", 1.0, LONG_RUN)
    assert schedule_kind(multistep(0.1, (500, 750)), total_steps=1000).near_peak == pytest.approx(0.5, abs=1e-3)
    # warmup-stable-decay holds its peak for most of its run, and ends below it in the long run
    run = wsd(0.1, warmup_steps=50, stable_steps=800, decay_steps=150)
    assert schedule_kind(run, total_steps=1000).kind == "constant"
    assert schedule_kind(run).kind == "decaying"
    assert schedule_kind(cosine(0.1, 100, alpha=0.95)).kind == "constant"  # barely decays


@pytest.mark.parametrize("kwargs, message", [
    ({"schedule": "constant", "method": "valley"},
     "suggest: method must be left at 'consensus' when schedule is given \\(schedule='constant' picks the rule\\); "
     "pass method or schedule, not both, got 'valley'"),
    ({"schedule": "decaying", "method": tenth_of_last}, "method must be left at 'consensus' when schedule is given"),
    ({"schedule": "cyclic"}, "suggest: schedule must be one of 'constant', 'decaying', a Schedule or a schedule "
                             "spec \\(parse: .*got 'cyclic'"),
    ({"schedule": 3}, "schedule must be one of 'constant', 'decaying', a Schedule or a schedule spec, got 3"),
    ({"schedule": "constant(lr=0.0)"}, "schedule_kind: schedule must be a schedule whose LR rises above 0"),
])
def test_bad_schedules_and_method_with_schedule_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        S.suggest([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0], **kwargs)


def test_schedule_kind_arguments_are_named():
    from lrkit.schedules import constant
    from lrkit.schedules.shape import schedule_kind

    with pytest.raises(ValueError, match="schedule_kind: total_steps must be an integer >= 1, got 0"):
        schedule_kind(constant(0.1), total_steps=0)
    with pytest.raises(ValueError, match="schedule_kind: schedule must be a schedule, got 'cosine'"):
        schedule_kind("cosine")


def test_schedule_shape_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, lrkit.schedules.shape; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
