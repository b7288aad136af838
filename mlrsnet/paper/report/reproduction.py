"""The report of a whole reproduction (``reports/<PROFILE>/index.md`` and ``index.html``).

What a reader sees first: whether each of the paper's claims holds at this scale, as one
verdict table computed from the results by the stated rule
(:mod:`~mlrsnet.paper.report.verdict`), with the paper's numbers beside ours; then Table 1
(our tuned values beside the paper's); then, per figure, its curves with the caption and
everything else it has.  Each experiment's own folder holds all of its figures and tables
(:func:`mlrsnet.paper.report.figures.render_all`); a search stage named like a report of
the registry (``table1``) gets that report.  ``verdicts.md`` / ``verdicts.csv`` repeat the
verdicts alone (the README's summary is generated from the same computation).

One document (:mod:`~mlrsnet.paper.report.document`) gives the Markdown and the HTML.  Pure
function of the Parquet store and the stage list: re-rendering never trains.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlrsnet.errors import UserError
from mlrsnet.harness.store import Store
from mlrsnet.paper.report import REPORTS
from mlrsnet.paper.report import document as doc
from mlrsnet.paper.report import figures as F
from mlrsnet.paper.report.verdict import (
    FIGURE_HEADER,
    RULE,
    TASK_HEADER,
    FigureVerdict,
    figure_row,
    figure_verdicts,
    task_rows,
)


@dataclass(frozen=True)
class Entry:
    """One experiment of the reproduction: its name, ``tune`` or ``run``, and its title."""

    name: str
    kind: str
    title: str


def _rel(path: Path, out: Path) -> str:
    return path.resolve().relative_to(out.resolve()).as_posix()


def _render_entry(store: Store, out: Path, entry: Entry, command: str) -> tuple[list[Path], str | None]:
    """The files of one entry, or the reason it has none."""
    folder = out / entry.name
    if store.runs(entry.name).empty:
        return [], f"not run yet: `{command}` trains it (after the searches it takes its configurations from)"
    try:
        if entry.kind == "run":
            return F.render_all(store, folder, entry.name), None
        report = REPORTS.get(entry.name)
        if report is not None and report.render:
            return getattr(importlib.import_module(report.module), report.render)(store, folder, entry.name), None
    except UserError as exc:
        return [], str(exc)
    return [], None


def _title(store: Store, entry: Entry) -> str:
    """The figure title of the stored spec ("Fig. 2: ..."), else the plan's title."""
    spec = store.spec(entry.name) or {}
    report = spec.get("report") or {}
    if report.get("figure") and report.get("title"):
        return f"{report['figure']}: {report['title']}"
    return entry.title


def _anchor(name: str) -> str:
    return name.replace("_", "-")


def verdict_blocks(verdicts: list[FigureVerdict], profile: str) -> list[doc.Block]:
    rows = [figure_row(v, f"#{_anchor(v.experiment)}") for v in verdicts]
    per_task = [row for v in verdicts for row in task_rows(v)]
    return [doc.Heading(f"Does each claim of the paper hold at PROFILE={profile}?", anchor="verdicts"),
            doc.Para(RULE), doc.Table(FIGURE_HEADER, rows),
            doc.Para("Per task (final test metric: accuracy in %, perplexity as is; the spread in brackets):"),
            doc.Table(TASK_HEADER, per_task, align="llrlrrll")]


def _searches_table(store: Store, entries: Sequence[Entry]) -> doc.Table:
    rows = []
    for e in entries:
        runs = store.runs(e.name)
        n = 0 if runs.empty else runs["run_id"].nunique()
        rows.append([f"`{e.name}`", _title(store, e), n])
    return doc.Table(["search", "what it tunes (for the figures below)", "trials recorded"], rows, align="llr")


def _experiment_section(store: Store, out: Path, entry: Entry, paths: list[Path]) -> list[doc.Block]:
    blocks: list[doc.Block] = []
    index = out / entry.name / "index.md"
    if index.exists():
        blocks.append(doc.Para(f"[All of it, with the verdict, every caption and the runs behind it]"
                               f"({_rel(index.with_suffix('.html'), out)}) ([Markdown]({_rel(index, out)}))"))
    for p in (p for p in paths if p.suffix == ".png"):
        caption = p.with_suffix(".caption.txt")
        text = caption.read_text().strip() if caption.exists() else ""
        blocks.append(doc.Figure(_rel(p, out), p.stem, text))
    tables = [p for p in paths if p.suffix in (".md", ".csv") and p.name != "index.md"]
    if tables:
        blocks.append(doc.Para("Tables: " + " / ".join(f"[{p.name}]({_rel(p, out)})" for p in tables)))
    return blocks


def store_verdicts(store: Store, experiments: Sequence[str]) -> list[FigureVerdict]:
    """The verdicts of the experiments (in this order) whose stored spec states a claim."""
    out = []
    for name in experiments:
        if not (store.spec(name) or {}).get("report") or store.runs(name).empty:
            continue
        out.extend(fv for fv in figure_verdicts(F.load(store, name)) if fv.tasks)
    return out


