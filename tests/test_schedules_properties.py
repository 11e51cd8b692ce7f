"""Properties of every schedule family over hypothesis-generated parameters and steps:
bounds, monotonicity, continuity at the seams of compositions, scalar == array evaluation,
and `to_dict`/`from_dict`, `to_spec`/`parse` round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import lrkit.schedules as S

LR = st.floats(1e-6, 10.0)
SPAN = st.floats(1.0, 500.0)
FRACTION = st.floats(0.0, 1.0)
DECAY = st.floats(0.05, 1.0)  # a factor in (0, 1]
STEPS = st.lists(st.floats(0.0, 5000.0), min_size=1, max_size=40)


class Case:
    """A generated schedule with the bounds its family guarantees and where it is monotone."""

    def __init__(self, schedule, low, high, monotone_from=None):
        self.schedule, self.low, self.high, self.monotone_from = schedule, low, high, monotone_from

    def __repr__(self) -> str:
        return f"Case({self.schedule.to_spec() if not isinstance(self.schedule, S.from_function) else ''})"


@st.composite
def step_case(draw):
    lr, gamma = draw(LR), draw(DECAY)
    return Case(S.step(lr, draw(SPAN), gamma), 0.0, lr, 0.0)


@st.composite
def multistep_case(draw):
    lr, gamma = draw(LR), draw(DECAY)
    milestones = sorted(draw(st.lists(st.floats(0.0, 3000.0), min_size=1, max_size=6)))
    return Case(S.multistep(lr, milestones, gamma), 0.0, lr, 0.0)


@st.composite
def piecewise_case(draw):
    boundaries = sorted(set(draw(st.lists(st.floats(0.0, 3000.0), min_size=1, max_size=5))))
    values = draw(st.lists(LR, min_size=len(boundaries) + 1, max_size=len(boundaries) + 1))
    return Case(S.piecewise(boundaries, values), min(values), max(values))


@st.composite
def decay_case(draw):
    family = draw(st.sampled_from(["exponential", "natural_exp", "inverse_time"]))
    lr, staircase = draw(LR), draw(st.booleans())
    rate = draw(DECAY) if family == "exponential" else draw(st.floats(0.0, 5.0))
    return Case(getattr(S, family)(lr, draw(SPAN), rate, staircase=staircase), 0.0, lr, 0.0)


@st.composite
def polynomial_case(draw):
    lr, cycle = draw(LR), draw(st.booleans())
    end = lr * draw(FRACTION)
    schedule = S.polynomial(lr, draw(SPAN), end_lr=end, power=draw(st.floats(0.1, 5.0)), cycle=cycle)
    return Case(schedule, end, lr, None if cycle else 0.0)


@st.composite
def cosine_case(draw):
    lr, alpha = draw(LR), draw(FRACTION)
    return Case(S.cosine(lr, draw(SPAN), alpha=alpha), alpha * lr, lr, 0.0)


@st.composite
def linear_cosine_case(draw):
    lr, alpha, beta = draw(LR), draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 0.1))
    schedule = S.linear_cosine(lr, draw(SPAN), num_periods=draw(st.floats(0.0, 5.0)), alpha=alpha, beta=beta)
    return Case(schedule, lr * beta, lr * (alpha + 1.0 + beta))


@st.composite
def sgdr_case(draw):
    lr, alpha = draw(LR), draw(FRACTION)
    schedule = S.sgdr(lr, draw(st.floats(1.0, 100.0)), t_mul=draw(st.floats(1.0, 3.0)),
                      m_mul=draw(DECAY), alpha=alpha)
    return Case(schedule, alpha * lr, lr)


@st.composite
def cyclic_case(draw):
    mode = draw(st.sampled_from(["triangular", "triangular2", "exp_range"]))
    base, top = draw(LR), draw(LR)
    down = draw(st.one_of(st.none(), SPAN))
    kwargs = {"gamma": draw(st.floats(0.9, 1.0))} if mode == "exp_range" else {}
    schedule = getattr(S, mode)(base, top, draw(SPAN), down, **kwargs)
    return Case(schedule, min(base, top), max(base, top))


@st.composite
def one_cycle_case(draw):
    total = draw(st.integers(10, 3000))
    pct = draw(st.floats(2.5 / total, 0.45))  # >= 1 step in the first phase (else ValueError)
    kwargs = dict(pct_start=pct, anneal=draw(st.sampled_from(["cos", "linear"])),
                  three_phase=draw(st.booleans()))
    lr, div, final_div = draw(LR), draw(st.floats(1.0, 100.0)), draw(st.floats(1.0, 1e4))
    if draw(st.booleans()):
        low, high = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2)))
        return Case(S.one_cycle(lr, total, **kwargs).momentum_schedule(low, high), low, high)
    schedule = S.one_cycle(lr, total, div_factor=div, final_div_factor=final_div, **kwargs)
    return Case(schedule, lr / div / final_div, lr)


@st.composite
def slanted_case(draw):
    total, cut = draw(st.integers(20, 3000)), draw(st.floats(0.05, 0.9))
    lr, ratio = draw(LR), draw(st.floats(1.0, 100.0))
    return Case(S.slanted_triangular(lr, total, cut_frac=cut, ratio=ratio), lr / ratio, lr)


@st.composite
def transformer_case(draw):
    lr = draw(LR)
    if draw(st.booleans()):
        warm = draw(SPAN)
        return Case(S.inverse_sqrt(lr, warm), 0.0, lr, max(warm - 1.0, 0.0))
    warm, stable, decay = draw(st.floats(0.0, 300.0)), draw(st.floats(0.0, 300.0)), draw(SPAN)
    end = lr * draw(FRACTION)
    schedule = S.wsd(lr, warm, stable, decay, decay=draw(st.sampled_from(["linear", "cosine", "1-sqrt"])), end_lr=end)
    return Case(schedule, 0.0 if warm > 0 else end, lr, warm)


@st.composite
def composed_case(draw):
    inner = draw(cosine_case())
    start = draw(st.floats(0.0, 1.0)) * inner.high
    warm = S.warmup(inner.schedule, draw(SPAN), start_lr=start, mode=draw(st.sampled_from(["linear", "cosine"])))
    low, high = min(start, inner.low), inner.high
    kind = draw(st.sampled_from(["warmup", "scale", "clip", "join", "in_epochs"]))
    if kind == "warmup":
        return Case(warm, low, high)
    if kind == "scale":
        factor = draw(st.floats(0.0, 3.0))
        return Case(S.scale(warm, factor), low * factor, high * factor)
    if kind == "clip":
        a, b = sorted([draw(st.floats(0.0, 10.0)), draw(st.floats(0.0, 10.0))])
        return Case(S.clip(warm, a, b), a, b)
    if kind == "in_epochs":
        return Case(S.in_epochs(warm, draw(st.floats(0.1, 100.0))), low, high)
    tail = draw(decay_case())
    return Case(S.join([warm, tail.schedule], [draw(SPAN)]), min(low, tail.low), max(high, tail.high))


FAMILIES = {
    "step": step_case(), "multistep": multistep_case(), "piecewise": piecewise_case(),
    "decay": decay_case(), "polynomial": polynomial_case(), "cosine": cosine_case(),
    "linear_cosine": linear_cosine_case(), "sgdr": sgdr_case(), "cyclic": cyclic_case(),
    "one_cycle": one_cycle_case(), "slanted": slanted_case(), "transformer": transformer_case(),
    "composed": composed_case(),
}


def _tolerance(case) -> float:
    return 1e-12 * max(abs(case.high), abs(case.low), 1e-300) + 1e-300


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(max_examples=40)
@given(data=st.data())
def test_values_within_family_bounds(family, data):
    case = data.draw(FAMILIES[family])
    t = np.array(data.draw(STEPS))
    values = case.schedule(t)
    assert values.shape == t.shape and values.dtype == np.float64
    tol = _tolerance(case)
    assert np.all(values >= case.low - tol), (case, t[values < case.low - tol])
    assert np.all(values <= case.high + tol), (case, t[values > case.high + tol])


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in {"piecewise", "linear_cosine", "sgdr",
                                                                       "cyclic", "one_cycle", "slanted",
                                                                       "composed"}])
@settings(max_examples=40)
@given(data=st.data())
def test_monotone_non_increasing(family, data):
    case = data.draw(FAMILIES[family])
    assume(case.monotone_from is not None)  # polynomial with cycle restarts higher
    t = np.sort(np.array(data.draw(STEPS)))
    t = np.concatenate([t, t + 0.5, t + 1.0])
    t = np.sort(t[t >= case.monotone_from])
    values = case.schedule(t)
    assert np.all(np.diff(values) <= _tolerance(case)), case


def test_monotone_families_really_decrease():
    """The monotone test above is not vacuous: each of those families does go down."""
    for schedule in [S.step(1.0, 10), S.multistep(1.0, [5]), S.exponential(1.0, 10, 0.5),
                     S.natural_exp(1.0, 10, 0.5), S.inverse_time(1.0, 10, 0.5), S.polynomial(1.0, 10),
                     S.cosine(1.0, 10), S.inverse_sqrt(1.0, 5), S.wsd(1.0, 5, 5, 5)]:
        values = schedule(np.arange(0.0, 30.0))
        assert values[-1] < values.max()


@settings(max_examples=40)
@given(lr=LR, steps=SPAN, start=FRACTION, decay=SPAN, mode=st.sampled_from(["linear", "cosine", "exponential"]))
def test_warmup_is_continuous_at_its_end(lr, steps, start, decay, mode):
    inner = S.cosine(lr, decay)
    start_lr = max(start * lr, 1e-8 * lr) if mode == "exponential" else start * lr
    schedule = S.warmup(inner, steps, start_lr=start_lr, mode=mode)
    h = 1e-9 * steps
    assert schedule(steps) == inner(0) == lr
    assert schedule(steps - h) == pytest.approx(lr, rel=1e-6)
    assert schedule(0) == pytest.approx(start_lr, rel=1e-12)


@settings(max_examples=40)
@given(lr=LR, warm=st.floats(1.0, 300.0), stable=st.floats(1.0, 300.0), decay=SPAN, end=FRACTION,
       kind=st.sampled_from(["linear", "cosine", "1-sqrt"]))
def test_wsd_is_continuous_at_each_phase(lr, warm, stable, decay, end, kind):
    schedule = S.wsd(lr, warm, stable, decay, decay=kind, end_lr=end * lr)
    for seam in (warm, warm + stable, warm + stable + decay):
        h = 1e-10 * seam
        left, at, right = schedule(np.array([seam - h, seam, seam + h]))
        # 1-sqrt has an infinite slope at p = 0: allow sqrt(h / decay) there
        slack = 1e-6 * lr + (lr * np.sqrt(2 * h / decay) if kind == "1-sqrt" else 0.0)
        assert abs(left - at) <= slack and abs(right - at) <= slack


@settings(max_examples=40)
@given(lr=LR, warm=SPAN, decay=SPAN, alpha=FRACTION, power=st.floats(0.5, 3.0))
def test_join_of_continuous_pieces_is_continuous(lr, warm, decay, alpha, power):
    """warmup ramp | cosine to alpha*lr | constant alpha*lr: no jump at either boundary."""
    schedule = S.join([S.warmup(S.constant(lr), warm), S.cosine(lr, decay, alpha=alpha),
                       S.constant(alpha * lr)], [warm, warm + decay])
    for seam in (warm, warm + decay):
        h = 1e-10 * seam
        left, at = schedule(np.array([seam - h, seam]))
        assert abs(left - at) <= 1e-6 * lr


def test_continuity_checks_can_fail():
    """A join whose pieces do not meet is caught by the same comparison."""
    schedule = S.join([S.constant(0.1), S.constant(0.05)], [10])
    left, at = schedule(np.array([10 - 1e-9, 10.0]))
    assert abs(left - at) > 1e-6 * 0.1


@settings(max_examples=25)
@given(steps=st.lists(st.one_of(st.integers(0, 10_000), st.floats(0.0, 10_000.0)), min_size=1, max_size=25))
def test_scalar_call_equals_array_element(schedule_example, steps):
    array = schedule_example(np.array(steps, dtype=float))
    scalars = [schedule_example(s) for s in steps]
    assert all(isinstance(v, float) for v in scalars)
    assert array.tolist() == scalars  # bit-identical, not approximate
    assert schedule_example(np.array(steps, dtype=float).reshape(-1, 1)).ravel().tolist() == scalars


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(max_examples=25)
@given(data=st.data())
def test_generated_schedules_round_trip(family, data):
    schedule = data.draw(FAMILIES[family]).schedule
    _assert_round_trips(schedule)


def test_catalogue_round_trips(schedule_example):
    _assert_round_trips(schedule_example)


def _assert_round_trips(schedule):
    data = schedule.to_dict()
    rebuilt = S.from_dict(json.loads(json.dumps(data)))
    assert rebuilt == schedule and type(rebuilt) is type(schedule)
    assert rebuilt.to_dict() == data
    spec = schedule.to_spec()
    parsed = S.parse(spec)
    assert parsed == schedule and parsed.to_spec() == spec
    t = np.arange(0.0, 2000.0, 7.5)
    assert np.array_equal(parsed(t), schedule(t)) and np.array_equal(rebuilt(t), schedule(t))


def test_schedules_are_immutable_and_hashable(schedule_example):
    first = next(iter(schedule_example.to_dict().keys() - {"name"}))
    with pytest.raises(AttributeError):
        setattr(schedule_example, first, 1.0)
    assert hash(schedule_example) == hash(S.from_dict(schedule_example.to_dict()))


def test_evaluation_far_past_the_interesting_range_emits_no_warnings(schedule_example):
    """Branches computed but not selected (np.where) must not overflow into RuntimeWarnings."""
    import warnings

    t = np.array([0.0, 1.0, 1e3, 1e6, 1e9, 1e15])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = schedule_example(t)
    assert np.all(np.isfinite(values))
