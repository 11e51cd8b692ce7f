"""How `tune_lr` spends its budget, in optimizer steps: the candidate LRs and the rungs of
successive halving, after the range test (pure arithmetic, no torch).

Successive halving (Jamieson & Talwalkar 2016, "Non-stochastic Best Arm Identification and
Hyperparameter Optimization"; its asynchronous form ASHA, Li et al. 2020, and Hyperband, Li et al.
2017, JMLR 18(185)): `n` candidates train to the first rung ``r_0`` steps; the best ``1/η`` go on to
``r_1 = η r_0``, and so on up to the horizon ``r_K = η^K r_0``, with ``K = max(1, ⌊log_η n⌋)``.
Survivors continue their run (no restart), so a trial that stops at rung k has trained ``r_k``
steps. Optuna's `SuccessiveHalvingPruner` decides asynchronously, one trial at a time: at a rung
reached by `c` trials so far (itself included) it promotes a trial in the top ``max(1, ⌊c/η⌋)``,
so the first trial always runs to the horizon and early trials are promoted more often than in
the synchronous bracket. `bracket_cost` is the expected cost of that rule over random orders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lrkit.validation import fail

#: Candidates reach this many decades below the LR of the range test's lowest loss (`candidate_lrs`).
SPAN_DECADES = 1.5


@dataclass(frozen=True)
class Rungs:
    """The steps at which a trial is evaluated and may be stopped: ``r_k = r_0 · η^k``, k = 0..K.
    The last one is the horizon: the longest a trial trains."""

    steps: tuple[int, ...]
    reduction_factor: int

    @property
    def horizon(self) -> int:
        return self.steps[-1]


def halvings(candidates: int, reduction_factor: int) -> int:
    """``K = max(1, ⌊log_η n⌋)``: rungs after the first (computed in integers)."""
    k = 0
    while reduction_factor ** (k + 1) <= candidates:
        k += 1
    return max(k, 1)


def bracket_cost(candidates: int, reduction_factor: int) -> int:
    """Expected steps per step of ``r_0`` of `candidates` trials run one after another, in random
    order, under the pruner's rule: ``c = Σ_k m_k (η^k − η^{k−1})`` (``η^{−1}`` read as 0), with
    ``m_0 = n`` trials at the first rung and ``m_{k+1} = Σ_{c=1}^{m_k} max(1, ⌊c/η⌋) / c`` of them
    promoted (the chance that the c-th arrival ranks in the top ``max(1, ⌊c/η⌋)``; a fractional
    last arrival counts in proportion). 28 for n = 9, η = 3 (21 for the synchronous bracket)."""
    eta, arriving, cost = reduction_factor, float(candidates), float(candidates)
    for k in range(1, halvings(candidates, eta) + 1):
        whole = int(arriving)
        promoted = sum(max(1, c // eta) / c for c in range(1, whole + 1))
        promoted += (arriving - whole) * max(1, (whole + 1) // eta) / (whole + 1)
        arriving = promoted
        cost += arriving * (eta**k - eta ** (k - 1))
    return math.ceil(cost)


def plan_rungs(trial_steps: int, run_steps: int, candidates: int, reduction_factor: int) -> Rungs | None:
    """The longest rungs whose expected cost fits `trial_steps` and whose horizon is at most one run:
    ``r_0 = min(⌊trial_steps / c⌋, ⌊run_steps / η^K⌋)``; None when that is 0."""
    k = halvings(candidates, reduction_factor)
    first = min(trial_steps // bracket_cost(candidates, reduction_factor), run_steps // reduction_factor**k)
    if first < 1:
        return None
    return Rungs(tuple(first * reduction_factor**i for i in range(k + 1)), reduction_factor)


def check_budget(budget: float, budget_steps: int, finder_steps: int, run_steps: int, candidates: int,
                 reduction_factor: int) -> Rungs:
    """`plan_rungs` for what the range test leaves, or a ValueError that says the smallest budget."""
    rungs = plan_rungs(budget_steps - finder_steps, run_steps, candidates, reduction_factor)
    if rungs is not None:
        return rungs
    k = halvings(candidates, reduction_factor)
    if run_steps < reduction_factor**k:
        raise fail("tune_lr", "epochs × len(train_loader)",
                   f">= {reduction_factor ** k} (a run must hold the {k + 1} rungs of {candidates} candidates at "
                   f"reduction factor {reduction_factor})", run_steps)
    least = finder_steps + bracket_cost(candidates, reduction_factor)
    raise fail("tune_lr", "budget",
               f">= {least / run_steps:.3g} runs here ({least} optimizer steps: {finder_steps} for the range test "
               f"+ about {least - finder_steps} for {candidates} candidates at one step per rung; one run is "
               f"{run_steps} steps)", budget)


def candidate_lrs(top: float, count: int) -> tuple[float, ...]:
    """`count` LRs log-spaced over ``[top / 10^1.5, top]``, increasing, rounded to 4 significant digits.

    `top` is the LR of the range test's lowest smoothed loss: past it the loss rises, so no run at a
    higher LR trains well (Smith 2017 §3.3 takes it as the cyclical ``max_lr``, the one-cycle
    policy's peak). A decade and a half below it puts the constant-LR optimum (fastai's
    ``minimum`` rule reads ``top / 10``) well inside. The range is anchored on `top` rather than on
    the suggestion: across tasks and sweep lengths the lowest loss moves little, while a rule's
    reading of a short or noisy curve can land decades away.
    """
    low = top / 10**SPAN_DECADES
    step = SPAN_DECADES / (count - 1)
    return tuple(float(f"{low * 10 ** (i * step):.4g}") for i in range(count))


def trial_order(candidates: tuple[float, ...], suggestion: float) -> tuple[float, ...]:
    """The candidates nearest the suggestion (in log-LR) first, then outwards, the higher LR first
    on a tie; a suggestion outside the range, a misreading of the curve, is replaced by the range's
    geometric middle. Sequential successive halving promotes a trial that beats the ones before
    it, so a good incumbent early prunes the poor ones at their first rung and keeps the cost near
    the synchronous bracket's."""
    low, high = candidates[0], candidates[-1]
    anchor = suggestion if low <= suggestion <= high else math.sqrt(low * high)
    return tuple(sorted(candidates, key=lambda lr: (abs(math.log(lr / anchor)), -lr)))
