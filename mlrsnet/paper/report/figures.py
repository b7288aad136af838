"""The supplement's figure forms for any experiment, rendered from Parquet alone.

- ``figures``: test accuracy / perplexity per epoch, one panel per task, one line per method
  label (Figs. 1, 2, 4, 6 share this form); with several seeds the mean and a min-max band;
- ``lr-schedules``: the LR of every step, log scale, one panel per task (lowest seed);
- ``profile``: a performance profile over all tasks (AlgoPerf style) and epochs-to-target;
- ``summary``: per task and method, final and best test metric over seeds, wall time and
  epochs to the target (Markdown and CSV);
- ``cost``: best test metric against the total compute spent to reach it, search and
  meta-training included (:mod:`mlrsnet.paper.report.cost`);
- ``index``: ``index.md`` and a self-contained ``index.html`` listing every table and figure
  with its caption, the command that regenerates it and the runs behind it; what could not
  be drawn (no finished run for a task, a dataset not prepared) is listed with the reason;
- ``all``: every one of the above, then the index.

Each figure is built by a ``build_*`` function returning the matplotlib Figure (tests read
its axes and lines) and saved as PNG and PDF by the ``render_*`` function.
"""

from __future__ import annotations

import html
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlrsnet.errors import UserError
from mlrsnet.harness.store import SUPERSEDED, Store
from mlrsnet.paper.report import DRAWABLE, require_finished
from mlrsnet.paper.tasks import TASKS

#: Epochs-to-target: the first epoch whose (seed-mean) test metric reaches this fraction of
#: the best method's final one (accuracy: >= 0.9 x best; perplexity: <= best / 0.9).
TARGET_FRACTION = 0.9
BAND = "min-max over seeds"


# -- data ------------------------------------------------------------------------------------
@dataclass
class Data:
    """An experiment's drawable runs with their labels, test curves and LR traces."""

    experiment: str
    results: Path
    all_runs: pd.DataFrame
    runs: pd.DataFrame  # drawable (finished / diverged), with "label"
    test: pd.DataFrame  # run_id, task, label, seed, epoch, metric, value (the task's metric)
    steps: pd.DataFrame
    metric: dict[str, str] = field(default_factory=dict)  # task -> "acc" | "ppl"
    spec_order: tuple[str, ...] = ()  # the spec's method labels (:func:`spec_labels`)

    @property
    def tasks(self) -> list[str]:
        """Tasks with at least one drawable run, in the registry's order."""
        have = set(self.runs["task"])
        return [t for t in task_order(self.all_runs) if t in have]


def task_order(runs: pd.DataFrame) -> list[str]:
    names = list(dict.fromkeys(runs["task"].dropna())) if len(runs) else []
    known = [t for t in TASKS if t in names]
    return known + sorted(t for t in names if t not in TASKS)


def task_title(task: str) -> str:
    return TASKS[task].title if task in TASKS else task


def _label(row: pd.Series) -> str:
    tags = row["tags"] if isinstance(row["tags"], dict) else {}
    return str(tags.get("label") or row["method"])


def _with_hparams(row: pd.Series) -> str:
    hp = row["hparams"] if isinstance(row["hparams"], dict) else {}
    if not hp:
        return str(row["label"])
    text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hp.items()))
    return f"{row['label']} ({text})"


