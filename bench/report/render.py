"""Writing the report: Markdown and one self-contained HTML page from the same sections.

Each figure is stored once, inside the HTML page (numbered, with an anchor); the Markdown gives its
number and caption with a link to it there, so a committed report does not keep every figure twice.

Anything that comes from a run (names, errors, values) can hold markup: Markdown text and table
cells are escaped, HTML is escaped, so a report cannot be hijacked by what it reports.
"""
from __future__ import annotations

import base64
import html
import re

import pandas as pd

from analyses import Block, Figure

# What could turn text into markup: code, emphasis, raw HTML, table cells, links and images.
MARKDOWN_SPECIAL = re.compile(r"([\\`*<>|]|(?<=\])\(|!(?=\[)|^#)")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}figcaption{color:#555;font-size:13px}
ul.findings li{margin:.3em 0}"""

Section = tuple[str, list[Block]]


def escape_markdown(text: str) -> str:
    """text with the characters that would make markup backslash-escaped, on one line."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def markdown_table(table: pd.DataFrame) -> str:
    cells = table.copy()
    cells.columns = [escape_markdown(column) for column in cells.columns]
    for column in cells.columns:
        if not pd.api.types.is_numeric_dtype(cells[column]):
            cells[column] = cells[column].astype(object).map(lambda value: "—" if value is None or value != value else escape_markdown(value))
    return cells.to_markdown(index=False)


def figure_numbers(sections: list[Section]) -> dict[int, int]:
    """Each figure block's number (1, 2, ...) in reading order, by the block's id."""
    figures = [block for _, blocks in sections for block in blocks if isinstance(block, Figure)]
    return {id(block): number for number, block in enumerate(figures, start=1)}


def markdown(title: str, sections: list[Section], html_name: str = "report.html") -> str:
    lines = [f"# {escape_markdown(title)}"]
    numbers = figure_numbers(sections)
    for heading, blocks in sections:
        lines += ["", f"## {escape_markdown(heading)}"]
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                lines += ["", markdown_table(block)]
            elif isinstance(block, Figure):
                number = numbers[id(block)]
                lines += ["", f"*Figure {number}: {escape_markdown(block.caption)}* ([in {html_name}]({html_name}#figure-{number}))"]
            elif isinstance(block, list):  # a bulleted list of sentences
                lines += [""] + [f"- {escape_markdown(item)}" for item in block]
            else:
                lines += ["", escape_markdown(block)]
    return "\n".join(lines) + "\n"


def html_page(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    numbers = figure_numbers(sections)
    for heading, blocks in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                parts.append(block.to_html(index=False, border=0, na_rep="—", escape=True))
            elif isinstance(block, Figure):
                encoded = base64.b64encode(block.path.read_bytes()).decode()
                number = numbers[id(block)]
                parts.append(f"<figure id='figure-{number}'><img src='data:image/png;base64,{encoded}' alt='{html.escape(block.caption)}'>"
                             f"<figcaption>Figure {number}: {html.escape(block.caption)}</figcaption></figure>")  # fmt: skip
            elif isinstance(block, list):
                parts.append("<ul class='findings'>" + "".join(f"<li>{html.escape(item)}</li>" for item in block) + "</ul>")
            else:
                parts.append(f"<p>{html.escape(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


FIGURE = re.compile(r"<figure id='figure-(\d+)'><img src='data:image/png;base64,([^']+)' alt='([^']*)'>")


def figures_in(page: str) -> dict[str, bytes]:
    """The figures a report's HTML holds, as {caption: PNG bytes}: how to take one out of a report."""
    return {html.unescape(caption): base64.b64decode(data) for _, data, caption in FIGURE.findall(page)}
