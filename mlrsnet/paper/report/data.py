"""What a report reads from the store: one experiment's runs, curves, stored spec and facts.

:func:`load` gathers, from the store alone, an experiment's drawable runs (finished or
diverged; superseded runs are neither drawn nor listed as missing) with their method
labels, the test metric per epoch, the LR trace, and the resolved spec stored beside the
results (:meth:`~mlrsnet.harness.store.Store.write_spec`): the methods in the spec's order
(the order of legends and tables), the ``[report]`` table (the paper's figure, claim and
numbers) and the tasks' reference values (chance accuracy, the corpus's unigram
perplexity).  A store without a stored spec (one written before specs were stored, or an
ad-hoc ``train``) is drawn in the order the runs started, with chance taken from the task
registry and no unigram line.

Near chance (:func:`near_chance`): an accuracy that covers less than :data:`NEAR_CHANCE` of
the way from chance to 100 %, or a perplexity above ``1 - NEAR_CHANCE`` times the unigram
model's: such a result says the run learned almost nothing, and a comparison of two of them
says nothing either.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlrsnet.errors import UserError
from mlrsnet.harness.store import SUPERSEDED, Store
from mlrsnet.paper.report import DRAWABLE
from mlrsnet.paper.report.stats import Spread, spread
from mlrsnet.paper.tasks import TASKS

#: Near chance: less than this share of the way from chance accuracy to 100 %, or a
#: perplexity above (1 - this) times the unigram model's.
NEAR_CHANCE = 0.1
#: A report's ``[report]`` table: the keys it may have (see ``benchmarks/fig*.toml``).
REPORT_KEYS = {"figure", "title", "claim", "ours", "variants", "against", "paper", "paper_note", "official_curves", "read"}


@dataclass
class Data:
    """An experiment's drawable runs with their labels, test curves, LR traces and spec."""

    experiment: str
    results: Path
    all_runs: pd.DataFrame
    runs: pd.DataFrame  # drawable (finished / diverged), with "label"
    test: pd.DataFrame  # run_id, task, label, seed, epoch, metric, value (the task's metric)
    steps: pd.DataFrame
    metric: dict[str, str] = field(default_factory=dict)  # task -> "acc" | "ppl"
    spec: dict[str, Any] | None = None  # the stored spec (None: none was stored)

    @property
    def tasks(self) -> list[str]:
        """Tasks with at least one drawable run, in the spec's (else the registry's) order."""
        have = set(self.runs["task"])
        return [t for t in self.task_list() if t in have]

    def task_list(self) -> list[str]:
        """Every task of the experiment: the spec's, then any other a run names."""
        named = list((self.spec or {}).get("tasks") or [])
        return list(dict.fromkeys(named + [t for t in task_order(self.all_runs) if t not in named]))

    @property
    def report(self) -> dict[str, Any]:
        return dict((self.spec or {}).get("report") or {})

    @property
    def spec_order(self) -> tuple[str, ...]:
        return tuple(str(m.get("label") or m.get("name")) for m in (self.spec or {}).get("methods") or [])

    def facts(self, task: str) -> dict[str, Any]:
        """The task's reference values (chance, unigram perplexity) as stored with the spec;
        chance from the task registry when no spec was stored."""
        stored = ((self.spec or {}).get("task_facts") or {}).get(task)
        if stored:
            return dict(stored)
        t = TASKS.get(task)
        if t is not None and t.kind == "image" and t.num_classes:
            return {"metric": "acc", "chance": 1.0 / t.num_classes, "classes": t.num_classes}
        return {}


def task_order(runs: pd.DataFrame) -> list[str]:
    names = list(dict.fromkeys(runs["task"].dropna())) if len(runs) else []
    known = [t for t in TASKS if t in names]
    return known + sorted(t for t in names if t not in TASKS)


def task_title(task: str) -> str:
    return TASKS[task].title if task in TASKS else task


def label_of(row: pd.Series | dict[str, Any]) -> str:
    tags = row["tags"] if isinstance(row["tags"], dict) else {}
    return str(tags.get("label") or row["method"])


def _with_hparams(row: pd.Series) -> str:
    hp = row["hparams"] if isinstance(row["hparams"], dict) else {}
    if not hp:
        return str(row["label"])
    text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hp.items()))
    return f"{row['label']} ({text})"