def verdict_frame(verdicts: list[FigureVerdict]) -> pd.DataFrame:
    rows = [{"figure": v.figure, "experiment": v.experiment, "task": t.task, "metric": t.metric,
             "claimed_method": v.ours, "claimed_mean": t.ours.mean, "claimed_lo": t.ours.lo, "claimed_hi": t.ours.hi,
             "claimed_n": t.ours.n, "other_method": t.other_label, "other_mean": t.other.mean,
             "other_lo": t.other.lo, "other_hi": t.other.hi, "other_n": t.other.n, "spread": t.ours.kind,
             "verdict": t.verdict, "reason": t.reason, "paper": t.paper, "figure_verdict": v.verdict}
            for v in verdicts for t in v.tasks]
    return pd.DataFrame(rows)


def render_reproduction(store: Store, out: Path, *, entries: Sequence[Entry], profile: str,
                        command: str, status: str = "") -> list[Path]:
    """Render every entry under ``out/<name>/`` and the index above them; returns the index
    paths first, then every file written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rendered: dict[str, tuple[list[Path], str | None]] = {}
    for entry in entries:
        rendered[entry.name] = _render_entry(store, out, entry, command)
        written += rendered[entry.name][0]
    runs = [e for e in entries if e.kind == "run"]
    verdicts = store_verdicts(store, [e.name for e in runs])
    scale = ("the paper's settings" if profile == "paper" else
             f"a scaled-down profile (`{profile}`: narrower models, a few epochs, real data subsets; "
             "not the paper's settings)")
    page = doc.Document(f"MLR-SNet supplement reproduction, PROFILE={profile}")
    page.add(doc.Para(f"The supplement's tables and figures, re-run at {scale}. Rendered from the Parquet "
                      f"results under `{store.root}` alone; `{command}` regenerates everything (it trains only "
                      "what is missing). The verdicts below are computed from those results by the rule stated "
                      "with them; each figure's section links its own page with every caption and the runs "
                      "behind it."))
    if status:
        page.add(doc.Para(f"**{status}**"))
    if verdicts:
        page.add(*verdict_blocks(verdicts, profile))
    for entry in entries:
        if entry.kind != "tune" or entry.name not in REPORTS:
            continue
        page.add(doc.Heading(_title(store, entry), anchor=_anchor(entry.name)))
        paths, why = rendered[entry.name]
        report = REPORTS[entry.name]
        if why:
            page.add(doc.Para(f"**Not drawn**: {why}"))
        elif report.blocks:
            page.add(*getattr(importlib.import_module(report.module), report.blocks)(store, entry.name))
        tables = [p for p in paths if p.suffix in (".md", ".csv", ".tex")]
        if tables:
            page.add(doc.Para("Files: " + " / ".join(f"[{p.name}]({_rel(p, out)})" for p in tables)))
    searches = [e for e in entries if e.kind == "tune" and e.name not in REPORTS]
    if searches:
        page.add(doc.Heading("Searches behind the figures", anchor="searches"),
                 doc.Para("Their best configurations are trained again at the figure profile in the figures below."),
                 _searches_table(store, searches))
    for entry in runs:
        paths, why = rendered[entry.name]
        page.add(doc.Heading(_title(store, entry), anchor=_anchor(entry.name)))
        if why:
            page.add(doc.Para(f"**Not drawn**: {why}"))
            continue
        page.add(*_experiment_section(store, out, entry, paths))
    paths = doc.write(page, out / "index.md", out / "index.html")
    if verdicts:
        vpage = doc.Document(f"Verdicts of the MLR-SNet reproduction, PROFILE={profile}")
        vpage.add(doc.Para(f"Computed from the Parquet results under `{store.root}` by "
                           "`mlrsnet.paper.report.verdict`; the full report: [index.md](index.md)."),
                  *verdict_blocks(verdicts, profile)[1:])
        written += doc.write(vpage, out / "verdicts.md")
        verdict_frame(verdicts).to_csv(out / "verdicts.csv", index=False)
        written.append(out / "verdicts.csv")
    return paths + written


def claimed_experiments(store: Store) -> list[str]:
    """The experiments whose stored spec states a claim, in the paper's figure order."""
    import re

    def key(name: str) -> list[Any]:
        fig = str(((store.spec(name) or {}).get("report") or {}).get("figure") or name)
        return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", fig)]

    named = [e for e in store.experiments() if ((store.spec(e) or {}).get("report") or {}).get("claim")]
    return sorted(named, key=key)


def readme_summary(store: Store, link: str) -> str:
    """The README's summary of the verdicts (generated, never typed): one line per figure."""
    lines = []
    for v in store_verdicts(store, claimed_experiments(store)):
        seeds = "/".join(map(str, v.seeds))
        missing = f"; missing: {', '.join(v.missing)}" if v.missing else ""
        setup = f", {v.ours}" if v.has_variants else ""
        lines.append(f"- {v.figure} ({v.title}{setup}): **{v.verdict}**: {v.summary()}, n = {seeds} seeds{missing}")
    return "\n".join(lines) + f"\n\nThe rule, the numbers per task and the paper's values: [{link}]({link}).\n"


START, END = "<!-- verdicts:start -->", "<!-- verdicts:end -->"


def with_summary(readme: str, store: Store, link: str) -> str:
    """``readme`` with the text between the verdict markers replaced by :func:`readme_summary`."""
    return doc.between_markers(readme, START, END, readme_summary(store, link))


if __name__ == "__main__":  # python -m mlrsnet.paper.report.reproduction README.md reports/cpu/results
    import sys

    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    results = sys.argv[2] if len(sys.argv) > 2 else "reports/cpu/results"
    target = Path(results).parent / "verdicts.md"
    readme.write_text(with_summary(readme.read_text(), Store(results), target.as_posix()))
