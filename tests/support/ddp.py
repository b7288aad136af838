"""A two-process DDP run of MLRSNetScheduler on CPU (gloo), for ``tests/snet/test_distributed.py``.

``run(out_dir)`` spawns two processes (``torch.multiprocessing.spawn``; this module must be
importable by the children, hence its place in ``tests/support``).  Each rank trains the same
small model under DistributedDataParallel on its own shard of the data, once with the
scheduler's default (the loss averaged over the group) and once with ``sync_loss=False``, and
saves its LRs, its local mini-batch losses and its final weights to ``out_dir/rank{r}.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

STEPS = 30


def _train(rank: int, sync_loss: bool | None) -> dict[str, object]:
    from mlrsnet.snet.scheduler import MLRSNetScheduler

    torch.manual_seed(0)  # the same initial weights on both ranks
    model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4)))
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
    x = torch.randn(STEPS * 16, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long() + 2 * (x[:, 5:8].sum(1) > 0).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    sched = MLRSNetScheduler(opt, "ours", num_classes=4, total_steps=STEPS, sync_loss=sync_loss)
    lrs, losses = [], []
    for xb, yb in zip(x.split(16), y.split(16), strict=True):
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        sched.step(loss)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        losses.append(float(loss.detach()))
    return {"lrs": lrs, "losses": losses, "weights": [p.detach().clone() for p in model.parameters()]}


def worker(rank: int, world_size: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        result = {"synced": _train(rank, None), "unsynced": _train(rank, False)}
    finally:
        dist.destroy_process_group()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")


def run(out_dir: str | os.PathLike[str], world_size: int = 2) -> None:
    out = Path(out_dir)
    torch.multiprocessing.spawn(worker, args=(world_size, str(out / "store"), str(out)), nprocs=world_size)


if __name__ == "__main__":
    run(sys.argv[1])
