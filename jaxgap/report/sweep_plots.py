"""Figures of a factor sweep, drawn from its tidy tables (``losses.csv``, ``samples.csv``).

Means are over seeds, bands are Student-t intervals over seeds (95% by default; none with a
single seed). Gap peaks use the EMA weights' curves where the rows carry them and the raw
curves otherwise (closed-form models). Every function accepts a grid with a single value of
a factor (drawn as points with error bars) and an empty table (a figure with a note).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D

from jaxgap._io import write_bytes
from jaxgap.report._figure import new_figure, save
from jaxgap.sweep.analysis import gap_peaks, memorization_onset, over_seeds, sort_key
from jaxgap.sweep.tables import read_csv

__all__ = ["plot_factor_levels", "plot_gap_peaks", "plot_memorization", "plot_phase_map",
           "plot_sweep"]

_NOTE = dict(ha="center", va="center", fontsize=10, wrap=True)


def _split(rows: Sequence[Mapping], keys: Sequence[str]) -> list[tuple[tuple, list]]:
    """Rows split by the values of ``keys``, in sorted order of those values."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return sorted(groups.items(), key=lambda kv: tuple(sort_key(v) for v in kv[0]))


def _positions(values: Sequence) -> tuple[np.ndarray, list | None, bool]:
    """x positions of factor values: the numbers themselves (``log``: spread over >= 4x and
    positive), or 0, 1, ... with tick labels for anything that is not a number."""
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
           for v in values):
        x = np.asarray(values, np.float64)
        log = bool(np.all(x > 0) and x.max() >= 4 * x.min())
        return x, None, log
    labels = sorted({str(v) for v in values})
    return np.array([labels.index(str(v)) for v in values], np.float64), labels, False


def _num(v) -> float:
    return np.nan if v is None else float(v)


def _draw(ax, x, stats, color, label, *, transform=lambda y: y, linestyle="-") -> None:
    """Means as a line with markers, t-intervals as error bars and (several x) a band."""
    mean = transform(np.array([_num(s["mean"]) for s in stats]))
    lo = transform(np.array([_num(s["lo"]) for s in stats]))
    hi = transform(np.array([_num(s["hi"]) for s in stats]))
    order = np.argsort(x)
    x, mean, lo, hi = x[order], mean[order], lo[order], hi[order]
    ax.plot(x, mean, color=color, marker="o", markersize=4, label=label, linestyle=linestyle)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if np.any(ok):
        yerr = np.abs(np.stack([mean - lo, hi - mean]))[:, ok]
        ax.errorbar(x[ok], mean[ok], yerr=yerr, color=color, linestyle="none", capsize=2)
        if x.size > 1:
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)


def _note_figure(path, text: str, title: str | None, dpi: int) -> None:
    fig = new_figure((6.0, 3.0))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, transform=ax.transAxes, **_NOTE)
    save(fig, path, title=title, dpi=dpi)


