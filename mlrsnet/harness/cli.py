"""mlrsnet-bench: run experiments and train single cells; plug-ins add the rest.

The harness owns ``run``, ``train``, ``check-method`` and ``store``; the ``mlrsnet.commands`` entry-point group adds the
others (the paper's apparatus adds ``list``, ``tune``, ``report`` and ``data``,
:mod:`mlrsnet.paper.cli`).

User mistakes (a typo in a spec, a missing dataset) end with one readable paragraph and
exit code 2, never a traceback; Ctrl-C ends with exit code 130 and a note that re-running
the same command resumes.  Installed without the ``bench`` extra (``pip install mlrsnet``:
the scheduler alone), every call, ``--help`` included, ends with one paragraph naming
``pip install "mlrsnet[bench]"`` and exit code 2.

Start-up: building the parser (what ``--help`` does) imports neither torch nor pandas nor
Ray Tune; each command imports what it needs when it runs, and the profile names offered
as ``--profile`` choices are read from the task registry only when they are checked or
shown (``tests/harness/test_cli_startup.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.harness import process_env
from mlrsnet.harness.registry import command_registrars, profile_names

#: Top-level modules of the ``bench`` extra that every command needs (import name ->
#: distribution name in pyproject.toml's ``bench`` list; a test keeps the two in step).
BENCH_MODULES = {"pandas": "pandas", "pyarrow": "pyarrow", "torchvision": "torchvision",
                 "matplotlib": "matplotlib", "tqdm": "tqdm", "ray": "ray"}


def missing_bench_modules() -> list[str]:
    """The :data:`BENCH_MODULES` that cannot be imported (found without importing them)."""
    missing = []
    for name in BENCH_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def bench_extra_message(missing: Sequence[str]) -> str:
    return (f"mlrsnet-bench: the benchmark suite's command line needs the [bench] extra, which is "
            f"not installed (missing: {', '.join(missing)}).  Install it with "
            '`pip install "mlrsnet[bench]"`.  The scheduler alone (`from mlrsnet.snet import '
            "MLRSNetScheduler`) works without it, with torch and numpy only.")


class _ProfileChoices(Sequence[str]):
    """The task registry's profile names as argparse ``choices``, read on first use: building
    the parser must not load the task catalogs (they import torch).  Pass a ``metavar`` with
    it (argparse lists the choices of an option without one when the option is added)."""

    def _names(self) -> tuple[str, ...]:
        return profile_names()

    def __getitem__(self, index: Any) -> Any:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()


def profile_choices() -> Sequence[str]:
    """``choices=`` for a ``--profile`` option (give it ``metavar="PROFILE"``)."""
    return _ProfileChoices()


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_hparams(pairs: Sequence[str], flag: str = "--hparam") -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"{flag} expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def parse_seeds(text: str | None) -> list[int] | None:
    """``--seeds``: ``0,1,2`` or an inclusive range ``0-4``; each seed in ``0..MAX_SEED`` and
    at most ``MAX_SEEDS`` of them (a range is checked before it is expanded)."""
    from mlrsnet.harness.experiment import MAX_SEED, MAX_SEEDS

    if text is None:
        return None
    usage = f"--seeds expects e.g. 0,1,2 or 0-4 (seeds from 0 to {MAX_SEED}, at most {MAX_SEEDS} of them)"
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(v) for v in text.split("-"))
            if hi < lo:
                raise UserError(f"{usage}; {text!r} is an empty range (its end is below its start)")
            bounds = (lo, hi)
            count = hi - lo + 1
        else:
            seeds = [int(s) for s in text.split(",") if s.strip()]
            bounds = (min(seeds, default=0), max(seeds, default=0))
            count = len(seeds)
    except ValueError:
        raise UserError(f"{usage}, got {text!r}") from None
    if bounds[0] < 0 or bounds[1] > MAX_SEED:
        raise UserError(f"{usage}; {text!r} goes outside 0..{MAX_SEED}")
    if count > MAX_SEEDS:
        raise UserError(f"{usage}; {text!r} names {count} seeds")
    return list(range(bounds[0], bounds[1] + 1)) if "-" in text and "," not in text else seeds


def check_results_writable(results: str | os.PathLike[str]) -> None:
    """Refuse an unusable ``--results`` once, before any run (it failed every run, one by
    one): see :func:`check_writable`."""
    check_writable(results, "--results", "--results DIR or $MLRSNET_RESULTS")


def check_writable(folder: str | os.PathLike[str], flag: str, how: str) -> None:
    """Refuse an output folder that cannot be written, before any work (``train``, ``run``,
    ``tune``, ``reproduce``: ``--results``; ``report`` and ``reproduce``: ``--out``): the
    folder, or the nearest existing folder above it, must be a writable folder.  Writes
    nothing that stays (a probe file is created and removed at once).  ``how`` names the
    way to pass another folder."""
    import tempfile

    path = Path(folder).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a dangling link: mkdir would fail
            break
        probe = probe.parent
    where = "" if probe == path else f" (its nearest existing parent is {str(probe)!r})"
    if not probe.is_dir():
        raise UserError(f"{flag} {str(path)!r} cannot be used: {str(probe)!r} is not a folder; "
                        f"pass a folder that can be created or written ({how})")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".mlrsnet-write-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {str(path)!r} is not writable{where}: {exc.strerror or exc}; "
                        f"pass a folder you can write ({how})") from None


def check_data_dir(data_dir: str | os.PathLike[str] | None) -> None:
    """Refuse an explicit ``--data-dir`` that is not a folder: the data layer would skip it
    and train on ``$MLRSNET_DATA_DIR`` or ``./data`` instead, silently (a typo must not pick
    other data)."""
    if data_dir is None or str(data_dir) == "":
        return
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise UserError(f"--data-dir {str(path)!r} {what}; pass the folder that holds the datasets "
                        "(or leave --data-dir out to use $MLRSNET_DATA_DIR, then ./data)")


# ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from mlrsnet.harness.executor import run_local, run_ray
    from mlrsnet.harness.experiment import load_spec, spec_record, task_facts
    from mlrsnet.harness.store import Store

    spec = load_spec(args.spec, profile=args.profile, seeds=parse_seeds(args.seeds))
    if not spec.methods:
        raise UserError(f"{args.spec}: has no [[methods]] to run, only a [tune] block; run its searches "
                        f"with `mlrsnet-bench tune {args.spec}`")
    if spec.takes_tuned:
        raise UserError(f"{args.spec}: some [[methods]] take their hyper-parameters from a search "
                        "('tuned = {...}'); run the spec with `mlrsnet-bench reproduce --only "
                        f"{spec.name}` (it runs the searches first) instead of `run`")
    cells = spec.cells()
    check_results_writable(args.results)
    store = Store(args.results)
    store.write_spec(spec.name, {**spec_record(spec), "task_facts": task_facts(spec.tasks, spec.profile,
                                                                             args.data_dir)})
    quiet = args.quiet
    if not quiet:
        print(f"experiment {spec.name}: {len(cells)} runs ({spec.profile} profile) -> "
              f"{store.root / spec.name}", file=sys.stderr)
    if args.executor == "ray":
        cpus, gpus = cell_resources(cells, args.cpus_per_cell, args.gpus_per_cell)
        outcomes = run_ray(cells, store, address=args.address, data_dir=args.data_dir,
                           device=args.device, quiet=quiet, force=args.force,
                           cpus_per_cell=cpus, gpus_per_cell=gpus)
    else:
        if args.address:
            raise UserError("--address needs --executor ray")
        if args.cpus_per_cell is not None or args.gpus_per_cell is not None:
            raise UserError("--cpus-per-cell and --gpus-per-cell need --executor ray")
        outcomes = run_local(cells, store, data_dir=args.data_dir, device=args.device,
                             quiet=quiet, force=args.force)
    failed = [r for r, o in outcomes.items() if o == "failed"]
    if not quiet:
        counts = {o: list(outcomes.values()).count(o) for o in sorted(set(outcomes.values()))}
        print("done: " + ", ".join(f"{n} {o}" for o, n in counts.items()), file=sys.stderr)
    return 1 if failed else 0


def cell_resources(cells: Sequence[Any], cpus: float | None, gpus: float | None) -> tuple[float, float]:
    """CPUs and GPUs each Ray task asks for: the options given, else the largest of the
    cells' profiles (``cpus_per_trial`` / ``gpus_per_trial``; ``paper``: GPUs), as
    ``reproduce`` and ``tune`` ask."""
    from mlrsnet.harness.experiment import resolved_profile

    profiles = [resolved_profile(c) for c in cells]
    if cpus is None:
        cpus = max((float(getattr(p, "cpus_per_trial", 1.0)) for p in profiles), default=1.0)
    if gpus is None:
        gpus = max((float(getattr(p, "gpus_per_trial", 0.0)) for p in profiles), default=0.0)
    if not (cpus > 0 and gpus >= 0):
        raise UserError(f"--cpus-per-cell must be > 0 and --gpus-per-cell >= 0, not {cpus:g} and {gpus:g}")
    return float(cpus), float(gpus)


def cmd_train(args: argparse.Namespace) -> int:
    from mlrsnet.harness.executor import run_local
    from mlrsnet.harness.experiment import (
        Cell,
        OverrideError,
        check_overrides,
        experiment_name_problem,
        seed_problem,
    )
    from mlrsnet.harness.registry import get_method, get_task
    from mlrsnet.harness.store import Store

    problem = experiment_name_problem(args.experiment)
    if problem:
        raise UserError(f"--experiment: {problem}")
    get_task(args.task).profile(args.profile)
    problem = seed_problem(args.seed)
    if problem:
        raise UserError(f"--seed {problem}")
    method = get_method(args.method)
    hparams = _parse_hparams(args.hparam)
    try:
        method.check_hparams(hparams)
    except UserError as exc:
        raise UserError(f"--hparam: {exc}") from None
    method(**hparams)  # a method's own checks of combinations
    overrides = _parse_hparams(args.override, flag="--override")
    try:
        check_overrides(args.task, args.profile, overrides)
    except OverrideError as exc:
        raise UserError(f"--override {exc}") from None
    cell = Cell(task=args.task, profile=args.profile, method=args.method,
                hparams=hparams, seed=args.seed, experiment=args.experiment,
                overrides=overrides)
    check_results_writable(args.results)
    if not args.quiet:
        print(f"run {cell.run_id}: artifacts in {Path(args.results) / cell.experiment / 'artifacts' / cell.run_id}",
              file=sys.stderr)
    outcomes = run_local([cell], Store(args.results), data_dir=args.data_dir, device=args.device,
                         quiet=args.quiet, force=args.force)
    return 1 if "failed" in outcomes.values() else 0


def cmd_check_method(args: argparse.Namespace) -> int:
    """The conformance suite (:mod:`mlrsnet.harness.conformance`) on one method: a registered
    name, or a Python file defining methods (checked without registering it)."""
    from mlrsnet.harness.conformance import check_method
    from mlrsnet.harness.registry import get_method, load_plugin_file

    target = Path(args.method)
    if args.method.endswith(".py") or target.is_file():
        if not target.is_file():
            raise UserError(f"check-method: no file {args.method!r}")
        try:
            classes = load_plugin_file(target)
        except Exception as exc:  # the author's module: say what broke, not where we are
            raise UserError(f"check-method: {args.method} failed to import: {type(exc).__name__}: {exc}") from None
        if not classes:
            raise UserError(f"check-method: {args.method} defines no method (a Method subclass with a `name`)")
    else:
        classes = [get_method(args.method)]
    hparams = _parse_hparams(args.hparam)
    for cls in classes:
        try:
            cls.check_hparams(hparams)
        except UserError as exc:
            raise UserError(f"--hparam: {exc}") from None
    if args.checkpoints:
        os.environ["MLRSNET_CHECKPOINTS"] = str(Path(args.checkpoints).resolve())
    failed = total = 0
    for cls in classes:
        print(f"method {cls.name!r} ({cls.__module__}): reads_loss={cls.reads_loss}, "
              f"uses_held_out={cls.uses_held_out}", flush=True)
        checks = check_method(cls, data_dir=args.data_dir, hparams=hparams,
                              on_check=lambda c: print("  " + c.line(), flush=True))
        failed += sum(c.passed is False for c in checks)
        total += len(checks)
    print(f"{total - failed} of {total} checks passed" + ("" if not failed else f"; {failed} failed"))
    return 1 if failed else 0


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings as one line, ``mlrsnet-bench: warning: ...`` (no source location)."""
    print(f"mlrsnet-bench: warning: {message}", file=file or sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options every training command takes (data, results, device, progress, resume)."""
    p.add_argument("--data-dir", default=None, help="dataset folder (else $MLRSNET_DATA_DIR, then ./data)")
    p.add_argument("--results", default=os.environ.get("MLRSNET_RESULTS", "results"),
                   help="results folder (Parquet tables); default ./results")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N or auto (default: the GPU if CUDA works, else the CPU; "
                        "a profile sized for GPUs, e.g. paper, refuses the CPU unless --device cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-run lines")
    p.add_argument("--force", action="store_true", help="re-run finished runs")
    # Execution options (mlrsnet/harness/execution.py): each changes the floats a run gives,
    # so each is recorded in the run's execution identity (runs.data["execution"]) and a
    # finished run is reused only under the same options.  All off by default.
    common = p
    p = p.add_argument_group(
        "execution options", "each changes the floats a run produces, so each is part of the run's "
        "execution identity (runs.data['execution'], with the device and $MLRSNET_THREADS): a "
        "finished run is reused only under the same options. All off by default.")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the training forward (dynamic=False; evaluation and "
                        "look-ahead stay eager; default backend: inductor); sets $MLRSNET_COMPILE")
    p.add_argument("--channels-last", action="store_true",
                   help="image models in channels-last memory format (CPU and CUDA; about 0.6-0.8x "
                        "the step time of ResNet-18 on a CPU); sets $MLRSNET_CHANNELS_LAST")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="bf16: forward passes under bfloat16 autocast (weights, gradients and "
                        "optimiser stay fp32); default fp32; sets $MLRSNET_PRECISION")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="let cuDNN time and pick its fastest algorithms (CUDA; not repeatable); "
                        "sets $MLRSNET_CUDNN_BENCHMARK")
    p.add_argument("--deterministic", action="store_true",
                   help="cuDNN deterministic algorithms (CUDA): a run repeats bit for bit on the "
                        "same GPU and software; sets $MLRSNET_DETERMINISTIC")
    p = common
    p.add_argument("--checkpoints", default=None, metavar="DIR",
                   help="folder of the official MLR-SNet checkpoints (mlr_snet_{1,100,200}.pth) "
                        "for mlrsnet-transfer; sets $MLRSNET_CHECKPOINTS")
    p.set_defaults(checks_data_dir=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlrsnet-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = add_common_options
    profiles = profile_choices()

    p = sub.add_parser("run", help="run an experiment spec (benchmarks/*.toml)")
    p.add_argument("spec")
    p.add_argument("--profile", choices=profiles, default=None, metavar="PROFILE",
                   help="one of %(choices)s (default: the spec's)")
    p.add_argument("--seeds", default=None, help="e.g. 0,1,2 or 0-4 (overrides the spec)")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    p.add_argument("--cpus-per-cell", type=float, default=None,
                   help="CPUs each Ray task asks for (default: the profile's, as tune and reproduce)")
    p.add_argument("--gpus-per-cell", type=float, default=None,
                   help="GPUs each Ray task asks for (default: the profile's; paper: 1, or 0.25-0.5 "
                        "for the small settings; fractions share a GPU)")
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train one task with one method")
    p.add_argument("--task", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--profile", default="mini", choices=profiles, metavar="PROFILE",
                   help="one of %(choices)s (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                   help='profile field, e.g. epochs=6 or model_kwargs=\'{"width": 0.25}\'')
    p.add_argument("--experiment", default="adhoc")
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("check-method", help="run the conformance suite on a method (a registered "
                       "name, or a .py file defining one)",
                       description="Runs the checks every method passes (mlrsnet/harness/conformance.py) "
                       "on an image and a text smoke task: the run finishes, its LRs are finite and "
                       "positive, an interrupted and resumed run equals the uninterrupted one, and the "
                       "reads_loss / uses_held_out declarations match what it does. Exit 0 when all "
                       "pass, 1 when one fails.")
    p.add_argument("method", help="a name from `mlrsnet-bench list methods`, or a Python file")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-dir", default=None, help="dataset folder (else $MLRSNET_DATA_DIR, then ./data)")
    p.add_argument("--checkpoints", default=None, metavar="DIR",
                   help="folder of the official MLR-SNet checkpoints (for mlrsnet-transfer)")
    p.set_defaults(func=cmd_check_method)

    p = sub.add_parser("store", help="maintain a results folder")
    ssub = p.add_subparsers(dest="store_command", required=True)
    sp = ssub.add_parser("restamp", help="add content digests to runs recorded before them, so "
                         "they stand on a fresh copy of the same data (only if it is the same)")
    sp.add_argument("--results", default=os.environ.get("MLRSNET_RESULTS", "results"))
    sp.add_argument("--data-dir", default=None, help="dataset folder (else $MLRSNET_DATA_DIR, then ./data)")
    sp.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    sp.set_defaults(func=_cmd_restamp, checks_data_dir=True)
    sp = ssub.add_parser("migrate", help="rewrite files of an older layout (runs typed by value, steps.epoch "
                         "from 0) in the current one; no run changes")
    sp.add_argument("--results", default=os.environ.get("MLRSNET_RESULTS", "results"))
    sp.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    sp.set_defaults(func=_cmd_migrate)

    for register in command_registrars():
        register(sub)
    return parser


def _cmd_restamp(args: argparse.Namespace) -> int:
    from mlrsnet.harness.restamp import cmd_restamp

    return cmd_restamp(args)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from mlrsnet.harness.migrate import cmd_migrate

    return cmd_migrate(args)


def _stop_on_signals() -> dict[int, Any]:
    """Make ``kill -INT`` and ``kill -TERM`` stop a command the way Ctrl-C does.

    A command started in the background by a non-interactive shell (``nohup make
    reproduce-all &``) inherits SIGINT as *ignored*, so Python never raises
    ``KeyboardInterrupt`` and the only way to stop it was to kill it mid-write.  The
    default SIGINT handler is put back, and SIGTERM is turned into SIGINT, so whatever
    SIGINT handler is installed when it arrives (Python's, or Ray Tune's graceful one during
    a search) decides: finished runs stay finished and the interrupted one resumes.
    Returns the handlers it replaced, for :func:`main` to put back.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}  # handlers can only be set from the main thread (an embedding caller)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if before[signal.SIGINT] is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    return before


