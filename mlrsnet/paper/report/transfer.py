"""Supplement Sec. 5 / Fig. 5: MultiStep tuned on ResNet-18/CIFAR-10, applied unchanged.

Rendered from Parquet alone: the configuration each searcher found on the source task
(beside the paper's), then, for every target task, the final test metric that
configuration reached without re-tuning, next to the comparison methods of the spec
(the transferred MLR-SNet), and one figure of the test curves per target.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from mlrsnet.harness.store import Store
from mlrsnet.paper.report import require_finished
from mlrsnet.paper.report.table1 import SEARCHER_TITLES, format_metric, load_paper_table1
from mlrsnet.paper.tasks import TASKS
from mlrsnet.paper.tune.results import final_metrics, skipped_searches, summarize_searches

SOURCE_TASK = "resnet18-cifar10"
SEARCHER_ORDER = ("bayesopt", "bohb", "random", "grid")
#: The best (alpha0, gamma_M) the paper's random and grid searches found on ResNet-18 /
#: CIFAR-10 (supplement Sec. 5); BayesOpt and BOHB come from its Table 1.
PAPER_RANDOM_GRID = {"random": (0.0154, 0.0152), "grid": (0.1, 0.1)}


def paper_source_configs() -> dict[str, tuple[float, float]]:
    paper = load_paper_table1()
    rows = paper[paper["task"] == SOURCE_TASK]
    out = {r.searcher: (float(r.alpha0), float(r.gamma)) for r in rows.itertuples()}
    return {**out, **PAPER_RANDOM_GRID}


def transfer_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs on the targets: transferred configurations and comparison methods."""
    if runs.empty:
        return runs
    tags = runs["tags"]
    keep = tags.map(lambda t: "transfer_from" in t or bool(t.get("transfer_compare")))
    out = runs[keep & runs["status"].isin(["finished", "diverged", "failed", "running"])].copy()
    if out.empty:  # no target run yet (apply() on an empty frame returns a frame)
        return out.assign(search=pd.Series(dtype=object), label=pd.Series(dtype=object))
    out["search"] = out["tags"].map(lambda t: t.get("search"))
    out["label"] = out.apply(lambda r: r["tags"].get("label") or r["method"], axis=1)
    return out


