"""The CPU speed items of issue 23, measured side by side on this machine.

1. **channels-last**: the loop's step (``workload_step``, ``fixed``) of a ``mini`` model in
   channels-last memory format against the default format, on two copies of the same model
   and the same batches, in alternating blocks (ABBA); paired median ratio and spread.
2. **test evaluation in a search trial**: a ``mini`` trial trained with the test split
   evaluated every epoch (as before) and only after its last epoch (what a search trial
   whose objective is the held-out metric does now), alternating; paired median ratio of
   their wall times.  The tables' training rows are checked equal.
3. **PyTorch's CPU allocator with transparent huge pages** (``THP_MEM_ALLOC_ENABLE``, which
   the command line now sets, :mod:`mlrsnet.harness.process_env`): whole ``mlrsnet-bench
   train`` processes of a ``mini`` run with it on and off (``=0``), alternating (ABBA), each
   in a fresh results folder; paired median ratio of wall times, system seconds, and whether the stored losses, LRs and metrics are bit for bit the same.
4. **the optimiser's one-off import**: seconds that creating the first ``torch.optim.SGD``
   of a fresh process costs (it imports ``torch._dynamo``), median over fresh processes,
   against a second creation; and whether a step imports it anyway.

Run:  MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/perf/cpu_speed.py
      [--tasks resnet18-cifar10,...] [--blocks 8] [--block-steps 3] [--trial-epochs 3]
      [--pairs 2] [--processes 5] [--allocator-tasks lstm2-ptb,resnet18-cifar10]
      [--only channels_last,test_eval,allocator,optimizer_import]
Prints a table (and ``--json``); nothing is asserted.  The load average is printed with it:
on a shared 2-core machine read the ratios, not the times.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

from mlrsnet.harness.contract import BatchStats, profile_scale
from mlrsnet.harness.experiment import Cell, resolved_profile
from mlrsnet.harness.registry import get_method, get_task
from mlrsnet.harness.step import start_run, workload_step


def _iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def channels_last(task_name: str, blocks: int, block_steps: int) -> dict[str, Any]:
    cell = Cell(task_name, "mini", "fixed", {"lr": 0.05})
    task, profile, device = get_task(task_name), resolved_profile(cell), torch.device("cpu")
    torch.manual_seed(0)
    workload, model = task.build(profile, device, None)
    variants = {"default": model, "channels-last": copy.deepcopy(model).to(memory_format=torch.channels_last)}
    runs = {}
    for name, m in variants.items():
        method = get_method("fixed")(lr=0.05)
        runs[name] = (m, method, start_run(method, m, task=task, workload=workload, scale=profile_scale(profile),
                                           epochs=profile.epochs, seed=0, device=device))
        m.train()
    gen = torch.Generator().manual_seed(0)
    batches: list[Any] = []
    while len(batches) < (blocks + 1) * block_steps:
        batches.extend(workload.train_batches(gen))

    def block(name: str, chunk: list[Any]) -> float:
        m, method, run = runs[name]
        stats, carry = BatchStats(), workload.start_epoch(m)
        t0 = time.perf_counter()
        for k, batch in enumerate(chunk):
            carry, _ = workload_step(workload, m, batch, carry, stats, method, run.params, run.optimizer,
                                     task.optim.clip_grad_norm, step=k, epoch=0, index=k)
        return (time.perf_counter() - t0) / len(chunk)

    for name in variants:  # warm-up, excluded
        block(name, batches[:block_steps])
    times: dict[str, list[float]] = {n: [] for n in variants}
    for k in range(blocks):
        chunk = batches[(k + 1) * block_steps:(k + 2) * block_steps]
        order = list(variants) if k % 2 == 0 else list(variants)[::-1]
        for name in order:
            times[name].append(block(name, chunk))
    ratios = [c / d for c, d in zip(times["channels-last"], times["default"], strict=True)]
    return {"task": task_name, "ms_default": 1e3 * statistics.median(times["default"]),
            "ms_channels_last": 1e3 * statistics.median(times["channels-last"]),
            "ratio": statistics.median(ratios), "iqr": _iqr(ratios), "blocks": blocks, "block_steps": block_steps}


def test_eval(task_name: str, epochs: int, pairs: int) -> dict[str, Any]:
    from mlrsnet.harness.loop import train

    cell = Cell(task_name, "mini", "multistep", {"lr": 0.1, "decay": 0.1},
                overrides={"epochs": epochs, "holdout": 1000})
    walls: dict[str, list[float]] = {"every epoch": [], "last epoch": []}
    results: dict[str, Any] = {}
    for k in range(pairs):
        order = ["every epoch", "last epoch"] if k % 2 == 0 else ["last epoch", "every epoch"]
        for name in order:
            t0 = time.perf_counter()
            results[name] = train(cell, test_epochs=None if name == "every epoch" else (epochs,))
            walls[name].append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(walls["every epoch"], walls["last epoch"], strict=True)]
    same = results["every epoch"].steps == results["last epoch"].steps
    return {"task": task_name, "epochs": epochs, "s_every_epoch": statistics.median(walls["every epoch"]),
            "s_last_epoch": statistics.median(walls["last epoch"]), "ratio": statistics.median(ratios),
            "pairs": pairs, "training_identical": same}


def _train_process(task_name: str, thp: str, results: str) -> dict[str, float]:
    """One ``mlrsnet-bench train`` of ``task_name`` at ``mini`` (multistep) in a fresh
    process with ``THP_MEM_ALLOC_ENABLE=thp``: its wall and system seconds."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli = os.path.join(os.path.dirname(sys.executable), "mlrsnet-bench")
    t0 = time.perf_counter()
    subprocess.run([cli, "train", "--task", task_name, "--method", "multistep", "--profile", "mini",
                    "--results", results, "--quiet"], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "THP_MEM_ALLOC_ENABLE": thp})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "sys_s": after.ru_stime - before.ru_stime}


