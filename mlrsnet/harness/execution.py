"""How a run executes: its device and the execution options that change its floats.

The same cell trained on another device, in another precision or with other kernels gives
other curves, so these options are part of what a run *is*: each run records them as its
*execution identity* (``runs.data["execution"]``, beside the data and profile it trained
on), and the executor reuses a finished run only when the invocation's identity equals the
recorded one (:func:`mismatch`); otherwise it trains the run again, as it does for changed
data.  The ``run_id`` hash is left alone (runs recorded before these options existed keep
their ids), and a run recorded without an identity reads as the defaults it was trained
with (:func:`recorded_identity`: its ``device`` column and ``method_info``), so the
published CPU results stand.

Every option is off by default; what each changes numerically:

``device``
    ``cpu`` or ``cuda`` (the type, not the index).  Different kernels: CPU and CUDA runs of
    one seed agree to round-off at the first steps and drift apart over a run.
``threads``
    torch intra-op threads on the CPU (``$MLRSNET_THREADS``, a Tune trial's CPUs): CPU
    reductions are split by the thread count, so 1 and 2 threads give other floats (1.56
    accuracy points apart at the end of one ``cpu``-profile run).  Not part of a CUDA run's
    identity (its arithmetic runs on the GPU).
``precision``
    ``fp32`` (default) or ``bf16``: the model's forward passes (training, evaluation and
    the look-ahead) under ``torch.autocast(dtype=torch.bfloat16)``; matrix products and
    convolutions then round their inputs to bfloat16 (8 significant bits); the outputs are
    cast back to float32, so losses, gradients of the weights and the optimiser stay fp32.
``channels_last``
    image models in channels-last memory format: convolutions sum in another order
    (float32 round-off; on this project's CPU about 1e-2 in the loss after 12 ResNet-18
    steps, growing over a run).  Ignored (not recorded as used) for text models.
``compile``
    ``torch.compile`` (the named backend) of the *training* forward only, ``dynamic=False``:
    fused kernels reorder float operations.  Evaluation, the partial last batch and the
    MLR-SNet / Meta-SGD look-ahead run the eager module, so nothing recompiles; the number
    of graphs compiled is recorded in ``method_info["compiled_graphs"]``.
``cudnn_benchmark``
    cuDNN times its algorithms per input shape and keeps the fastest; the choice can differ
    between runs and machines, so results are not repeatable.  CUDA only.
``deterministic``
    cuDNN's deterministic algorithms (``cudnn.deterministic``, benchmark off) and torch's
    deterministic implementations where they exist (``use_deterministic_algorithms``,
    warn-only; ``CUBLAS_WORKSPACE_CONFIG=:4096:8``): a CUDA run is then repeatable on the
    same GPU model, driver, CUDA and cuDNN.  CUDA only (CPU kernels are deterministic).

The options reach every executor through ``MLRSNET_*`` environment variables (set by the
command line, forwarded to Ray workers).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlrsnet.errors import UserError

COMPILE_ENV = "MLRSNET_COMPILE"
CHANNELS_LAST_ENV = "MLRSNET_CHANNELS_LAST"
PRECISION_ENV = "MLRSNET_PRECISION"
CUDNN_BENCHMARK_ENV = "MLRSNET_CUDNN_BENCHMARK"
DETERMINISTIC_ENV = "MLRSNET_DETERMINISTIC"
PRECISIONS = ("fp32", "bf16")

#: What a run recorded before execution identities existed was trained with: these
#: defaults (device and threads are read from its row when it has them).
DEFAULTS: dict[str, Any] = {"device": "cpu", "precision": "fp32", "compile": None,
                            "channels_last": False, "cudnn_benchmark": False,
                            "deterministic": False, "threads": 1}

_TRUE = ("1", "true", "yes", "on")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def requested() -> dict[str, Any]:
    """The execution options this process was asked for (its ``MLRSNET_*`` variables)."""
    precision = (os.environ.get(PRECISION_ENV) or "fp32").strip().lower()
    if precision not in PRECISIONS:
        raise UserError(f"${PRECISION_ENV} (--precision) must be one of {', '.join(PRECISIONS)}, "
                        f"not {precision!r}")
    if _flag(CUDNN_BENCHMARK_ENV) and _flag(DETERMINISTIC_ENV):
        raise UserError("--cudnn-benchmark and --deterministic contradict each other (benchmarking "
                        "picks algorithms by timing); pass one of them")
    return {"precision": precision, "compile": (os.environ.get(COMPILE_ENV) or "").strip() or None,
            "channels_last": _flag(CHANNELS_LAST_ENV), "cudnn_benchmark": _flag(CUDNN_BENCHMARK_ENV),
            "deterministic": _flag(DETERMINISTIC_ENV)}


def identity(device_type: str, kind: str | None, threads: int | None,
             options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The execution identity of a run: the options that change its floats, as they apply
    to a model of ``kind`` ("image"/"text") on ``device_type``: the CUDA-only flags are
    off on the CPU, the thread count is not part of a CUDA run, channels-last applies to
    image models only."""
    opts = requested() if options is None else dict(options)
    cuda = device_type == "cuda"
    return {
        "device": device_type,
        "precision": opts.get("precision") or "fp32",
        "compile": opts.get("compile") or None,
        "channels_last": bool(opts.get("channels_last")) and kind != "text",
        "cudnn_benchmark": bool(opts.get("cudnn_benchmark")) and cuda,
        "deterministic": bool(opts.get("deterministic")) and cuda,
        "threads": None if cuda else int(threads or DEFAULTS["threads"]),
    }


