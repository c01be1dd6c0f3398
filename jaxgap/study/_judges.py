r"""The engine of :mod:`jaxgap.study.criteria`: pooling over seeds, per-seed record checks
and the rule of every claim, as pure NumPy functions of measured numbers.

Each ``eval_*(records, crit, name, **kw)`` takes checked per-seed record dicts, a
:class:`~jaxgap.study.criteria.Criteria` and the argument name for error messages, and
returns a :class:`Verdict`: the pooled rule's outcome (without the seed majority, the
minimum number of seeds and the controls, which :mod:`~jaxgap.study.criteria` adds), the
per-seed verdicts, the headline interval and the ``measured`` text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
from scipy import stats

# ----------------------------------------------------------------------------- pooling


class Pooled(NamedTuple):
    """Mean over seeds with its standard error and interval (None where undefined)."""

    n: int
    mean: float
    se: float | None
    lo: float | None
    hi: float | None


def pool(values, ses=None, *, level: float = 0.95) -> Pooled:
    r"""Mean of per-seed values with a Student-t interval.

    With ``n >= 2`` seeds of mean :math:`\bar y`, sample deviation :math:`s` and (optional)
    per-seed standard errors :math:`e_i`,

    .. math:: \mathrm{se} = \max\Big(\frac{s}{\sqrt n}, \frac{\sqrt{\sum_i e_i^2}}{n}\Big),
        \qquad \bar y \pm t_{(1 + \ell)/2,\, n - 1}\, \mathrm{se};

    the floor keeps seeds that agree by chance (or share their noise) from giving an
    interval narrower than their own measurement error. One seed gives
    :math:`y \pm z_{(1+\ell)/2}\, e_1` (no interval without ``ses``); an infinite value
    gives an infinite mean and no interval.

    Args:
      values: ``[n]`` per-seed values (no NaN).
      ses: ``[n]`` their standard errors, or None.
      level: confidence level.

    Returns:
      :class:`Pooled` ``(n, mean, se, lo, hi)``.

    Example:
      >>> p = pool([1.0, 2.0, 3.0, 4.0])
      >>> p.n, p.mean, round(p.lo, 3), round(p.hi, 3)
      (4, 2.5, 0.446, 4.554)
      >>> round(pool([0.1, 0.1, 0.1], [0.02, 0.02, 0.02]).hi, 4)  # floored se
      0.1497
    """
    y = np.asarray(values, np.float64)
    if y.ndim != 1 or y.size == 0 or np.any(np.isnan(y)):
        raise ValueError(f"values: expected a non-empty [n] array without NaN, got {values!r}")
    e = None if ses is None else np.asarray(ses, np.float64)
    if e is not None and (e.shape != y.shape or not np.all(np.isfinite(e) & (e >= 0))):
        raise ValueError(f"ses: expected {y.size} finite standard errors >= 0, got {ses!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level: expected a confidence level in (0, 1), got {level!r}")
    n, mean = int(y.size), float(np.mean(y))
    if not np.all(np.isfinite(y)):
        return Pooled(n, mean, None, None, None)
    if n >= 2:
        se = float(np.std(y, ddof=1)) / math.sqrt(n)
        if e is not None:
            se = max(se, float(np.sqrt(np.sum(e ** 2))) / n)
        q = float(stats.t.ppf(0.5 + level / 2, n - 1))
    elif e is None:
        return Pooled(1, mean, None, None, None)
    else:
        se, q = float(e[0]), NormalDist().inv_cdf(0.5 + level / 2)
    return Pooled(n, mean, se, mean - q * se, mean + q * se)


def _pool(values, ses, level) -> Pooled:
    """:func:`pool` of the defined (not NaN) values; ``n = 0`` when there are none."""
    y = np.asarray(values, np.float64)
    keep = ~np.isnan(y)
    if not np.any(keep):
        return Pooled(0, math.nan, None, None, None)
    e = None if ses is None else np.nan_to_num(np.asarray(ses, np.float64)[keep])
    return pool(y[keep], e, level=level)


def _low(p: Pooled) -> float:
    """The interval's lower end, or the point estimate where there is no interval."""
    return p.mean if p.lo is None else p.lo


def _high(p: Pooled) -> float:
    return p.mean if p.hi is None else p.hi