def plot_gap_peaks(loss_rows: Sequence[Mapping[str, Any]], factors: Sequence[str],
                   path: str | os.PathLike | IO[bytes], *, level: float = 0.95,
                   title: str | None = None, dpi: int = 150) -> None:
    """Gap-peak height (top row) and location sigma (bottom row) against each factor.

    At each grid point's final step, the peaks of the ``half = 0`` curves
    (:func:`jaxgap.sweep.analysis.gap_peaks`: EMA where present, raw otherwise) are averaged
    over seeds (the location in log10 sigma) with a ``level`` t-interval as band. One column
    per factor; one line per combination of the other factors.

    Args:
      loss_rows: rows of ``losses.csv``.
      factors: the grid's factor names (none: ``train_size``).
      path: PNG file name or binary file object.
      level: confidence level of the bands.
      title: figure title (a default one when None).
      dpi: resolution.

    Example:
      >>> rows = [dict(point=p, seed=s, step=100, train_size=n, sigma=sg, gap=g * n / 64)
      ...         for p, n in enumerate((64, 128)) for s in (0, 1)
      ...         for sg, g in ((0.1, 0.1), (1.0, 0.3 + 0.01 * s), (10.0, 0.0))]
      >>> png = io.BytesIO()
      >>> plot_gap_peaks(rows, ["train_size"], png)
      >>> png.getvalue()[1:4]
      b'PNG'
    """
    peaks = [r for r in gap_peaks(loss_rows) if (r.get("half") or 0) == 0]
    last = {}
    for r in peaks:
        last[r["point"]] = max(last.get(r["point"], r["step"]), r["step"])
    final = [r for r in peaks if r["step"] == last[r["point"]] and r["peak_gap"] is not None]
    factors = [f for f in (list(factors) or ["train_size"])
               if final and all(f in r for r in final)]
    source = "/".join(sorted({r["source"] for r in final})) or "none"
    if title is None:
        title = (f"gap peak at the final step ({source} weights):\nmean over seeds, "
                 f"{level:.0%} t-interval")
    if not final or not factors:
        _note_figure(path, "no gap curves with a finite gap (or no factor columns) to plot",
                     title, dpi)
        return
    fig = new_figure((max(4.0 * len(factors) + 0.6, 5.6), 6.8))
    axes = fig.subplots(2, len(factors), squeeze=False)
    for j, f in enumerate(factors):
        others = [g for g in factors if g != f]
        groups = _split(final, others)
        _, ticks, log = _positions([r[f] for r in final])
        for i, (values, rows) in enumerate(groups):
            color = f"C{i % 10}"
            label = ", ".join(f"{g} = {v}" for g, v in zip(others, values, strict=True))
            height = over_seeds(rows, "peak_gap", by=[f], level=level)
            where = over_seeds(rows, "peak_log10_sigma", by=[f], level=level)
            x = (np.array([ticks.index(str(s[f])) for s in height], np.float64) if ticks
                 else np.array([s[f] for s in height], np.float64))
            _draw(axes[0, j], x, height, color, label or None)
            _draw(axes[1, j], x, where, color, label or None, transform=lambda y: 10.0 ** y)
        values = sorted({float(r[f]) for r in final}) if ticks is None else []
        for ax in axes[:, j]:
            if log:
                ax.set_xscale("log")
            if ticks is not None:
                ax.set_xticks(range(len(ticks)), ticks)
            elif len(values) <= 8:  # the grid's values as ticks, no crowded log labels
                ax.set_xticks(values, [f"{v:g}" for v in values])
                ax.minorticks_off()
            ax.grid(True, which="major", alpha=0.3)
        axes[1, j].set_yscale("log")
        axes[1, j].set_xlabel(f)
        if len(groups) > 1:
            axes[0, j].legend(fontsize=8, loc="best")
    axes[0, 0].set_ylabel(r"gap-peak height $\max_\sigma (L_{val} - L_{train})$")
    axes[1, 0].set_ylabel(r"gap-peak location $\sigma$")
    save(fig, path, title=title, dpi=dpi, fontsize=10)


def _memorized_rows(sample_rows) -> list[dict]:
    return [r for r in sample_rows if (r.get("half") or 0) == 0
            and r.get("memorized") is not None and r.get("train_size") is not None
            and r.get("step") is not None]


