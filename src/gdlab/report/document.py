"""What a report says, decided once and rendered twice (``report.md`` and ``report.html``).

A document is a title, a lead and sections of blocks: paragraphs, bullet
lists, tables and images (PNG bytes, written under ``plots/`` for the
markdown and embedded as ``data:`` URIs in the HTML).
"""

import base64
import html
import io
import re
from dataclasses import dataclass, field

from matplotlib.figure import Figure


@dataclass
class Paragraph:
    text: str  # `code` and **bold** are the only markup


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    highlight: int | None = None  # a row to mark (the selected configuration)
    folded: str | None = None  # in HTML, folded under this summary line (long tables)


@dataclass
class Image:
    file: str  # name under plots/
    caption: str
    png: bytes


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)


@dataclass
class Document:
    title: str
    lead: list
    sections: list[Section]
    refresh_seconds: int | None = None  # an unfinished study's page reloads itself while it runs

    def images(self) -> list[Image]:
        return [block for section in [Section("", self.lead), *self.sections] for block in section.blocks
                if isinstance(block, Image)]


def png(figure: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    # No date in the file: the same figure gives the same bytes.
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def to_markdown(document: Document) -> str:
    lines = [f"# {document.title}", ""]
    for block in document.lead:
        lines += _markdown_block(block)
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _markdown_block(block)
    return "\n".join(lines)


def _markdown_block(block) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text, ""]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items] + [""]
    if isinstance(block, Table):
        rows = [" | ".join(cell.replace("|", "\\|") for cell in row) for row in block.rows]
        header = " | ".join(cell.replace("|", "\\|") for cell in block.header)
        return [f"| {header} |", "|" + "---|" * len(block.header),
                *[f"| {row} |" for row in rows], ""]
    if isinstance(block, Image):
        return [f"![{block.file.removesuffix('.png')}](plots/{block.file})", "", f"*{block.caption}*", ""]
    raise TypeError(f"unknown block {block!r}")


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1.5rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; font-size: .9rem; margin: .6rem 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .25rem .7rem; text-align: left; white-space: nowrap; }
th { background: #f4f4f6; } tr.highlight td { background: #e6f4e6; font-weight: 600; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
code { background: #f4f4f6; padding: 0 .25rem; border-radius: 3px; }
.lead { font-size: 1.02rem; } details summary { cursor: pointer; color: #333; }
"""


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def to_html(document: Document) -> str:
    head = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f"<title>{html.escape(document.title)}</title>"]
    if document.refresh_seconds:
        head.append(f'<meta http-equiv="refresh" content="{document.refresh_seconds}">')
    head += [f"<style>{STYLE}</style>", "</head>", "<body>", f"<h1>{html.escape(document.title)}</h1>",
             '<div class="lead">']
    body = [part for block in document.lead for part in _html_block(block)] + ["</div>"]
    for section in document.sections:
        anchor = re.sub(r"[^a-z0-9]+", "-", section.title.lower()).strip("-")
        body.append(f'<h2 id="{anchor}">{html.escape(section.title)}</h2>')
        body += [part for block in section.blocks for part in _html_block(block)]
    return "\n".join(head + body + ["</body>", "</html>", ""])


def _html_block(block) -> list[str]:
    if isinstance(block, Paragraph):
        return [f"<p>{_inline(block.text)}</p>"]
    if isinstance(block, Bullets):
        return ["<ul>", *[f"<li>{_inline(item)}</li>" for item in block.items], "</ul>"]
    if isinstance(block, Table):
        parts = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(cell)}</th>" for cell in block.header)
                 + "</tr></thead>", "<tbody>"]
        for index, row in enumerate(block.rows):
            marked = ' class="highlight"' if index == block.highlight else ""
            parts.append(f"<tr{marked}>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
        parts += ["</tbody>", "</table>"]
        if block.folded:
            parts = [f"<details><summary>{html.escape(block.folded)}</summary>", *parts, "</details>"]
        return parts
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        return [f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.file)}">',
                f"<figcaption>{_inline(block.caption)}</figcaption></figure>"]
    raise TypeError(f"unknown block {block!r}")
