"""Pieces every figure of :mod:`jaxgap.report` shares: a bare Agg figure, curve fields as
arrays, error bands, the marked peak of a gap curve, and saving as PNG."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxgap.losses import curve_peak

__all__ = ["band", "curve_arrays", "new_figure", "peak", "save"]

_CURVE_KEYS = ("sigmas", "train", "val", "gap")
_SE_KEYS = ("train_se", "val_se", "gap_se")


def new_figure(size: tuple[float, float]) -> Figure:
    """A constrained-layout figure on its own Agg canvas (no pyplot, no global state)."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def curve_arrays(curve: Any) -> dict[str, np.ndarray | None]:
    """The fields of a :class:`~jaxgap.losses.GapCurve` (or its ``to_dict``) as float arrays."""
    if hasattr(curve, "_asdict"):
        curve = curve._asdict()
    if not isinstance(curve, Mapping):
        raise ValueError(f"curve: expected a GapCurve or a mapping with keys {list(_CURVE_KEYS)}, "
                         f"got {type(curve).__name__}")
    missing = [k for k in _CURVE_KEYS if k not in curve]
    if missing:
        raise ValueError(f"curve: expected keys {list(_CURVE_KEYS)}, missing {missing}")
    out: dict[str, np.ndarray | None] = {}
    for k in _CURVE_KEYS + _SE_KEYS:
        v = curve.get(k)
        if v is None:
            out[k] = None
            continue
        a = np.asarray(v, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"curve: expected {k!r} of shape [K], got shape {list(a.shape)}")
        out[k] = a
    num = out["sigmas"].shape[0]
    if num == 0:
        raise ValueError("curve: expected at least one sigma, got an empty grid")
    for k, a in out.items():
        if a is not None and a.shape[0] != num:
            raise ValueError(f"curve: expected {k!r} of shape [{num}] like 'sigmas', "
                             f"got [{a.shape[0]}]")
    if not np.all(out["sigmas"] > 0):
        raise ValueError("curve: expected 'sigmas' > 0 (plotted on a log axis)")
    return out


def peak(sigmas, gap) -> tuple[float, float] | None:
    """``(sigma, gap)`` at the curve's peak (:func:`jaxgap.losses.curve_peak`), or None when
    no value is finite (nothing to mark)."""
    gap = np.asarray(gap, np.float64)
    if not np.any(np.isfinite(gap)):
        return None
    return curve_peak(sigmas, gap)


def save(fig: Figure, path, *, title: str | None, dpi: int, fontsize=None) -> None:
    """Title, write as PNG, and drop the artists (the figure is not registered anywhere)."""
    if title:
        fig.suptitle(title, fontsize=fontsize)
    try:
        fig.savefig(path, format="png", dpi=dpi)
    finally:
        fig.clear()


def band(ax, x, mean, se, color, *, positive: bool):
    """Shade ``mean +- 2 se`` (clipped above zero on a log axis)."""
    if se is None or not np.any(np.isfinite(se)):
        return
    lo, hi = mean - 2 * se, mean + 2 * se
    if positive:
        lo = np.where(lo > 0, lo, np.nan)
        hi = np.where(hi > 0, hi, np.nan)
    ax.fill_between(x, lo, hi, color=color, alpha=0.25, linewidth=0)
