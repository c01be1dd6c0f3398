r"""Analyses of a sweep's tidy tables: gap peaks, means over seeds, memorization onset and
disjoint halves. Pure NumPy on lists of row dicts (as :func:`jaxgap.sweep.tables.read_csv`
returns them); every result is JSON-ready (Python numbers, None for missing values).

Intervals over seeds are Student-t intervals: with ``n`` seeds of mean :math:`\bar y` and
sample standard deviation :math:`s`,

.. math:: \bar y \pm t_{(1 + \ell)/2,\, n - 1}\, s / \sqrt{n},

at confidence level :math:`\ell` (0.95 by default). One seed gives no interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy import stats

from jaxgap.losses import curve_peak

__all__ = ["BONNAIRE_2025", "KADKHODAIE_2024", "disjoint_halves", "gap_peaks",
           "memorization_onset", "over_seeds", "sort_key", "summarize", "t_quantile"]

BONNAIRE_2025 = ("Bonnaire, Urfin, Biroli, Mezard (NeurIPS 2025): memorization time grows "
                 "linearly in N (slope 1) while the generalization time is independent of N")
KADKHODAIE_2024 = ("Kadkhodaie, Guth, Simoncelli, Mallat (ICLR 2024): two networks trained on "
                   "disjoint halves sample nearly the same image from the same noise once N is "
                   "large (relative distance falling toward 0 as N grows); a memorizing pair "
                   "reproduces its own training images (relative distance near 1, that of "
                   "unrelated generators)")

_LOSS_MEASURES = frozenset(
    ["sigma", "train", "val", "gap", "train_se", "val_se", "gap_se"]
    + [f"ema_{k}" for k in ("train", "val", "gap", "train_se", "val_se", "gap_se")])


# ----------------------------------------------------------------------------- statistics

def t_quantile(p: float, df: int) -> float:
    r"""Quantile ``t_{p, df}`` of Student's t distribution, ``P(T <= t) = p``
    (``scipy.stats.t.ppf``).

    Example:
      >>> round(t_quantile(0.975, 3), 3), round(t_quantile(0.975, 1), 3)
      (3.182, 12.706)
    """
    if not (isinstance(p, (int, float, np.floating)) and 0.0 < float(p) < 1.0):
        raise ValueError(f"p: expected a probability in (0, 1), got {p!r}")
    if not (isinstance(df, (int, float, np.integer, np.floating)) and float(df) >= 1):
        raise ValueError(f"df: expected degrees of freedom >= 1, got {df!r}")
    return float(stats.t.ppf(float(p), float(df)))


def _check_level(level) -> float:
    if not (isinstance(level, (int, float, np.floating)) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level: expected a confidence level in (0, 1), got {level!r}")
    return float(level)


def _mean_ci(values: Sequence[float], level: float) -> dict[str, Any]:
    """``{"n", "mean", "se", "lo", "hi"}`` of a t-interval (None where undefined)."""
    y = np.asarray(values, np.float64)
    n = int(y.size)
    if n == 0:
        return {"n": 0, "mean": None, "se": None, "lo": None, "hi": None}
    mean = float(np.mean(y))
    if n < 2:
        return {"n": 1, "mean": mean, "se": None, "lo": None, "hi": None}
    se = float(np.std(y, ddof=1) / math.sqrt(n))
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    return {"n": n, "mean": mean, "se": se, "lo": mean - half, "hi": mean + half}


def _fit(x: Sequence[float], y: Sequence[float], level: float) -> dict[str, Any]:
    """Least-squares line ``y = a + b x`` with the t-interval of ``b`` (df = n - 2)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    out = {"slope": None, "slope_se": None, "slope_interval": None, "intercept": None,
           "num_points": int(x.size), "num_values": int(np.unique(x).size)}
    if out["num_values"] < 2:
        return out
    xc = x - x.mean()
    sxx = float(xc @ xc)
    b = float(xc @ (y - y.mean())) / sxx
    a = float(y.mean() - b * x.mean())
    out.update(slope=b, intercept=a)
    if x.size > 2:
        resid = y - a - b * x
        se = math.sqrt(float(resid @ resid) / (x.size - 2) / sxx)
        half = t_quantile(0.5 + level / 2.0, x.size - 2) * se
        out.update(slope_se=se, slope_interval=[b - half, b + half])
    return out


