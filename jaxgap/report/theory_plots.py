"""Figures of the position-error toy model (:mod:`jaxgap.theory.evidence` results).

Like :mod:`jaxgap.report.plots`: a bare :class:`~matplotlib.figure.Figure` rendered by the Agg
canvas (no pyplot, no global state), written as PNG to a path or a binary file object.
"""

from __future__ import annotations

import os
from typing import IO, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm

from jaxgap.report._figure import (
    band,
    curve_arrays,
    mark_peak,
    new_figure,
    peak,
    peak_handles,
    save,
)

__all__ = [
    "plot_delta_fit",
    "plot_delta_sweep",
    "plot_first_order",
    "plot_flow_fields",
    "plot_gap_vs_train_size",
]

Path = str | os.PathLike | IO[bytes]


def _need(obj: Any, name: str, fields: tuple[str, ...], what: str):
    missing = [f for f in fields if not hasattr(obj, f)]
    if missing:
        raise ValueError(f"{name}: expected {what} (fields {list(fields)}), got "
                         f"{type(obj).__name__} missing {missing}")


def _gap_axis(ax):
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(r"noise level $\sigma$")
    ax.set_ylabel(r"gap $L_{val} - L_{train}$")
    ax.grid(True, which="major", alpha=0.3)


def _curves_by(ax, curves, values, label_fmt: str, cmap_name: str = "viridis"):
    """Gap curves coloured by a parameter (delta or N), their largest gaps marked (a star
    where significant, :func:`~jaxgap.report._figure.mark_peak`); returns the legend
    entries of the markers."""
    cmap = colormaps[cmap_name]
    n = len(curves)
    tops = []
    for i, (curve, v) in enumerate(zip(curves, values, strict=True)):
        c = curve_arrays(curve)
        order = np.argsort(c["sigmas"])
        s, g = c["sigmas"][order], c["gap"][order]
        color = cmap(i / max(n - 1, 1) * 0.9)
        ax.plot(s, g, color=color, marker=".", markersize=3, label=label_fmt.format(v))
        if c["gap_se"] is not None:
            band(ax, s, g, c["gap_se"][order], color, positive=False)
        se = None if c["gap_se"] is None else c["gap_se"][order]
        tops.append(peak(s, g, se))
        mark_peak(ax, tops[-1], color)
    return peak_handles(tops)


