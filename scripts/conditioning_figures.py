"""Tables and figures of docs/conditioning.md from three sweep folders.

Usage: python scripts/conditioning_figures.py [--runs runs] [--out docs]
Reads RUNS/cond_cf, RUNS/cond_mlp, RUNS/guidance_mlp, RUNS/cond_mlp_16k and
RUNS/guidance_mlp_16k (written by ``jaxgap sweep`` with the specs of the same names in
docs/sweeps/: digits_conditions_closed_form.toml, digits_conditions_mlp.toml,
digits_guidance_mlp.toml, digits_conditions_mlp_16k.toml, digits_guidance_mlp_16k.toml) and
writes OUT/conditioning.json, OUT/conditioning.png, OUT/guidance.png and
OUT/conditioning_16k.png. Intervals: 95% t over seeds (jaxgap.sweep.analysis.over_seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxgap.sweep.analysis import over_seeds  # noqa: E402
from jaxgap.sweep.tables import read_csv  # noqa: E402

GRANULARITIES = ("none", "coarse", "class", "fine", "random")


def _last(rows, key="step"):
    last = max(r[key] for r in rows)
    return [r for r in rows if r[key] == last], last


def _peaks(losses, column):
    """Per (condition, guidance, seed): the height and sigma of the largest gap."""
    out = {}
    for r in losses:
        k = (r["condition"], r.get("guidance", 1.0), r["seed"])
        if r[column] is not None and (k not in out or r[column] > out[k][0]):
            out[k] = (r[column], r["sigma"])
    return out


def _table(folder: Path, column: str, step: int | None = None) -> list[dict]:
    """Measures over seeds at ``step`` (None: the last sample step)."""
    samples = read_csv(folder / "samples.csv")
    if step is None:
        samples, step = _last(samples)
    else:
        samples = [r for r in samples if r["step"] == step]
    losses = [r for r in read_csv(folder / "losses.csv") if r["step"] == step]
    peaks = _peaks(losses, column)
    rows = []
    for r in samples:
        h, s = peaks[(r["condition"], r.get("guidance", 1.0), r["seed"])]
        rows.append({**r, "gap_peak": h, "log10_peak_sigma": float(np.log10(s))})
    out = []
    for name in ("memorized", "base_memorized", "dist_train", "base_dist_train",
                 "feat_frechet", "gap_peak", "log10_peak_sigma"):
        by = ["condition", "guidance"] if "guidance" in rows[0] else ["condition"]
        for s in over_seeds(rows, name, by=by):
            out.append({"measure": name, "step": step, **s})
    return out


def _get(table, measure, condition, guidance=None):
    for r in table:
        if r["measure"] == measure and r["condition"] == condition and (
                guidance is None or r.get("guidance", 1.0) == guidance):
            return r
    return None


def _errorbar(ax, x, rows, **kw):
    m = np.array([r["mean"] for r in rows])
    lo, hi = np.array([r["lo"] for r in rows]), np.array([r["hi"] for r in rows])
    ax.errorbar(x, m, yerr=[m - lo, hi - m], capsize=3, **kw)


def _long_figure(long: dict, path: Path) -> None:
    """Memorized fraction per granularity at 4k and 16k steps (w = 1), and against w at 16k
    for class and random labels."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(GRANULARITIES))
    for off, step in ((-0.12, 4000), (0.12, 16000)):
        _errorbar(axes[0], x + off, [_get(long[step], "memorized", g, 1.0)
                                     for g in GRANULARITIES], fmt="o",
                  label=f"{step} steps")
    axes[0].plot(x, [_get(long[16000], "base_memorized", g, 1.0)["mean"]
                     for g in GRANULARITIES], "k_", markersize=14, label="held-out baseline")
    axes[0].set_xticks(x, GRANULARITIES)
    axes[0].set_title("memorized fraction, w = 1")
    ws = (0.0, 1.0, 2.0, 4.0)
    for cond in ("class", "random"):
        _errorbar(axes[1], ws, [_get(long[16000], "memorized", cond, w) for w in ws],
                  fmt="o-", label=f"{cond} labels")
    axes[1].set_xlabel("guidance w")
    axes[1].set_title("memorized fraction at 16k steps")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle("conditional MLPs on digits, N = 512, 3 seeds (95% t-intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs", type=Path)
    p.add_argument("--out", default="docs", type=Path)
    args = p.parse_args()
    cf = _table(args.runs / "cond_cf", "gap")
    mlp = _table(args.runs / "cond_mlp", "ema_gap")
    guid = _table(args.runs / "guidance_mlp", "ema_gap")
    long = {step: _table(args.runs / "cond_mlp_16k", "ema_gap", step)
            + _table(args.runs / "guidance_mlp_16k", "ema_gap", step)
            for step in (0, 4000, 16000)}
    (args.out / "conditioning.json").write_text(json.dumps(
        {"closed_form": cf, "mlp": mlp, "guidance": guid,
         "mlp_16k": {str(k): v for k, v in long.items()}}, indent=1, default=float))
    _long_figure(long, args.out / "conditioning_16k.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(GRANULARITIES))
    for ax, measure, title in ((axes[0], "memorized", "memorized fraction of samples"),
                               (axes[1], "gap_peak", "gap peak height")):
        for off, table, label in ((-0.15, mlp, "MLP (EMA, 4k steps)"),
                                  (0.15, cf, "optimal (closed form)")):
            rs = [_get(table, measure, g) for g in GRANULARITIES]
            m = np.array([r["mean"] for r in rs])
            lo = np.array([r["lo"] for r in rs])
            hi = np.array([r["hi"] for r in rs])
            ax.errorbar(x + off, m, yerr=[m - lo, hi - m], fmt="o", capsize=3, label=label)
        if measure == "memorized":
            base = [_get(mlp, "base_memorized", g)["mean"] for g in GRANULARITIES]
            ax.plot(x, base, "k_", markersize=14, label="held-out baseline")
        ax.set_xticks(x, GRANULARITIES)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle("digits, N = 512, 3 seeds (95% t-intervals)")
    fig.tight_layout()
    fig.savefig(args.out / "conditioning.png", dpi=120)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ws = (0.0, 1.0, 2.0, 4.0)
    for ax, measure, title in ((axes[0], "memorized", "memorized fraction of samples"),
                               (axes[1], "gap_peak", "gap peak height (EMA)")):
        for cond in ("class", "random"):
            rs = [_get(mlp, measure, cond) if w == 1.0 else _get(guid, measure, cond, w)
                  for w in ws]
            m = np.array([r["mean"] for r in rs])
            ax.errorbar(ws, m, yerr=[m - np.array([r["lo"] for r in rs]),
                                     np.array([r["hi"] for r in rs]) - m],
                        fmt="o-", capsize=3, label=f"{cond} labels")
        ax.set_xlabel("guidance w")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle("conditional MLPs on digits, N = 512, 4000 steps, 3 seeds")
    fig.tight_layout()
    fig.savefig(args.out / "guidance.png", dpi=120)
    print(f"wrote {args.out}/conditioning.json, conditioning.png, guidance.png, "
          "conditioning_16k.png")


if __name__ == "__main__":
    main()
