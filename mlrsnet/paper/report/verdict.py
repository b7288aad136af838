"""Does the paper's claim hold here?  A verdict per figure, computed from the store by a rule.

Each figure spec states, in its ``[report]`` table, the paper's claim in one line and the
method the claim is about (``ours``, e.g. "MLR-SNet (transferred)"); the verdict compares,
task by task, that method's final test metric (last epoch) with the best other method's on
the same task (the highest mean accuracy, the lowest mean perplexity; the methods of
``against`` in the ``[report]`` table, by default every method but the claimed method's
own variants), over seeds:

- each side is an interval: the seeds' min-max with 2 seeds, the 95 % bootstrap confidence
  interval of the mean with 3 or more (:mod:`~mlrsnet.paper.report.stats`), the value
  itself with one seed;
- **holds** on a task when the claimed method's interval lies wholly on the better side of
  the best other's; **does not hold** when it lies wholly on the worse side, or the claimed
  method diverged; **inconclusive** when the intervals overlap (the gap is within the seed
  spread) or every method's result is near chance
  (:func:`~mlrsnet.paper.report.data.near_chance`);
- the figure: **does not hold** when it does not hold on some task, else **holds** when it
  holds on some task, else **inconclusive**; tasks without runs (a dataset not prepared) are
  named and count for nothing.

Where the authors' code leaves a choice open (the gate convention of the released checkpoints,
the optimiser a transferred MLR-SNet drives), the spec names the other set-ups of the claimed
method in ``variants``: each gets a verdict of its own, so a verdict that depends on the choice
shows it (:func:`figure_verdicts`).

The paper claims "comparable or better": a gap within the seed spread is what "comparable"
looks like, but with two seeds it cannot be told from noise, hence inconclusive rather than
holds.  :data:`RULE` states this on the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mlrsnet.paper.report.data import (
    Data,
    finals,
    labels_of,
    missing_tasks,
    near_chance,
    near_chance_rule,
    task_title,
)
from mlrsnet.paper.report.stats import Spread, spread

HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
RULE = ("Rule: per task, the claimed method's final test metric (last epoch) against the best other "
        "method's, each as an interval over seeds (min-max with 2 seeds, 95 % bootstrap CI of the mean "
        "with 3 or more, the value with 1). **holds**: the claimed method's interval lies wholly on the "
        "better side; **does not hold**: wholly on the worse side, or the claimed method diverged; "
        "**inconclusive**: the intervals overlap (the gap is within the seed spread) or every method is "
        f"near chance ({near_chance_rule()}). A figure does not hold if it does not hold on some task, "
        "else holds if it holds on some task, else is inconclusive; tasks without runs count for nothing.")


@dataclass(frozen=True)
class TaskVerdict:
    task: str
    metric: str
    ours: Spread
    other_label: str
    other: Spread
    verdict: str
    reason: str
    paper: str = ""

    @property
    def gap(self) -> float:
        """Ours minus the best other's mean, signed so that positive is better for ours
        (accuracy points, perplexity units)."""
        d = self.ours.mean - self.other.mean
        return 100 * d if self.metric == "acc" else -d


@dataclass
class FigureVerdict:
    experiment: str
    figure: str
    title: str
    claim: str
    ours: str
    tasks: list[TaskVerdict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    profile: str = ""
    #: Whether the figure has several set-ups of the claimed method (``[report] variants``):
    #: its rows then name the set-up they are about.
    has_variants: bool = False

    @property
    def verdict(self) -> str:
        kinds = [t.verdict for t in self.tasks]
        if FAILS in kinds:
            return FAILS
        return HOLDS if HOLDS in kinds else UNSURE

    @property
    def seeds(self) -> list[int]:
        return sorted({t.ours.n for t in self.tasks} | {t.other.n for t in self.tasks if t.other.n})

    def summary(self) -> str:
        """"ahead on 1, behind on 2, within the seed spread on 1 of 4 tasks"."""
        n = len(self.tasks)
        counts = [(HOLDS, "ahead"), (FAILS, "behind"), (UNSURE, "inconclusive")]
        parts = [f"{word} on {sum(t.verdict == kind for t in self.tasks)}" for kind, word in counts
                 if any(t.verdict == kind for t in self.tasks)]
        text = ", ".join(parts) + f" of {n} task{'s' if n != 1 else ''}" if parts else "no task to compare"
        near = sum(t.reason == "every method near chance" for t in self.tasks)
        if near:
            text += f" ({near} with every method near chance)"
        return text


def fmt(metric: str, v: float) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{100 * v:.1f} %" if metric == "acc" else f"{v:.0f}"


def fmt_spread(metric: str, s: Spread) -> str:
    """"41.2 % [40.1–42.3]" (the interval in brackets; none with one seed)."""
    if not s.finite:
        return "diverged" if s.n else "—"
    if s.n <= 1:
        return fmt(metric, s.mean)
    unit = " %" if metric == "acc" else ""
    lo, hi = (fmt(metric, s.lo).removesuffix(unit), fmt(metric, s.hi).removesuffix(unit))
    return f"{fmt(metric, s.mean)} [{lo}–{hi}]"


def fmt_gap(metric: str, gap: float) -> str:
    if not math.isfinite(gap):
        return "—"
    return f"{gap:+.1f} pts" if metric == "acc" else f"{gap:+.0f} ppl"


def _paper_value(data: Data, task: str) -> str:
    vals = (data.report.get("paper") or {}).get(task) or {}
    metric = data.metric.get(task, "acc")
    return ", ".join(f"{k} {fmt(metric, float(vals[k]))}" for k in ("final", "best") if k in vals)


def _compare(metric: str, ours: Spread, other: Spread) -> str:
    better_lo, better_hi = (ours.lo, ours.hi) if metric == "acc" else (-ours.hi, -ours.lo)
    other_lo, other_hi = (other.lo, other.hi) if metric == "acc" else (-other.hi, -other.lo)
    if better_lo > other_hi:
        return HOLDS
    if better_hi < other_lo:
        return FAILS
    return UNSURE


def _compared(label: str, ours: str, report: dict[str, Any]) -> bool:
    """Whether ``label`` is one of the methods the claim compares against: those whose label
    starts with one of ``[report] against``, or by default every method but the claimed one's
    own variants (its family: the label before " (", e.g. another MLR-SNet set-up)."""
    against = report.get("against")
    if against:
        return any(label == a or label.startswith(str(a)) for a in against)
    return label.split(" (")[0] != ours.split(" (")[0]


def task_verdict(data: Data, task: str, ours_label: str, f: Any) -> TaskVerdict | None:
    """The verdict on one task (None when the claimed method has no run there)."""
    metric = data.metric.get(task, "acc")
    mine = f[f["task"] == task]
    labels = labels_of(data, task)
    ours_labels = [lab for lab in labels if lab == ours_label or lab.startswith(ours_label + " ")]
    if not ours_labels:
        return None
    ours = spread(mine.loc[mine["label"].isin(ours_labels), "final"])
    against = [lab for lab in labels if lab not in ours_labels and _compared(lab, ours_label, data.report)]
    others = {lab: spread(mine.loc[mine["label"] == lab, "final"]) for lab in against}
    finite = {lab: s for lab, s in others.items() if s.finite}
    paper = _paper_value(data, task)
    if not finite:
        return TaskVerdict(task, metric, ours, "", Spread(0, math.nan, math.nan, math.nan, ""), UNSURE,
                           "no other method to compare" if not others else "every other method diverged", paper)
    pick = max if metric == "acc" else min
    other_label = pick(finite, key=lambda lab: finite[lab].mean)
    other = finite[other_label]
    if not ours.finite:
        return TaskVerdict(task, metric, ours, other_label, other, FAILS, "the claimed method diverged", paper)
    means = [ours.mean] + [s.mean for s in finite.values()]
    if all(near_chance(data, task, v) is True for v in means):
        return TaskVerdict(task, metric, ours, other_label, other, UNSURE, "every method near chance", paper)
    verdict = _compare(metric, ours, other)
    reason = {HOLDS: "better beyond the seed spread", FAILS: "worse beyond the seed spread",
              UNSURE: "within the seed spread"}[verdict]
    return TaskVerdict(task, metric, ours, other_label, other, verdict, reason, paper)


def figure_verdicts(data: Data) -> list[FigureVerdict]:
    """One verdict per set-up of the claimed method: ``ours``, then each of ``variants``
    (those with runs); empty when the stored spec states no claim."""
    report = data.report
    labels = [report.get("ours"), *(report.get("variants") or [])]
    out = [figure_verdict(data, str(label)) for label in labels if label]
    out = [fv for fv in out if fv is not None and (fv.tasks or fv.ours == report.get("ours"))]
    for fv in out:
        fv.has_variants = len(out) > 1
    return out


def figure_verdict(data: Data, ours: str | None = None) -> FigureVerdict | None:
    """The verdict of an experiment whose stored spec states a claim (None otherwise), for
    the claimed method ``ours`` (default: the spec's)."""
    report = data.report
    claim, ours = report.get("claim"), ours or report.get("ours")
    if not claim or not ours:
        return None
    from mlrsnet.paper.report.data import figure_name

    title = str(report.get("title") or (data.spec or {}).get("description") or data.experiment)
    fv = FigureVerdict(data.experiment, figure_name(data), title, str(claim), str(ours),
                       missing=missing_tasks(data),
                       profile=", ".join(sorted(set(data.runs["profile"]))) if len(data.runs) else "")
    f = finals(data)
    for task in data.tasks:
        tv = task_verdict(data, task, str(ours), f)
        if tv is not None:
            fv.tasks.append(tv)
    return fv


def task_rows(fv: FigureVerdict) -> list[list[str]]:
    """Per task: figure, task, the claimed method, the best other, the gap, n, paper, verdict."""
    rows = []
    for t in fv.tasks:
        n = "/".join(str(k) for k in sorted({t.ours.n, t.other.n} - {0}))
        claimed = f"{fv.ours}: " if fv.has_variants else ""
        rows.append([fv.figure, task_title(t.task), claimed + fmt_spread(t.metric, t.ours),
                     f"{t.other_label}: {fmt_spread(t.metric, t.other)}" if t.other_label else "—",
                     fmt_gap(t.metric, t.gap), n, t.paper or "—", f"**{t.verdict}** ({t.reason})"])
    for m in fv.missing:
        rows.append([fv.figure, m.split(" (")[0], "not run", "—", "—", "—", "—", f"missing: {m}"])
    return rows


TASK_HEADER = ["figure", "task", "claimed method: final test metric [spread]", "best other method",
               "gap (+ = claimed better)", "n seeds", "paper (claimed method)", "verdict"]
FIGURE_HEADER = ["figure", "the paper's claim", "here (final test metric, n seeds)", "paper's numbers",
                 "verdict"]


def figure_row(fv: FigureVerdict, link: str | None = None) -> list[str]:
    name = f"[{fv.figure}]({link})" if link else fv.figure
    seeds = "/".join(map(str, fv.seeds)) or "—"
    missing = f"; missing: {', '.join(fv.missing)}" if fv.missing else ""
    papers = "; ".join(f"{task_title(t.task)}: {t.paper}" for t in fv.tasks if t.paper) or "curves only"
    setup = f"{fv.ours}: " if fv.has_variants else ""
    return [name, fv.claim, f"{setup}{fv.summary()}, n = {seeds}{missing}", papers,
            f"**{fv.verdict}**"]