def plot_delta_sweep(sweep: Any, path: Path, *, title: str | None = None,
                     dpi: int = 150) -> None:
    r"""Gap curves per ``delta``, peak location and height, and memorized fraction.

    Three panels: the gap curves of ``PositionError(train, delta)`` (largest gaps marked: a
    star where it is a peak, larger than 2 standard errors; bands ``+-2`` standard errors);
    the peak sigma and peak height against ``delta``; the memorized fraction of samples
    against ``delta`` (error bars ``+-2`` bootstrap standard errors).
    ``delta = 0`` is drawn at the left edge of the log axis.

    Args:
      sweep: a :class:`~jaxgap.theory.evidence.DeltaSweep`.
      path: PNG file name or binary file object.
      title: figure title.
      dpi: resolution.
    """
    _need(sweep, "sweep", ("deltas", "curves", "peak_sigma", "peak_gap", "memorized",
                           "memorized_se"), "a DeltaSweep")
    deltas = np.asarray(sweep.deltas, np.float64)
    if len(sweep.curves) != deltas.shape[0] or deltas.shape[0] == 0:
        raise ValueError(f"sweep: expected one curve per delta, got {len(sweep.curves)} curves "
                         f"for {deltas.shape[0]} deltas")
    fig = new_figure((13.0, 4.2))
    ax_c, ax_p, ax_m = fig.subplots(1, 3)
    marks = _curves_by(ax_c, sweep.curves, deltas, r"$\delta$ = {:.3g}")
    _gap_axis(ax_c)
    ax_c.legend(handles=ax_c.get_legend_handles_labels()[0] + marks, fontsize=8, loc="best")

    pos = deltas[deltas > 0]
    zero_at = pos.min() / 2 if pos.size else 1.0
    x = np.where(deltas > 0, deltas, zero_at)
    order = np.argsort(x)
    ax_p.plot(x[order], np.asarray(sweep.peak_sigma)[order], "o-", color="C0",
              label=r"peak $\sigma$")
    ax_p.plot(x[order], x[order], ":", color="0.5", label=r"$\sigma = \delta$")
    ax_p.set_xscale("log")
    ax_p.set_yscale("log")
    ax_p.set_xlabel(r"position error $\delta$ (0 drawn at the left edge)")
    ax_p.set_ylabel(r"peak $\sigma$", color="C0")
    ax_p.grid(True, which="major", alpha=0.3)
    ax_h = ax_p.twinx()
    ax_h.plot(x[order], np.asarray(sweep.peak_gap)[order], "s--", color="C3", label="peak gap")
    ax_h.set_ylabel("peak gap", color="C3")
    ax_p.legend(loc="upper left", fontsize=8)

    mem = np.asarray(sweep.memorized, np.float64)
    se = np.asarray(sweep.memorized_se, np.float64)
    ax_m.errorbar(x[order], mem[order], yerr=2 * se[order], fmt="o-", color="C2", capsize=3)
    ax_m.set_xscale("log")
    ax_m.set_ylim(-0.05, 1.05)
    ax_m.set_xlabel(r"position error $\delta$ (0 drawn at the left edge)")
    ax_m.set_ylabel("memorized fraction of samples (1/3 rule)")
    ax_m.grid(True, which="major", alpha=0.3)
    save(fig, path, title=title, dpi=dpi)


def plot_delta_fit(target: Any, fit: Any, path: Path, *, title: str | None = None,
                   label: str = "trained network", dpi: int = 150) -> None:
    r"""A target gap curve (e.g. a trained network's) and the fitted toy model's, log sigma.

    Args:
      target: a :class:`~jaxgap.losses.GapCurve` or an object/mapping with ``sigmas`` and
        ``gap`` (``[K]``), optionally ``gap_se``.
      fit: a :class:`~jaxgap.theory.evidence.DeltaFit`.
      path: PNG file name or binary file object.
      title: figure title.
      label: legend label of the target.
      dpi: resolution.
    """
    _need(fit, "fit", ("delta", "sse", "curve", "deltas", "sse_values"), "a DeltaFit")
    if hasattr(target, "_asdict"):
        target = target._asdict()
    elif not isinstance(target, dict):
        target = {k: getattr(target, k, None) for k in ("sigmas", "gap", "gap_se")}
    if target.get("sigmas") is None or target.get("gap") is None:
        raise ValueError("target: expected 'sigmas' and 'gap'")
    s = np.asarray(target["sigmas"], np.float64)
    g = np.asarray(target["gap"], np.float64)
    if s.shape != g.shape or s.ndim != 1:
        raise ValueError(f"target: expected 'sigmas' and 'gap' of one shape [K], got "
                         f"{list(s.shape)} and {list(g.shape)}")
    fig = new_figure((11.0, 4.2))
    ax, ax_s = fig.subplots(1, 2, width_ratios=(3, 2))
    ax.plot(s, g, "o-", color="C0", markersize=4, label=label)
    se = target.get("gap_se")
    if se is not None:
        band(ax, s, g, np.asarray(se, np.float64), "C0", positive=False)
    c = curve_arrays(fit.curve)
    ax.plot(c["sigmas"], c["gap"], "s--", color="C3", markersize=4,
            label=rf"toy model, fitted $\delta$ = {fit.delta:.3g}")
    _gap_axis(ax)
    ax.legend(loc="best")
    d = np.asarray(fit.deltas, np.float64)
    v = np.asarray(fit.sse_values, np.float64)
    pos = d > 0
    ax_s.plot(d[pos], v[pos], "o-", color="C3", markersize=4)
    if np.any(~pos):
        ax_s.axhline(v[~pos][0], color="0.5", linestyle=":", label=r"$\delta = 0$")
        ax_s.legend(loc="best")
    ax_s.axvline(fit.delta, color="k", linestyle=":", linewidth=1.0)
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    ax_s.set_xlabel(r"$\delta$")
    ax_s.set_ylabel(r"weighted mean squared gap difference")
    ax_s.grid(True, which="major", alpha=0.3)
    save(fig, path, title=title, dpi=dpi)


