"""Shared test set-up: hypothesis profile, one torch thread, and a catalogue of schedules.

`SCHEDULE_EXAMPLES` holds one or more concrete schedules per registered family (and
compositions). Any test that takes an argument named ``schedule_example`` is parametrized
over it, so a family added to the registry without an example here fails
`test_catalogue_covers_every_registered_family` in tests/test_spec.py.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, settings

import lrkit.schedules as S

torch.set_num_threads(1)

settings.register_profile(
    "lrkit", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)
settings.load_profile("lrkit")


@S.register_function("tests.half_every_10")
def half_every_10(step: int) -> float:
    """A registered user function: ``0.5 ** (step // 10)``."""
    return 0.5 ** (step // 10)


def _composition() -> S.Schedule:
    """warmup + join + clip: the composition the resume tests must cover."""
    body = S.join([S.cosine(0.1, 300, alpha=0.05), S.exponential(0.02, 50, 0.5, staircase=True)], [300])
    return S.clip(S.warmup(body, 40, start_lr=1e-4), min_lr=1e-3, max_lr=0.08)


#: id -> schedule. Every registered name appears at least once (checked in test_spec.py).
SCHEDULE_EXAMPLES: dict[str, S.Schedule] = {
    "constant": S.constant(0.05),
    "step": S.step(0.1, 30, 0.5),
    "multistep": S.multistep(0.1, (50, 120, 120, 300), 0.3),
    "piecewise": S.piecewise((100, 250, 400), (0.1, 0.05, 0.01, 0.001)),
    "exponential": S.exponential(0.1, 100, 0.96),
    "exponential_staircase": S.exponential(0.1, 100, 0.96, staircase=True),
    "natural_exp": S.natural_exp(0.1, 100, 0.5),
    "natural_exp_staircase": S.natural_exp(0.1, 100, 0.5, staircase=True),
    "inverse_time": S.inverse_time(0.1, 100, 0.5),
    "inverse_time_staircase": S.inverse_time(0.1, 100, 0.5, staircase=True),
    "polynomial": S.polynomial(0.1, 400, end_lr=0.001, power=2.0),
    "polynomial_cycle": S.polynomial(0.1, 150, end_lr=0.001, power=2.0, cycle=True),
    "cosine": S.cosine(0.1, 400, alpha=0.1),
    "linear_cosine": S.linear_cosine(0.1, 400, num_periods=2.0, alpha=0.1, beta=0.01),
    "noisy_linear_cosine": S.noisy_linear_cosine(0.1, 400, initial_variance=0.5, seed=7),
    "sgdr": S.sgdr(0.1, 20, t_mul=1.5, m_mul=0.5, alpha=0.01),
    "sgdr_t3": S.sgdr(0.1, 10, t_mul=3.0),
    "triangular": S.triangular(0.001, 0.01, 20, 30),
    "triangular2": S.triangular2(0.001, 0.01, 25),
    "exp_range": S.exp_range(0.001, 0.01, 20, gamma=0.995),
    "one_cycle": S.one_cycle(0.1, 500),
    "one_cycle_three_phase_linear": S.one_cycle(0.1, 500, pct_start=0.25, anneal="linear", three_phase=True),
    "one_cycle_momentum": S.one_cycle(0.1, 500).momentum_schedule(),
    "slanted_triangular": S.slanted_triangular(0.01, 500, cut_frac=0.1, ratio=32.0),
    "inverse_sqrt": S.inverse_sqrt(0.001, 100),
    "wsd_linear": S.wsd(0.1, 50, 200, 150, decay="linear", end_lr=0.001),
    "wsd_cosine": S.wsd(0.1, 50, 200, 150, decay="cosine"),
    "wsd_1sqrt": S.wsd(0.1, 50, 200, 150, decay="1-sqrt"),
    "warmup_exponential": S.warmup(S.cosine(0.1, 300), 50, start_lr=1e-4, mode="exponential"),
    "warmup_cosine": S.warmup(S.step(0.1, 100, 0.5), 50, start_lr=0.0, mode="cosine"),
    "join": S.join([S.constant(0.1), S.polynomial(0.1, 200, end_lr=0.0), S.constant(0.0)], [100, 300]),
    "scale": S.scale(S.sgdr(1.0, 30, t_mul=2.0), 0.05),
    "in_epochs": S.in_epochs(S.step(0.1, 3, 0.5), 37),
    "from_function": S.from_function("tests.half_every_10", lr=0.2),
    "clip": _composition(),
    "cosine_wave": S.cosine_wave(0.1, 300, cycles=1.5, alpha=0.05),
    "shift": S.shift(S.inverse_sqrt(0.1, 50), 49),
    "warmup_1sqrt": S.warmup(S.constant(0.1), 50, start_lr=0.01, mode="1-sqrt"),
    "timm_cosine": S.timm_cosine(0.1, 100, lr_min=0.001, cycle_mul=2.0, cycle_decay=0.5, cycle_limit=3, k_decay=1.5),
    "timm_tanh": S.timm_tanh(0.1, 100, lr_min=0.001, cycle_mul=1.5, cycle_decay=0.7, cycle_limit=4),
    "timm_poly": S.timm_poly(0.1, 100, power=2.0, lr_min=0.001, cycle_decay=0.5, cycle_limit=3, k_decay=0.5),
    "from_hf_cosine_warmup_with_min_lr": S.from_hf("cosine_warmup_with_min_lr", 0.1, 20, 500, min_lr=1e-3),
    "from_hf_wsd": S.from_hf("warmup_stable_decay", 0.1, 20, 500, num_decay_steps=100, min_lr_ratio=0.1,
                             warmup_type="1-sqrt", decay_type="1-sqrt"),
    "from_timm_cosine": S.from_timm("cosine", 0.1, num_epochs=300, warmup_epochs=20, min_lr=1e-4, cycle_limit=2,
                                    cycle_decay=0.5),
    "from_timm_multistep": S.from_timm("multistep", 0.1, decay_milestones=[100, 200], warmup_epochs=10),
}


def pytest_generate_tests(metafunc):
    if "schedule_example" in metafunc.fixturenames:
        metafunc.parametrize("schedule_example", list(SCHEDULE_EXAMPLES.values()),
                             ids=list(SCHEDULE_EXAMPLES))


@pytest.fixture
def schedule_catalogue() -> dict[str, S.Schedule]:
    """The whole catalogue, for tests that look at it as a set."""
    return SCHEDULE_EXAMPLES