def plot_memorization(sample_rows: Sequence[Mapping[str, Any]],
                      path: str | os.PathLike | IO[bytes], *, level: float = 0.95,
                      title: str | None = None, dpi: int = 150) -> None:
    """Memorized fraction against training step (left) and step / N (right), one line per N.

    Means over seeds of the ``half = 0`` members with ``level`` t-interval bands; the
    held-out baseline (``base_memorized``, real images the member never saw) as a dashed
    line of the same colour. Grid points that share N (other factors) get one line each.

    Args:
      sample_rows: rows of ``samples.csv``.
      path: PNG file name or binary file object.
      level: confidence level of the bands.
      title: figure title (a default one when None).
      dpi: resolution.
    """
    rows = _memorized_rows(sample_rows)
    if title is None:
        title = f"memorized fraction: mean over seeds, {level:.0%} t-interval"
    if not rows:
        _note_figure(path, "no memorization measurements (samples.csv has no half = 0 rows)",
                     title, dpi)
        return
    by = ["point", "train_size", "step"] if all("point" in r for r in rows) else \
        ["train_size", "step"]
    mem = over_seeds(rows, "memorized", by=by, level=level)
    base = over_seeds([r for r in rows if "base_memorized" in r], "base_memorized", by=by,
                      level=level)
    lines = _split(mem, by[:-1])
    sizes = sorted({k[-1] for k, _ in lines}, key=sort_key)
    shared = len(sizes) < len(lines)
    cmap = colormaps["viridis"]
    fig = new_figure((11.0, 4.4))
    ax_step, ax_ratio = fig.subplots(1, 2, sharey=True)
    seen: dict = {}
    for values, stats in lines:
        n = values[-1]
        color = cmap(sizes.index(n) / max(len(sizes) - 1, 1) * 0.9)
        seen[n] = seen.get(n, -1) + 1  # points sharing N: one line style each
        style = ("-", "-.", ":", (0, (5, 1)))[seen[n] % 4]
        label = f"N = {n}" + (f" (point {values[0]})" if shared else "")
        steps = np.array([s["step"] for s in stats], np.float64)
        b = [s for s in base if tuple(s[k] for k in by[:-1]) == values]
        for ax, scale in ((ax_step, 1.0), (ax_ratio, float(n))):
            _draw(ax, steps / scale, stats, color, label, linestyle=style)
            if b:
                xb = np.array([s["step"] for s in b], np.float64) / scale
                yb = np.array([_num(s["mean"]) for s in b])
                order = np.argsort(xb)
                ax.plot(xb[order], yb[order], color=color, linestyle="--", linewidth=1.0)
    handles = ax_step.get_legend_handles_labels()[0]
    handles.append(Line2D([], [], color="0.4", linestyle="--",
                          label="held-out baseline (real images)"))
    ax_step.legend(handles=handles, fontsize=8, loc="best")
    ax_step.set_xlabel("training step")
    ax_ratio.set_xlabel("training step / N")
    ratios = [float(s["step"]) / float(s["train_size"]) for s in mem]
    if ratios and min(ratios) > 0 and max(ratios) >= 4 * min(ratios):
        ax_ratio.set_xscale("log")
    ax_step.set_ylabel("memorized fraction of samples")
    for ax in (ax_step, ax_ratio):
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="major", alpha=0.3)
    save(fig, path, title=title, dpi=dpi, fontsize=10)


