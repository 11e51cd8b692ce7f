"""The schedule `tune_lr` tunes the LR of, and what a short trial of it is.

A schedule is a spec template (as a strategy's: ``{lr}``, ``{total_steps}``, ``{steps_per_epoch}``,
``{epochs}``; numbers substituted as text, then `lrkit.schedules.parse`, never evaluated), or one
of the names in `NAMED`.

A trial is the first `H` steps of the full run (``H ≤ R``, the run's `R` steps), exactly: the
run's schedule, truncated. Its LR at step t is the run's, so an LR that blows up within the first
`H` steps of the run blows up in the trial, and a trial that reaches the horizon has survived
what the run would have done up to there. Compressing the schedule into the trial instead
(``lr_trial(t) = lr_full(t · R / H)``, a complete miniature with its decay) shortens the stretch
spent near the peak LR, while divergence under momentum builds up over many updates at a high
LR (issue 11: an LR that trained better than the best one for 100 updates blew up at update
104). Measured with bench/bench_tune.py and a compressing variant (budget 1, horizon 22 % of a
run, SGD momentum 0.9, seeds 0-2): on mnist1d-cnn for 10 epochs with cosine, compressed trials
chose 0.48 once, 2.2 times the best grid LR, and its full run scored 0.50 of the grid's best,
where truncated trials chose 0.17-0.20 (worst 0.979); with one-cycle the worst was 0.952
compressed, 0.970 truncated. The price: a truncated cosine trial is scored before most of its
decay. A constant LR is the same either way.
"""

from __future__ import annotations

from lrkit.schedules import Schedule, fill_template, template_fields
from lrkit.validation import fail, instance

#: Named schedules: the strategies of the same names (cosine to 0; one-cycle to the LR, torch's defaults).
NAMED = {
    "constant": "constant(lr={lr})",
    "cosine": "cosine(lr={lr}, decay_steps={total_steps})",
    "one_cycle": "one_cycle(max_lr={lr}, total_steps={total_steps})",
}


def template_of(schedule: str) -> str:
    """The spec template of a name in `NAMED` or of a template; refuses one without ``{lr}``."""
    template = NAMED.get(instance("tune_lr", "schedule", schedule, str, "a name or a spec template"), schedule)
    try:
        names = template_fields(template)
    except ValueError as err:
        raise fail("tune_lr", "schedule", f"one of {', '.join(map(repr, NAMED))} or a well-formed spec template "
                   f"({err})", schedule) from None
    if "lr" not in names:
        raise fail("tune_lr", "schedule", f"one of {', '.join(map(repr, NAMED))} or a spec template with "
                   "'{lr}' (the LR being tuned)", schedule)
    return template


def full_run(template: str, lr: float, steps_per_epoch: int, epochs: int) -> Schedule:
    """The template filled for the full run: ``total_steps = epochs · steps_per_epoch``."""
    return fill_template(template, lr=lr, total_steps=epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch,
                         epochs=epochs)
