"""The cost figure: best test metric against the total compute spent to reach it.

The paper's central claim is economic: one meta-training of MLR-SNet replaces a
hyper-parameter search on every new task.  Its Fig. 4 puts a number on it: the grid search
that tunes a hand-designed schedule for EfficientNet-B0 / -B7 on CIFAR-100 (49 runs, 7 LRs x
7 weight-decay ratios) is estimated at 49x and 289x the cost of one MLR-SNet meta-training.
This renderer measures that trade from the Parquet store alone (it never trains): per task,
one point per method label, y = the best test metric the label reached (accuracy: the
highest over epochs, in %; perplexity: the lowest), mean over seeds, x = the total compute
spent to get there, in wall-clock seconds and in parameter-epochs (``method_info["params"]``
x ``epochs_done``), both on log scales.

What a point costs:

- every label: its own training run (mean over its seeds);
- a run tagged ``tuned`` (it trains a search's best configuration again): the whole search,
  the sum over every trial of that ``search_id`` that has a wall time (finished, stopped,
  diverged or failed), counted once per (task, label), not once per seed;
- the frozen transferred MLR-SNet (``mlrsnet-transfer``): its share of one meta-training
  (the mean over seeds of the ``mlrsnet`` runs on ResNet-18 / CIFAR-10 in the meta-training
  experiment), amortised over the distinct tasks it is transferred to in the rendered
  experiment; the table gives the full figure beside the share;
- MLR-SNet meta-trained on the task itself (``mlrsnet``): just its own run.

A cost part that cannot be found (no meta-training experiment, a search no longer in the
store) leaves the point drawn with what is known, hollow, and the caption and the table say
what is missing and why.

Outputs: ``cost.png`` / ``.pdf`` (wall-clock seconds), ``cost-param-epochs.png`` / ``.pdf``
(parameter-epochs), each with its ``.caption.txt``, and ``cost.md`` / ``cost.csv`` with both
measures per task and label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlrsnet.harness.store import Store
from mlrsnet.paper.report import plotting, require_finished
from mlrsnet.paper.report.data import (
    Artefact,
    Data,
    caption_facts,
    figure_title,
    finals,
    fmt_metric,
    labels_of,
    load,
    methods_of,
    missing_reasons,
    sentence,
    task_title,
)
from mlrsnet.paper.report.document import md_table
from mlrsnet.paper.report.style import styles

META_EXPERIMENT = "fig1_meta_train"
#: The meta-training the transferred MLR-SNet stands on: ``mlrsnet`` on this task.
META_METHOD = "mlrsnet"
META_TASK = "resnet18-cifar10"
TRANSFER_METHOD = "mlrsnet-transfer"
#: Statuses of a meta-training run whose cost counts (one that produced the schedule).
META_STATUSES = ("finished",)
PAPER_CLAIM = ("the paper estimates the grid search for EfficientNet-B0 / -B7 on CIFAR-100 at 49x / "
               "289x one MLR-SNet meta-training")
#: Joins a point's notes in the ``note`` column.
NOTE_SEP = " | "
STEM = "cost"
PE_STEM = "cost-param-epochs"

COLUMNS = [
    "task", "label", "method", "metric", "seeds", "best_test", "own_wall_s", "own_param_epochs",
    "search_trials", "search_wall_s", "search_param_epochs", "meta_wall_s_full", "meta_wall_s_amortised",
    "meta_param_epochs_full", "meta_param_epochs_amortised", "meta_tasks", "total_wall_s",
    "total_param_epochs", "search_over_meta", "complete", "note",
]


# -- what one run and one group of runs cost -------------------------------------------------
@dataclass(frozen=True)
class Cost:
    """Compute of a set of runs; ``missing`` says why it is not known (then both are NaN)."""

    wall_s: float = 0.0
    param_epochs: float = 0.0
    runs: int = 0
    missing: str | None = None
    what: str = ""

    @classmethod
    def unknown(cls, why: str) -> Cost:
        return cls(math.nan, math.nan, 0, why)


def param_epochs(row: Mapping[str, Any]) -> float:
    """``method_info["params"] * epochs_done``; 0 for a run that never finished an epoch or
    failed before its model was built (no parameter count)."""
    info = row.get("method_info")
    params = info.get("params") if isinstance(info, dict) else None
    epochs = row.get("epochs_done")
    if epochs is None or pd.isna(epochs) or not params:
        return 0.0
    return float(params) * float(epochs)


def _timed(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that have a wall time (a ``running`` or ``skipped`` row has none)."""
    if runs.empty:
        return runs
    wall = pd.to_numeric(runs["wall_time_s"], errors="coerce")
    return runs[np.isfinite(wall.to_numpy(dtype=float))]


