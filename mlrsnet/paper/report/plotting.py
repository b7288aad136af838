"""Matplotlib helpers every figure of a report shares: the panel grid, one legend below the
panels, the title, and saving PNG + PDF + caption so that the same store gives the same
bytes (no creation date in the PDF, a fixed DPI)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def grid(n: int) -> tuple[int, int]:
    cols = 2 if n == 4 else min(n, 3)
    return max(1, math.ceil(n / cols)), max(1, cols)


def axes(n: int, width: float = 4.6, height: float = 3.6, cols: int | None = None) -> tuple[Any, list[Any]]:
    rows, c = grid(n) if cols is None else (max(1, math.ceil(n / cols)), cols)
    fig, ax = plt().subplots(rows, c, figsize=(width * c, height * rows + 1.1), squeeze=False)
    flat = list(ax.ravel())
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def legend(fig: Any, panels: list[Any], ncol: int = 3) -> None:
    """One legend for the figure, below the panels (entries gathered from every panel, each
    label once, in the order first drawn)."""
    handles, labels = {}, []
    for ax in panels:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
                   ncol=min(len(labels), ncol), fontsize=8.5, frameon=False, bbox_to_anchor=(0.5, 0.0))


def layout(fig: Any, title: str, subtitle: str = "", ncol: int = 3) -> None:
    """Title (and a smaller subtitle) on top, the legend below the panels with room for its
    rows (in inches)."""
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    height = fig.get_size_inches()[1]
    bottom = 0.0
    if fig.legends:
        rows = math.ceil(len(fig.legends[0].get_texts()) / ncol)
        bottom = min((0.15 + 0.21 * rows) / height, 0.45)
    fig.tight_layout(rect=(0, bottom, 1, 1))  # tight_layout makes room for the suptitle itself


def save(fig: Any, out: Path, stem: str, caption: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    # No creation date: a re-render of the same store gives the same bytes, so a
    # committed report only changes where its data did.
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    cap = out / f"{stem}.caption.txt"
    cap.write_text(caption + "\n")
    plt().close(fig)
    return [*paths, cap]
