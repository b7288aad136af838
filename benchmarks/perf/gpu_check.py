"""The GPU check of issue 23, in one go: correctness, speed, memory and syncs on one device.

Written to run once on one GPU in at most 8 minutes (``--budget-s``, default 450 s: a
section that would not fit is skipped and says so), and to dry-run on the CPU in CI
(``--device cpu --quick``, under a minute: smoke-size models, a few steps each).
Writes ``gpu_check_<device>.json`` and ``gpu_check_<device>.md`` under ``--out``
(default ``benchmarks/perf/results/``).  Sections, each independent (one failing is
recorded and the others still run):

1. **equality**: every registered method at ``smoke`` trained on the device and on the CPU
   through the same loop, same seed.  Stated tolerance: the first step's loss agrees to
   1e-3 relative (cuDNN convolutions use TF32 by default; CPU kernels sum in another order)
   and every step's loss of the short run to 5e-2 relative (the runs drift apart step by
   step, as any two devices' runs do).  On ``--device cpu`` the two runs are the same
   device: they must agree exactly.
2. **resume**: a run interrupted after its first epoch and resumed (through ``run_cell``,
   from its epoch checkpoint) against an uninterrupted run, on the device, with
   ``--deterministic``: the tables must be equal; an uninterrupted run repeated says whether
   the device is deterministic at all.
3. **step timing**: the paper ResNet-18/CIFAR-10 step (batch 128) through the loop's own
   step (``workload_step``) in variants timed side by side: the image pipeline as it was
   before issue 23 (four host-device copies a step), as it is now, with channels-last, with
   bf16 autocast, and with all of them (channels-last, bf16, the training forward compiled,
   cuDNN benchmark).  Interleaved blocks in rotating order, a warm-up block each first
   (excluded), ``torch.cuda.synchronize`` around every block; paired medians of each
   variant's time over the current pipeline's, and its peak memory.
4. **syncs per step**: host-to-device copies and device-to-host reads per step, counted by
   wrapping ``Tensor.to`` / ``torch.as_tensor`` and the reads (``float``, ``item``, ...)
   for the current and the old pipeline; on CUDA also the synchronisations
   ``torch.cuda.set_sync_debug_mode`` reports.
5. **paper epochs**: one paper epoch of every image task with ``fixed`` (the full dataset
   where it is prepared; otherwise the shared subset, its batches repeated to the paper's
   epoch length: said in the table).  A full epoch is timed when it fits the budget, else
   the timed steps are extrapolated (said).  Target: ResNet-18/CIFAR-10 at most 3 s.
6. **MLR-SNet meta-training**: a paper epoch of ``mlrsnet`` (meta updates every ``t_val``
   steps, the official default) against a paper epoch of ``fixed``, alternated twice.
   Target: at most 1.2x.

Run (GPU):  MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/perf/gpu_check.py
Dry run:    MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/perf/gpu_check.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from mlrsnet.harness.contract import BatchStats, profile_scale
from mlrsnet.harness.execution import pick_device, prepare_model
from mlrsnet.harness.experiment import Cell, resolved_profile
from mlrsnet.harness.registry import discover, get_method, get_task, tasks
from mlrsnet.harness.step import start_run, workload_step
from mlrsnet.paper.data.locate import MissingDataError

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
#: Training images per paper epoch (the official loaders): CIFAR less the 1,000 held out.
PAPER_TRAIN = {"cifar10": 49_000, "cifar100": 49_000, "svhn": 73_257, "tinyimagenet": 100_000}
FIRST_STEP_RTOL, RUN_RTOL = 1e-3, 5e-2
#: Two steps per equality run (as the every-method smoke test): images 64 examples at batch
#: 32, text 2 BPTT windows.
SHORT = {"image": {"epochs": 2, "train_size": 64}, "text": {"epochs": 2, "train_tokens": 88}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Budget:
    """Seconds left of the whole check; sections ask before they start."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