def total_of(runs: pd.DataFrame, what: str = "") -> Cost:
    """The summed wall time and parameter-epochs of ``runs`` (those with a wall time)."""
    timed = _timed(runs)
    pe = sum(param_epochs(r) for _, r in timed.iterrows())
    return Cost(float(pd.to_numeric(timed["wall_time_s"]).sum()) if len(timed) else 0.0, pe, len(timed),
                what=what)


def mean_of(runs: pd.DataFrame, what: str = "") -> Cost:
    """The mean wall time and parameter-epochs of one run of ``runs``."""
    timed = _timed(runs)
    if timed.empty:
        return Cost.unknown(f"no run with a wall time{f' ({what})' if what else ''}")
    pe = [param_epochs(r) for _, r in timed.iterrows()]
    return Cost(float(pd.to_numeric(timed["wall_time_s"]).mean()), float(np.mean(pe)), len(timed), what=what)


class _Runs:
    """``store.runs(experiment)``, read once per experiment."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, pd.DataFrame] = {}

    def __call__(self, experiment: str) -> pd.DataFrame:
        if experiment not in self._cache:
            self._cache[experiment] = self.store.runs(experiment)
        return self._cache[experiment]


# -- the search behind a tuned run -----------------------------------------------------------
def tuned_refs(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """The distinct ``tags["tuned"]`` references of ``runs`` (one per ``search_id``)."""
    refs: dict[str, dict[str, Any]] = {}
    for tags in runs["tags"]:
        ref = tags.get("tuned") if isinstance(tags, dict) else None
        if isinstance(ref, dict):
            refs.setdefault(str(ref.get("search_id")), ref)
    return list(refs.values())


def search_cost(runs_of: _Runs | Store, ref: Mapping[str, Any]) -> Cost:
    """Every trial of the search ``ref`` names (its ``search_id`` in ``ref["experiment"]``)."""
    runs_of = runs_of if isinstance(runs_of, _Runs) else _Runs(runs_of)
    experiment, search_id = ref.get("experiment"), ref.get("search_id")
    name = f"{ref.get('search', '?')} search {search_id} in {experiment}"
    if not experiment or not search_id:
        return Cost.unknown(f"the tuned reference {dict(ref)} names no search_id (never resolved)")
    runs = runs_of(str(experiment))
    if runs.empty:
        return Cost.unknown(f"{name}: no experiment {experiment!r} under {runs_of.store.root}")
    trials = runs[runs["tags"].map(lambda t: isinstance(t, dict) and t.get("search_id") == search_id)]
    if _timed(trials).empty:
        return Cost.unknown(f"{name}: no trial with a wall time under {runs_of.store.root}")
    return total_of(trials, what=name)


def searches_cost(runs_of: _Runs, runs: pd.DataFrame) -> Cost:
    """The searches behind a label's tuned runs, each counted once however many seeds."""
    parts = [search_cost(runs_of, ref) for ref in tuned_refs(runs)]
    if not parts:
        return Cost()
    missing = [p.missing for p in parts if p.missing]
    if missing:
        return Cost.unknown("; ".join(missing))
    return Cost(sum(p.wall_s for p in parts), sum(p.param_epochs for p in parts), sum(p.runs for p in parts),
                what="; ".join(f"{p.what} ({p.runs} trials)" for p in parts))


