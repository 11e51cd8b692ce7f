"""Report summary: aggregates, ranking, steps to target, Welch verdict, formatting, loading."""

from __future__ import annotations

import dataclasses
import math
import sqlite3

import numpy as np
import pytest
from scipy import stats

from lrkit.experiments.store import StoreError
from lrkit.report import load_runs, summarize
from lrkit.report.plots import smooth
from lrkit.report.summary import format_metric, format_steps, pick_baseline, welch_t_test
from lrkit.schedules import constant
from report_runs import STEPS_PER_EPOCH, classification_runs, make_run, regression_runs, write_store
from store_v1 import downgrade_to_schema_1


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("report") / "runs.sqlite", classification_runs() + regression_runs())


@pytest.fixture(scope="module")
def digits(store):
    return load_runs(store, task="digits-mlp")


def _finals(runs, strategy):
    return [r.row.final_metric for r in runs if r.row.strategy == strategy and not r.diverged]


def test_format_metric_uses_two_significant_digits_of_the_std():
    assert format_metric(0.97312, 0.00423, percent=True) == "97.31 % ± 0.42"
    assert format_metric(2934.6, 41.2) == "2,935 ± 41"
    assert format_metric(0.012345, 0.00056) == "0.01235 ± 0.00056"
    assert format_metric(0.9, 0.0, percent=True) == "90.0 % ± 0.0"  # mean to 3 significant digits
    assert format_metric(0.5) == "0.500"
    assert format_metric(0.705, percent=True) == "70.5 %"  # one seed: no std
    assert format_metric(math.nan, 0.1) == "—"
    assert format_steps(1240.0) == "1,240" and format_steps(math.inf) == "not reached"
    assert format_metric(0.95, 0.026, percent=True, decimals=2) == "95.00 % ± 2.60"


def test_one_precision_serves_the_whole_table(digits):
    summary = summarize(digits)
    # stds in percent: the most precise one needs two decimals (two significant digits)
    assert summary.decimals == max(2 - 1 - math.floor(math.log10(s.final_std * 100)) for s in summary.ranking)
    assert summary.decimals == 2


