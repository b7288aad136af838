"""Under DDP every rank gets the same LR: the scheduler averages the loss over the process
group before MLR-SNet reads it.

Two real processes (``torch.multiprocessing.spawn``, gloo on CPU, ``tests/support/ddp.py``)
train the same model under DistributedDataParallel on different shards.  With the default
(the loss averaged when ``torch.distributed`` is initialised) both ranks have the same LRs and
the same weights after 30 steps, and the LRs are those of one scheduler fed the mean of the
two ranks' losses (computed here from the losses each rank recorded).  With
``sync_loss=False`` (each rank its own loss, the behaviour before) the ranks drift apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlrsnet.snet.scheduler import MLRSNetScheduler

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "support.ddp", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_the_ranks_see_different_losses(ranks: list[dict]) -> None:
    assert ranks[0]["synced"]["losses"] != ranks[1]["synced"]["losses"]


def test_with_the_loss_averaged_both_ranks_have_the_same_lrs_and_weights(ranks: list[dict]) -> None:
    a, b = ranks[0]["synced"], ranks[1]["synced"]
    assert a["lrs"] == b["lrs"]
    for wa, wb in zip(a["weights"], b["weights"], strict=True):
        assert torch.equal(wa, wb)


def test_the_lrs_are_those_of_the_mean_loss_of_the_ranks(ranks: list[dict]) -> None:
    a, b = ranks[0]["synced"], ranks[1]["synced"]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    sched = MLRSNetScheduler(opt, "ours", num_classes=4, total_steps=len(a["lrs"]))
    expected = []
    for la, lb in zip(a["losses"], b["losses"], strict=True):
        sched.step((la + lb) / 2)
        expected.append(sched.get_last_lr()[0])
    assert a["lrs"] == expected  # the same float64 mean, exactly


def test_without_it_the_replicas_drift_apart(ranks: list[dict]) -> None:
    a, b = ranks[0]["unsynced"], ranks[1]["unsynced"]
    assert a["lrs"] != b["lrs"]
    drift = max(float((wa - wb).abs().max()) for wa, wb in zip(a["weights"], b["weights"], strict=True))
    assert drift > 1e-4
