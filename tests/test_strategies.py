"""Strategies: templates are filled with numbers and parsed (never evaluated), names validated."""

import pytest

from lrkit.experiments.strategies import DEFAULT_STRATEGIES, Strategy, default_strategies, select_strategies
from lrkit.schedules import cosine, in_epochs, multistep, one_cycle, one_cycle_momentum


def test_templates_resolve_to_the_schedule_they_describe():
    values = {"lr": 0.3, "total_steps": 400, "steps_per_epoch": 40, "epochs": 10}
    strategies = default_strategies()
    assert Strategy.resolve(strategies["cosine"].schedule, **values) == cosine(lr=0.3, decay_steps=400)
    assert Strategy.resolve(strategies["multistep"].schedule, **values) == in_epochs(
        multistep(lr=0.3, milestones=[0.5, 0.75], gamma=0.1), steps_per_epoch=400)
    assert Strategy.resolve(strategies["one-cycle"].schedule, **values) == one_cycle(max_lr=0.3, total_steps=400)
    assert Strategy.resolve(strategies["one-cycle"].momentum, **values) == one_cycle_momentum(total_steps=400)


def test_progress_shapes_change_at_the_stated_fraction_of_training():
    sched = Strategy.resolve(default_strategies()["multistep"].schedule, lr=1.0, total_steps=1000,
                             steps_per_epoch=100, epochs=10)
    assert sched(499) == 1.0 and sched(500) == pytest.approx(0.1) and sched(750) == pytest.approx(0.01)


def test_clr_template_spans_a_quarter_of_the_lr_to_the_lr():
    sched = Strategy.resolve(default_strategies()["clr-triangular2"].schedule, lr=0.2, total_steps=1000,
                             steps_per_epoch=50, epochs=20)
    assert sched(0) == pytest.approx(0.05) and sched(100) == pytest.approx(0.2)  # half-cycle = 2 epochs


def test_default_set_covers_the_case_study():
    names = {s.name for s in DEFAULT_STRATEGIES}
    assert {"constant-too-small", "constant-too-large", "constant-finder", "step", "multistep", "exponential",
            "cosine", "sgdr", "clr-triangular2", "one-cycle", "warmup-cosine", "plateau", "lipschitz",
            "adagrad", "rmsprop", "adadelta", "adam"} <= names


@pytest.mark.parametrize("template, message", [
    ("cosine(lr={lr}, decay_steps={total_step})", "unknown field"),
    ("cosine(lr={lr}, decay_steps={total_steps}", "bad schedule spec"),
    ("__import__('os').system('echo {lr}')", "must be a plain name"),
    ("cosine(lr={lr.__class__}, decay_steps=1)", "unknown field"),
])
def test_bad_templates_are_rejected_at_construction(template, message):
    with pytest.raises(ValueError, match=message):
        Strategy("bad", "bad", schedule=template)


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"lr": "auto"}, "lr"),
    ({"lr": -0.1}, "lr"),
    ({"finder_method": "fastest"}, "finder_method"),
    ({"lr_factor": 0.0}, "lr_factor"),
    ({"schedule": 0.1}, "schedule"),
    ({"plateau": "factor=0.1"}, "plateau"),
    ({"optimizer_kwargs": None}, "optimizer_kwargs"),
    ({"baseline": "yes"}, "baseline"),
])
def test_bad_strategy_fields_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Strategy("bad", "bad", **kwargs)


def test_errors_name_the_strategy_the_field_what_is_allowed_and_the_value():
    with pytest.raises(ValueError) as err:
        Strategy("bad", "bad", optimizer="lbfgs")
    assert str(err.value) == ("strategy 'bad': optimizer must be one of 'sgd', 'adam', 'adamw', 'rmsprop', "
                              "'adagrad', 'adadelta', got 'lbfgs'")
    with pytest.raises(ValueError, match=r"^strategy 'bad': lr must be > 0, got -0.1$"):
        Strategy("bad", "bad", lr=-0.1)


