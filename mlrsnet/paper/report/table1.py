"""Table 1 of the supplement: MultiStep's (alpha0, gamma_M) tuned by BayesOpt and BOHB.

Rendered from Parquet alone (plus the paper's values, a copy of which lives in
``benchmarks/reference/paper_table1.csv`` so a fresh clone needs nothing else): for every
setting and searcher, the best configuration our search found, its objective (the
held-out validation metric unless the search tuned on test), the same run's test metric,
the number of trials, and the paper's configuration beside it.  Settings that were not
searched are listed with the reason (e.g. a dataset that is not prepared).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mlrsnet.errors import UserError
from mlrsnet.harness.store import Store
from mlrsnet.paper.report import require_finished
from mlrsnet.paper.tasks import TASKS
from mlrsnet.paper.tune.plan import SEARCHER_TITLES
from mlrsnet.paper.tune.results import skipped_searches, summarize_searches

PAPER_TABLE1 = Path(__file__).resolve().parents[3] / "benchmarks" / "reference" / "paper_table1.csv"
#: Table 1's searchers; other searchers found in the experiment follow in ``SEARCHER_ORDER``.
TABLE1_SEARCHERS = ("bayesopt", "bohb")
SEARCHER_ORDER = ("bayesopt", "bohb", "random", "grid")
COLUMNS = [
    "setting", "task", "searcher", "profile", "objective", "status", "alpha0", "gamma",
    "objective_value", "test_metric", "test_value", "trials", "finished", "stopped_early",
    "diverged", "failed", "paper_alpha0", "paper_gamma", "paper_probe", "search_id", "best_run_id",
    "note",
]


def load_paper_table1(path: Path | None = None) -> pd.DataFrame:
    """The paper's Table 1 (columns setting, task, searcher, alpha0, gamma)."""
    path = Path(path or PAPER_TABLE1)
    if not path.exists():
        raise UserError(f"the paper's Table 1 values are missing: {path} "
                        "(benchmarks/reference/paper_table1.csv in the repository)")
    return pd.read_csv(path)


def _setting_title(task: str, paper: pd.DataFrame) -> str:
    hit = paper[paper["task"] == task]
    if len(hit):
        return str(hit["setting"].iloc[0])
    return TASKS[task].title if task in TASKS else task


def _order(values: list[str], first: tuple[str, ...] | list[str]) -> list[str]:
    return [v for v in first if v in values] + sorted(v for v in values if v not in first)


def table1_frame(runs: pd.DataFrame, epochs: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per (profile, setting, searcher[, objective]) in Table 1's order."""
    summaries = summarize_searches(runs, epochs)
    skipped = skipped_searches(runs)
    profiles = sorted(set(summaries.get("profile", [])) | set(skipped.get("profile", [])))
    if not profiles:
        raise UserError("no tuning searches in this experiment; run `make reproduce-table1` "
                        "(or `mlrsnet-bench tune benchmarks/table1.toml`) first")
    searched = set(summaries["search"]) if len(summaries) else set()
    searchers = _order(sorted(searched | set(TABLE1_SEARCHERS)), SEARCHER_ORDER)
    paper_tasks = list(dict.fromkeys(paper["task"]))
    seen_tasks = set(summaries.get("task", [])) | set(skipped.get("task", []))
    tasks = paper_tasks + sorted(seen_tasks - set(paper_tasks))
    rows: list[dict[str, Any]] = []
    for profile in profiles:
        for task in tasks:
            for searcher in searchers:
                rows.extend(_rows_for(task, searcher, profile, summaries, skipped, paper))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("trials", "finished", "stopped_early", "diverged", "failed", "paper_probe"):
        frame[col] = frame[col].astype("Int64")
    return frame


@functools.cache
def _default_probes(searcher: str, kind: str) -> tuple[dict[str, Any], ...]:
    """The searcher's random warm-up probes under its default seed, for MultiStep's space of
    a task kind (empty for a searcher without a default seed)."""
    from mlrsnet.baselines.multistep import MultiStep
    from mlrsnet.paper.tune.probes import initial_probes
    from mlrsnet.paper.tune.searchers import SEARCHERS

    entry = SEARCHERS.get(searcher)
    if entry is None or entry.name != "bayesopt" or entry.default_seed is None:
        return ()
    return tuple(initial_probes(MultiStep.space(kind)))


def paper_probe(task: str, searcher: str, alpha0: float | None, gamma: float | None) -> int | None:
    """Which default-seed random probe of ``searcher`` the paper's value is, if any (1-based)."""
    from mlrsnet.paper.tune.probes import matching_probe

    if alpha0 is None or gamma is None or task not in TASKS:
        return None
    return matching_probe({"lr": alpha0, "decay": gamma}, list(_default_probes(searcher, TASKS[task].kind)))


def _rows_for(task: str, searcher: str, profile: str, summaries: pd.DataFrame,
              skipped: pd.DataFrame, paper: pd.DataFrame) -> list[dict[str, Any]]:
    ref = paper[(paper["task"] == task) & (paper["searcher"] == searcher)]
    base = {
        "setting": _setting_title(task, paper), "task": task, "searcher": searcher, "profile": profile,
        "paper_alpha0": float(ref["alpha0"].iloc[0]) if len(ref) else None,
        "paper_gamma": float(ref["gamma"].iloc[0]) if len(ref) else None,
    }
    base["paper_probe"] = paper_probe(task, searcher, base["paper_alpha0"], base["paper_gamma"])
    mine = summaries[(summaries["task"] == task) & (summaries["search"] == searcher)
                     & (summaries["profile"] == profile)] if len(summaries) else summaries
    if len(mine):
        return [_searched_row(base, s) for s in mine.sort_values("objective").to_dict("records")]
    skip = skipped[(skipped["task"] == task) & (skipped["search"] == searcher)
                   & (skipped["profile"] == profile)]
    if len(skip):
        return [{**base, "status": "skipped", "note": str(skip["reason"].iloc[0])}]
    if len(ref):  # a paper row we have nothing for
        return [{**base, "status": "not run", "note": "no search in this experiment"}]
    return []


def _searched_row(base: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    hp = s.get("best_hparams") or {}
    metric = str(s["objective"]).split("/")[1]
    row = {
        **base, "objective": s["objective"], "trials": int(s["trials"]),
        "finished": int(s["finished"]), "stopped_early": int(s["stopped"]),
        "diverged": int(s["diverged"]), "failed": int(s["failed"]), "search_id": s["search_id"],
        "test_metric": f"test/{metric}",
    }
    if not hp:
        running = int(s.get("running", 0))
        note = f"{running} trial(s) still running or interrupted" if running else "no trial finished"
        return {**row, "status": "no finished trial", "note": note}
    return {**row, "status": "ok", "alpha0": hp.get("lr"), "gamma": hp.get("decay"),
            "objective_value": s["best_value"], "test_value": s["best_test"],
            "best_run_id": s["best_run_id"]}


# -- formatting ------------------------------------------------------------------------------
def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):.4g}"