# -- the meta-training behind the transferred MLR-SNet ---------------------------------------
def meta_training_cost(store: Store | _Runs, meta_experiment: str = META_EXPERIMENT,
                       profiles: Iterable[str] = ()) -> Cost:
    """One meta-training: the mean over seeds of the finished ``mlrsnet`` runs on ResNet-18 /
    CIFAR-10 in ``meta_experiment``, at the rendered profiles when it has runs there."""
    runs_of = store if isinstance(store, _Runs) else _Runs(store)
    runs = runs_of(meta_experiment)
    where = f"experiment {meta_experiment!r} under {runs_of.store.root}"
    if runs.empty:
        return Cost.unknown(f"no meta-training experiment: no runs for {where}")
    mine = runs[(runs["method"] == META_METHOD) & (runs["task"] == META_TASK)]
    done = mine[mine["status"].isin(META_STATUSES)]
    if done.empty:
        have = ", ".join(f"{n} {s}" for s, n in mine["status"].value_counts().items()) or "none"
        return Cost.unknown(f"no finished {META_METHOD} run on {META_TASK} in {where} ({have})")
    same = done[done["profile"].isin(set(profiles))]
    done = same if len(same) else done
    seeds = ", ".join(str(int(s)) for s in sorted(set(done["seed"].dropna())))
    return mean_of(done, what=f"profile {', '.join(sorted(set(done['profile'])))}, seeds {seeds}")


# -- the table behind the figure -------------------------------------------------------------
def transfer_tasks(data: Data) -> list[str]:
    """The tasks the meta-training is amortised over: those with a drawn transfer run."""
    runs = data.runs[data.runs["method"] == TRANSFER_METHOD]
    return [t for t in data.tasks if t in set(runs["task"])]


def _best_means(data: Data) -> pd.Series:
    f = finals(data)
    return f.groupby(["task", "label"])["best"].mean() if len(f) else pd.Series(dtype=float)


def _nan0(v: float) -> float:
    return 0.0 if v is None or not math.isfinite(v) else v


def _point(data: Data, task: str, label: str, runs_of: _Runs, meta: Cost, n_meta: int,
           best: pd.Series) -> dict[str, Any]:
    runs = data.runs[(data.runs["task"] == task) & (data.runs["label"] == label)]
    methods = list(dict.fromkeys(runs["method"]))
    own = mean_of(runs, what=label)
    search = searches_cost(runs_of, runs)
    transferred = TRANSFER_METHOD in methods
    share = Cost() if not transferred else (
        meta if meta.missing else Cost(meta.wall_s / n_meta, meta.param_epochs / n_meta, meta.runs, what=meta.what))
    full = meta if transferred else Cost()
    notes = []
    if search.missing:
        notes.append(f"search cost missing: {search.missing}")
    if transferred and meta.missing:
        notes.append(f"meta-training cost missing: {meta.missing}")
    total_wall = _nan0(own.wall_s) + _nan0(search.wall_s) + _nan0(share.wall_s)
    total_pe = _nan0(own.param_epochs) + _nan0(search.param_epochs) + _nan0(share.param_epochs)
    ratio = (search.wall_s / meta.wall_s if search.runs and not search.missing and not meta.missing
             and meta.wall_s > 0 else math.nan)
    return {"task": task, "label": label, "method": ", ".join(methods), "metric": data.metric.get(task, "acc"),
            "seeds": int(runs["seed"].nunique()), "best_test": float(best.get((task, label), math.nan)),
            "own_wall_s": own.wall_s, "own_param_epochs": own.param_epochs, "search_trials": search.runs,
            "search_wall_s": search.wall_s, "search_param_epochs": search.param_epochs,
            "meta_wall_s_full": full.wall_s, "meta_wall_s_amortised": share.wall_s,
            "meta_param_epochs_full": full.param_epochs, "meta_param_epochs_amortised": share.param_epochs,
            "meta_tasks": n_meta if transferred else 0, "total_wall_s": total_wall,
            "total_param_epochs": total_pe, "search_over_meta": ratio, "complete": not notes,
            "note": NOTE_SEP.join(notes)}


