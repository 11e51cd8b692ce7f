"""find_lr under torch.distributed: 2 gloo processes on CPU see one curve and one suggestion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lrkit.torch import find_lr

WORLD = 2


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(512, 8, generator=g)
        data = TensorDataset(x, (x[:, :3].sum(1) > 0).long())
        loader = DataLoader(data, batch_size=32, sampler=DistributedSampler(data, WORLD, rank, shuffle=True, seed=0))
        torch.manual_seed(0)  # same initial weights on both ranks (DDP also broadcasts rank 0's)
        model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        local = []

        def step(m, batch):
            loss = nn.functional.cross_entropy(m(batch[0]), batch[1])
            local.append(loss.item())
            return loss

        result = find_lr(model, optimizer, None, loader, num_iter=60, end_lr=100.0, step_fn=step, progress=rank == 0)
        restored = all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump({"result": result.to_dict(), "local": local, "restored": restored}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_gloo_ranks_see_the_same_curve_and_suggestion(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    runs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    a, b = (run["result"] for run in runs)
    assert a == b  # the whole result: lrs, raw and smoothed losses, every suggestion, interval, stop
    assert a["stop_reason"] == "diverged"
    assert all(run["restored"] for run in runs)
    # each rank trained on its own shard; the recorded loss is their float32 mean
    local = np.array([run["local"] for run in runs], dtype=np.float32)[:, : len(a["raw_losses"])]
    assert np.any(local[0] != local[1])
    expected = (local[0] + local[1]) / np.float32(2)
    np.testing.assert_array_equal(np.array(a["raw_losses"], dtype=np.float64), expected.astype(np.float64))
