"""A gallery of every schedule family, drawn on one page (used by `lrkit demo`)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from lrkit.plotting import plot_schedule
from lrkit.schedules import parse

#: One readable example per family over 1000 steps (specs, so the page shows how to write them).
EXAMPLE_SPECS: dict[str, str] = {
    "constant": "constant(lr=0.05)",
    "step": "step(lr=0.1, step_size=300, gamma=0.3)",
    "multistep": "multistep(lr=0.1, milestones=[500, 750, 900], gamma=0.3)",
    "piecewise": "piecewise(boundaries=[200, 600], values=[0.1, 0.03, 0.01])",
    "exponential": "exponential(lr=0.1, decay_steps=250, decay_rate=0.5, staircase=True)",
    "natural_exp": "natural_exp(lr=0.1, decay_steps=250, decay_rate=0.5)",
    "inverse_time": "inverse_time(lr=0.1, decay_steps=100, decay_rate=0.5)",
    "polynomial (cycle)": "polynomial(lr=0.1, decay_steps=300, end_lr=0.001, power=2.0, cycle=True)",
    "cosine": "cosine(lr=0.1, decay_steps=1000, alpha=0.01)",
    "linear_cosine": "linear_cosine(lr=0.1, decay_steps=1000, num_periods=3)",
    "noisy_linear_cosine": "noisy_linear_cosine(lr=0.1, decay_steps=1000, initial_variance=0.1, num_periods=3)",
    "triangular": "triangular(base_lr=0.01, max_lr=0.1, step_size_up=100)",
    "triangular2": "triangular2(base_lr=0.01, max_lr=0.1, step_size_up=100)",
    "exp_range": "exp_range(base_lr=0.01, max_lr=0.1, step_size_up=100, gamma=0.998)",
    "one_cycle": "one_cycle(max_lr=0.1, total_steps=1000)",
    "sgdr": "sgdr(lr=0.1, first_cycle_steps=100, t_mul=2, m_mul=0.7)",
    "slanted_triangular": "slanted_triangular(max_lr=0.1, total_steps=1000)",
    "inverse_sqrt": "inverse_sqrt(lr=0.1, warmup_steps=100)",
    "cosine_wave (HF num_cycles)": "cosine_wave(lr=0.1, decay_steps=1000, cycles=1.5, alpha=0.05)",
    "timm_cosine (k_decay, cycles)": "timm_cosine(lr=0.1, t_initial=300, lr_min=0.005, cycle_decay=0.6, cycle_limit=3, "
                                     "k_decay=2.0)",
    "timm_tanh": "timm_tanh(lr=0.1, t_initial=1000, lr_min=0.001)",
    "wsd (1-sqrt)": "wsd(lr=0.1, warmup_steps=100, stable_steps=600, decay_steps=300, decay='1-sqrt')",
    "warmup + cosine": "warmup(cosine(lr=0.1, decay_steps=900), steps=100)",
    "join + clip": "clip(join([constant(lr=0.1), exponential(lr=0.1, decay_steps=100, decay_rate=0.5)], "
                   "boundaries=[400]), min_lr=0.01)",
}


def render_gallery(path: Path, steps: int = 1000, columns: int = 3) -> Path:
    """Draw every example schedule in a grid and save it as a PNG at `path`."""
    rows = -(-len(EXAMPLE_SPECS) // columns)
    figure = Figure(figsize=(5 * columns, 2.6 * rows), layout="constrained")
    for index, (title, spec) in enumerate(EXAMPLE_SPECS.items()):
        ax = figure.add_subplot(rows, columns, index + 1)
        plot_schedule(parse(spec), steps, ax=ax)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path
