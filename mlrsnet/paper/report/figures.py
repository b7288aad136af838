"""An experiment's report, rendered from Parquet alone: every table and figure, and its index.

The reports of one experiment are the registry's entries with an ``artefacts`` builder
(:data:`mlrsnet.paper.report.REPORTS`, in its order):

- ``figures``: the supplement's figure form, test accuracy / perplexity per epoch
  (:mod:`~mlrsnet.paper.report.curves`, the one curve renderer);
- ``lr-schedules``: the LR of every step, log scale, one panel per task (lowest seed);
- ``profile``: a performance profile over all tasks (AlgoPerf style) and epochs-to-target;
  a result near chance never counts as within any factor of the best, and a task on which
  every method is near chance is left out and named;
- ``summary``: per task and method, final and best test metric (mean and spread over the
  seeds, n stated), wall time and epochs to the target (Markdown and CSV);
- ``cost``: best test metric against the total compute spent to reach it, search and
  meta-training included (:mod:`~mlrsnet.paper.report.cost`);

and ``index`` (``index.md`` / ``index.html``, one document, :mod:`~mlrsnet.paper.report.document`)
lists them with the verdict on the paper's claim (:mod:`~mlrsnet.paper.report.verdict`),
each caption, the command that regenerates it, the runs behind it and what could not be
drawn; ``all`` renders every one of them, then the index.

Each figure is built by a ``build_*`` function returning the matplotlib Figure (tests read
its axes and lines) and saved as PNG and PDF with its caption.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlrsnet.harness.store import Store
from mlrsnet.paper.report import REPORTS, plotting, require_finished
from mlrsnet.paper.report import document as doc
from mlrsnet.paper.report.curves import (  # noqa: F401  (the figure API, importable from here)
    build_curves,
    build_lr_schedules,
    curves_caption,
    lr_caption,
)
from mlrsnet.paper.report.data import (  # noqa: F401  (the data API, importable from here)
    Artefact,
    Data,
    caption_facts,
    diverged_runs,
    figure_title,
    finals,
    fmt_metric,
    label_spreads,
    labels_of,
    load,
    methods_of,
    missing_reasons,
    missing_tasks,
    near_chance,
    near_chance_rule,
    sentence,
    task_order,
    task_title,
)
from mlrsnet.paper.report.stats import band_words, kind_of
from mlrsnet.paper.report.style import styles

#: Epochs-to-target: the first epoch whose (seed-mean) test metric reaches this fraction of
#: the best method's final one (accuracy: >= 0.9 x best; perplexity: <= best / 0.9).
TARGET_FRACTION = 0.9


# -- final metrics, performance profile, epochs to target -----------------------------------
def near_chance_tasks(data: Data) -> list[str]:
    """Tasks on which every drawn method's final result (mean over seeds) is near chance."""
    f = finals(data)
    out = []
    for task in data.tasks:
        means = f[f["task"] == task].groupby("label")["final"].mean()
        if len(means) and all(near_chance(data, task, float(v)) is True for v in means):
            out.append(task)
    return out


def ratios(data: Data) -> pd.DataFrame:
    """Per (task, label): the seed-mean final metric and its ratio to the best method's
    (accuracy: error-rate ratio (1-acc)/(1-best acc); perplexity: ppl / best ppl); a method
    whose result is near chance, or a seed of which diverged, never counts (ratio inf)."""
    f = finals(data)
    if f.empty:
        return pd.DataFrame(columns=["task", "label", "final", "ratio", "near_chance"])
    m = f.groupby(["task", "label"], as_index=False, sort=False)["final"].agg(lambda v: v.mean(skipna=False))
    out = []
    for task, g in m.groupby("task", sort=False):
        cost = (1.0 - g["final"]) if data.metric[task] == "acc" else g["final"]
        near = g["final"].map(lambda v, t=task: near_chance(data, t, float(v)) is True)
        best = float(cost.min())  # NaN skipped
        r = cost / best if best > 0 else cost.map(lambda c: 1.0 if c <= 0 else math.inf)
        r = r.where(~near & np.isfinite(g["final"]), math.inf)
        out.append(g.assign(ratio=r.to_numpy(), near_chance=near.to_numpy()))
    return pd.concat(out, ignore_index=True)


def profile_tasks(data: Data) -> list[str]:
    """The tasks a performance profile counts: those where some method learned something."""
    left_out = set(near_chance_tasks(data))
    return [t for t in data.tasks if t not in left_out]