def source_frame(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """The best configuration per searcher on the source task, with the paper's."""
    summaries = summarize_searches(runs, epochs)
    paper = paper_source_configs()
    rows = []
    for searcher in SEARCHER_ORDER:
        mine = summaries[(summaries["task"] == SOURCE_TASK) & (summaries["search"] == searcher)] \
            if len(summaries) else summaries
        s = mine.iloc[0].to_dict() if len(mine) else {}
        hp = s.get("best_hparams") or {}
        ref = paper.get(searcher, (None, None))
        rows.append({"searcher": searcher, "profile": s.get("profile"), "trials": s.get("trials"),
                     "objective": s.get("objective"), "alpha0": hp.get("lr"), "gamma": hp.get("decay"),
                     "objective_value": s.get("best_value"), "test_value": s.get("best_test"),
                     "paper_alpha0": ref[0], "paper_gamma": ref[1]})
    return pd.DataFrame(rows)


def targets_frame(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per (target, transferred searcher or comparison method)."""
    tr = transfer_runs(runs)
    cols = ["task", "setting", "label", "search", "method", "alpha0", "gamma", "status", "metric",
            "final_test", "best_test", "epochs", "run_id"]
    if tr.empty:
        return pd.DataFrame(columns=cols)
    finals = final_metrics(epochs, tr["run_id"])
    rows = []
    for r in tr.itertuples():
        kind = TASKS[r.task].kind if r.task in TASKS else "image"
        metric = "acc" if kind == "image" else "ppl"
        ep = epochs[(epochs["run_id"] == r.run_id) & (epochs["split"] == "test")
                    & (epochs["metric"] == metric)]
        best = (ep["value"].max() if metric == "acc" else ep["value"].min()) if len(ep) else None
        rows.append({
            "task": r.task, "setting": TASKS[r.task].title if r.task in TASKS else r.task,
            "label": r.label, "search": r.search, "method": r.method,
            "alpha0": r.hparams.get("lr") if r.search else None,
            "gamma": r.hparams.get("decay") if r.search else None, "status": r.status,
            "metric": f"test/{metric}", "final_test": finals.get(r.run_id, {}).get(f"test/{metric}"),
            "best_test": best, "epochs": int(ep["epoch"].max()) if len(ep) else 0, "run_id": r.run_id,
        })
    order = {name: i for i, name in enumerate(TASKS)}
    frame = pd.DataFrame(rows, columns=cols)
    return frame.sort_values("task", key=lambda t: t.map(order), kind="stable").reset_index(drop=True)


def _num(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.4g}"


def _test_name(objective: Any) -> str | None:
    """``val/acc`` -> ``test/acc`` (the same run's test metric)."""
    return f"test/{objective.split('/')[1]}" if isinstance(objective, str) else None


def _cell(row: pd.Series) -> str:
    if row["status"] == "diverged":
        return "diverged"
    if row["status"] != "finished":
        return str(row["status"])
    return format_metric(row["metric"], row["final_test"]).rsplit(" ", 1)[-1]


def to_document(source: pd.DataFrame, targets: pd.DataFrame, skipped: pd.DataFrame, experiment: str) -> Any:
    """The report as one document (:mod:`mlrsnet.paper.report.document`): Markdown and HTML."""
    from mlrsnet.paper.report import document as doc

    page = doc.Document(f"Transfer without re-tuning (supplement Fig. 5; experiment `{experiment}`)")
    rows = [[SEARCHER_TITLES.get(r["searcher"], r["searcher"]), _num(r["alpha0"]), _num(r["gamma"]),
             format_metric(r["objective"], r["objective_value"]),
             format_metric(_test_name(r["objective"]), r["test_value"]),
             "—" if pd.isna(r["trials"]) else int(r["trials"]), _num(r["paper_alpha0"]), _num(r["paper_gamma"])]
            for _, r in source.iterrows()]
    page.add(doc.Heading(f"Configurations tuned on {TASKS[SOURCE_TASK].title}"),
             doc.Table(["searcher", "α0 (ours)", "γ_M (ours)", "objective (ours)", "test", "trials", "α0 (paper)",
                        "γ_M (paper)"], rows),
             doc.Heading("Final test metric on the targets"))
    if targets.empty:
        page.add(doc.Para("No transfer runs yet: run `make reproduce-transfer`."))
    else:
        labels = _column_order(targets)
        rows = []
        for _task, part in targets.groupby("task", sort=False):
            by_label = {r["label"]: _cell(r) for _, r in part.iterrows()}
            rows.append([part["setting"].iloc[0], *(by_label.get(lb, "—") for lb in labels)])
        page.add(doc.Table(["setting", *labels], rows),
                 doc.Para("Accuracy in %, perplexity as is; the configuration is the searcher's best on "
                          f"{TASKS[SOURCE_TASK].title}, used unchanged (no search on the target)."))
    if len(skipped):
        page.add(doc.Bullets([f"{TASKS[r['task']].title if r['task'] in TASKS else r['task']}: skipped — {r['reason']}"
                              for _, r in skipped.iterrows()]))
    return page


def to_markdown(source: pd.DataFrame, targets: pd.DataFrame, skipped: pd.DataFrame, experiment: str) -> str:
    from mlrsnet.paper.report import document as doc

    return doc.to_markdown(to_document(source, targets, skipped, experiment))


def _column_order(targets: pd.DataFrame) -> list[str]:
    tr = targets.drop_duplicates("label")
    ranked = sorted(tr.itertuples(), key=lambda r: (
        SEARCHER_ORDER.index(r.search) if r.search in SEARCHER_ORDER else len(SEARCHER_ORDER), r.label))
    return [r.label for r in ranked]


def _is_target(runs: pd.DataFrame) -> pd.Series:
    """The runs on the targets (transferred configurations and comparison methods)."""
    return runs["tags"].map(lambda t: isinstance(t, dict) and ("transfer_from" in t or bool(t.get("transfer_compare"))))


def plot_targets(store: Store, experiment: str, path: Path) -> list[Path]:
    """Fig. 5: test curves per target, by the report's one curve renderer (each method in its
    colour and marker of every figure), with its caption beside it."""
    from mlrsnet.paper.report import plotting
    from mlrsnet.paper.report.curves import build_curves, curves_caption
    from mlrsnet.paper.report.data import load

    data = load(store, experiment, keep=_is_target)
    return plotting.save(build_curves(data), path.parent, path.stem, curves_caption(data))


def render_transfer(store: Store, out: Path, experiment: str) -> list[Path]:
    """Write ``transfer.md``, ``transfer.csv`` (target runs) and ``transfer.png``."""
    runs = store.runs(experiment)
    require_finished(runs, store, experiment, "run `make reproduce-transfer` first",
                     also=("stopped", "skipped"))
    epochs = store.read("epochs", experiment)
    source = source_frame(runs, epochs)
    targets = targets_frame(runs, epochs)
    skipped = skipped_searches(runs)
    skipped = skipped[skipped["search"] == "transfer"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "transfer.md", out / "transfer.csv"]
    paths[0].write_text(to_markdown(source, targets, skipped, experiment))
    targets.to_csv(paths[1], index=False)
    if not targets.empty and targets["status"].isin(["finished", "diverged"]).any():
        paths += plot_targets(store, experiment, out / "transfer.png")
    return paths