def cost_frame(data: Data, store: Store | None = None,
               meta_experiment: str = META_EXPERIMENT) -> tuple[pd.DataFrame, Cost]:
    """Per (task, label): the best test metric and every part of its cost (``COLUMNS``),
    and the meta-training's cost (``missing`` says why it is not known)."""
    runs_of = _Runs(store or Store(data.results))
    profiles = set(data.runs.loc[data.runs["method"] == TRANSFER_METHOD, "profile"]) if len(data.runs) else set()
    meta = meta_training_cost(runs_of, meta_experiment, profiles)
    n_meta = max(len(transfer_tasks(data)), 1)
    best = _best_means(data)
    rows = [_point(data, task, label, runs_of, meta, n_meta, best)
            for task in data.tasks for label in labels_of(data, task)]
    return pd.DataFrame(rows, columns=COLUMNS), meta


# -- captions --------------------------------------------------------------------------------
def _metric_words(data: Data) -> str:
    words = {"acc": "accuracy in % (the highest over epochs)", "ppl": "perplexity (the lowest over epochs)"}
    return " / ".join(words[m] for m in sorted(set(data.metric.values())) if m in words) or "metric"


def _checkpoint_sets(data: Data) -> list[str]:
    runs = data.runs[data.runs["method"] == TRANSFER_METHOD]
    return sorted({str(i["mlrsnet_checkpoints"]) for i in runs["method_info"]
                   if isinstance(i, dict) and i.get("mlrsnet_checkpoints")})


def _meta_note(data: Data, meta: Cost, meta_experiment: str) -> str:
    n = len(transfer_tasks(data))
    where = f"{META_METHOD} on {META_TASK} in {meta_experiment}, mean over seeds"
    if not n:
        return f"the transferred MLR-SNet ({TRANSFER_METHOD}) would add its share of one meta-training ({where})"
    tasks = "task" if n == 1 else f"{n} tasks"
    head = (f"the transferred MLR-SNet ({TRANSFER_METHOD}) adds its share of one meta-training ({where}), "
            f"shared by the {tasks} it is transferred to here, so each point carries 1/{n} of it")
    if meta.missing:
        return f"{head}; the meta-training cost is missing ({meta.missing}): those points show their own cost only"
    sets = _checkpoint_sets(data)
    made = (f"; the checkpoints transferred here (set {', '.join(sets)}) came from a meta-training of their own, "
            "whose cost this one stands in for" if sets else "")
    return f"{head} (one meta-training: {meta.wall_s:.1f} s, {meta.what}){made}"


def counting_note(data: Data, meta: Cost, meta_experiment: str) -> str:
    """How the search and meta-training costs are counted, with what is missing."""
    return ("A point's total compute is its own training run (mean over its seeds); a configuration "
            "retrained from a search (tag 'tuned') adds the whole search: every trial of its search_id "
            "with a wall time (finished, stopped, diverged or failed), counted once per task and label, "
            f"not once per seed; {_meta_note(data, meta, meta_experiment)}; MLR-SNet meta-trained on the "
            f"task itself ({META_METHOD}) costs just its own run.")


def cost_caption(data: Data, frame: pd.DataFrame, meta: Cost, meta_experiment: str,
                 measure: str = "wall-clock seconds") -> str:
    hollow = " Hollow markers: a cost part is missing (see the table)." if (~frame["complete"]).any() else ""
    return (f"Best test {_metric_words(data)}, mean over seeds, against the total compute spent to get it "
            f"({measure}, log scale), one panel per task, one marker per method; a dotted line runs back to "
            f"the cost of the training run alone. {counting_note(data, meta, meta_experiment)}{hollow} "
            f"For scale: {PAPER_CLAIM}. {sentence(caption_facts(data))}. Experiment {data.experiment}, "
            f"{len(data.runs)} runs.")


# -- figure ----------------------------------------------------------------------------------
def _ylabel(metric: str) -> str:
    return "best test accuracy (%)" if metric == "acc" else "best test perplexity (lower is better)"


