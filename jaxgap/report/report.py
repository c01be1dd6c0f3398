"""Reports of a study: ``report.md``, a self-contained ``report.html`` and atomic file writes.

A report is a list of *blocks* (headings, paragraphs, tables, figures) rendered twice: as
Markdown that refers to the PNG files next to it, and as one HTML file with every figure
embedded as a ``data:image/png;base64`` URI (no external file, script or style sheet), so
it can be mailed or archived alone.

Files are written atomically: every file is produced under a hidden temporary name in the
target folder, flushed to disk, and only then renamed into place (:func:`write_files`, the
writer of :mod:`jaxgap._io`, re-exported here with :func:`temp_file`), so a killed or failed
run never leaves a truncated result under a final name.

Example:
    >>> import tempfile
    >>> blocks = [heading("Results"), paragraph("The gap grows."),
    ...           table(["step", "gap"], [["500", "0.04"], ["3000", "0.09"]])]
    >>> print(render_markdown(blocks))
    ## Results
    <BLANKLINE>
    The gap grows.
    <BLANKLINE>
    | step | gap |
    | --- | --- |
    | 500 | 0.04 |
    | 3000 | 0.09 |
    <BLANKLINE>
    >>> with tempfile.TemporaryDirectory() as out:
    ...     paths = write_files(out, {"report.md": text_writer(render_markdown(blocks)),
    ...                               "report.html": text_writer(render_html(blocks, {}))})
    ...     sorted(os.listdir(out))
    ['report.html', 'report.md']
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import IO, NamedTuple

from jaxgap._io import temp_file, write_files  # re-exported: the atomic writers of a report

__all__ = [
    "Block",
    "figure",
    "finite_or_none",
    "heading",
    "paragraph",
    "render_html",
    "render_markdown",
    "table",
    "temp_file",
    "text_writer",
    "write_files",
]


def finite_or_none(value):
    """``value`` with every non-finite float (in nested lists, tuples and dicts) replaced
    by None, so ``json.dumps(..., allow_nan=False)`` writes strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    return value


def text_writer(text: str) -> Callable[[IO[bytes]], None]:
    """A writer for :func:`write_files` that writes ``text`` as UTF-8."""
    data = text.encode("utf-8")
    return lambda f: f.write(data)


# ------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------

class Block(NamedTuple):
    """One element of a report.

    Attributes:
      kind: ``"heading"``, ``"paragraph"``, ``"table"`` or ``"figure"``.
      text: heading text, paragraph text (inline ``code`` in backticks), or figure caption.
      level: heading level (1-3).
      header: table column names.
      rows: table rows (strings).
      image: figure file name (a PNG next to ``report.md``).
    """

    kind: str
    text: str = ""
    level: int = 1
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    image: str = ""


def heading(text: str, level: int = 2) -> Block:
    """A heading of ``level`` 1-3."""
    if level not in (1, 2, 3):
        raise ValueError(f"level: expected 1, 2 or 3, got {level!r}")
    return Block("heading", text=str(text), level=level)


def paragraph(text: str) -> Block:
    """A paragraph; text in backticks is set as code."""
    return Block("paragraph", text=str(text))


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> Block:
    """A table; every row must have one cell per column of ``header``."""
    header = tuple(str(h) for h in header)
    if not header:
        raise ValueError("header: expected at least one column, got none")
    out = []
    for i, row in enumerate(rows):
        cells = tuple(str(c) for c in row)
        if len(cells) != len(header):
            raise ValueError(f"rows: expected {len(header)} cells per row, got {len(cells)} "
                             f"in row {i}")
        out.append(cells)
    return Block("table", header=header, rows=tuple(out))


def figure(image: str, caption: str = "") -> Block:
    """A figure: the PNG ``image`` (a file name next to the report) with a caption."""
    if not image or os.sep in image:
        raise ValueError(f"image: expected a plain PNG file name, got {image!r}")
    return Block("figure", text=str(caption), image=image)


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block]) -> str:
    """Markdown text of ``blocks``; figures refer to their PNG files by relative name."""
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append("#" * b.level + " " + b.text)
        elif b.kind == "paragraph":
            parts.append(b.text)
        elif b.kind == "table":
            lines = ["| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                     "| " + " | ".join("---" for _ in b.header) + " |"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            parts.append("\n".join(lines))
        elif b.kind == "figure":
            parts.append(f"![{b.text}]({b.image})" + (f"\n\n*{b.text}*" if b.text else ""))
        else:
            raise ValueError(f"blocks: unknown kind {b.kind!r}")
    return "\n\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    """Escape ``text``; backtick spans become ``<code>``."""
    pieces = text.split("`")
    out = []
    for i, p in enumerate(pieces):
        esc = html.escape(p)
        out.append(f"<code>{esc}</code>" if i % 2 == 1 and i < len(pieces) - 1 else esc)
    if len(pieces) % 2 == 0:  # an unmatched backtick: keep it literally
        out[-1] = "`" + out[-1]
    return "".join(out)


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.55rem; text-align: left;
         vertical-align: top; }
th { background: #f0f0f0; }
img { max-width: 100%; height: auto; }
figure { margin: 1.2rem 0; }
figcaption { font-size: 0.9rem; color: #555; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def render_html(blocks: Sequence[Block], images: Mapping[str, bytes], *,
                title: str = "jaxgap report") -> str:
    """One self-contained HTML page of ``blocks``.

    Every figure is embedded as a ``data:image/png;base64`` URI; the page loads nothing
    else (no external image, script or style sheet).

    Args:
      blocks: the report.
      images: ``{file name: PNG bytes}`` for every figure block.
      title: the page title.

    Raises:
      ValueError: a figure block names an image missing from ``images``, or an image is not
        a PNG.
    """
    body = []
    for b in blocks:
        if b.kind == "heading":
            body.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif b.kind == "paragraph":
            body.append(f"<p>{_inline_html(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = "\n".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row)
                             + "</tr>" for row in b.rows)
            body.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n"
                        "</tbody>\n</table>")
        elif b.kind == "figure":
            if b.image not in images:
                raise ValueError(f"images: expected the PNG bytes of {b.image!r}, missing")
            data = bytes(images[b.image])
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                raise ValueError(f"images: {b.image!r} is not a PNG")
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            cap = f"<figcaption>{_inline_html(b.text)}</figcaption>" if b.text else ""
            body.append(f'<figure><img alt="{html.escape(b.text or b.image)}" '
                        f'src="{uri}">{cap}</figure>')
        else:
            raise ValueError(f"blocks: unknown kind {b.kind!r}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
