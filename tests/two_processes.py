"""Run a test's worker on two gloo processes of this machine, as accelerate's ``debug_launcher``
sets them up, with its environment set through ``monkeypatch`` (nothing leaks into other tests)
and its rendezvous file in the test's own folder.

The worker is called in each process as ``worker(out_dir)`` (with ``torch.distributed`` initialised)
and writes ``out_dir/rank{rank}.json``; `run_on_two_processes` returns those two results.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate.utils.launch import PrepareForLaunch


def run_on_two_processes(worker: Callable[[str], None], out_dir: Path,
                         monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    for name, value in {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "ACCELERATE_MIXED_PRECISION": "no",
                        "ACCELERATE_USE_CPU": "yes", "GLOO_SOCKET_IFNAME": "lo",
                        "ACCELERATE_DEBUG_RDV_FILE": str(out_dir / "rendezvous")}.items():
        monkeypatch.setenv(name, value)
    torch.multiprocessing.start_processes(PrepareForLaunch(worker, debug=True), args=(str(out_dir),), nprocs=2,
                                          start_method="fork")
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(2)]