def profile_curve(data: Data, taus: np.ndarray) -> dict[str, np.ndarray]:
    """label -> fraction of the counted tasks (:func:`profile_tasks`) on which its ratio <=
    tau; a method without a run on a task, or near chance there, never reaches it there."""
    r = ratios(data)
    tasks = profile_tasks(data)
    out = {}
    for label in labels_of(data):
        mine = r[r["label"] == label].set_index("task")["ratio"]
        vals = np.array([mine.get(t, math.inf) for t in tasks], dtype=float)
        out[label] = np.array([(vals <= tau).sum() / max(len(tasks), 1) for tau in taus])
    return out


def taus_for(data: Data) -> np.ndarray:
    r = ratios(data)
    r = r[r["task"].isin(profile_tasks(data))] if len(r) else r
    finite = r["ratio"][np.isfinite(r["ratio"].astype(float))] if len(r) else pd.Series([1.0])
    top = max(float(finite.max()) * 1.1 if len(finite) else 1.1, 1.1)
    return np.unique(np.concatenate([np.geomspace(1.0, top, 400), finite.to_numpy(dtype=float)]))


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
    plt = plotting.plt()
    taus = taus_for(data)
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    labels = labels_of(data)
    st = styles(labels, methods_of(data))
    for k, (label, rho) in enumerate(profile_curve(data, taus).items()):
        # overlapping steps stay visible: thinner in turn, each in its method's line style
        ax.step(taus, rho, where="post", color=st[label].color, linewidth=max(3.2 - 0.45 * k, 1.0),
                linestyle=st[label].linestyle, label=label, clip_on=False)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    ax.xaxis.set_major_locator(FixedLocator(tau_ticks(float(taus.max()))))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(1.0, taus.max())
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("tau: ratio to the best final test metric (error rate or perplexity, log scale)")
    counted = profile_tasks(data)
    ax.set_ylabel(f"fraction of tasks within tau (of {len(counted)})")
    ax.grid(alpha=0.3, which="both")
    plotting.legend(fig, [ax])
    n = len(counted)
    left = len(data.tasks) - n
    plotting.layout(fig, figure_title(data, "performance profile (not in the paper)"),
                    f"over {n} task{'s' if n != 1 else ''}" + (f"; {left} left out, every method near chance"
                                                                if left else "")
                    + "; near-chance results never count")
    return fig


def profile_caption(data: Data) -> str:
    counted = profile_tasks(data)
    left = [t for t in data.tasks if t not in counted]
    out = (f"{figure_title(data, 'performance profile (not in the paper)')}. Performance profile over "
           f"{len(counted)} tasks ({', '.join(counted) or 'none'}): for each tau >= 1, the fraction of tasks on "
           "which a method's final test metric (mean over seeds) is within a factor tau of the best method's "
           "(accuracy: error-rate ratio (1-acc)/(1-best acc); perplexity: ppl / best ppl). A result near chance "
           f"({near_chance_rule()}) never counts as within tau: near chance, error rates differ by little "
           "whatever was learned.")
    if left:
        out += f" Left out, every method near chance there: {', '.join(left)}."
    missing = missing_tasks(data)
    if missing:
        out += f" Missing: {'; '.join(missing)}."
    return out + f" {sentence(caption_facts(data))}."


def epochs_to_target(data: Data) -> pd.DataFrame:
    """Per (task, label): the first epoch whose seed-mean test metric reaches the target
    (accuracy >= 0.9 x the best method's final accuracy; perplexity <= best final ppl / 0.9);
    None when never reached."""
    f = finals(data)
    rows = []
    for task in data.tasks:
        lower = data.metric[task] == "ppl"
        means = f[f["task"] == task].groupby("label")["final"].mean()
        if means.dropna().empty:
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


def _md_page(path: Path, title: str, blocks: list[doc.Block]) -> None:
    doc.write(doc.Document(title, blocks), path)


