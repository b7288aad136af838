"""Run ``benchmarks/transfer_conventions.toml`` and draw the transferred LR per step under
both gate conventions: ``docs/transfer_conventions.png``, and print the table of
``docs/transfer_conventions.md``.

Usage: ``python benchmarks/transfer_conventions.py [--profile mini] [--results results]
[--checkpoints DIR]`` (the official checkpoints: ``--checkpoints`` or $MLRSNET_CHECKPOINTS).
Finished runs are not trained again; the figure is drawn from the Parquet store alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "benchmarks" / "transfer_conventions.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--results", default=str(REPO / "results"))
    parser.add_argument("--checkpoints", default=os.environ.get("MLRSNET_CHECKPOINTS"))
    parser.add_argument("--out", default=str(REPO / "docs"))
    args = parser.parse_args(argv)

    from mlrsnet.harness.cli import main as bench

    run_args = ["run", str(SPEC), "--profile", args.profile, "--results", args.results, "--quiet"]
    if args.checkpoints:
        run_args += ["--checkpoints", args.checkpoints]
    code = bench(run_args)
    if code:
        return code
    return draw(Path(args.results), Path(args.out), args.profile)


def draw(results: Path, out: Path, profile: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlrsnet.harness.store import Store

    store = Store(results)
    runs = store.runs("transfer-conventions")
    runs = runs[(runs["status"] == "finished") & (runs["profile"] == profile)]
    steps = store.read("steps", "transfer-conventions")
    epochs = store.read("epochs", "transfer-conventions")
    tasks = sorted(runs["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False)
    rows = []
    for ax, task in zip(axes[0], tasks, strict=True):
        for _, run in runs[runs["task"] == task].iterrows():
            s = steps[steps["run_id"] == run["run_id"]].sort_values("step")
            label = run["tags"].get("label", run["method"])
            ax.plot(s["step"], s["lr"], label=label, lw=1.2)
            ep = epochs[(epochs["run_id"] == run["run_id"]) & (epochs["split"] == "test")]
            metric = "acc" if (ep["metric"] == "acc").any() else "ppl"
            final = ep[ep["metric"] == metric].sort_values("epoch")["value"].iloc[-1]
            info = run["method_info"]
            rows.append((task, label, float(s["lr"].iloc[0]), float(s["lr"].iloc[len(s) // 2]),
                         float(s["lr"].iloc[-1]), metric, final, info.get("mlrsnet_stage_starts")))
            for start in info.get("mlrsnet_stage_starts", [])[1:]:
                ax.axvline(start, color="0.8", lw=0.8, zorder=0)
        ax.set(xlabel="training step", ylabel="learning rate", yscale="log",
               title=f"{task} ({profile}): official checkpoints 1/100/200")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    png = out / "transfer_conventions.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    lines = ["| task | convention | LR at start | LR at mid-run | LR at end | final test metric |",
             "|---|---|---|---|---|---|"]
    for task, label, first, mid, last, metric, final, _ in rows:
        shown = f"acc {final * 100:.1f}%" if metric == "acc" else f"ppl {final:.1f}"
        lines.append(f"| {task} | {label} | {first:.3g} | {mid:.3g} | {last:.3g} | {shown} |")
    print(png)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
