"""One self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no external URL.

Every piece of text that comes from the store (task, strategy names, configs, environment)
goes through `html.escape`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import lrkit
from lrkit.report import plots
from lrkit.report.summary import RunSeries, StrategySummary, Summary, format_metric, format_steps

_CSS = """
:root { --ink:#1d2330; --muted:#5b6472; --line:#e3e6ec; --accent:#1f77b4; --bad:#b22222; --bg:#fafbfc; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1160px; margin:0 auto; padding:28px 30px 60px; background:#fff; min-height:100vh; }
header .kicker { margin:0; color:var(--muted); text-transform:uppercase; letter-spacing:.08em; font-size:12px; }
h1 { margin:4px 0 6px; font-size:30px; }
h2 { margin:36px 0 10px; font-size:20px; border-bottom:1px solid var(--line); padding-bottom:4px; }
.meta { color:var(--muted); margin:0; }
.meta b { color:var(--ink); font-weight:600; }
.winner { margin-top:22px; padding:18px 22px; border-left:6px solid var(--accent); background:#f3f7fb;
          border-radius:4px; }
.winner .label { font-size:12px; text-transform:uppercase; letter-spacing:.08em; color:var(--muted); }
.winner .name { font-size:24px; font-weight:700; margin:2px 0; }
.verdict { margin:12px 0 0; padding-left:20px; }
.verdict li { margin:4px 0; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { padding:7px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); font-weight:600;
     border-bottom:2px solid var(--line); }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tbody tr:nth-child(even) { background:#f8f9fb; }
tbody tr.first { background:#eef5fb; font-weight:600; }
.swatch { display:inline-block; width:12px; height:12px; border-radius:2px; margin-right:8px;
          vertical-align:-1px; }
.badge { display:inline-block; margin-left:6px; padding:0 6px; border-radius:9px; font-size:11px;
         font-weight:600; background:#fde8e8; color:var(--bad); }
.badge.base { background:#eceff3; color:var(--muted); }
.note { color:var(--muted); font-size:13px; margin:8px 0 0; }
figure { margin:16px 0 8px; }
figure img { width:100%; height:auto; display:block; border:1px solid var(--line); border-radius:4px; }
figcaption { color:var(--muted); font-size:13px; margin-top:6px; }
details { margin:6px 0; }
summary { cursor:pointer; }
pre { background:#f4f5f7; padding:8px 12px; border-radius:4px; overflow-x:auto; font-size:12.5px; margin:4px 0 10px; }
dl.env { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; font-size:13px; }
dl.env dt { color:var(--muted); }
dl.env dd { margin:0; font-family:ui-monospace, Menlo, Consolas, monospace; word-break:break-all; }
footer { margin-top:40px; color:var(--muted); font-size:12px; }
"""


def _img(figure_png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(figure_png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _lr(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "—"


def _wall(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _strategy_cell(item: StrategySummary, color: str, baseline: str | None) -> str:
    badges = ""
    if item.strategy == baseline:
        badges += '<span class="badge base">baseline</span>'
    if item.n_diverged:
        badges += f'<span class="badge">diverged {item.n_diverged}/{item.n_runs}</span>'
    return f'<span class="swatch" style="background:{color}"></span>{escape(item.strategy)}{badges}'


def _steps_cell(item: StrategySummary, target: float | None) -> str:
    if target is None:
        return "—"
    return f"{format_steps(item.steps_to_target)} <small>({item.n_reached}/{item.n_runs})</small>"


def _final(item: StrategySummary, summary: Summary) -> str:
    return format_metric(item.final_mean, item.final_std, percent=summary.is_percent, decimals=summary.decimals)


def _ranking_table(summary: Summary, colors: dict[str, str]) -> str:
    rows = []
    for rank, item in enumerate(summary.ranking, 1):
        classes = ["first"] if rank == 1 else []
        if item.n_diverged:
            classes.append("diverged")
        rows.append(
            f'<tr class="{" ".join(classes)}"><td class="num">{rank}</td>'
            f"<td>{_strategy_cell(item, colors[item.strategy], summary.baseline)}</td>"
            f'<td class="num">{escape(_final(item, summary))}</td>'
            f'<td class="num">{item.best_epoch or "—"}</td>'
            f'<td class="num">{_steps_cell(item, summary.target)}</td>'
            f'<td class="num">{_wall(item.wall_time)}</td>'
            f'<td class="num">{_lr(item.peak_lr)}</td>'
            f'<td class="num">{item.n_complete}/{item.n_runs}</td></tr>')
    metric = escape(summary.metric_name)
    head = ('<thead><tr><th class="num">#</th><th>strategy</th>'
            f'<th class="num">final {metric} (mean ± std)</th><th class="num">best epoch</th>'
            '<th class="num">steps to target</th><th class="num">wall time / run</th>'
            '<th class="num">peak LR</th><th class="num">seeds done</th></tr></thead>')
    return f'<table id="ranking">{head}<tbody>{"".join(rows)}</tbody></table>'


def _target_text(summary: Summary) -> str:
    if summary.target is None:
        return "no target (no constant-LR baseline finished; pass --target)"
    value = format_metric(summary.target, percent=summary.is_percent, decimals=summary.decimals)
    return f"{value} ({summary.target_source})"


def _environment(env: dict) -> str:
    if not env:
        return '<p class="note">The runs recorded no environment.</p>'
    text = {key: value if isinstance(value, str) else json.dumps(value) for key, value in env.items()}
    items = "".join(f"<dt>{escape(str(key))}</dt><dd>{escape(value)}</dd>" for key, value in sorted(text.items()))
    return f'<dl class="env">{items}</dl>'


def _configs(summary: Summary) -> str:
    parts = [f"<details><summary>{escape(item.strategy)}</summary>"
             f"<pre>{escape(json.dumps(item.config, indent=2, sort_keys=True))}</pre></details>"
             for item in summary.ranking]
    return "".join(parts)


def _hex(rgba: Sequence[float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgba[:3])


def render_html(summary: Summary, runs: Sequence[RunSeries]) -> str:
    """The whole report page as a string; of `runs`, it draws those the summary ranks."""
    runs = summary.ranked_runs(runs)
    colors = plots.strategy_colors([item.strategy for item in summary.ranking])
    css_colors = {name: _hex(rgba) for name, rgba in colors.items()}
    direction = "higher is better" if summary.higher_is_better else "lower is better"
    winner = summary.ranking[0]
    seeds = ", ".join(str(s) for s in summary.seeds)
    figures = [
        ("Validation " + summary.metric_name, [
            _img(plots.figure_png(plots.plot_metric_overview(runs, summary, colors)),
                 f"validation {summary.metric_name} of the leading strategies",
                 "The best-ranked strategies and the baseline side by side; the dotted line is the target."),
            _img(plots.figure_png(plots.plot_metric_panels(runs, summary, colors)),
                 f"validation {summary.metric_name} per strategy",
                 "Every strategy in rank order, on a shared axis. Dashed lines ending in × are diverged seeds."),
        ]),
        ("Training loss", [
            _img(plots.figure_png(plots.plot_loss_curves(runs, summary, colors)), "training loss per step",
                 "Per-step loss, exponentially smoothed (window: 2 % of the run), averaged over completed seeds."),
        ]),
        ("Learning-rate schedules", [
            _img(plots.figure_png(plots.plot_lr_curves(runs, summary, colors)), "learning rate per step",
                 "The learning rate each strategy actually applied at every optimizer update, every seed."),
        ]),
    ]
    sections = "".join(f"<section><h2>{escape(title)}</h2>{''.join(items)}</section>" for title, items in figures)
    verdict = "".join(f"<li>{escape(sentence)}</li>" for sentence in summary.verdict)
    if winner.final_values:
        headline = f'<div class="name">{escape(winner.strategy)}</div>'
    else:
        headline = '<div class="name">no winner: every run diverged</div>'
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lrkit report: {escape(summary.task)}</title>
<style>{_CSS}</style></head>
<body><main>
<header><p class="kicker">lrkit · learning-rate case study</p>
<h1>{escape(summary.task)}</h1>
<p class="meta"><b>{len(summary.ranking)}</b> strategies · <b>{len(summary.seeds)}</b> seeds ({escape(seeds)}) ·
<b>{summary.epochs}</b> epochs · batch size <b>{summary.batch_size}</b> ·
metric <b>{escape(summary.metric_name)}</b> ({direction}) ·
target {escape(_target_text(summary))}</p></header>
<section class="winner" id="verdict"><div class="label">Winner</div>{headline}
<ul class="verdict">{verdict}</ul></section>
<section><h2>Ranking</h2>{_ranking_table(summary, css_colors)}
<p class="note">Mean ± sample standard deviation over completed seeds. Strategies that diverged on any seed
rank below those that never did. <i>Steps to target</i>: median over seeds of the optimizer updates until the
end of the first epoch whose validation {escape(summary.metric_name)} reaches the target (seeds that reached it
in brackets). <i>Best epoch</i>: where the seed-mean validation curve peaks.
<i>Peak LR</i>: the largest learning rate applied (median over seeds).</p></section>
{sections}
<section><h2>Strategy configurations</h2>{_configs(summary)}</section>
<section><h2>Environment</h2>{_environment(summary.environment)}</section>
<footer>Generated by lrkit {escape(lrkit.__version__)} on {generated}.</footer>
</main></body></html>
"""


def save_report(summary: Summary, runs: Sequence[RunSeries], out_path: str | Path) -> Path:
    """Render the page and write it (UTF-8) to `out_path`, creating parent folders."""
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(summary, runs), encoding="utf-8")
    return path