def _tables(results: str) -> dict[str, Any]:
    import pandas as pd

    out = {}
    for table in ("steps", "epochs"):
        frame = pd.concat(pd.read_parquet(os.path.join(results, e, table)) for e in sorted(os.listdir(results)))
        out[table] = frame[[c for c in frame.columns if c in ("lr", "loss", "value", "metric", "split")]]
    return out


def allocator(task_name: str, pairs: int) -> dict[str, Any]:
    import tempfile

    walls: dict[str, list[float]] = {"1": [], "0": []}
    sys_s: dict[str, list[float]] = {"1": [], "0": []}
    tables: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(pairs):
            for thp in (("0", "1") if k % 2 == 0 else ("1", "0")):
                results = os.path.join(tmp, f"{thp}-{k}")
                row = _train_process(task_name, thp, results)
                walls[thp].append(row["wall_s"])
                sys_s[thp].append(row["sys_s"])
                tables[thp] = _tables(results)
    ratios = [on / off for on, off in zip(walls["1"], walls["0"], strict=True)]
    same = all(tables["1"][t].equals(tables["0"][t]) for t in ("steps", "epochs"))
    return {"task": task_name, "pairs": pairs, "s_off": statistics.median(walls["0"]),
            "s_on": statistics.median(walls["1"]), "ratio": statistics.median(ratios),
            "ratios": ratios, "sys_s_off": statistics.median(sys_s["0"]), "sys_s_on": statistics.median(sys_s["1"]),
            "identical": same}


PROBE = r"""
import sys, time
t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
p = [torch.zeros(8, requires_grad=True)]
before = "torch._dynamo" in sys.modules
t2 = time.perf_counter(); opt = torch.optim.SGD(p, lr=0.1); t3 = time.perf_counter()
opt2 = torch.optim.SGD(p, lr=0.1); t4 = time.perf_counter()
print(before, "torch._dynamo" in sys.modules, t1 - t0, t3 - t2, t4 - t3)
"""

