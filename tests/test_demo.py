"""`lrkit demo --quick` end to end: every default strategy trained, stored and reported."""

import itertools

from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.experiments.store import ResultsStore
from lrkit.experiments.strategies import DEFAULT_STRATEGIES


def test_quick_demo_trains_every_strategy_and_writes_the_report(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--quick", "-o", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    with ResultsStore(tmp_path / "runs.sqlite") as store:
        runs = store.runs()
    names = {s.name for s in DEFAULT_STRATEGIES}
    assert {run.strategy for run in runs} == names
    assert all(run.task == "mnist1d-cnn" and run.epochs == 4 for run in runs)
    finder_runs = [run for run in runs if run.config["lr"] == "finder" and run.strategy != "lipschitz"]
    assert finder_runs and all(run.base_lr and run.base_lr > 0 for run in finder_runs)
    page = (tmp_path / "report.html").read_text()
    for name in names:
        assert name in page
    assert (tmp_path / "schedules.png").read_bytes()[:4] == b"\x89PNG"
    lines = result.output.splitlines()
    body = lines[next(i for i, line in enumerate(lines) if "───" in line) + 1:]
    rows = [line.split() for line in itertools.takewhile(str.strip, body)]  # the table ends at a blank line
    ranked = {cells[1]: int(cells[0]) for cells in rows}
    assert set(ranked) == names, "every strategy is ranked, its name whole, in an 80-column terminal"
    assert sorted(ranked.values()) == list(range(1, len(names) + 1))
    printed = "".join(result.output.split())  # rich wraps long lines at the terminal width
    assert "winswithafinalaccuracy" in printed and f"{tmp_path}/report.html".replace(" ", "") in printed
    again = CliRunner().invoke(app, ["demo", "--quick", "-o", str(tmp_path), "--quiet"])
    assert again.exit_code == 0, again.output  # resumes: nothing left to train
    with ResultsStore(tmp_path / "runs.sqlite") as store:
        assert len(store.runs()) == len(runs)


def test_the_demo_on_another_task_runs_its_familys_strategies_at_its_own_length():
    from lrkit.casestudy import FULL, QUICK, case_study_for
    from lrkit.experiments.strategies import TRANSFORMER_STRATEGIES
    from lrkit.tasks import get_task

    assert case_study_for() is FULL and case_study_for("mnist1d-cnn", quick=True) is QUICK
    study = case_study_for("charlm-transformer")
    task = get_task("charlm-transformer")
    assert (study.seeds, study.epochs, study.batch_size) == (3, task.epochs, task.batch_size)
    assert study.chosen_strategies() == TRANSFORMER_STRATEGIES
    assert (case_study_for("fashion-cnn", quick=True).seeds, case_study_for("fashion-cnn", quick=True).epochs) == (1, 1)


def test_the_demo_refuses_an_unknown_task_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--task", "imagenet", "-o", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 2 and "imagenet" in result.output and "mnist1d-cnn" in result.output
    assert not (tmp_path / "out").exists()