def load(store: Store, experiment: str, keep: Any = None) -> Data:
    """The experiment's :class:`Data`; ``keep`` (a function of the runs frame returning a
    boolean mask) selects the runs a report is about (e.g. a search's transfer runs)."""
    all_runs = store.runs(experiment)
    if all_runs.empty:
        raise UserError(f"no runs for experiment {experiment!r} under {store.root}; run it first "
                        f"(`mlrsnet-bench run benchmarks/{experiment}.toml`)")
    all_runs = all_runs[all_runs["status"] != SUPERSEDED]  # neither drawn nor missing
    if keep is not None:
        all_runs = all_runs[keep(all_runs)]
    runs = all_runs[all_runs["status"].isin(DRAWABLE)].copy()
    runs["label"] = runs.apply(label_of, axis=1) if len(runs) else pd.Series(dtype=str)
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
    for task in set(runs["task"]):
        g = ep[ep["task"] == task]
        kind = TASKS[task].kind if task in TASKS else None
        metric[task] = "acc" if (g["metric"] == "acc").any() or (g.empty and kind == "image") else "ppl"
    parts = [ep[(ep["task"] == t) & (ep["metric"] == m)] for t, m in metric.items()]
    test = pd.concat(parts, ignore_index=True) if parts else ep.iloc[0:0]
    test["value"] = test["value"].where(np.isfinite(test["value"].astype(float)))  # not finite: NaN
    steps = store.read("steps", experiment)
    steps = steps[steps["run_id"].isin(ids)].merge(runs[["run_id", "task", "label", "seed"]], on="run_id")
    return Data(experiment, store.root, all_runs, runs, test, steps, metric, store.spec(experiment))


