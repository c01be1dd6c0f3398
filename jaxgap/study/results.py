"""One typed result per stage of the study, each written as ``<stage>.json``.

Every result is a frozen dataclass with ``to_dict`` / ``from_dict`` (plain JSON values)
and ``to_json`` / ``from_json``; a stage's JSON file is its result, so a resumed run reads
the finished stages back as the same types. The documents keep jaxgap 0.1's layout, so a
run started by 0.1 resumes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from jaxgap.losses import curve_peak
from jaxgap.report.report import finite_or_none

__all__ = ["ClosedFormResult", "CurveSummary", "StageResult", "jsonable"]


def jsonable(x):
    """Plain JSON values of nested dicts, lists, tuples, NumPy and JAX arrays and scalars."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "__array__") and not isinstance(x, (float, int)):
        a = np.asarray(x)
        return a.astype(np.float64).tolist() if a.dtype.kind == "f" else a.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


class CurveSummary(NamedTuple):
    """The key numbers of a gap curve.

    Attributes:
      peak_sigma: the grid sigma of the largest gap.
      gap_max: the largest gap.
      gap_max_se: its standard error.
      gap_at_sigma_min: the gap at the smallest sigma.
      gap_at_sigma_min_se: its standard error.
    """

    peak_sigma: float
    gap_max: float
    gap_max_se: float
    gap_at_sigma_min: float
    gap_at_sigma_min_se: float

    @classmethod
    def of(cls, sigmas, gap, gap_se) -> CurveSummary:
        """The summary of ``[K]`` arrays (any order of ``sigmas``).

        Example:
          >>> s = CurveSummary.of([1.0, 0.1, 10.0], [2.0, 0.5, 1.0], [0.1, 0.2, 0.3])
          >>> s.peak_sigma, s.gap_max_se, s.gap_at_sigma_min
          (1.0, 0.1, 0.5)
        """
        s, g, se = (np.asarray(a, np.float64) for a in (sigmas, gap, gap_se))
        order = np.argsort(s)
        s, g, se = s[order], g[order], se[order]
        k = curve_peak(s, g, return_index=True)[2]
        return cls(float(s[k]), float(g[k]), float(se[k]), float(g[0]), float(se[0]))


@dataclass(frozen=True)
class _Result:
    """``to_json`` / ``from_json`` of a stage result from its ``to_dict`` / ``from_dict``
    (by default: the fields by name, in order, and last the stage's wall time ``seconds``,
    set by the pipeline once the stage has run)."""

    seconds: float | None = dataclasses.field(default=None, kw_only=True)

    def to_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name != "seconds"}, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, doc: dict) -> Any:
        return cls(**{f.name: doc.get(f.name) for f in dataclasses.fields(cls)})

    def to_json(self) -> str:
        """Strict JSON (non-finite floats as null)."""
        return json.dumps(finite_or_none(self.to_dict()), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class StageResult(_Result):
    """A stage's result as one JSON document (``doc``: plain values)."""

    doc: dict


@dataclass(frozen=True)
class ClosedFormResult(_Result):
    """Stage 1: gap curves of the closed-form denoisers.

    Attributes:
      curves: ``{name: GapCurve.to_dict()}`` for ``empirical`` and ``gaussian``.
      sigma_min: the grid's smallest sigma.
      summaries: ``{name: CurveSummary}`` (stored as top-level keys).
    """

    curves: dict
    sigma_min: float
    summaries: dict

    def to_dict(self) -> dict:
        return {"curves": self.curves, "sigma_min": self.sigma_min,
                **{name: s._asdict() for name, s in self.summaries.items()},
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, doc: dict) -> ClosedFormResult:
        return cls(doc["curves"], doc["sigma_min"],
                   {name: CurveSummary(**doc[name]) for name in doc["curves"]},
                   seconds=doc.get("seconds"))