def load(store: Store, experiment: str) -> Data:
    all_runs = store.runs(experiment)
    if all_runs.empty:
        raise UserError(f"no runs for experiment {experiment!r} under {store.root}; run it first "
                        f"(`mlrsnet-bench run benchmarks/{experiment}.toml`)")
    all_runs = all_runs[all_runs["status"] != SUPERSEDED]  # neither drawn nor missing
    runs = all_runs[all_runs["status"].isin(DRAWABLE)].copy()
    runs["label"] = runs.apply(_label, axis=1) if len(runs) else pd.Series(dtype=str)
    if len(runs):  # runs that share a label but differ in profile or overrides (a sweep) keep apart
        clash = runs.groupby(["task", "label"])["profile"].transform("nunique") > 1
        runs.loc[clash, "label"] = runs.loc[clash, "label"] + " [" + runs.loc[clash, "profile"] + "]"
        runs["_ov"] = runs["overrides"].map(lambda o: ", ".join(f"{k}={v}" for k, v in sorted(o.items()))
                                            if isinstance(o, dict) else "")
        clash = runs.groupby(["task", "label"])["_ov"].transform("nunique") > 1
        runs.loc[clash, "label"] = runs.loc[clash, "label"] + " (" + runs.loc[clash, "_ov"] + ")"
        runs = runs.drop(columns="_ov")
        # still several runs per (task, label, seed), e.g. a search's trials: tell them apart
        # by their hyper-parameters rather than averaging them as if they were seeds
        dup = runs.duplicated(["task", "label", "seed"], keep=False)
        runs.loc[dup, "label"] = runs.loc[dup].apply(_with_hparams, axis=1)
    epochs = store.read("epochs", experiment)
    ids = set(runs["run_id"])
    ep = epochs[epochs["run_id"].isin(ids) & (epochs["split"] == "test")]
    ep = ep.merge(runs[["run_id", "task", "label", "seed"]], on="run_id")
    metric: dict[str, str] = {}
    parts = []
    for task, g in ep.groupby("task"):
        metric[task] = "acc" if (g["metric"] == "acc").any() else "ppl"
        parts.append(g[g["metric"] == metric[task]])
    test = pd.concat(parts, ignore_index=True) if parts else ep.iloc[0:0]
    test["value"] = test["value"].where(np.isfinite(test["value"].astype(float)))  # diverged: NaN
    steps = store.read("steps", experiment)
    steps = steps[steps["run_id"].isin(ids)].merge(runs[["run_id", "task", "label", "seed"]], on="run_id")
    return Data(experiment, store.root, all_runs, runs, test, steps, metric, spec_labels(experiment))


def spec_labels(experiment: str, folder: str = "benchmarks") -> tuple[str, ...]:
    """The method labels of ``<folder>/<experiment>.toml`` in the spec's order (empty when
    there is no such spec): the order legends and tables follow, whatever order the runs
    were trained in (a method re-run later would otherwise move to the end)."""
    import tomllib

    path = Path(folder) / f"{experiment}.toml"
    try:
        methods = tomllib.loads(path.read_text()).get("methods", [])
    except (OSError, tomllib.TOMLDecodeError):
        return ()
    return tuple(str(m.get("label") or m.get("name")) for m in methods if isinstance(m, dict))


def labels_of(data: Data, task: str | None = None) -> list[str]:
    """Method labels, optionally on one task: in the order of the experiment's spec where
    ``benchmarks/<experiment>.toml`` named them when the data was loaded (a drawn label extended with a profile or
    override keeps its method's place), else by first start time."""
    runs = data.runs if task is None else data.runs[data.runs["task"] == task]
    by_start = list(dict.fromkeys(runs.sort_values("started", na_position="last", kind="stable")["label"]
                                  if "started" in runs else runs["label"]))
    order = data.spec_order

    def rank(label: str) -> int:
        return next((i for i, name in enumerate(order) if label == name or label.startswith(name + " ")),
                    len(order))

    return sorted(by_start, key=rank)


def missing_reasons(data: Data) -> list[str]:
    """Why a task (or a method on a task) has no curve: its runs' statuses and first error."""
    out = []
    for task in task_order(data.all_runs):
        rows = data.all_runs[data.all_runs["task"] == task]
        bad = rows[~rows["status"].isin(DRAWABLE)]
        if len(bad):  # a "skipped" marker is superseded once that method is drawn on the task
            drawn = set(data.runs.loc[data.runs["task"] == task, "label"]) if len(data.runs) else set()
            bad = bad[~((bad["status"] == "skipped") & bad.apply(_label, axis=1).isin(drawn))]
        if bad.empty:
            continue
        first = ""
        errs = bad["error"].dropna() if "error" in bad else []
        if len(errs):
            first = f": {str(errs.iloc[0]).splitlines()[0][:300]}"
        counts = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
        if task not in set(data.runs["task"]):
            out.append(f"{task_title(task)} ({task}): no finished run ({counts}){first}")
        else:
            methods = ", ".join(sorted({_label(r) for _, r in bad.iterrows()}))
            out.append(f"{task_title(task)} ({task}): not drawn for {methods} ({counts}){first}")
    return out