def format_metric(name: Any, value: Any) -> str:
    """``val acc 41.20%`` / ``val ppl 312.4``."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or not isinstance(name, str):
        return "—"
    split, metric = name.split("/")
    shown = f"{value * 100:.2f}%" if metric == "acc" else f"{value:.1f}"
    return f"{split} {metric} {shown}"


def format_trials(row: pd.Series) -> str:
    if row["status"] in ("skipped", "not run"):
        return "—"
    extra = [f"{int(row[k])} {label}" for k, label in
             (("stopped_early", "stopped early"), ("diverged", "diverged"), ("failed", "failed"))
             if row[k] and not pd.isna(row[k]) and int(row[k])]
    return f"{int(row['trials'])}" + (f" ({', '.join(extra)})" if extra else "")


def _display_rows(frame: pd.DataFrame) -> list[list[str]]:
    out = []
    for _, r in frame.iterrows():
        if r["status"] == "ok":
            ours = [_num(r["alpha0"]), _num(r["gamma"]), format_metric(r["objective"], r["objective_value"]),
                    format_metric(r["test_metric"], r["test_value"])]
        else:
            ours = [r["status"], "—", "—", "—"]
        out.append([r["setting"], SEARCHER_TITLES.get(r["searcher"], r["searcher"]), *ours,
                    format_trials(r), _num(r["paper_alpha0"]), _num(r["paper_gamma"])])
    return out


HEADER = ["Setting", "Searcher", "α0 (ours)", "γ_M (ours)", "objective (ours)", "test (same run)",
          "trials", "α0 (paper)", "γ_M (paper)"]


def to_document(frame: pd.DataFrame, experiment: str) -> Any:
    """Table 1 as one document (:mod:`mlrsnet.paper.report.document`): Markdown and HTML."""
    from mlrsnet.paper.report import document as doc

    page = doc.Document(f"Table 1: MultiStep tuned by BayesOpt and BOHB (experiment `{experiment}`)")
    for profile, part in frame.groupby("profile", sort=False):
        page.add(doc.Heading(f"Profile `{profile}`"), doc.Para(
            "Best (α0, γ_M) per setting and searcher: the trial with the best final-epoch "
            "objective among those that trained the full budget; the objective is the "
            "held-out validation metric (accuracy for images, perplexity for language "
            "models) unless the search tuned on test. The paper's values (supplement "
            "Table 1) come from full-scale 200/150-epoch runs"
            + ("" if profile == "paper" else
               f"; the `{profile}` profile trains narrower models for a few epochs on data "
               "subsets, so its optimum need not sit where the paper's does") + "."),
            doc.Table(HEADER, _display_rows(part)))
        notes = part[part["status"].isin(["skipped", "no finished trial"])]
        items = [f"{r['setting']} / {SEARCHER_TITLES.get(r['searcher'], r['searcher'])}: {r['status']} — {r['note']}"
                 for _, r in notes.iterrows()]
        items += [f"{r['setting']} / {SEARCHER_TITLES.get(r['searcher'], r['searcher'])}: the paper's (α0, γ_M) is "
                  f"the searcher's random probe {int(r['paper_probe'])} under its default seed (42), one of the points "
                  "it tries before its Gaussian process has seen a result (the paper's bounds searched uniformly; see "
                  "`mlrsnet/paper/tune/probes.py`)." for _, r in part[part["paper_probe"].notna()].iterrows()]
        if items:
            page.add(doc.Bullets(items))
    return page


def to_markdown(frame: pd.DataFrame, experiment: str) -> str:
    from mlrsnet.paper.report import document as doc

    return doc.to_markdown(to_document(frame, experiment))


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                "α": r"$\alpha$", "γ": r"$\gamma$", "—": "--"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(frame: pd.DataFrame) -> str:
    header = ["Setting", "Searcher", r"$\alpha_0$", r"$\gamma_M$", "objective", "test", "trials",
              r"$\alpha_0$ (paper)", r"$\gamma_M$ (paper)"]
    lines = [r"% Table 1, rendered by mlrsnet.paper.report.table1 (needs \usepackage{booktabs})",
             r"\begin{tabular}{llrrllrrr}", r"\toprule", " & ".join(header) + r" \\"]
    for profile, part in frame.groupby("profile", sort=False):
        lines += [r"\midrule", rf"\multicolumn{{9}}{{l}}{{\emph{{profile {tex_escape(profile)}}}}} \\"]
        for cells in _display_rows(part):
            lines.append(" & ".join(tex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def to_summary(frame: pd.DataFrame, experiment: str) -> str:
    """One screen of plain text: per setting and searcher the best configuration, its
    objective and the trials (what ``make reproduce-table1`` prints at the end)."""
    header = ["setting", "searcher", "alpha0", "gamma_M", "objective", "test", "trials"]
    rows = [[r[0], r[1], r[2], r[3], r[4], r[5], r[6]] for r in _display_rows(frame)]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    profiles = ", ".join(dict.fromkeys(frame["profile"])) if len(frame) else "-"
    lines = [f"Table 1 (experiment {experiment}, profile {profiles}): best MultiStep per setting and searcher"]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
              for line in [header, *rows]]
    return "\n".join(lines) + "\n"


INDEX_HEADER = ["Setting", "Searcher", "α0 (ours)", "α0 (paper)", "γ_M (ours)", "γ_M (paper)",
                "objective (ours)", "test (same run)", "trials"]


def index_blocks(store: Store, experiment: str) -> list[Any]:
    """Table 1 as a report page shows it: our (α0, γ_M) beside the paper's, per setting and
    searcher, with the searches' objectives, for each profile (document blocks)."""
    from mlrsnet.paper.report import document as doc

    frame = table1_frame(store.runs(experiment), store.read("epochs", experiment), load_paper_table1())
    blocks: list[Any] = []
    for profile, part in frame.groupby("profile", sort=False):
        rows = [[d[0], d[1], d[2], d[7], d[3], d[8], d[4], d[5], d[6]] for d in _display_rows(part)]
        blocks += [doc.Para(f"Best (α0, γ_M) per setting and searcher at the `{profile}` search profile beside "
                            "the paper's (supplement Table 1, full-scale 200/150-epoch runs"
                            + ("" if profile == "paper" else f"; the `{profile}` profile trains narrower models for a "
                               "few epochs on data subsets, so its optimum need not sit where the paper's does")
                            + "). The objective is the final-epoch held-out validation metric."),
                   doc.Table(INDEX_HEADER, rows, align="llrrrrlll")]
        notes = part[part["status"].isin(["skipped", "no finished trial"])]
        if len(notes):
            blocks.append(doc.Bullets([f"{r['setting']} / {SEARCHER_TITLES.get(r['searcher'], r['searcher'])}: "
                                       f"{r['status']}: {r['note']}" for _, r in notes.iterrows()]))
    return blocks


def render_table1(store: Store, out: Path, experiment: str) -> list[Path]:
    """Write ``table1.md``, ``table1.csv`` and ``table1.tex`` under ``out``, and the
    one-screen ``table1_summary.txt`` that ``mlrsnet-bench report`` prints."""
    runs = store.runs(experiment)
    require_finished(runs, store, experiment, "run `make reproduce-table1` (or "
                     "`mlrsnet-bench tune benchmarks/table1.toml`) first", also=("stopped", "skipped"))
    frame = table1_frame(runs, store.read("epochs", experiment), load_paper_table1())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table1.md", out / "table1.csv", out / "table1.tex"]
    paths[0].write_text(to_markdown(frame, experiment))
    frame.to_csv(paths[1], index=False)
    paths[2].write_text(to_latex(frame))
    summary = out / "table1_summary.txt"
    summary.write_text(to_summary(frame, experiment))
    return [*paths, summary]