def plot_gap_vs_train_size(result: Any, path: Path, *, title: str | None = None,
                           dpi: int = 150) -> None:
    r"""Gap curves at fixed ``delta`` for nested training subsets, and their peaks vs ``N``.

    Args:
      result: a :class:`~jaxgap.theory.evidence.TrainSizeSweep`.
      path: PNG file name or binary file object.
      title: figure title.
      dpi: resolution.
    """
    _need(result, "result", ("sizes", "delta", "curves", "peak_sigma", "peak_gap"),
          "a TrainSizeSweep")
    sizes = np.asarray(result.sizes)
    if len(result.curves) != sizes.shape[0] or sizes.shape[0] == 0:
        raise ValueError(f"result: expected one curve per size, got {len(result.curves)} "
                         f"curves for {sizes.shape[0]} sizes")
    fig = new_figure((11.0, 4.2))
    ax, ax_p = fig.subplots(1, 2, width_ratios=(3, 2))
    marks = _curves_by(ax, result.curves, sizes, "N = {}", cmap_name="plasma")
    _gap_axis(ax)
    ax.set_title(rf"$\delta$ = {float(result.delta):.3g}", fontsize=10)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + marks, fontsize=8, loc="best")
    ax_p.plot(sizes, np.asarray(result.peak_gap), "s-", color="C3")
    ax_p.set_xscale("log")
    ax_p.set_xlabel("training-set size N")
    ax_p.set_ylabel("peak gap", color="C3")
    ax_p.grid(True, which="major", alpha=0.3)
    ax_s = ax_p.twinx()
    ax_s.plot(sizes, np.asarray(result.peak_sigma), "o--", color="C0")
    ax_s.set_yscale("log")
    ax_s.set_ylabel(r"peak $\sigma$", color="C0")
    save(fig, path, title=title, dpi=dpi)


def plot_flow_fields(fields: Any, path: Path, *, title: str | None = None,
                     density: float = 1.2, dpi: int = 150) -> None:
    r"""Stream plots of the optimal and the error-prone flow fields at one sigma.

    The streams follow ``-v = (D - x) / sigma``, the direction of sampling (sigma
    decreasing); colour is the speed ``|v|`` on a log scale; training points are marked.

    Args:
      fields: a :class:`~jaxgap.theory.evidence.FlowFields`, or a sequence of them (one row
        per sigma).
      path: PNG file name or binary file object.
      title: figure title.
      density: ``streamplot`` density.
      dpi: resolution.
    """
    rows = list(fields) if isinstance(fields, (list, tuple)) and not hasattr(fields, "_fields") \
        else [fields]
    if not rows:
        raise ValueError("fields: expected at least one FlowFields, got none")
    for f in rows:
        _need(f, "fields", ("grid_x", "grid_y", "optimal", "error", "train", "sigma", "delta"),
              "FlowFields")
    fig = new_figure((9.0, 4.2 * len(rows)))
    axes = np.asarray(fig.subplots(len(rows), 2, squeeze=False))
    for (ax_o, ax_e), f in zip(axes, rows, strict=True):
        gx, gy = np.asarray(f.grid_x), np.asarray(f.grid_y)
        speeds = [np.linalg.norm(np.asarray(v), axis=-1) for v in (f.optimal, f.error)]
        pos = np.concatenate([s[s > 0].ravel() for s in speeds])
        norm = LogNorm(pos.min(), pos.max()) if pos.size else None
        for ax, v, speed, name in ((ax_o, f.optimal, speeds[0], r"optimal $D^*$"),
                                   (ax_e, f.error, speeds[1],
                                    rf"position error $\delta$ = {f.delta:.3g}")):
            v = np.asarray(v)
            ax.streamplot(gx, gy, -v[..., 0], -v[..., 1], color=speed, norm=norm,
                          cmap="viridis", density=density, linewidth=0.8, arrowsize=0.8)
            tr = np.asarray(f.train)
            ax.scatter(tr[:, 0], tr[:, 1], s=25, c="C3", edgecolors="k", zorder=3,
                       label="training points")
            ax.set_xlim(gx[0], gx[-1])
            ax.set_ylim(gy[0], gy[-1])
            ax.set_aspect("equal")
            ax.set_title(rf"{name}, $\sigma$ = {f.sigma:.3g}", fontsize=10)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    save(fig, path, title=title, dpi=dpi)


