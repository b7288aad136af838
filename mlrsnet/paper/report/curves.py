"""The curve renderer: test metric per epoch and LR per step, from the Parquet store alone.

One function draws every curve figure of a report (:func:`build_curves`): the supplement's
figure form (Figs. 1, 2, 3, 4, 5, 6: one panel per task, one line per method label, the
mean over seeds with a band of their spread, :mod:`~mlrsnet.paper.report.stats`), and with
``lr_panel=True`` the LR schedule of each task beside its metric panel (``make demo``).
:func:`build_lr_schedules` draws the LR of every step alone.  Every panel carries:

- the task's reference level, dotted: chance accuracy (one over the classes) or the
  unigram model's perplexity (train-split word frequencies on the test split, computed
  from the corpus when the spec was stored);
- a note on methods whose final result is near chance (:func:`~mlrsnet.paper.report.data.near_chance`);
- a diverged run drawn up to its last finished epoch and marked there with a cross (at the
  panel's edge if it diverged before its first evaluation), with its step in the panel;
- on paper-profile figures, the paper's reference curves (the official meta-training log)
  and numbers, dashed, where the stored spec carries them.

Methods keep one colour and marker across every figure (:mod:`~mlrsnet.paper.report.style`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlrsnet.harness.store import Store
from mlrsnet.paper.report import plotting
from mlrsnet.paper.report.data import (
    Artefact,
    Data,
    caption_facts,
    diverged_runs,
    figure_title,
    finals,
    labels_of,
    load,
    methods_of,
    missing_reasons,
    missing_tasks,
    near_chance,
    near_chance_rule,
    sentence,
    task_title,
)
from mlrsnet.paper.report.stats import band_words, spread
from mlrsnet.paper.report.style import Style, styles

REFERENCE_COLOR = "0.45"
PAPER_COLOR = "black"


def _ylabel(metric: str) -> str:
    return "test accuracy (%)" if metric == "acc" else "test perplexity (lower is better)"


def seed_counts(data: Data) -> list[int]:
    """The seeds behind each drawn mean (a diverged seed is drawn on its own, not in it)."""
    ok = data.runs[data.runs["status"] != "diverged"]
    return list(ok.groupby(["task", "label"])["seed"].nunique()) if len(ok) else []


def _paper_profile(data: Data) -> bool:
    return len(data.runs) > 0 and set(data.runs["profile"]) == {"paper"}


def paper_words(data: Data) -> str:
    """The paper's numbers for this figure, in words (for captions)."""
    paper = data.report.get("paper") or {}
    if not paper:
        return ""
    ours = data.report.get("ours") or "MLR-SNet"
    parts = []
    for task, vals in paper.items():
        if not isinstance(vals, dict):
            continue
        metric = "acc" if (task in data.metric and data.metric[task] == "acc") or vals.get("metric") == "acc" \
            or (task not in data.metric and "ppl" not in vals.get("metric", "acc")) else "ppl"
        fmt = (lambda v: f"{100 * v:.2f} %") if metric == "acc" else (lambda v: f"{v:.1f}")
        text = ", ".join(f"{k} {fmt(float(vals[k]))}" for k in ("final", "best") if k in vals)
        parts.append(f"{task_title(task)} {text}")
    note = data.report.get("paper_note")
    drawn = " (dashed lines)" if _paper_profile(data) else " (not drawn at this scale)"
    return (f"Paper, {ours}: " + "; ".join(parts) + drawn + (f"; {note}" if note else "")) if parts else ""


# -- panels -----------------------------------------------------------------------------------
def _reference_line(ax: Any, data: Data, task: str, scale: float) -> None:
    facts = data.facts(task)
    if data.metric.get(task) == "acc" and facts.get("chance") is not None:
        y, words = facts["chance"] * scale, f"chance {100 * facts['chance']:.3g} %"
        label = "chance accuracy"
    elif data.metric.get(task) == "ppl" and facts.get("unigram_ppl") is not None:
        y, words = float(facts["unigram_ppl"]), f"unigram model {facts['unigram_ppl']:.0f}"
        label = "unigram-model perplexity"
    else:
        return
    ax.axhline(y, color=REFERENCE_COLOR, linestyle=":", linewidth=1.3, label=label, zorder=1)
    ax.annotate(words, xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(-3, 3),
                textcoords="offset points", ha="right", va="bottom", fontsize=7.5, color=REFERENCE_COLOR)


