"""One colour and one marker per method, the same in every figure of a report.

A method keeps its look from figure to figure (MLR-SNet is red circles in Fig. 1 as in
Fig. 6), whatever position it has in a legend: the style is looked up from the method
label (the spec's ``label``, e.g. "MultiStep (BOHB)") by the first matching entry of
:data:`BY_LABEL`, else from the registered method name (:data:`BY_METHOD`), else a colour
of a reserve palette picked by a stable hash of the label.  Labels of one family drawn
together (RTHO at four held-out sizes) share colour and marker and differ in line style and
in how the marker is filled (half of it), in the order given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: Any = "-"
    #: how the marker is filled: "full", or half of it for the variants of one family
    fillstyle: str = "full"


#: (label prefix, a word the label contains or None, style); the first match wins, so the
#: more specific entries come first ("MultiStep (BOHB on CIFAR-10)" and "MultiStep tuned by
#: BOHB" are one method: MultiStep as BOHB tuned it).
BY_LABEL: tuple[tuple[str, str | None, Style], ...] = (
    ("MLR-SNet", None, Style("#d62728", "o")),
    ("MultiStep", "BayesOpt", Style("#1f77b4", "s")),
    ("MultiStep", "BOHB", Style("#ff7f0e", "^")),
    ("MultiStep", "random", Style("#8c564b", "v")),
    ("MultiStep", "grid", Style("#7f7f7f", "D")),
    ("MultiStep", None, Style("#17becf", "s")),
    ("Cosine", None, Style("#2ca02c", "P")),
    ("Exponential", None, Style("#9467bd", "X")),
    ("SGDR", None, Style("#e377c2", "*")),
    ("RTHO", None, Style("#bcbd22", "h")),
    ("Fixed", None, Style("#555555", "<")),
    ("HD", None, Style("#e6ab02", ">")),
    ("L4", None, Style("#66a61e", "d")),
    ("Meta-SGD", None, Style("#a6761d", "p")),
    ("MARTHE", None, Style("#1b9e77", "8")),
)
_BY = {prefix + (f"/{word}" if word else ""): style for prefix, word, style in BY_LABEL}
#: Registered method name -> style, for labels that name no known family.
BY_METHOD: Mapping[str, Style] = {
    "mlrsnet": _BY["MLR-SNet"], "mlrsnet-transfer": _BY["MLR-SNet"], "multistep": _BY["MultiStep"],
    "multistep-val": _BY["MultiStep"], "cosine": _BY["Cosine"], "exponential": _BY["Exponential"],
    "sgdr": _BY["SGDR"], "rtho": _BY["RTHO"], "fixed": _BY["Fixed"], "hd": _BY["HD"], "hd-adam": _BY["HD"],
    "l4-mom": _BY["L4"], "l4-adam": _BY["L4"], "meta-sgd": _BY["Meta-SGD"], "marthe": _BY["MARTHE"],
}
RESERVE = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354", "#756bb1")
RESERVE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))
FILLSTYLES = ("full", "left", "bottom", "right", "top")


def base_style(label: str, method: str | None = None) -> Style:
    """The style of a method label (see the module docstring)."""
    low = label.lower()
    for prefix, word, style in BY_LABEL:
        if low.startswith(prefix.lower()) and (word is None or word.lower() in low):
            return style
    if method and method in BY_METHOD:
        return BY_METHOD[method]
    k = int(hashlib.sha256(label.encode()).hexdigest(), 16)
    return Style(RESERVE[k % len(RESERVE)], RESERVE_MARKERS[(k // len(RESERVE)) % len(RESERVE_MARKERS)])


def styles(labels: Iterable[str], methods: Mapping[str, str] | None = None) -> dict[str, Style]:
    """Each label's style; labels sharing a colour and marker take line styles in turn."""
    out: dict[str, Style] = {}
    seen: dict[Style, int] = {}
    for label in labels:
        base = base_style(label, (methods or {}).get(label))
        k = seen.get(base, 0)
        seen[base] = k + 1
        out[label] = replace(base, linestyle=LINESTYLES[k % len(LINESTYLES)],
                             fillstyle=FILLSTYLES[k % len(FILLSTYLES)]) if k else base
    return out
