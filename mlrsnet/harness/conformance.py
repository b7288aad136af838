"""The conformance suite: the checks every method passes, built-in or plug-in.

One set of checks, run over every registered method by ``tests/harness/test_conformance.py``
and for one method by ``mlrsnet-bench check-method NAME`` (or ``FILE.py``), so a plug-in
author meets the same checks as the built-in methods (learned_optimization's one shared
smoke test per interface).  On an image and a text task (each a few real smoke-profile
steps, :data:`SETTINGS`), through the one training loop:

``runs``              the run finishes;
``lr``                every LR it chose is finite and positive;
``resume``            interrupted after epoch :data:`INTERRUPT_AFTER` and resumed from its epoch
                      checkpoint, the run equals the uninterrupted one (LR and loss trace,
                      every epoch metric): the method's state is complete;
``reads_loss``        a method that declares ``reads_loss = False`` chooses the same LRs when
                      every loss it is shown is NaN (it does not read the loss);
``uses_held_out``     a method that declares ``uses_held_out = True`` reads held-out data
                      (``run.held_out`` or the ``"val/..."`` metrics); one that does not
                      declare it is given neither, so reading them fails the ``runs`` check
                      with a message that says to declare it.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import EpochMetrics, HeldOut, Method, RunContext, StepInfo
from mlrsnet.harness.experiment import Cell


@dataclass(frozen=True)
class Setting:
    """A task at a profile, with overrides that keep it to a few steps per epoch."""

    task: str
    profile: str
    overrides: Mapping[str, Any]

    def label(self) -> str:
        return f"{self.task} ({self.profile})"


#: Four epochs of two steps each: images 64 training examples at batch 32, text two BPTT
#: windows of the smoke profile.
SETTINGS = (
    Setting("resnet18-cifar10", "smoke", {"epochs": 4, "train_size": 64}),
    Setting("lstm2-ptb", "smoke", {"epochs": 4, "train_tokens": 88}),
)
#: The epoch after which the resume check interrupts the run.
INTERRUPT_AFTER = 2


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``passed`` None means it did not apply (said in ``detail``)."""

    name: str
    setting: str
    passed: bool | None
    detail: str = ""

    def line(self) -> str:
        mark = {True: "PASS", False: "FAIL", None: "skip"}[self.passed]
        return f"{mark}  {self.name:<14} {self.setting}" + (f": {self.detail}" if self.detail else "")


@dataclass
class _Reads:
    """What a probed run read of its held-out data."""

    batches: int = 0
    losses: int = 0
    val_metrics: set[str] = field(default_factory=set)

    @property
    def any(self) -> bool:
        return bool(self.batches or self.losses or self.val_metrics)


class _CountedBatches:
    """An endless batch source that counts what is drawn and otherwise is the source."""

    def __init__(self, source: Iterator[Any], reads: _Reads) -> None:
        self._source, self._reads = source, reads

    def __iter__(self) -> _CountedBatches:
        return self

    def __next__(self) -> Any:
        self._reads.batches += 1
        return next(self._source)

    def __getattr__(self, name: str) -> Any:  # state_dict, batches_per_pass...
        return getattr(self._source, name)


class _WatchedMetrics(EpochMetrics):
    def __init__(self, metrics: EpochMetrics, reads: _Reads) -> None:
        super().__init__(metrics, method=metrics._method, held_out=metrics._held_out)
        self._reads = reads

    def _note(self, key: Any) -> None:
        if isinstance(key, str) and key.startswith("val/"):
            self._reads.val_metrics.add(key)

    def __getitem__(self, key: str) -> float:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)


def _nan_loss(step: StepInfo) -> StepInfo:
    return dataclasses.replace(step, loss=torch.full_like(step.loss.detach(), float("nan")))


def probe(cls: type[Method], reads: _Reads, *, nan_loss: bool = False) -> type[Method]:
    """``cls`` with its held-out reads counted into ``reads`` and, with ``nan_loss``, every
    loss its ``lr`` and ``direction`` see replaced by NaN (after the backward pass, which
    keeps the real one).  Behaves as ``cls`` otherwise."""

    def bind(self: Method, run: RunContext) -> None:
        if run.held_out is not None:
            source, loss = run.held_out.batches, run.held_out.loss

            def counted_loss(params: Mapping[str, torch.Tensor], batch: Any) -> torch.Tensor:
                reads.losses += 1
                return loss(params, batch)

            run.held_out = HeldOut(_CountedBatches(source, reads), counted_loss)
        cls.bind(self, run)

    def lr(self: Method, step: StepInfo) -> float:
        return cls.lr(self, _nan_loss(step) if nan_loss else step)

    def direction(self: Method, step: StepInfo) -> Any:
        return cls.direction(self, _nan_loss(step) if nan_loss else step)

    def end_epoch(self: Method, epoch: int, metrics: Mapping[str, float]) -> None:
        watched = _WatchedMetrics(metrics, reads) if isinstance(metrics, EpochMetrics) else metrics
        cls.end_epoch(self, epoch, watched)

    return type(cls.__name__, (cls,), {"bind": bind, "lr": lr, "direction": direction,
                                       "end_epoch": end_epoch, "__module__": cls.__module__})


