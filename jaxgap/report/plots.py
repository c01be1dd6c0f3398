"""Figures of jaxgap results (matplotlib, no global state).

Figures are built on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, not
through ``pyplot``: no backend is selected or changed, no figure is registered globally, and
the functions are safe to call from scripts, notebooks and threads alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
from matplotlib import cm, colormaps, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_gap_curve", "plot_gap_over_training"]

_CURVE_KEYS = ("sigmas", "train", "val", "gap")
_SE_KEYS = ("train_se", "val_se", "gap_se")


def _curve_arrays(curve: Any) -> dict[str, np.ndarray | None]:
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


def _band(ax, x, mean, se, color, *, positive: bool):
    """Shade ``mean +- 2 se`` (clipped above zero on a log axis)."""
    if se is None or not np.any(np.isfinite(se)):
        return
    lo, hi = mean - 2 * se, mean + 2 * se
    if positive:
        lo = np.where(lo > 0, lo, np.nan)
        hi = np.where(hi > 0, hi, np.nan)
    ax.fill_between(x, lo, hi, color=color, alpha=0.25, linewidth=0)


def plot_gap_curve(curve: Any, path: str | os.PathLike | IO[bytes], *,
                   title: str | None = None, loss_scale: str = "linear", dpi: int = 150) -> None:
    r"""Plot a generalization-gap curve and save it as a PNG.

    Two panels over a shared log-sigma axis: the train and validation denoising losses, and
    the gap :math:`L_{val}(\sigma) - L_{train}(\sigma)` (linear scale, with a zero line and a
    marker at its largest value). Shaded bands are :math:`\pm 2` standard
    errors where the curve carries them.

    Args:
      curve: a :class:`~jaxgap.losses.GapCurve`, or a mapping with keys ``sigmas``, ``train``,
        ``val``, ``gap`` (``[K]`` each) and optionally ``train_se``, ``val_se``, ``gap_se``
        (as written by ``GapCurve.to_dict`` or read back from ``gap.json``).
      path: file name or binary file object; written as PNG whatever its extension.
      title: figure title (none by default).
      loss_scale: ``"linear"`` (default: a memorizing denoiser's zero training loss stays
        visible) or ``"log"`` (non-positive values are left out) for the loss panel.
      dpi: resolution.

    Raises:
      ValueError: missing keys, mismatched lengths, non-positive sigmas, or an unknown
        ``loss_scale``.

    Example:
      >>> plot_gap_curve(gap_curve(D, ds.train, ds.val, sigmas, key), "gap.png",
      ...                title="digits / empirical")
    """
    if loss_scale not in ("linear", "log"):
        raise ValueError(f"loss_scale: expected 'linear' or 'log', got {loss_scale!r}")
    log_y = loss_scale == "log"
    c = _curve_arrays(curve)
    s = c["sigmas"]
    order = np.argsort(s)
    c = {k: (None if a is None else a[order]) for k, a in c.items()}
    s = c["sigmas"]

    fig = Figure(figsize=(7.0, 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_gap = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))

    for name, color, label in (("train", "C0", "train"), ("val", "C1", "validation")):
        y = c[name]
        ax_loss.plot(s, np.where(y > 0, y, np.nan) if log_y else y, color=color, marker=".",
                     label=label)
        _band(ax_loss, s, y, c[f"{name}_se"], color, positive=log_y)
    ax_loss.set_xscale("log")
    ax_loss.set_yscale(loss_scale)
    ax_loss.set_ylabel(r"denoising loss  $E|D(x_\sigma) - x_0|^2 / d$")
    ax_loss.grid(True, which="major", alpha=0.3)
    ax_loss.legend(loc="best")

    gap = c["gap"]
    ax_gap.axhline(0.0, color="0.5", linewidth=0.8)
    ax_gap.plot(s, gap, color="C3", marker=".", label="gap = val - train")
    _band(ax_gap, s, gap, c["gap_se"], "C3", positive=False)
    if np.any(np.isfinite(gap)):
        k = int(np.nanargmax(gap))
        ax_gap.axvline(s[k], color="C3", linestyle=":", linewidth=1.0)
        ax_gap.annotate(f"max at $\\sigma$ = {s[k]:.3g}", (s[k], gap[k]),
                        xytext=(6, -12), textcoords="offset points", fontsize=9)
    ax_gap.set_xscale("log")
    ax_gap.set_xlabel(r"noise level $\sigma$")
    ax_gap.set_ylabel(r"$L_{val} - L_{train}$")
    ax_gap.grid(True, which="major", alpha=0.3)
    ax_gap.legend(loc="best")
    if title:
        fig.suptitle(title)
    try:
        fig.savefig(path, format="png", dpi=dpi)
    finally:
        fig.clear()  # drop artists now; the figure is not registered with pyplot


def plot_gap_over_training(rows, path: str | os.PathLike | IO[bytes], *,
                           title: str | None = None, ema: bool = True, dpi: int = 150) -> None:
    r"""Gap curves ``L_val(sigma) - L_train(sigma)`` of a network, coloured by training step.

    Args:
      rows: evaluation rows of ``metrics.jsonl`` (:func:`jaxgap.train.read_metrics`), each
        with ``step``, ``sigmas`` and ``gap`` / ``ema_gap`` (``[K]`` lists).
      path: PNG file name or binary file object.
      title: figure title.
      ema: plot the EMA weights' gaps (default) or the raw weights'.
      dpi: resolution.
    """
    if not rows:
        raise ValueError("rows: expected at least one evaluation row, got none")
    key = "ema_gap" if ema else "gap"
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    steps = np.array([r["step"] for r in rows], dtype=np.float64)
    norm = (steps - steps.min()) / max(steps.max() - steps.min(), 1.0)
    cmap = colormaps["viridis"]
    for r, u in zip(rows, norm, strict=True):
        ax.plot(np.asarray(r["sigmas"]), np.asarray(r[key]), color=cmap(u), linewidth=1.2)
    last = rows[-1]
    k = int(np.nanargmax(np.asarray(last[key])))
    ax.axvline(last["sigmas"][k], color="k", linestyle=":", linewidth=1.0)
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(r"noise level $\sigma$")
    ax.set_ylabel(r"$L_{val} - L_{train}$" + (" (EMA)" if ema else ""))
    ax.grid(True, which="major", alpha=0.3)
    mappable = cm.ScalarMappable(norm=colors.Normalize(steps.min(), steps.max()), cmap=cmap)
    fig.colorbar(mappable, ax=ax, label="training step")
    if title:
        fig.suptitle(title)
    try:
        fig.savefig(path, format="png", dpi=dpi)
    finally:
        fig.clear()
