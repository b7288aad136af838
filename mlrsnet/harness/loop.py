"""The one training loop.

Every method (schedules, MLR-SNet, HD, L4, RTHO, Meta-SGD) runs through :func:`train`;
the loop only calls the :class:`~mlrsnet.harness.contract.Method` hooks, through
:func:`~mlrsnet.harness.step.start_run` (set-up) and :func:`~mlrsnet.harness.step.workload_step`
(a batch through the workload's loss, then :func:`~mlrsnet.harness.step.train_step`: the
contract's call order), and the workload hides the modality.  The loop checkpoints itself at
each epoch end (model, optimiser, method state, RNG states, the held-out source's position
and the rows so far), so an interrupted run resumes to the same result it would have
produced uninterrupted.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import BatchStats, EpochMetrics, Method, profile_scale
from mlrsnet.harness.execution import backend_flags, pick_device, prepare_model, requested
from mlrsnet.harness.experiment import Cell, resolved_profile
from mlrsnet.harness.files import atomic_write
from mlrsnet.harness.method_state import check_resumed, fingerprint
from mlrsnet.harness.registry import get_method, get_task
from mlrsnet.harness.step import first_non_finite, host_losses, start_run, workload_step


@dataclass
class RunResult:
    status: str  # finished | diverged
    epochs: list[dict[str, Any]] = field(default_factory=list)  # rows: epoch, split, metric, value
    #: the step trace; ``epoch`` is the epoch the step was taken in, counted from 1 like ``epochs``
    steps: dict[str, list[Any]] = field(default_factory=lambda: {"step": [], "epoch": [], "lr": [], "loss": []})
    diverged_step: int | None = None
    #: why the run diverged at ``diverged_step`` (the value that was not finite)
    diverged_reason: str | None = None
    method_info: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    device: str = "cpu"

    def final(self, split: str, metric: str) -> float | None:
        vals = [r["value"] for r in self.epochs if r["split"] == split and r["metric"] == metric]
        return vals[-1] if vals else None


def checkpoint_steps(ck: dict[str, Any]) -> dict[str, list[Any]]:
    """An epoch checkpoint's step trace with ``epoch`` counted from 1, as the ``steps`` table
    counts it; checkpoints written before that (no ``steps_epoch_from``) counted from 0."""
    steps = ck["steps"]
    if ck.get("steps_epoch_from", 0) == 1:
        return steps
    return {**steps, "epoch": [e + 1 for e in steps["epoch"]]}


def divergence_reason(lr: float, loss: float | Any) -> str:
    """Which value of the step was not finite: the training loss (checked first, as
    :func:`~mlrsnet.harness.step.train_step` does) or the LR the method chose."""
    value = float(loss) if not isinstance(loss, torch.Tensor) else float(loss.detach())
    if not math.isfinite(value):
        return f"training loss {value} (not finite)"
    return f"the method's LR {lr} (not finite)"


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves a torn checkpoint nor shares a temp file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


#: The keys every epoch checkpoint of this suite holds.
CHECKPOINT_KEYS = frozenset({"epoch", "model", "optimizer", "method", "torch_rng", "generator",
                             "meta_rng", "epochs", "steps"})


def load_epoch_checkpoint(path: Path, run_id: str) -> dict[str, Any]:
    """An epoch checkpoint, read onto the CPU with torch's weights-only unpickler.

    A checkpoint holds tensors, numbers, strings and containers of them only, so the
    weights-only unpickler reads every one this suite writes (no allow-list is needed); a
    file that needs more (a planted pickle payload: ``results/`` may come from elsewhere) is
    refused, never executed.  Everything comes back on the CPU: the caller puts each piece
    where it belongs (``map_location=<training device>`` made the RNG states CUDA tensors,
    which ``torch.set_rng_state`` refuses, and moved the MLR-SNet and Meta-SGD states, which
    live on the CPU, to the GPU)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torn, truncated, foreign or unsafe: torch's own advice does not apply
        ck = None
    if not isinstance(ck, dict) or not CHECKPOINT_KEYS <= set(ck):
        raise UserError(
            f"the epoch checkpoint {path} of run {run_id} is damaged or is not a checkpoint of "
            "this suite (it cannot be resumed from, and it was not unpickled beyond tensors and "
            "plain values); delete it to train the run from the start, or re-run with --force") from None
    return ck