def caption_facts(data: Data, runs: pd.DataFrame | None = None) -> str:
    """Profile, seeds, MLR-SNet checkpoint set and gate convention, scaled-down note."""
    runs = data.runs if runs is None else runs
    profiles = sorted(set(runs["profile"].dropna()))
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    parts = [f"profile {', '.join(profiles) or '?'}"
             + ("" if profiles == ["paper"] else " (scaled-down profile, not the paper's settings)"),
             f"seeds {', '.join(map(str, seeds))}"]
    for extra in (_held_out_sweep(runs), _vocabulary_cap(runs)):
        if extra:
            parts.append(extra)
    infos = [i for i in runs["method_info"] if isinstance(i, dict) and i.get("mlrsnet_checkpoints")]
    if infos:
        sets = sorted({str(i["mlrsnet_checkpoints"]) for i in infos})
        cells = sorted({str(i.get("mlrsnet_cell")) for i in infos if i.get("mlrsnet_cell")})
        parts.append(f"MLR-SNet checkpoint set {', '.join(sets)}"
                     + (f", gate convention {', '.join(cells)}" if cells else ""))
    return "; ".join(parts)


def _vocabulary_cap(runs: pd.DataFrame) -> str | None:
    """A capped vocabulary (``Profile.vocab_size``, recorded in each run's ``data``) in words:
    its perplexities are over that vocabulary, not the corpus's."""
    if "data" not in runs:
        return None
    caps = {(task, int(d["profile"]["vocab_size"])) for task, d in zip(runs["task"], runs["data"], strict=True)
            if isinstance(d, dict) and isinstance(d.get("profile"), dict) and d["profile"].get("vocab_size")}
    if not caps:
        return None
    listed = ", ".join(f"{task} its {n:,} most frequent training words" for task, n in sorted(caps))
    return (f"vocabulary capped ({listed}; every other word read as the unknown-word token), so perplexities "
            "are not comparable to full-vocabulary ones")


def _held_out_sweep(runs: pd.DataFrame) -> str | None:
    """A held-out sweep (``[overrides] holdout = ...``, Fig. 3) in words: the sizes and their
    share of the training images the runs split them from (``method_info["sizes"]``), so a
    scaled-down profile says how it scaled the paper's sizes."""
    if "overrides" not in runs:
        return None
    sizes, pools = set(), set()
    for overrides, info in zip(runs["overrides"], runs["method_info"], strict=True):
        if not isinstance(overrides, dict) or "holdout" not in overrides:
            continue
        sizes.add(int(overrides["holdout"]))
        split = info.get("sizes") if isinstance(info, dict) else None
        if isinstance(split, dict) and "train" in split and "val" in split:
            pools.add(int(split["train"]) + int(split["val"]))
    if not sizes:
        return None
    listed = ", ".join(f"{n:,}" for n in sorted(sizes))
    if len(pools) != 1:
        return f"held-out sets of {listed} training images"
    pool = pools.pop()
    shares = ", ".join(f"{100 * n / pool:.3g} %" for n in sorted(sizes))
    scaled = set(runs["profile"].dropna()) != {"paper"}
    return (f"held-out sets of {listed} of the {pool:,} training images ({shares}"
            + ("; this scaled-down profile keeps the paper's shares of the training set)" if scaled else ")"))


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _seed_note(data: Data) -> str:
    multi = data.runs.groupby(["task", "label"])["seed"].nunique()
    return (f"lines with several seeds show the mean and a band ({BAND})" if (multi > 1).any()
            else "one seed per line")


# -- artefacts (what the index lists) --------------------------------------------------------
@dataclass
class Artefact:
    report: str
    title: str
    files: list[Path]
    caption: str
    runs: int
    missing: list[str] = field(default_factory=list)


def _grid(n: int) -> tuple[int, int]:
    cols = 2 if n == 4 else min(n, 3)
    return max(1, math.ceil(n / cols)), max(1, cols)


