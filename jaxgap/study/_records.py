"""The judges' inputs from measured results: gap curves from a sweep's rows, domain records
from :func:`jaxgap.metrics.domain_diagnostics`, quality records, and the toy fit's residual
and delta bracket (re-exported by :mod:`jaxgap.study.criteria`)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from jaxgap.metrics import BASELINE

__all__ = ["curves_from_rows", "delta_bracket", "domain_record", "fit_residual",
           "quality_record"]

def curves_from_rows(loss_rows, *, ema: bool = True) -> list[dict]:
    """:func:`judge_gap_peak` records from a sweep's ``losses.csv`` rows of one curve per
    seed (one grid point, step and half): the EMA curve where every row has one."""
    rows = list(loss_rows)
    if not rows or any(not all(k in r for k in ("seed", "sigma", "gap")) for r in rows):
        raise ValueError("loss_rows: expected rows with 'seed', 'sigma' and 'gap', got "
                         f"{rows[:1]!r}")
    ids = {(r.get("point"), r.get("step"), r.get("half") or 0) for r in rows}
    if len(ids) > 1:
        raise ValueError(f"loss_rows: expected one (point, step, half), got {len(ids)}")
    by_seed: dict = {}
    for r in rows:
        by_seed.setdefault(r["seed"], []).append(r)
    out = []
    for seed, group in sorted(by_seed.items(), key=lambda kv: str(kv[0])):
        group = sorted(group, key=lambda r: r["sigma"])
        col = "ema_gap" if ema and all(r.get("ema_gap") is not None for r in group) else "gap"
        out.append({"seed": seed, "sigmas": [r["sigma"] for r in group],
                    "gap": [r[col] for r in group],
                    "gap_se": [r.get(f"{col}_se") for r in group]})
    return out


def domain_record(diagnostics, states: str = "network", *, train: str = "noisy_train",
                  val: str = "noisy_val") -> dict:
    """A :func:`judge_domain` record from :func:`jaxgap.metrics.domain_diagnostics` (or its
    ``to_dict()``, as the study's ``domain.json`` holds it): set ``states`` against the
    bands ``train`` and ``val``."""
    d = diagnostics.to_dict() if hasattr(diagnostics, "to_dict") else diagnostics
    if not isinstance(d, Mapping) or not all(k in d for k in ("sigmas", "quantiles", "sets")):
        raise ValueError("diagnostics: expected DomainDiagnostics or its to_dict(), got "
                         f"{type(d).__name__}")
    missing = [s for s in (states, train, val) if s not in d["sets"]]
    if missing:
        raise ValueError(f"diagnostics: expected the sets {[states, train, val]}, missing "
                         f"{missing} (has {list(d['sets'])})")
    return {"sigmas": d["sigmas"], "quantiles": d["quantiles"],
            **{key: d["sets"][s]["normalized_nn_distance"]
               for key, s in (("states", states), ("noisy_train", train), ("noisy_val", val))}}


def quality_record(quality, name: str | None = None, *, space: str | None = None) -> dict:
    """The quality keys of :func:`judge_generalization` from
    :func:`jaxgap.metrics.measure_quality`'s dict (set ``name``, baseline
    :data:`jaxgap.metrics.BASELINE`) or from a sweep ``samples.csv`` row (``name`` None).
    ``space``: ``"features"`` (default where measured) or ``"pixels"``."""
    if space not in (None, "features", "pixels"):
        raise ValueError(f"space: expected 'features', 'pixels' or None, got {space!r}")
    if "sets" in quality:
        if name not in quality["sets"]:
            raise ValueError(f"name: expected one of {list(quality['sets'])}, got {name!r}")
        s, b = quality["sets"][name], quality["sets"][BASELINE]
        space = space or ("features" if s.get("features") else "pixels")
        return {"frechet": s[space]["frechet"], "precision": s[space]["precision"],
                "base_frechet": b[space]["frechet"], "base_precision": b[space]["precision"],
                "space": space}
    space = space or ("features" if quality.get("feat_frechet") is not None else "pixels")
    pre = "feat_" if space == "features" else ""
    return {"frechet": quality[f"{pre}frechet"], "precision": quality[f"{pre}precision"],
            "base_frechet": quality[f"base_{pre}frechet"],
            "base_precision": quality[f"base_{pre}precision"], "space": space}


def fit_residual(sigmas, gap, sse: float) -> float:
    r"""The toy fit's relative residual: its objective over the target curve's weighted
    energy, :math:`R = S / \sum_k w_k g_k^2`, with the trapezoid weights in
    :math:`\log\sigma` (sum 1) of :func:`jaxgap.theory.fit_delta`'s objective :math:`S`
    (``DeltaFit.sse``). ``R <= 1/4``: the residual's RMS is at most half the curve's.

    Example:
      >>> fit_residual([0.1, 1.0, 10.0], [1.0, 2.0, 1.0], 0.25)
      0.1
    """
    s, g = np.asarray(sigmas, np.float64), np.asarray(gap, np.float64)
    if s.ndim != 1 or s.shape != g.shape or s.size == 0 or not np.all(s > 0):
        raise ValueError(f"sigmas, gap: expected two [K] arrays, sigmas > 0, got shapes "
                         f"{list(s.shape)} and {list(g.shape)}")
    order = np.argsort(s)
    w = np.ones(1)
    if s.size > 1:
        step = np.diff(np.log(s[order]))
        w = np.zeros(s.size)
        w[:-1] += step / 2
        w[1:] += step / 2
        w /= w.sum()
    energy = float(np.sum(w * g[order] ** 2))
    return float(sse) / energy if energy > 0 else math.inf


def delta_bracket(deltas, sse_values, *, factor: float) -> tuple[float, float]:
    """``(low, high)``: the smallest and largest evaluated delta whose fit objective is
    within ``factor`` x the best (``DeltaFit.deltas``, ``DeltaFit.sse_values``; the default
    grid includes 0, so ``low > 0`` says delta = 0 fits ``factor`` x worse).

    Example:
      >>> delta_bracket([0.0, 0.1, 0.3, 1.0], [4.0, 1.5, 1.0, 3.0], factor=2.0)
      (0.1, 0.3)
    """
    d, v = np.asarray(deltas, np.float64), np.asarray(sse_values, np.float64)
    if d.ndim != 1 or d.shape != v.shape or d.size == 0:
        raise ValueError(f"deltas, sse_values: expected two [E] arrays, got shapes "
                         f"{list(d.shape)} and {list(v.shape)}")
    near = d[v <= factor * np.min(v)]
    return float(near.min()), float(near.max())
