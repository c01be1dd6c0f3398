"""Pieces every figure of :mod:`jaxgap.report` shares: a bare Agg figure, curve fields as
arrays, error bands, the marked peak of a gap curve, and saving as PNG.

The largest gap of a curve is called and drawn as a *peak* (a filled star) only where it
is significant: larger than :data:`PEAK_SE` standard errors of the gap there. Otherwise it
is drawn as an open circle, "largest gap, not significant". Saved PNGs carry the smallest
font size of their text (points) as the tEXt entry :data:`FONT_KEY`, so a page that shows
them can check that their labels stay readable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from jaxgap.losses import curve_peak

__all__ = ["FONT_KEY", "PEAK_SE", "Peak", "band", "curve_arrays", "mark_peak", "new_figure",
           "peak", "peak_handles", "save", "smallest_font"]

PEAK_SE = 2.0
"""A largest gap is a peak when it exceeds this many standard errors (gap / se > 2)."""

FONT_KEY = "jaxgap:smallest-font-pt"
"""PNG tEXt keyword of the smallest font size (points) of a saved figure's text."""

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


class Peak(NamedTuple):
    """The largest value of a gap curve (:func:`jaxgap.losses.curve_peak`).

    Attributes:
      sigma: where it lies.
      gap: the gap there.
      z: ``gap / se`` there (None: no standard error; ``inf`` for ``se = 0 < gap``).
    """

    sigma: float
    gap: float
    z: float | None = None

    @property
    def significant(self) -> bool:
        """A peak: the gap exceeds :data:`PEAK_SE` standard errors."""
        return self.z is not None and self.z > PEAK_SE

    def label(self) -> str:
        """``"peak (4.3 se)"`` or ``"largest gap, not significant (1.6 se < 2)"``."""
        if self.z is None:
            return "largest gap (no standard error)"
        z = "inf" if math.isinf(self.z) else f"{self.z:.2g}"
        if self.significant:
            return f"peak ({z} se)"
        return f"largest gap, not significant ({z} se < {PEAK_SE:g})"


def peak(sigmas, gap, gap_se=None) -> Peak | None:
    """The :class:`Peak` of a curve (:func:`jaxgap.losses.curve_peak`), its ``gap / se``
    from ``gap_se`` (``[K]``, optional), or None when no value is finite (nothing to mark)."""
    gap = np.asarray(gap, np.float64)
    if not np.any(np.isfinite(gap)):
        return None
    s, g, k = curve_peak(sigmas, gap, return_index=True)
    z = None
    if gap_se is not None:
        se = float(np.asarray(gap_se, np.float64)[k])
        if se > 0 and math.isfinite(se):
            z = g / se
        elif se == 0:
            z = math.inf if g > 0 else -math.inf if g < 0 else 0.0
    return Peak(s, g, z)


_STAR = dict(marker="*", markersize=12, markeredgecolor="k", linestyle="none")
_OPEN = dict(marker="o", markersize=8, markerfacecolor="none", markeredgewidth=1.6,
             linestyle="none")


def mark_peak(ax, top: Peak | None, color) -> None:
    """A filled star on a significant peak, an open circle on any other largest gap."""
    if top is not None:
        style = _STAR if top.significant else _OPEN
        ax.plot([top.sigma], [top.gap], color=color, **style)


def peak_handles(tops: Iterable[Peak | None]) -> list[Line2D]:
    """Legend entries that explain the markers :func:`mark_peak` drew for ``tops``."""
    tops = [t for t in tops if t is not None]
    out = []
    if any(t.significant for t in tops):
        out.append(Line2D([], [], color="0.4", **_STAR,
                          label=f"peak: largest gap > {PEAK_SE:g} se"))
    if any(t.z is not None and not t.significant for t in tops):
        out.append(Line2D([], [], color="0.4", **_OPEN,
                          label=f"largest gap, not significant (< {PEAK_SE:g} se)"))
    if any(t.z is None for t in tops):
        out.append(Line2D([], [], color="0.4", **_OPEN, label="largest gap (no se)"))
    return out


def smallest_font(fig: Figure) -> float | None:
    """The smallest font size (points) of the visible, non-empty text of ``fig`` (laid out
    first: tick labels exist only once drawn); None when it has no text."""
    fig.draw_without_rendering()
    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    return float(min(sizes)) if sizes else None


def save(fig: Figure, path, *, title: str | None, dpi: int, fontsize=None) -> None:
    """Title, write as PNG, and drop the artists (the figure is not registered anywhere)."""
    if title:
        fig.suptitle(title, fontsize=fontsize)
    try:
        small = smallest_font(fig)
        meta = {} if small is None else {FONT_KEY: f"{small:g}"}
        fig.savefig(path, format="png", dpi=dpi, metadata=meta)
    finally:
        fig.clear()


def band(ax, x, mean, se, color, *, positive: bool, width: float = 2.0, alpha: float = 0.25):
    """Shade ``mean +- width x se`` (clipped above zero on a log axis)."""
    if se is None or not np.any(np.isfinite(se)):
        return
    lo, hi = mean - width * se, mean + width * se
    if positive:
        lo = np.where(lo > 0, lo, np.nan)
        hi = np.where(hi > 0, hi, np.nan)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, linewidth=0)