def _tick(v: float, _pos: Any = None) -> str:
    """A log-axis tick: 0.5, 20, 300, then 2k, 40M (no 10^x labels crowding each other)."""
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def _log_x(ax: Any, values: list[float]) -> None:
    """Log x axis spanning the values with room on both sides, at least a factor 4 wide,
    ticks at 1, 2 and 5 times the powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    vals = [v for v in values if math.isfinite(v) and v > 0]
    if vals:
        lo, hi = min(vals) / 1.4, max(vals) * 1.4
        widen = math.sqrt(max(4.0 / (hi / lo), 1.0))
        ax.set_xlim(lo / widen, hi * widen)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_tick))
    ax.xaxis.set_minor_formatter(NullFormatter())


def build_cost(data: Data, frame: pd.DataFrame, measure: str = "wall") -> Any:
    """One panel per task: a marker per label at (total compute, best test metric)."""
    total, own = ("total_wall_s", "own_wall_s") if measure == "wall" else ("total_param_epochs", "own_param_epochs")
    tasks = [t for t in data.tasks if (frame["task"] == t).any()]
    fig, axes = plotting.axes(len(tasks))
    st = styles(labels_of(data), methods_of(data))
    for ax, task in zip(axes, tasks, strict=True):
        rows = frame[frame["task"] == task]
        metric = str(rows["metric"].iloc[0])
        scale = 100.0 if metric == "acc" else 1.0
        for r in rows.itertuples():
            x, y, x0 = getattr(r, total), r.best_test * scale, getattr(r, own)
            if not (math.isfinite(y) and x > 0):
                continue
            color, marker, fill = st[r.label].color, st[r.label].marker, st[r.label].fillstyle
            if math.isfinite(x0) and 0 < x0 < x:
                ax.plot([x0, x], [y, y], linestyle=":", color=color, linewidth=1.2, label="_nolegend_")
            ax.plot([x], [y], linestyle="none", marker=marker, ms=9, color=color, label=r.label,
                    fillstyle=fill if r.complete else "none", markeredgewidth=1.6)
        _log_x(ax, [v for r in rows.itertuples() for v in (getattr(r, total), getattr(r, own))])
        ax.set_xlabel("total compute: wall-clock seconds (log scale)" if measure == "wall"
                      else "total compute: parameter-epochs (log scale)")
        ax.set_ylabel(_ylabel(metric))
        ax.set_title(task_title(task), fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.margins(y=0.15)
    plotting.legend(fig, axes)
    what = "wall-clock seconds" if measure == "wall" else "parameter-epochs"
    plotting.layout(fig, figure_title(data, "cost (not in the paper)"),
                    f"best test metric against total compute ({what})"
                    + ("; hollow: a cost part is missing" if (~frame["complete"]).any() else ""))
    return fig


# -- table -----------------------------------------------------------------------------------
def _num(v: Any, fmt: str = "{:.1f}", zero: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "missing"
    return zero if v == 0 else fmt.format(v)


def _pe(v: Any) -> str:
    return _num(v, "{:.3g}")


def point_notes(frame: pd.DataFrame) -> list[str]:
    """Each distinct note once, with the points it applies to."""
    where: dict[str, list[str]] = {}
    for r in frame.itertuples():
        for note in filter(None, str(r.note).split(NOTE_SEP) if r.note else []):
            where.setdefault(note, []).append(f"{r.label} on {r.task}")
    return [f"{', '.join(points)}: {note}" for note, points in where.items()]


def _share(v: float, n: int, fmt: str = "{:.1f}") -> str:
    return _num(v, fmt) + (f" (1/{n})" if n else "")


def _wall_table(g: pd.DataFrame) -> str:
    header = ["method", "seeds", "best test", "own run (s)", "search (s) [trials]", "meta-training (s)",
              "meta-training share (s)", "total (s)", "search / meta-training"]
    rows = [[r.label, r.seeds, fmt_metric(r.metric, r.best_test), _num(r.own_wall_s),
             _num(r.search_wall_s) + (f" [{r.search_trials}]" if r.search_trials else ""),
             _num(r.meta_wall_s_full), _share(r.meta_wall_s_amortised, r.meta_tasks), _num(r.total_wall_s),
             "-" if math.isnan(r.search_over_meta) else f"{r.search_over_meta:.1f}x"] for r in g.itertuples()]
    return md_table(header, rows)


def _pe_table(g: pd.DataFrame) -> str:
    header = ["method", "own run (param-epochs)", "search (param-epochs)", "meta-training (param-epochs)",
              "meta-training share (param-epochs)", "total (param-epochs)"]
    rows = [[r.label, _pe(r.own_param_epochs), _pe(r.search_param_epochs), _pe(r.meta_param_epochs_full),
             _share(r.meta_param_epochs_amortised, r.meta_tasks, "{:.3g}"),
             _pe(r.total_param_epochs)] for r in g.itertuples()]
    return md_table(header, rows)


def cost_markdown(data: Data, frame: pd.DataFrame, meta: Cost, meta_experiment: str) -> str:
    parts = [f"# {data.experiment}: compute to reach the best test metric\n",
             f"Best test {_metric_words(data)}, mean over seeds, and the compute spent to get it, in "
             f"wall-clock seconds and parameter-epochs (parameters x epochs run). "
             f"{counting_note(data, meta, meta_experiment)} '-' = not part of this label's cost; "
             f"'missing' = part of it but not in the store (see the notes). "
             f"For scale: {PAPER_CLAIM}; 'search / meta-training' is that ratio measured here. "
             f"{sentence(caption_facts(data))}.\n"]
    for task in data.tasks:
        g = frame[frame["task"] == task]
        if len(g):
            parts.append(f"## {task_title(task)} ({task})\n\n" + _wall_table(g) + "\n\n" + _pe_table(g) + "\n")
    notes = point_notes(frame)
    reasons = missing_reasons(data)
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    if reasons:
        parts.append("## Not included\n\n" + "\n".join(f"- {r}" for r in reasons) + "\n")
    return "\n".join(parts)


# -- artefacts and the render entry point ----------------------------------------------------
def cost_artefacts(data: Data, out: Path, write: bool, *,
                   meta_experiment: str = META_EXPERIMENT) -> list[Artefact]:
    """The cost figures and table (the ``(data, out, write)`` builder ``report all`` runs)."""
    has = bool(data.tasks)
    frame, meta = cost_frame(data, meta_experiment=meta_experiment) if has else (
        pd.DataFrame(columns=COLUMNS), Cost.unknown("no finished run"))
    caption = cost_caption(data, frame, meta, meta_experiment) if has else (
        "Best test metric against the total compute spent to get it: no finished run to draw.")
    pe_caption = (cost_caption(data, frame, meta, meta_experiment, "parameter-epochs: parameters x epochs run")
                  if has else caption)
    if write and has:
        plotting.save(build_cost(data, frame, "wall"), out, STEM, caption)
        plotting.save(build_cost(data, frame, "param-epochs"), out, PE_STEM, pe_caption)
        frame.to_csv(out / f"{STEM}.csv", index=False)
        (out / f"{STEM}.md").write_text(cost_markdown(data, frame, meta, meta_experiment))
    missing = missing_reasons(data) + point_notes(frame)
    runs = len(data.runs)

    def files(*names: str) -> list[Path]:
        return [out / n for n in names] if has else []

    return [Artefact("cost", figure_title(data, "cost in wall-clock seconds (not in the paper)"),
                     files(f"{STEM}.png", f"{STEM}.pdf"), caption, runs, missing),
            Artefact("cost", figure_title(data, "cost in parameter-epochs (not in the paper)"),
                     files(f"{PE_STEM}.png", f"{PE_STEM}.pdf"), pe_caption, runs, missing),
            Artefact("cost", figure_title(data, "compute to reach the best test metric (table)"),
                     files(f"{STEM}.md", f"{STEM}.csv"), counting_note(data, meta, meta_experiment) if has
                     else caption, runs, missing)]


def render_cost(store: Store, out: Path, experiment: str,
                meta_experiment: str = META_EXPERIMENT) -> list[Path]:
    """Write ``cost.png`` / ``.pdf`` / ``.caption.txt``, the parameter-epochs figure
    ``cost-param-epochs.*``, ``cost.md`` and ``cost.csv``; returns the paths written."""
    data = load(store, experiment)
    require_finished(data.all_runs, store, experiment, "run the experiment first")
    out = Path(out)
    artefacts = cost_artefacts(data, out, True, meta_experiment=meta_experiment)
    written = [p for a in artefacts for p in a.files if p.exists()]
    return written + [p.with_suffix(".caption.txt") for p in written if p.suffix == ".png"]
