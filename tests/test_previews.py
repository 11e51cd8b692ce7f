"""Previews: plot_schedule, the gallery and the `lrkit plot` / `lrkit demo` commands."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lrkit import plot_schedule
from lrkit.cli import app
from lrkit.gallery import EXAMPLE_SPECS, render_gallery
from lrkit.schedules import cosine, one_cycle, parse

runner = CliRunner()


def test_plot_schedule_draws_every_step_with_labelled_axes():
    sched = cosine(lr=0.1, decay_steps=50)
    ax = plot_schedule(sched, 60, log=True)
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, np.arange(60))
    np.testing.assert_array_equal(y, sched(np.arange(60)))
    assert ax.get_xlabel() == "step (optimizer update)"
    assert ax.get_ylabel() == "learning rate"
    assert ax.get_yscale() == "log"
    assert "cosine(lr=0.1" in ax.get_title()


def test_plot_schedule_momentum_goes_on_a_twin_axis():
    sched = one_cycle(max_lr=0.1, total_steps=100)
    ax = plot_schedule(sched, 100, momentum=sched.momentum_schedule())
    twin = next(other for other in ax.figure.axes if other is not ax)
    assert twin.get_ylabel() == "momentum"
    assert twin.lines[0].get_data()[1][0] == pytest.approx(0.95)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_plot_schedule_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        plot_schedule(cosine(lr=0.1, decay_steps=10), steps)


def test_cli_plot_writes_png(tmp_path):
    out = tmp_path / "s.png"
    result = runner.invoke(app, ["plot", "sgdr(lr=0.1, first_cycle_steps=100, t_mul=2, m_mul=0.5)",
                                 "--steps", "1500", "-o", str(out), "--log"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_json_prints_the_exact_values():
    spec = "warmup(cosine(lr=0.1, decay_steps=100), steps=10)"
    result = runner.invoke(app, ["plot", spec, "--steps", "120", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["steps"] == 120
    assert payload["lr"] == parse(spec)(np.arange(120.0)).tolist()


def test_cli_plot_bad_spec_is_a_usage_error_pointing_at_the_token():
    result = runner.invoke(app, ["plot", "cosin(lr=0.1)", "--steps", "10"])
    assert result.exit_code == 2
    assert "cosin" in result.output and "did you mean 'cosine'" in result.output


def test_gallery_renders_every_family(tmp_path):
    path = render_gallery(tmp_path / "g.png", steps=50)
    assert path.read_bytes()[:4] == b"\x89PNG"
    for spec in EXAMPLE_SPECS.values():
        parse(spec)  # every example is a valid spec