def plot_first_order(check: Any, path: Path, *, title: str | None = None,
                     dpi: int = 150) -> None:
    r"""Exact toy-model gap against its first- and second-order predictions in ``delta^2``.

    Two panels over log sigma: the gaps (``D*``'s, exact, first- and second-order), and the
    relative errors of the predictions (on the gap, and on the train and validation losses
    separately), with ``sigma = delta`` marked.

    Args:
      check: a :class:`~jaxgap.theory.evidence.FirstOrderGap`.
      path: PNG file name or binary file object.
      title: figure title.
      dpi: resolution.
    """
    _need(check, "check", ("train", "val", "gap_base", "gap_exact", "gap_first", "gap_second",
                           "rel_first", "rel_second"), "a FirstOrderGap")
    s = np.asarray(check.train.sigmas, np.float64)
    delta = float(check.train.delta)
    fig = new_figure((7.0, 6.4))
    ax_g, ax_r = fig.subplots(2, 1, sharex=True)
    ax_g.plot(s, check.gap_base, color="0.4", label=r"$D^*$ ($\delta$ = 0)")
    ax_g.plot(s, check.gap_exact, "o-", color="C0", markersize=3, label="exact")
    ax_g.plot(s, check.gap_first, "--", color="C3", label=r"first order in $\delta^2$")
    ax_g.plot(s, check.gap_second, ":", color="C2", label=r"+ $\delta^4$ power term")
    _gap_axis(ax_g)
    ax_g.set_xlabel("")
    lo, hi = np.nanmin(check.gap_exact), np.nanmax(check.gap_base)
    pad = 0.2 * max(hi - lo, 1e-12)
    ax_g.set_ylim(min(lo, 0.0) - pad, hi + pad)  # the first order diverges at small sigma
    ax_g.axvline(delta, color="k", linestyle=":", linewidth=1.0)
    ax_g.legend(fontsize=8, loc="best")
    ax_r.plot(s, check.rel_first, "o-", color="C3", markersize=3, label="gap, first order")
    ax_r.plot(s, check.rel_second, "s:", color="C2", markersize=3, label="gap, second order")
    ax_r.plot(s, check.val.rel_first, "--", color="C1", label="val loss, first order")
    ax_r.plot(s, check.train.rel_first, "--", color="C0", label="train loss, first order")
    ax_r.axvline(delta, color="k", linestyle=":", linewidth=1.0)
    ax_r.set_xscale("log")
    ax_r.set_yscale("log")
    ax_r.set_xlabel(r"noise level $\sigma$  (dotted: $\sigma = \delta$)")
    ax_r.set_ylabel("|prediction - exact| / |exact change|")
    ax_r.grid(True, which="major", alpha=0.3)
    ax_r.legend(fontsize=8, loc="best")
    save(fig, path, title=title, dpi=dpi)
