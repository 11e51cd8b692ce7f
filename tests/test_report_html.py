"""The HTML report: one self-contained page (no URL), escaped text, table, figures; the plots
and the `lrkit report` command."""

from __future__ import annotations

import base64
import io
import re
import sqlite3
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.image import imread
from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.report import load_runs, summarize, write_report
from lrkit.report.plots import (
    plot_loss_curves,
    plot_lr_curves,
    plot_metric_overview,
    plot_metric_panels,
    strategy_colors,
)
from lrkit.report.summary import format_metric
from lrkit.schedules import constant
from report_runs import ENV, classification_runs, make_run, regression_runs, write_store

DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


class _Page(HTMLParser):
    """Collects img sources, ranking-table rows (cell texts) and every href/src attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.rows: list[list[str]] = []
        self.tags: list[str] = []
        self._in_body = self._in_cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.links += [value for key, value in attrs.items() if key in ("href", "src")]
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td":
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.rows[-1][-1] += data


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("html") / "runs.sqlite", classification_runs() + regression_runs())


@pytest.fixture(scope="module")
def page(store, tmp_path_factory):
    path = write_report(store, tmp_path_factory.mktemp("out") / "sub" / "report.html", task="digits-mlp")
    text = path.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    return text, parser


def test_page_is_self_contained_with_no_url_at_all(page):
    text, parsed = page
    assert all(link.startswith("data:image/png;base64,") for link in parsed.links)
    without_images = DATA_URI.sub("", text)
    for needle in ("http:", "https:", "//", "url(", "@import"):
        assert needle not in without_images
    assert {"script", "link", "iframe"}.isdisjoint(parsed.tags)


def test_every_figure_is_a_decodable_png(page):
    _, parsed = page
    assert len(parsed.images) == 4
    for src in parsed.images:
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        pixels = imread(io.BytesIO(png), format="png")
        assert pixels.shape[1] == 1210 and pixels.shape[0] > 300  # 11 in x 110 dpi
        assert pixels[..., :3].std() > 0.05  # not a blank canvas


def test_ranking_table_lists_every_strategy_in_rank_order_with_numbers(page, store):
    _, parsed = page
    summary = summarize(load_runs(store, task="digits-mlp"))
    assert [row[1].split("baseline")[0].split("diverged")[0] for row in parsed.rows] == [
        s.strategy for s in summary.ranking]
    for row, item in zip(parsed.rows, summary.ranking):
        assert row[2] == format_metric(item.final_mean, item.final_std, percent=True, decimals=summary.decimals)
        assert re.fullmatch(r"\d+\.\d\d % ± \d\.\d\d", row[2])  # one precision for the whole column
        assert row[3] == str(item.best_epoch)
        assert row[7] == f"{item.n_complete}/{item.n_runs}"
    assert parsed.rows[-1][1] == "constant-largediverged 1/3"
    assert parsed.rows[3][1] == "constantbaseline"
    assert parsed.rows[-1][4] == "not reached (0/3)"


def test_header_verdict_and_environment_are_on_the_page(page, store):
    text, _ = page
    summary = summarize(load_runs(store, task="digits-mlp"))
    assert "<h1>digits-mlp</h1>" in text
    assert "<b>8</b> epochs" in text and "<b>3</b> seeds (0, 1, 2)" in text and "higher is better" in text
    assert text.index('id="verdict"') < text.index('id="ranking"')
    for sentence in summary.verdict:
        assert sentence.replace("'", "&#x27;") in text
    for key, value in ENV.items():
        assert f"<dt>{key}</dt><dd>{value}</dd>" in text


def test_all_text_from_the_store_is_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    runs = [make_run("a&b <marquee>", name, seed, constant(0.1), 0.9 + 0.01 * i, 1.0)
            for i, name in enumerate([evil, "plain"]) for seed in range(2)]
    for run in runs:
        run.environment = {"note": "<b>bold</b>"}
    text = write_report(write_store(tmp_path / "r.sqlite", runs), tmp_path / "r.html").read_text()
    assert "<script>" not in text and "<b>bold</b>" not in text and "<marquee>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "<h1>a&amp;b &lt;marquee&gt;</h1>" in text


def test_lower_is_better_page_says_so_and_uses_metric_units(store, tmp_path):
    text = write_report(store, tmp_path / "reg.html", task="diabetes-mse").read_text()
    assert "lower is better" in text and "final mse (mean ± std)" in text and " % ±" not in text


# -- plots ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drawn(store):
    runs = load_runs(store, task="digits-mlp")
    summary = summarize(runs)
    colors = strategy_colors([s.strategy for s in summary.ranking])
    return runs, summary, colors


def test_lr_panels_are_log_scale_labelled_and_coloured_per_strategy(drawn):
    runs, summary, colors = drawn
    figure = plot_lr_curves(runs, summary, colors)
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title(loc="left").split("  (")[0] for ax in axes] == [s.strategy for s in summary.ranking]
    assert all(ax.get_yscale() == "log" for ax in axes)
    assert axes[0].get_ylabel() == "learning rate" and axes[-1].get_xlabel() == "step"
    for ax, item in zip(axes, summary.ranking):
        assert len(ax.lines) >= 3 and to_rgba(ax.lines[0].get_color()) == colors[item.strategy]
    one_cycle = next(r for r in runs if r.row.strategy == "one-cycle")
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), one_cycle.steps["lr"])


def test_loss_and_metric_figures_keep_colours_and_legends_off_the_curves(drawn):
    runs, summary, colors = drawn
    loss = plot_loss_curves(runs, summary, colors)
    ax = loss.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step (optimizer update)"
    assert ax.get_legend() is None and len(loss.legends) == 1  # figure legend, outside the axes
    labels = {t.get_text(): h for t, h in zip(loss.legends[0].texts, loss.legends[0].legend_handles)}
    assert to_rgba(labels["one-cycle"].get_color()) == colors["one-cycle"]
    assert "constant-large (1/3 diverged)" in labels
    overview = plot_metric_overview(runs, summary, colors, top=2)
    names = [t.get_text() for t in overview.legends[0].texts]
    assert names == ["one-cycle", "cosine", "constant (baseline)", "target"]
    assert overview.axes[0].get_ylabel() == "validation accuracy"
    assert all(float(tick).is_integer() for tick in overview.axes[0].get_xticks())  # whole epochs
    panels = plot_metric_panels(runs, summary, colors)
    first = panels.axes[0]
    band = first.collections[0].get_paths()[0].vertices[:, 1]
    finals = [r.epochs["metric"][-1] for r in runs if r.row.strategy == "one-cycle"]
    assert band.max() == pytest.approx(max(finals)) and band.min() <= min(finals)
    with pytest.raises(ValueError, match="top"):
        plot_metric_overview(runs, summary, colors, top=0)


def test_strategy_colors_are_distinct_for_twenty_strategies():
    colors = strategy_colors([f"s{i}" for i in range(20)])
    assert len(set(colors.values())) == 20


# -- CLI -----------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_writes_the_report_and_prints_the_ranking(store, tmp_path):
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(store), "-o", str(out), "--task", "digits-mlp"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "report written to" in result.output and str(out.name) in result.output
    assert result.output.index("one-cycle") < result.output.index("constant-large")


def test_cli_target_option_reaches_the_page(store, tmp_path):
    out = tmp_path / "t.html"
    result = runner.invoke(app, ["report", str(store), "-o", str(out), "--task", "diabetes-mse", "--target", "5000"])
    assert result.exit_code == 0, result.output
    assert "target 5,000 (given)" in out.read_text()


@pytest.mark.parametrize("case, message", [("missing", "no such results store"),
                                           ("foreign", "not an lrkit results store"),
                                           ("several", "several tasks")])
def test_cli_errors_are_clear(store, tmp_path, case, message):
    db = {"missing": tmp_path / "none.sqlite", "foreign": tmp_path / "f.sqlite", "several": store}[case]
    if case == "foreign":
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE t (x)")
    result = runner.invoke(app, ["report", str(db), "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "x.html").exists()
    assert case != "missing" or not db.exists()