def _axes(plt: Any, n: int, width: float = 4.6, height: float = 3.6) -> tuple[Any, list[Any]]:
    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.9), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(labels: list[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {lab: cmap(i % 10) for i, lab in enumerate(labels)}


def _width(labels: list[str], label: str) -> float:
    """Earlier lines are drawn wider, so a later one on top of them (e.g. two schedules at
    the same LR) leaves them visible."""
    return max(2.8 - 0.55 * labels.index(label), 1.0)


def _save(fig: Any, out: Path, stem: str, caption: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    # No creation date: a re-render of the same store gives the same bytes, so a
    # committed report only changes where its data did.
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    cap = out / f"{stem}.caption.txt"
    cap.write_text(caption + "\n")
    _plt().close(fig)
    return [*paths, cap]


def _legend(fig: Any, axes: list[Any]) -> None:
    """One legend for the figure, below the panels (labels gathered from every panel)."""
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
                   ncol=min(len(labels), 3), fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.0))


def _layout(fig: Any, title: str) -> None:
    """Title on top, the legend below the panels with room for its rows (in inches)."""
    fig.suptitle(title, fontsize=11)
    height = fig.get_size_inches()[1]
    bottom = 0.0
    if fig.legends:
        rows = math.ceil(len(fig.legends[0].get_texts()) / 3)
        bottom = min((0.12 + 0.22 * rows) / height, 0.4)
    fig.tight_layout(rect=(0, bottom, 1, 1 - 0.3 / height))


# -- figures: test metric per epoch ----------------------------------------------------------
def curves_caption(data: Data) -> str:
    metrics = sorted({"accuracy (%)" if m == "acc" else "perplexity" for m in data.metric.values()})
    return (f"Test {' / '.join(metrics)} per epoch, one panel per task, one line per method; "
            f"{_seed_note(data)}. {_sentence(caption_facts(data))}. Experiment {data.experiment}, "
            f"{len(data.runs)} runs.")


def build_curves(data: Data) -> Any:
    plt = _plt()
    tasks = data.tasks
    fig, axes = _axes(plt, len(tasks))
    colors = _colors(labels_of(data))
    seeds = data.runs.groupby(["task", "label"])["seed"].nunique()
    uniform = int(seeds.iloc[0]) if len(seeds) and seeds.nunique() == 1 else None
    for ax, task in zip(axes, tasks, strict=True):
        metric = data.metric.get(task, "acc")
        scale = 100.0 if metric == "acc" else 1.0
        t = data.test[data.test["task"] == task]
        for label in labels_of(data, task):
            g = t[t["label"] == label]
            if g.empty:
                continue
            stats = g.groupby("epoch")["value"].agg(["mean", "min", "max", "count"]) * scale
            n = g["seed"].nunique()
            name = label if n == 1 or uniform else f"{label} (mean of {n} seeds, band min-max)"
            ax.plot(stats.index, stats["mean"], marker="o", ms=3, color=colors[label], label=name,
                    linewidth=_width(list(colors), label))
            if n > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=colors[label], alpha=0.15,
                                linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)" if metric == "acc" else "test perplexity (lower is better)")
        if metric == "ppl" and len(t) and t["value"].max() / max(t["value"].min(), 1e-12) > 10:
            ax.set_yscale("log")
        ax.set_title(task_title(task), fontsize=10)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    note = f" (lines: mean of {uniform} seeds, bands: min-max)" if uniform and uniform > 1 else ""
    _layout(fig, f"{data.experiment}: test metric per epoch{note}")
    return fig


def _figures(data: Data, out: Path, write: bool) -> list[Artefact]:
    stem = f"{data.experiment}-curves"
    caption = curves_caption(data)
    files = [out / f"{stem}.png", out / f"{stem}.pdf"]
    if write and data.tasks:
        _save(build_curves(data), out, stem, caption)
    return [Artefact("figures", "Test metric per epoch (Figs. 1/2/4/6 form)", files if data.tasks else [],
                     caption, len(data.runs), missing_reasons(data))]


# -- LR schedules ----------------------------------------------------------------------------
def lr_caption(data: Data) -> str:
    return (f"Learning rate of every training step (log scale), one panel per task, one line per "
            f"method (lowest seed; steps with an LR <= 0 or not finite are not drawn). {_sentence(caption_facts(data))}. "
            f"Experiment {data.experiment}.")


def build_lr_schedules(data: Data) -> Any:
    plt = _plt()
    tasks = data.tasks
    fig, axes = _axes(plt, len(tasks))
    colors = _colors(labels_of(data))
    for ax, task in zip(axes, tasks, strict=True):
        st = data.steps[data.steps["task"] == task]
        for label in labels_of(data, task):
            g = st[st["label"] == label]
            if g.empty:
                continue
            g = g[g["seed"] == g["seed"].min()].sort_values("step")
            g = g[(g["lr"] > 0) & np.isfinite(g["lr"])]
            ax.plot(g["step"], g["lr"], color=colors[label], linewidth=_width(list(colors), label), label=label,
                    drawstyle="steps-post")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("learning rate (log scale)")
        ax.set_title(task_title(task), fontsize=10)
        ax.grid(alpha=0.3, which="both")
        spe = _steps_per_epoch(data, task)
        if spe:
            sec = ax.secondary_xaxis("top", functions=(lambda s, k=spe: s / k, lambda e, k=spe: e * k))
            sec.set_xlabel("epoch", fontsize=8)
            sec.tick_params(labelsize=8)
    _legend(fig, axes)
    _layout(fig, f"{data.experiment}: LR schedules")
    return fig


