"""`lrkit find`: table, plot and JSON from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.suggest import DEFAULT_METHOD
from lrkit.tasks import available_tasks
from lrkit.torch.optimizers import OPTIMIZERS


def test_find_prints_a_table_writes_a_plot_and_json(tmp_path):
    out = tmp_path / "finder.png"
    result = CliRunner().invoke(app, ["find", "--task", "digits-mlp", "--optimizer", "sgd", "--num-iter", "60",
                                      "--plot", str(out), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["lrs"]) == len(data["losses"]) <= 60
    assert data["method"] == DEFAULT_METHOD and data["suggestion"] == data["check"]["lr"]
    assert data["check"]["candidate"] == data["suggestions"][DEFAULT_METHOD] and data["check"]["updates"] <= 60
    assert out.stat().st_size > 10_000
    table = result.stderr
    assert f"{DEFAULT_METHOD} (suggested)" in table and "cyclical bounds" in table
    assert "suggestion after the check" in table and f"{data['suggestion']:.3g}" in table
    assert data["reason"] in table and data["check"]["note"] in " ".join(table.split())


def test_find_table_on_stdout_and_adam():
    result = CliRunner().invoke(app, ["find", "--task", "digits-mlp", "--optimizer", "adam", "--num-iter", "40",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "LR range test: digits-mlp, adam" in result.stdout and "span of the rules" in result.stdout


def test_find_rejects_unknown_task_and_optimizer():
    result = CliRunner().invoke(app, ["find", "--task", "nope", "--no-progress"])
    flat = " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    tasks = ", ".join(map(repr, available_tasks()))
    assert result.exit_code == 2 and f"name must be one of {tasks}, got 'nope'" in flat
    result = CliRunner().invoke(app, ["find", "--optimizer", "lion", "--no-progress"])
    flat = " ".join(result.output.replace("│", " ").split())
    names = ", ".join(map(repr, OPTIMIZERS))  # 'sgd', 'adam', ...: the one optimizer table
    assert result.exit_code == 2 and f"optimizer must be one of {names}, got 'lion'" in flat


def test_find_for_a_schedule_and_without_the_check(monkeypatch):
    from lrkit import suggest

    monkeypatch.setitem(suggest.SCHEDULE_RULES, "constant", "minimum")  # kinds reading different rules
    result = CliRunner().invoke(app, ["find", "--num-iter", "40", "--for", "constant", "--check", "none", "--json",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "minimum" and data["reason"] == "rule 'minimum' for a constant LR"
    assert data["check"] is None and data["suggestion"] == data["suggestions"]["minimum"]
    assert "suggestion after the check" not in result.stderr
    spec = CliRunner().invoke(app, ["find", "--num-iter", "40", "--for", "cosine(lr=0.1, decay_steps=1000)", "--json",
                                    "--no-progress"])
    assert spec.exit_code == 0, spec.output
    assert json.loads(spec.stdout)["method"] == "consensus"
    bad = CliRunner().invoke(app, ["find", "--num-iter", "40", "--for", "cyclic", "--no-progress"])
    flat = " ".join(bad.output.replace("│", " ").split())
    assert bad.exit_code == 2 and "schedule must be one of 'constant', 'decaying', a Schedule" in flat