def plot_factor_levels(sample_rows: Sequence[Mapping[str, Any]], factor: str,
                       path: str | os.PathLike | IO[bytes], *, level: float = 0.95,
                       title: str | None = None, dpi: int = 150) -> None:
    """Memorized fraction per level of one factor (categorical x axis, the file's order),
    one marker series per sampled step: means over seeds (``half = 0``) with ``level``
    t-intervals, and the held-out baseline (dashed).

    Args:
      sample_rows: rows of ``samples.csv`` with the ``factor`` column.
      factor: the column holding the levels (e.g. ``model_size``).
      path: PNG file name or binary file object.
      level: confidence level of the bars.
      title: figure title.
      dpi: resolution.
    """
    rows = [r for r in sample_rows if (r.get("half") or 0) == 0 and r.get(factor) is not None
            and r.get("memorized") is not None]
    title = title or f"memorized fraction by {factor}"
    if not rows:
        _note_figure(path, f"no memorization measurements with a {factor!r} column", title, dpi)
        return
    levels = list(dict.fromkeys(r[factor] for r in rows))
    steps = sorted({r["step"] for r in rows})
    cmap = colormaps["viridis"]
    fig = new_figure((7.0, 4.4))
    ax = fig.subplots()
    for j, step in enumerate(steps):
        stats = over_seeds([r for r in rows if r["step"] == step], "memorized", by=[factor],
                           level=level)
        by_level = {s[factor]: s for s in stats}
        x = np.array([levels.index(v) for v in by_level], np.float64) + 0.08 * (j - 0.5)
        y = np.array([_num(s["mean"]) for s in by_level.values()])
        lo = np.array([_num(s["lo"]) for s in by_level.values()])
        hi = np.array([_num(s["hi"]) for s in by_level.values()])
        color = cmap(j / max(len(steps) - 1, 1) * 0.9)
        ax.errorbar(x, y, yerr=[np.nan_to_num(y - lo), np.nan_to_num(hi - y)], fmt="o",
                    color=color, capsize=3, label=f"step {step}")
    base = over_seeds([r for r in rows if r.get("base_memorized") is not None],
                      "base_memorized", by=[factor], level=level)
    if base:
        ax.plot([levels.index(s[factor]) for s in base], [_num(s["mean"]) for s in base],
                color="0.4", linestyle="--", label="held-out baseline (real images)")
    ax.set_xticks(range(len(levels)), [str(v) for v in levels])
    ax.set_xlabel(factor)
    ax.set_ylabel("memorized fraction of samples")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save(fig, path, title=title, dpi=dpi, fontsize=10)


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted centres: midpoints (geometric on a log axis)."""
    v = np.log(values) if log else values.astype(np.float64)
    if v.size == 1:
        half = math.log(2.0) / 2 if log else max(abs(float(v[0])) / 2, 0.5)
        e = np.array([v[0] - half, v[0] + half])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
    return np.exp(e) if log else e


def _grid_means(rows, value: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N values, steps, [steps, N] mean of value)`` over everything else (NaN: none)."""
    cells: dict[tuple, list[float]] = {}
    for r in rows:
        v = r.get(value)
        if v is not None and math.isfinite(v):
            cells.setdefault((r["train_size"], r["step"]), []).append(float(v))
    ns = np.array(sorted({k[0] for k in cells}), np.float64)
    steps = np.array(sorted({k[1] for k in cells}), np.float64)
    grid = np.full((steps.size, ns.size), np.nan)
    for (n, t), v in cells.items():
        grid[np.searchsorted(steps, t), np.searchsorted(ns, n)] = np.mean(v)
    return ns, steps, grid