def _steps_per_epoch(data: Data, task: str) -> int | None:
    for info in data.runs.loc[data.runs["task"] == task, "method_info"]:
        if isinstance(info, dict) and info.get("steps_per_epoch"):
            return int(info["steps_per_epoch"])
    return None


def _lr_schedules(data: Data, out: Path, write: bool) -> list[Artefact]:
    stem = f"{data.experiment}-lr-schedules"
    has = [t for t in data.tasks if (data.steps["task"] == t).any()]
    files = [out / f"{stem}.png", out / f"{stem}.pdf"] if has else []
    if write and has:
        _save(build_lr_schedules(data), out, stem, lr_caption(data))
    return [Artefact("lr-schedules", "LR schedules per step", files, lr_caption(data), len(data.runs),
                     missing_reasons(data))]


# -- final metrics, performance profile, epochs to target -----------------------------------
def finals(data: Data) -> pd.DataFrame:
    """Per (task, label, seed): final and best test metric (ppl: lowest), epochs run."""
    rows = []
    for (task, label, seed, run_id), g in data.test.groupby(["task", "label", "seed", "run_id"]):
        g = g.sort_values("epoch")
        lower = data.metric[task] == "ppl"
        rows.append({"task": task, "label": label, "seed": seed, "run_id": run_id,
                     "metric": data.metric[task], "final": float(g["value"].iloc[-1]),
                     "best": float(g["value"].min() if lower else g["value"].max()),
                     "epochs": int(g["epoch"].max())})
    return pd.DataFrame(rows, columns=["task", "label", "seed", "run_id", "metric", "final", "best", "epochs"])


def ratios(data: Data) -> pd.DataFrame:
    """Per (task, label): the seed-mean final metric and its ratio to the best method's
    (accuracy: error-rate ratio (1-acc)/(1-best acc); perplexity: ppl / best ppl)."""
    f = finals(data)
    if f.empty:
        return pd.DataFrame(columns=["task", "label", "final", "ratio"])
    # a seed that diverged (NaN) makes the mean NaN: that method never counts as within tau
    m = f.groupby(["task", "label"], as_index=False)["final"].agg(lambda v: v.mean(skipna=False))
    out = []
    for task, g in m.groupby("task"):
        cost = (1.0 - g["final"]) if data.metric[task] == "acc" else g["final"]
        best = float(cost.min())  # NaN skipped
        r = cost / best if best > 0 else cost.map(lambda c: 1.0 if c <= 0 else math.inf)
        out.append(g.assign(ratio=r.to_numpy()))
    return pd.concat(out, ignore_index=True)


def profile_curve(data: Data, taus: np.ndarray) -> dict[str, np.ndarray]:
    """label -> fraction of the tasks (with a finished run) on which its ratio <= tau; a
    method without a run on a task never reaches it there."""
    r = ratios(data)
    tasks = data.tasks
    out = {}
    for label in labels_of(data):
        mine = r[r["label"] == label].set_index("task")["ratio"]
        vals = np.array([mine.get(t, math.inf) for t in tasks], dtype=float)
        out[label] = np.array([(vals <= tau).sum() / max(len(tasks), 1) for tau in taus])
    return out


def taus_for(data: Data) -> np.ndarray:
    r = ratios(data)
    finite = r["ratio"][np.isfinite(r["ratio"])] if len(r) else pd.Series([1.0])
    top = max(float(finite.max()) * 1.1 if len(finite) else 1.1, 1.1)
    return np.unique(np.concatenate([np.geomspace(1.0, top, 400), finite.to_numpy()]))


