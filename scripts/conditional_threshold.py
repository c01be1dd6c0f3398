"""Per-condition memorization thresholds on digits: the REM prediction against measurement.

For each granularity of ``jaxgap.data.GRANULARITIES`` (``none``, ``coarse``, ``class``,
``fine``, ``random``) on the full digits training set (1497 points, d = 64):

1. the per-example training loss of the optimal conditional denoiser
   ``ConditionalEmpiricalDenoiser(train, train_cond)`` on a sigma grid (and the validation
   loss, for the conditional gap curve);
2. the *measured* onset of each condition's train-loss collapse, defined before any digits
   run (``jaxgap.theory.loss_onset``): the largest sigma at which the condition's mean
   training loss is below 1/2 of the non-memorized REM curve
   ``s_c^2 sigma^2 / (s_c^2 + sigma^2)`` (``ConditionStats.annealed_loss``; ``s_c`` the
   condition's within-condition spread), interpolated in log sigma; also at 1/4 and 3/4
   (the width of the smeared transition), and a bootstrap standard error over the
   condition's training points;
3. a reference-free observable, added after the first run showed that the loss onset
   depends on the reference curve (digits are anisotropic, so their non-memorized loss lies
   below the isotropic ``s_c^2 sigma^2 / (s_c^2 + sigma^2)``): a training query is
   *memorized* when its own point carries at least half of the posterior weight (the REM's
   statement itself); per condition, the fraction of memorized queries ``m_c(sigma)``
   (``num_noise`` draws of the same noise law) and its onset, the largest sigma with
   ``m_c > 1/2``; the aggregate ``sum_c N_c m_c / N`` is what
   ``ConditionalThresholds.memorized_fraction`` predicts; and the edge of the conditional
   gap's plateau, the largest sigma at which the gap exceeds half its small-sigma value;
4. three *predictions* from ``jaxgap.theory.conditional_thresholds`` (REM, delta = 0):
   ``spread`` (primary: ``N_c``, d = 64, ``s_c``), ``counts`` (``N_c``, d = 64, the data's
   overall spread: the counts alone), ``effective_dim`` (exploratory: ``N_c``, ``d_c`` = the
   participation ratio of the condition's covariance, rounded, with the spread rescaled so
   the total variance is kept, ``s_c sqrt(64 / d_c)``).

Writes ``conditional_threshold.json`` (every number, the run time) and
``conditional_threshold.png`` into ``--out`` (default ``docs``). About a minute on 2 CPU
cores.

    python scripts/conditional_threshold.py --out docs
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxgap import data, noise
from jaxgap._io import write_bytes, write_text
from jaxgap.denoisers import ConditionalEmpiricalDenoiser
from jaxgap.losses import per_example_loss
from jaxgap.theory import condition_stats, conditional_thresholds, loss_onset

FRACTIONS = (0.25, 0.5, 0.75)
PREDICTORS = ("spread", "counts", "effective_dim")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(1, x.size + 1)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(a, b) -> float | None:
    """Spearman rank correlation over finite pairs; None below 3 pairs or a constant side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return None
    ra, rb = _ranks(a[ok]), _ranks(b[ok])
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Count-weighted median: the sigma below which half of the training examples'
    conditions are memorized (values sorted descending, first cumulative weight >= 1/2)."""
    order = np.argsort(-values)
    cum = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][np.searchsorted(cum, 0.5)])


def _onsets(sigmas, loss, ref):
    return {f: loss_onset(sigmas, loss, ref, fraction=f) for f in FRACTIONS}


def _bootstrap_se(rng, sigmas, per, ids, stats, num_rep=200):
    """Standard error of each condition's 1/2-onset, resampling its training points."""
    ref = stats.annealed_loss(sigmas)
    out = np.full(stats.counts.size, np.nan)
    for c in range(stats.counts.size):
        cols = np.flatnonzero(ids == c)
        draws = rng.integers(0, cols.size, size=(num_rep, cols.size))
        loss = per[:, cols][:, draws].mean(axis=-1).T  # [num_rep, K]
        vals = loss_onset(sigmas, loss, ref[c][None, :])
        out[c] = np.nanstd(vals, ddof=1) if np.isfinite(vals).sum() > 1 else np.nan
    return out