def profile_artefacts(data: Data, out: Path, write: bool) -> list[Artefact]:
    stem = f"{data.experiment}-profile"
    etar = f"{data.experiment}-epochs-to-target"
    has = bool(data.tasks)
    drawn = bool(profile_tasks(data))  # a profile over no task says nothing: not drawn
    e = epochs_to_target(data)
    if write and drawn:
        plotting.save(build_profile(data), out, stem, profile_caption(data))
    elif write:  # nothing stale of an earlier render stays beside the index
        for suffix in (".png", ".pdf", ".caption.txt"):
            (out / f"{stem}{suffix}").unlink(missing_ok=True)
    if write and has:
        e.to_csv(out / f"{etar}.csv", index=False)
        rows = [[task_title(r.task), r.label, fmt_metric(r.metric, r.target),
                 "-" if pd.isna(r.epochs_to_target) else int(r.epochs_to_target),
                 "-" if pd.isna(r.epochs_run) else int(r.epochs_run)] for r in e.itertuples()]
        _md_page(out / f"{etar}.md", f"{figure_title(data, 'epochs to target')}",
                 [doc.Para(f"{sentence(target_note())}. {sentence(caption_facts(data))}."),
                  doc.Table(["task", "method", "target", "epochs to target", "epochs run"], rows, align="lllrr")])
    reasons = missing_reasons(data)
    why = None if drawn or not has else "every method is near chance on every task, so no ratio to the best counts"
    return [Artefact("profile", figure_title(data, "performance profile (not in the paper)"),
                     [out / f"{stem}.png", out / f"{stem}.pdf"] if drawn else [], profile_caption(data),
                     len(data.runs), reasons, why),
            Artefact("profile", figure_title(data, "epochs to target (table)"),
                     [out / f"{etar}.md", out / f"{etar}.csv"] if has else [],
                     sentence(target_note()) + ".", len(data.runs), reasons)]


# -- summary table ---------------------------------------------------------------------------
def summary_frame(data: Data) -> pd.DataFrame:
    f = finals(data)
    e = epochs_to_target(data).set_index(["task", "label"])
    wall = data.runs.groupby(["task", "label"])["wall_time_s"].mean()
    final_spread, best_spread = label_spreads(data, "final"), label_spreads(data, "best")
    rows = []
    for task in data.tasks:
        for label in labels_of(data, task):
            g = f[(f["task"] == task) & (f["label"] == label)]
            if g.empty:
                continue
            key = (task, label)
            fs, bs = final_spread[key], best_spread[key]
            mean = fs.mean
            notes = [n for n in g["note"] if n]
            if near_chance(data, task, mean) is True:
                notes.insert(0, "near chance")
            rows.append({"task": task, "label": label, "metric": data.metric[task], "seeds": len(g),
                         "spread": kind_of(len(g)), "final_mean": mean, "final_lo": fs.lo, "final_hi": fs.hi,
                         "final_min": g["final"].min(skipna=False), "final_max": g["final"].max(skipna=False),
                         "final_std": g["final"].std(ddof=0),
                         "best_mean": bs.mean, "best_lo": bs.lo, "best_hi": bs.hi,
                         "best_min": g["best"].min(), "best_max": g["best"].max(),
                         "wall_time_s": float(wall.get(key, float("nan"))),
                         "epochs_to_target": e["epochs_to_target"].get(key) if key in e.index else None,
                         "target": e["target"].get(key) if key in e.index else None,
                         "note": "; ".join(notes)})
    return pd.DataFrame(rows)


def starting_loss(info: dict[str, Any]) -> float | None:
    """The mean training loss (cross-entropy) MLR-SNet's gamma was first computed from, as
    ``runs.method_info`` records it: ``mlrsnet_initial_loss`` for a meta-training run, the
    first ``(checkpoint, loss)`` pair of ``mlrsnet_gamma_reference`` for a transferred one
    (whose gamma is recomputed at each checkpoint switch); None when neither is there."""
    if info.get("mlrsnet_initial_loss") is not None:
        return float(info["mlrsnet_initial_loss"])
    ref = info.get("mlrsnet_gamma_reference")
    if isinstance(ref, list | tuple) and ref and isinstance(ref[0], list | tuple) and len(ref[0]) == 2:
        return float(ref[0][1])
    return None


