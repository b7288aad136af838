"""How a run executes: its device, its execution identity, the resources Ray is handed.

The GPU side is simulated on the CPU: ``torch.cuda.is_available`` is patched for the
refusals, Ray's resource requests are recorded by a stand-in for ``ray.remote``, and the
execution identity is compared on rows as a CUDA run would write them.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import mlrsnet.harness.executor as executor
from mlrsnet.harness import execution
from mlrsnet.harness.cli import main
from mlrsnet.harness.executor import DataChangedWarning, run_cell, stands
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import Store

REPO = Path(__file__).resolve().parents[2]
ONE_EPOCH = {"epochs": 1, "train_size": 96}


def _cell(**changes: Any) -> Cell:
    return Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.05}, experiment="e",
                overrides=ONE_EPOCH).with_(**changes)


# -- issue 26 item 12: the thread count is part of what a run is -------------------------------
def test_a_run_trained_with_two_threads_is_not_reused_by_a_one_thread_invocation(tmp_path: Path, data_dir) -> None:
    store, cell = Store(tmp_path), _cell()
    assert run_cell(cell, store, threads=2).status == "finished"
    assert run_cell(cell, store, threads=2) is None  # the same invocation reuses it
    with pytest.warns(DataChangedWarning, match="threads 2 -> 1"):
        again = run_cell(cell, store, threads=1)
    assert again is not None and again.status == "finished"
    row = store.run_row("e", cell.run_id)
    assert row["method_info"]["threads"] == 1 and row["data"]["execution"]["threads"] == 1
    assert run_cell(cell, store, threads=1) is None


def test_each_execution_option_makes_a_finished_run_stale(tmp_path: Path, data_dir,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store, cell = Store(tmp_path), _cell()
    run_cell(cell, store, device="cpu")
    assert stands(cell, store, device="cpu")
    for variable, value in (("MLRSNET_COMPILE", "inductor"), ("MLRSNET_CHANNELS_LAST", "1"),
                            ("MLRSNET_PRECISION", "bf16"), ("MLRSNET_THREADS", "2")):
        with monkeypatch.context() as m:
            m.setenv(variable, value)
            assert not stands(cell, store, device="cpu"), variable
    # the CUDA-only flags change nothing on the CPU, so they leave a CPU run standing
    for variable in ("MLRSNET_CUDNN_BENCHMARK", "MLRSNET_DETERMINISTIC"):
        with monkeypatch.context() as m:
            m.setenv(variable, "1")
            assert stands(cell, store, device="cpu"), variable
    assert not stands(cell, store, device="cuda")  # another device


def _legacy(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``row`` as a run recorded before execution identities wrote it."""
    data = {k: v for k, v in row["data"].items() if k != "execution"}
    info = {k: v for k, v in row["method_info"].items() if k != "precision"}
    out = {**row, "data": data, "method_info": info}
    for key, value in changes.items():
        if key in ("threads", "compile", "channels_last"):
            out["method_info"] = {**out["method_info"], key: value}
        else:
            out[key] = value
    return out


def test_a_row_recorded_before_execution_identities_reads_as_its_own_defaults(tmp_path: Path, data_dir) -> None:
    store, cell = Store(tmp_path), _cell()
    run_cell(cell, store)
    row = store.run_row("e", cell.run_id)
    current = executor.execution_identity(cell, "cpu")
    assert executor.execution_mismatch(_legacy(row), current) is None
    assert "threads 2 -> 1" in executor.execution_mismatch(_legacy(row, threads=2), current)
    assert "device 'cuda' -> 'cpu'" in executor.execution_mismatch(_legacy(row, device="cuda:0"), current)
    assert "compile" in executor.execution_mismatch(_legacy(row, compile="inductor"), current)
    # a trial BOHB stopped carries no method_info: the defaults
    stopped = {**_legacy(row), "method_info": None}
    assert executor.execution_mismatch(stopped, current) is None


