"""What MLR-SNet costs on top of plain SGD, measured side by side in one process.

1. Transfer: time per training step with ``mlrsnet-transfer`` (frozen MLR-SNet, one tiny
   LSTM step on the CPU per training step) vs ``fixed``.  Target: ratio <= 1.02.
2. Meta step: the extra time of one meta update (look-ahead direction, meta batch forward
   and backward at ``w - lr * d``, Adam on MLR-SNet) in units of a plain training step.
   Measured on ``mlrsnet`` with ``t_val=1`` (every step a meta step) as the time inside
   ``lr()`` (the meta update plus the one tiny LSTM step every MLR-SNet step takes) over the
   rest of the step.  Target: <= 1.5 (the official implementation's costs about 3.4).
3. Meta-training end to end at ``t_val=300`` vs plain SGD over the same steps.  Target:
   ratio <= 1.02.  The mini profile has fewer than 300 steps per epoch, so the steps are
   numbered as in the paper's epochs (383 steps, one meta update per epoch at step 300);
   the batches are the task's own, cycled.

Every variant trains its own copy of the same initial model on the same batches, in
interleaved blocks so that drift in machine load hits all variants alike.  Besides total
times, ratios are reported as the median over blocks of (variant block time / fixed block
time of the same round), which a loaded shared machine disturbs far less; the end-to-end
figure of part 3 is that paired median plus the measured meta-update time spread over the
steps (the one block that holds the meta update is otherwise an outlier the median drops).  Every
variant is set up and stepped by the training loop's own functions (``mlrsnet.harness.step``:
``start_run``, then the forward pass and ``train_step``); the time inside ``method.lr`` is
measured by wrapping it.

Run:  MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/perf/mlrsnet_overhead.py \
          [--task resnet18-cifar10] [--profile mini] [--device cpu] [--steps 383] \
          [--checkpoints official --checkpoint-dir DIR]
Prints a table (and ``--json PATH`` writes the numbers); nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

from mlrsnet.harness.contract import Method, StepInfo, profile_scale
from mlrsnet.harness.experiment import Cell, resolved_profile
from mlrsnet.harness.loop import pick_device
from mlrsnet.harness.registry import get_method
from mlrsnet.harness.step import start_run, train_step
from mlrsnet.paper.models import build_model
from mlrsnet.paper.tasks import get_task
from mlrsnet.paper.workloads import BatchStats, make_workload

PAPER_STEPS_PER_EPOCH = 383


class Variant:
    """One method training its own copy of the model."""

    def __init__(self, label: str, method: Method, model: torch.nn.Module, wl: Any, task: Any,
                 profile: Any, cell: Cell, device: torch.device, steps_per_epoch: int, epochs: int) -> None:
        self.label, self.method, self.model, self.wl = label, method, model, wl
        run = start_run(method, model, task=task, workload=wl, scale=profile_scale(profile), epochs=epochs,
                        seed=cell.seed, device=device, steps_per_epoch=steps_per_epoch)
        self.params, self.optimizer = run.params, run.optimizer
        self.clip = task.optim.clip_grad_norm
        self.steps_per_epoch = steps_per_epoch
        self.carry = wl.start_epoch(model)
        self.stats = BatchStats()
        self.step_index = 0
        self.seconds = 0.0
        self.steps = 0
        self.blocks: list[float] = []
        self.lr_seconds = 0.0  # time inside method.lr(): what the method adds to a step
        self.device = device
        lr_hook = method.lr

        def timed_lr(step: StepInfo) -> float:  # an instance attribute: train_step calls it
            sync(device)
            t0 = time.perf_counter()
            lr = lr_hook(step)
            sync(device)
            self.lr_seconds += time.perf_counter() - t0
            return lr

        method.lr = timed_lr  # type: ignore[method-assign]

    def train_step(self, batch: Any) -> None:
        s = self.step_index
        loss, self.carry = self.wl.loss(self.model, batch, self.carry, self.stats)
        info = StepInfo(step=s, epoch=s // self.steps_per_epoch,
                        index_in_epoch=s % self.steps_per_epoch, loss=loss)
        train_step(self.method, info, self.params, self.optimizer, self.clip)
        self.step_index += 1

    def run_block(self, batches: list[Any], device: torch.device) -> None:
        sync(device)
        t0 = time.perf_counter()
        for batch in batches:
            self.train_step(batch)
        sync(device)
        elapsed = time.perf_counter() - t0
        self.seconds += elapsed
        self.steps += len(batches)
        self.blocks.append(elapsed)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cycled_batches(wl: Any, seed: int) -> Iterator[Any]:
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield from wl.train_batches(gen)


def build(args: argparse.Namespace, device: torch.device) -> tuple[Any, ...]:
    cell = Cell(task=args.task, profile=args.profile, method="fixed", seed=0)
    # the split MLR-SNet meta-trains on (its meta batches are held out), for every variant
    task, profile = get_task(cell.task), resolved_profile(cell, get_method("mlrsnet"))
    torch.manual_seed(cell.seed)
    wl = make_workload(task, profile, device)
    model = build_model(task.arch, num_classes=wl.num_outputs, **profile.model_kwargs).to(device)
    return cell, task, profile, wl, model


def interleave(variants: list[Variant], batches: Iterator[Any], steps: int, block: int,
               device: torch.device) -> None:
    for r, done in enumerate(range(0, steps, block)):
        chunk = list(itertools.islice(batches, min(block, steps - done)))
        shift = r % len(variants)  # rotate the order: no variant always runs first or last
        for v in variants[shift:] + variants[:shift]:
            v.run_block(chunk, device)


def meta_step_cost(args: argparse.Namespace, device: torch.device, repeats: int) -> tuple[float, float]:
    """(seconds of one meta update, seconds of one plain step), medians over ``repeats``."""
    cell, task, profile, wl, model = build(args, device)
    method = get_method("mlrsnet")(t_val=1)  # every step is a meta step
    v = Variant("mlrsnet", method, model, wl, task, profile, cell, device, wl.steps_per_epoch, profile.epochs)
    batches = cycled_batches(wl, 0)
    plain_times, meta_times = [], []
    for _ in range(2):  # warm-up
        v.train_step(next(batches))
    for _ in range(repeats):
        batch = next(batches)
        in_lr = v.lr_seconds
        sync(device)
        t0 = time.perf_counter()
        v.train_step(batch)
        sync(device)
        meta = v.lr_seconds - in_lr  # the meta update (and one tiny LSTM step)
        meta_times.append(meta)
        plain_times.append(time.perf_counter() - t0 - meta)
    return statistics.median(meta_times), statistics.median(plain_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="resnet18-cifar10")
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=383,
                        help="steps per variant in parts 1 and 3 (383: one paper epoch, one meta update)")
    parser.add_argument("--block", type=int, default=20, help="steps per interleaved block")
    parser.add_argument("--repeats", type=int, default=10, help="meta updates timed in part 2")
    parser.add_argument("--checkpoints", default="ours")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    # 1 + 3: fixed, transfer, and meta-training at t_val=300 on identical models and batches
    cell, task, profile, wl, model = build(args, device)
    spe = PAPER_STEPS_PER_EPOCH
    epochs = max(1, -(-args.steps // spe))
    variants = [
        Variant("fixed", get_method("fixed")(), copy.deepcopy(model), wl, task, profile, cell, device, spe, epochs),
        Variant("mlrsnet-transfer", get_method("mlrsnet-transfer")(
            checkpoints=args.checkpoints, checkpoint_dir=args.checkpoint_dir),
            copy.deepcopy(model), wl, task, profile, cell, device, spe, epochs),
        Variant("mlrsnet (t_val=300)", get_method("mlrsnet")(t_val=300), copy.deepcopy(model), wl, task,
                profile, cell, device, spe, epochs),
    ]
    batches = cycled_batches(wl, 0)
    interleave(variants, batches, 2 * args.block, args.block, device)  # warm-up, not counted
    for v in variants:
        v.seconds, v.steps, v.blocks, v.lr_seconds = 0.0, 0, [], 0.0
    meta_before = variants[2].method.meta_updates
    interleave(variants, batches, args.steps, args.block, device)
    per_step = {v.label: v.seconds / v.steps for v in variants}
    meta_updates = variants[2].method.meta_updates - meta_before
    # Paired per-block ratios (same batches, same moment): robust to drifting machine load.
    paired = {v.label: statistics.median(b / f for b, f in zip(v.blocks, variants[0].blocks, strict=True))
              for v in variants}

    # 2: one meta update in units of a plain step
    meta_s, plain_s = meta_step_cost(args, device, args.repeats)

    base = per_step["fixed"]
    meta_label = "mlrsnet (t_val=300)"
    # End to end, robust form: the paired median (ordinary steps, LSTM included) plus the
    # measured meta updates spread over the run.
    composed = paired[meta_label] + meta_updates * meta_s / (base * args.steps)
    # Accounting form: the time spent inside method.lr() (all a method adds to a step, the
    # meta update included), relative to a plain step; insensitive to load on the rest.
    fixed_v = variants[0]
    accounted = {v.label: 1 + (v.lr_seconds - fixed_v.lr_seconds) / fixed_v.seconds for v in variants}
    rows = [
        ("transfer / fixed, time per step (time inside lr() over a plain step)",
         accounted["mlrsnet-transfer"], "<= 1.02"),
        ("transfer / fixed, time per step (paired median of blocks)", paired["mlrsnet-transfer"], "<= 1.02"),
        ("transfer / fixed, total time", per_step["mlrsnet-transfer"] / base, "<= 1.02"),
        ("meta update / plain step", meta_s / plain_s, "<= 1.5"),
        (f"meta-training t_val=300 / fixed, end to end ({meta_updates} meta update"
         f"{'s' if meta_updates != 1 else ''} in {args.steps} steps): paired median + meta cost",
         composed, "<= 1.02"),
        ("meta-training t_val=300 / fixed, end to end (time inside lr() over plain steps)",
         accounted[meta_label], "<= 1.02"),
        ("meta-training t_val=300 / fixed, total time", per_step[meta_label] / base, "<= 1.02"),
    ]
    print(f"task {args.task} / {args.profile} on {device}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps per variant")
    for v in variants:
        print(f"  {v.label:<24} {1000 * per_step[v.label]:8.2f} ms/step, of which "
              f"{1000 * v.lr_seconds / v.steps:6.3f} ms in lr()")
    print(f"  one meta update          {1000 * meta_s:8.2f} ms   (plain step {1000 * plain_s:.2f} ms)")
    print(f"\n  {'measure':<96} {'value':>7}  target")
    for label, value, target in rows:
        print(f"  {label:<96} {value:7.3f}  {target}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"task": args.task, "profile": args.profile, "device": str(device),
                       "steps": args.steps, "ms_per_step": {k: 1000 * s for k, s in per_step.items()},
                       "meta_update_ms": 1000 * meta_s, "plain_step_ms": 1000 * plain_s,
                       "paired_median_ratios": paired, "accounted_ratios": accounted,
                       "lr_ms_per_step": {v.label: 1000 * v.lr_seconds / v.steps for v in variants},
                       "ratios": {label: value for label, value, _ in rows}}, fh, indent=2)


if __name__ == "__main__":
    main()