def _paper_lines(ax: Any, data: Data, task: str, scale: float) -> None:
    """On paper-profile figures: the stored reference curves and the paper's final value."""
    if not _paper_profile(data):
        return
    curves = (((data.spec or {}).get("references") or {}).get("curves") or {}).get(task)
    if curves:
        ax.plot(curves["epoch"], np.asarray(curves["value"], dtype=float) * scale, color=PAPER_COLOR,
                linestyle="--", linewidth=1.2, label=str(curves.get("label", "paper")), zorder=2)
    final = ((data.report.get("paper") or {}).get(task) or {}).get("final")
    if final is not None:
        ax.axhline(float(final) * scale, color=PAPER_COLOR, linestyle="-.", linewidth=1.0,
                   label=f"paper: {data.report.get('ours') or 'MLR-SNet'}, final", zorder=2)


def _epoch_stats(g: pd.DataFrame, n: int) -> pd.DataFrame:
    """Per epoch, over the seeds: mean and band, drawn only where every seed has a finite
    value (a diverged seed ends the line at its last finished epoch)."""
    piv = g.pivot_table(index="epoch", columns="seed", values="value", aggfunc="first", dropna=False)
    piv = piv.reindex(columns=sorted(piv.columns))
    full = piv[piv.notna().sum(axis=1) == n].sort_index()
    rows = [spread(full.loc[e].to_numpy()) for e in full.index]
    return pd.DataFrame({"mean": [s.mean for s in rows], "lo": [s.lo for s in rows], "hi": [s.hi for s in rows]},
                        index=full.index)


def _metric_panel(ax: Any, data: Data, task: str, st: dict[str, Style]) -> None:
    metric = data.metric.get(task, "acc")
    scale = 100.0 if metric == "acc" else 1.0
    t = data.test[data.test["task"] == task]
    runs = data.runs[data.runs["task"] == task]
    labels = labels_of(data, task)
    width = {lab: max(2.6 - 0.25 * i, 1.6) for i, lab in enumerate(labels)}
    drawn: list[float] = []
    notes: list[str] = []
    for label in labels:
        mine = runs[runs["label"] == label]
        style = st[label]
        diverged = mine[mine["status"] == "diverged"]
        ok = mine[mine["status"] != "diverged"]
        n = int(ok["seed"].nunique())
        g = t[t["run_id"].isin(set(ok["run_id"]))]
        stats = _epoch_stats(g, n) * scale if len(g) else pd.DataFrame(columns=["mean", "lo", "hi"])
        named = False
        if len(stats):  # the seeds that did not diverge: mean and band
            ax.plot(stats.index, stats["mean"], color=style.color, marker=style.marker, ms=4,
                    fillstyle=style.fillstyle, linestyle=style.linestyle, linewidth=width[label], label=label,
                    zorder=3)
            named = True
            if n > 1:
                ax.fill_between(stats.index, stats["lo"], stats["hi"], color=style.color, alpha=0.14,
                                linewidth=0, zorder=2)
            drawn += [v for v in stats["mean"] if math.isfinite(v)]
        for r in diverged.itertuples():  # each diverged seed up to its last finished epoch, a cross there
            own = t[t["run_id"] == r.run_id].sort_values("epoch")
            own = own[np.isfinite(own["value"].astype(float))]
            tag = "_nolegend_" if named else label
            named = True
            if len(own):
                ax.plot(own["epoch"], own["value"] * scale, color=style.color, linestyle=":", linewidth=1.3,
                        marker=style.marker, ms=3, label=tag, zorder=3)
                ax.plot([own["epoch"].iloc[-1]], [own["value"].iloc[-1] * scale], linestyle="none", marker="x",
                        ms=11, mew=2.2, color=style.color, label="_nolegend_", zorder=4)
            else:  # diverged before its first evaluation: a cross at the top edge, at epoch 1
                from matplotlib.transforms import blended_transform_factory

                ax.plot([1], [0.97], linestyle="none", marker="x", ms=11, mew=2.2, color=style.color,
                        transform=blended_transform_factory(ax.transData, ax.transAxes), clip_on=False,
                        label=tag, zorder=4)
        if len(diverged):
            steps = ", ".join(str(int(v)) for v in diverged["diverged_step"].dropna())
            notes.append(f"{label}: {len(diverged)} of {len(mine)} seeds diverged"
                         + (f" (step {steps})" if steps else ""))
    finals_ = finals(data)
    mine = finals_[finals_["task"] == task]
    near = [lab for lab in labels
            if near_chance(data, task, float(mine.loc[mine["label"] == lab, "final"].mean())) is True]
    if near and len(near) == len(labels):
        notes.insert(0, "every method near chance")
    elif near:
        notes.insert(0, "near chance: " + ", ".join(near))
    _reference_line(ax, data, task, scale)
    _paper_lines(ax, data, task, scale)
    if metric == "ppl" and drawn and max(drawn) / max(min(drawn), 1e-12) > 10:
        ax.set_yscale("log")
    if drawn and metric == "ppl":  # a diverged run's huge values must not squash the others
        facts = data.facts(task)
        top = max(max(drawn), float(facts.get("unigram_ppl") or 0.0))
        ax.set_ylim(top=top * 1.12)
    if notes:
        ax.text(0.02, 0.97, "\n".join(notes), transform=ax.transAxes, va="top", ha="left", fontsize=7.5,
                color="#8b0000", bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#8b0000", "alpha": 0.85},
                zorder=5)
    ax.set_xlabel("epoch")
    ax.set_ylabel(_ylabel(metric))
    ax.set_title(task_title(task), fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)