def _z(diff: float, se: float | None) -> float:
    if se is None or math.isnan(se) or math.isnan(diff):
        return math.nan
    if se > 0:
        return diff / se
    return math.copysign(math.inf, diff) if diff != 0 else 0.0


def _zq(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def _f(x, digits: int = 3) -> str:
    if x is None or math.isnan(float(x)):
        return "n/a"
    return f"{float(x):.{digits}g}"


def _iv(p: Pooled, scale=None) -> str:
    ends = [None if b is None or scale is None else scale(b) for b in (p.lo, p.hi)]
    lo, hi = (p.lo, p.hi) if scale is None else ends
    return f"[{_f(lo)}, {_f(hi)}]"


def _ends(p: Pooled, scale=None) -> tuple:
    return tuple(None if b is None else (b if scale is None else scale(b))
                 for b in (p.lo, p.hi))


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf


def to_json(x):
    """Python scalars (non-finite floats as None), lists and dicts all the way down."""
    if isinstance(x, Mapping):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [to_json(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


# ----------------------------------------------------------------------------- records

def records(data, name: str) -> list[dict]:
    """Per-seed records as dicts: a non-empty sequence of mappings or NamedTuples."""
    if isinstance(data, (Mapping, str, bytes)) or hasattr(data, "_asdict") \
            or not isinstance(data, Sequence):
        raise ValueError(f"{name}: expected a sequence of per-seed records (one seed: a list "
                         f"of one), got {type(data).__name__}")
    if not data:
        raise ValueError(f"{name}: expected at least one seed, got none")
    out = []
    for i, r in enumerate(data):
        r = r._asdict() if hasattr(r, "_asdict") else r
        if not isinstance(r, Mapping):
            raise ValueError(f"{name}[{i}]: expected a mapping or NamedTuple, got "
                             f"{type(r).__name__}")
        out.append(dict(r))
    return out


def _need(r: dict, keys, where: str) -> None:
    missing = [k for k in keys if k not in r]
    if missing:
        raise ValueError(f"{where}: expected the keys {list(keys)}, missing {missing}")


def _num(r: dict, key: str, where: str) -> float:
    """A number; None (a missing measurement) gives NaN."""
    v = r[key]
    if v is None:
        return math.nan
    if isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}['{key}']: expected a number, got {v!r}")
    return float(v)


def _arr(r: dict, key: str, where: str, shape=None) -> np.ndarray:
    try:
        a = np.asarray(r[key], np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}['{key}']: expected numbers, got {r[key]!r}") from err
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{where}['{key}']: expected shape {list(shape)}, got {list(a.shape)}")
    return a


class Verdict(NamedTuple):
    """One judge's outcome on one set of records (see the module docstring)."""

    pooled_ok: bool
    per_seed: list
    interval: tuple
    estimate: float
    measured: str
    extra: dict


def supporting(per_seed) -> int:
    return sum(bool(s["supported"]) for s in per_seed)


def majority(v: Verdict) -> bool:
    """More than half of the seeds support the claim on their own."""
    return 2 * supporting(v.per_seed) > len(v.per_seed)


def _seeds_text(per_seed) -> str:
    return f"{supporting(per_seed)} of {len(per_seed)} seeds support it on their own"


# ----------------------------------------------------------------------------- gap claims

def eval_gap_peak(recs, crit, name, *, sigma_min, sigma_data) -> Verdict:
    c, level = crit.gap_peak, crit.pooling.level
    lo_s, hi_s = c.low_factor * float(sigma_min), c.high_factor * float(sigma_data)
    grid, gaps, ses = None, [], []
    for i, r in enumerate(recs):
        where = f"{name}[{i}]"
        _need(r, ("sigmas", "gap", "gap_se"), where)
        s = _arr(r, "sigmas", where)
        if s.ndim != 1 or s.size < 3 or not np.all(s > 0):
            raise ValueError(f"{where}['sigmas']: expected [K >= 3] values > 0, got "
                             f"{r['sigmas']!r}")
        order = np.argsort(s)
        if grid is None:
            grid = s[order]
        elif s.size != grid.size or not np.allclose(s[order], grid, rtol=1e-6):
            raise ValueError(f"{where}['sigmas']: expected the sigma grid of {name}[0], got "
                             f"another one")
        gaps.append(_arr(r, "gap", where, s.shape)[order])
        ses.append(_arr(r, "gap_se", where, s.shape)[order])
    G, E, last = np.array(gaps), np.array(ses), grid.size - 1
    G = np.where(np.isfinite(G), G, np.nan)
    per_seed = []
    for i, (g, e) in enumerate(zip(G, E, strict=True)):
        k = int(np.nanargmax(g)) if np.any(np.isfinite(g)) else None
        z = math.nan if k is None else min(_z(g[k] - g[j], math.hypot(e[k], e[j]))
                                           for j in (0, last))
        sig = math.nan if k is None else float(grid[k])
        per_seed.append({"seed": recs[i].get("seed", i), "peak_sigma": sig, "z": z,
                         "supported": bool(lo_s <= sig <= hi_s and z >= c.z_peak)})
    cols = np.isfinite(G).any(axis=0)
    mean_curve = np.where(cols, np.nanmean(np.where(cols, G, 0.0), axis=0), -np.inf)
    k = int(np.argmax(mean_curve))
    ends = []
    for j in (0, last):
        p = _pool(G[:, k] - G[:, j], np.hypot(E[:, k], E[:, j]), level)
        ends.append((_z(p.mean, p.se), p, j))
    z, p, _ = min(ends, key=lambda t: -math.inf if math.isnan(t[0]) else t[0])
    inside = bool(lo_s <= grid[k] <= hi_s)
    pooled_ok = inside and z >= c.z_peak and _low(p) > 0
    loc = _pool(np.log10([s["peak_sigma"] for s in per_seed]), None, level)
    measured = (
        f"the mean curve of {len(recs)} seed(s) peaks at sigma = {_f(grid[k])} "
        f"({'inside' if inside else 'outside'} [{_f(lo_s)}, {_f(hi_s)}]); its excess "
        + ", ".join(f"over sigma = {_f(grid[j])}: {_f(q.mean)} ({_f(zz, 2)} pooled se)"
                    for zz, q, j in ends)
        + f"; {100 * level:g}% interval of the smaller {_iv(p)}; per-seed peaks at sigma "
        f"{', '.join(_f(s['peak_sigma']) for s in per_seed)} with z = "
        f"{', '.join(_f(s['z'], 2) for s in per_seed)}; {_seeds_text(per_seed)}")
    return Verdict(pooled_ok, per_seed, _ends(p), p.mean, measured,
                   {"peak_sigma": float(grid[k]), "z": z,
                    "location_interval": list(_ends(loc, lambda b: 10.0 ** b))})


def eval_gap_grows(recs, crit, name) -> Verdict:
    c, level = crit.gap_grows, crit.pooling.level
    keys = ("gap_max_first", "gap_max_first_se", "gap_max_last", "gap_max_last_se")
    d, e, per_seed = [], [], []
    for i, r in enumerate(recs):
        where = f"{name}[{i}]"
        _need(r, keys, where)
        first, first_se, last, last_se = (_num(r, k, where) for k in keys)
        d.append(last - first)
        e.append(math.hypot(first_se, last_se))
        z = _z(d[-1], e[-1])
        per_seed.append({"seed": r.get("seed", i), "growth": d[-1], "z": z,
                         "supported": bool(z >= c.z_growth)})
    p = _pool(d, e, level)
    z = _z(p.mean, p.se)
    measured = (f"the largest gap grows by {_f(p.mean)} ({_f(z, 2)} pooled se; "
                f"{100 * level:g}% interval {_iv(p)}) over {p.n} seed(s) with an evaluation "
                f"after step 0; per seed z = {', '.join(_f(s['z'], 2) for s in per_seed)}; "
                f"{_seeds_text(per_seed)}")
    return Verdict(z >= c.z_growth and _low(p) > 0, per_seed, _ends(p), p.mean, measured,
                   {"z": z})


# ----------------------------------------------------------------------------- copying

COPY_KEYS = ("num", "ratio_rule", "flagged", "base_num", "base_ratio_rule", "base_flagged")


def _fraction(r, key, num_key, where) -> tuple[float, float]:
    """``(fraction, Agresti-Coull se)``: ``p~ = (x + 2) / (n + 4)``,
    ``se = sqrt(p~ (1 - p~) / (n + 4))`` (no zero se at 0 or n copies of n)."""
    p, n = _num(r, key, where), _num(r, num_key, where)
    if not (0 <= p <= 1) or not (n >= 1):
        raise ValueError(f"{where}: expected '{key}' a fraction in [0, 1] and '{num_key}' "
                         f">= 1, got {r[key]!r} and {r[num_key]!r}")
    pt = (p * n + 2) / (n + 4)
    return p, math.sqrt(pt * (1 - pt) / (n + 4))


def eval_no_copy(recs, crit, name) -> Verdict:
    c, level = crit.copying, crit.pooling.level
    diffs = {"ratio_rule": [], "flagged": []}
    per_seed = []
    for i, r in enumerate(recs):
        where = f"{name}[{i}]"
        _need(r, COPY_KEYS, where)
        row = {"seed": r.get("seed", i)}
        for det, d in diffs.items():
            p, se_p = _fraction(r, det, "num", where)
            b, se_b = _fraction(r, f"base_{det}", "base_num", where)
            d.append((p - b, math.hypot(se_p, se_b)))
            row[det] = p - b
            row[f"{det}_high"] = p - b + _zq(level) * d[-1][1]
        row["supported"] = all(row[f"{det}_high"] < c.margin for det in diffs)
        per_seed.append(row)
    pooled = {det: _pool(*zip(*d, strict=True), level) for det, d in diffs.items()}
    text = "; ".join(f"{label} {_f(pooled[det].mean)} {_iv(pooled[det])}" for label, det in
                     (("1/3 rule", "ratio_rule"), ("noisy-copy detector", "flagged")))
    measured = (f"copy fraction minus the held-out baseline over {len(recs)} seed(s), "
                f"{100 * level:g}% intervals against the margin {c.margin:g}: {text}; "
                f"{_seeds_text(per_seed)}")
    p = pooled["flagged"]
    return Verdict(all(_high(q) < c.margin for q in pooled.values()), per_seed, _ends(p),
                   p.mean, measured,
                   {"intervals": {det: list(_ends(q)) for det, q in pooled.items()}})


def eval_copies(recs, crit, name) -> Verdict:
    c, level = crit.copying, crit.pooling.level
    vals, per_seed = [], []
    for i, r in enumerate(recs):
        where = f"{name}[{i}]"
        _need(r, ("num", "flagged"), where)
        p, se = _fraction(r, "flagged", "num", where)
        vals.append((p, se))
        per_seed.append({"seed": r.get("seed", i), "flagged": p,
                         "supported": p - _zq(level) * se >= c.copy_high})
    p = _pool(*zip(*vals, strict=True), level)
    measured = (f"flagged (copy) fraction {_f(p.mean)}, {100 * level:g}% interval {_iv(p)} "
                f"over {p.n} seed(s); {_seeds_text(per_seed)}")
    return Verdict(_low(p) >= c.copy_high, per_seed, _ends(p), p.mean, measured, {})


# ----------------------------------------------------------------------------- domain

DOMAIN_KEYS = ("sigmas", "quantiles", "states", "noisy_train", "noisy_val")


def eval_domain(recs, crit, name, *, sigma_min, sigma_data) -> Verdict:
    c, level = crit.domain, crit.pooling.level
    lo_s, hi_s = c.low_factor * float(sigma_min), c.high_factor * float(sigma_data)
    values, per_seed = [], []
    for i, r in enumerate(recs):
        where = f"{name}[{i}]"
        _need(r, DOMAIN_KEYS, where)
        s, q = _arr(r, "sigmas", where), _arr(r, "quantiles", where)
        if s.ndim != 1 or q.ndim != 1:
            raise ValueError(f"{where}: expected 'sigmas' [K] and 'quantiles' [Q], got shapes "
                             f"{list(s.shape)} and {list(q.shape)}")
        idx = []
        for lv in (c.band_low, 0.5, c.band_high):
            hit = np.flatnonzero(np.isclose(q, lv, rtol=0.0, atol=1e-6))
            if not hit.size:
                raise ValueError(f"{where}['quantiles']: expected the levels {c.band_low:g}, "
                                 f"0.5 and {c.band_high:g}, got {q.tolist()}")
            idx.append(int(hit[0]))
        ql, qm, qh = idx
        st, tr, va = (_arr(r, k, where, (s.size, q.size)) for k in DOMAIN_KEYS[2:])
        use = (s >= lo_s) & (s <= hi_s) & (va[:, ql] > tr[:, qh])
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = ((np.log(st[:, qm]) - np.log(tr[:, qm]))
                   / (np.log(va[:, qm]) - np.log(tr[:, qm])))
        outside = bool(np.all(st[use, qm] > tr[use, qh]))
        mean_pos = float(np.mean(pos[use])) if use.any() else math.nan
        values.append(mean_pos)
        per_seed.append({"seed": r.get("seed", i), "sigmas": s[use], "position": pos[use],
                         "ratio_to_val": st[use, qm] / va[use, qm], "outside_train": outside,
                         "mean_position": mean_pos,
                         "supported": bool(use.any() and outside
                                           and mean_pos >= c.position_min)})
    p = _pool(values, None, level)
    first = per_seed[0]
    measured = (f"mean position of the trajectories' median between the bands (log scale; "
                f"0: noisy-train median, 1: noisy-validation median) at the informative "
                f"sigmas: {_f(p.mean)}, {100 * level:g}% interval {_iv(p)} over {p.n} "
                f"seed(s); seed {first['seed']}: sigma "
                f"{', '.join(_f(x) for x in first['sigmas']) or 'none'} -> position "
                f"{', '.join(_f(x, 2) for x in first['position']) or 'n/a'}, median / "
                f"noisy-validation median "
                f"{', '.join(_f(x, 2) for x in first['ratio_to_val']) or 'n/a'}; "
                f"{_seeds_text(per_seed)}")
    return Verdict(_low(p) >= c.position_min, per_seed, _ends(p), p.mean, measured, {})


# ----------------------------------------------------------------------------- quality

QUALITY_KEYS = ("frechet", "precision", "base_frechet", "base_precision")


def _eval_quality(recs, crit, name):
    c, level = crit.generalization, crit.pooling.level
    log_ratio, prec, per_seed = [], [], []
    for i, r in enumerate(recs):
        where = f"{name}[{i}]"
        _need(r, QUALITY_KEYS, where)
        f, p, fb, pb = (_num(r, k, where) for k in QUALITY_KEYS)
        ratio = f / fb if fb > 0 else (math.inf if f > 0 else (1.0 if f == 0 else math.nan))
        pr = p / pb if pb > 0 else math.nan
        log_ratio.append(math.log(ratio) if ratio > 0 else (math.nan if math.isnan(ratio)
                                                             else -math.inf))
        prec.append(pr)
        per_seed.append({"frechet_ratio": ratio, "precision_ratio": pr,
                         "supported": ratio <= c.frechet_ratio_max
                         and pr >= c.precision_ratio_min})
    pf, pp = _pool(log_ratio, None, level), _pool(prec, None, level)
    ok = _high(pf) <= math.log(c.frechet_ratio_max) and _low(pp) >= c.precision_ratio_min
    text = (f"Frechet distance / baseline's {_f(_exp(pf.mean) if pf.n else math.nan)} "
            f"{_iv(pf, _exp)}, precision / baseline's {_f(pp.mean)} {_iv(pp)}")
    return ok, per_seed, pf, pp, text


def eval_generalization(recs, crit, name) -> Verdict:
    copy = eval_no_copy(recs, crit, name)
    ok, quality, pf, pp, text = _eval_quality(recs, crit, name)
    per_seed = [{**c, **q, "copies_ok": c["supported"], "quality_ok": q["supported"],
                 "supported": c["supported"] and q["supported"]}
                for c, q in zip(copy.per_seed, quality, strict=True)]
    measured = (f"copying: {copy.measured.split(': ', 1)[1].rsplit('; ', 1)[0]}; quality "
                f"({100 * crit.pooling.level:g}% intervals over {len(recs)} seed(s)): {text}; "
                f"{_seeds_text(per_seed)}")
    interval = _ends(pf, _exp)
    return Verdict(copy.pooled_ok and ok, per_seed, interval,
                   _exp(pf.mean) if pf.n else math.nan, measured,
                   {"components": {"copying": {"supported": copy.pooled_ok,
                                               **copy.extra},
                                   "quality": {"supported": ok,
                                               "frechet_ratio": list(interval),
                                               "precision_ratio": list(_ends(pp))}}})


# ----------------------------------------------------------------------------- smoothing

SMOOTHING_KEYS = ("sigma", "sharpness_network", "sharpness_optimal", "fit_residual", "delta",
                  "delta_low", "delta_high")


def eval_smoothing(recs, crit, name, *, sigma_min) -> Verdict:
    c, level = crit.smoothing, crit.pooling.level
    log_ratio, resid, per_seed = [], [], []
    for i, r in enumerate(recs):
        where = f"{name}[{i}]"
        _need(r, SMOOTHING_KEYS, where)
        sig, s_net, s_opt, res, delta, d_lo, d_hi = (_num(r, k, where)
                                                     for k in SMOOTHING_KEYS)
        ratio = s_net / s_opt if s_opt > 0 else math.nan
        log_ratio.append(math.log(ratio) if ratio > 0 else math.nan)
        resid.append(res)
        checks = {"intermediate": sig >= c.low_factor * float(sigma_min),
                  "optimal_sharp": s_opt >= c.optimal_sharpness_min,
                  "smoother": ratio <= c.sharpness_ratio_max,
                  "fits": res <= c.fit_residual_max, "delta_resolved": d_lo > 0}
        per_seed.append({"seed": r.get("seed", i), "sigma": sig, "sharpness_ratio": ratio,
                         "fit_residual": res, "delta": delta, "delta_range": [d_lo, d_hi],
                         **checks, "supported": all(checks.values())})
    pr, pres = _pool(log_ratio, None, level), _pool(resid, None, level)
    ok = (_high(pr) <= math.log(c.sharpness_ratio_max) and _high(pres) <= c.fit_residual_max)
    failing = sorted({k for s in per_seed for k in ("intermediate", "optimal_sharp",
                                                      "smoother", "fits", "delta_resolved")
                      if not s[k]})
    ranges = ", ".join(f"[{_f(s['delta_range'][0])}, {_f(s['delta_range'][1])}]"
                       for s in per_seed)
    measured = (f"network / optimal sharpness at the gap-peak sigma "
                f"{_f(_exp(pr.mean) if pr.n else math.nan)} {_iv(pr, _exp)}, toy-fit residual "
                f"{_f(pres.mean)} {_iv(pres)} ({100 * level:g}% intervals over {len(recs)} "
                f"seed(s)); delta {', '.join(_f(s['delta']) for s in per_seed)} (fits within "
                f"{c.delta_sse_factor:g} x the best: {ranges})"
                + (f"; failing per-seed checks: {', '.join(failing)}" if failing else "")
                + f"; {_seeds_text(per_seed)}")
    return Verdict(ok, per_seed, _ends(pr, _exp), _exp(pr.mean) if pr.n else math.nan,
                   measured, {"fit_residual_interval": list(_ends(pres))})


# ----------------------------------------------------------------------------- factors

def eval_factor(recs, crit, name) -> Verdict:
    margin, level = crit.factors.margin, crit.pooling.level
    diffs, per_seed = [], []
    for i, r in enumerate(recs):
        where = f"{name}[{i}]"
        _need(r, ("high", "high_num", "low", "low_num"), where)
        hi, se_hi = _fraction(r, "high", "high_num", where)
        lo, se_lo = _fraction(r, "low", "low_num", where)
        d, se = hi - lo, math.hypot(se_hi, se_lo)
        diffs.append((d, se))
        per_seed.append({"seed": r.get("seed", i), "high": hi, "low": lo, "difference": d,
                         "supported": d - _zq(level) * se > margin})
    p = _pool(*zip(*diffs, strict=True), level) if diffs else _pool([], None, level)
    measured = (f"memorized fraction higher level - lower level {_f(p.mean)}, "
                f"{100 * level:g}% interval {_iv(p)} over {p.n} seed(s) (higher "
                f"{', '.join(_f(s['high']) for s in per_seed)}; lower "
                f"{', '.join(_f(s['low']) for s in per_seed)}); {_seeds_text(per_seed)}")
    return Verdict(_low(p) > margin, per_seed, _ends(p), p.mean, measured, {})