# ----------------------------------------------------------------------------- grouping

def sort_key(value) -> tuple:
    """Order of factor values in tables and plots: numbers, then strings, then None."""
    if value is None:
        return (2, "")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value))
    return (1, str(value))


def _group(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> dict[tuple, list]:
    """Rows grouped by the values of ``keys``, groups in sorted order of those values."""
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    return dict(sorted(groups.items(), key=lambda kv: tuple(sort_key(v) for v in kv[0])))


def _number(value) -> float | None:
    """A finite float, or None (missing or not finite)."""
    if value is None or isinstance(value, (str, bool)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _json(x):
    """Python scalars (NaN and infinities as None), lists and dicts all the way down."""
    if isinstance(x, Mapping):
        return {str(k): _json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _need(rows: Sequence[Mapping], columns: Sequence[str], name: str) -> None:
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise ValueError(f"{name}: expected columns {list(columns)}, "
                             f"row {i} lacks {missing}")


def _half(row) -> int:
    return row.get("half") or 0


# ----------------------------------------------------------------------------- analyses

def gap_peaks(loss_rows: Sequence[Mapping[str, Any]], *, ema: bool = True) -> list[dict]:
    r"""Gap-peak height and location of every curve (point, seed, half, step) of ``losses.csv``.

    The curve :math:`g(\sigma_k)` (EMA weights where ``ema`` and the rows carry them, else
    the raw weights) is sorted by sigma and its peak is that of
    :func:`jaxgap.losses.curve_peak` (grid point of the largest gap):

    .. math:: k^\star = \arg\max_k g(\sigma_k), \quad
        \text{height} = g(\sigma_{k^\star}), \quad \text{location} = \sigma_{k^\star}.

    Args:
      loss_rows: rows with ``point``, ``seed``, ``step``, ``sigma``, ``gap`` (``gap_se``,
        ``ema_gap``, ``ema_gap_se``, ``half`` optional); one row per sigma of a curve.
      ema: prefer the EMA curve (``ema_gap``) where every row of the curve has one.

    Returns:
      One dict per curve, sorted: its identification and factor columns (every column but
      the per-sigma measures), ``source`` (``"ema"`` or ``"raw"``), ``peak_sigma``,
      ``peak_log10_sigma``, ``peak_gap`` and ``peak_gap_se`` (None when no gap is finite).

    Example:
      >>> rows = [dict(point=0, seed=s, step=10, sigma=sg, gap=g, gap_se=0.1)
      ...         for s in (0, 1) for sg, g in ((1.0, 0.5), (0.1, 0.2), (10.0, 0.1))]
      >>> [(r["seed"], r["peak_sigma"], r["peak_gap"]) for r in gap_peaks(rows)]
      [(0, 1.0, 0.5), (1, 1.0, 0.5)]
    """
    rows = list(loss_rows)
    _need(rows, ("point", "seed", "step", "sigma", "gap"), "loss_rows")
    out = []
    for key, group in _group(rows, ("point", "seed", "half", "step")).items():
        use_ema = ema and all(r.get("ema_gap") is not None for r in group)
        col = "ema_gap" if use_ema else "gap"
        group = sorted(group, key=lambda r: r["sigma"])
        sigmas = np.array([r["sigma"] for r in group], np.float64)
        if np.unique(sigmas).size != sigmas.size:
            raise ValueError(f"loss_rows: expected one row per (point, seed, half, step, "
                             f"sigma), got a repeated sigma in (point, seed, half, step) = {key}")
        gaps = np.array([np.nan if _number(r[col]) is None else r[col] for r in group])
        ses = [r.get(f"{col}_se") for r in group]
        row = {k: v for k, v in group[0].items() if k not in _LOSS_MEASURES}
        row.update(source="ema" if use_ema else "raw", peak_sigma=None,
                   peak_log10_sigma=None, peak_gap=None, peak_gap_se=None)
        if np.any(np.isfinite(gaps)):
            s, g, k = curve_peak(sigmas, gaps, return_index=True)
            row.update(peak_sigma=s, peak_log10_sigma=math.log10(s), peak_gap=g,
                       peak_gap_se=_number(ses[k]))
        out.append(_json(row))
    return out


def over_seeds(rows: Sequence[Mapping[str, Any]], value: str, *, by: Sequence[str],
               level: float = 0.95) -> list[dict]:
    r"""Mean of ``value`` over seeds with its standard error and t-interval, per group.

    Rows are grouped by the columns ``by``. Within a group, rows of one seed are averaged
    first (so ``n`` counts seeds; without a ``seed`` column every row is one replicate);
    missing or non-finite values are left out. With ``n`` seeds of mean :math:`\bar y` and
    standard deviation :math:`s` (ddof 1): ``se`` :math:`= s/\sqrt n`, and ``[lo, hi]``
    :math:`= \bar y \pm t_{(1+\ell)/2, n-1}\,\mathrm{se}` (None for ``n < 2``).

    Args:
      rows: row dicts.
      value: the column to average.
      by: the grouping columns.
      level: confidence level of the interval.

    Returns:
      One dict per group (sorted by the ``by`` values): the ``by`` columns, ``n``, ``mean``,
      ``se``, ``lo``, ``hi``.

    Example:
      >>> rows = [dict(n=8, seed=s, m=v) for s, v in enumerate((1.0, 2.0, 3.0, 4.0))]
      >>> r = over_seeds(rows, "m", by=["n"])[0]
      >>> r["n"], r["mean"], round(r["se"], 4), round(r["lo"], 3), round(r["hi"], 3)
      (4, 2.5, 0.6455, 0.446, 4.554)
    """
    level = _check_level(level)
    if isinstance(by, str):
        raise ValueError(f"by: expected a sequence of column names, got the string {by!r}")
    by = list(by)
    rows = list(rows)
    _need(rows, [*by, value], "rows")
    out = []
    for key, group in _group(rows, by).items():
        per_seed: dict[Any, list[float]] = {}
        for i, r in enumerate(group):
            v = _number(r[value])
            if v is not None:
                per_seed.setdefault(r["seed"] if "seed" in r else ("row", i), []).append(v)
        stats = _mean_ci([float(np.mean(v)) for v in per_seed.values()], level)
        out.append(_json({**dict(zip(by, key, strict=True)), **stats}))
    return out


def _one_point_per_value(rows, factor: str, name: str) -> None:
    for value, group in _group(rows, (factor,)).items():
        points = {r["point"] for r in group if "point" in r}
        if len(points) > 1:
            raise ValueError(f"{name}: expected one grid point per {factor} = {value[0]!r} "
                             f"(pass one slice of the other factors), got points "
                             f"{sorted(points, key=sort_key)}")


def memorization_onset(sample_rows: Sequence[Mapping[str, Any]], *, margin: float = 0.05,
                       level: float = 0.95, factor: str = "train_size") -> dict:
    r"""First sampled step at which memorization clearly exceeds the held-out baseline, per N.

    For each value N of ``factor`` and each sampled step, with memorized fractions
    :math:`m_s` of ``n`` seeds (``half = 0`` rows) and baseline :math:`b` (the mean of
    ``base_memorized`` over the seeds, held-out real images), the lower bound is
    :math:`\bar m - t_{(1+\ell)/2, n-1}\, s/\sqrt n` (the low end of the two-sided
    t-interval), or :math:`m - z_{(1+\ell)/2}\,\mathrm{se}_m` with one seed (its bootstrap
    standard error ``memorized_se``). The onset is the first step with

    .. math:: \mathrm{lower}(\text{step}) > b(\text{step}) + \text{margin},

    None when never (censored: not reached by the last sampled step). A seed's own onset
    uses the one-seed rule against its own baseline. The scaling of onset with N is the
    least-squares slope of :math:`\log(\text{onset})` on :math:`\log N` over the per-seed
    onsets (``> 0``) of the values N whose onset was reached, with a t-interval
    (df = points - 2); None with fewer than 2 distinct N.

    Args:
      sample_rows: rows of ``samples.csv`` for one slice of the other factors (one grid
        point per N): ``seed``, ``step``, ``memorized``, ``memorized_se``,
        ``base_memorized`` and ``factor``.
      margin: how far above the baseline the lower bound must be.
      level: confidence level.
      factor: the column holding N.

    Returns:
      A JSON-ready dict: ``factor``, ``margin``, ``level``, ``per_n`` (per N: ``onset``,
      ``censored``, ``last_step``, ``seed_onsets`` and ``steps`` with the mean, lower bound
      and baseline of every step), ``slope``, ``slope_se``, ``slope_interval``,
      ``intercept``, ``num_points``, ``num_values``, ``shows``, ``note``, ``reference``.

    Example:
      >>> rows = [dict(train_size=n, seed=s, step=t, memorized=float(t >= 10 * n) * 0.9,
      ...              memorized_se=0.01, base_memorized=0.0)
      ...         for n in (10, 100) for s in (0, 1) for t in (0, 50, 100, 500, 1000)]
      >>> res = memorization_onset(rows)
      >>> [(r["train_size"], r["onset"]) for r in res["per_n"]], round(res["slope"], 3)
      ([(10, 100), (100, 1000)], 1.0)
    """
    level = _check_level(level)
    if _number(margin) is None:
        raise ValueError(f"margin: expected a finite number, got {margin!r}")
    rows = [r for r in sample_rows if _half(r) == 0]
    _need(rows, (factor, "seed", "step", "memorized", "memorized_se", "base_memorized"),
          "sample_rows")
    _one_point_per_value(rows, factor, "sample_rows")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    per_n, xs, ys, censored_seeds = [], [], [], 0
    for (n_value,), group in _group(rows, (factor,)).items():
        by_step = _group(group, ("step",))
        onset, steps, seed_onsets = None, [], {}
        for (step,), at in by_step.items():
            seeds = _group(at, ("seed",))
            if any(len(g) > 1 for g in seeds.values()):
                raise ValueError(f"sample_rows: expected one row per seed at {factor} = "
                                 f"{n_value!r}, step {step}, got repeated seeds")
            m = [_number(r["memorized"]) for r in at]
            stats = _mean_ci([v for v in m if v is not None], level)
            bases = [b for b in (_number(r["base_memorized"]) for r in at) if b is not None]
            base = float(np.mean(bases)) if bases else None
            lower = stats["lo"]
            if stats["n"] == 1:
                row = next(r for r, v in zip(at, m, strict=True) if v is not None)
                se = _number(row["memorized_se"])
                lower = None if se is None else stats["mean"] - z * se
            exceeds = lower is not None and base is not None and lower > base + margin
            if exceeds and onset is None:
                onset = step
            steps.append({"step": step, "n": stats["n"], "memorized": stats["mean"],
                          "lower": lower, "baseline": base, "exceeds": exceeds})
            for r in at:
                m_s, se_s = _number(r["memorized"]), _number(r["memorized_se"])
                b_s = _number(r["base_memorized"])
                hit = None not in (m_s, se_s, b_s) and m_s - z * se_s > b_s + margin
                seed_onsets.setdefault(r["seed"], None)
                if hit and seed_onsets[r["seed"]] is None:
                    seed_onsets[r["seed"]] = step
        last = max(s for (s,) in by_step)
        if onset is not None and _number(n_value) is not None and n_value > 0:
            for s_onset in seed_onsets.values():
                if s_onset is None or s_onset <= 0:
                    censored_seeds += 1
                else:
                    xs.append(math.log(n_value))
                    ys.append(math.log(s_onset))
        first = min(s for (s,) in by_step)
        per_n.append({factor: n_value, "onset": onset, "censored": onset is None,
                      "at_first_step": onset is not None and onset == first,
                      "last_step": last,
                      "seed_onsets": [{"seed": s, "onset": o} for s, o in
                                      sorted(seed_onsets.items(), key=lambda kv: sort_key(kv[0]))],
                      "steps": steps})
    fit = _fit(xs, ys, level)
    result = {"factor": factor, "margin": float(margin), "level": level, "per_n": per_n, **fit}
    result["shows"] = _onset_shows(fit, level)
    result["note"] = _onset_note(per_n, factor, margin, level, censored_seeds)
    result["reference"] = BONNAIRE_2025
    return _json(result)


def _onset_shows(fit, level) -> str:
    if fit["slope"] is None:
        return "no slope: fewer than 2 values of N reached onset (no evidence either way)"
    head = f"log-log slope of onset against N {fit['slope']:.2f}"
    if fit["slope_interval"] is None:
        return f"{head} from {fit['num_points']} points (too few for an interval)"
    lo, hi = fit["slope_interval"]
    verdict = ("consistent with slope 1 (onset linear in N)" if lo <= 1.0 <= hi else
               "below 1 (slower than linear in N)" if hi < 1.0 else
               "above 1 (faster than linear in N)")
    return (f"{head}, {level:.0%} interval [{lo:.2f}, {hi:.2f}] from {fit['num_points']} "
            f"per-seed onsets of {fit['num_values']} values of N: {verdict}")


def _onset_note(per_n, factor, margin, level, censored_seeds) -> str:
    cens = [f"{factor} = {r[factor]} (last step {r['last_step']})" for r in per_n
            if r["censored"]]
    early = [f"{factor} = {r[factor]}" for r in per_n if r.get("at_first_step")]
    return (f"onset = first sampled step at which the lower end of the {level:.0%} t-interval "
            f"over seeds of the memorized fraction exceeds the held-out baseline by {margin:g}; "
            + ("censored, not reached by the last step: " + ", ".join(cens) if cens else
               "reached for every value" if per_n else "no sample rows")
            + ("; onset already at the first sampled step (an upper bound: memorization began "
               "earlier) for " + ", ".join(early) if early else "")
            + (f"; {censored_seeds} censored per-seed onsets (or at step 0) of reached values "
               "left out of the slope" if censored_seeds else "")
            + "; the slope uses only values that reached onset (censoring of the largest N "
              "biases it downward)")


def disjoint_halves(sample_rows: Sequence[Mapping[str, Any]], *, level: float = 0.95,
                    factor: str = "train_size") -> dict:
    r"""Distance between the paired samples of members trained on disjoint halves, per N.

    From the ``half = 1`` rows (one per seed, N = ``factor``, step): the mean over seeds
    and t-interval of ``pair_relative`` (paired distance over unpaired distance: 1 for
    unrelated generators, 0 for identical ones), ``pair_distance`` and ``memorized``, and
    the trend of ``pair_relative`` at each N's last step,

    .. math:: r = a + b \log_2 N,

    a least-squares line over the seeds' values (``b``: change per doubling of N, with its
    t-interval).

    Args:
      sample_rows: rows of ``samples.csv`` for one slice of the other factors.
      level: confidence level.
      factor: the column holding N.

    Returns:
      A JSON-ready dict: ``factor``, ``level``, ``rows`` (per N and step: ``n`` seeds,
      ``pair_relative``, ``pair_distance`` and ``memorized`` as ``{mean, se, lo, hi}``),
      ``final`` (each N's last step), ``trend`` (``slope`` per doubling, ``slope_interval``),
      ``note``, ``reference``.

    Example:
      >>> rows = [dict(train_size=n, seed=s, half=1, step=100, pair_relative=r + 0.01 * s,
      ...              pair_distance=2 * r, memorized=0.0)
      ...         for n, r in ((64, 0.9), (128, 0.6), (256, 0.3)) for s in (0, 1)]
      >>> res = disjoint_halves(rows)
      >>> [round(r["pair_relative"]["mean"], 3) for r in res["final"]]
      [0.905, 0.605, 0.305]
      >>> round(res["trend"]["slope"], 3)
      -0.3
    """
    level = _check_level(level)
    rows = [r for r in sample_rows if _half(r) == 1 and _number(r.get("pair_relative"))
            is not None]
    _need(rows, (factor, "seed", "step"), "sample_rows")
    _one_point_per_value(rows, factor, "sample_rows")
    table = []
    for (n_value, step), group in _group(rows, (factor, "step")).items():
        entry = {factor: n_value, "step": step}
        for v in ("pair_relative", "pair_distance", "memorized"):
            s = _mean_ci([x for x in (_number(r.get(v)) for r in group) if x is not None],
                         level)
            entry["n"] = max(entry.get("n", 0), s.pop("n"))
            entry[v] = s
        table.append(entry)
    final = {}
    for entry in table:
        final[entry[factor]] = entry  # sorted by (N, step): the last one wins
    xs, ys = [], []
    for r in rows:
        n_value = r[factor]
        if (_number(n_value) is not None and n_value > 0
                and r["step"] == final[n_value]["step"]):
            xs.append(math.log2(n_value))
            ys.append(r["pair_relative"])
    trend = _fit(xs, ys, level)
    note = ("no disjoint-halves members (half = 1 rows with pair_relative) in these rows"
            if not rows else
            "pair_relative = mean distance between paired samples (same initial noise) of the "
            "two halves over that between unpaired samples: ~1 for unrelated generators, 0 for "
            "identical ones; trend = least-squares change of pair_relative per doubling of N "
            "at each N's last sampled step")
    return _json({"factor": factor, "level": level, "rows": table,
                  "final": list(final.values()), "trend": trend, "note": note,
                  "reference": KADKHODAIE_2024})


def summarize(loss_rows: Sequence[Mapping[str, Any]], sample_rows: Sequence[Mapping[str, Any]],
              factors: Sequence[str], *, level: float = 0.95, margin: float = 0.05,
              factor: str = "train_size") -> dict:
    """All analyses of a sweep, JSON-ready (``sweep.json["analyses"]``).

    - ``gap_peaks``: peak height and log10 location (EMA where present, ``half = 0``) as
      means over seeds with t-intervals per point and step (:func:`gap_peaks`,
      :func:`over_seeds`).
    - ``memorization_onset`` and ``disjoint_halves``: one entry per slice of the factors
      other than ``factor`` (each with its ``slice``), :func:`memorization_onset`,
      :func:`disjoint_halves`.

    Args:
      loss_rows: rows of ``losses.csv`` (may be empty).
      sample_rows: rows of ``samples.csv`` (may be empty).
      factors: the grid's factor names (``sweep.json["factors"]``).
      level, margin, factor: as in the analyses.

    Example:
      >>> res = summarize([], [], ["train_size"])
      >>> res["gap_peaks"]["height"], res["memorization_onset"], res["disjoint_halves"]
      ([], [], [])
    """
    level = _check_level(level)
    if isinstance(factors, str) or not all(isinstance(f, str) for f in factors):
        raise ValueError(f"factors: expected a list of column names, got {factors!r}")
    factors = list(factors)
    loss_rows, sample_rows = list(loss_rows), list(sample_rows)
    peaks = [r for r in gap_peaks(loss_rows) if _half(r) == 0]
    present = set().union(*(r.keys() for r in peaks)) if peaks else set()
    by = [c for c in dict.fromkeys(["point", "model", *factors, factor, "step"]) if c in present]
    sources = sorted({r["source"] for r in peaks})
    out = {"level": level,
           "gap_peaks": {"by": by, "source": sources,
                         "height": over_seeds(peaks, "peak_gap", by=by, level=level),
                         "log10_sigma": over_seeds(peaks, "peak_log10_sigma", by=by,
                                                   level=level)},
           "memorization_onset": [], "disjoint_halves": []}
    others = [f for f in dict.fromkeys(["model", *factors]) if f != factor]
    others = [f for f in others if sample_rows and all(f in r for r in sample_rows)]
    for key, group in _group(sample_rows, others).items():
        where = dict(zip(others, key, strict=True))
        out["memorization_onset"].append(
            {"slice": where, **memorization_onset(group, margin=margin, level=level,
                                                  factor=factor)})
        if any(_half(r) == 1 for r in group):
            out["disjoint_halves"].append(
                {"slice": where, **disjoint_halves(group, level=level, factor=factor)})
    return _json(out)
