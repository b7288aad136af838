"""Anchors of method ``mlrsnet`` against the authors' own meta-training runs.

(a) The first LR of meta-training.  The official ResNet-18/CIFAR-10 run starts at 0.417 and
the WRN-28-10/CIFAR-100 run at 1.19 (``official-mlrsnet/meta_train_lr.parquet``, step 0):
``gamma(L0) * A(first batch loss; phi at init)``, with ``L0`` the eval-mode mean loss of one
full pass over the training split at the initial weights.  Ours is computed through the real
method and the loop's own set-up and step (:func:`first_training_step`: the task's paper
build, ``start_run``, the first training batch, ``train_step``) on the real CIFAR subsets
(4,000 training images after the 1,000 held out; the paper profile with
``allow_mini_data=True``; WRN-28-10's ``L0`` pass over 512 of them, see
:data:`WRN_ON_SUBSET`).  Measured (seeds 0 / 1 / 2): ResNet-18 first LR 0.440 / 0.433 /
0.431 (``L0`` 3.57 / 2.84 / 3.24, ``gamma`` 0.950 / 0.793 / 0.879), WRN-28-10 0.964 / 1.169 /
1.164 (``L0`` 14.3 / 14.0 / 16.6, ``gamma`` 2.18 / 2.14 / 2.39); :func:`test_the_probe_is_the_loops_first_step` checks that this
is the loop's step 0.  The paper models start as the official meta-training's do
(``init_weights`` of ``meta_image_model.py``: Xavier-uniform gain sqrt(2) convolutions,
BatchNorm 1/0, linear layers PyTorch's default), checked here too.

(b) The LR trace over training: ``benchmarks/mlrsnet_lr_trace.py`` (its shape measures are
checked on the official file here; the run at ``mini`` is a report, ``reports/mini/``).
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from mlrsnet.baselines.mlrsnet_meta import MLRSNetMeta
from torch import nn

from mlrsnet.harness.contract import StepInfo
from mlrsnet.harness.step import start_run, train_step
from mlrsnet.paper.models import build_model
from mlrsnet.paper.tasks import get_task
from mlrsnet.paper.workloads import BatchStats

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_FIRST_LR = {"resnet18-cifar10": 0.417, "wrn28_10-cifar100": 1.19}
ANCHOR_RANGE = {"resnet18-cifar10": (0.35, 0.50), "wrn28_10-cifar100": (0.9, 1.5)}


def first_training_step(task_name: str, profile_name: str, seed: int, overrides: dict[str, Any] | None = None,
                        **hparams: Any) -> dict[str, float]:
    """Step 0 of an ``mlrsnet`` run as :func:`mlrsnet.harness.loop.train` makes it (same seeding,
    build, ``start_run`` and ``train_step``), stopped right after it: the LR, ``L0``, ``gamma``."""
    task = get_task(task_name)
    profile = replace(task.profile(profile_name), **(overrides or {}))
    device = torch.device("cpu")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    meta_generator = torch.Generator().manual_seed(seed + 1)
    workload, model = task.build(profile, device, None)
    method = MLRSNetMeta(**hparams)
    run = start_run(method, model, task=task, workload=workload, scale=profile.scale, epochs=profile.epochs,
                    seed=seed, device=device, meta_generator=meta_generator)
    model.train()
    carry = workload.start_epoch(model)
    batch = next(iter(workload.train_batches(generator)))
    loss, carry = workload.loss(model, batch, carry, BatchStats())
    result = train_step(method, StepInfo(step=0, epoch=0, index_in_epoch=0, loss=loss), run.params,
                        run.optimizer, task.optim.clip_grad_norm)
    assert method.initial_loss is not None and method.gamma is not None
    return {"lr": result.lr, "loss": result.loss, "initial_loss": method.initial_loss, "gamma": method.gamma,
            "t_val": method.t_val, "meta_updates": method.meta_updates}


def test_the_probe_is_the_loops_first_step(data_dir) -> None:
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train

    for task in ("resnet18-cifar10", "lstm2-ptb"):
        full = train(Cell(task, "smoke", "mlrsnet", seed=1, overrides={"epochs": 1}))
        probe = first_training_step(task, "smoke", 1, {"epochs": 1})
        assert probe["lr"] == full.steps["lr"][0]
        assert probe["loss"] == full.steps["loss"][0]
        assert probe["initial_loss"] == full.method_info["mlrsnet_initial_loss"]


def _xavier_bound(w: torch.Tensor) -> float:
    fan_in, fan_out = w.shape[1] * w[0, 0].numel(), w.shape[0] * w[0, 0].numel()
    return math.sqrt(2.0) * math.sqrt(6.0 / (fan_in + fan_out))


@pytest.mark.parametrize("arch,classes", [("resnet18", 10), ("wrn28_10", 100)])
def test_paper_models_start_as_the_official_meta_training_initialises_them(arch: str, classes: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=classes)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert convs and bns and len(linears) == 1
    for conv in convs:
        assert conv.bias is None
        bound = _xavier_bound(conv.weight)
        w = conv.weight.detach()
        assert float(w.abs().max()) <= bound
        # uniform on [-b, b]: standard deviation b / sqrt(3) (big layers: within 5 %)
        if w.numel() >= 10_000:
            assert float(w.std()) == pytest.approx(bound / math.sqrt(3.0), rel=0.05)
    for bn in bns:
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    # the classifier keeps nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights
    fc = linears[0]
    assert float(fc.weight.detach().abs().max()) <= 1 / math.sqrt(fc.in_features)
    assert float(fc.weight.detach().std()) == pytest.approx(1 / math.sqrt(3 * fc.in_features), rel=0.1)


PAPER_ON_SUBSET = {"allow_mini_data": True}
#: WRN-28-10 at full width costs about 40 s per batch of 128 on a 2-core CPU: its ``L0`` pass
#: runs over the first 512 of the 4,000 subset images (4 batches; a few minutes per seed).  On
#: ResNet-18 seed 0 that moves ``L0`` from 3.57 (4,000 images) to 3.69 and the first LR from
#: 0.440 to 0.452.
WRN_ON_SUBSET = {"allow_mini_data": True, "train_size": 512}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_first_meta_training_lr_at_resnet18_cifar10_paper_init_is_the_official_runs(seed, data_dir) -> None:
    got = first_training_step("resnet18-cifar10", "paper", seed, PAPER_ON_SUBSET)
    low, high = ANCHOR_RANGE["resnet18-cifar10"]
    assert got["t_val"] == 300 and got["meta_updates"] == 0
    assert low <= got["lr"] <= high, got


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_first_meta_training_lr_at_wrn28_10_cifar100_paper_init_is_the_official_runs(seed, data_dir) -> None:
    got = first_training_step("wrn28_10-cifar100", "paper", seed, WRN_ON_SUBSET)
    low, high = ANCHOR_RANGE["wrn28_10-cifar100"]
    assert got["t_val"] == 300 and got["meta_updates"] == 0
    assert low <= got["lr"] <= high, got


# -- (b) the trace benchmark ---------------------------------------------------------------
def _trace_module() -> Any:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import mlrsnet_lr_trace
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return mlrsnet_lr_trace


def test_the_trace_benchmark_characterises_the_official_runs(official_ckpts) -> None:
    trace = _trace_module()
    official = trace.official_traces(official_ckpts / trace.OFFICIAL_FILE)
    r18 = official["resnet18_cifar10"]
    assert len(r18) == 200 * 383
    assert r18[0] == pytest.approx(OFFICIAL_FIRST_LR["resnet18-cifar10"], abs=5e-4)
    assert official["wrn28_10_cifar100"][0] == pytest.approx(OFFICIAL_FIRST_LR["wrn28_10-cifar100"], abs=5e-3)
    # fast decay over about the first third, then a plateau
    rel = {f: trace.at_fraction(r18, f) / r18[0] for f in (0.10, 0.33, 0.66, 1.0)}
    assert rel == pytest.approx({0.10: 0.736, 0.33: 0.081, 0.66: 0.065, 1.0: 0.044}, abs=2e-3)
    assert trace.shape_rms(r18, r18) == 0.0
    assert trace.shape_rms(r18 * 3.0, r18) == pytest.approx(0.0, abs=1e-12)  # shape only, not scale
    flat = torch.ones(500).numpy()
    assert trace.shape_rms(flat, r18) > 0.8  # a constant LR is far from the official shape


def test_the_trace_benchmark_has_help() -> None:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mlrsnet_lr_trace.py"), "--help"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "--profile" in out.stdout and "--results" in out.stdout