def main(argv: Sequence[str] | None = None) -> int:
    process_env.apply()  # before torch starts: its OpenMP pool and CPU allocator read them once
    missing = missing_bench_modules()
    if missing:
        print(bench_extra_message(missing), file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "compile", None):
        os.environ["MLRSNET_COMPILE"] = args.compile
    if getattr(args, "channels_last", False):
        os.environ["MLRSNET_CHANNELS_LAST"] = "1"
    if getattr(args, "precision", None):
        os.environ["MLRSNET_PRECISION"] = args.precision
    if getattr(args, "cudnn_benchmark", False):
        os.environ["MLRSNET_CUDNN_BENCHMARK"] = "1"
    if getattr(args, "deterministic", False):
        os.environ["MLRSNET_DETERMINISTIC"] = "1"
    if getattr(args, "checkpoints", None):
        os.environ["MLRSNET_CHECKPOINTS"] = str(Path(args.checkpoints).resolve())
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    handlers = _stop_on_signals()
    try:
        if getattr(args, "checks_data_dir", False):
            check_data_dir(args.data_dir)
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"mlrsnet-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in BENCH_MODULES:
            raise
        print(bench_extra_message([exc.name.split(".")[0]]), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nmlrsnet-bench: interrupted; run the same command again to resume "
              "(finished runs are kept, the current one restarts from its last epoch).",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