def _self_memorized(key, den, train, ids, sigmas, num_noise):
    """``[K, n]`` fraction of ``num_noise`` noisy copies of each training point whose own
    point carries >= 1/2 of the conditional posterior weight (then it is the largest weight:
    ``nearest == i`` and ``max_weight >= 1/2``)."""
    n, d = train.shape
    x0 = jnp.asarray(train)
    cond = jnp.broadcast_to(jnp.asarray(ids, jnp.int32), (num_noise, n))
    own = np.arange(n)[None, :]
    out = np.empty((sigmas.size, n))
    for k, s in enumerate(sigmas):
        eps = jax.random.normal(jax.random.fold_in(key, k), (num_noise, n, d))
        sig = jnp.asarray(s, jnp.float32)
        st = den.posterior_stats(x0[None] + sig * eps, sig, cond)
        hit = (np.asarray(st.nearest) == own) & (np.asarray(st.max_weight) >= 0.5)
        out[k] = hit.mean(axis=0)
    return out


def _granularity(ds, granularity, sigmas, key, num_noise, overall_spread, rng):
    dsg = ds.with_conditions(granularity)
    train, ids = dsg.train, dsg.train_cond
    data.check_conditions(ids, dsg.val_cond)
    d = train.shape[1]
    t0 = time.time()
    den = ConditionalEmpiricalDenoiser(train, ids, num_conditions=dsg.num_conditions)
    per = np.asarray(per_example_loss(key, den, train, sigmas, cond=ids, num_noise=num_noise),
                     np.float64)
    per_val = np.asarray(per_example_loss(key, den, dsg.val, sigmas, cond=dsg.val_cond,
                                          num_noise=num_noise), np.float64)
    mem = _self_memorized(jax.random.fold_in(key, 1), den, train, ids, sigmas, num_noise)
    seconds_mc = time.time() - t0

    stats = condition_stats(train, ids, num_conditions=dsg.num_conditions)
    counts = stats.counts
    if counts.min() < 2:
        raise SystemExit(f"{granularity}: a condition with fewer than 2 training points")
    loss = np.stack([per[:, ids == c].mean(axis=1) for c in range(counts.size)])
    ref = stats.annealed_loss(sigmas)
    measured = _onsets(sigmas, loss, ref)
    se = _bootstrap_se(rng, sigmas, per, ids, stats)
    mem_c = np.stack([mem[:, ids == c].mean(axis=1) for c in range(counts.size)])
    onset_w = loss_onset(sigmas, 1.0 - mem_c, 1.0)  # largest sigma with m_c > 1/2

    d_eff = np.maximum(1, np.rint(stats.effective_dim)).astype(np.int64)
    predicted = {
        "spread": conditional_thresholds(counts, d, scale=stats.spread),
        "counts": conditional_thresholds(counts, d, scale=overall_spread),
        "effective_dim": conditional_thresholds(counts, d_eff,
                                                scale=stats.spread * np.sqrt(d / d_eff)),
    }
    m = measured[0.5]
    below = loss / ref < 0.5  # [C, K]
    frac_measured = (below * counts[:, None]).sum(axis=0) / counts.sum()
    rows = []
    for c in range(counts.size):
        rows.append({
            "condition": c, "count": int(counts[c]), "val_count": int((dsg.val_cond == c).sum()),
            "spread": float(stats.spread[c]), "effective_dim": float(stats.effective_dim[c]),
            "measured": float(m[c]), "measured_se": float(se[c]),
            "measured_q25": float(measured[0.25][c]), "measured_q75": float(measured[0.75][c]),
            "measured_self_weight": float(onset_w[c]),
            **{f"predicted_{p}": float(predicted[p].sigma_memorize[c]) for p in PREDICTORS},
        })
    summary = {
        "granularity": granularity, "num_conditions": int(counts.size),
        "median_count": float(np.median(counts)), "min_count": int(counts.min()),
        "max_count": int(counts.max()), "median_spread": float(np.median(stats.spread)),
        "median_effective_dim": float(np.median(stats.effective_dim)),
        "censored": int(np.sum(~np.isfinite(m) | (m >= sigmas[-1]))),
        "measured_median": float(np.median(m)),
        "measured_weighted_median": weighted_median(m, counts),
        "measured_self_weight_median": float(np.median(onset_w)),
        "measured_self_weight_weighted_median": weighted_median(onset_w, counts),
        "seconds_monte_carlo": round(seconds_mc, 1),
    }
    for p in PREDICTORS:
        pred = predicted[p].sigma_memorize
        summary[f"predicted_{p}_median"] = float(np.median(pred))
        summary[f"predicted_{p}_weighted_median"] = weighted_median(pred, counts)
        summary[f"ratio_{p}_median"] = float(np.median(m / pred))  # measured / predicted
        summary[f"ratio_{p}_min"] = float(np.min(m / pred))
        summary[f"ratio_{p}_max"] = float(np.max(m / pred))
        summary[f"spearman_{p}"] = spearman(pred, m)
        summary[f"ratio_{p}_self_weight_median"] = float(np.median(onset_w / pred))
        summary[f"spearman_{p}_self_weight"] = spearman(pred, onset_w)
    summary["spearman_count"] = spearman(-counts, m)  # fewer points, later onset?
    curves = {
        "train": loss.T @ counts / counts.sum(),
        "val": per_val.mean(axis=1),
        "memorized_fraction_loss": frac_measured,
        "memorized_fraction_self_weight": mem.mean(axis=1),
        **{f"memorized_fraction_{p}": predicted[p].memorized_fraction(sigmas)
           for p in PREDICTORS},
    }
    curves["gap"] = curves["val"] - curves["train"]
    # The gap's plateau edge: largest sigma with gap > 1/2 of its value at the smallest sigma.
    summary["gap_plateau"] = float(curves["gap"][0])
    summary["gap_half_sigma"] = float(loss_onset(sigmas, 1.0 - curves["gap"] / curves["gap"][0],
                                                 1.0))
    curves = {k: np.asarray(v).round(6).tolist() for k, v in curves.items()}
    return summary, rows, curves


