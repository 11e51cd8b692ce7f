"""Strategies: templates are filled with numbers and parsed (never evaluated), names validated,
combinations refused, families."""

import re
from dataclasses import replace

import pytest

from lrkit.experiments.strategies import (
    DEFAULT_STRATEGIES,
    FAMILIES,
    LR_FREE_STRATEGIES,
    TRANSFORMER_STRATEGIES,
    TRANSFORMER_WEIGHT_DECAY,
    WARMUP,
    Strategy,
    default_strategies,
    known_strategies,
    select_strategies,
    strategies_for,
)
from lrkit.schedules import cosine, in_epochs, inverse_sqrt, multistep, one_cycle, one_cycle_momentum


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
    ({"finder_check": "curvature"}, "finder_check"),
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
                              "'adagrad', 'adadelta', 'schedule-free-adamw', 'schedule-free-sgd', 'prodigy', "
                              "'dadapt-adam', 'dadapt-sgd', got 'lbfgs'")
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
    ({"lr": 0.1, "finder_method": "minimum"}, "finder_method must be left at None unless lr='finder'"),
    ({"lr": "default", "finder_check": "none"}, "finder_check must be left at 'hold' unless lr='finder'"),
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
    assert Trial("digits-mlp", plain, 0, 2, 32).key == Trial("digits-mlp", flagged, 0, 2, 32).key
    other = Strategy("c", "constant", lr=0.2)
    assert Trial("digits-mlp", plain, 0, 2, 32).key != Trial("digits-mlp", other, 0, 2, 32).key


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


def _finder_rule(strategy, total_steps: int = 1000, steps_per_epoch: int = 100) -> str:
    from lrkit.experiments.training import _shape
    from lrkit.schedules import schedule_kind
    from lrkit.suggest import SCHEDULE_RULES

    return SCHEDULE_RULES[schedule_kind(_shape(strategy, total_steps, steps_per_epoch), total_steps).kind]


def test_constant_lr_strategies_ask_for_the_constant_rule_decaying_ones_for_the_decaying_one(monkeypatch):
    from lrkit import suggest

    monkeypatch.setitem(suggest.SCHEDULE_RULES, "constant", "minimum")  # kinds reading different rules
    strategies = default_strategies()
    for name in ("constant-too-small", "constant-too-large", "constant-finder", "plateau", "lipschitz"):
        assert strategies[name].finder_method is None and _finder_rule(strategies[name]) == "minimum"
    for name in ("step", "multistep", "exponential", "cosine", "warmup-cosine", "sgdr", "clr-triangular2",
                 "one-cycle"):
        assert _finder_rule(strategies[name]) == "consensus"


def test_the_runner_reads_the_finder_curve_with_the_rule_for_the_strategys_schedule():
    import torch

    from lrkit.experiments.training import FINDER_ITERATIONS, finder_lr, strategy_optimizer
    from lrkit.tasks import get_task
    from lrkit.torch import find_lr

    task = get_task("digits-mlp")
    torch.manual_seed(0)
    model = task.build_model()
    loader, _ = task.loaders(0)
    strategy = default_strategies()["constant-finder"]
    optimizer = strategy_optimizer(strategy, model, lr=1e-7, total_steps=FINDER_ITERATIONS)
    total = 10 * len(loader)
    for kind, name in (("constant", "constant-finder"), ("decaying", "cosine")):
        reference = find_lr(model, optimizer, task.criterion(), loader, num_iter=FINDER_ITERATIONS, schedule=kind,
                            progress=False)
        assert finder_lr(task, default_strategies()[name], model, loader, total) == reference.suggestion
    unchecked = replace(strategy, finder_method="consensus", finder_check="none")
    reference = find_lr(model, optimizer, task.criterion(), loader, num_iter=FINDER_ITERATIONS, check="none",
                        progress=False)
    assert reference.suggestions["minimum"] != reference.suggestions["consensus"]
    assert finder_lr(task, unchecked, model, loader, total) == reference.suggestions["consensus"]