def rng_states(dev: torch.device, generator: torch.Generator,
               meta_generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The RNG states an epoch checkpoint keeps: torch's global CPU generator, the run's
    batch and held-out generators and, on a CUDA device, that device's generator (dropout
    masks and other draws on the GPU)."""
    out = {"torch_rng": torch.get_rng_state(), "generator": generator.get_state(),
           "meta_rng": meta_generator.get_state()}
    if dev.type == "cuda":
        out["cuda_rng"] = torch.cuda.get_rng_state(dev)
    return out


def restore_rng_states(ck: dict[str, Any], dev: torch.device, generator: torch.Generator,
                       meta_generator: torch.Generator) -> None:
    """Put back what :func:`rng_states` saved, as CPU ByteTensors (what the generators take);
    a CUDA state is restored on a CUDA device only (a CPU checkpoint has none)."""
    torch.set_rng_state(_byte_state(ck["torch_rng"]))
    generator.set_state(_byte_state(ck["generator"]))
    meta_generator.set_state(_byte_state(ck["meta_rng"]))
    if dev.type == "cuda" and ck.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(_byte_state(ck["cuda_rng"]), dev)


def _byte_state(state: torch.Tensor) -> torch.Tensor:
    return state.to(device="cpu", dtype=torch.uint8)


def _progress(total: int, desc: str, quiet: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())


def train(
    cell: Cell,
    *,
    data_dir: str | None = None,
    device: str | torch.device | None = None,
    quiet: bool = True,
    checkpoint_path: Path | None = None,
    artifact_dir: str | Path | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    method_class: type[Method] | None = None,
    test_epochs: Collection[int] | None = None,
) -> RunResult:
    """Train one cell; returns its curves.  ``on_epoch`` sees each epoch's metrics (Ray Tune
    reports through it).  ``method_class``: the class to run instead of the registered
    ``cell.method`` (the conformance suite runs a plug-in file, or a probe of a method).

    The execution options in force (:mod:`mlrsnet.harness.execution`: precision,
    channels-last, compile, cuDNN flags) apply to the model and are recorded in
    ``method_info``.  ``test_epochs``: the epochs (from 1) after which the test split is
    evaluated (default: every epoch); a search trial whose objective is the held-out
    metric evaluates it only where the trial can end (its last epoch, BOHB's rungs), which
    changes nothing in training (evaluation draws no random numbers and moves no state, and
    no method sees test metrics)."""
    started = time.perf_counter()
    task = get_task(cell.task)
    cls = method_class if method_class is not None else get_method(cell.method)
    method: Method = cls(**dict(cell.hparams))
    profile = resolved_profile(cell, cls)
    dev = device if isinstance(device, torch.device) else pick_device(
        device, expects_gpu=bool(getattr(profile, "expects_gpu", False)),
        what=f"{cell.task} at profile {cell.profile}")
    options = requested()
    asked = [flag for flag, on in (("--compile", options["compile"]),
                                   ("--precision bf16", options["precision"] != "fp32")) if on]
    if asked and getattr(method, "differentiates_gradient", False):
        raise UserError(f"{' and '.join(asked)} cannot train {cell.method!r}: it differentiates the "
                        "training gradient (double backward through its own fp32 second-order passes), "
                        "which neither torch.compile's AOTAutograd nor bf16 autocast supports; run it "
                        "without them")
    with backend_flags(options if dev.type == "cuda" else {}):
        return _train(cell, task, method, profile, dev, options, data_dir=data_dir, quiet=quiet,
                      checkpoint_path=checkpoint_path, artifact_dir=artifact_dir, on_epoch=on_epoch,
                      test_epochs=test_epochs, started=started)


def _train(cell: Cell, task: Any, method: Method, profile: Any, dev: torch.device, options: dict[str, Any], *,
           data_dir: str | None, quiet: bool, checkpoint_path: Path | None, artifact_dir: str | Path | None,
           on_epoch: Callable[[int, dict[str, float]], None] | None, test_epochs: Collection[int] | None,
           started: float) -> RunResult:
    torch.manual_seed(cell.seed)
    generator = torch.Generator().manual_seed(cell.seed)
    meta_generator = torch.Generator().manual_seed(cell.seed + 1)
    workload, model = task.build(profile, dev, data_dir)
    model, speed = prepare_model(model, task.kind, dev, options)
    compiled = speed.pop("_compile_counter")
    run = start_run(method, model, task=task, workload=workload, scale=profile_scale(profile),
                    epochs=profile.epochs, seed=cell.seed, device=dev, meta_generator=meta_generator,
                    artifact_dir=artifact_dir)
    params, optimizer = run.params, run.optimizer
    run_owned = [model, optimizer, *params]  # restored by the loop, not by the method

    result = RunResult(status="finished", device=str(dev))
    start_epoch = 0
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        ck = load_epoch_checkpoint(Path(checkpoint_path), cell.run_id)
        # each piece where it belongs: the model's and the optimiser's tensors are copied to
        # the parameters' device by their load_state_dict, a method places its own state (the
        # MLR-SNet and Meta-SGD states stay on the CPU, HD/L4/RTHO buffers go to the
        # parameters' device), the RNG states stay CPU ByteTensors
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        method.load_state_dict(ck["method"])
        if ck.get("method_fingerprint") is not None:  # the state_dict restored all of the method
            check_resumed(method, ck["method_fingerprint"], fingerprint(method, run_owned))
        restore_rng_states(ck, dev, generator, meta_generator)
        result.epochs, result.steps = ck["epochs"], checkpoint_steps(ck)
        if ck.get("meta_batches") is not None and run.held_out is not None:
            run.held_out.batches.load_state_dict(ck["meta_batches"])
        start_epoch = ck["epoch"] + 1

    clip = task.optim.clip_grad_norm
    step = start_epoch * workload.steps_per_epoch
    bar = _progress(profile.epochs * workload.steps_per_epoch, f"{cell.task}/{cell.method}", quiet)
    bar.update(step)
    try:
        for epoch in range(start_epoch, profile.epochs):
            model.train()
            carry = workload.start_epoch(model)
            stats = BatchStats()
            taken: list[tuple[int, float, Any]] = []  # (step, lr, loss) of this epoch
            for i, batch in enumerate(workload.train_batches(generator)):
                carry, (lr, loss_value, diverged) = workload_step(
                    workload, model, batch, carry, stats, method, params, optimizer, clip,
                    step=step, epoch=epoch, index=i)
                taken.append((step, lr, loss_value))
                if diverged:
                    result.status, result.diverged_step = "diverged", step
                    result.diverged_reason = divergence_reason(lr, loss_value)
                    break
                step += 1
                if i % 10 == 0 and isinstance(loss_value, float):  # no wait for the device
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.3f}", lr=f"{lr:.3g}", refresh=False)
                bar.update(1)
            # The epoch's trace, moved to the host at once (one transfer for device losses).
            losses = host_losses([loss_value for _, _, loss_value in taken])
            bad = first_non_finite(losses)
            if bad is not None and result.status != "diverged":  # found after the fact
                taken = [*taken[:bad], (taken[bad][0], float("nan"), None)]
                result.status, result.diverged_step = "diverged", taken[bad][0]
                result.diverged_reason = divergence_reason(float("nan"), losses[bad])
            for (s_, lr_, _), loss_ in zip(taken, losses, strict=False):
                for key, val in (("step", s_), ("epoch", epoch + 1), ("lr", lr_), ("loss", loss_)):
                    result.steps[key].append(val)
            if result.status == "diverged":
                break
            metrics = {f"train/{k}": v for k, v in workload.summarize(stats).items()}
            for split in ("val", "test"):
                if split == "test" and test_epochs is not None and epoch + 1 not in test_epochs:
                    continue
                metrics.update({f"{split}/{k}": v for k, v in workload.evaluate(model, split).items()})
            for key, value in metrics.items():
                split, metric = key.split("/")
                result.epochs.append({"epoch": epoch + 1, "split": split, "metric": metric, "value": float(value)})
            method.end_epoch(epoch, EpochMetrics(
                {k: v for k, v in metrics.items() if k.startswith("train/")
                 or (method.uses_held_out and k.startswith("val/"))},
                method=method.name, held_out=method.uses_held_out))
            # every epoch, the last included: a failure while the results are written then
            # costs nothing on resume (the executor deletes the checkpoint once they are)
            if checkpoint_path is not None:
                _save_atomic({
                    "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "method": method.state_dict(), "method_fingerprint": fingerprint(method, run_owned),
                    **rng_states(dev, generator, meta_generator),
                    "epochs": result.epochs, "steps": result.steps, "steps_epoch_from": 1,
                    # where the held-out source stands (e.g. its shuffled pass), if it keeps state
                    "meta_batches": getattr(run.held_out and run.held_out.batches, "state_dict", lambda: None)(),
                    # what the run reads: a trial stopped early is recorded from here
                    "data_source": workload.data_source,
                }, Path(checkpoint_path))
            if on_epoch is not None:  # after the checkpoint: a callback may stop the run
                on_epoch(epoch + 1, metrics)
    finally:
        bar.close()
    if speed["compile"]:
        speed["compiled_graphs"] = compiled.graphs
    result.method_info = {**method.extra_info(), **speed, "steps_per_epoch": workload.steps_per_epoch,
                          "data": workload.data_source, "sizes": workload.sizes,
                          "params": sum(p.numel() for p in params)}
    result.wall_time_s = time.perf_counter() - started
    return result
