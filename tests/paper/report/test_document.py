"""One document, two outputs: the Markdown and the HTML of a report page come from the same
blocks, so they cannot disagree; HTML tables are real tables and text is escaped."""

from __future__ import annotations

import re

from mlrsnet.paper.report import document as doc


def _page() -> doc.Document:
    return doc.Document("Report <1>", [
        doc.Para("Run `make figures` for **all** of it, see [the index](sub/index.html); 5 < 6 & so on."),
        doc.Heading("Verdicts", anchor="verdicts"),
        doc.Table(["figure", "gap"], [["[Fig. 1](#fig1)", "+1.0 pts"], ["a | b", "-2"]], caption="Per task", align="lr"),
        doc.Figure("fig1/curves.png", "Fig. 1", "Test accuracy per epoch."),
        doc.Bullets(["one `x`", "two"]),
        doc.Code("a <b>\nc"),
    ])


def test_markdown_has_every_block_in_order():
    md = doc.to_markdown(_page())
    assert md == (
        "# Report <1>\n\n"
        "Run `make figures` for **all** of it, see [the index](sub/index.html); 5 < 6 & so on.\n\n"
        "## Verdicts\n\n"
        "Per task\n\n| figure | gap |\n|---|---:|\n| [Fig. 1](#fig1) | +1.0 pts |\n| a \\| b | -2 |\n\n"
        "[![Fig. 1](fig1/curves.png)](fig1/curves.png)\n\nTest accuracy per epoch.\n\n"
        "- one `x`\n- two\n\n"
        "```\na <b>\nc\n```\n")


def test_html_has_the_same_blocks_with_real_tables_links_and_escaped_text():
    html = doc.to_html(_page())
    assert html.startswith("<!DOCTYPE html>") and "<title>Report &lt;1&gt;</title>" in html
    assert ("Run <code>make figures</code> for <b>all</b> of it, see <a href=\"sub/index.html\">the index</a>; "
            "5 &lt; 6 &amp; so on.") in html
    assert '<h2 id="verdicts">Verdicts</h2>' in html
    table = re.search(r"<table>.*?</table>", html, re.S).group(0)
    assert "<caption>Per task</caption>" in table
    assert '<th>figure</th><th class="r">gap</th>' in table
    assert '<td><a href="#fig1">Fig. 1</a></td><td class="r">+1.0 pts</td>' in table
    assert "<td>a | b</td>" in table
    assert '<a href="fig1/curves.png"><img src="fig1/curves.png" alt="Fig. 1"></a>' in html
    assert "<figcaption>Test accuracy per epoch.</figcaption>" in html
    assert "<li>one <code>x</code></li><li>two</li>" in html and "<pre>a &lt;b&gt;\nc</pre>" in html