def _figure(out: Path, sigmas, results) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(data.GRANULARITIES, ("k", "tab:blue", "tab:orange", "tab:green",
                                              "tab:red"), strict=True))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    lo, hi = np.inf, 0.0
    for g, res in results.items():
        rows = res["conditions"]
        pred = np.array([r["predicted_spread"] for r in rows])
        meas = np.array([r["measured"] for r in rows])
        se = np.array([r["measured_se"] for r in rows])
        selfw = np.array([r["measured_self_weight"] for r in rows])
        ax.errorbar(pred, meas, yerr=se, fmt="o", ms=5, color=colours[g], alpha=0.8,
                    label=f"{g}")
        ax.plot(pred, selfw, "s", ms=5, mfc="none", color=colours[g], alpha=0.8)
        lo = min(lo, np.nanmin(meas), np.nanmin(pred), np.nanmin(selfw))
        hi = max(hi, np.nanmax(meas), np.nanmax(pred), np.nanmax(selfw))
    span = np.array([lo / 1.2, hi * 1.2])
    ax.plot(span, span, "k-", lw=0.8, label="measured = predicted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted threshold (REM: N_c, d = 64, within-condition s_c)")
    ax.set_ylabel("measured onset")
    ax.set_title("per condition. o: train loss < 1/2 annealed (pre-registered);\n"
                 "squares: own-point weight >= 1/2 for half the queries (post hoc)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1]
    for g, res in results.items():
        cur = res["curves"]
        ax.plot(sigmas, cur["memorized_fraction_self_weight"], "-", color=colours[g], label=g)
        ax.plot(sigmas, cur["memorized_fraction_loss"], ":", color=colours[g])
        ax.step(sigmas, cur["memorized_fraction_spread"], "--", where="post", color=colours[g],
                alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("sigma")
    ax.set_ylabel("fraction of training examples memorized")
    ax.set_title("aggregate. solid: own-point weight >= 1/2, dotted: loss criterion,\n"
                 "dashed: REM prediction sum_c N_c [sigma < sigma_c] / N", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[2]
    for g, res in results.items():
        ax.plot(sigmas, res["curves"]["gap"], "-", color=colours[g], label=g)
        ax.axvline(res["summary"]["predicted_spread_weighted_median"], color=colours[g],
                   lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("sigma")
    ax.set_ylabel("conditional gap  L_val - L_train")
    ax.set_title("optimal conditional denoiser on digits\n(dashed: count-weighted median of "
                 "the predicted thresholds)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(out / "conditional_threshold.png", buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs")
    parser.add_argument("--num-sigmas", type=int, default=32)
    parser.add_argument("--num-noise", type=int, default=4, help="noise draws per example")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    ds = data.load("digits")
    sigmas = np.asarray(noise.log_sigmas(args.num_sigmas, 0.03, 30.0), np.float64)
    key = jax.random.PRNGKey(0)
    rng = np.random.default_rng(0)
    overall_spread = float(condition_stats(ds.train, np.zeros(ds.num_train, np.int64)).spread[0])
    results = {}
    for g in data.GRANULARITIES:
        summary, rows, curves = _granularity(ds, g, sigmas, key, args.num_noise,
                                             overall_spread, rng)
        results[g] = {"summary": summary, "conditions": rows, "curves": curves}
        print(f"{g:>7}: C = {summary['num_conditions']:2d}, median N_c = "
              f"{summary['median_count']:6.1f}, measured median {summary['measured_median']:.3f},"
              f" predicted (s_c) {summary['predicted_spread_median']:.3f}, ratio "
              f"{summary['ratio_spread_median']:.3f}, spearman {summary['spearman_spread']}; "
              f"self-weight median {summary['measured_self_weight_median']:.3f}, spearman "
              f"{summary['spearman_spread_self_weight']}",
              flush=True)
    _figure(out, sigmas, results)
    seconds = time.time() - t_start
    record = {
        "setup": {
            "data": "digits", "num_train": ds.num_train, "num_val": ds.num_val,
            "dim": int(ds.train.shape[1]), "overall_spread": overall_spread,
            "sigmas": sigmas.round(6).tolist(), "num_noise": args.num_noise, "key": 0,
            "onset": "largest sigma with mean train loss < fraction * s_c^2 sigma^2 / "
                     "(s_c^2 + sigma^2), log-interpolated (jaxgap.theory.loss_onset); "
                     "measured = fraction 1/2",
            "predictors": {
                "spread": "conditional_thresholds(N_c, 64, scale=s_c) (primary)",
                "counts": "conditional_thresholds(N_c, 64, scale=overall spread)",
                "effective_dim": "conditional_thresholds(N_c, round(PR_c), "
                                 "scale=s_c sqrt(64 / round(PR_c))) (exploratory)",
            },
            "self_weight": "post hoc: largest sigma at which more than half of the "
                           "condition's noisy training queries have their own point's "
                           "posterior weight >= 1/2 (noise: fold_in(fold_in(key, 1), k))",
            "bootstrap": "200 resamples of each condition's training points, numpy seed 0",
        },
        "results": results,
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, jax {jax.__version__}, "
                   f"{jax.devices()[0].platform}",
    }
    write_text(out / "conditional_threshold.json", json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}/conditional_threshold.json and .png in {seconds:.1f} s")


if __name__ == "__main__":
    main()
