"""Textual specs, dict round trips and argument validation: every bad input is a ValueError.

The spec parser interprets Python syntax without evaluating it; these tests throw random
text, random token soup, malicious code and random wrong-typed arguments at it and at every
constructor, and require a ValueError (never another exception, never a side effect).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrkit.schedules as S
from lrkit.schedules.base import schedule_class

# -- the catalogue covers the registry ---------------------------------------------------


def test_catalogue_covers_every_registered_family(schedule_catalogue):
    names = {schedule.name for schedule in schedule_catalogue.values()}
    assert names == set(S.registered_names())


# -- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("cosine(lr=0.1, decay_steps=1000)", S.cosine(0.1, 1000)),
    ("cosine(0.1, 1000, 0.05)", S.cosine(0.1, 1000, alpha=0.05)),
    ("  step(lr=0.1, step_size=30, gamma=0.5)  ", S.step(0.1, 30, 0.5)),
    ("multistep(0.1, [30, 60, 60], gamma=0.1)", S.multistep(0.1, (30, 60, 60))),
    ("multistep(0.1, (30, 60))", S.multistep(0.1, [30, 60])),
    ("warmup(cosine(lr=0.1, decay_steps=10_000), steps=500)", S.warmup(S.cosine(0.1, 10_000), 500)),
    ("join([constant(0.1), exponential(0.1, 100, 0.5, staircase=True)], [50])",
     S.join([S.constant(0.1), S.exponential(0.1, 100, 0.5, staircase=True)], [50])),
    ("clip(scale(sgdr(1.0, 10, t_mul=+2), 0.1), max_lr=None)", S.clip(S.scale(S.sgdr(1.0, 10), 0.1))),
    ("triangular(1e-3, 1e-2, 20, None)", S.triangular(0.001, 0.01, 20)),
    ("one_cycle(0.1, 500, anneal='linear', three_phase=True)",
     S.one_cycle(0.1, 500, anneal="linear", three_phase=True)),
    ("wsd(0.1, 10, 20, 30, decay=\"1-sqrt\")", S.wsd(0.1, 10, 20, 30, decay="1-sqrt")),
    ("from_function('tests.half_every_10', lr=0.2)", S.from_function("tests.half_every_10", lr=0.2)),
])
def test_parse_builds_the_same_object(spec, expected):
    assert S.parse(spec) == expected
    assert S.parse(expected.to_spec()) == expected


def test_spec_round_trip_of_numpy_scalars():
    """Regression: numpy scalars used to be written as 'np.float64(0.1)', which parse refuses."""
    schedule = S.multistep(np.float64(0.1), np.array([10.0, 20.0]), np.float32(0.5))
    assert "np." not in schedule.to_spec()
    assert S.parse(schedule.to_spec()) == schedule
    assert S.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    cycle = S.one_cycle(0.1, np.int64(100))
    assert json.loads(json.dumps(cycle.to_dict()))["total_steps"] == 100


MALICIOUS = [
    "__import__('os').system('touch {marker}')",
    "cosine(lr=__import__('os').system('touch {marker}'), decay_steps=10)",
    "open('{marker}', 'w')",
    "exec(\"open('{marker}', 'w')\")",
    "eval('1')",
    "cosine.__class__",
    "cosine(lr=0.1, decay_steps=10).__class__.__mro__",
    "().__class__.__bases__[0].__subclasses__()",
    "cosine(lr=(lambda: 0.1)(), decay_steps=10)",
    "lambda: cosine(0.1, 10)",
    "[cosine(0.1, n) for n in range(3)]",
    "cosine(lr=[x for x in (0.1,)][0], decay_steps=10)",
    "{'name': 'cosine'}",
    "cosine(**{'lr': 0.1, 'decay_steps': 10})",
    "cosine(*[0.1, 10])",
    "cosine(lr=0.1 + 0.0, decay_steps=10)",
    "cosine(lr=10 ** 400, decay_steps=10)",
    "cosine(lr=1" + "0" * 400 + ", decay_steps=10)",
    "cosine(lr=1" + "0" * 5000 + ", decay_steps=10)",
    "cosine(lr=1e999, decay_steps=10)",
    "cosine(lr=-1e999, decay_steps=10)",
    "cosine(lr=0.1, decay_steps=10)(5)",
    "cosine(lr=0.1, decay_steps=10); import os",
    "import os",
    "x := cosine(0.1, 10)",
    "(x := cosine(0.1, 10))",
    "cosine(lr=0.1, decay_steps=10) if True else None",
    "f'{cosine}'",
    "b'cosine'",
    "cosine(lr=1j, decay_steps=10)",
    "cosine(lr=..., decay_steps=10)",
    "cosine(lr=-'x', decay_steps=10)",
    "cosine(lr=-True, decay_steps=10)",
    "cosine(lr=not 1, decay_steps=10)",
    "cosine(lr=0.1, lr=0.2, decay_steps=10)",  # ast.parse accepts repeated keywords
    "Cosine(lr=0.1, decay_steps=10)",
    "cosin(lr=0.1, decay_steps=10)",
    "schedule(lr=0.1)",
    "print(1)",
    "0.1",
    "None",
    "[cosine(0.1, 10)]",
    "'cosine(0.1, 10)'",
    "",
    "   ",
    "cosine(",
    "cosine(lr=0.1, decay_steps=10))",
    "cosine(lr=0.1, decay_steps=10)\x00",
    "(" * 5000 + "1" + ")" * 5000,
    "[" * 5000 + "]" * 5000,
    "-" * 9000 + "1",
    "x" * 20_000,
]


@pytest.mark.parametrize("template", MALICIOUS, ids=range(len(MALICIOUS)))
def test_malicious_and_malformed_specs_raise_value_error(template, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError) as err:
        S.parse(template.format(marker=marker) if "{marker}" in template else template)
    assert not marker.exists()
    assert "\n" not in str(err.value)  # one-line message


def test_deep_but_legal_nesting_parses():
    spec = "scale(" * 60 + "constant(0.1)" + ", 1.0)" * 60
    schedule = S.parse(spec)
    assert schedule(0) == pytest.approx(0.1) and S.parse(schedule.to_spec()) == schedule


def test_parse_error_points_at_the_column():
    with pytest.raises(ValueError, match=r"column 26 .*'cosin'.*did you mean 'cosine'"):
        S.parse("warmup(steps=5, schedule=cosin(0.1, 10))")
    with pytest.raises(ValueError, match=r"cosine: lr must be a finite number, got inf"):
        S.parse("cosine(lr=1e999, decay_steps=10)")


@pytest.mark.parametrize("bad", [None, 0.1, b"cosine(0.1, 10)", ["cosine(0.1, 10)"], S.cosine(0.1, 10)])
def test_parse_refuses_non_strings(bad):
    with pytest.raises(ValueError, match="must be a string"):
        S.parse(bad)


def _parse_or_value_error(text: str) -> None:
    try:
        result = S.parse(text)
    except ValueError as err:
        assert str(err)
    else:
        assert isinstance(result, S.Schedule)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_random_text_is_a_schedule_or_a_value_error(text):
    _parse_or_value_error(text)


TOKENS = ["cosine", "step", "warmup", "join", "constant", "from_function", "sgdr", "(", ")", "[", "]", "{", "}",
          ",", "=", "lr", "decay_steps", "steps", "0.1", "10", "-", "+", "1e999", "10**400", "'x'", "None",
          "True", "__import__", "'os'", ".", "system", "lambda", ":", "for", "in", "*", "**", "1j", "...",
          " ", "if", "else", "not", "@", ";", "\n", "#", "\\", '"""', "0x10", "1_000", "nan", "inf"]