# -- 1. equality -----------------------------------------------------------------------------
def equality(device: torch.device, quick: bool, budget: Budget) -> dict[str, Any]:
    from mlrsnet.harness.loop import train

    rows = []
    for name in sorted(discover()):
        if budget.left() < 30:
            rows.append({"method": name, "skipped": "time budget"})
            continue
        task = "resnet18-cifar10"
        cell = Cell(task, "smoke", name, overrides=SHORT["image"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = train(cell, device=device)
            b = train(cell, device=torch.device("cpu"))
        la, lb = a.steps["loss"], b.steps["loss"]
        rel = [abs(x - y) / max(abs(y), 1e-12) for x, y in zip(la, lb, strict=True)]
        first, worst = rel[0], max(rel)
        exact = device.type == "cpu"
        ok = (worst == 0.0) if exact else (first <= FIRST_STEP_RTOL and worst <= RUN_RTOL)
        rows.append({"method": name, "steps": len(la), "first_step_rel": first, "max_rel": worst,
                     "test_acc_device": a.final("test", "acc"), "test_acc_cpu": b.final("test", "acc"),
                     "ok": bool(ok)})
    tolerance = ("exact (the same device)" if device.type == "cpu" else
                 f"first step {FIRST_STEP_RTOL:g} relative, every step {RUN_RTOL:g} relative")
    return {"task": "resnet18-cifar10 smoke, 2 epochs x 2 steps", "tolerance": tolerance, "rows": rows,
            "ok": all(r.get("ok", True) for r in rows)}


# -- 2. resume -------------------------------------------------------------------------------
def resume(device: torch.device, quick: bool, budget: Budget) -> dict[str, Any]:
    import pandas as pd

    from mlrsnet.harness.executor import run_cell
    from mlrsnet.harness.store import Store

    def tables(store: Store) -> dict[str, pd.DataFrame]:
        return {t: store.read(t, "e").drop(columns=["run_id"]).sort_values(list(store.read(t, "e").columns[1:3]))
                .reset_index(drop=True) for t in ("epochs", "steps")}

    def stop_after_first(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    rows = []
    cases = [("resnet18-cifar10", "fixed", {"lr": 0.05}), ("lstm2-ptb", "fixed", {"lr": 20.0}),
             ("resnet18-cifar10", "mlrsnet", {})]
    before = os.environ.get("MLRSNET_DETERMINISTIC")
    os.environ["MLRSNET_DETERMINISTIC"] = "1"
    try:
        for task, method, hp in cases[:2] if quick else cases:
            if budget.left() < 30:
                rows.append({"task": task, "method": method, "skipped": "time budget"})
                continue
            cell = Cell(task, "smoke", method, hp, experiment="e", overrides={"epochs": 3})
            with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clean, again, cut = Store(Path(tmp) / "a"), Store(Path(tmp) / "b"), Store(Path(tmp) / "c")
                row: dict[str, Any] = {"task": task, "method": method}
                try:
                    run_cell(cell, clean, device=str(device))
                    run_cell(cell, again, device=str(device))
                    with contextlib.suppress(KeyboardInterrupt):
                        run_cell(cell, cut, device=str(device), on_epoch=stop_after_first)
                    run_cell(cell, cut, device=str(device))
                    a, b, c = tables(clean), tables(again), tables(cut)
                    row["repeatable"] = all(a[t].equals(b[t]) for t in a)
                    row["resumed_equals_uninterrupted"] = all(a[t].equals(c[t]) for t in a)
                    row["ok"] = row["resumed_equals_uninterrupted"]
                except Exception as exc:  # noqa: BLE001 - reported, the check goes on
                    row["ok"] = False
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                rows.append(row)
    finally:
        if before is None:
            os.environ.pop("MLRSNET_DETERMINISTIC", None)
        else:
            os.environ["MLRSNET_DETERMINISTIC"] = before
    return {"what": "smoke, 3 epochs, interrupted after epoch 1 and resumed, --deterministic", "rows": rows,
            "ok": all(r.get("ok", True) for r in rows)}


# -- the paper (or quick) ResNet-18/CIFAR-10 set-up ---------------------------------------------
def build(task_name: str, profile_name: str, method: str, hparams: dict[str, Any], device: torch.device,
          execution: dict[str, Any] | None = None) -> dict[str, Any]:
    """A workload, model and bound method at ``profile_name``; a missing full dataset is
    replaced by the subset (``subset`` says so), whose batches repeat to the epoch length."""
    task = get_task(task_name)
    profile = resolved_profile(Cell(task_name, profile_name, method, hparams))
    subset = False
    torch.manual_seed(0)
    try:
        workload, model = task.build(profile, device, None)
    except MissingDataError:
        profile = replace(profile, allow_mini_data=True)
        workload, model = task.build(profile, device, None)
        subset = profile_name == "paper"
    info: dict[str, Any] = {}
    if execution:
        model, info = prepare_model(model, task.kind, device, execution)
    m = get_method(method)(**hparams)
    run = start_run(m, model, task=task, workload=workload, scale=profile_scale(profile), epochs=profile.epochs,
                    seed=0, device=device)
    n_train = PAPER_TRAIN.get(task.dataset, len(workload.y_train)) if profile_name == "paper" else len(
        workload.y_train)
    return {"task": task, "workload": workload, "model": model, "method": m, "run": run, "subset": subset,
            "steps_per_epoch": math.ceil(n_train / profile.batch_size), "info": info, "profile": profile}


def legacy_batches(workload: Any, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The image pipeline as it was before issue 23: the epoch's permutation copied once,
    then per step the crop offsets and the flips drawn on the host and copied, and the
    normalisation constants built from tuples (two more copies)."""
    n, device, aug = len(workload.y_train), workload.device, workload.augment
    perm = torch.randperm(n, generator=generator).to(device)
    for k in range(workload.steps_per_epoch):
        idx = perm[k * workload.batch_size:(k + 1) * workload.batch_size]
        x = workload.x_train[idx]
        b, h, w, c = x.shape
        p = aug.crop_padding
        offsets = torch.randint(0, 2 * p + 1, (2, b), generator=generator).to(device)
        flipped = torch.rand(b, generator=generator) < 0.5
        rows = offsets[0, :, None] + torch.arange(h, device=device)
        cols = torch.arange(w, device=device).expand(b, w)
        cols = offsets[1, :, None] + torch.where(flipped.to(device)[:, None], (w - 1) - cols, cols)
        padded = torch.nn.functional.pad(x, (0, 0, p, p, p, p))
        pixel = (torch.arange(b, device=device)[:, None, None] * (h + 2 * p) + rows[:, :, None]) * (
            w + 2 * p) + cols[:, None, :]
        out = padded.view(-1, c).index_select(0, pixel.view(-1)).view(b, h, w, c)
        mean = torch.as_tensor(aug.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.as_tensor(aug.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        xf = torch.empty((b, c, h, w), dtype=torch.float32, device=device)
        xf.copy_(out.permute(0, 3, 1, 2)).div_(255.0)
        yield xf.sub_(mean).div_(std), workload.y_train[idx]


def endless(source: Callable[[torch.Generator], Iterator[Any]], seed: int = 0) -> Iterator[Any]:
    gen = torch.Generator().manual_seed(seed)
    return itertools.chain.from_iterable(source(gen) for _ in itertools.count())


class Stepper:
    """One variant of the step: its own model, optimiser and batch source."""

    def __init__(self, setup: dict[str, Any], batches: Iterator[Any]) -> None:
        self.s, self.batches = setup, batches
        self.stats, self.carry, self.k = BatchStats(), setup["workload"].start_epoch(setup["model"]), 0
        setup["model"].train()

    def steps(self, n: int) -> None:
        s = self.s
        for _ in range(n):
            self.carry, _ = workload_step(s["workload"], s["model"], next(self.batches), self.carry, self.stats,
                                          s["method"], s["run"].params, s["run"].optimizer,
                                          s["task"].optim.clip_grad_norm, step=self.k, epoch=0, index=self.k)
            self.k += 1


# -- 3. step timing --------------------------------------------------------------------------
def step_timing(device: torch.device, quick: bool, budget: Budget) -> dict[str, Any]:
    profile = "smoke" if quick else "paper"
    cuda = device.type == "cuda"
    compile_backend = "inductor" if cuda else "eager"
    variants: dict[str, tuple[dict[str, Any] | None, str]] = {
        "before: 4 copies a step": (None, "legacy"),
        "now": (None, "now"),
        "channels-last": ({"channels_last": True}, "now"),
        "bf16": ({"precision": "bf16"}, "now"),
        "all": ({"channels_last": True, "precision": "bf16", "compile": compile_backend,
                 "cudnn_benchmark": cuda}, "now"),
    }
    steppers: dict[str, Stepper] = {}
    compile_s = None
    for name, (execution, pipeline) in variants.items():
        setup = build("resnet18-cifar10", profile, "fixed", {"lr": 0.05}, device, execution)
        wl = setup["workload"]
        source = endless(lambda g, wl=wl, p=pipeline: legacy_batches(wl, g) if p == "legacy" else wl.train_batches(g))
        steppers[name] = Stepper(setup, source)
    block, rounds = (2, 2) if quick else (10, 8)
    times: dict[str, list[float]] = {n: [] for n in steppers}
    peaks: dict[str, int] = dict.fromkeys(steppers, 0)
    old_benchmark = torch.backends.cudnn.benchmark
    try:
        for name, st in steppers.items():  # warm-up (the compile of "all" happens here)
            torch.backends.cudnn.benchmark = name == "all" and cuda
            sync(device)
            t0 = time.perf_counter()
            st.steps(block)
            sync(device)
            if name == "all":
                compile_s = time.perf_counter() - t0
        names = list(steppers)
        for r in range(rounds):
            if budget.left() < 20:
                break
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                torch.backends.cudnn.benchmark = name == "all" and cuda
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                sync(device)
                t0 = time.perf_counter()
                steppers[name].steps(block)
                sync(device)
                times[name].append((time.perf_counter() - t0) / block)
                if cuda:
                    peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(device))
    finally:
        torch.backends.cudnn.benchmark = old_benchmark
    rows = []
    for name, ts in times.items():
        ratios = [t / n for t, n in zip(ts, times["now"], strict=True)]
        rows.append({"variant": name, "ms_per_step": 1e3 * statistics.median(ts), "blocks": len(ts),
                     "ratio_to_now": statistics.median(ratios) if ratios else None,
                     "ratio_iqr": _iqr(ratios), "peak_mib": peaks[name] / 2**20 if cuda else None})
    info = steppers["all"].s["info"]
    return {"task": f"resnet18-cifar10 at {profile}, batch {steppers['now'].s['profile'].batch_size}",
            "blocks_of_steps": block, "rounds": rounds, "rows": rows,
            "compile": {"backend": compile_backend, "warm-up_s_with_compile": compile_s,
                        "graphs_compiled": info["_compile_counter"].graphs if info else None},
            "subset": steppers["now"].s["subset"]}


def _iqr(values: list[float]) -> list[float] | None:
    if len(values) < 2:
        return None
    q = statistics.quantiles(values, n=4)
    return [q[0], q[2]]


# -- 4. syncs per step -----------------------------------------------------------------------
LEAVES_DEVICE = ("__float__", "__int__", "__bool__", "item", "tolist", "numpy")


@contextlib.contextmanager
def counted_transfers() -> Iterator[dict[str, int]]:
    counts = {"host_to_device": 0, "device_to_host": 0}
    originals = {name: getattr(torch.Tensor, name) for name in LEAVES_DEVICE}
    to, as_tensor = torch.Tensor.to, torch.as_tensor

    def read(name: str) -> Callable[..., Any]:
        def wrapped(self: torch.Tensor, *a: Any, **k: Any) -> Any:
            counts["device_to_host"] += 1
            return originals[name](self, *a, **k)
        return wrapped

    def counted_to(self: torch.Tensor, *a: Any, **k: Any) -> Any:
        if self.device.type == "cpu" and (k.get("device") is not None or any(
                isinstance(x, torch.device | str) for x in a)):
            counts["host_to_device"] += 1
        return to(self, *a, **k)

    def counted_as_tensor(data: Any, *a: Any, **k: Any) -> Any:
        if k.get("device") is not None:
            counts["host_to_device"] += 1
        return as_tensor(data, *a, **k)

    for name in LEAVES_DEVICE:
        setattr(torch.Tensor, name, read(name))
    torch.Tensor.to, torch.as_tensor = counted_to, counted_as_tensor
    try:
        yield counts
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)
        torch.Tensor.to, torch.as_tensor = to, as_tensor


def syncs(device: torch.device, quick: bool, budget: Budget) -> dict[str, Any]:
    profile = "smoke" if quick else "paper"
    steps = 4 if quick else 20
    rows = []
    for pipeline in ("before", "now"):
        setup = build("resnet18-cifar10", profile, "fixed", {"lr": 0.05}, device)
        wl = setup["workload"]
        st = Stepper(setup, endless(lambda g, wl=wl, p=pipeline: legacy_batches(wl, g) if p == "before"
                                    else wl.train_batches(g)))
        st.steps(1)  # the epoch's packed copy and the constants: once, not per step
        reported = None
        with counted_transfers() as counts:
            if device.type == "cuda":
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    try:
                        st.steps(steps)
                    finally:
                        torch.cuda.set_sync_debug_mode("default")
                reported = sum("synchroniz" in str(w.message) for w in caught) / steps
            else:
                st.steps(steps)
        rows.append({"pipeline": pipeline, "host_to_device_per_step": counts["host_to_device"] / steps,
                     "device_to_host_per_step": counts["device_to_host"] / steps,
                     "cuda_sync_debug_per_step": reported})
    return {"what": f"resnet18-cifar10 at {profile}, fixed LR, {steps} steps within an epoch", "rows": rows}


# -- 5. paper epochs -------------------------------------------------------------------------
def paper_epochs(device: torch.device, quick: bool, budget: Budget) -> dict[str, Any]:
    profile = "smoke" if quick else "paper"
    names = [n for n, t in tasks().items() if t.kind == "image"]
    rows = []
    for i, name in enumerate(names):
        share = budget.left() / max(len(names) - i, 1) - 5
        if share < 5:
            rows.append({"task": name, "skipped": "time budget"})
            continue
        try:
            setup = build(name, profile, "fixed", {"lr": 0.05}, device)
        except MissingDataError as exc:
            rows.append({"task": name, "skipped": str(exc).splitlines()[0][:200]})
            continue
        wl, epoch = setup["workload"], setup["steps_per_epoch"]
        st = Stepper(setup, endless(wl.train_batches))
        warm = 1 if quick else 5
        st.steps(warm)
        sync(device)
        t0 = time.perf_counter()
        probe = 2 if quick else 10
        st.steps(probe)
        sync(device)
        per_step = (time.perf_counter() - t0) / probe
        full = not quick and per_step * epoch < share
        if full:
            sync(device)
            t0 = time.perf_counter()
            st.steps(epoch)
            sync(device)
            seconds = time.perf_counter() - t0
        else:
            seconds = per_step * epoch
        rows.append({"task": name, "steps_per_epoch": epoch, "s_per_epoch": seconds, "timed": "full epoch" if full
                     else f"{probe} steps, extrapolated", "data": "subset repeated to the epoch length"
                     if setup["subset"] else ("smoke profile" if quick else "full dataset"),
                     "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None})
        del st, setup, wl
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
    r18 = next((r for r in rows if r["task"] == "resnet18-cifar10" and "s_per_epoch" in r), None)
    return {"profile": profile, "rows": rows, "target": "resnet18-cifar10 paper epoch <= 3 s",
            "met": None if quick or r18 is None else r18["s_per_epoch"] <= 3.0}


# -- 6. MLR-SNet meta-training ---------------------------------------------------------------
def mlrsnet_epoch(device: torch.device, quick: bool, budget: Budget) -> dict[str, Any]:
    profile = "smoke" if quick else "paper"
    setups = {"plain (fixed)": build("resnet18-cifar10", profile, "fixed", {"lr": 0.05}, device),
              "MLR-SNet meta-training": build("resnet18-cifar10", profile, "mlrsnet", {}, device)}
    steppers = {k: Stepper(s, endless(s["workload"].train_batches)) for k, s in setups.items()}
    epoch = setups["plain (fixed)"]["steps_per_epoch"]
    n = 4 if quick else epoch
    for st in steppers.values():
        st.steps(2)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in steppers}
    for r in range(2):
        for name in (list(steppers) if r == 0 else list(steppers)[::-1]):
            if budget.left() < 10:
                break
            sync(device)
            t0 = time.perf_counter()
            steppers[name].steps(n)
            sync(device)
            times[name].append((time.perf_counter() - t0) / n * epoch)
    ratio = [m / p for m, p in zip(times["MLR-SNet meta-training"], times["plain (fixed)"], strict=False)]
    t_val = setups["MLR-SNet meta-training"]["method"].extra_info().get("t_val")
    return {"profile": profile, "steps_per_epoch": epoch, "timed_steps": n, "t_val": t_val,
            "s_per_epoch": {k: statistics.median(v) if v else None for k, v in times.items()},
            "ratio": statistics.median(ratio) if ratio else None, "target": "<= 1.2x",
            "met": None if quick or not ratio else statistics.median(ratio) <= 1.2}


SECTIONS: dict[str, Callable[[torch.device, bool, Budget], dict[str, Any]]] = {
    "equality": equality, "resume": resume, "step_timing": step_timing, "syncs": syncs,
    "paper_epochs": paper_epochs, "mlrsnet_epoch": mlrsnet_epoch,
}


def markdown(report: dict[str, Any]) -> str:
    out = [f"# GPU check ({report['device_name']})", "",
           f"{report['started']} · torch {report['torch']} · CUDA {report.get('cuda')} · cuDNN "
           f"{report.get('cudnn')} · quick={report['quick']} · {report['wall_s']:.0f} s of "
           f"{report['budget_s']:.0f} s", f"Command: `{report['command']}`", ""]
    for name, section in report["sections"].items():
        out.append(f"## {name}")
        out.append("")
        if "error" in section:
            out += [f"FAILED: {section['error']}", ""]
            continue
        for key, value in section.items():
            if key != "rows":
                out.append(f"- {key}: {json.dumps(value, default=str)}")
        rows = section.get("rows") or []
        if rows:
            keys = list(dict.fromkeys(k for r in rows for k in r))
            out.append("")
            out.append("| " + " | ".join(keys) + " |")
            out.append("|" + "---|" * len(keys))
            for r in rows:
                out.append("| " + " | ".join(_cell(r.get(k)) for k in keys) + " |")
        out.append("")
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "-".join(_cell(v) for v in value)
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (a dry run)")
    ap.add_argument("--quick", action="store_true", help="smoke-size models and a few steps (CI)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="seconds for the whole check (default 450)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--out", default=str(RESULTS), help="folder for gpu_check_<device>.json / .md")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLRSNET_CHECKPOINTS", str(REPO.parent / "shared" / "reference" / "official-mlrsnet"))
    device = pick_device(args.device)
    torch.manual_seed(0)
    budget = Budget(args.budget_s)
    started = time.monotonic()
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or "cpu", "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "threads": torch.get_num_threads(), "quick": args.quick, "budget_s": args.budget_s,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None, "sections": {},
    }
    for name in [s.strip() for s in args.sections.split(",") if s.strip()]:
        t0 = time.monotonic()
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        try:
            report["sections"][name] = SECTIONS[name](device, args.quick, budget)
        except Exception as exc:  # noqa: BLE001 - one failing section does not hide the others
            report["sections"][name] = {"error": f"{type(exc).__name__}: {exc}",
                                        "traceback": traceback.format_exc(limit=6)}
        report["sections"][name]["seconds"] = round(time.monotonic() - t0, 1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["wall_s"] = time.monotonic() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_check_{device.type}" + ("_quick" if args.quick else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    (out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    failed = [n for n, s in report["sections"].items() if "error" in s or s.get("ok") is False]
    print(f"gpu_check: wrote {out / stem}.json and .md in {report['wall_s']:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
