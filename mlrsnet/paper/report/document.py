"""One document builder: a report page as a list of blocks, written as Markdown and as HTML.

Every page of a report (an experiment's index, the reproduction's index, the verdicts, the
summary tables) is built once as blocks (:class:`Heading`, :class:`Para`, :class:`Table`,
:class:`Figure`, :class:`Code`, :class:`Bullets`) and written by :func:`to_markdown` and
:func:`to_html`, so the two never disagree.  HTML comes from one Jinja2 template with real
``<table>`` elements; it is self-contained (one inline style sheet) and links relatively, so
a page opens from disk.

Inline text uses a small, fixed subset of Markdown, the same in both outputs: code spans
in single backticks, ``**bold**`` and ``[text](link)``; everything else is text (escaped in
HTML).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def inline_html(text: str) -> str:
    """The inline subset (code, bold, links) as HTML; the rest escaped."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1))}</code>")
        elif m.group(2) is not None:
            out.append(f"<b>{inline_html(m.group(2))}</b>")
        else:
            out.append(f'<a href="{html.escape(m.group(4))}">{inline_html(m.group(3))}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str | None = None


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    """A table; ``cells`` hold inline text.  ``caption`` is shown above it."""

    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    #: per column: "l" or "r" (default: left)
    align: str = ""


@dataclass(frozen=True)
class Figure:
    """An image (a relative path) with its caption, linked to the image itself."""

    src: str
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


Block = Heading | Para | Table | Figure | Code | Bullets


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Document:
        self.blocks.extend(blocks)
        return self


# -- Markdown ---------------------------------------------------------------------------------
def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    rule = "|" + "".join("---:|" if align[i:i + 1] == "r" else "---|" for i in range(len(header)))
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", rule]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}\n"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            parts.append(f"{'#' * max(2, b.level)} {b.text}\n")
        elif isinstance(b, Para):
            parts.append(b.text + "\n")
        elif isinstance(b, Table):
            parts.append((f"{b.caption}\n\n" if b.caption else "") + md_table(b.header, b.rows, b.align) + "\n")
        elif isinstance(b, Figure):
            parts.append(f"[![{b.alt}]({b.src})]({b.src})\n" + (f"\n{b.caption}\n" if b.caption else ""))
        elif isinstance(b, Code):
            parts.append(f"```\n{b.text.rstrip()}\n```\n")
        elif isinstance(b, Bullets):
            parts.append("\n".join(f"- {item}" for item in b.items) + "\n")
    return "\n".join(parts)


# -- HTML -------------------------------------------------------------------------------------
_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px;font-size:90%}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:92%}
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f0f0f0;text-align:left}
td.r,th.r{text-align:right}
caption{caption-side:top;text-align:left;padding:.3em 0;color:#333}
figure{margin:1em 0 2em}
img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:90%;color:#333;margin-top:.4em}
</style></head>
<body>
<h1>{{ title }}</h1>
{% for b in blocks -%}
{% if b.kind == "heading" -%}
<h{{ b.level }}{% if b.anchor %} id="{{ b.anchor }}"{% endif %}>{{ b.html }}</h{{ b.level }}>
{% elif b.kind == "para" -%}
<p>{{ b.html }}</p>
{% elif b.kind == "table" -%}
<table>{% if b.caption %}<caption>{{ b.caption }}</caption>{% endif %}
<thead><tr>{% for h in b.header %}<th{% if b.align[loop.index0] == "r" %} class="r"{% endif %}>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in b.rows %}<tr>{% for c in row %}<td{% if b.align[loop.index0] == "r" %} class="r"{% endif %}>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% elif b.kind == "figure" -%}
<figure><a href="{{ b.src }}"><img src="{{ b.src }}" alt="{{ b.alt }}"></a>{% if b.caption %}<figcaption>{{ b.caption }}</figcaption>{% endif %}</figure>
{% elif b.kind == "code" -%}
<pre>{{ b.text }}</pre>
{% elif b.kind == "bullets" -%}
<ul>{% for item in b.entries %}<li>{{ item }}</li>{% endfor %}</ul>
{% endif -%}
{% endfor %}</body></html>
"""


def _html_block(b: Block) -> dict[str, Any]:
    if isinstance(b, Heading):
        return {"kind": "heading", "level": max(2, b.level), "anchor": b.anchor, "html": inline_html(b.text)}
    if isinstance(b, Para):
        return {"kind": "para", "html": inline_html(b.text)}
    if isinstance(b, Table):
        width = len(b.header)
        return {"kind": "table", "caption": inline_html(b.caption), "align": (b.align + "l" * width)[:width],
                "header": [inline_html(str(h)) for h in b.header],
                "rows": [[inline_html(str(c)) for c in r] for r in b.rows]}
    if isinstance(b, Figure):
        return {"kind": "figure", "src": html.escape(b.src), "alt": html.escape(b.alt),
                "caption": inline_html(b.caption)}
    if isinstance(b, Code):
        return {"kind": "code", "text": html.escape(b.text.rstrip())}
    return {"kind": "bullets", "entries": [inline_html(i) for i in b.items]}


def to_html(doc: Document) -> str:
    from jinja2 import Environment

    template = Environment(autoescape=False, keep_trailing_newline=True).from_string(_TEMPLATE)
    return template.render(title=html.escape(doc.title), blocks=[_html_block(b) for b in doc.blocks])


def write(doc: Document, md_path: Path, html_path: Path | None = None) -> list[Path]:
    """Write the document as Markdown (and HTML); returns the paths written."""
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(to_markdown(doc), encoding="utf-8")
    paths = [md_path]
    if html_path is not None:
        html_path.write_text(to_html(doc), encoding="utf-8")
        paths.append(html_path)
    return paths


def between_markers(text: str, start: str, end: str, body: str) -> str:
    """``text`` with what stands between the markers ``start`` and ``end`` replaced by
    ``body`` (how the README's generated blocks are kept: task table, method list, verdicts)."""
    if start not in text or end not in text:
        raise ValueError(f"the markers {start} ... {end} are missing")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip(chr(10))}\n{end}{tail}"