@settings(max_examples=400)
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
def test_token_soup_is_a_schedule_or_a_value_error(tokens):
    _parse_or_value_error("".join(tokens))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_valid_specs_are_a_schedule_or_a_value_error(schedule_catalogue, data):
    spec = data.draw(st.sampled_from(sorted(s.to_spec() for s in schedule_catalogue.values())))
    i = data.draw(st.integers(0, len(spec) - 1))
    j = data.draw(st.integers(i, min(len(spec), i + 6)))
    _parse_or_value_error(spec[:i] + data.draw(st.sampled_from(TOKENS)) + spec[j:])


# -- constructors with wrong arguments ----------------------------------------------------
BAD_VALUES = {
    "str": "x", "none": None, "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "negative": -1.0,
    "bool": True, "list": [1.0, 2.0], "empty_list": [], "dict": {}, "huge_int": 10**400,
    "array0d": np.array(3.0), "object": object(),
}
#: (family, field, bad-value id) combinations that are legitimately valid.
ACCEPTED = {
    ("triangular", "step_size_down", "none"), ("triangular2", "step_size_down", "none"),
    ("exp_range", "step_size_down", "none"), ("clip", "max_lr", "none"),
    ("multistep", "milestones", "list"), ("join", "boundaries", "list"),  # 3 schedules, 2 boundaries
} | {(family, field, "bool") for family, field in [
    ("exponential", "staircase"), ("natural_exp", "staircase"), ("inverse_time", "staircase"),
    ("polynomial", "cycle"), ("one_cycle", "three_phase"), ("one_cycle_momentum", "three_phase")]}