def tau_ticks(top: float, *, at_least: int = 4) -> list[float]:
    """Labelled ticks in [1, top] for the log tau axis: the coarsest of a few ladders of
    round ratios that gives ``at_least`` ticks, so a profile spanning 1-1.1 is as readable
    as one spanning 1-100 (a plain log locator labels only 1 in the first case)."""
    ladders = [
        [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
        [1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100],
        [1, 1.1, 1.2, 1.3, 1.5, 1.7, 2, 2.5, 3, 4, 5],
        [1, 1.02, 1.04, 1.06, 1.08, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5],
        [1, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.08, 1.09, 1.1],
    ]
    inside: list[float] = []
    for ladder in ladders:
        inside = [float(t) for t in ladder if t <= top]
        if len(inside) >= at_least:
            break
    return inside


def build_profile(data: Data) -> Any:
    plt = _plt()
    taus = taus_for(data)
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    colors = _colors(labels_of(data))
    styles = ["-", "--", ":", "-."]
    for k, (label, rho) in enumerate(profile_curve(data, taus).items()):
        # overlapping steps stay visible: thinner and dashed in turn
        ax.step(taus, rho, where="post", color=colors[label], linewidth=max(3.2 - 0.5 * k, 1.0),
                linestyle=styles[k % len(styles)], label=label, clip_on=False)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    ax.xaxis.set_major_locator(FixedLocator(tau_ticks(float(taus.max()))))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(1.0, taus.max())
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("tau: ratio to the best final test metric (error rate or perplexity, log scale)")
    ax.set_ylabel(f"fraction of tasks within tau (of {len(data.tasks)})")
    ax.grid(alpha=0.3, which="both")
    _legend(fig, [ax])
    n = len(data.tasks)
    _layout(fig, f"{data.experiment}: performance profile over {n} task{'s' if n != 1 else ''}")
    return fig


def profile_caption(data: Data) -> str:
    return (f"Performance profile over {len(data.tasks)} tasks ({', '.join(data.tasks)}): for each "
            f"tau >= 1, the fraction of tasks on which a method's final test metric (mean over seeds) "
            f"is within a factor tau of the best method's (accuracy: error-rate ratio "
            f"(1-acc)/(1-best acc); perplexity: ppl / best ppl). {_sentence(caption_facts(data))}.")


def epochs_to_target(data: Data) -> pd.DataFrame:
    """Per (task, label): the first epoch whose seed-mean test metric reaches the target
    (accuracy >= 0.9 x the best method's final accuracy; perplexity <= best final ppl / 0.9);
    None when never reached."""
    f = finals(data)
    rows = []
    for task in data.tasks:
        lower = data.metric[task] == "ppl"
        means = f[f["task"] == task].groupby("label")["final"].mean()
        if means.empty:
            continue
        best = float(means.min() if lower else means.max())
        target = best / TARGET_FRACTION if lower else best * TARGET_FRACTION
        t = data.test[data.test["task"] == task]
        for label in labels_of(data, task):
            curve = t[t["label"] == label].groupby("epoch")["value"].mean().sort_index()
            hit = curve[curve <= target] if lower else curve[curve >= target]
            rows.append({"task": task, "label": label, "metric": data.metric[task], "target": target,
                         "epochs_to_target": int(hit.index[0]) if len(hit) else None,
                         "epochs_run": int(curve.index.max()) if len(curve) else None})
    out = pd.DataFrame(rows, columns=["task", "label", "metric", "target", "epochs_to_target", "epochs_run"])
    return out.astype({"epochs_to_target": "Int64", "epochs_run": "Int64"})


def target_note() -> str:
    return (f"target = {TARGET_FRACTION:.0%} of the best method's final test accuracy (mean over "
            f"seeds), or a perplexity within a factor 1/{TARGET_FRACTION:g} of the best final one; "
            f"the first epoch whose seed-mean test metric reaches it; '-' = not reached")


def _fmt_metric(metric: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{100 * v:.2f}%" if metric == "acc" else f"{v:.2f}"


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _profile(data: Data, out: Path, write: bool) -> list[Artefact]:
    stem = f"{data.experiment}-profile"
    etar = f"{data.experiment}-epochs-to-target"
    has = bool(data.tasks)
    e = epochs_to_target(data)
    if write and has:
        _save(build_profile(data), out, stem, profile_caption(data))
        e.to_csv(out / f"{etar}.csv", index=False)
        rows = [[task_title(r.task), r.label, _fmt_metric(r.metric, r.target),
                 "-" if pd.isna(r.epochs_to_target) else int(r.epochs_to_target),
                 "-" if pd.isna(r.epochs_run) else int(r.epochs_run)] for r in e.itertuples()]
        (out / f"{etar}.md").write_text(
            f"# {data.experiment}: epochs to target\n\n{_sentence(target_note())}. {_sentence(caption_facts(data))}.\n\n"
            + _md_table(["task", "method", "target", "epochs to target", "epochs run"], rows) + "\n")
    reasons = missing_reasons(data)
    return [Artefact("profile", "Performance profile over tasks",
                     [out / f"{stem}.png", out / f"{stem}.pdf"] if has else [], profile_caption(data),
                     len(data.runs), reasons),
            Artefact("profile", "Epochs to target (table)", [out / f"{etar}.md", out / f"{etar}.csv"] if has else [],
                     target_note().capitalize() + ".", len(data.runs), reasons)]


# -- summary table ---------------------------------------------------------------------------
def summary_frame(data: Data) -> pd.DataFrame:
    f = finals(data)
    e = epochs_to_target(data).set_index(["task", "label"])
    wall = data.runs.groupby(["task", "label"])["wall_time_s"].mean()
    rows = []
    for task in data.tasks:
        for label in labels_of(data, task):
            g = f[(f["task"] == task) & (f["label"] == label)]
            if g.empty:
                continue
            key = (task, label)
            rows.append({"task": task, "label": label, "metric": data.metric[task], "seeds": len(g),
                         "final_mean": g["final"].mean(), "final_min": g["final"].min(),
                         "final_max": g["final"].max(), "final_std": g["final"].std(ddof=0),
                         "best_mean": g["best"].mean(), "best_min": g["best"].min(), "best_max": g["best"].max(),
                         "wall_time_s": float(wall.get(key, float("nan"))),
                         "epochs_to_target": e["epochs_to_target"].get(key) if key in e.index else None,
                         "target": e["target"].get(key) if key in e.index else None})
    return pd.DataFrame(rows)


def summary_caption(data: Data) -> str:
    return (f"Per task and method: final and best test metric (mean over seeds, spread = min-max), "
            f"mean wall time per run, epochs to the target ({target_note()}). {_sentence(caption_facts(data))}.")


def _spread(metric: str, lo: float, hi: float, n: int) -> str:
    return "" if n < 2 else f" ({_fmt_metric(metric, lo)}-{_fmt_metric(metric, hi)})"


def _summary(data: Data, out: Path, write: bool) -> list[Artefact]:
    stem = f"{data.experiment}-summary"
    has = bool(data.tasks)
    if write and has:
        s = summary_frame(data)
        out.mkdir(parents=True, exist_ok=True)
        s.to_csv(out / f"{stem}.csv", index=False)
        parts = [f"# {data.experiment}: summary per task\n\n{summary_caption(data)}\n"]
        for task in data.tasks:
            g = s[s["task"] == task]
            rows = [[r.label, r.seeds, _fmt_metric(r.metric, r.final_mean) + _spread(r.metric, r.final_min,
                                                                                     r.final_max, r.seeds),
                     _fmt_metric(r.metric, r.best_mean) + _spread(r.metric, r.best_min, r.best_max, r.seeds),
                     "-" if pd.isna(r.wall_time_s) else f"{r.wall_time_s:.1f}",
                     "-" if pd.isna(r.epochs_to_target) else int(r.epochs_to_target)] for r in g.itertuples()]
            name = "test accuracy" if data.metric[task] == "acc" else "test perplexity"
            parts.append(f"## {task_title(task)} ({task})\n\n"
                         + _md_table(["method", "seeds", f"final {name}", f"best {name}", "wall time (s)",
                                      "epochs to target"], rows) + "\n")
        reasons = missing_reasons(data)
        if reasons:
            parts.append("## Not included\n\n" + "\n".join(f"- {r}" for r in reasons) + "\n")
        (out / f"{stem}.md").write_text("\n".join(parts))
    return [Artefact("summary", "Summary table per task", [out / f"{stem}.md", out / f"{stem}.csv"] if has else [],
                     summary_caption(data), len(data.runs), missing_reasons(data))]


# -- index -----------------------------------------------------------------------------------
def _by_name(module: str, func: str) -> Any:
    """A ``(data, out, write)`` builder of another module, imported by name when it is called
    (as ``REPORTS`` does): that module draws with this one's helpers, so a static import of it
    here would be an import cycle."""
    def build(data: Data, out: Path, write: bool) -> list[Artefact]:
        return getattr(importlib.import_module(module), func)(data, out, write)
    return build


BUILDERS = {"figures": _figures, "lr-schedules": _lr_schedules, "profile": _profile, "summary": _summary,
            "cost": _by_name("mlrsnet.paper.report.cost", "cost_artefacts")}


def command(report: str, data: Data, out: Path) -> str:
    return (f"mlrsnet-bench report {report} --experiment {data.experiment} --results {data.results} "
            f"--out {out}")


def write_index(data: Data, out: Path, artefacts: list[Artefact]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    title = f"{data.experiment}: tables and figures"
    md = [f"# {title}\n", f"{_sentence(caption_facts(data)) if len(data.runs) else 'No finished run'}. "
          f"Everything below is rendered from the Parquet results under `{data.results}` "
          f"(`mlrsnet-bench report all --experiment {data.experiment} --results {data.results} --out {out}` "
          f"regenerates all of it).\n"]
    facts = _sentence(caption_facts(data)) if len(data.runs) else "No finished run"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{html.escape(facts)}. Everything below is rendered from the Parquet results under "
            f"<code>{html.escape(str(data.results))}</code>; <code>{html.escape(command('all', data, out))}"
            f"</code> regenerates all of it.</p>"]
    for a in artefacts:
        present = [p for p in a.files if p.exists()]
        cmd = command(a.report, data, out)
        md.append(f"## {a.title}\n")
        body.append(f"<h2>{html.escape(a.title)}</h2>")
        if present:
            md.append(" / ".join(f"[{p.name}]({p.name})" for p in present) + "\n")
            for p in present:
                if p.suffix == ".png":
                    md.append(f"![{a.title}]({p.name})\n")
                    body.append(f'<p><a href="{html.escape(p.name)}"><img src="{html.escape(p.name)}" '
                                f'alt="{html.escape(a.title)}" style="max-width:100%"></a></p>')
            body.append("<p>" + " / ".join(f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>'
                                           for p in present) + "</p>")
        else:
            why = ("no finished run to draw" if not data.tasks else
                   f"not rendered yet: run `{cmd}`")
            md.append(f"**Not drawn**: {why}.\n")
            body.append(f"<p><b>Not drawn</b>: {html.escape(why)}.</p>")
        md.append(f"{a.caption}\n\nRuns behind it: {a.runs}. Regenerate: `{cmd}`\n")
        body.append(f"<p>{html.escape(a.caption)}</p><p>Runs behind it: {a.runs}. Regenerate: "
                    f"<code>{html.escape(cmd)}</code></p>")
        if a.missing:
            md.append("Missing from it:\n\n" + "\n".join(f"- {m}" for m in a.missing) + "\n")
            body.append("<p>Missing from it:</p><ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in a.missing)
                        + "</ul>")
    paths = [out / "index.md", out / "index.html"]
    paths[0].write_text("\n".join(md))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "code{background:#f3f3f3;padding:1px 4px}img{border:1px solid #ddd}")
    paths[1].write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                        f"</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return paths


def _render(names: list[str], store: Store, out: Path, experiment: str, *, write: bool,
            index: bool) -> list[Path]:
    data = load(store, experiment)
    if not index:
        require_finished(data.all_runs, store, experiment, "run the experiment first")
    artefacts = [a for n in names for a in BUILDERS[n](data, out, write)]
    written = [p for a in artefacts for p in a.files if write and p.exists()]
    written += [p.with_suffix(".caption.txt") for p in written if p.suffix == ".png"]
    if index:
        everything = artefacts if names == list(BUILDERS) else [
            a for n in BUILDERS for a in BUILDERS[n](data, out, False)]
        written += write_index(data, out, everything)
    return written


def render_figures(store: Store, out: Path, experiment: str) -> list[Path]:
    return _render(["figures"], store, out, experiment, write=True, index=False)


def render_lr_schedules(store: Store, out: Path, experiment: str) -> list[Path]:
    return _render(["lr-schedules"], store, out, experiment, write=True, index=False)


def render_profile(store: Store, out: Path, experiment: str) -> list[Path]:
    return _render(["profile"], store, out, experiment, write=True, index=False)


def render_summary(store: Store, out: Path, experiment: str) -> list[Path]:
    return _render(["summary"], store, out, experiment, write=True, index=False)


def render_index(store: Store, out: Path, experiment: str) -> list[Path]:
    """The index alone (it links whatever is already rendered in ``out``)."""
    return _render([], store, out, experiment, write=False, index=True)


def render_all(store: Store, out: Path, experiment: str) -> list[Path]:
    return _render(list(BUILDERS), store, out, experiment, write=True, index=True)
