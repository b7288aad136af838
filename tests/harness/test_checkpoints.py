"""Epoch checkpoints (issue 26 item 1, issue 23 item 1): loaded with torch's weights-only
unpickler onto the CPU, each piece then put where it belongs, the CUDA RNG state included.

Before: ``torch.load(..., map_location=<training device>, weights_only=False)``.  A pickle
payload planted in ``results/<exp>/checkpoints/<run_id>.pt`` ran on resume; on a GPU the RNG
states came back as CUDA tensors (``TypeError: RNG state must be a torch.ByteTensor``), the
MLR-SNet and Meta-SGD states on the GPU while their networks stay on the CPU, and the CUDA
RNG state (dropout masks) was never saved.  Without a GPU the device side is simulated: a
run resumed on the ``meta`` device (a device that is not the CPU, as CUDA is) meets the same
``TypeError`` before the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mlrsnet.harness import loop
from mlrsnet.harness.executor import run_cell
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import Store

TRAIN = ["train", "--task", "resnet18-cifar10", "--method", "fixed", "--profile", "smoke", "--quiet"]


def _bench() -> list[str]:
    script = Path(sys.executable).with_name("mlrsnet-bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlrsnet.harness.cli"]


class _Payload:
    """Unpickling this creates ``marker``: what a planted checkpoint could run instead."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


def test_a_planted_pickle_payload_does_not_run_on_resume(tmp_path: Path, data_dir: Path) -> None:
    results, marker = tmp_path / "results", tmp_path / "payload-ran"
    cell = Cell(task="resnet18-cifar10", profile="smoke", method="fixed", experiment="adhoc")
    planted = results / "adhoc" / "checkpoints" / f"{cell.run_id}.pt"
    planted.parent.mkdir(parents=True)
    # shaped like a checkpoint of this suite, with one object that runs code when unpickled
    torch.save({"epoch": 0, "model": {}, "optimizer": {}, "method": _Payload(str(marker)),
                "torch_rng": torch.get_rng_state()}, planted)
    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*_bench(), *TRAIN, "--results", str(results)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert not marker.exists(), "the planted payload ran"
    assert proc.returncode == 2, proc.stderr
    assert "damaged" in proc.stderr and str(planted) in proc.stderr and "Traceback" not in proc.stderr


def _interrupted(cell: Cell, store: Store) -> Path:
    """``cell`` stopped (Ctrl-C) after its first epoch; the path of its epoch checkpoint."""

    def stop(epoch: int, metrics: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cell(cell, store, device="cpu", on_epoch=stop)
    path = store.root / cell.experiment / "checkpoints" / f"{cell.run_id}.pt"
    assert path.exists()
    return path


#: The methods whose real checkpoints must load with ``weights_only=True`` (issue 26 item 1).
CHECKPOINTED = {
    "multistep": ("resnet18-cifar10", {}),
    "mlrsnet": ("resnet18-cifar10", {}),
    "rtho": ("resnet18-cifar10", {}),
    "multistep-val": ("lstm2-ptb", {}),
    "meta-sgd": ("resnet18-cifar10", {}),
    "mlrsnet-transfer": ("resnet18-cifar10", {"checkpoints": "ours"}),
}


@pytest.mark.parametrize("method", sorted(CHECKPOINTED))
def test_every_real_checkpoint_loads_with_the_weights_only_unpickler(method: str, tmp_path: Path,
                                                                     data_dir: Path) -> None:
    task, hparams = CHECKPOINTED[method]
    path = _interrupted(Cell(task, "smoke", method, hparams, experiment="e"), Store(tmp_path))
    ck = torch.load(path, weights_only=True)
    assert ck["epoch"] == 0 and isinstance(ck["method"], dict)


def _tables(store: Store) -> dict[str, pd.DataFrame]:
    out = {}
    for table in ("epochs", "steps"):
        df = store.read(table, "e").drop(columns="run_id")
        out[table] = df.sort_values(list(df.columns[:3])).reset_index(drop=True)
    return out


@pytest.mark.parametrize("method", ["meta-sgd", "mlrsnet-transfer"])
def test_a_resumed_run_of_a_method_with_cpu_state_equals_an_uninterrupted_one(
        method: str, tmp_path: Path, data_dir: Path) -> None:
    task, hparams = CHECKPOINTED[method]
    cell = Cell(task, "smoke", method, hparams, experiment="e")
    clean, crashed = Store(tmp_path / "clean"), Store(tmp_path / "crashed")
    run_cell(cell, clean, device="cpu")
    _interrupted(cell, crashed)
    run_cell(cell, crashed, device="cpu")
    a, b = _tables(clean), _tables(crashed)
    for table in ("epochs", "steps"):
        pd.testing.assert_frame_equal(a[table], b[table], check_exact=True)


class _ReachedFirstStep(Exception):
    pass


def _tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in _tensors(v)]
    return []


#: Where each method keeps the state it resumes (the MLR-SNet and Meta-SGD states live on the
#: CPU beside their tiny networks, whatever device the model trains on).
CPU_STATE = {
    "mlrsnet": lambda m: [m.state.h, m.state.c, *m.net.parameters()],
    "mlrsnet-transfer": lambda m: [m.scheduler._state.h, m.scheduler._state.c],
    "meta-sgd": lambda m: [m.alphas, m._m, m._v, m._updates],
    "multistep": lambda m: [],
}
#: What lives on the training device besides the model: the language model's hidden state
#: carried from one meta window to the next (MLR-SNet meta-training on PTB).
DEVICE_STATE = {"mlrsnet-ptb": lambda m: list(m.run.held_out.batches.hidden or ())}


