"""The method contract and the discovery of methods.

A *method* is anything that decides the learning rate during training: a hand-designed
schedule, MLR-SNet (meta-trained or transferred), HD, L4, RTHO, Meta-SGD.  The one
training loop (:mod:`mlrsnet.harness.loop`) talks to every method through :class:`Method` only,
so adding a method never touches the loop.

Call order per run (written once, in :mod:`mlrsnet.harness.step`: ``start_run`` and
``train_step``; the loop, the method tests and the perf benchmarks all call those)::

    method = MethodClass(**hparams)
    optimizer = method.build_optimizer(params, task.optim)        # default: the task's SGD
    method.bind(run)                                              # once
    for each step:
        loss = forward(batch)                                     # a non-finite loss ends the run here
        optimizer.zero_grad(set_to_none=True)
        method.backward(loss, params)                             # default: loss.backward()
        (the step clips p.grad if the task says so)
        lr = method.lr(step)                                      # may read p.grad, optimizer state;
                                                                  # a non-finite LR ends the run here
        d = method.direction(step)                                # default None: the optimizer's step
        if d is not None: p.grad <- d (by the harness)            # then optimizer.step() is p - lr * d
        for group in optimizer.param_groups: group["lr"] = lr
        optimizer.step()
        method.after_step(step)                                   # optional bookkeeping
    end of every epoch: method.end_epoch(epoch, metrics)          # train (+ val if it uses held-out data)

Who writes ``p.grad``: ``backward`` leaves the gradient of the loss there (the step then
clips it in place); ``lr`` only reads it; a method that owns its update direction (HD, L4,
RTHO: momentum buffers, moving averages, tangents kept in the method, so its ``state_dict``
is complete) returns that direction from :meth:`Method.direction` and builds
:func:`stateless_sgd`, and the *harness* puts the direction into ``p.grad`` just before
``optimizer.step()``.  A method never writes its direction into ``p.grad`` itself.

How methods are found (``baselines/`` and the ``mlrsnet.methods`` entry-point group) is
:mod:`mlrsnet.harness.registry`'s job; this file only says what a method is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mlrsnet.errors import UserError

#: One name for one idea across methods: the names this suite used before, and the name
#: each idea has now (``lr``: the initial / base learning rate; ``hyper_lr``: the step size
#: of whatever adapts the LR; ``decay``: a schedule's decay factor, the paper's gamma_M;
#: ``gate_convention``: MLR-SNet's LSTM gate layout).  Old names are refused with the new one.
RENAMED_HPARAMS: dict[str, str] = {
    "initial_lr": "lr",
    "init_lr": "lr",
    "hypergrad_lr": "hyper_lr",
    "meta_lr": "hyper_lr",
    "meta_weight_decay": "hyper_weight_decay",
    "gamma": "decay",
    "cell": "gate_convention",
}

#: A search-space entry: ``("loguniform", low, high)``, ``("uniform", low, high)``,
#: ``("choice", [values...])`` or ``("grid", [values...])``.
SearchDim = tuple


#: The kinds of value an :class:`HParam` declares.
HPARAM_KINDS = ("number", "int", "bool", "str", "fractions", "sequence", "any")


@dataclass(frozen=True)
class HParam:
    """What values one hyper-parameter takes: its kind, its range and whether ``None`` is
    allowed (``None`` usually means "the method's own rule", e.g. the task's base LR).

    ``kind``: ``"number"`` (an int or float, finite), ``"int"``, ``"bool"``, ``"str"``,
    ``"fractions"`` (a non-empty, strictly increasing list of numbers, each checked against
    the bounds, e.g. MultiStep's milestones in (0, 1)), ``"sequence"`` (a list) or ``"any"``.
    ``low``/``high`` bound numbers (inclusive unless ``low_open``/``high_open``);
    ``choices`` lists the allowed values; ``check`` adds a method's own test.  Methods declare them in
    :attr:`Method.hparam_specs`; a name they leave out is checked by :func:`inferred_hparam`.
    """

    kind: str = "any"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    allow_none: bool = False
    #: A further check of a value that passed the others (e.g. that a checkpoint folder is
    #: readable): ``check(value)`` returns why it is refused, or None.  Runs before training.
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in HPARAM_KINDS:
            raise ValueError(f"HParam kind {self.kind!r}; allowed: {', '.join(HPARAM_KINDS)}")

    def describe(self) -> str:
        """``a number in (0, 1)``, ``an integer >= 0``, ``one of 'a', 'b'``..."""
        if self.choices is not None:
            text = "one of " + ", ".join(map(repr, self.choices))
        else:
            text = {"number": "a number", "int": "an integer", "bool": "true or false",
                    "str": "a string", "sequence": "a list", "any": "any value",
                    "fractions": "a strictly increasing list of numbers"}[self.kind]
            bounds = self._bounds()
            if bounds:
                text += (" each" if self.kind == "fractions" else "") + f" {bounds}"
        return text + (" (or null)" if self.allow_none else "")

    def _bounds(self) -> str:
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f"in {'(' if self.low_open else '['}{lo:g}, {hi:g}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {lo:g}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {hi:g}"
        return ""

    def _in_bounds(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (self.high is not None and (x >= self.high if self.high_open else x > self.high))

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (``"must be ..."``), or ``None`` if it is."""
        problem = self._type_problem(value)
        if problem is None and value is not None and self.check is not None:
            return self.check(value)
        return problem

    def _type_problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.allow_none or self.kind == "any" else f"must be {self.describe()}, not null"
        must = f"must be {self.describe()}, not {value!r}"
        if self.choices is not None:
            return None if any(value == c and type(value) is type(c) or
                               (_is_number(value) and _is_number(c) and value == c)
                               for c in self.choices) else must
        kind = self.kind
        if kind == "any":
            return None
        if kind == "bool":
            return None if isinstance(value, bool) else must
        if kind == "str":
            return None if isinstance(value, str) else must
        if kind == "sequence":
            return None if isinstance(value, list | tuple) else must
        if kind == "fractions":
            if (not isinstance(value, list | tuple) or not value
                    or not all(_is_number(x) and math.isfinite(x) and self._in_bounds(x) for x in value)
                    or any(b <= a for a, b in zip(value, value[1:], strict=False))):
                return must
            return None
        if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            return must
        if not _is_number(value) or not math.isfinite(value) or not self._in_bounds(value):
            return must
        if kind == "number" and abs(value) > FLOAT32_MAX:
            return (f"must be {self.describe()} and at most {FLOAT32_MAX:.4g} in size (training computes "
                    f"in float32, which holds no larger number), not {value!r}")
        return None


#: The largest float32: a number hyper-parameter beyond it (an LR of 1e308) overflows when
#: the step converts it to the parameters' type, so it is refused with the other checks.
FLOAT32_MAX = 3.4028234663852886e38


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def inferred_hparam(default: Any) -> HParam:
    """The check of a hyper-parameter a method declares nothing for, from its default:
    a bool default takes booleans, an int default integers, a float default numbers, a
    string default strings, a list/tuple default lists; a ``None`` default anything.
    ``None`` itself passes (the method decides what it means)."""
    if isinstance(default, bool):
        return HParam("bool", allow_none=True)
    if isinstance(default, int):
        return HParam("int", allow_none=True)
    if isinstance(default, float):
        return HParam("number", allow_none=True)
    if isinstance(default, str):
        return HParam("str", allow_none=True)
    if isinstance(default, list | tuple):
        return HParam("sequence", allow_none=True)
    return HParam("any")


class HParamError(UserError):
    """A hyper-parameter name or value a method refuses; ``name`` is the offending key."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class OptimSettings:
    """The task's optimiser settings (paper values at the ``paper`` profile)."""

    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    clip_grad_norm: float | None = None


#: The two scales a profile declares (:attr:`ProfileSetting.scale`): ``"paper"``, the paper's
#: own settings, where a method uses its official cadences (RTHO's hyper-step every 100 steps,
#: MLR-SNet's meta update every 300); ``"reduced"``, a scaled-down profile, where a method
#: may scale such cadences to the shorter run and says so in its docstring.  A method reads
#: the scale, never a profile's name: a new GPU profile under any name gets the paper's
#: cadences by declaring ``scale = "paper"``.
SCALES = ("paper", "reduced")


@dataclass(frozen=True)
class Horizon:
    """How long the run is: what a method may plan with."""

    steps_per_epoch: int
    epochs: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


@dataclass(frozen=True)
class TaskFacts:
    """What a method may know of the task: its kind, its number of outputs (classes or
    vocabulary size), its usual initial LR and its optimiser settings.  Its name is for
    messages only; a method never branches on it."""

    name: str
    kind: str  # "image" | "text"
    num_outputs: int | None
    #: The task's usual initial LR (0.1 for images, 20 for language models): the default
    #: of schedules whose ``lr`` hyper-parameter is left as ``None``.
    base_lr: float
    optim: OptimSettings


@dataclass
class HeldOut:
    """The held-out part of the training split (never the test split), as one object; a
    method sees it only when it declares :attr:`Method.uses_held_out`.

    ``batches``  an endless iterator of held-out batches.  A source that keeps a position
                 (a shuffled pass, a carried hidden state) has ``state_dict`` /
                 ``load_state_dict``, which the loop checkpoints with the run.
    ``loss``     ``loss(params, batch)``: the loss of ``batch`` with the model's parameters
                 replaced by ``params`` (a name -> tensor mapping, as from
                 ``model.named_parameters()``), differentiable w.r.t. those tensors
                 (``torch.func.functional_call``: the model is neither rebuilt nor copied).
    """

    batches: Iterator[Any]
    loss: Callable[[Mapping[str, Tensor], Any], Tensor]

    @property
    def batches_per_pass(self) -> int | None:
        """Batches in one pass over the whole held-out data (images: ceil(held-out / batch
        size); text: validation windows), or None when the source does not say."""
        return getattr(self.batches, "batches_per_pass", None)

    def next_batch(self) -> Any:
        return next(self.batches)


@dataclass
class RunContext:
    """What a method sees of the run it is bound to, and no more (AlgoPerf's narrowness):
    the model it trains and the optimiser it drives, the :class:`Horizon`, the
    :class:`TaskFacts`, the ``scale`` (:data:`SCALES`), the :class:`HeldOut` data when it
    declared it reads them, its seed and device, a full training pass for a starting loss,
    and a folder for artefacts."""

    model: nn.Module
    #: The trainable parameters with their names, in ``model.named_parameters()`` order.
    named_params: list[tuple[str, nn.Parameter]]
    optimizer: torch.optim.Optimizer
    horizon: Horizon
    task: TaskFacts
    scale: str  # one of SCALES
    seed: int
    device: torch.device
    #: Present when the method declares ``uses_held_out`` and the profile holds data out.
    held_out: HeldOut | None = None
    #: ``train_loss()``: the mean training loss over one full pass of the training split at
    #: the current weights, in eval mode (the official scripts' starting loss for ``gamma``;
    #: for language models the mean window loss, whose exp is the perplexity).  Each call
    #: draws the same augmentation, so it is deterministic given the weights.
    train_loss: Callable[[], float] | None = None
    #: Where a method may write artefacts (e.g. MLR-SNet checkpoints per epoch).
    artifact_dir: str | None = None

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {self.scale!r}")

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_params]

    @property
    def param_names(self) -> list[str]:
        return [n for n, _ in self.named_params]

    def require_held_out(self, method: str, purpose: str) -> HeldOut:
        """The held-out data, or a :class:`UserError` for a run that has none when ``method``
        needs it (for ``purpose``: its meta loss, its validation loss)."""
        if self.held_out is None:
            raise UserError(f"method {method!r} needs held-out data of the training split for "
                            f"{purpose}, but task {self.task.name!r} holds nothing out at this "
                            "profile, or the method does not declare `uses_held_out = True`")
        return self.held_out


@dataclass
class StepInfo:
    """One training step as a method sees it."""

    step: int  # global step index, 0-based
    epoch: int  # 0-based
    index_in_epoch: int
    #: The mini-batch training loss as the forward pass returned it; by the time ``lr`` sees
    #: it, ``backward`` has consumed its graph unless the method's own ``backward`` kept it.
    loss: Tensor


class EpochMetrics(dict):
    """The metrics :meth:`Method.end_epoch` receives: a ``dict`` whose missing keys say why
    they are missing (held-out metrics of a method that did not declare
    ``uses_held_out``; test metrics, never shown)."""

    def __init__(self, values: Mapping[str, float], *, method: str, held_out: bool) -> None:
        super().__init__(values)
        self._method, self._held_out = method, held_out

    def __missing__(self, key: str) -> float:
        if key.startswith("test/"):
            why = "test metrics are never shown to a method (a schedule that read them would tune on the test set)"
        elif key.startswith("val/") and not self._held_out:
            why = (f"method {self._method!r} does not declare `uses_held_out = True`, so it trains on the "
                   "whole training split and gets no held-out metrics; declare it to receive them")
        else:
            why = f"this epoch's metrics are {', '.join(sorted(self)) or '(none)'}"
        raise KeyError(f"{key!r}: {why}")


class Method:
    """Base class: a fixed learning rate ``lr``.  Subclass and override what you need
    (:class:`mlrsnet.harness.schedules.Schedule` is the base of a schedule that is a function
    of progress; :func:`mlrsnet.harness.schedules.from_torch` wraps a torch scheduler).

    ``name``            the name used in experiment specs and on the command line.
    ``defaults``        default hyper-parameters (keyword arguments of ``__init__``).
    ``search_space``    tunable hyper-parameters for Ray Tune (:data:`SearchDim` values).
    ``hparam_specs``    the type and range of hyper-parameters (:class:`HParam`); a name
                        not declared is checked from its default (:func:`inferred_hparam`).
    ``reads_loss``      ``True`` (default) if :meth:`lr` or :meth:`direction` read the loss
                        value on the host: the step then checks it before calling them.  A
                        method whose LR never depends on it (the hand-designed schedules)
                        sets ``False``, and its steps never wait for the device
                        (:func:`mlrsnet.harness.step.train_step`).
    ``uses_held_out``   ``True`` if the method reads the held-out part of the training split:
                        ``run.held_out`` (:class:`HeldOut`: MLR-SNet's meta loss, RTHO's
                        validation loss) or the ``"val/..."`` metrics of :meth:`end_epoch`
                        (a plateau schedule).  A method that does not (default ``False``)
                        trains on the *whole* training split, as the authors' scripts train
                        their hand-designed schedules on all 50,000 CIFAR images, and sees
                        neither (a run's ``holdout`` override, set by a tuning objective on
                        the held-out split, keeps the split for the search's sake only).
    ``transient``       names of attributes that are not resumable state (timings, hook
                        handles); every other attribute set on the instance is saved by the
                        default :meth:`state_dict` (:mod:`mlrsnet.harness.method_state`).
    ``differentiates_gradient``  ``True`` if the method differentiates the training gradient
                        itself (RTHO, MARTHE); ``--compile`` and ``--precision bf16`` are
                        refused for it (:mod:`mlrsnet.harness.execution`).

    A method that needs more than the default ``loss.backward()`` (e.g. the gradient with its
    graph, as RTHO) overrides :meth:`backward`.  The conformance suite
    (:mod:`mlrsnet.harness.conformance`, ``mlrsnet-bench check-method NAME``) checks a method
    against this contract.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    search_space: ClassVar[dict[str, SearchDim]] = {}
    #: Search spaces that differ by task kind (e.g. ``{"text": {...}}`` for language models).
    search_spaces: ClassVar[dict[str, dict[str, SearchDim]]] = {}
    hparam_specs: ClassVar[dict[str, HParam]] = {}
    reads_loss: ClassVar[bool] = True
    uses_held_out: ClassVar[bool] = False
    transient: ClassVar[tuple[str, ...]] = ()
    #: It differentiates the training gradient itself (a Hessian-vector product, a
    #: forward-mode tangent through the gradient: RTHO, MARTHE), so its training forward
    #: cannot run as a graph compiled with AOTAutograd nor under bf16 autocast
    #: (``--compile`` and ``--precision bf16`` are refused for it).
    differentiates_gradient: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, **hparams: Any) -> None:
        self.check_hparams(hparams)
        self.hparams: dict[str, Any] = {**self.defaults, **hparams}
        self.run: RunContext | None = None

    @classmethod
    def check_names(cls, hparams: Mapping[str, Any]) -> None:
        """Refuse hyper-parameter names this method does not take; a name that was renamed
        (:data:`RENAMED_HPARAMS`) is answered with its new name."""
        unknown = sorted(set(hparams) - set(cls.defaults))
        if not unknown:
            return
        hints = [f"{old!r} is now {RENAMED_HPARAMS[old]!r}" for old in unknown
                 if RENAMED_HPARAMS.get(old) in cls.defaults]
        raise HParamError(
            f"method {cls.name!r} has no hyper-parameter {', '.join(map(repr, unknown))}"
            + (f" ({'; '.join(hints)})" if hints else "")
            + f"; it takes: {', '.join(sorted(cls.defaults)) or '(none)'}",
            unknown[0],
        )

    @classmethod
    def hparam_spec(cls, name: str) -> HParam:
        """The declared check of ``name``, else the one inferred from its default."""
        spec = cls.hparam_specs.get(name)
        return spec if spec is not None else inferred_hparam(cls.defaults.get(name))

    @classmethod
    def check_hparams(cls, values: Mapping[str, Any]) -> None:
        """The one validation of hyper-parameters (command line, specs, searches, ``__init__``):
        names (:meth:`check_names`), then each value against :meth:`hparam_spec`.  Raises
        :class:`HParamError` naming the first bad key."""
        cls.check_names(values)
        for name in sorted(values):
            problem = cls.hparam_spec(name).problem(values[name])
            if problem:
                raise HParamError(f"method {cls.name!r}: hyper-parameter {name!r} {problem}", name)

    @classmethod
    def space(cls, kind: str) -> dict[str, SearchDim]:
        """The search space for a task kind ("image"/"text"): :attr:`search_spaces` of that
        kind, else :attr:`search_space`."""
        return dict(cls.search_spaces.get(kind, cls.search_space))

    # -- hooks the loop calls ------------------------------------------------------------
    def build_optimizer(self, params: Sequence[nn.Parameter], optim: OptimSettings,
                        initial_lr: float = 0.0) -> torch.optim.Optimizer:
        """The optimiser whose LR this method drives (default: the task's SGD)."""
        return torch.optim.SGD(
            params,
            lr=initial_lr,
            momentum=optim.momentum,
            weight_decay=optim.weight_decay,
            nesterov=optim.nesterov and optim.momentum > 0,
        )

    def bind(self, run: RunContext) -> None:
        self.run = run

    def backward(self, loss: Tensor, params: Sequence[nn.Parameter]) -> None:
        """Leave the gradient of ``loss`` in ``p.grad`` (default: ``loss.backward()``)."""
        loss.backward()

    def lr(self, step: StepInfo) -> float:
        return self.initial_lr()

    def initial_lr(self) -> float:
        """``hparams["lr"]``, or the task's base LR when it is ``None`` or absent."""
        value = self.hparams.get("lr")
        if value is None:
            return self.run.task.base_lr if self.run is not None else 0.1
        return float(value)

    def direction(self, step: StepInfo) -> Sequence[Tensor] | None:
        """The update direction ``d`` of this step, for a method that owns it; ``None``
        (the default) means the optimiser's own direction (the task's SGD on ``p.grad``).

        Called right after :meth:`lr` in the same step (a method may compute both in
        :meth:`lr` and hand the direction over here).  One tensor per ``run.params`` entry, in
        that order and of its shape; the harness writes them into ``p.grad`` and
        ``optimizer.step()`` applies ``p <- p - lr * d``, which needs an optimiser that
        follows ``p.grad`` as given: such a method's :meth:`build_optimizer` returns
        :func:`stateless_sgd` (the step refuses anything else).
        """
        return None

    def after_step(self, step: StepInfo) -> None:
        """Called after ``optimizer.step()``."""

    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Called once at the end of every epoch (``epoch`` 0-based) with that epoch's
        training metrics (``"train/loss"``, ``"train/acc"`` or ``"train/ppl"``) and, for a
        method that declares :attr:`uses_held_out`, its held-out metrics (``"val/loss"``,
        ``"val/acc"`` / ``"val/ppl"``).  Test metrics are never shown to a method (a schedule
        that read them would tune on the test set).  Reading a key that is not there raises
        a ``KeyError`` that says why (:class:`EpochMetrics`)."""

    def extra_info(self) -> dict[str, Any]:
        """Facts recorded in the ``runs`` table (e.g. the MLR-SNet cell convention)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The method's resumable state.  Default: every attribute set on the instance but
        ``run``, ``hparams`` and :attr:`transient` ones (:mod:`mlrsnet.harness.method_state`),
        so a plain counter or tensor kept in ``self`` is saved without further code."""
        from mlrsnet.harness.method_state import default_state_dict

        return default_state_dict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (called after :meth:`bind`)."""
        from mlrsnet.harness.method_state import default_load_state_dict

        default_load_state_dict(self, state)


def stateless_sgd(params: Sequence[nn.Parameter], initial_lr: float = 0.0) -> torch.optim.SGD:
    """The optimiser of a method that owns its direction: SGD without momentum or weight
    decay, so ``optimizer.step()`` applies exactly ``p - lr * p.grad`` with the direction that
    :meth:`Method.direction` returned in ``p.grad``."""
    return torch.optim.SGD(params, lr=initial_lr, momentum=0.0, weight_decay=0.0, nesterov=False)


class DirectionMethod(Method):
    """Base of a method that owns its update direction (HD, L4, RTHO, MARTHE): it returns the
    direction from :meth:`direction` and runs on :func:`stateless_sgd`, which applies it as
    given."""

    def build_optimizer(self, params: Sequence[nn.Parameter], optim: OptimSettings,
                        initial_lr: float = 0.0) -> torch.optim.Optimizer:
        return stateless_sgd(params, initial_lr)


# ---------------------------------------------------------------------------------------
# What a task provides (the paper's settings live in mlrsnet.paper.tasks)
# ---------------------------------------------------------------------------------------

@dataclass
class BatchStats:
    """Sums over one epoch's training batches (the loop's running train metrics)."""

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0


#: The splits a workload evaluates: ``"val"`` is the held-out part of the training data (or
#: the corpus's validation split), never the test split.
SPLITS = ("val", "test")


@runtime_checkable
class Workload(Protocol):
    """What a modality provides to the loop: batches, the loss, evaluation, meta data.

    The loop calls only these; image classification and language modelling differ only
    behind them (:mod:`mlrsnet.paper.workloads`).
    """

    kind: str  # "image" | "text"
    metric: str  # headline metric: "acc" | "ppl"
    num_outputs: int  # classes or vocabulary size
    steps_per_epoch: int
    data_source: str
    sizes: dict[str, int]  # examples (images) or tokens (text) per split

    def start_epoch(self, model: nn.Module) -> Any:
        """The state carried across an epoch's batches (the LSTM hidden state, or None)."""

    def train_batches(self, generator: torch.Generator) -> Iterator[Any]:
        """One epoch of training batches, drawn with ``generator``."""

    def loss(self, model: nn.Module, batch: Any, carry: Any, stats: BatchStats) -> tuple[Tensor, Any]:
        """The mini-batch loss (with its graph) and the next carry; adds to ``stats``."""

    def summarize(self, stats: BatchStats) -> dict[str, float]:
        """The epoch's training metrics from ``stats``."""

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics of ``split`` (one of :data:`SPLITS`; anything else is an error)."""

    def held_out(self, model: nn.Module, generator: torch.Generator) -> HeldOut | None:
        """The held-out data (:class:`HeldOut`: endless batches drawn with ``generator``, and
        a batch's loss with ``model``'s parameters replaced), or None if the workload holds
        nothing out."""

    def train_loss_pass(self, model: nn.Module, generator: torch.Generator) -> float:
        """Mean training loss over one full pass of the training split, in eval mode."""


@runtime_checkable
class ProfileSetting(Protocol):
    """One scale of a task as the harness reads it, and all it reads of it.

    A profile is a frozen dataclass: a spec's ``[overrides]`` and ``--override`` set its
    fields (:func:`dataclasses.replace`), checked against their type hints.  Beyond
    ``epochs``, two fields are optional, read with the defaults below
    (:func:`profile_scale`, :func:`profile_holdout`):

    ``scale``     ``"paper"`` or ``"reduced"`` (:data:`SCALES`; absent: ``"reduced"``): what a
                  method is told about the run's scale (:attr:`RunContext.scale`).
    ``holdout``   held-out training examples (absent: none).  The harness sets it to 0 for a
                  method that reads no held-out data.
    ``training_fields()``  optional: the fields that decide what is trained, as JSON values,
                  recorded with every run so a redefined profile is noticed (absent: all
                  fields).
    """

    epochs: int


def profile_scale(profile: Any) -> str:
    """The scale a profile declares (``"reduced"`` when it declares none)."""
    scale = getattr(profile, "scale", "reduced")
    if scale not in SCALES:
        raise UserError(f"a profile's scale must be one of {', '.join(SCALES)}, not {scale!r}")
    return scale


def profile_holdout(profile: Any) -> float:
    """The held-out examples a profile declares, a count or a share (0 when it declares none)."""
    return getattr(profile, "holdout", 0) or 0


@runtime_checkable
class TaskSetting(Protocol):
    """A task setting as the harness sees it ("ResNet-18 on CIFAR-10"), with named profiles
    (:class:`ProfileSetting`)."""

    name: str
    kind: str
    optim: OptimSettings
    base_lr: float
    profiles: Mapping[str, ProfileSetting]

    def profile(self, name: str) -> ProfileSetting:
        """The named profile; a :class:`~mlrsnet.errors.UserError` if there is none."""

    def build(self, profile: Any, device: torch.device, data_dir: str | None) -> tuple[Workload, nn.Module]:
        """The workload and a freshly initialised model (from torch's global RNG) for ``profile``."""


def check_split(split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`, else a :class:`UserError` (a typo is not "val")."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    return split