@pytest.mark.parametrize("kwargs, message", [
    # LipschitzLR sets the LR every epoch: a schedule, momentum schedule or plateau would be ignored
    # (a plateau used to crash training on None.report)
    ({"lipschitz": {}, "schedule": "cosine(lr={lr}, decay_steps={total_steps})"},
     "strategy 'bad': schedule must be None with lipschitz"),
    ({"lipschitz": {}, "momentum": "one_cycle_momentum(total_steps={total_steps})"},
     "strategy 'bad': momentum must be None with lipschitz"),
    ({"lipschitz": {}, "plateau": {"factor": 0.1}}, "strategy 'bad': plateau must be None with lipschitz"),
    # settings that only an LR range test or a numeric LR would read
    ({"lr": 0.1, "finder_method": "minimum"}, "finder_method must be left at 'consensus' unless lr='finder'"),
    ({"lr": "default", "lr_factor": 10.0}, "lr_factor must be 1.0 with lr='default'"),
    ({"optimizer_kwargs": {"lr": 0.1}}, "optimizer_kwargs must be free of 'lr'"),
    ({"optimizer": "adagrad", "momentum": "one_cycle_momentum(total_steps={total_steps})"},
     "momentum must be None with optimizer 'adagrad'"),
])
def test_settings_training_would_ignore_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Strategy("bad", "bad", **kwargs)


def test_supported_combinations_are_accepted():
    Strategy("ok", "ok", lipschitz={}, optimizer="adam", lr="default")
    Strategy("ok", "ok", plateau={"factor": 0.5}, schedule="cosine(lr={lr}, decay_steps={total_steps})")
    Strategy("ok", "ok", optimizer="adam", momentum="one_cycle_momentum(total_steps={total_steps})")
    Strategy("ok", "ok", lr=0.1, lr_factor=2.0)


def test_constant_finder_is_the_one_default_baseline():
    assert [s.name for s in DEFAULT_STRATEGIES if s.baseline] == ["constant-finder"]
    assert default_strategies()["constant-finder"].config()["baseline"] is True
    assert default_strategies()["cosine"].config()["baseline"] is False


def test_the_baseline_flag_is_stored_but_keeps_the_run_key():
    from lrkit.experiments.training import Trial

    plain = Strategy("c", "constant", lr=0.1)
    flagged = Strategy("c", "constant", lr=0.1, baseline=True)
    assert plain.config() != flagged.config() and plain.identity() == flagged.identity()
    assert Trial("t", plain, 0, 2, 32).key == Trial("t", flagged, 0, 2, 32).key
    assert Trial("t", plain, 0, 2, 32).key != Trial("t", Strategy("c", "constant", lr=0.2), 0, 2, 32).key


def test_select_strategies_by_name_and_custom_templates():
    chosen = select_strategies("cosine,adam", ["wc=warmup(cosine(lr={lr}, decay_steps={total_steps}), steps=10)"])
    assert [s.name for s in chosen] == ["cosine", "adam", "wc"]
    assert len(select_strategies(None)) == len(DEFAULT_STRATEGIES)
    with pytest.raises(ValueError, match="unknown strategy 'cosin'"):
        select_strategies("cosin")
    with pytest.raises(ValueError, match="NAME=TEMPLATE"):
        select_strategies("adam", ["no-equals-sign"])
    with pytest.raises(ValueError, match="unique"):
        select_strategies("adam,adam")


def test_constant_lr_strategies_read_the_minimum_rule_decaying_ones_the_consensus():
    strategies = default_strategies()
    for name in ("constant-too-small", "constant-too-large", "constant-finder", "plateau"):
        assert strategies[name].finder_method == "minimum"
    for name in ("step", "multistep", "exponential", "cosine", "warmup-cosine", "sgdr", "clr-triangular2",
                 "one-cycle"):
        assert strategies[name].finder_method == "consensus"


def test_the_runner_uses_the_strategys_finder_rule():
    import torch

    from lrkit.experiments.training import FINDER_ITERATIONS, finder_lr, strategy_optimizer
    from lrkit.tasks import get_task
    from lrkit.torch import find_lr

    task = get_task("digits-mlp")
    torch.manual_seed(0)
    model = task.build_model()
    loader, _ = task.loaders(0)
    strategy = default_strategies()["constant-finder"]
    reference = find_lr(model, strategy_optimizer(strategy, model, lr=1e-7), task.criterion(), loader,
                        num_iter=FINDER_ITERATIONS, progress=False)
    assert reference.suggestions["minimum"] != reference.suggestions["consensus"]
    assert finder_lr(task, strategy, model, loader) == pytest.approx(reference.suggestions["minimum"], rel=1e-12)
    cosine_lr = finder_lr(task, default_strategies()["cosine"], model, loader)
    assert cosine_lr == pytest.approx(reference.suggestions["consensus"], rel=1e-12)
