"""Reports of a study: ``report.md``, a self-contained ``report.html`` and atomic file writes.

A report is a list of *blocks* (headings, paragraphs, tables, figures) rendered twice: as
Markdown that refers to the PNG files next to it, and as one HTML file with every figure
embedded as a ``data:image/png;base64`` URI (no external file, script or style sheet), so
it can be mailed or archived alone.

In the HTML page a figure may use the whole width of the window (the text keeps a column
of 60 rem) and is shown at its pixel size (one PNG pixel per CSS pixel) where the window is
wide enough, narrower where it is not, but never below the size it was drawn at: its pixel
size x ``96 / dpi`` CSS pixels, the dpi read from the PNG, the CSS inch being 96 pixels. A
7 x 4.6 inch figure saved at 150 dpi (1050 x 690 pixels) thus shows between 1050 and 672
CSS pixels wide, its 10-point labels at 21 down to 13 CSS pixels; a window narrower than
the drawn size scrolls the figure sideways in its own box. ``scripts/check_report_page.py``
renders a page in headless Chromium and checks this.

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
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import IO, NamedTuple

from jaxgap._io import temp_file, write_files  # re-exported: the atomic writers of a report

__all__ = [
    "Block",
    "figure",
    "finite_or_none",
    "heading",
    "paragraph",
    "png_info",
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
body { font-family: system-ui, sans-serif; margin: 2rem 0; padding: 0 1rem;
       line-height: 1.45; color: #222; }
h1, h2, h3, p, figcaption, .table { max-width: 60rem; margin-left: auto; margin-right: auto; }
.table { overflow-x: auto; margin-top: 1rem; margin-bottom: 1rem; }
table { border-collapse: collapse; font-size: 0.92rem; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.55rem; text-align: left;
         vertical-align: top; }
th { background: #f0f0f0; }
figure { margin: 1.5rem 0; }
figure .scroll { overflow-x: auto; }
figure img { display: block; margin: 0 auto; }
figcaption { font-size: 0.9rem; color: #555; margin-top: 0.4rem; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""

CSS_DPI = 96.0
"""CSS pixels per inch: a figure drawn ``w`` inches wide shows ``96 w`` CSS pixels wide."""

_PNG = b"\x89PNG\r\n\x1a\n"


class PngInfo(NamedTuple):
    """What :func:`png_info` reads from a PNG.

    Attributes:
      width, height: pixels.
      dpi: pixels per inch, from the ``pHYs`` chunk (whole pixels per metre, so rounded to
        0.1), or None.
      text: the ``tEXt`` entries ``{keyword: text}``.
    """

    width: int
    height: int
    dpi: float | None
    text: dict[str, str]

    def drawn_size(self) -> tuple[int, int]:
        """``(width, height)`` in CSS pixels at the drawn size: ``96 / dpi`` per pixel (one
        per pixel without a dpi)."""
        f = 1.0 if self.dpi is None else CSS_DPI / self.dpi
        return max(1, round(self.width * f)), max(1, round(self.height * f))


def png_info(data: bytes, name: str = "data") -> PngInfo:
    """Size, resolution and text entries of the PNG ``data`` (its chunks before the image).

    Raises:
      ValueError: ``data`` is not a PNG (``name`` says which).

    Example:
      >>> import io
      >>> from matplotlib.figure import Figure
      >>> buf = io.BytesIO()
      >>> Figure(figsize=(2.0, 1.0)).savefig(buf, format="png", dpi=150)
      >>> info = png_info(buf.getvalue())
      >>> info.width, info.height, round(info.dpi), info.drawn_size()
      (300, 150, 150, (192, 96))
    """
    data = bytes(data)
    if not data.startswith(_PNG) or data[12:16] != b"IHDR":
        raise ValueError(f"images: {name!r} is not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    dpi, text, pos = None, {}, 8
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"pHYs" and len(body) == 9 and body[8] == 1:  # unit 1: the metre
            ppm = struct.unpack(">II", body[:8])
            if ppm[0] > 0:  # whole pixels per metre: 150 dpi is stored as 5906 (150.01)
                dpi = round(ppm[0] * 0.0254, 1)
        elif kind == b"tEXt" and b"\0" in body:
            key, value = body.split(b"\0", 1)
            text[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + size
    return PngInfo(int(width), int(height), dpi, text)


def render_html(blocks: Sequence[Block], images: Mapping[str, bytes], *,
                title: str = "jaxgap report") -> str:
    """One self-contained HTML page of ``blocks``.

    Every figure is embedded as a ``data:image/png;base64`` URI; the page loads nothing
    else (no external image, script or style sheet). A figure shows at its pixel size where
    the window allows, never below its drawn size (:meth:`PngInfo.drawn_size`), in a box
    that scrolls sideways when the window is narrower than that.

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
            body.append(f'<div class="table"><table>\n<thead><tr>{head}</tr></thead>\n'
                        f"<tbody>\n{rows}\n</tbody>\n</table></div>")
        elif b.kind == "figure":
            if b.image not in images:
                raise ValueError(f"images: expected the PNG bytes of {b.image!r}, missing")
            data = bytes(images[b.image])
            info = png_info(data, b.image)
            style = (f"width: 100%; height: auto; max-width: {info.width}px; "
                     f"min-width: {info.drawn_size()[0]}px")
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            cap = f"<figcaption>{_inline_html(b.text)}</figcaption>" if b.text else ""
            body.append(f'<figure><div class="scroll"><img alt="{html.escape(b.text or b.image)}"'
                        f' width="{info.width}" height="{info.height}" style="{style}" '
                        f'src="{uri}"></div>{cap}</figure>')
        else:
            raise ValueError(f"blocks: unknown kind {b.kind!r}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