def gamma_frame(data: Data) -> pd.DataFrame:
    """Per MLR-SNet run drawn: its (first) LR scale gamma and the starting loss gamma was
    computed from (:func:`starting_loss`), read from ``runs.method_info``; empty when no run
    records one.  At the narrow ``mini``/``cpu`` widths the starting loss, and so gamma,
    varies widely across seeds (README, method ``mlrsnet``): the table shows it run by run."""
    rows = []
    for r in data.runs.itertuples():
        info = r.method_info if isinstance(getattr(r, "method_info", None), dict) else {}
        if info.get("mlrsnet_gamma") is None:
            continue
        rows.append({"task": r.task, "label": r.label, "seed": int(r.seed), "run_id": r.run_id,
                     "starting_loss": starting_loss(info), "gamma": float(info["mlrsnet_gamma"])})
    columns = ["task", "label", "seed", "run_id", "starting_loss", "gamma"]
    return pd.DataFrame(rows, columns=columns).sort_values(["task", "label", "seed"], kind="stable",
                                                           ignore_index=True)


def gamma_caption() -> str:
    return ("MLR-SNet's LR scale per run: gamma and the mean training loss (cross-entropy) it was "
            "computed from (a language model's gamma reads its perplexity, exp(loss)); a transferred "
            "run's first value (gamma is recomputed at each checkpoint switch); from `runs.method_info`. "
            "At narrow widths the starting loss varies across seeds, and gamma with it.")


def summary_caption(data: Data, with_gamma: bool = False) -> str:
    """The summary's caption; ``with_gamma`` names the per-run gamma table written beside it."""
    return (f"Per task and method: final (last epoch) and best test metric, the mean over seeds and its spread "
            f"in brackets ({band_words(list(data.runs.groupby(['task', 'label'])['seed'].nunique()))}), "
            f"mean wall time per run, epochs to the target ({target_note()}); notes mark near-chance results "
            f"({near_chance_rule()}) and runs that diverged."
            + (f" MLR-SNet's LR scale gamma per run: `{data.experiment}-gamma.csv`." if with_gamma else "")
            + f" {sentence(caption_facts(data))}.")


def _with_spread(metric: str, mean: float, lo: float, hi: float, n: int) -> str:
    text = fmt_metric(metric, mean)
    if text == "-":
        return "diverged" if n else "-"
    return text if n < 2 else f"{text} [{fmt_metric(metric, lo)}, {fmt_metric(metric, hi)}]"


def summary_artefacts(data: Data, out: Path, write: bool) -> list[Artefact]:
    stem = f"{data.experiment}-summary"
    has = bool(data.tasks)
    gamma = gamma_frame(data)
    caption = summary_caption(data, with_gamma=len(gamma) > 0)
    if write and has:
        s = summary_frame(data)
        out.mkdir(parents=True, exist_ok=True)
        s.to_csv(out / f"{stem}.csv", index=False)
        blocks: list[doc.Block] = [doc.Para(caption)]
        for task in data.tasks:
            g = s[s["task"] == task]
            name = "test accuracy" if data.metric[task] == "acc" else "test perplexity"
            rows = [[r.label, r.seeds, _with_spread(r.metric, r.final_mean, r.final_lo, r.final_hi, r.seeds),
                     _with_spread(r.metric, r.best_mean, r.best_lo, r.best_hi, r.seeds),
                     "-" if pd.isna(r.wall_time_s) else f"{r.wall_time_s:.1f}",
                     "-" if pd.isna(r.epochs_to_target) else int(r.epochs_to_target), r.note or ""]
                    for r in g.itertuples()]
            blocks += [doc.Heading(f"{task_title(task)} ({task})"),
                       doc.Table(["method", "n seeds", f"final {name} [spread]", f"best {name} [spread]",
                                  "wall time (s)", "epochs to target", "note"], rows, align="lrrrrrl")]
        if len(gamma):
            gamma.to_csv(out / f"{data.experiment}-gamma.csv", index=False)
            blocks += [doc.Heading("MLR-SNet's LR scale gamma per run"), doc.Para(gamma_caption()),
                       doc.Table(["task", "method", "seed", "run", "starting loss", "gamma"],
                                 [[r.task, r.label, r.seed, r.run_id,
                                   "-" if pd.isna(r.starting_loss) else f"{r.starting_loss:.3f}", f"{r.gamma:.3f}"]
                                  for r in gamma.itertuples()], align="llrlrr")]
        reasons = missing_reasons(data)
        if reasons:
            blocks += [doc.Heading("Not included"), doc.Bullets(reasons)]
        _md_page(out / f"{stem}.md", figure_title(data, "summary per task"), blocks)
    files = [out / f"{stem}.md", out / f"{stem}.csv"] if has else []
    if has and len(gamma):
        files.append(out / f"{data.experiment}-gamma.csv")
    return [Artefact("summary", figure_title(data, "summary per task (table)"), files,
                     caption, len(data.runs), missing_reasons(data))]


