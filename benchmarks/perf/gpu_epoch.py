"""One paper-scale epoch per image task, and the three MLR-SNet costs, on the device at hand.

For a GPU (an H200 was the target: a ResNet-18/CIFAR-10 meta-training epoch in at most 3 s,
i.e. 200 epochs in 10 minutes).  Per image task of the registry at the ``paper`` profile:

* the real data where a full prepared dataset is present; otherwise the shared subset,
  whose batches are repeated until the paper's epoch length is reached (said in the table:
  the timing is right, the contents are a subset);
* the time of one epoch of the ``fixed`` method through the loop's own step
  (:func:`mlrsnet.harness.step.workload_step`), after ``--warmup`` steps;
* for ResNet-18/CIFAR-10 the three MLR-SNet costs: one meta-training step that makes a meta
  update (``t_val=1``) against a plain step, a transfer step (``mlrsnet-transfer``) against
  a plain step, and the full eval-mode training pass ``gamma`` needs (at the start of
  meta-training and at each transfer switch) as a share of the epoch.

``--steps N`` times N steps and extrapolates to the epoch (for a CPU check of the script);
``--compile`` and ``--channels-last`` time the model with those options.

Run:  .venv/bin/python benchmarks/perf/gpu_epoch.py [--device cuda] [--tasks resnet18-cifar10,...]
      [--steps N] [--warmup 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import replace
from typing import Any

import torch

from mlrsnet.harness.contract import BatchStats
from mlrsnet.harness.loop import pick_device
from mlrsnet.harness.registry import get_method, get_task, tasks
from mlrsnet.harness.step import start_run, workload_step
from mlrsnet.paper.data.locate import MissingDataError

#: Training images per paper epoch (the official loaders): CIFAR-10/100 50,000 less the
#: 1,000 held out by meta-training; SVHN 73,257; Tiny ImageNet 100,000.
PAPER_TRAIN = {"cifar10": 49_000, "cifar100": 49_000, "svhn": 73_257, "tinyimagenet": 100_000}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _setup(task_name: str, method: str, hparams: dict[str, Any], device: torch.device,
           compile_backend: str | None, channels_last: bool) -> tuple[Any, ...]:
    task = get_task(task_name)
    profile = task.profile("paper")
    subset = False
    try:
        workload, model = task.build(profile, device, None)
    except MissingDataError:
        profile = replace(profile, allow_mini_data=True)
        workload, model = task.build(profile, device, None)
        subset = True
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_backend:
        model.compile(backend=compile_backend)
    m = get_method(method)(**hparams)
    run = start_run(m, model, task=task, workload=workload, scale=profile.scale, epochs=profile.epochs,
                    seed=0, device=device)
    steps = math.ceil(PAPER_TRAIN.get(task.dataset, len(workload.y_train)) / profile.batch_size)
    return task, workload, model, m, run, steps, subset


def _batches(workload: Any, seed: int = 0) -> Any:
    gen = torch.Generator().manual_seed(seed)
    return itertools.chain.from_iterable(workload.train_batches(gen) for _ in itertools.count())


def time_steps(task: Any, workload: Any, model: Any, method: Any, run: Any, n: int, warmup: int,
               device: torch.device) -> float:
    """Seconds per step over ``n`` steps after ``warmup``."""
    stats, carry = BatchStats(), workload.start_epoch(model)
    model.train()
    source = _batches(workload)
    for k in range(warmup + n):
        if k == warmup:
            _sync(device)
            t0 = time.perf_counter()
        carry, _ = workload_step(workload, model, next(source), carry, stats, method, run.params, run.optimizer,
                                 task.optim.clip_grad_norm, step=k, epoch=0, index=k)
    _sync(device)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tasks", default=None, help="comma list (default: every image task)")
    ap.add_argument("--steps", type=int, default=None, help="time N steps and extrapolate (default: an epoch)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--compile", default=None, metavar="BACKEND", help="torch.compile the model (e.g. inductor)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    device = pick_device(args.device)
    names = args.tasks.split(",") if args.tasks else [n for n, t in tasks().items() if t.kind == "image"]
    rows = []
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"compile={args.compile}, channels_last={args.channels_last}")
    print(f"{'task':<28}{'steps/epoch':>12}{'s/step':>10}{'s/epoch':>10}  data")
    for name in names:
        try:
            task, wl, model, m, run, steps, subset = _setup(name, "fixed", {"lr": 0.05}, device,
                                                           args.compile, args.channels_last)
        except MissingDataError as exc:
            print(f"{name:<28} skipped: {str(exc).splitlines()[0]}")
            continue
        n = min(args.steps or steps, steps)
        per_step = time_steps(task, wl, model, m, run, n, args.warmup, device)
        data = "subset, repeated to the epoch length" if subset else "full dataset"
        rows.append({"task": name, "steps_per_epoch": steps, "s_per_step": per_step,
                     "s_per_epoch": per_step * steps, "timed_steps": n, "data": data})
        print(f"{name:<28}{steps:>12}{per_step:>10.4f}{per_step * steps:>10.1f}  {data}"
              + ("" if n == steps else f" (extrapolated from {n} steps)"))
        del wl, model, run
    if "resnet18-cifar10" in names:
        rows.append(mlrsnet_costs(device, args))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


def mlrsnet_costs(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """The meta update, the transfer step and the full training pass, against a plain step."""
    n = args.steps or 100
    out: dict[str, Any] = {"task": "resnet18-cifar10", "costs": {}}
    plain = None
    for label, method, hparams in (("plain step (fixed)", "fixed", {"lr": 0.05}),
                                   ("meta-training step with a meta update", "mlrsnet",
                                    {"t_val": 1, "initial_loss": 2.3}),
                                   ("transfer step", "mlrsnet-transfer",
                                    {"checkpoints": "ours", "gamma_loss": "recent-mean"})):
        task, wl, model, m, run, steps, subset = _setup("resnet18-cifar10", method, hparams, device,
                                                        args.compile, args.channels_last)
        per_step = time_steps(task, wl, model, m, run, n, args.warmup, device)
        plain = plain or per_step
        out["costs"][label] = {"s_per_step": per_step, "ratio": per_step / plain}
        print(f"MLR-SNet cost: {label:<40}{per_step:.4f} s/step, {per_step / plain:.3f}x a plain step")
        if method == "fixed":
            _sync(device)
            t0 = time.perf_counter()
            run.train_loss()
            _sync(device)
            seconds = time.perf_counter() - t0
            if subset:  # the pass covered the subset: scale it to the paper's training split
                seconds *= PAPER_TRAIN["cifar10"] / len(wl.y_train)
            share = seconds / (plain * steps)
            out["costs"]["full eval-mode training pass"] = {"s": seconds, "share_of_epoch": share}
            print(f"MLR-SNet cost: full eval-mode training pass {seconds:.2f} s = {share:.1%} of a "
                  f"paper epoch (once at the start of meta-training; at each of the 3 transfer stages)"
                  + (" (timed on the subset, scaled to 49,000 images)" if subset else ""))
    return out


if __name__ == "__main__":
    main()