def _base_kwargs(schedule):
    return {f.name: getattr(schedule, f.name) for f in dataclasses.fields(schedule)}


def _one_per_family(catalogue):
    seen = {}
    for schedule in catalogue.values():
        seen.setdefault(schedule.name, schedule)
    return seen


@pytest.mark.parametrize("bad_id", list(BAD_VALUES))
def test_every_constructor_refuses_wrong_arguments(schedule_catalogue, bad_id):
    bad = BAD_VALUES[bad_id]
    checked = 0
    for name, example in _one_per_family(schedule_catalogue).items():
        cls = type(example)
        for field in dataclasses.fields(example):
            kwargs = {**_base_kwargs(example), field.name: bad}
            if (name, field.name, bad_id) in ACCEPTED:
                cls(**kwargs)
                continue
            with pytest.raises(ValueError) as err:
                cls(**kwargs)
            message = str(err.value)
            assert name in message and (field.name in message or field.name == "fn"), (name, field.name, message)
            checked += 1
    assert checked > 80


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_wrong_typed_kwargs_raise_value_error(schedule_catalogue, data):
    families = _one_per_family(schedule_catalogue)
    name = data.draw(st.sampled_from(sorted(families)))
    example = families[name]
    junk = st.one_of(st.text(max_size=5), st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
                     st.integers(-10**30, 10**30), st.lists(st.floats(), max_size=3),
                     st.lists(st.text(max_size=2), max_size=3),
                     st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
    fields = [f.name for f in dataclasses.fields(example)]
    changes = data.draw(st.dictionaries(st.sampled_from(fields), junk, min_size=1))
    try:
        built = type(example)(**{**_base_kwargs(example), **changes})
    except ValueError:
        return
    # accepted: it must then be a working schedule that round-trips
    assert S.from_dict(built.to_dict()) == built
    built(np.arange(5.0))


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(["name", "lr", "decay_steps", "alpha", "x", "__class__", "schedule"]),
                       st.one_of(st.sampled_from(S.registered_names()), st.floats(), st.none(), st.text(max_size=4),
                                 st.lists(st.integers(), max_size=2), st.just({"name": "cosine"})), max_size=5))
def test_random_dicts_are_a_schedule_or_a_value_error(data):
    try:
        result = S.from_dict(data)
    except ValueError:
        return
    assert isinstance(result, S.Schedule)


@pytest.mark.parametrize("data", [None, [], "cosine", {"lr": 0.1}, {"name": "nope"}, {"name": ["cosine"]},
                                  {"name": "cosine", "lr": 0.1},
                                  {"name": "cosine", "lr": 0.1, "decay_steps": 10, "x": 1},
                                  {"name": "warmup", "schedule": {"name": "evil"}, "steps": 5},
                                  {"name": "cosine", 1: 2}])
