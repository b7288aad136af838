"""Our meta-training LR trace (method ``mlrsnet``) against the authors' over the fraction of training.

The reference is ``official-mlrsnet/meta_train_lr.parquet`` (the per-step LR the official
``meta-train/image-classification/meta_train.py`` logged: ResNet-18/CIFAR-10 and
WRN-28-10/CIFAR-100, 200 epochs of 383 steps, one meta update per epoch).  Both traces are put
on the same axis, the fraction of training done (step / (steps - 1)), and compared in shape:
the LR relative to the run's first LR, at fixed fractions, and one number for the whole
curve, ``shape_rms`` = the RMS over 101 evenly spaced fractions of
``log10(ours / ours[0]) - log10(official / official[0])`` (0 = the same shape; 1 = a factor
of ten apart on average).

Our trace comes from training the cell in this process (``train()`` of the loop; default) or
from a results folder written by ``mlrsnet-bench`` (``--results DIR``: the finished
``mlrsnet`` runs of the task and profile found there).  Writes a PNG and a Markdown table
under ``reports/<profile>/`` (``mlrsnet_lr_trace.png`` / ``.md``).

Run:  MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/mlrsnet_lr_trace.py \\
          [--task resnet18-cifar10] [--profile mini] [--seeds 0 1] [--hparams '{"t_val": 1}'] \\
          [--results DIR [--experiment NAME]] [--out reports]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Where the shared reference files live (``../shared/reference`` next to the checkout).
REFERENCE_DIRS = (ROOT.parent / "shared" / "reference" / "official-mlrsnet", ROOT / "reference" / "official-mlrsnet")
OFFICIAL_FILE = "meta_train_lr.parquet"
#: Our task -> the official setting its shape is compared with (others: ResNet-18/CIFAR-10).
OFFICIAL_SETTING = {"resnet18-cifar10": "resnet18_cifar10", "wrn28_10-cifar100": "wrn28_10_cifar100"}
DEFAULT_SETTING = "resnet18_cifar10"
#: The fractions of training the table reports.
FRACTIONS = (0.0, 0.05, 0.10, 0.20, 0.33, 0.50, 0.66, 0.80, 1.0)
SHAPE_POINTS = 101


def find_official(path: str | None = None) -> Path:
    if path:
        return Path(path)
    env = os.environ.get("MLRSNET_REFERENCE_DIR")
    dirs = ([Path(env) / "official-mlrsnet", Path(env)] if env else []) + list(REFERENCE_DIRS)
    for d in dirs:
        if (d / OFFICIAL_FILE).exists():
            return d / OFFICIAL_FILE
    raise SystemExit(f"{OFFICIAL_FILE} not found in {', '.join(map(str, dirs))}; pass --official PATH")


def official_traces(path: Path) -> dict[str, np.ndarray]:
    """Setting -> the official per-step LR, in step order."""
    import pandas as pd

    df = pd.read_parquet(path)
    return {str(s): g.sort_values("step")["lr"].to_numpy(dtype=float) for s, g in df.groupby("setting")}


def at_fraction(lr: np.ndarray, fraction: float) -> float:
    """The LR at a fraction of training (step ``round(fraction * (steps - 1))``)."""
    return float(lr[int(round(fraction * (len(lr) - 1)))])


def relative_curve(lr: np.ndarray, points: int = SHAPE_POINTS) -> np.ndarray:
    """``lr / lr[0]`` at ``points`` evenly spaced fractions of training."""
    idx = np.rint(np.linspace(0.0, 1.0, points) * (len(lr) - 1)).astype(int)
    return lr[idx] / lr[0]


def shape_rms(ours: np.ndarray, official: np.ndarray) -> float:
    """RMS of the log10 ratio of the two relative curves (module docstring)."""
    a, b = relative_curve(ours), relative_curve(official)
    return float(np.sqrt(np.mean((np.log10(np.clip(a, 1e-12, None)) - np.log10(b)) ** 2)))


def train_traces(task: str, profile: str, seeds: Sequence[int], hparams: Mapping[str, Any],
                 overrides: Mapping[str, Any], data_dir: str | None) -> list[dict[str, Any]]:
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train

    out = []
    for seed in seeds:
        r = train(Cell(task, profile, "mlrsnet", dict(hparams), seed=seed, overrides=dict(overrides)),
                  data_dir=data_dir)
        out.append({"seed": seed, "lr": np.asarray(r.steps["lr"], dtype=float), "info": r.method_info,
                    "status": r.status})
    return out


def read_traces(results: str, task: str, profile: str, seeds: Iterable[int] | None,
                experiment: str | None) -> list[dict[str, Any]]:
    from mlrsnet.harness.store import Store

    store = Store(results)
    runs = store.runs(experiment)
    if runs.empty:
        raise SystemExit(f"no runs in {results}" + (f" (experiment {experiment})" if experiment else ""))
    runs = runs[(runs["task"] == task) & (runs["profile"] == profile) & (runs["method"] == "mlrsnet")
                & runs["status"].isin(["finished", "diverged"])]
    if seeds is not None:
        runs = runs[runs["seed"].isin(list(seeds))]
    if runs.empty:
        raise SystemExit(f"no finished mlrsnet run of {task}/{profile} in {results}")
    steps = store.read("steps", experiment)
    out = []
    for _, row in runs.sort_values("seed").iterrows():
        s = steps[steps["run_id"] == row["run_id"]].sort_values("step")
        out.append({"seed": int(row["seed"]), "lr": s["lr"].to_numpy(dtype=float), "info": row["method_info"],
                    "status": row["status"], "run_id": row["run_id"]})
    return out


def table(ours: list[dict[str, Any]], official: Mapping[str, np.ndarray], compare: str, task: str,
          profile: str, hparams: Mapping[str, Any]) -> str:
    ref = official[compare]
    head = "| | steps | meta updates | t_val | first LR | " + " | ".join(f"{f:.0%}" for f in FRACTIONS) + " | shape_rms |"
    rule = "|" + "---|" * (6 + len(FRACTIONS))
    lines = [f"# MLR-SNet meta-training LR: {task} ({profile}) vs the official {compare}", "",
             "LR relative to the run's first LR at fractions of training; shape_rms = RMS over 101 "
             f"fractions of log10(ours/ours[0]) - log10(official/official[0]) against {compare}.", "",
             f"Hyper-parameters: `{json.dumps(dict(hparams), sort_keys=True)}` (empty: the defaults).", "",
             head, rule]
    for name, lr in official.items():
        rel = " | ".join(f"{at_fraction(lr, f) / lr[0]:.3f}" for f in FRACTIONS)
        rms = "0" if name == compare else f"{shape_rms(lr, ref):.3f}"
        lines.append(f"| official {name} | {len(lr)} | 200 | 300 | {lr[0]:.4f} | {rel} | {rms} |")
    for t in ours:
        lr, info = t["lr"], t["info"] or {}
        rel = " | ".join(f"{at_fraction(lr, f) / lr[0]:.3f}" for f in FRACTIONS)
        lines.append(f"| ours seed {t['seed']} | {len(lr)} | {info.get('meta_updates', '?')} | "
                     f"{info.get('t_val', '?')} | {lr[0]:.4f} | {rel} | {shape_rms(lr, ref):.3f} |")
    return "\n".join(lines) + "\n"


def plot(ours: list[dict[str, Any]], official: Mapping[str, np.ndarray], compare: str, task: str,
         profile: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rel, ax_abs) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, lr in official.items():
        x = np.arange(len(lr)) / (len(lr) - 1)
        style = {"lw": 2.0, "color": "black"} if name == compare else {"lw": 1.2, "color": "grey", "ls": "--"}
        ax_rel.plot(x, lr / lr[0], label=f"official {name}", **style)
        ax_abs.plot(x, lr, label=f"official {name}", **style)
    for t in ours:
        lr = t["lr"]
        x = np.arange(len(lr)) / max(1, len(lr) - 1)
        info = t["info"] or {}
        label = f"ours seed {t['seed']} ({info.get('meta_updates', '?')} meta updates)"
        ax_rel.plot(x, lr / lr[0], lw=1.2, label=label)
        ax_abs.plot(x, lr, lw=1.2, label=label)
    for ax in (ax_rel, ax_abs):
        ax.set_yscale("log")
        ax.set_xlabel("fraction of training")
        ax.grid(alpha=0.3, which="both")
        for f in (1 / 3, 2 / 3):
            ax.axvline(f, color="k", lw=0.5, alpha=0.4)
    ax_rel.set_ylabel("LR / first LR")
    ax_abs.set_ylabel("LR")
    ax_rel.set_title(f"shape: {task} ({profile}) vs official")
    ax_abs.set_title("absolute LR")
    ax_rel.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Writes reports/<profile>/mlrsnet_lr_trace.{png,md}; "
                                        "see the module docstring for the comparison.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="resnet18-cifar10")
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--hparams", default="{}", help="JSON hyper-parameters of mlrsnet (training only)")
    ap.add_argument("--overrides", default="{}", help="JSON profile overrides (training only)")
    ap.add_argument("--results", help="read finished mlrsnet runs from this results folder instead of training")
    ap.add_argument("--experiment", help="with --results: only this experiment")
    ap.add_argument("--official", help=f"path of {OFFICIAL_FILE} (default: ../shared/reference/official-mlrsnet)")
    ap.add_argument("--compare", help="official setting to compare with (default: the task's own, "
                                      f"else {DEFAULT_SETTING})")
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default=str(ROOT / "reports"), help="folder; files go to <out>/<profile>/")
    args = ap.parse_args(argv)

    official = official_traces(find_official(args.official))
    compare = args.compare or OFFICIAL_SETTING.get(args.task, DEFAULT_SETTING)
    if compare not in official:
        raise SystemExit(f"no official setting {compare!r}; have {', '.join(official)}")
    hparams = json.loads(args.hparams)
    if args.results:
        ours = read_traces(args.results, args.task, args.profile, args.seeds, args.experiment)
    else:
        ours = train_traces(args.task, args.profile, args.seeds, hparams, json.loads(args.overrides),
                            args.data_dir)
    out = Path(args.out) / args.profile
    out.mkdir(parents=True, exist_ok=True)
    md = table(ours, official, compare, args.task, args.profile, hparams)
    (out / "mlrsnet_lr_trace.md").write_text(md)
    plot(ours, official, compare, args.task, args.profile, out / "mlrsnet_lr_trace.png")
    sys.stdout.write(md)
    print(f"wrote {out / 'mlrsnet_lr_trace.md'} and {out / 'mlrsnet_lr_trace.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
