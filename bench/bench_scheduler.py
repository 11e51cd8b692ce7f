"""Cost of one `scheduler.step()`: lrkit's ScheduledLR vs the torch scheduler for the same curve.

Both are timed in the same process, interleaved, best of several rounds (the minimum is the
least disturbed by other load on a shared machine); the ratio is what we report.

    .venv/bin/python bench/bench_scheduler.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from datetime import date

import torch
from torch.optim import lr_scheduler as torch_sched

from lrkit import schedules as S
from lrkit.torch import ScheduledLR

HORIZON = 10_000_000  # long enough that no schedule runs out during the benchmark

PAIRS = {
    "cosine": (lambda o: torch_sched.CosineAnnealingLR(o, T_max=HORIZON),
               S.cosine(lr=0.1, decay_steps=HORIZON)),
    "step": (lambda o: torch_sched.StepLR(o, step_size=1000, gamma=0.5),
             S.step(lr=0.1, step_size=1000, gamma=0.5)),
    "triangular2": (lambda o: torch_sched.CyclicLR(o, 0.01, 0.1, step_size_up=500, mode="triangular2",
                                                    cycle_momentum=False),
                    S.triangular2(base_lr=0.01, max_lr=0.1, step_size_up=500)),
    "one_cycle": (lambda o: torch_sched.OneCycleLR(o, max_lr=0.1, total_steps=HORIZON, cycle_momentum=False),
                  S.one_cycle(max_lr=0.1, total_steps=HORIZON)),
    "sgdr": (lambda o: torch_sched.CosineAnnealingWarmRestarts(o, T_0=1000, T_mult=2),
             S.sgdr(lr=0.1, first_cycle_steps=1000, t_mul=2)),
    "warmup+cosine": (lambda o: torch_sched.SequentialLR(o, [torch_sched.LinearLR(o, 1e-3, 1.0, total_iters=500),
                                                            torch_sched.CosineAnnealingLR(o, T_max=HORIZON)],
                                                         milestones=[500]),
                      S.warmup(S.cosine(lr=0.1, decay_steps=HORIZON), steps=500, start_lr=1e-4)),
}


def make_optimizer(groups: int) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 / (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def time_steps(scheduler, steps: int) -> float:
    """Microseconds per `step()`."""
    step = scheduler.step
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (best is kept)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # torch's "step() before optimizer.step()" warning

    print(f"Measured {date.today()} on {platform.machine()} {platform.processor() or ''} "
          f"({torch.get_num_threads()} torch thread), torch {torch.__version__}, "
          f"{args.steps} steps x best of {args.rounds} rounds.\n")
    print("| schedule | groups | torch µs/step | lrkit µs/step | lrkit / torch |")
    print("|---|---:|---:|---:|---:|")
    ratios = []
    for groups in (1, 8):
        for name, (make_torch, schedule) in PAIRS.items():
            torch_sched_ = make_torch(make_optimizer(groups))
            lrkit_sched = ScheduledLR(make_optimizer(groups), schedule)
            best_torch = best_lrkit = float("inf")
            for _ in range(args.rounds):
                best_torch = min(best_torch, time_steps(torch_sched_, args.steps))
                best_lrkit = min(best_lrkit, time_steps(lrkit_sched, args.steps))
            ratios.append(best_lrkit / best_torch)
            print(f"| {name} | {groups} | {best_torch:.2f} | {best_lrkit:.2f} | {best_lrkit / best_torch:.2f}× |")
    print(f"\nWorst ratio {max(ratios):.2f}×, median {sorted(ratios)[len(ratios) // 2]:.2f}× (target ≤ 0.5×).")


if __name__ == "__main__":
    main()