@pytest.mark.parametrize("method", [*sorted(CPU_STATE), "mlrsnet-ptb"])
def test_a_run_resumed_on_another_device_gets_each_piece_where_it_belongs(
        method: str, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint of a CPU run, resumed on the ``meta`` device (standing in for CUDA: a
    device that is not the CPU and holds the model).  At the first step after the resume: the
    model and the optimiser state are on the training device, the method's CPU state on the
    CPU, and the RNG states are the checkpoint's (CPU ByteTensors).  Training on ``meta``
    cannot go further (its tensors hold no values), so the test stops there."""
    hparams = {"checkpoints": "ours", "gamma_loss": "recent-mean"} if method == "mlrsnet-transfer" else (
        {"initial_loss": 2.3, "t_val": 1} if method.startswith("mlrsnet") else {})
    task = "lstm2-ptb" if method == "mlrsnet-ptb" else "resnet18-cifar10"
    cell = Cell(task, "smoke", method.removesuffix("-ptb"), hparams, experiment="e")
    path = _interrupted(cell, Store(tmp_path))
    saved = torch.load(path, weights_only=True)
    seen: dict[str, object] = {}

    def first_step(workload, model, batch, carry, stats, method_, params, optimizer, *args, **kw):
        seen["model"] = {p.device.type for p in model.parameters()}
        seen["optimizer"] = {t.device.type for t in _tensors(optimizer.state_dict()["state"])
                             if t.dim() > 0}
        seen["cpu_state"] = {t.device.type for t in CPU_STATE[method.removesuffix("-ptb")](method_)}
        seen["device_state"] = {t.device.type for t in DEVICE_STATE.get(method, lambda m: [])(method_)}
        seen["torch_rng"] = torch.get_rng_state()
        raise _ReachedFirstStep

    monkeypatch.setattr(loop, "workload_step", first_step)
    with pytest.raises(_ReachedFirstStep):
        loop.train(cell, device=torch.device("meta"), checkpoint_path=path)
    assert seen["model"] == {"meta"}
    assert seen["optimizer"] <= {"meta"}
    assert seen["cpu_state"] <= {"cpu"}
    assert seen["device_state"] == ({"meta"} if method in DEVICE_STATE else set())
    assert torch.equal(seen["torch_rng"], saved["torch_rng"])


def test_the_cuda_rng_state_is_saved_and_restored(tmp_path: Path, data_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropout masks on a GPU come from the CUDA generator: a checkpoint of a CUDA run keeps
    its state and the resume puts it back.  Simulated on the CPU: the loop is told the run
    trains on ``cuda:0`` where it reads or writes RNG states, and ``torch.cuda``'s state
    functions are stand-ins that record what they are given."""
    state = torch.arange(16, dtype=torch.uint8)
    restored: list[tuple[torch.Tensor, object]] = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.append((s, device)))
    cuda = torch.device("cuda", 0)
    generator, meta_generator = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    saved = loop.rng_states(cuda, generator, meta_generator)
    assert torch.equal(saved["cuda_rng"], state)
    path = tmp_path / "ck.pt"
    torch.save(saved, path)
    loop.restore_rng_states(torch.load(path, weights_only=True), cuda, generator, meta_generator)
    assert len(restored) == 1 and torch.equal(restored[0][0], state) and restored[0][0].device.type == "cpu"
    assert restored[0][1] == cuda
    # a CPU run saves none, and a CUDA checkpoint resumed on the CPU leaves torch.cuda alone
    assert "cuda_rng" not in loop.rng_states(torch.device("cpu"), generator, meta_generator)
    loop.restore_rng_states(saved, torch.device("cpu"), generator, meta_generator)
    assert len(restored) == 1


def test_a_stopped_trials_planted_checkpoint_is_not_unpickled_when_the_search_ends(tmp_path: Path) -> None:
    """A search that ends records its scheduler-stopped trials from their epoch checkpoints
    (:func:`~mlrsnet.paper.tune.search.finalize_stopped_trials`): with the same reader."""
    from mlrsnet.paper.tune.search import finalize_stopped_trials

    store, marker = Store(tmp_path / "results"), tmp_path / "payload-ran"
    store.write_run_row({"run_id": "r1", "experiment": "e", "task": "resnet18-cifar10", "profile": "smoke",
                         "method": "multistep", "seed": 0, "status": "running",
                         "tags": {"search_id": "s@1", "trial_id": "t1"}})
    planted = tmp_path / "results" / "e" / "checkpoints" / "r1.pt"
    planted.parent.mkdir(parents=True)
    torch.save({"epoch": 0, "epochs": [], "steps": _Payload(str(marker))}, planted)
    assert finalize_stopped_trials(store, "e", "s@1") == 1
    assert not marker.exists(), "the planted payload ran"
    row = store.run_row("e", "r1")
    assert row["status"] == "stopped" and "damaged" in row["error"]
