"""The report of a whole reproduction (``reports/<PROFILE>/index.md`` and ``index.html``).

Renders each figure experiment's tables and figures into its own folder
(:func:`mlrsnet.paper.report.figures.render_all`: test curves, LR schedules, performance
profile, summary table, cost), Table 1 (:mod:`mlrsnet.paper.report.table1`), and one index
above them that lists every artefact with its caption and the command that regenerates it,
and every experiment that has nothing to draw with the reason (not run yet, data not
prepared).  Pure function of the Parquet store: re-rendering never trains.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlrsnet.errors import UserError
from mlrsnet.harness.store import Store
from mlrsnet.paper.report import figures as F


@dataclass(frozen=True)
class Entry:
    """One experiment of the reproduction: its name, ``tune`` or ``run``, and its title."""

    name: str
    kind: str
    title: str


#: The tune stages whose own table is part of the report (the others feed the figures).
TABLES = {"table1": ("mlrsnet.paper.report.table1", "render_table1")}


def _rel(path: Path, out: Path) -> str:
    return path.resolve().relative_to(out.resolve()).as_posix()


def _render_entry(store: Store, out: Path, entry: Entry, command: str) -> tuple[list[Path], str | None]:
    """The files of one entry, or the reason it has none."""
    import importlib

    folder = out / entry.name
    if store.runs(entry.name).empty:
        return [], f"not run yet: `{command}` trains it (after the searches it takes its configurations from)"
    try:
        if entry.kind == "run":
            return F.render_all(store, folder, entry.name), None
        if entry.name in TABLES:
            module, func = TABLES[entry.name]
            return getattr(importlib.import_module(module), func)(store, folder, entry.name), None
    except UserError as exc:
        return [], str(exc)
    return [], None


def render_reproduction(store: Store, out: Path, *, entries: Sequence[Entry], profile: str,
                        command: str, status: str = "") -> list[Path]:
    """Render every entry under ``out/<name>/`` and the index above them; returns the index
    paths first, then every file written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    md = [f"# MLR-SNet supplement reproduction, PROFILE={profile}\n",
          f"Rendered from the Parquet results under `{store.root}` alone; `{command}` "
          "regenerates everything (it trains only what is missing). Each section links the "
          "experiment's own index with every figure's caption, the runs behind it and the command "
          "that redraws it.\n", *([f"**{status}**\n"] if status else [])]
    body = [f"<h1>MLR-SNet supplement reproduction, PROFILE={html.escape(profile)}</h1>",
            f"<p>Rendered from the Parquet results under <code>{html.escape(str(store.root))}</code> alone; "
            f"<code>{html.escape(command)}</code> regenerates everything (it trains only what is missing).</p>",
            *([f"<p><b>{html.escape(status)}</b></p>"] if status else [])]
    for entry in entries:
        paths, why = _render_entry(store, out, entry, command)
        if entry.kind == "tune" and entry.name not in TABLES:
            runs = store.runs(entry.name)
            n = 0 if runs.empty else runs["run_id"].nunique()
            md.append(f"## {entry.title}\n\nSearch `{entry.name}`: {n} trials recorded (they feed the "
                      "figures below; their best configurations are trained again there).\n")
            body.append(f"<h2>{html.escape(entry.title)}</h2><p>Search <code>{html.escape(entry.name)}</code>: "
                        f"{n} trials recorded (they feed the figures below).</p>")
            continue
        written += paths
        md.append(f"## {entry.title}\n")
        body.append(f"<h2>{html.escape(entry.title)}</h2>")
        if why:
            md.append(f"**Not drawn**: {why}\n")
            body.append(f"<p><b>Not drawn</b>: {html.escape(why)}</p>")
            continue
        index = out / entry.name / "index.md"
        pngs = [p for p in paths if p.suffix == ".png"]
        tables = [p for p in paths if p.suffix in (".md", ".csv") and p.name != "index.md"]
        if index.exists():
            md.append(f"[all of it, with captions]({_rel(index, out)})\n")
            body.append(f'<p><a href="{html.escape(_rel(index.with_suffix(".html"), out))}">all of it, '
                        "with captions</a></p>")
        for p in pngs:
            caption = p.with_suffix(".caption.txt")
            text = caption.read_text().strip() if caption.exists() else ""
            md.append(f"![{p.stem}]({_rel(p, out)})\n\n{text}\n")
            body.append(f'<figure><a href="{html.escape(_rel(p, out))}"><img src="{html.escape(_rel(p, out))}" '
                        f'alt="{html.escape(p.stem)}" style="max-width:100%"></a>'
                        f"<figcaption>{html.escape(text)}</figcaption></figure>")
        for p in paths:  # a one-screen summary (Table 1's) is shown as it is
            if p.name.endswith("_summary.txt"):
                text = p.read_text().rstrip()
                md.append(f"```\n{text}\n```\n")
                body.append(f"<pre>{html.escape(text)}</pre>")
        if tables:
            md.append("Tables: " + " / ".join(f"[{p.name}]({_rel(p, out)})" for p in tables) + "\n")
            body.append("<p>Tables: " + " / ".join(f'<a href="{html.escape(_rel(p, out))}">{html.escape(p.name)}</a>'
                                                   for p in tables) + "</p>")
    paths = [out / "index.md", out / "index.html"]
    paths[0].write_text("\n".join(md))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "code{background:#f3f3f3;padding:1px 4px}img{border:1px solid #ddd}"
             "figcaption{font-size:90%;color:#333;margin-bottom:2em}")
    paths[1].write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>MLR-SNet reproduction "
                        f"{html.escape(profile)}</title><style>{style}</style></head><body>\n"
                        + "\n".join(body) + "\n</body></html>\n")
    return paths + written