def test_the_published_cpu_store_stands_under_execution_identities(tmp_path: Path, data_dir,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """297 runs trained on the CPU, fp32, eager, one thread, before execution identities:
    on a copy of the store, counted as `reproduce` counts it (nothing is trained), every one
    of them still stands, and the counts equal those made without the execution check."""
    from mlrsnet.paper.reproduce import count_runs, load_plan, select

    copy = tmp_path / "results"
    shutil.copytree(REPO / "reports" / "cpu" / "results", copy)
    plan = load_plan(REPO / "benchmarks" / "reproduce_all.toml")
    stages = select(plan, None)
    total, done = count_runs(plan, stages, "cpu", Store(copy), str(data_dir), None)
    assert done >= 297
    with monkeypatch.context() as m:
        m.setattr(executor, "execution_mismatch", lambda row, current: None)
        assert count_runs(plan, stages, "cpu", Store(copy), str(data_dir), None) == (total, done)
    rows = [row for exp in Store(copy).experiments() for row in Store(copy).runs(exp).to_dict("records")
            if row["status"] in ("finished", "diverged", "stopped")]
    assert len(rows) >= 297
    for row in rows:
        cell = Cell(row["task"], row["profile"], row["method"], overrides=dict(row.get("overrides") or {}))
        trial = isinstance(row.get("tags"), dict) and "search_id" in row["tags"]
        threads = 1 if trial else None  # mini trials: one CPU each
        assert executor.execution_mismatch(row, executor.expected_execution(cell, None, threads, 0.0)) is None


# -- item 5: what a run records of its device -----------------------------------------------
def test_a_run_records_its_execution_and_the_numeric_flags(tmp_path: Path, data_dir) -> None:
    store, cell = Store(tmp_path), _cell()
    run_cell(cell, store)
    row = store.run_row("e", cell.run_id)
    assert row["data"]["execution"] == {"device": "cpu", "precision": "fp32", "compile": None,
                                        "channels_last": False, "cudnn_benchmark": False,
                                        "deterministic": False, "threads": 1}
    assert row["versions"]["deterministic_algorithms"] is False


def test_on_a_gpu_the_versions_name_the_gpu_cuda_cudnn_and_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    with execution.backend_flags({"deterministic": True}):
        got = execution.device_versions(torch.device("cuda"))
    assert got["gpu_model"] == "NVIDIA H100 80GB HBM3" and got["gpu_capability"] == "9.0"
    assert (got["cuda"], got["cudnn"]) == ("12.8", 91000)
    assert got["cudnn_deterministic"] is True and got["cudnn_benchmark"] is False
    assert got["deterministic_algorithms"] is True
    assert {"tf32_matmul", "tf32_cudnn"} <= set(got)
    # the flags are put back after the run
    assert torch.backends.cudnn.deterministic is False and not torch.are_deterministic_algorithms_enabled()


def test_contradicting_cudnn_flags_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLRSNET_CUDNN_BENCHMARK", "1")
    monkeypatch.setenv("MLRSNET_DETERMINISTIC", "1")
    with pytest.raises(execution.UserError, match="contradict"):
        execution.requested()


# -- item 4: no silent CPU fall-back at a scale sized for GPUs -------------------------------
def test_paper_scale_refuses_the_cpu_unless_asked(tmp_path: Path, data_dir, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(execution.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    args = ["train", "--task", "resnet18-cifar10", "--method", "fixed", "--profile", "paper",
            "--results", str(tmp_path), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "sized for GPUs" in err and "--device cpu" in err
    assert "driver" in err and "CUDA 12.8" in err and "download.pytorch.org/whl/cu" in err
    assert "Traceback" not in err
    # asked for on purpose, the CPU is used: the run goes on to look for the full dataset
    assert main([*args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "sized for GPUs" not in err and "prepare" in err


def test_the_reason_cuda_is_unusable_names_a_cpu_only_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in execution.cuda_unusable_reason()


def test_small_profiles_still_fall_back_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert execution.pick_device("auto").type == "cpu"
    assert executor.cell_device(_cell(), None).type == "cpu"


# -- item 2: the resources `run --executor ray` hands to Ray ----------------------------------
def _spec(tmp_path: Path, profile: str, tasks: list[str]) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(f'name = "e"\nprofile = "{profile}"\nseeds = [0]\ntasks = {json.dumps(tasks)}\n'
                    '[[methods]]\nname = "fixed"\nhparams = { lr = 0.05 }\n')
    return path


@pytest.mark.parametrize(("profile", "extra", "want"), [
    ("paper", [], (2.0, 0.5)),             # the profile's: ResNet-18 half a GPU, PTB a quarter
    ("paper", ["--gpus-per-cell", "2", "--cpus-per-cell", "8"], (8.0, 2.0)),
    ("smoke", [], (1.0, 0.0)),
])
def test_run_on_ray_asks_for_the_profiles_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              profile: str, extra: list[str], want: tuple[float, float]) -> None:
    seen: dict[str, Any] = {}

    def fake_run_ray(cells: Any, store: Any, **kwargs: Any) -> dict[str, str]:
        seen.update(kwargs)
        return {c.run_id: "finished" for c in cells}

    monkeypatch.setattr(executor, "run_ray", fake_run_ray)
    spec = _spec(tmp_path, profile, ["resnet18-cifar10", "lstm2-ptb"])
    assert main(["run", str(spec), "--executor", "ray", "--results", str(tmp_path / "r"), "--quiet", *extra]) == 0
    assert (seen["cpus_per_cell"], seen["gpus_per_cell"]) == want


class FakeRay:
    """Records what ``ray.remote`` is asked for and runs the task in this process."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []

    def remote(self, **options: Any) -> Any:
        self.options.append(options)

        def decorate(fn: Any) -> Any:
            class Remote:
                @staticmethod
                def remote(*args: Any) -> Any:
                    return fn(*args)
            return Remote
        return decorate

    @staticmethod
    def wait(refs: list[Any], num_returns: int = 1) -> tuple[list[Any], list[Any]]:
        return refs[:num_returns], refs[num_returns:]

    @staticmethod
    def get(ref: Any) -> Any:
        return ref


def test_a_ray_task_with_a_gpu_share_trains_on_cuda_and_one_without_on_the_cpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devices: list[Any] = []
    monkeypatch.setattr(executor, "run_cell", lambda cell, store, **kw: devices.append(kw["device"]))
    for gpus, want in ((0.5, "cuda"), (0.0, "cpu")):
        ray = FakeRay()
        device = executor.ray_device([_cell()], None, gpus)
        executor._run_remote(ray, [_cell()], [_cell()], {}, root=str(tmp_path), data=None, device=device,
                             quiet=True, force=False, cpus_per_cell=2.0, gpus_per_cell=gpus)
        assert ray.options == [{"num_cpus": 2.0, "num_gpus": gpus}]
        assert devices.pop() == want
    # an explicit device is kept
    assert executor.ray_device([_cell()], "cpu", 1.0) == "cpu"


def test_a_paper_cell_given_no_gpu_on_ray_is_refused_unless_the_cpu_is_asked_for() -> None:
    paper = Cell("resnet18-cifar10", "paper", "fixed", {"lr": 0.05})
    with pytest.raises(execution.UserError, match="--device cpu"):
        executor.ray_device([paper], None, 0.0)
    assert executor.ray_device([paper], "cpu", 0.0) == "cpu"


# -- speed options: compile the training forward once ------------------------------------------
def test_compile_traces_the_training_forward_once(data_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    """The partial last batch, evaluation and MLR-SNet's look-ahead (through functional_call)
    run the eager module: nothing recompiles (counted by dynamo itself)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from mlrsnet.harness.loop import train

    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setenv("MLRSNET_COMPILE", "eager")
    cell = Cell("resnet18-cifar10", "smoke", "mlrsnet", {"t_val": 2},
                overrides={"epochs": 2, "train_size": 32 * 3 + 7})  # a partial last batch each epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(cell)
    assert result.status == "finished"
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == result.method_info["compiled_graphs"] == 1, dict(counters["stats"])
    assert counters["stats"]["calls_captured"] >= 1


@pytest.mark.parametrize(("variable", "value"), [("MLRSNET_COMPILE", "inductor"), ("MLRSNET_PRECISION", "bf16")])
def test_compile_and_bf16_are_refused_for_a_method_that_differentiates_the_gradient(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    from mlrsnet.harness.loop import train

    monkeypatch.setenv(variable, value)
    for method in ("rtho", "marthe"):
        with pytest.raises(execution.UserError, match="double backward"):
            train(Cell("resnet18-cifar10", "smoke", method))