def plot_phase_map(loss_rows: Sequence[Mapping[str, Any]],
                   sample_rows: Sequence[Mapping[str, Any]],
                   path: str | os.PathLike | IO[bytes], *, margin: float = 0.05,
                   level: float = 0.95, title: str | None = None, dpi: int = 150) -> None:
    """Phase map over (N, training step): cells coloured by the mean memorized fraction.

    Cells average the ``half = 0`` members over seeds (and over any other factor). Contour
    lines show the mean gap-peak height (EMA where present) over the loss rows' (N, step)
    grid when it has at least 2 x 2 values; otherwise the figure says so. Diamonds mark the
    memorization onset of each N (:func:`jaxgap.sweep.analysis.memorization_onset`, with
    ``margin`` and ``level``) when every N is one grid point.

    Args:
      loss_rows: rows of ``losses.csv`` (may be empty: no contours).
      sample_rows: rows of ``samples.csv``.
      path: PNG file name or binary file object.
      margin, level: of the onset markers.
      title: figure title (a default one when None).
      dpi: resolution.
    """
    rows = _memorized_rows(sample_rows)
    if title is None:
        title = "memorized fraction over (N, training step); contours: gap-peak height"
    if not rows:
        _note_figure(path, "no memorization measurements to map", title, dpi)
        return
    ns, steps, grid = _grid_means(rows, "memorized")
    log_n = bool(np.all(ns > 0))
    fig = new_figure((7.4, 5.2))
    ax = fig.subplots()
    mesh = ax.pcolormesh(_edges(ns, log_n), _edges(steps, False), np.ma.masked_invalid(grid),
                         cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(mesh, ax=ax, label="mean memorized fraction")
    for i, t in enumerate(steps):
        for j, n in enumerate(ns):
            if np.isfinite(grid[i, j]):
                ax.text(n, t, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="k" if grid[i, j] > 0.5 else "w")
    notes = []
    peaks = [r for r in gap_peaks(loss_rows) if (r.get("half") or 0) == 0
             and "train_size" in r] if loss_rows else []
    pn, pt, height = _grid_means(peaks, "peak_gap")
    finite = np.isfinite(height)
    if pn.size >= 2 and pt.size >= 2 and finite.sum() >= 4 and np.ptp(height[finite]) > 0:
        cs = ax.contour(pn, pt, np.ma.masked_invalid(height), colors="w", linewidths=1.0)
        ax.clabel(cs, fontsize=8, fmt="%.3g")
        notes.append("white contours: mean gap-peak height")
    else:
        notes.append("no gap-peak contours: they need at least 2 x 2 (N, step) grid values "
                     "with a varying height")
    points = {}
    for r in rows:
        points.setdefault(r["train_size"], set()).add(r.get("point"))
    if all(len(p) == 1 for p in points.values()):
        needed = ("seed", "memorized_se", "base_memorized")
        if all(all(k in r for k in needed) for r in rows):
            onset = memorization_onset(rows, margin=margin, level=level)
            hit = [(r["train_size"], r["onset"]) for r in onset["per_n"] if not r["censored"]]
            if hit:
                ax.plot(*zip(*hit, strict=True), linestyle="none", marker="D", markersize=7,
                        markerfacecolor="none", markeredgecolor="r", markeredgewidth=1.6,
                        label=f"memorization onset (margin {margin:g})")
                ax.legend(fontsize=8, loc="upper left")
    else:
        notes.append("cells average grid points that share N")
    if log_n:
        ax.set_xscale("log")
    ax.set_xticks(ns, [f"{n:g}" for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("training set size N")
    ax.set_ylabel("training step")
    ax.set_title("; ".join(notes), fontsize=8)
    save(fig, path, title=title, dpi=dpi, fontsize=10)


def _factors(folder: Path, rows: Sequence[Mapping]) -> list[str]:
    """``sweep.json["factors"]``, else the columns between ``model`` and ``step``."""
    try:
        with open(folder / "sweep.json", encoding="utf-8") as f:
            factors = json.load(f).get("factors")
        if isinstance(factors, list) and all(isinstance(x, str) for x in factors):
            return factors
    except (OSError, ValueError, AttributeError):
        pass
    if rows:
        cols = list(rows[0])
        if "model" in cols and "step" in cols:
            return cols[cols.index("model") + 1:cols.index("step")]
    return ["train_size"]


def plot_sweep(folder: str | os.PathLike, *, level: float = 0.95, margin: float = 0.05,
               dpi: int = 150) -> list[Path]:
    """Write the figures of a sweep folder that its tables support, atomically.

    ``gap_peaks.png`` from ``losses.csv``; ``memorization.png`` and ``phase_map.png`` from
    ``samples.csv`` (skipped when it is missing or has no memorization rows).

    Args:
      folder: a sweep's ``--out`` folder.
      level: confidence level of the bands.
      margin: of the onset markers on the phase map.
      dpi: resolution.

    Returns:
      The paths written, in that order.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder: expected a sweep folder, got {os.fspath(folder)!r} "
                         f"(not a directory)")
    tables = {}
    for name in ("losses", "samples"):
        p = folder / f"{name}.csv"
        tables[name] = read_csv(p) if p.is_file() else []
    losses, samples = tables["losses"], tables["samples"]
    jobs = []
    if losses:
        factors = _factors(folder, losses)
        jobs.append(("gap_peaks.png", lambda buf: plot_gap_peaks(
            losses, factors, buf, level=level, dpi=dpi)))
    if _memorized_rows(samples):
        jobs.append(("memorization.png", lambda buf: plot_memorization(
            samples, buf, level=level, dpi=dpi)))
        jobs.append(("phase_map.png", lambda buf: plot_phase_map(
            losses, samples, buf, margin=margin, level=level, dpi=dpi)))
    written = []
    for name, draw in jobs:
        buf = io.BytesIO()
        draw(buf)
        written.append(Path(write_bytes(folder / name, buf.getvalue())))
    return written
