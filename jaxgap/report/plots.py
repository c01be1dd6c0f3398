"""Figures of jaxgap results (matplotlib, no global state).

Figures are built on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, not
through ``pyplot``: no backend is selected or changed, no figure is registered globally, and
the functions are safe to call from scripts, notebooks and threads alike.

A gap curve's largest value is marked as a *peak* (a filled star) only where it is
significant, larger than :data:`PEAK_SE` = 2 standard errors of the gap there; otherwise it
is an open circle, "largest gap, not significant", and the legend says which is which.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
from matplotlib import cm, colormaps, colors
from matplotlib.patches import Patch

from jaxgap.report._figure import (
    PEAK_SE,
    band,
    curve_arrays,
    mark_peak,
    new_figure,
    peak,
    peak_handles,
    save,
)

__all__ = [
    "PEAK_SE",
    "plot_domain_diagnostics",
    "plot_gap_curve",
    "plot_gap_curves",
    "plot_gap_over_training",
    "plot_sample_grid",
]

def plot_gap_curve(curve: Any, path: str | os.PathLike | IO[bytes], *,
                   title: str | None = None, loss_scale: str = "linear", dpi: int = 150) -> None:
    r"""Plot a generalization-gap curve and save it as a PNG.

    Two panels over a shared log-sigma axis: the train and validation denoising losses, and
    the gap :math:`L_{val}(\sigma) - L_{train}(\sigma)` (linear scale, with a zero line and a
    marker at its largest value: a star and a dotted line for a peak, i.e. a gap larger than
    2 standard errors there, an open circle for a largest gap that is not significant or has
    no standard error). Shaded bands are :math:`\pm 2` standard errors where the curve
    carries them.

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
      >>> import io
      >>> png = io.BytesIO()
      >>> plot_gap_curve({"sigmas": [0.01, 0.1, 1.0], "train": [0.0, 0.1, 0.5],
      ...                 "val": [0.2, 0.4, 0.6], "gap": [0.2, 0.3, 0.1]}, png, title="toy")
      >>> png.getvalue()[1:4]
      b'PNG'
    """
    if loss_scale not in ("linear", "log"):
        raise ValueError(f"loss_scale: expected 'linear' or 'log', got {loss_scale!r}")
    log_y = loss_scale == "log"
    c = curve_arrays(curve)
    s = c["sigmas"]
    order = np.argsort(s)
    c = {k: (None if a is None else a[order]) for k, a in c.items()}
    s = c["sigmas"]

    fig = new_figure((7.0, 6.4))
    ax_loss, ax_gap = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))

    for name, color, label in (("train", "C0", "train"), ("val", "C1", "validation")):
        y = c[name]
        ax_loss.plot(s, np.where(y > 0, y, np.nan) if log_y else y, color=color, marker=".",
                     label=label)
        band(ax_loss, s, y, c[f"{name}_se"], color, positive=log_y)
    ax_loss.set_xscale("log")
    ax_loss.set_yscale(loss_scale)
    ax_loss.set_ylabel(r"denoising loss  $E|D(x_\sigma) - x_0|^2 / d$")
    ax_loss.grid(True, which="major", alpha=0.3)
    ax_loss.legend(loc="best")

    gap = c["gap"]
    ax_gap.axhline(0.0, color="0.5", linewidth=0.8)
    ax_gap.plot(s, gap, color="C3", marker=".", label="gap = val - train")
    band(ax_gap, s, gap, c["gap_se"], "C3", positive=False)
    top = peak(s, gap, c["gap_se"])
    if top is not None:
        if top.significant:
            ax_gap.axvline(top.sigma, color="C3", linestyle=":", linewidth=1.0)
        mark_peak(ax_gap, top, "C3")
        ax_gap.annotate(f"{top.label()} at $\\sigma$ = {top.sigma:.3g}", top[:2],
                        xytext=(8, -14), textcoords="offset points", fontsize=9)
    ax_gap.set_xscale("log")
    ax_gap.set_xlabel(r"noise level $\sigma$")
    ax_gap.set_ylabel(r"$L_{val} - L_{train}$")
    ax_gap.grid(True, which="major", alpha=0.3)
    handles = ax_gap.get_legend_handles_labels()[0] + peak_handles([top])
    ax_gap.legend(handles=handles, loc="best", fontsize=9)
    save(fig, path, title=title, dpi=dpi)


def plot_gap_over_training(rows, path: str | os.PathLike | IO[bytes], *,
                           title: str | None = None, ema: bool = True, dpi: int = 150) -> None:
    r"""Gap curves ``L_val(sigma) - L_train(sigma)`` of a network, coloured by training step.

    Each curve carries a shaded :math:`\pm 1` standard-error band where its row holds the
    standard errors (``ema_gap_se`` / ``gap_se``). The final curve's largest gap is marked
    (a star and a dotted line if it is a peak: larger than 2 standard errors; an open
    circle otherwise).

    Args:
      rows: evaluation rows of ``metrics.jsonl`` (:func:`jaxgap.train.read_metrics`), each
        with ``step``, ``sigmas`` and ``gap`` / ``ema_gap`` (``[K]`` lists), optionally
        ``gap_se`` / ``ema_gap_se``.
      path: PNG file name or binary file object.
      title: figure title.
      ema: plot the EMA weights' gaps (default) or the raw weights'.
      dpi: resolution.

    Example:
      >>> import io
      >>> rows = [{"step": t, "sigmas": [0.1, 1.0, 10.0], "ema_gap": [0.0, g, 0.1],
      ...          "ema_gap_se": [0.01, 0.01, 0.01]} for t, g in ((0, 0.1), (100, 0.3))]
      >>> png = io.BytesIO()
      >>> plot_gap_over_training(rows, png)
      >>> png.getvalue()[1:4]
      b'PNG'
    """
    if not rows:
        raise ValueError("rows: expected at least one evaluation row, got none")
    key = "ema_gap" if ema else "gap"
    fig = new_figure((7.0, 4.6))
    ax = fig.subplots()
    steps = np.array([r["step"] for r in rows], dtype=np.float64)
    norm = (steps - steps.min()) / max(steps.max() - steps.min(), 1.0)
    cmap = colormaps["viridis"]
    banded = False
    for r, u in zip(rows, norm, strict=True):
        s, g = np.asarray(r["sigmas"], np.float64), np.asarray(r[key], np.float64)
        se = r.get(f"{key}_se")
        order = np.argsort(s)
        ax.plot(s[order], g[order], color=cmap(u), linewidth=1.2)
        if se is not None:
            se = np.asarray(se, np.float64)[order]
            band(ax, s[order], g[order], se, cmap(u), positive=False, width=1.0, alpha=0.12)
            banded = banded or bool(np.any(np.isfinite(se)))
    top = peak(rows[-1]["sigmas"], rows[-1][key], rows[-1].get(f"{key}_se"))
    if top is not None and top.significant:
        ax.axvline(top.sigma, color="k", linestyle=":", linewidth=1.0)
    mark_peak(ax, top, "k")
    handles = peak_handles([top])
    for h in handles:
        h.set_label(f"final curve's {h.get_label()}")
    if banded:
        handles.insert(0, Patch(color="0.5", alpha=0.3, label="$\\pm$1 standard error"))
    if handles:
        ax.legend(handles=handles, loc="best", fontsize=9)
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(r"noise level $\sigma$")
    ax.set_ylabel(r"$L_{val} - L_{train}$" + (" (EMA)" if ema else ""))
    ax.grid(True, which="major", alpha=0.3)
    mappable = cm.ScalarMappable(norm=colors.Normalize(steps.min(), steps.max()), cmap=cmap)
    fig.colorbar(mappable, ax=ax, label="training step")
    save(fig, path, title=title, dpi=dpi)


# ------------------------------------------------------------------------------------------
# Samples beside their nearest training images
# ------------------------------------------------------------------------------------------

def _image(row: np.ndarray, image_shape: tuple[int, ...]):
    """One flattened HWC image as ``(array, imshow keywords)``, values in [-1, 1] shown as is."""
    img = row.reshape(image_shape)
    if image_shape[-1] == 1:
        return img[..., 0], {"cmap": "gray", "vmin": -1.0, "vmax": 1.0}
    return np.clip((img + 1.0) / 2.0, 0.0, 1.0), {}  # RGB(A): [-1, 1] -> [0, 1]


def plot_sample_grid(samples, neighbors, image_shape, path: str | os.PathLike | IO[bytes], *,
                     max_pairs: int = 32, title: str | None = None,
                     labels=None, pairs_per_row: int = 16, dpi: int = 150) -> None:
    """Generated images beside their nearest training images, one pair per column.

    Each column holds a sample (upper image) and its nearest training image (lower image);
    pairs fill rows of ``pairs_per_row`` columns. Pixel values are shown on the data scale
    ``[-1, 1]`` (grey colormap for one channel; three or four channels as RGB(A)), clipped
    outside it, so a copy looks identical to its neighbour.

    Args:
      samples: ``[M, d]`` generated points (flattened HWC images).
      neighbors: ``[M, d]`` the nearest training point of each sample.
      image_shape: ``(H, W, C)`` with ``H * W * C = d`` and ``C`` in 1, 3, 4.
      path: file name or binary file object; written as PNG whatever its extension.
      max_pairs: at most this many pairs (the first ones) are shown.
      title: figure title (none by default).
      labels: optional ``M`` short strings written under the neighbours (e.g. copy ratios).
      pairs_per_row: columns per row of pairs.
      dpi: resolution.

    Raises:
      ValueError: mismatched shapes, an image shape that does not fit ``d``, or bad options.

    Example:
      >>> import io
      >>> x = np.linspace(-1.0, 1.0, 3 * 16).reshape(3, 16)  # three 4x4 grey images
      >>> png = io.BytesIO()
      >>> plot_sample_grid(x, x[::-1], (4, 4, 1), png, labels=["a", "b", "c"])
      >>> png.getvalue()[1:4]
      b'PNG'
    """
    samples = np.asarray(samples, np.float64)
    neighbors = np.asarray(neighbors, np.float64)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"samples: expected shape [M, d] with M >= 1, got "
                         f"{list(samples.shape)}")
    if neighbors.shape != samples.shape:
        raise ValueError(f"neighbors: expected shape {list(samples.shape)} like samples, got "
                         f"{list(neighbors.shape)}")
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        raise ValueError(f"image_shape: expected (H, W, C), got {image_shape!r}") from None
    if len(shape) != 3 or shape[-1] not in (1, 3, 4) or int(np.prod(shape)) != samples.shape[1]:
        raise ValueError(f"image_shape: expected (H, W, C) with C in (1, 3, 4) and "
                         f"H * W * C = d = {samples.shape[1]}, got {image_shape!r}")
    for name, v in (("max_pairs", max_pairs), ("pairs_per_row", pairs_per_row)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    num = min(int(max_pairs), samples.shape[0])
    if labels is not None:
        labels = [str(s) for s in labels]
        if len(labels) < num:
            raise ValueError(f"labels: expected at least {num} strings, got {len(labels)}")
    cols = min(num, int(pairs_per_row))
    blocks = -(-num // cols)
    aspect = shape[1] / shape[0]
    cell = 0.62
    fig = new_figure((max(cols * cell * aspect + 0.9, 3.0),
                      2 * blocks * cell * (1.25 if labels is not None else 1.0)
                      + (0.45 if title else 0.15)))
    axes = fig.subplots(2 * blocks, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for i in range(num):
        b, c = divmod(i, cols)
        for r, row in ((2 * b, samples[i]), (2 * b + 1, neighbors[i])):
            img, kw = _image(row, shape)
            axes[r, c].imshow(img, interpolation="nearest", **kw)
        if labels is not None:
            axes[2 * b + 1, c].set_xlabel(labels[i], fontsize=7.5, labelpad=1)
    for b in range(blocks):
        axes[2 * b, 0].set_ylabel("sample", fontsize=8)
        axes[2 * b + 1, 0].set_ylabel("nearest\ntrain", fontsize=8)
    save(fig, path, title=title, dpi=dpi, fontsize=9)


# ------------------------------------------------------------------------------------------
# Inference-domain diagnostics
# ------------------------------------------------------------------------------------------

_DOMAIN_STATS = (
    ("normalized_nn_distance", r"normalized NN distance  $|x - y_{nn}| / (\sigma\sqrt{d})$",
     "log"),
    ("max_weight", r"largest posterior weight  $\max_i w_i$", "linear"),
    ("effective_count", r"effective number of points  $1 / \sum_i w_i^2$", "log"),
)


_MARKERS = ("o", "s", "^", "D", "v")
_LINESTYLES = ("-", "--", "-.", ":")


def _domain_arrays(diag: Any):
    """``(sigmas [K], quantiles [Q], {name: {stat: [K, Q], "num_states": M}})`` as floats."""
    if hasattr(diag, "to_dict") and not isinstance(diag, Mapping):
        diag = diag.to_dict()
    if not isinstance(diag, Mapping) or not all(k in diag for k in
                                                 ("sigmas", "quantiles", "sets")):
        raise ValueError("diag: expected a DomainDiagnostics or a mapping with keys 'sigmas', "
                         f"'quantiles' and 'sets', got {type(diag).__name__}")
    sigmas = np.asarray(diag["sigmas"], np.float64)
    q = np.asarray(diag["quantiles"], np.float64)
    if sigmas.ndim != 1 or sigmas.size == 0 or not np.all(sigmas > 0):
        raise ValueError(f"diag: expected 'sigmas' of shape [K], K >= 1, values > 0 (plotted "
                         f"on a log axis), got shape {list(sigmas.shape)}")
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"diag: expected 'quantiles' of shape [Q], got {list(q.shape)}")
    sets = diag["sets"]
    if not isinstance(sets, Mapping) or not sets:
        raise ValueError("diag: expected a non-empty mapping 'sets' of named statistics")
    out = {}
    for name, s in sets.items():
        if hasattr(s, "to_dict") and not isinstance(s, Mapping):
            s = s.to_dict()
        entry = {"num_states": s.get("num_states") if isinstance(s, Mapping) else None}
        for stat, _, _ in _DOMAIN_STATS:
            if not isinstance(s, Mapping) or stat not in s:
                raise ValueError(f"diag: set {name!r} has no {stat!r}")
            a = np.asarray(s[stat], np.float64)
            if a.shape != (sigmas.size, q.size):
                raise ValueError(f"diag: expected sets[{name!r}][{stat!r}] of shape "
                                 f"[{sigmas.size}, {q.size}] (sigmas x quantiles), got "
                                 f"{list(a.shape)}")
            entry[stat] = a
        out[str(name)] = entry
    return sigmas, q, out


def plot_domain_diagnostics(diag: Any, path: str | os.PathLike | IO[bytes], *,
                            title: str | None = None, dpi: int = 150) -> None:
    r"""Per-sigma quantile bands of the inference-domain statistics, one colour per set.

    Three panels over a shared log-sigma axis: the normalized nearest-neighbour distance
    :math:`|x - y_{nn}| / (\sigma\sqrt d)` (log scale, with the reference 1 of a noisy
    training sample whose source is still its nearest point), the largest posterior weight
    :math:`\max_i w_i`, and the effective number of training points
    :math:`1 / \sum_i w_i^2` (log scale). Each set of states is drawn as its median (the
    quantile nearest 0.5) with a shaded band between its lowest and highest quantile
    (10-90% by default). States outside the noisy-train band lie outside the domain the
    denoiser was trained on (claim C3).

    Args:
      diag: a :class:`~jaxgap.metrics.DomainDiagnostics`, or a mapping as written by its
        ``to_dict`` (``sigmas [K]``, ``quantiles [Q]``, ``sets {name: {stat: [K, Q]}}``;
        extra keys, e.g. metadata in ``domain.json``, are ignored).
      path: file name or binary file object; written as PNG whatever its extension.
      title: figure title (none by default).
      dpi: resolution.

    Raises:
      ValueError: missing keys, mismatched shapes or non-positive sigmas.

    Example:
      >>> import io
      >>> band = [[0.5, 1.0, 2.0], [0.6, 1.1, 2.1]]  # [K = 2 sigmas, Q = 3 quantiles]
      >>> diag = {"sigmas": [0.1, 1.0], "quantiles": [0.1, 0.5, 0.9], "sets": {"noisy_train": {
      ...     "normalized_nn_distance": band, "max_weight": band, "effective_count": band}}}
      >>> png = io.BytesIO()
      >>> plot_domain_diagnostics(diag, png)
      >>> png.getvalue()[1:4]
      b'PNG'
    """
    sigmas, q, sets = _domain_arrays(diag)
    order = np.argsort(sigmas)
    s = sigmas[order]
    i_lo, i_hi = int(np.argmin(q)), int(np.argmax(q))
    i_mid = int(np.argmin(np.abs(q - 0.5)))
    band = f"{100 * q[i_lo]:.0f}-{100 * q[i_hi]:.0f}%"

    fig = new_figure((12.5, 4.8))
    axes = fig.subplots(1, 3, sharex=True)
    for j, (name, entry) in enumerate(sets.items()):
        color = f"C{j}"
        m = entry.get("num_states")
        label = name.replace("_", " ") + (f" (M = {m})" if m is not None else "")
        for ax, (stat, _, scale) in zip(axes, _DOMAIN_STATS, strict=True):
            a = entry[stat][order]
            lo, mid, hi = a[:, i_lo], a[:, i_mid], a[:, i_hi]
            if scale == "log":  # non-positive values cannot be drawn on a log axis
                lo, mid, hi = (np.where(v > 0, v, np.nan) for v in (lo, mid, hi))
            ax.fill_between(s, lo, hi, color=color, alpha=0.2, linewidth=0)
            ax.plot(s, mid, color=color, marker=_MARKERS[j % len(_MARKERS)], markersize=4,
                    linestyle=_LINESTYLES[j % len(_LINESTYLES)], linewidth=1.4,
                    label=f"{label}: median, {band}")  # styles differ: medians may coincide
    for ax, (stat, ylabel, scale) in zip(axes, _DOMAIN_STATS, strict=True):
        ax.set_xscale("log")
        ax.set_yscale(scale)
        ax.set_xlabel(r"noise level $\sigma$")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        if stat == "normalized_nn_distance":
            ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        elif stat == "max_weight":
            ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()  # one legend, under the panels
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3),
               fontsize=9)
    save(fig, path, title=title, dpi=dpi)


# ------------------------------------------------------------------------------------------
# Several gap curves on one axis
# ------------------------------------------------------------------------------------------

def plot_gap_curves(curves: Mapping[str, Any], path: str | os.PathLike | IO[bytes], *,
                    title: str | None = None, dpi: int = 150) -> None:
    r"""Gap curves :math:`L_{val}(\sigma) - L_{train}(\sigma)` of several denoisers, one axis.

    Each curve is drawn with a marker at its largest value (a filled star where that is a
    peak: a gap larger than 2 standard errors there; an open circle where it is not
    significant or the curve has no ``gap_se``; the legend says which) and, where it carries
    ``gap_se``, a :math:`\pm 2` standard-error band (log-sigma axis, linear gap axis).

    Args:
      curves: ``{label: curve}``; each curve a :class:`~jaxgap.losses.GapCurve` or a
        mapping with ``sigmas``, ``train``, ``val``, ``gap`` (``[K]``) and optional
        standard errors (as :func:`plot_gap_curve` takes); grids may differ.
      path: file name or binary file object; written as PNG whatever its extension.
      title: figure title (none by default).
      dpi: resolution.

    Raises:
      ValueError: no curves, or a curve with missing keys, mismatched lengths or
        non-positive sigmas (the message names its label).

    Example:
      >>> import io
      >>> png = io.BytesIO()
      >>> plot_gap_curves({"a": {"sigmas": [0.1, 1.0], "train": [0, 0], "val": [1, 2],
      ...                        "gap": [1, 2]},
      ...                  "b": {"sigmas": [0.2, 2.0], "train": [0, 0], "val": [2, 1],
      ...                        "gap": [2, 1], "gap_se": [0.1, 0.1]}}, png)
      >>> png.getvalue()[1:4]
      b'PNG'
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves: expected a non-empty mapping {label: curve}, got "
                         f"{type(curves).__name__}")
    arrays = {}
    for label, curve in curves.items():
        try:
            arrays[str(label)] = curve_arrays(curve)
        except ValueError as err:
            raise ValueError(f"curves[{label!r}]: {err}") from None
    fig = new_figure((7.0, 4.6))
    ax = fig.subplots()
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    tops = []
    for j, (label, c) in enumerate(arrays.items()):
        order = np.argsort(c["sigmas"])
        s, gap = c["sigmas"][order], c["gap"][order]
        se = None if c["gap_se"] is None else c["gap_se"][order]
        color = f"C{j}"
        ax.plot(s, gap, color=color, marker=_MARKERS[j % len(_MARKERS)], markersize=3.5,
                linestyle=_LINESTYLES[j % len(_LINESTYLES)], label=label)
        band(ax, s, gap, se, color, positive=False)
        tops.append(peak(s, gap, se))
        mark_peak(ax, tops[-1], color)
    ax.set_xscale("log")
    ax.set_xlabel(r"noise level $\sigma$")
    ax.set_ylabel(r"$L_{val} - L_{train}$")
    ax.grid(True, which="major", alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + peak_handles(tops)
    ax.legend(handles=handles, loc="best", fontsize=8)
    save(fig, path, title=title, dpi=dpi)