def test_from_dict_refuses_bad_dicts(data):
    with pytest.raises(ValueError):
        S.from_dict(data)


def test_deeply_nested_dict_is_a_value_error():
    data = {"name": "constant", "lr": 0.1}
    for _ in range(5000):
        data = {"name": "scale", "schedule": data, "factor": 1.0}
    with pytest.raises(ValueError, match="too deeply nested"):
        S.from_dict(data)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="name must be one of .*'cosine'"):
        schedule_class("nope")


def test_huge_integers_are_value_errors():
    """Regression: ints beyond the float range raised OverflowError."""
    for build in (lambda: S.cosine(10**400, 10), lambda: S.one_cycle(0.1, 10**400),
                  lambda: S.slanted_triangular(0.1, 10**400), lambda: S.multistep(0.1, [10**400])):
        with pytest.raises(ValueError, match="finite number"):
            build()


# -- user functions -------------------------------------------------------------------------
def test_registered_function_round_trips():
    schedule = S.from_function("tests.half_every_10", lr=0.2)
    assert schedule.to_dict() == {"name": "from_function", "fn": "tests.half_every_10", "lr": 0.2}
    assert S.from_dict(schedule.to_dict()) == schedule
    assert S.parse(schedule.to_spec()) == schedule
    assert schedule(25) == 0.2 * 0.5**2


def test_register_function_by_qualname_and_conflicts():
    @S.register_function
    def tests_spec_local_fn(step):
        return 1.0

    assert S.from_function(tests_spec_local_fn).to_dict()["fn"] == tests_spec_local_fn.__qualname__
    with pytest.raises(ValueError, match="already registered"):
        S.register_function(tests_spec_local_fn.__qualname__)(lambda step: 2.0)


def test_anonymous_lambda_cannot_be_saved():
    schedule = S.from_function(lambda step: 0.9**step, lr=0.1)
    assert schedule(2) == pytest.approx(0.1 * 0.81)  # usable in memory
    for save in (schedule.to_dict, schedule.to_spec, S.warmup(schedule, 5).to_dict):
        with pytest.raises(ValueError, match="fn must be registered to be saved.*register_function"):
            save()


@pytest.mark.parametrize("fn", ["not_registered", 3, None])
def test_from_function_refuses_unknown_names_and_non_callables(fn):
    with pytest.raises(ValueError, match="from_function: fn"):
        S.from_function(fn)


@pytest.mark.parametrize("fn", [lambda s: "x", lambda s: math.inf, lambda s: None])
def test_from_function_refuses_bad_return_values(fn):
    with pytest.raises(ValueError, match="from_function: fn"):
        S.from_function(fn)(3)


@pytest.mark.parametrize("step", [-1, math.nan, math.inf, "3", None, [0, -2], b"1"])
def test_bad_steps_raise_value_error(step):
    with pytest.raises(ValueError, match="step must be"):
        S.cosine(0.1, 10)(step)


# -- templates ------------------------------------------------------------------------------
def test_a_template_is_filled_with_the_numbers_repr_and_parsed():
    from lrkit.schedules import cosine, fill_template

    assert fill_template("cosine(lr={lr}, decay_steps={total_steps})", lr=0.1, total_steps=1000) == cosine(0.1, 1000)
    assert fill_template("constant(lr={lr})", lr=1e-3, total_steps=5) == fill_template("constant(lr=0.001)")


@pytest.mark.parametrize("template, message", [
    ("constant(lr={lr:>3000000000})", "takes no format spec or conversion"),
    ("constant(lr={lr!r})", "takes no format spec or conversion"),
    ("constant(lr={rate})", r"unknown field\(s\) \['rate'\]"),
    ("constant(lr={lr)", "bad schedule template"),
])
def test_a_template_with_a_format_spec_an_unknown_field_or_a_bad_brace_is_refused_before_filling(template, message):
    from lrkit.schedules import fill_template

    with pytest.raises(ValueError, match=message):
        fill_template(template, lr=0.1)