def test_welch_t_test_matches_hand_values_and_scipy():
    # means 2 and 5, variances 1 and 1, n = 3: t = -3 / sqrt(2/3), df = 4
    t, p = welch_t_test([1, 2, 3], [4, 5, 6])
    assert t == pytest.approx(-3 / math.sqrt(2 / 3))
    assert p == pytest.approx(2 * stats.t.sf(3 / math.sqrt(2 / 3), 4))
    a, b = [0.91, 0.95, 0.93, 0.90], [0.89, 0.88, 0.93]
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert welch_t_test(a, b) == pytest.approx((reference.statistic, reference.pvalue))
    assert welch_t_test([1, 1], [2, 2]) == (-math.inf, 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        welch_t_test([1.0], [1.0, 2.0])


def test_smooth_is_the_debiased_ema_and_stops_at_the_first_nan():
    # beta = 0.5: s = 0.5, 1.25, 2.125; debiased by 1 - 0.5^(t+1)
    np.testing.assert_allclose(smooth(np.array([1.0, 2.0, 3.0]), 2.0), [1.0, 1.25 / 0.75, 2.125 / 0.875])
    out = smooth(np.array([1.0, math.nan, 3.0]), 2.0)
    assert out[0] == 1.0 and np.isnan(out[1:]).all()
    with pytest.raises(ValueError, match="window"):
        smooth(np.ones(3), 0.5)


def test_aggregates_are_mean_and_sample_std_of_completed_seeds(digits):
    summary = summarize(digits)
    for name in ("one-cycle", "constant", "constant-large"):
        finals = _finals(digits, name)
        item = summary.strategy(name)
        assert item.final_mean == pytest.approx(np.mean(finals))
        assert item.final_std == pytest.approx(np.std(finals, ddof=1))
        assert item.seeds == (0, 1, 2)
    large = summary.strategy("constant-large")
    assert (large.n_diverged, large.n_complete, len(large.final_values)) == (1, 2, 2)
    assert summary.strategy("cosine").wall_time == pytest.approx(
        np.mean([r.row.wall_time for r in digits if r.row.strategy == "cosine"]))
    assert summary.strategy("one-cycle").peak_lr == pytest.approx(0.5)


def test_ranking_honours_higher_is_better_and_puts_diverged_last(digits, store):
    summary = summarize(digits)
    assert [s.strategy for s in summary.ranking] == ["one-cycle", "cosine", "clr-triangular2", "constant",
                                                     "constant-large"]
    assert (summary.metric_name, summary.is_percent, summary.epochs, summary.seeds) == ("accuracy", True, 8, (0, 1, 2))
    regression = summarize(load_runs(store, task="diabetes-mse"))
    assert not regression.higher_is_better and not regression.is_percent
    assert [s.strategy for s in regression.ranking] == ["one-cycle", "cosine", "constant"]
    assert "lower (better)" in " ".join(regression.verdict)


def test_a_strategy_that_diverged_once_ranks_below_a_worse_reliable_one(tmp_path):
    runs = [make_run("t", "steady", seed, constant(0.1), 0.80, 1.0) for seed in range(3)]
    runs += [make_run("t", "wild", seed, constant(1.0), 0.99, 1.0, diverge_at_epoch=3 if seed == 0 else None)
             for seed in range(3)]
    summary = summarize(load_runs(write_store(tmp_path / "r.sqlite", runs)))
    assert summary.strategy("wild").final_mean > summary.strategy("steady").final_mean
    assert [s.strategy for s in summary.ranking] == ["steady", "wild"]
    assert "wild (1/3)" in summary.verdict[-1]


def test_steps_to_target_default_is_the_baseline_median_final(digits):
    summary = summarize(digits)
    assert summary.baseline == "constant"
    assert summary.target == pytest.approx(np.median(_finals(digits, "constant")))
    for item in summary.ranking:
        per_seed = []
        for run in (r for r in digits if r.row.strategy == item.strategy):
            reached = [e for e, m in zip(run.epochs["epoch"], run.epochs["metric"]) if m >= summary.target]
            per_seed.append(reached[0] * STEPS_PER_EPOCH if reached else math.inf)
        assert item.steps_to_target == np.median(per_seed)
        assert item.n_reached == sum(math.isfinite(s) for s in per_seed)
    assert summary.strategy("constant-large").steps_to_target == math.inf
    assert summary.strategy("constant").total_steps == 8 * STEPS_PER_EPOCH


def test_a_user_target_and_baseline_replace_the_defaults(digits):
    summary = summarize(digits, target=0.5, baseline="cosine")
    assert (summary.target, summary.target_source, summary.baseline) == (0.5, "given", "cosine")
    first = [np.flatnonzero(r.epochs["metric"] >= 0.5)[0] + 1 for r in digits if r.row.strategy == "one-cycle"]
    assert summary.strategy("one-cycle").steps_to_target == np.median(first) * STEPS_PER_EPOCH
    assert "constant-LR baseline cosine" in " ".join(summary.verdict)


def _store_of(path, names, *, flagged=(), schema_1=False):
    """A store with one run per strategy name; `flagged` strategies set `baseline` in their config."""
    runs = [make_run("t", name, 0, constant(0.1), 0.9, 1.0, baseline=name in flagged) for name in names]
    write_store(path, runs)
    return downgrade_to_schema_1(path) if schema_1 else path


def test_pick_baseline_takes_the_strategy_flagged_as_baseline(tmp_path):
    def pick(name, names, flagged):
        return pick_baseline(load_runs(_store_of(tmp_path / f"{name}.sqlite", names, flagged=flagged)))

    assert pick("a", ["cosine", "constant-finder", "constant-too-large"], {"constant-finder"}) == "constant-finder"
    assert pick("b", ["cosine", "my-constant"], {"my-constant"}) == "my-constant"  # any name
    assert pick("c", ["constant-finder", "constant", "cosine"], set()) is None  # names alone mean nothing
    assert pick("d", ["x", "y", "z"], {"z", "y"}) == "y"  # several: the first stored


def test_a_migrated_store_keeps_the_baseline_schema_1_picked_by_name(tmp_path):
    def pick(name, names):
        return pick_baseline(load_runs(_store_of(tmp_path / f"{name}.sqlite", names, schema_1=True)))

    assert pick("a", ["cosine", "constant-finder", "constant-too-large"]) == "constant-finder"
    assert pick("b", ["constant-finder", "constant", "cosine"]) == "constant"
    assert pick("c", ["cosine", "constant-too-small"]) is None


@pytest.mark.parametrize("target", [None, 0.5])
def test_a_migrated_store_reports_what_it_reported_before(tmp_path, target):
    runs = classification_runs()  # constant-large seed 1 diverges: it loses its steps_per_epoch
    today = write_store(tmp_path / "today.sqlite", runs)
    migrated = downgrade_to_schema_1(write_store(tmp_path / "old.sqlite", runs))
    assert repr(summarize(load_runs(migrated), target=target)) == repr(summarize(load_runs(today), target=target))
    large = summarize(load_runs(migrated), target=0.5).strategy("constant-large")
    assert large.n_reached == 3 and math.isfinite(large.steps_to_target)


def test_steps_to_target_reads_the_recorded_steps_per_epoch(tmp_path):
    run = make_run("t", "wild", 0, constant(1.0), 0.9, 1.0, diverge_at_epoch=3)  # 2 epochs, 69 steps
    run.epoch_metric[0] = 0.9  # reaches the target at the end of epoch 1
    assert run.steps_per_epoch == STEPS_PER_EPOCH
    today = summarize(load_runs(write_store(tmp_path / "today.sqlite", [run])), target=0.5)
    assert today.strategy("wild").steps_to_target == STEPS_PER_EPOCH
    # migrated from schema 1, a diverged run alone in its batch size falls back to that schema's
    # estimate: recorded steps // recorded epochs
    old = downgrade_to_schema_1(write_store(tmp_path / "old.sqlite", [run]))
    assert summarize(load_runs(old), target=0.5).strategy("wild").steps_to_target == 69 // 2


def test_without_a_baseline_there_is_no_default_target(digits):
    summary = summarize([r for r in digits if "constant" not in r.row.strategy])
    assert summary.target is None and summary.baseline is None
    assert all(math.isnan(item.steps_to_target) for item in summary.ranking)


def test_best_epoch_is_where_the_seed_mean_curve_peaks(tmp_path):
    runs = [make_run("t", "s", seed, constant(0.1), 0.9, 1.0) for seed in range(2)]
    for run in runs:
        run.epoch_metric = [0.5, 0.8, 0.95, 0.9, 0.85, 0.8, 0.8, 0.7]
    assert summarize(load_runs(write_store(tmp_path / "r.sqlite", runs))).ranking[0].best_epoch == 3


def test_verdict_says_when_the_gap_is_within_seed_noise(tmp_path):
    runs = [make_run("t", name, seed, constant(0.1), 0.9, 1.0) for name in ("a", "b") for seed in range(3)]
    for run, final in zip(runs, [0.90, 0.80, 0.95, 0.91, 0.82, 0.86]):
        run.epoch_metric[-1] = final
    verdict = " ".join(summarize(load_runs(write_store(tmp_path / "r.sqlite", runs))).verdict)
    assert "within the seed noise" in verdict and "No run diverged" in verdict
    single = [make_run("t", name, 0, constant(0.1), 0.9 + 0.01 * i, 1.0) for i, name in enumerate("ab")]
    verdict = " ".join(summarize(load_runs(write_store(tmp_path / "s.sqlite", single))).verdict)
    assert "single seed" in verdict


def test_the_winner_beats_the_runner_up_beyond_noise(digits):
    verdict = summarize(digits).verdict
    assert verdict[0].startswith("one-cycle wins with a final accuracy of ")
    assert "runner-up, cosine" in verdict[1] and "larger than the seed noise" in verdict[1]


@pytest.mark.parametrize("kwargs, match", [({"target": math.nan}, "target"), ({"baseline": "nope"}, "baseline")])
def test_summarize_validates_its_arguments(digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        summarize(digits, **kwargs)


def test_summarize_refuses_mixed_tasks_and_empty_input(store):
    with pytest.raises(ValueError, match="one task"):
        summarize(load_runs(store, task="digits-mlp") + load_runs(store, task="diabetes-mse"))
    with pytest.raises(ValueError, match="empty"):
        summarize([])


def test_load_runs_errors_are_clear_and_never_create_a_file(tmp_path, store):
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(FileNotFoundError, match="no such results store"):
        load_runs(missing)
    assert not missing.exists()
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(StoreError, match="not an lrkit results store"):
        load_runs(foreign)
    with pytest.raises(ValueError, match="several tasks"):
        load_runs(store)
    with pytest.raises(ValueError, match="'nope' is not in"):
        load_runs(store, task="nope")
    assert {r.row.strategy for r in load_runs(store, task="diabetes-mse")} == {"constant", "one-cycle", "cosine"}


# -- one setting at a time (issue 10, item 3) ---------------------------------------------------
def _with_epochs(run, epochs, final):
    """`run` as if trained for `epochs` epochs (another setting: another key) ending at `final`."""
    steps = epochs * STEPS_PER_EPOCH
    return dataclasses.replace(run, key=f"{run.key}-{epochs}ep", epochs=epochs, step_lr=run.step_lr[:steps],
                               step_loss=run.step_loss[:steps], epoch_metric=[final] * epochs,
                               epoch_train_loss=run.epoch_train_loss[:epochs],
                               epoch_val_loss=run.epoch_val_loss[:epochs], epoch_time=run.epoch_time[:epochs])


@pytest.fixture(scope="module")
def two_settings_store(tmp_path_factory):
    """The 8-epoch sweep, then a 1-epoch sweep of cosine and constant (seed 0) into the same store."""
    runs = classification_runs()
    short = [_with_epochs(run, 1, 0.5) for run in runs if run.strategy in ("cosine", "constant") and run.seed == 0]
    return write_store(tmp_path_factory.mktemp("settings") / "runs.sqlite", runs + short)


@pytest.fixture(scope="module")
def two_settings(two_settings_store):
    return load_runs(two_settings_store)


def test_runs_of_different_settings_are_never_pooled(two_settings, digits):
    mixed, alone = summarize(two_settings), summarize(digits)
    assert (mixed.epochs, mixed.batch_size, mixed.seeds) == (8, 32, (0, 1, 2))  # the most runs
    assert mixed.strategy("cosine").final_values == alone.strategy("cosine").final_values
    assert mixed.ranking == alone.ranking and mixed.verdict[:-1] == alone.verdict
    assert mixed.verdict[-1] == ("Ranked: the 15 runs of 8 epochs × batch size 32. Runs of different settings are "
                                 "never pooled; this store holds 1 epoch × batch size 32 (2 runs), 8 epochs × batch "
                                 "size 32 (15 runs) (pick one with --epochs and --batch-size).")
    assert len(mixed.ranked_runs(two_settings)) == 15


def test_a_setting_can_be_chosen_and_an_absent_one_is_named(two_settings):
    short = summarize(two_settings, epochs=1)
    assert (short.epochs, short.seeds) == (1, (0,))
    assert {item.strategy: item.final_values for item in short.ranking} == {"cosine": (0.5,), "constant": (0.5,)}
    assert summarize(two_settings, epochs=8, batch_size=32).run_keys == summarize(two_settings).run_keys
    with pytest.raises(ValueError, match=r"has no runs with 5 epochs and batch size 32; the runs have: 1 epoch"):
        summarize(two_settings, epochs=5, batch_size=32)


def test_a_strategy_redefined_between_sweeps_is_ranked_with_its_latest_configuration(tmp_path, digits):
    runs = classification_runs()
    redefined = [dataclasses.replace(_with_epochs(run, 8, 0.99), key=f"{run.key}-v2",
                                     config={**run.config, "schedule": "cosine(lr=0.2, decay_steps=200)"})
                 for run in runs if run.strategy == "cosine" and run.seed < 2]
    summary = summarize(load_runs(write_store(tmp_path / "r.sqlite", runs + redefined)))
    assert summary.strategy("cosine").final_values == (0.99, 0.99)
    assert summary.verdict[-1] == ("Left out, as they ran with an earlier configuration of their strategy: "
                                   "cosine (3 runs).")
    assert summary.strategy("constant").final_values == summarize(digits).strategy("constant").final_values


def test_the_report_page_draws_only_the_ranked_runs(two_settings, monkeypatch):
    from lrkit.report import html

    drawn = []
    monkeypatch.setattr(html.plots, "figure_png", lambda figure: b"png")
    for name in ("plot_metric_overview", "plot_metric_panels", "plot_loss_curves", "plot_lr_curves"):
        monkeypatch.setattr(html.plots, name, lambda runs, summary, colors, **kw: drawn.append(len(runs)))
    page = html.render_html(summarize(two_settings), two_settings)
    assert drawn == [15, 15, 15, 15]
    assert "<b>8</b> epochs · batch size <b>32</b>" in page and "never pooled" in page


def test_lrkit_report_picks_a_setting_and_names_an_absent_one(two_settings_store, tmp_path):
    from typer.testing import CliRunner

    from lrkit.cli import app

    out = tmp_path / "short.html"
    result = CliRunner().invoke(app, ["report", str(two_settings_store), "-o", str(out), "--epochs", "1",
                                      "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # rich wraps at the terminal's width
    assert "1 epochs x 1 seed(s)" in text and "never pooled" in text
    assert "<b>1</b> epochs · batch size <b>32</b>" in out.read_text()
    result = CliRunner().invoke(app, ["report", str(two_settings_store), "-o", str(out), "--epochs", "3"])
    assert result.exit_code == 1
    assert ("error: summarize: task 'digits-mlp' has no runs with 3 epochs; the runs have: 1 epoch"
            in " ".join(result.stdout.split()))