class _Interrupted(Exception):
    """Raised after an epoch to stop a run the way Ctrl-C does."""


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _first_difference(a: Any, b: Any) -> str | None:
    """Where two runs' traces first differ, in words (None if they are the same)."""
    for key in ("lr", "loss"):
        xs, ys = a.steps[key], b.steps[key]
        if len(xs) != len(ys):
            return f"{len(ys)} steps after the resume, {len(xs)} without an interruption"
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if not _same(float(x), float(y)):
                return f"step {a.steps['step'][i]}: {key} {y!r} after the resume, {x!r} uninterrupted"
    rows_a = {(r["epoch"], r["split"], r["metric"]): r["value"] for r in a.epochs}
    rows_b = {(r["epoch"], r["split"], r["metric"]): r["value"] for r in b.epochs}
    for key in sorted(set(rows_a) | set(rows_b)):
        if not _same(rows_a.get(key, math.nan), rows_b.get(key, math.nan)):
            return f"epoch {key[0]} {key[1]}/{key[2]}: {rows_b.get(key)!r} after the resume, {rows_a.get(key)!r} uninterrupted"
    return None


def _error(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def check_setting(cls: type[Method], setting: Setting, workdir: Path, *, data_dir: str | None = None,
                  hparams: Mapping[str, Any] | None = None) -> list[Check]:
    """Every check of ``cls`` on one setting (see the module docstring)."""
    from mlrsnet.harness.loop import train

    label = setting.label()
    cell = Cell(setting.task, setting.profile, cls.name, dict(hparams or {}), overrides=dict(setting.overrides))
    where = workdir / f"{cls.name}-{setting.task}"

    def run(method_class: type[Method], tag: str, **kw: Any) -> Any:
        return train(cell, data_dir=data_dir, method_class=method_class,
                     artifact_dir=where / f"artifacts-{tag}", **kw)

    reads = _Reads()
    try:
        whole = run(probe(cls, reads), "whole")
    except Exception as exc:
        return [Check("runs", label, False, _error(exc))]
    checks = [Check("runs", label, whole.status == "finished",
                    "" if whole.status == "finished" else f"{whole.status} at step {whole.diverged_step}")]
    lrs = [float(x) for x in whole.steps["lr"]]
    bad = [(s, x) for s, x in zip(whole.steps["step"], lrs, strict=True) if not (math.isfinite(x) and x > 0)]
    checks.append(Check("lr", label, not bad and bool(lrs),
                        f"step {bad[0][0]} chose LR {bad[0][1]!r}" if bad else f"{len(lrs)} LRs in "
                        f"[{min(lrs):.3g}, {max(lrs):.3g}]" if lrs else "no step was taken"))

    checkpoint = where / "epoch.pt"

    def stop(epoch: int, metrics: Mapping[str, float]) -> None:
        if epoch == INTERRUPT_AFTER:
            raise _Interrupted

    failed: str | None = None
    try:
        run(cls, "resumed", checkpoint_path=checkpoint, on_epoch=stop)
        failed = f"the run ended before epoch {INTERRUPT_AFTER}, where it was to be interrupted"
    except _Interrupted:
        pass
    except Exception as exc:
        failed = f"before the interruption: {_error(exc)}"
    if failed is None:
        try:
            resumed = run(cls, "resumed", checkpoint_path=checkpoint)
            failed = _first_difference(whole, resumed)
        except Exception as exc:
            failed = _error(exc)
    checks.append(Check("resume", label, failed is None,
                        failed or f"interrupted after epoch {INTERRUPT_AFTER} and resumed: the same run"))

    if cls.reads_loss:
        checks.append(Check("reads_loss", label, None, "declares reads_loss = True (steps wait for the loss)"))
    else:
        try:
            blind = run(probe(cls, _Reads(), nan_loss=True), "blind")
            same = len(blind.steps["lr"]) == len(lrs) and all(
                _same(float(x), y) for x, y in zip(blind.steps["lr"], lrs, strict=True))
            checks.append(Check("reads_loss", label, same, "declares reads_loss = False and its LRs do not "
                                "depend on the loss" if same else "declares reads_loss = False, but its LRs "
                                "changed when every loss it was shown was NaN: declare reads_loss = True"))
        except Exception as exc:
            checks.append(Check("reads_loss", label, False, "declares reads_loss = False, but with every loss "
                                f"shown as NaN it failed: {_error(exc)}; declare reads_loss = True"))

    if cls.uses_held_out:
        what = ", ".join(x for x in (f"{reads.batches} held-out batches" if reads.batches else "",
                                     f"{reads.losses} held-out losses" if reads.losses else "",
                                     "metrics " + ", ".join(sorted(reads.val_metrics)) if reads.val_metrics else "")
                         if x)
        checks.append(Check("uses_held_out", label, reads.any,
                            f"declares uses_held_out = True and read {what}" if reads.any else
                            "declares uses_held_out = True but read neither run.held_out nor a val/ metric: "
                            "its runs hold training data out for nothing; remove the declaration"))
    else:
        checks.append(Check("uses_held_out", label, True, "trains on the whole training split"))
    return checks


def check_method(cls: type[Method], settings: tuple[Setting, ...] = SETTINGS, *, data_dir: str | None = None,
                 hparams: Mapping[str, Any] | None = None,
                 on_check: Callable[[Check], None] | None = None) -> list[Check]:
    """Every check on every setting, in a temporary folder; ``on_check`` sees each result as
    it comes (the command prints them)."""
    out: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="mlrsnet-conformance-") as tmp:
        for setting in settings:
            for check in check_setting(cls, setting, Path(tmp), data_dir=data_dir, hparams=hparams):
                out.append(check)
                if on_check is not None:
                    on_check(check)
    return out
