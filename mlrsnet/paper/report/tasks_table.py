"""The task table printed by ``mlrsnet-bench list tasks`` and embedded in the README."""

from __future__ import annotations

from mlrsnet.paper.tasks import TASKS


def _profile_summary(task_name: str, profile: str) -> str:
    task = TASKS[task_name]
    p = task.profile(profile)
    kw = ", ".join(f"{k}={v}" for k, v in p.model_kwargs.items() if k != "tie_weights" or v)
    size = (f"{p.train_tokens or 'all'} train tokens"
            + (f", {p.vocab_size} most frequent words (the rest as unk)" if p.vocab_size else "") if task.kind == "text"
            else f"{p.train_size or 'all'} train, {p.holdout} held out" + (
                f", {p.test_size} test" if p.test_size else ""))
    return f"{p.epochs} ep, batch {p.batch_size}, {size}" + (f", {kw}" if kw else "")


def tasks_table(markdown: bool = True) -> str:
    header = ["task", "setting", "model", "dataset", "params (paper)", "mini (search)", "cpu (figures)", "smoke"]
    rows = []
    for name, t in TASKS.items():
        params = f"{t.paper_params:,}" if t.paper_params else ("-" if t.kind == "text" else "n/a")
        rows.append([name, t.title, t.arch, t.dataset, params,
                     _profile_summary(name, "mini"), _profile_summary(name, "cpu"),
                     _profile_summary(name, "smoke")])
    if not markdown:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


START, END = "<!-- tasks-table:start -->", "<!-- tasks-table:end -->"


def with_table(readme: str) -> str:
    """``readme`` with the text between the task-table markers replaced by the current table."""
    from mlrsnet.paper.report.document import between_markers

    return between_markers(readme, START, END, tasks_table())


if __name__ == "__main__":  # python -m mlrsnet.paper.report.tasks_table README.md
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(with_table(path.read_text()))
