"""Tidy tables of a sweep: ``losses.csv`` and ``samples.csv`` as lists of row dicts.

A table is a CSV file with a header line and one row per observation. Missing values are
empty fields. Writing is atomic (:func:`jaxgap._io.write_text`): a reader sees the old file
or the complete new one. Reading converts every field on its own: an integer literal becomes
an ``int``, any other number (``0.5``, ``1e-3``, ``nan``, ``inf``) a ``float``, an empty
field ``None``, anything else stays a ``str``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jaxgap._io import write_text

__all__ = ["parse_value", "read_csv", "write_csv"]

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|nan|inf|infinity)",
                    re.IGNORECASE)


def parse_value(text: str) -> int | float | str | None:
    """One CSV field as a value: ``""`` -> None, integer literal -> int, number -> float,
    else the string itself.

    Example:
      >>> [parse_value(t) for t in ("", "3", "-2", "0.5", "1e-3", "nan", "mlp")]
      [None, 3, -2, 0.5, 0.001, nan, 'mlp']
    """
    if text == "":
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy scalar
        return _format(value.item())
    return str(value)


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
              columns: Sequence[str]) -> str:
    """Write ``rows`` as a CSV table with the header ``columns``, atomically.

    Args:
      path: destination file (its folder must exist).
      rows: mappings from column name to value; a missing key or None is written as an
        empty field; floats are written exactly (their shortest round-trip text).
      columns: the column names, in order (unique, non-empty).

    Returns:
      The path written.

    Raises:
      ValueError: empty or repeated column names, or a row with a key not in ``columns``.

    Example:
      >>> import tempfile, os
      >>> folder = tempfile.mkdtemp()
      >>> p = write_csv(os.path.join(folder, "t.csv"), [{"a": 1, "b": 0.5}, {"a": 2}], ["a", "b"])
      >>> open(p).read()
      'a,b\\n1,0.5\\n2,\\n'
    """
    columns = list(columns)
    if not columns or any(not isinstance(c, str) or not c for c in columns):
        raise ValueError(f"columns: expected a non-empty list of non-empty names, got {columns!r}")
    if len(set(columns)) != len(columns):
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        raise ValueError(f"columns: expected unique names, got {repeated} more than once")
    known = set(columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for i, row in enumerate(rows):
        extra = [k for k in row if k not in known]
        if extra:
            raise ValueError(f"rows: expected keys among columns {columns}, "
                             f"got {extra} in row {i}")
        writer.writerow([_format(row.get(c)) for c in columns])
    return write_text(path, buf.getvalue())


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a CSV table (as :func:`write_csv` writes it) into row dicts.

    Fields are converted by :func:`parse_value`. An empty file, or a header without rows,
    gives ``[]``. Keys keep the order of the header.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: a row with more or fewer fields than the header.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return []
        out = []
        for line, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(header):
                raise ValueError(f"path: expected {len(header)} fields per row in {path}, "
                                 f"got {len(fields)} on line {line}")
            out.append({k: parse_value(v) for k, v in zip(header, fields, strict=True)})
    return out