def recorded_identity(row: Mapping[str, Any]) -> dict[str, Any]:
    """The execution identity a stored ``runs`` row was trained with.  A row recorded
    before identities existed reads as the defaults it was trained with: device from its
    ``device`` column, threads, compile and channels-last from its ``method_info`` when
    it has them (a trial BOHB stopped has none: the defaults)."""
    data = row.get("data") if isinstance(row.get("data"), Mapping) else {}
    if isinstance(data.get("execution"), Mapping):
        return {**DEFAULTS, **dict(data["execution"])}
    info = row.get("method_info") if isinstance(row.get("method_info"), Mapping) else {}
    device = row.get("device") if isinstance(row.get("device"), str) and row.get("device") else DEFAULTS["device"]
    device = device.split(":")[0]
    out = {**DEFAULTS, "device": device}
    for key in ("compile", "channels_last", "threads"):
        if info.get(key) is not None:
            out[key] = info[key]
    if device == "cuda":
        out["threads"] = None
    return out


def mismatch(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """How a run's recorded execution differs from this invocation's, as ``key old -> new``
    (None when they agree)."""
    keys = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    if not keys:
        return None
    return ", ".join(f"{k} {recorded.get(k)!r} -> {current.get(k)!r}" for k in keys)


# -- the device ---------------------------------------------------------------------------
def cuda_unusable_reason() -> str:
    """Why ``torch.cuda.is_available()`` is False here, in one clause."""
    if torch.version.cuda is None:
        return f"the installed torch {torch.__version__} is a CPU-only build"
    driver = Path("/proc/driver/nvidia/version")
    if driver.exists() or shutil.which("nvidia-smi"):
        return (f"an NVIDIA driver is installed but CUDA cannot start: the installed torch "
                f"{torch.__version__} is built for CUDA {torch.version.cuda} and needs a driver at "
                "least that recent (`nvidia-smi` prints the CUDA version the driver supports)")
    return "no NVIDIA GPU or driver was found"


WHEEL_HINT = ("To use the GPU, update the NVIDIA driver, or install the torch wheel built for "
              "the CUDA version your driver supports (the `CUDA Version` that `nvidia-smi` prints), "
              "keeping the versions this project pins, e.g. `pip install torch=={torch} "
              "torchvision=={vision} --index-url https://download.pytorch.org/whl/cu118` "
              "(cu118, cu121, cu124, ...: pick the newest not above the driver's).")


def _wheel_hint() -> str:
    try:
        from importlib.metadata import version

        vision = version("torchvision")
    except Exception:  # noqa: BLE001 - only a hint
        vision = "<pinned>"
    return WHEEL_HINT.format(torch=torch.__version__.split("+")[0], vision=vision)


def pick_device(name: str | None = None, *, expects_gpu: bool = False, what: str = "") -> torch.device:
    """The device a run trains on: ``name`` (``cpu``, ``cuda``, ``cuda:N``), or for ``auto``
    / None the GPU when CUDA works, else the CPU.

    ``expects_gpu`` (a profile sized for GPUs, e.g. ``paper``): ``auto`` never falls back
    to the CPU silently; the run is refused with one paragraph saying why CUDA is not
    usable and how to fix it, or to pass ``--device cpu`` on purpose."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if expects_gpu:
            raise UserError(
                f"{what or 'this run'} is sized for GPUs, but CUDA is not usable here: "
                f"{cuda_unusable_reason()}. It would take days on the CPU, so it is not started "
                "there silently: pass --device cpu to train on the CPU on purpose. "
                + _wheel_hint())
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was requested but CUDA is not usable here: "
                        f"{cuda_unusable_reason()}. " + _wheel_hint())
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or auto")
    return dev


def device_versions(device: torch.device) -> dict[str, Any]:
    """What ``runs.versions`` records of the device and the numeric flags in force: on a
    GPU its model, compute capability, the CUDA and cuDNN versions, TF32 and the
    determinism flags; on every device whether deterministic algorithms are on."""
    out: dict[str, Any] = {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if device.type != "cuda":
        return out
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    out.update({
        "gpu_model": torch.cuda.get_device_name(index), "gpu_capability": f"{major}.{minor}",
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    })
    return out


@contextlib.contextmanager
def backend_flags(execution: Mapping[str, Any]) -> Iterator[None]:
    """cuDNN benchmark / deterministic flags of ``execution`` for the block, the previous
    ones put back (a process trains many runs: a search, a test session)."""
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    try:
        if execution.get("deterministic"):
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif execution.get("cudnn_benchmark"):
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[0], before[1]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])
        if before[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


# -- the model ----------------------------------------------------------------------------
@dataclass
class CompileCounter:
    """Graphs the compile backend was handed (one per compiled frame and graph break): a
    count that grows during training means recompilation."""

    graphs: int = 0


def _counting_backend(name: str, counter: CompileCounter) -> Any:
    from torch._dynamo import lookup_backend

    inner = lookup_backend(name)

    def backend(gm: Any, example_inputs: Any) -> Any:
        counter.graphs += 1
        return inner(gm, example_inputs)

    return backend


def _to_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, tuple):
        return tuple(_to_float32(v) for v in value)
    if isinstance(value, list):
        return [_to_float32(v) for v in value]
    return value


class _Forward:
    """The model's ``forward``, replaced on the instance (parameter names, ``state_dict``
    and ``functional_call`` are unchanged): bf16 autocast around every forward when asked,
    and the compiled graph for training forwards of the model's own parameters at the
    training shape; every other forward (evaluation, the partial last batch, a look-ahead
    through ``functional_call``) runs the eager module."""

    def __init__(self, model: nn.Module, device_type: str, precision: str, compile_backend: str | None,
                 counter: CompileCounter) -> None:
        self.eager = model.forward
        self.model = model
        self.device_type = device_type
        self.bf16 = precision == "bf16"
        self.compiled = None
        self.shape: Any = None
        named = next(((m, n, p) for m in model.modules() for n, p in m._parameters.items() if p is not None), None)
        self.anchor = named
        if compile_backend:
            self.compiled = torch.compile(self.eager, backend=_counting_backend(compile_backend, counter),
                                          dynamic=False)

    def _own_parameters(self) -> bool:
        if self.anchor is None:
            return True
        module, name, param = self.anchor
        return module._parameters.get(name) is param

    def _shape(self, args: tuple[Any, ...]) -> Any:
        return tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.eager
        if (self.compiled is not None and self.model.training and torch.is_grad_enabled()
                and self._own_parameters()):
            shape = self._shape(args)
            if self.shape is None:
                self.shape = shape  # the first training batch sets the compiled shape
            if shape == self.shape:
                fn = self.compiled
        if not self.bf16:
            return fn(*args, **kwargs)
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = fn(*args, **kwargs)
        return _to_float32(out)


def prepare_model(model: nn.Module, kind: str, device: torch.device,
                  execution: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The model as ``execution`` asks (channels-last for image models, bf16 autocast, the
    training forward compiled) and what :func:`train` records of it in ``method_info``."""
    info: dict[str, Any] = {"compile": execution.get("compile"),
                            "channels_last": bool(execution.get("channels_last")),
                            "precision": execution.get("precision") or "fp32"}
    if info["channels_last"] and kind == "image":
        model = model.to(memory_format=torch.channels_last)
    counter = CompileCounter()
    if info["compile"] or info["precision"] != "fp32":
        model.forward = _Forward(model, device.type, info["precision"], info["compile"], counter)
    info["_compile_counter"] = counter
    return model, info
