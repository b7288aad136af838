"""What HD, L4, RTHO and MARTHE cost per training step on top of plain SGD with a fixed LR.

Every method trains its own copy of the same initial model on the same batches, in
interleaved blocks so that drift in machine load hits all of them alike.  Each run is set up
and stepped by the training loop's own functions (``mlrsnet.harness.step``: ``start_run``,
then the forward pass and ``train_step``); the time inside the method's hooks (``backward``,
``lr``, ``direction``, ``after_step``) is measured by wrapping them.  RTHO gets the task's
held-out batches and makes its hyper-steps at the paper profile's interval (every 100 steps,
on the whole held-out set), so its row is the per-step cost of the tangent as the paper runs it;
MARTHE runs its defaults (adatune's: a hyper-step on one held-out batch after every step).

Targets (time per step relative to ``fixed``): HD <= 1.05, L4 <= 1.05, RTHO <= 3.
The "via own" column is the fixed step plus the method's extra time in ``lr``, ``direction``
and ``after_step`` (its backward excluded): the cost of HD's and L4's own arithmetic, which
load drift on a shared machine hardly touches (for RTHO/MARTHE it leaves out their backward).

Run:  MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/perf/adaptive_overhead.py \\
          [--task resnet18-cifar10] [--profile mini] [--device cpu] [--steps 200] [--block 10] \\
          [--methods hd l4-mom l4-adam rtho marthe] [--threads N] [--json PATH]
Prints a table (``--json PATH`` also writes the numbers); nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
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

#: (label, method name, hparams, target ratio to ``fixed``)
VARIANTS: list[tuple[str, str, dict[str, Any], float | None]] = [
    ("fixed", "fixed", {"lr": 0.05}, None),
    ("hd", "hd", {}, 1.05),
    ("l4-mom", "l4-mom", {}, 1.05),
    ("l4-adam", "l4-adam", {}, 1.05),
    # the paper profile's interval (the short profiles' default hyper-steps every few steps);
    # target revised to 3.5x (issue 23): the exact Hessian-vector product through a
    # convolution costs about twice the first-order work
    ("rtho", "rtho", {"update_every": 100}, 3.5),
    # adatune's defaults: a hyper-step on one held-out batch after every step
    ("marthe", "marthe", {}, None),
]

#: The method hooks whose time is a method's own cost (RTHO's Hessian-vector product is in
#: ``direction``).
HOOKS = ("backward", "lr", "direction", "after_step")


class TimedRun:
    """One method training its own model copy, timed block by block."""

    def __init__(self, label: str, method: Method, model: torch.nn.Module, workload: Any, task: Any,
                 cell: Cell, epochs: int, device: torch.device) -> None:
        self.label, self.method, self.model, self.workload = label, method, model, workload
        run = start_run(method, model, task=task, workload=workload, scale=profile_scale(resolved_profile(cell)),
                        epochs=epochs,
                        seed=cell.seed, device=device)
        self.params, self.optimizer = run.params, run.optimizer
        self.clip = task.optim.clip_grad_norm
        self.steps_per_epoch = run.horizon.steps_per_epoch
        self.carry = workload.start_epoch(model)
        self.stats = BatchStats()
        self.step_index = 0
        self.seconds = 0.0
        self.timed_steps = 0
        self.lrs: list[float] = []
        #: Seconds inside the method's hooks (backward, lr, direction, after_step).
        self.hook_seconds = 0.0
        self._hooks_in_block = 0.0
        #: The same without backward (the method's own arithmetic: lr, direction, after_step).
        self.own_seconds = 0.0
        self._own_in_block = 0.0
        for hook in HOOKS:
            self._time_hook(hook, device)

    def _time_hook(self, name: str, device: torch.device) -> None:
        """Replace ``method.<name>`` on the instance (``train_step`` calls it there) by a timed call."""
        hook = getattr(self.method, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            _sync(device)
            t0 = time.perf_counter()
            out = hook(*args, **kwargs)
            _sync(device)
            self._hooks_in_block += time.perf_counter() - t0
            if name != "backward":
                self._own_in_block += time.perf_counter() - t0
            return out

        setattr(self.method, name, timed)

    def step(self, batch: Any, device: torch.device) -> None:
        s = self.step_index
        loss, self.carry = self.workload.loss(self.model, batch, self.carry, self.stats)
        info = StepInfo(step=s, epoch=s // self.steps_per_epoch, index_in_epoch=s % self.steps_per_epoch,
                        loss=loss)
        result = train_step(self.method, info, self.params, self.optimizer, self.clip)
        self.lrs.append(result.lr)
        self.step_index += 1

    def run_block(self, batches: list[Any], device: torch.device, timed: bool) -> None:
        _sync(device)
        self._hooks_in_block = self._own_in_block = 0.0
        t0 = time.perf_counter()
        for batch in batches:
            self.step(batch, device)
        _sync(device)
        if timed:
            self.seconds += time.perf_counter() - t0
            self.hook_seconds += self._hooks_in_block
            self.own_seconds += self._own_in_block
            self.timed_steps += len(batches)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _endless_batches(workload: Any, seed: int) -> Iterator[Any]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from workload.train_batches(generator)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = pick_device(args.device)
    cell = Cell(task=args.task, profile=args.profile, method="fixed", seed=0)
    # the split the held-out methods train on (RTHO, MARTHE), for every variant: same batches
    task, profile = get_task(cell.task), resolved_profile(cell, get_method("rtho"))
    torch.manual_seed(cell.seed)
    workload = make_workload(task, profile, device)
    model = build_model(task.arch, num_classes=workload.num_outputs, **profile.model_kwargs).to(device)
    chosen = [v for v in VARIANTS if v[0] == "fixed" or not args.methods or v[0] in args.methods]
    runs = [
        TimedRun(label, get_method(name)(**hparams), copy.deepcopy(model), workload, task, cell,
                 profile.epochs, device)
        for label, name, hparams, _ in chosen
    ]
    batches = _endless_batches(workload, 0)
    for k in range(0, args.warmup + args.steps, args.block):
        chunk = list(itertools.islice(batches, args.block))
        for run in (runs if k // args.block % 2 == 0 else runs[::-1]):  # alternate the order too
            run.run_block(chunk, device, timed=k >= args.warmup)
    per_step = {run.label: run.seconds / run.timed_steps for run in runs}
    hooks = {run.label: run.hook_seconds / run.timed_steps for run in runs}
    base = per_step["fixed"]
    # The same ratio from the hooks alone: the fixed step plus this method's extra hook time.
    # Less exposed to load drift, because only the differing part of the step is compared.
    from_hooks = {label: (base + hooks[label] - hooks["fixed"]) / base for label in per_step}
    own = {run.label: run.own_seconds / run.timed_steps for run in runs}
    from_own = {label: (base + own[label] - own["fixed"]) / base for label in per_step}
    return {
        "task": args.task, "profile": args.profile, "device": str(device),
        "threads": torch.get_num_threads(), "steps": args.steps, "warmup": args.warmup,
        "parameters": sum(p.numel() for p in model.parameters()),
        "ms_per_step": {label: 1000 * s for label, s in per_step.items()},
        "ratio_to_fixed": {label: s / base for label, s in per_step.items()},
        "hook_ms_per_step": {label: 1000 * s for label, s in hooks.items()},
        "ratio_from_hooks": from_hooks,
        "own_ms_per_step": {label: 1000 * s for label, s in own.items()},
        "ratio_from_own": from_own,
        "targets": {label: target for label, _, _, target in chosen if target is not None},
        "rtho_hyper_steps": sum(r.method.state_dict()["hyper_updates"] for r in runs if r.label == "rtho"),
        "final_lr": {run.label: run.lrs[-1] for run in runs},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="resnet18-cifar10")
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per method first")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    parser.add_argument("--methods", nargs="*", default=None,
                        help=f"subset of {[v[0] for v in VARIANTS[1:]]} (fixed always runs)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args)

    print(f"task {result['task']} / {result['profile']} on {result['device']}, {result['threads']} threads, "
          f"{result['parameters']:,} parameters, {result['steps']} timed steps per method "
          f"({result['rtho_hyper_steps']} RTHO hyper-steps in all)")
    print("  x fixed: end-to-end time per step; via hooks: fixed step + this method's extra time in")
    print("  backward/lr/direction/after_step (less exposed to load drift); via own: the same without")
    print("  backward (the method's own arithmetic)")
    print(f"  {'method':<10}{'ms/step':>10}{'hooks ms':>10}{'x fixed':>9}{'via hooks':>11}{'via own':>9}  target")
    for label, ms in result["ms_per_step"].items():
        target = result["targets"].get(label)
        ratio, via_hooks = result["ratio_to_fixed"][label], result["ratio_from_hooks"][label]
        verdict = "" if target is None else f"<= {target:g}  {'ok' if max(ratio, via_hooks) <= target else 'MISSED'}"
        print(f"  {label:<10}{ms:>10.2f}{result['hook_ms_per_step'][label]:>10.2f}{ratio:>9.3f}"
              f"{via_hooks:>11.3f}{result['ratio_from_own'][label]:>9.3f}  {verdict}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