def _natural(text: str) -> list[Any]:
    """"RTHO (holdout=100)" before "RTHO (holdout=1000)": numbers compared as numbers."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def labels_of(data: Data, task: str | None = None) -> list[str]:
    """Method labels, optionally on one task: in the stored spec's order of methods (a
    label extended with a profile or override keeps its method's place; such variants in
    natural order), labels the spec does not name after them by first start time."""
    runs = data.runs if task is None else data.runs[data.runs["task"] == task]
    by_start = list(dict.fromkeys(runs.sort_values("started", na_position="last", kind="stable")["label"]
                                  if "started" in runs else runs["label"]))
    order = data.spec_order

    def rank(label: str) -> tuple[int, list[Any]]:
        i = next((i for i, name in enumerate(order) if label == name or label.startswith(name + " ")),
                 len(order))
        return (i, _natural(label) if i < len(order) else [by_start.index(label)])

    return sorted(by_start, key=rank)


def methods_of(data: Data) -> dict[str, str]:
    """label -> registered method name (for the style of a label no family names)."""
    return dict(zip(data.runs["label"], data.runs["method"], strict=True)) if len(data.runs) else {}


# -- reference values -------------------------------------------------------------------------
def near_chance(data: Data, task: str, value: float) -> bool | None:
    """Whether a final test value is near chance (module docstring); None when the task's
    reference is not known (a perplexity without a stored unigram perplexity)."""
    if value is None or not math.isfinite(value):
        return None
    facts = data.facts(task)
    if data.metric.get(task, facts.get("metric")) == "acc":
        chance = facts.get("chance")
        if chance is None:
            return None
        return (value - chance) / (1.0 - chance) < NEAR_CHANCE
    unigram = facts.get("unigram_ppl")
    if unigram is None:
        return None
    return value > (1.0 - NEAR_CHANCE) * unigram


def near_chance_rule() -> str:
    return (f"near chance: an accuracy less than {100 * NEAR_CHANCE:.0f} % of the way from chance to 100 %, or a "
            f"perplexity above {1 - NEAR_CHANCE:g} x the corpus's unigram perplexity")


def reference_words(data: Data, task: str) -> str | None:
    """"chance 10 %" / "unigram 639 ppl" for the task, None when unknown."""
    facts = data.facts(task)
    if data.metric.get(task) == "acc" and facts.get("chance") is not None:
        return f"chance {100 * facts['chance']:.3g} %"
    if facts.get("unigram_ppl") is not None:
        return f"unigram model {facts['unigram_ppl']:.0f} ppl"
    return None


# -- per-run results --------------------------------------------------------------------------
def diverged_where(row: dict[str, Any] | pd.Series) -> str:
    """"diverged at step 412 (epoch 3): training loss nan (not finite)" from a runs row."""
    error = row.get("error") if hasattr(row, "get") else None
    if isinstance(error, str) and error.startswith("diverged"):
        return error
    step = row.get("diverged_step") if hasattr(row, "get") else None
    if step is not None and not (isinstance(step, float) and math.isnan(step)):
        return f"diverged at step {int(step)}"
    return "diverged"


def finals(data: Data) -> pd.DataFrame:
    """Per drawn run: final (last epoch) and best test metric, epochs evaluated, status.
    A diverged run's final is NaN (it has none: its last value is not where it ended);
    its best is over the epochs it finished (NaN if none)."""
    rows = []
    test = data.test.sort_values("epoch")
    by_run = dict(tuple(test.groupby("run_id"))) if len(test) else {}
    for r in data.runs.itertuples():
        g = by_run.get(r.run_id)
        values = g["value"] if g is not None else pd.Series(dtype=float)
        lower = data.metric.get(r.task) == "ppl"
        finite = values[np.isfinite(values.astype(float))]
        diverged = r.status == "diverged"
        rows.append({"task": r.task, "label": r.label, "seed": r.seed, "run_id": r.run_id,
                     "metric": data.metric.get(r.task, "acc"),
                     "final": math.nan if diverged or values.empty else float(values.iloc[-1]),
                     "best": float(finite.min() if lower else finite.max()) if len(finite) else math.nan,
                     "epochs": int(g["epoch"].max()) if g is not None and len(g) else 0,
                     "status": r.status, "note": diverged_where(r._asdict()) if diverged else ""})
    cols = ["task", "label", "seed", "run_id", "metric", "final", "best", "epochs", "status", "note"]
    return pd.DataFrame(rows, columns=cols)


def label_spreads(data: Data, column: str = "final") -> dict[tuple[str, str], Spread]:
    """(task, label) -> the spread over seeds of the final (or best) test metric."""
    f = finals(data)
    return {(t, lab): spread(g[column]) for (t, lab), g in f.groupby(["task", "label"], sort=False)}


# -- what is missing --------------------------------------------------------------------------
def missing_reasons(data: Data) -> list[str]:
    """Why a task (or a method on a task) has no curve: its runs' statuses and first error;
    a task of the spec without any run is listed as not run."""
    out = []
    for task in data.task_list():
        rows = data.all_runs[data.all_runs["task"] == task]
        if rows.empty:
            out.append(f"{task_title(task)} ({task}): not run")
            continue
        bad = rows[~rows["status"].isin(DRAWABLE)]
        if len(bad):  # a "skipped" marker is superseded once that method is drawn on the task
            drawn = set(data.runs.loc[data.runs["task"] == task, "label"]) if len(data.runs) else set()
            bad = bad[~((bad["status"] == "skipped") & bad.apply(label_of, axis=1).isin(drawn))]
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
            methods = ", ".join(sorted({label_of(r) for _, r in bad.iterrows()}))
            out.append(f"{task_title(task)} ({task}): not drawn for {methods} ({counts}){first}")
    have = set(data.all_runs.apply(label_of, axis=1)) if len(data.all_runs) else set()
    for label in data.spec_order:  # a method of the spec with no run at all
        if not any(h == label or h.startswith(label + " ") for h in have):
            out.append(f"{label}: no run yet (a method of the stored spec)")
    return out


def missing_tasks(data: Data) -> list[str]:
    """Tasks of the experiment with nothing drawn, in a few words each (for captions and the
    verdict table): "ResNet-18 on SVHN (svhn is not prepared)"."""
    out = []
    for task in data.task_list():
        if task in set(data.runs["task"]):
            continue
        rows = data.all_runs[data.all_runs["task"] == task]
        errs = rows["error"].dropna() if "error" in rows and len(rows) else pd.Series(dtype=str)
        why = str(errs.iloc[0]).splitlines()[0] if len(errs) else "not run"
        why = why.split(": ", 1)[1] if why.startswith("no data: ") else why
        out.append(f"{task_title(task)} ({why.split(' (`')[0]})")
    return out


def diverged_runs(data: Data) -> list[str]:
    """Each diverged run, with its label, task, seed, step and reason."""
    d = data.runs[data.runs["status"] == "diverged"]
    return [f"{r['label']} on {task_title(r['task'])}, seed {int(r['seed'])}: {diverged_where(r)}"
            for _, r in d.iterrows()]


# -- captions ---------------------------------------------------------------------------------
def caption_facts(data: Data | None, runs: pd.DataFrame | None = None) -> str:
    """Profile, seeds, MLR-SNet checkpoint set and gate convention, scaled-down note."""
    runs = data.runs if runs is None else runs
    profiles = sorted(set(runs["profile"].dropna()))
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    parts = [f"profile {', '.join(profiles) or '?'}"
             + ("" if profiles == ["paper"] else " (scaled-down profile, not the paper's settings)"),
             f"seeds {', '.join(map(str, seeds))} (n = {len(seeds)})"]
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


def fmt_metric(metric: str, v: Any) -> str:
    """"41.20%" / "312.40"; "-" for a missing or non-finite value."""
    if v is None or pd.isna(v) or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{100 * v:.2f}%" if metric == "acc" else f"{v:.2f}"


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def figure_name(data: Data) -> str:
    """"Fig. 1" from the stored ``[report]`` table, else the experiment's name."""
    fig = data.report.get("figure")
    return str(fig) if fig else data.experiment


def figure_title(data: Data, what: str | None = None) -> str:
    """A figure's title: "Fig. N: <the paper's words>" for the paper's own figure,
    "Fig. N, <what> (not in the paper)" for the suite's extra views of it."""
    report = data.report
    fig = report.get("figure")
    if what is None:
        title = report.get("title") or (data.spec or {}).get("description") or data.experiment
        if fig and str(title).startswith(f"{fig}:"):
            return str(title)
        return f"{fig}: {title}" if fig else str(title)
    return f"{fig}, {what}" if fig else f"{data.experiment}: {what}"


@dataclass
class Artefact:
    """One table or figure of an experiment's report, as its index lists it."""

    report: str
    title: str
    files: list[Path]
    caption: str
    runs: int
    missing: list[str] = field(default_factory=list)
    #: why it is not drawn although the experiment has runs (None: drawn, or no run at all)
    why: str | None = None