def steps_per_epoch(data: Data, task: str) -> int | None:
    for info in data.runs.loc[data.runs["task"] == task, "method_info"]:
        if isinstance(info, dict) and info.get("steps_per_epoch"):
            return int(info["steps_per_epoch"])
    return None


def _lr_panel(ax: Any, data: Data, task: str, st: dict[str, Style]) -> None:
    """The LR of every step (lowest seed; steps with an LR <= 0 or not finite not drawn)."""
    steps = data.steps[data.steps["task"] == task]
    labels = labels_of(data, task)
    for i, label in enumerate(labels):
        g = steps[steps["label"] == label]
        if g.empty:
            continue
        g = g[g["seed"] == g["seed"].min()].sort_values("step")
        g = g[(g["lr"] > 0) & np.isfinite(g["lr"])]
        style = st[label]
        ax.plot(g["step"], g["lr"], color=style.color, linestyle=style.linestyle,
                linewidth=max(2.6 - 0.35 * i, 1.2), label=label, drawstyle="steps-post", zorder=3)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("learning rate (log scale)")
    ax.set_title(f"{task_title(task)}: LR", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    spe = steps_per_epoch(data, task)
    if spe:
        sec = ax.secondary_xaxis("top", functions=(lambda s, k=spe: s / k, lambda e, k=spe: e * k))
        sec.set_xlabel("epoch", fontsize=8)
        sec.tick_params(labelsize=8)


# -- figures ----------------------------------------------------------------------------------
def curves_subtitle(data: Data) -> str:
    metrics = sorted({"accuracy" if m == "acc" else "perplexity" for m in data.metric.values()})
    refs = [w for m, w in (("acc", "chance"), ("ppl", "unigram model")) if m in data.metric.values()]
    missing = missing_tasks(data)
    return (f"test {' / '.join(metrics)} per epoch, mean over seeds ({band_words(seed_counts(data))}); "
            f"dotted: {' / '.join(refs)}" + (f"\nmissing: {'; '.join(missing)}" if missing else ""))


def build_curves(data: Data, *, lr_panel: bool = False) -> Any:
    """One panel per task (and its LR panel beside it with ``lr_panel``), one line per label."""
    tasks = data.tasks
    st = styles(labels_of(data), methods_of(data))
    if lr_panel:
        fig, panels = plotting.axes(2 * len(tasks), width=5.2, height=3.9, cols=2)
        pairs = [(panels[2 * i], panels[2 * i + 1]) for i in range(len(tasks))]
    else:
        missing = missing_tasks(data)
        fig, panels = plotting.axes(len(tasks) + (1 if missing else 0))
        if missing:  # the tasks without a run, named where their panel would be
            note = panels.pop()
            note.axis("off")
            import textwrap

            text = "\n".join(textwrap.fill(m, 38) for m in missing)
            note.text(0.5, 0.5, f"Not run:\n{text}", ha="center", va="center", fontsize=9.5, color="#8b0000",
                      transform=note.transAxes).set_in_layout(False)
        pairs = [(ax, None) for ax in panels]
    for (ax, lr_ax), task in zip(pairs, tasks, strict=True):
        _metric_panel(ax, data, task, st)
        if lr_ax is not None:
            _lr_panel(lr_ax, data, task, st)
    plotting.legend(fig, panels)
    plotting.layout(fig, figure_title(data), curves_subtitle(data))
    return fig


def curves_caption(data: Data, lr_panel: bool = False) -> str:
    metrics = sorted({"accuracy (%)" if m == "acc" else "perplexity" for m in data.metric.values()})
    missing = missing_tasks(data)
    diverged = diverged_runs(data)
    parts = [f"{figure_title(data)}. Test {' / '.join(metrics)} per epoch, one panel per task, one line per "
             f"method: the mean over seeds with a band ({band_words(seed_counts(data))}); "
             + ("each task's LR of every training step (lowest seed, log scale) beside it; " if lr_panel else "")
             + "dotted: chance accuracy / the unigram model's perplexity. A red note in a panel names the "
             f"methods whose final result is near chance ({near_chance_rule()}) and the runs that diverged "
             "(drawn up to their last finished epoch, a cross there)."]
    if missing:
        parts.append(f"Missing: {'; '.join(missing)}.")
    if diverged:
        parts.append(f"Diverged: {'; '.join(diverged)}.")
    paper = paper_words(data)
    if paper:
        parts.append(f"{paper}.")
    parts.append(f"{sentence(caption_facts(data))}. Experiment {data.experiment}, {len(data.runs)} runs.")
    return " ".join(parts)


def lr_caption(data: Data) -> str:
    return (f"{figure_title(data, 'LR schedules (not in the paper)')}. Learning rate of every training step "
            "(log scale), one panel per task, one line per method (lowest seed; steps with an LR <= 0 or not "
            f"finite are not drawn). {sentence(caption_facts(data))}. Experiment {data.experiment}.")


def build_lr_schedules(data: Data) -> Any:
    tasks = data.tasks
    fig, panels = plotting.axes(len(tasks))
    st = styles(labels_of(data), methods_of(data))
    for ax, task in zip(panels, tasks, strict=True):
        _lr_panel(ax, data, task, st)
        ax.set_title(task_title(task), fontsize=10)
    plotting.legend(fig, panels)
    plotting.layout(fig, figure_title(data, "LR schedules (not in the paper)"),
                    "learning rate of every training step, lowest seed")
    return fig


# -- artefacts --------------------------------------------------------------------------------
def curves_artefacts(data: Data, out: Path, write: bool) -> list[Artefact]:
    stem = f"{data.experiment}-curves"
    caption = curves_caption(data)
    files = [out / f"{stem}.png", out / f"{stem}.pdf"]
    if write and data.tasks:
        plotting.save(build_curves(data), out, stem, caption)
    return [Artefact("figures", figure_title(data) + " (test metric per epoch)", files if data.tasks else [], caption, len(data.runs),
                     missing_reasons(data))]


def lr_artefacts(data: Data, out: Path, write: bool) -> list[Artefact]:
    stem = f"{data.experiment}-lr-schedules"
    has = [t for t in data.tasks if (data.steps["task"] == t).any()]
    files = [out / f"{stem}.png", out / f"{stem}.pdf"] if has else []
    if write and has:
        plotting.save(build_lr_schedules(data), out, stem, lr_caption(data))
    return [Artefact("lr-schedules", figure_title(data, "LR schedules (not in the paper)"), files, lr_caption(data),
                     len(data.runs), missing_reasons(data))]


def render_demo(store: Store, out: Path, experiment: str) -> list[Path]:
    """``make demo``'s figure: per task, the test metric per epoch with the LR schedule beside
    it, ``<out>/<experiment>-<task>.png`` (and ``.pdf``, ``.caption.txt``); the caption says
    what to read in it.  Returns the PNGs first."""
    from mlrsnet.paper.report import require_finished

    data = load(store, experiment)
    require_finished(data.all_runs, store, experiment, "run the experiment first (e.g. `make demo`)")
    written: list[Path] = []
    for task in data.tasks:
        one = Data(data.experiment, data.results, data.all_runs[data.all_runs["task"] == task],
                   data.runs[data.runs["task"] == task], data.test[data.test["task"] == task],
                   data.steps[data.steps["task"] == task], {task: data.metric[task]}, data.spec)
        written += plotting.save(build_curves(one, lr_panel=True), Path(out), f"{experiment}-{task}",
                                 demo_caption(one))
    return sorted(written, key=lambda p: p.suffix != ".png")


def demo_caption(data: Data) -> str:
    """The curves caption, led by the spec's own words on what to read (``[report] read``)."""
    read = data.report.get("read")
    return (f"{read} " if read else "") + curves_caption(data, lr_panel=True)
