"""Per-epoch curves (test metric and LR) of one experiment, rendered from Parquet alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlrsnet.harness.store import Store
from mlrsnet.paper.report import require_finished


def epoch_lr(steps: pd.DataFrame) -> pd.DataFrame:
    """Mean LR per (run, epoch); ``epoch`` counts from 1 in both tables, so it joins the
    ``epochs`` table as it is."""
    return steps.groupby(["run_id", "epoch"], as_index=False)["lr"].mean()


def label_of(runs: pd.DataFrame) -> pd.Series:
    return runs.apply(lambda r: r["tags"].get("label") or r["method"], axis=1)


def render_curves(store: Store, out: Path, experiment: str) -> list[Path]:
    """One PNG per task: test accuracy (or perplexity) and LR per epoch, one line per method
    (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = store.runs(experiment)
    require_finished(runs, store, experiment, "run the experiment first (e.g. `make demo`)")
    runs = runs[runs["status"].isin(["finished", "diverged"])].copy()
    runs["label"] = label_of(runs)
    epochs = store.read("epochs", experiment)
    lrs = epoch_lr(store.read("steps", experiment))
    written = []
    for task, group in runs.groupby("task"):
        ids = set(group["run_id"])
        ep = epochs[epochs["run_id"].isin(ids) & (epochs["split"] == "test")]
        metric = "acc" if (ep["metric"] == "acc").any() else "ppl"
        ep = ep[ep["metric"] == metric].merge(group[["run_id", "label"]], on="run_id")
        lr = lrs[lrs["run_id"].isin(ids)].merge(group[["run_id", "label"]], on="run_id")
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        for label, g in ep.groupby("label"):
            m = g.groupby("epoch")["value"].mean()
            a1.plot(m.index, m.values * (100 if metric == "acc" else 1), marker="o", ms=3, label=label)
        for label, g in lr.groupby("label"):
            m = g.groupby("epoch")["lr"].mean()
            a2.plot(m.index, m.values, marker="o", ms=3, label=label)
        a1.set(xlabel="epoch", ylabel="test accuracy (%)" if metric == "acc" else "test perplexity",
               title=f"{task}: test {metric}")
        a2.set(xlabel="epoch", ylabel="learning rate (epoch mean)", title=f"{task}: LR", yscale="log")
        a1.legend(fontsize=8)
        a1.grid(alpha=0.3)
        a2.grid(alpha=0.3)
        fig.tight_layout()
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{experiment}-{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