# -- LR-free and schedule-free optimizers ---------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    # a schedule-free optimizer averages instead of scheduling, and warms up by itself
    ({"schedule": "cosine(lr={lr}, decay_steps={total_steps})"},
     "strategy 'bad': schedule must be None with optimizer 'schedule-free-sgd' (its averaging replaces the schedule"),
    ({"plateau": {"factor": 0.1}}, "plateau must be None with optimizer 'schedule-free-sgd'"),
    ({"momentum": "one_cycle_momentum(total_steps={total_steps})"},
     "momentum must be None with optimizer 'schedule-free-sgd' (its train()/eval() switch"),
    ({"lipschitz": {}}, "lipschitz must be None with optimizer 'schedule-free-sgd'"),
    ({"lr": "finder"}, "lr must be 'default' or a number with optimizer 'schedule-free-sgd'"),
    ({"optimizer_kwargs": {"warmup_steps": 10}}, "optimizer_kwargs must be free of 'warmup_steps'"),
    ({"optimizer_warmup": 0.0}, "optimizer_warmup must be in (0.0, 1.0)"),
])
def test_a_schedule_free_strategy_refuses_what_its_optimizer_replaces(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Strategy("bad", "bad", **{"optimizer": "schedule-free-sgd", "lr": "default", **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "prodigy"}, "strategy 'bad': lr must be 'default' or a number with optimizer 'prodigy' "
                               "(lr multiplies the step size it estimates"),
    ({"optimizer": "dadapt-sgd", "lr": "default", "lipschitz": {}},
     "lipschitz must be None with optimizer 'dadapt-sgd'"),
    ({"optimizer": "dadapt-adam", "lr": "default", "optimizer_warmup": 0.05},
     "optimizer_warmup must be None with optimizer 'dadapt-adam', which has no warm-up of its own"),
    ({"optimizer": "adamw", "optimizer_warmup": 0.05}, "optimizer_warmup must be None with optimizer 'adamw'"),
])
def test_lr_free_and_scheduled_strategies_refuse_what_they_cannot_use(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Strategy("bad", "bad", **kwargs)


def test_lr_free_optimizers_take_a_schedule_on_their_multiplier():
    Strategy("ok", "ok", optimizer="prodigy", lr="default", schedule="cosine(lr={lr}, decay_steps={total_steps})")
    Strategy("ok", "ok", optimizer="dadapt-sgd", lr=0.5, plateau={"factor": 0.5})
    Strategy("ok", "ok", optimizer="schedule-free-adamw", lr=0.01, optimizer_warmup=0.1)


def test_optimizer_warmup_becomes_the_optimizers_warmup_steps_and_keeps_old_run_keys():
    strategy = known_strategies()["schedule-free-adamw"]
    assert strategy.optimizer_warmup == WARMUP
    assert strategy.optimizer_settings(1000) == {"warmup_steps": 50}
    assert strategy.identity()["optimizer_warmup"] == WARMUP
    assert "optimizer_warmup" not in default_strategies()["cosine"].identity()  # keys stored before it existed


# -- families ---------------------------------------------------------------------------------------
def test_families_and_names():
    assert strategies_for("sgd") is DEFAULT_STRATEGIES and strategies_for("transformer") is TRANSFORMER_STRATEGIES
    assert [s.name for s in TRANSFORMER_STRATEGIES] == [
        "adamw-constant", "adamw-warmup-cosine", "adamw-cosine", "adamw-wsd", "adamw-inverse-sqrt", "adamw-one-cycle",
        "schedule-free-adamw", "prodigy", "dadapt-adam"]
    for members in FAMILIES.values():
        assert len([s for s in members if s.baseline]) == 1
    every = [s for group in (*FAMILIES.values(), LR_FREE_STRATEGIES) for s in group]
    for strategy in every:  # a name means one strategy wherever it appears
        assert known_strategies()[strategy.name] is strategy
    with pytest.raises(ValueError, match="strategies_for: family must be one of 'sgd', 'transformer', got 'rnn'"):
        strategies_for("rnn")


def test_the_transformer_family_is_adamw_from_the_finder_with_the_sgd_rules(monkeypatch):
    from lrkit import suggest

    monkeypatch.setitem(suggest.SCHEDULE_RULES, "constant", "minimum")  # kinds reading different rules
    for strategy in TRANSFORMER_STRATEGIES[:6]:
        assert strategy.optimizer == "adamw" and strategy.lr == "finder"
        assert strategy.optimizer_kwargs == {"weight_decay": TRANSFORMER_WEIGHT_DECAY}
        assert strategy.finder_method is None
        # warmup-stable-decay holds its peak for 75 % of the run: read like a constant LR
        held = strategy.schedule is None or strategy.name == "adamw-wsd"
        assert _finder_rule(strategy) == ("minimum" if held else "consensus")


def test_select_strategies_picks_the_familys_by_default_and_any_by_name():
    assert select_strategies(None) == list(DEFAULT_STRATEGIES)
    assert select_strategies(None, family="transformer") == list(TRANSFORMER_STRATEGIES)
    chosen = select_strategies("prodigy,cosine,adamw-wsd,schedule-free-sgd", family="transformer")
    assert [s.name for s in chosen] == ["prodigy", "cosine", "adamw-wsd", "schedule-free-sgd"]
    [custom] = select_strategies("adamw-constant", ["c=cosine(lr={lr}, decay_steps={total_steps})"],
                                 family="transformer")[1:]
    assert custom.optimizer == "adamw" and custom.optimizer_kwargs == {"weight_decay": TRANSFORMER_WEIGHT_DECAY}
    [sgd_custom] = select_strategies("cosine", ["c=cosine(lr={lr}, decay_steps={total_steps})"])[1:]
    assert sgd_custom.identity() == Strategy("c", "custom: cosine(lr={lr}, decay_steps={total_steps})",
                                             schedule="cosine(lr={lr}, decay_steps={total_steps})").identity()
    with pytest.raises(ValueError, match="family must be one of"):
        select_strategies("cosine", family="rnn")


VALUES = {"lr": 1.0, "total_steps": 2000, "steps_per_epoch": 100, "epochs": 20}


def transformer_schedule(name):
    return Strategy.resolve(known_strategies()[name].schedule, **VALUES)


def test_warmup_strategies_reach_the_peak_at_the_warmup_step_and_decay_as_described():
    warm = WARMUP * VALUES["total_steps"]  # 100 steps
    sched = transformer_schedule("adamw-warmup-cosine")
    assert sched(0) == 0.0 and sched(warm / 2) == pytest.approx(0.5) and sched(warm) == pytest.approx(1.0)
    assert sched(2000) == pytest.approx(0.1)  # cosine to 10 % of the peak at the end of the run
    no_warmup = transformer_schedule("adamw-cosine")
    assert no_warmup(0) == 1.0 and no_warmup(2000) == pytest.approx(0.1)
    wsd = transformer_schedule("adamw-wsd")
    assert wsd(warm) == pytest.approx(1.0) and wsd(1599) == pytest.approx(1.0) and wsd(1600) == pytest.approx(1.0)
    assert 0.0 < wsd(1800) < 1.0 and wsd(2000) == pytest.approx(0.0)
    rsqrt = transformer_schedule("adamw-inverse-sqrt")
    assert rsqrt(warm / 2) == pytest.approx(0.5) and rsqrt(warm) == pytest.approx(1.0)
    for t in (101, 400, 1999):  # lr * sqrt(w / t): lrkit's inverse_sqrt (steps counted from 1) one step later
        assert rsqrt(t) == pytest.approx((warm / t) ** 0.5)
        assert rsqrt(t) == pytest.approx(inverse_sqrt(lr=1.0, warmup_steps=warm)(t - 1))
    cycle = known_strategies()["adamw-one-cycle"]
    assert Strategy.resolve(cycle.schedule, **VALUES) == one_cycle(max_lr=1.0, total_steps=2000)
    assert Strategy.resolve(cycle.momentum, **VALUES) == one_cycle_momentum(total_steps=2000)


def transformer_family_task() -> str:
    """digits-mlp registered again as a task of the transformer family."""
    import dataclasses

    from lrkit.tasks import available_tasks, get_task, register_task

    name = "digits-transformer-family-test"
    if name not in available_tasks():
        register_task(dataclasses.replace(get_task("digits-mlp"), name=name, family="transformer"))
    return name


def test_compare_lists_strategies_by_family_and_runs_the_task_familys(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from lrkit.cli import app
    from lrkit.cli import compare as compare_command
    from lrkit.experiments import runner

    task = transformer_family_task()
    listing = CliRunner().invoke(app, ["compare", "--list"])
    assert listing.exit_code == 0, listing.output
    # rich wraps titles and cells at the terminal's width, anywhere in a long line: compare without spaces
    flat = re.sub(r"[\s│┃]", "", listing.output)
    # each family's title lists its tasks (other tests may register more, so no exact list)
    members = dict(re.findall(r"family(\w+),thedefaultfor([^(]*)\(--strategies", flat))
    sgd, transformer = members["sgd"].split(","), members["transformer"].split(",")
    assert {"diabetes-mlp", "mnist1d-cnn", "fashion-cnn"} <= set(sgd) and "charlm-transformer" not in sgd
    assert {"charlm-transformer", task} <= set(transformer) and "mnist1d-cnn" not in transformer
    assert "LR-freeoptimizers:anytask,byname" in flat
    assert all(name in flat for name in known_strategies())
    planned: list[str] = []
    monkeypatch.setattr(runner, "plan", lambda task, chosen, *args: planned.extend(s.name for s in chosen) or [])
    monkeypatch.setattr(runner, "run_sweep", lambda trials, db, **kwargs: runner.SweepReport())
    monkeypatch.setattr(compare_command, "_print_summary", lambda *args: None)
    result = CliRunner().invoke(app, ["compare", "--task", task, "--db", str(tmp_path / "r.sqlite"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert planned == [s.name for s in TRANSFORMER_STRATEGIES]


def test_the_case_study_runs_the_task_familys_strategies():
    from lrkit.casestudy import FULL, QUICK, CaseStudy

    assert FULL.chosen_strategies() is DEFAULT_STRATEGIES and QUICK.chosen_strategies() is DEFAULT_STRATEGIES
    assert CaseStudy(task=transformer_family_task()).chosen_strategies() is TRANSFORMER_STRATEGIES
    assert CaseStudy(strategies=LR_FREE_STRATEGIES).chosen_strategies() is LR_FREE_STRATEGIES


# -- tuned strategies -----------------------------------------------------------------------------
def test_a_tuned_strategy_trains_at_tune_lrs_choice_from_an_untouched_start():
    from lrkit.experiments.training import Trial, train_trial
    from lrkit.experiments.tune_on_task import tune_lr_on_task

    tuned = default_strategies()["tuned-cosine"]
    run = train_trial(Trial("digits-mlp", tuned, 0, 10, 64))
    reference = tune_lr_on_task("digits-mlp", schedule=tuned.schedule, budget=1.0, epochs=10, seed=0, batch_size=64,
                                progress=False)
    assert run.base_lr == reference.lr and reference.cost <= 1.0
    fixed = replace(tuned, lr=reference.lr, tune_budget=None)
    same = train_trial(Trial("digits-mlp", fixed, 0, 10, 64))  # tuning left the model, batches and RNGs as found
    assert same.step_loss == run.step_loss and same.epoch_metric == run.epoch_metric


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": "tuned"}, "tune_budget must be a number of runs with lr='tuned' and None otherwise"),
    ({"tune_budget": 1.0}, "tune_budget must be a number of runs with lr='tuned' and None otherwise"),
    ({"lr": "tuned", "tune_budget": 0.0}, "tune_budget"),
    ({"lr": "tuned", "tune_budget": 1.0, "plateau": {"patience": 1}}, "plateau must be None with lr='tuned'"),
    ({"lr": "tuned", "tune_budget": 1.0, "optimizer": "prodigy"}, "lr must be 'default' or a number with optimizer"),
])
def test_tuned_strategies_refuse_what_tune_lr_would_not_honour(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Strategy("bad", "bad", **kwargs)


def test_the_tune_budget_is_in_a_tuned_strategys_identity_only():
    tuned = default_strategies()["tuned-cosine"]
    assert tuned.identity()["tune_budget"] == 1.0
    assert "tune_budget" not in default_strategies()["cosine"].identity()