def optimizer_import(processes: int) -> dict[str, Any]:
    rows = []
    for _ in range(processes):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.split()
        rows.append({"dynamo_before": out[0] == "True", "dynamo_after": out[1] == "True",
                     "import_torch_s": float(out[2]), "first_sgd_s": float(out[3]), "second_sgd_s": float(out[4])})
    import inspect

    import torch.optim.optimizer as opt_module

    # SGD.step runs through this decorator, whose body imports torch._dynamo on every call
    step_imports = "import torch._dynamo" in inspect.getsource(opt_module._use_grad_for_differentiable)
    return {"processes": processes, "import_torch_s": statistics.median(r["import_torch_s"] for r in rows),
            "first_sgd_s": statistics.median(r["first_sgd_s"] for r in rows),
            "second_sgd_s": statistics.median(r["second_sgd_s"] for r in rows),
            "first_sgd_imports_dynamo": all(not r["dynamo_before"] and r["dynamo_after"] for r in rows),
            "sgd_step_imports_dynamo": step_imports}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="resnet18-cifar10,wrn28_10-cifar100,mobilenetv2-cifar10")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--block-steps", type=int, default=3)
    ap.add_argument("--trial-task", default="resnet18-cifar10")
    ap.add_argument("--trial-epochs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--allocator-tasks", default="lstm2-ptb,resnet18-cifar10")
    ap.add_argument("--only", default="channels_last,test_eval,allocator,optimizer_import")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("MLRSNET_THREADS", "1")))
    only = set(args.only.split(","))
    out: dict[str, Any] = {"load_average_start": os.getloadavg(), "threads": torch.get_num_threads()}
    print(f"load average {out['load_average_start']}, {torch.get_num_threads()} thread(s)", flush=True)
    if "channels_last" in only:
        out["channels_last"] = []
        for name in args.tasks.split(","):
            row = channels_last(name, args.blocks, args.block_steps)
            out["channels_last"].append(row)
            print(f"channels-last {name}: {row['ms_default']:.0f} -> {row['ms_channels_last']:.0f} ms/step, "
                  f"paired median ratio {row['ratio']:.3f} (IQR {row['iqr'][0]:.3f}-{row['iqr'][1]:.3f})", flush=True)
    if "test_eval" in only:
        row = test_eval(args.trial_task, args.trial_epochs, args.pairs)
        out["test_eval"] = row
        print(f"search trial {row['task']} mini, {row['epochs']} epochs: test split every epoch "
              f"{row['s_every_epoch']:.1f} s, at the last only {row['s_last_epoch']:.1f} s, paired median ratio "
              f"{row['ratio']:.3f}; training identical: {row['training_identical']}", flush=True)
    if "allocator" in only:
        out["allocator"] = []
        for name in args.allocator_tasks.split(","):
            row = allocator(name, args.pairs)
            out["allocator"].append(row)
            print(f"huge-page allocator, {name} mini run (whole process): off {row['s_off']:.1f} s, on "
                  f"{row['s_on']:.1f} s, paired median ratio {row['ratio']:.3f} (pairs: "
                  f"{', '.join(f'{r:.3f}' for r in row['ratios'])}); system time {row['sys_s_off']:.1f} -> "
                  f"{row['sys_s_on']:.1f} s; tables bit for bit the same: {row['identical']}", flush=True)
    if "optimizer_import" in only:
        row = optimizer_import(args.processes)
        out["optimizer_import"] = row
        print(f"first torch.optim.SGD() of a process {row['first_sgd_s']:.2f} s (imports torch._dynamo: "
              f"{row['first_sgd_imports_dynamo']}), a second one {row['second_sgd_s'] * 1e3:.2f} ms; "
              f"import torch {row['import_torch_s']:.2f} s; SGD.step imports torch._dynamo too: "
              f"{row['sgd_step_imports_dynamo']}", flush=True)
    out["load_average_end"] = os.getloadavg()
    print(f"load average at the end {out['load_average_end']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
