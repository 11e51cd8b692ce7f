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
])
def test_bad_strategy_fields_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Strategy("bad", "bad", **kwargs)


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
