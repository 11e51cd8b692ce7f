"""Where a sweep's worker processes come from: a forkserver that imports torch and lrkit once.

Workers fork from a clean server process (never from the sweep's process, which may already run
torch threads), so none of them pays for the imports at its first trial. Starting that server
costs about 3 s (it imports torch); `start_workers_early` starts it before the command's own
work (its imports, the plan, the store), so the two overlap. This module imports no torch.
"""

from __future__ import annotations

from multiprocessing import forkserver, get_context
from multiprocessing.context import ForkServerContext

__all__ = ["WORKER_PRELOAD", "start_workers_early", "worker_context"]

#: What the forkserver imports once, before forking workers: the runner (torch, lrkit), torch's
#: compiler stack (the first optimizer imports it) and scikit-learn's splitting (every task's
#: train/validation split). A missing one is skipped.
WORKER_PRELOAD = ("lrkit.experiments.runner", "torch._dynamo", "sklearn.model_selection")


def worker_context() -> ForkServerContext:
    """The forkserver context workers start from, preloading `WORKER_PRELOAD`."""
    context = get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


def start_workers_early() -> None:
    """Start the forkserver now; its imports run in its own process while this one goes on."""
    worker_context()
    forkserver.ensure_running()