# -- index -----------------------------------------------------------------------------------
def command(report: str, data: Data, out: Path) -> str:
    return (f"mlrsnet-bench report {report} --experiment {data.experiment} --results {data.results} "
            f"--out {out}")


def builders() -> list[tuple[str, Any]]:
    """The registry's per-experiment reports with their ``(data, out, write)`` builders, in
    the registry's order (the order of ``all`` and of the index)."""
    return [(name, getattr(importlib.import_module(r.module), r.artefacts)) for name, r in REPORTS.items()
            if r.artefacts]


def verdict_blocks(data: Data, heading_level: int = 2) -> list[doc.Block]:
    """The experiment's verdict on the paper's claim (nothing when its spec states none)."""
    from mlrsnet.paper.report.verdict import (
        FIGURE_HEADER,
        RULE,
        TASK_HEADER,
        figure_row,
        figure_verdicts,
        task_rows,
    )

    verdicts = [fv for fv in figure_verdicts(data) if fv.tasks]
    if not verdicts:
        return []
    return [doc.Heading("Does the paper's claim hold here?", heading_level), doc.Para(RULE),
            doc.Table(FIGURE_HEADER, [figure_row(fv) for fv in verdicts]),
            doc.Table(TASK_HEADER, [row for fv in verdicts for row in task_rows(fv)], align="llrlrrll")]


def write_index(data: Data, out: Path, artefacts: list[Artefact]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    title = figure_title(data)
    facts = sentence(caption_facts(data)) if len(data.runs) else "No finished run"
    page = doc.Document(title)
    page.add(doc.Para(f"{facts}. Everything below is rendered from the Parquet results under "
                      f"`{data.results}` alone; `{command('all', data, out)}` regenerates all of it."))
    page.add(*verdict_blocks(data))
    diverged = diverged_runs(data)
    if diverged:
        page.add(doc.Heading("Diverged runs"), doc.Bullets(diverged))
    for a in artefacts:
        present = [p for p in a.files if p.exists()]
        cmd = command(a.report, data, out)
        page.add(doc.Heading(a.title))
        if present:
            for p in present:
                if p.suffix == ".png":
                    page.add(doc.Figure(p.name, a.title))
            page.add(doc.Para("Files: " + " / ".join(f"[{p.name}]({p.name})" for p in present)))
        else:
            why = a.why or ("no finished run to draw" if not data.tasks else f"not rendered yet: run `{cmd}`")
            page.add(doc.Para(f"**Not drawn**: {why}."))
        page.add(doc.Para(a.caption), doc.Para(f"Runs behind it: {a.runs}. Regenerate: `{cmd}`"))
        if a.missing:
            page.add(doc.Para("Missing from it:"), doc.Bullets(a.missing))
    return doc.write(page, out / "index.md", out / "index.html")


def _render(names: list[str], store: Store, out: Path, experiment: str, *, write: bool,
            index: bool) -> list[Path]:
    data = load(store, experiment)
    if not index:
        require_finished(data.all_runs, store, experiment, "run the experiment first")
    build = dict(builders())
    artefacts = [a for n in names for a in build[n](data, out, write)]
    written = [p for a in artefacts for p in a.files if write and p.exists()]
    written += [p.with_suffix(".caption.txt") for p in written if p.suffix == ".png"]
    if index:
        everything = artefacts if names == list(build) else [a for n, b in build.items() for a in b(data, out, False)]
        written += write_index(data, out, everything)
    return written


def render_artefacts(name: str, store: Store, out: Path, experiment: str) -> list[Path]:
    """Render one per-experiment report of the registry (e.g. ``figures``)."""
    return _render([name], store, out, experiment, write=True, index=False)


def render_index(store: Store, out: Path, experiment: str) -> list[Path]:
    """The index alone (it links whatever is already rendered in ``out``)."""
    return _render([], store, out, experiment, write=False, index=True)


def render_all(store: Store, out: Path, experiment: str) -> list[Path]:
    return _render([n for n, _ in builders()], store, out, experiment, write=True, index=True)


def render_figures(store: Store, out: Path, experiment: str) -> list[Path]:
    return render_artefacts("figures", store, out, experiment)
