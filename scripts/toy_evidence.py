"""Evidence for the error-prone toy model on digits (issue: theory), at real sizes.

Runs, with one key (common random numbers throughout):

1. a sweep over the position error ``delta`` of ``PositionError`` on the full digits training
   set: gap curves, peak location and height, memorized fraction of samples;
2. the gap against the training-set size ``N`` at fixed ``delta``;
3. where the first-order (and second-order) prediction in ``delta^2`` holds;
4. ``delta`` fitted (least squares in log sigma) to a trained MLP's final EMA gap curve
   (the network is trained first, into ``OUT/net``, unless it is there already);
5. 2-D stream plots of the optimal and the error-prone flow fields.

Writes ``evidence.json`` (every number), ``tables.md`` and the figures into ``--out``.
About 90 s on 2 CPU cores (a third of it training the network).

    python scripts/toy_evidence.py --out runs/toy_evidence
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from jaxgap import data, noise
from jaxgap.losses import curve_peak
from jaxgap.report import theory_plots as tp
from jaxgap.theory import evidence as ev
from jaxgap.train import TrainConfig, load_data, read_metrics, train_and_evaluate


def _train_net(run: Path, steps: int) -> TrainConfig:
    cfg = TrainConfig(data="digits", train_size=128, steps=steps, eval_every=500,
                      ckpt_every=steps, seed=0)
    done = run.exists() and read_metrics(run) and read_metrics(run)[-1]["step"] >= steps
    if not done:
        train_and_evaluate(cfg, run, resume=run.exists(), progress=True)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/toy_evidence")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of the net")
    parser.add_argument("--samples", type=int, default=512, help="samples per delta")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    ds = data.load("digits")
    sigmas = np.asarray(noise.log_sigmas(24, 0.01, 20.0))
    key = jax.random.PRNGKey(0)
    times, res = {}, {}

    t = time.time()
    sweep = ev.delta_sweep(key, ds.train, ds.val, [0.0, 0.05, 0.1, 0.2, 0.3, 0.6, 1.0], sigmas,
                           num_samples=args.samples)
    times["sweep"] = time.time() - t
    res["sweep"] = sweep.to_dict()

    t = time.time()
    sizes = ev.gap_vs_train_size(key, ds, [64, 128, 256, 512, 1024, ds.train.shape[0]], 0.3,
                                 sigmas)
    times["sizes"] = time.time() - t
    res["sizes"] = sizes.to_dict()

    t = time.time()
    first = {d: ev.first_order_gap(key, ds.train, ds.val, d, sigmas) for d in (0.1, 0.3)}
    times["first_order"] = time.time() - t
    res["first_order"] = {str(d): f.to_dict() for d, f in first.items()}

    t = time.time()
    cfg = _train_net(out / "net", args.steps)
    times["train"] = time.time() - t
    row = read_metrics(out / "net")[-1]
    target = {"sigmas": np.asarray(row["sigmas"]), "gap": np.asarray(row["ema_gap"]),
              "gap_se": np.asarray(row["ema_gap_se"])}
    net_ds = load_data(cfg)  # the same 128-image split the network was trained on
    t = time.time()
    fit = ev.fit_delta(key, net_ds.train, net_ds.val, target)
    times["fit"] = time.time() - t
    res["fit"] = {"net_step": int(row["step"]), "net_gap": target["gap"].tolist(),
                  "net_sigmas": target["sigmas"].tolist(),
                  "net_peak": curve_peak(target["sigmas"], target["gap"], refine=True),
                  "toy_peak": fit.curve.peak(refine=True),
                  **fit.to_dict()}

    pts = np.array([[-1.5, -1.0], [-1.2, 1.3], [0.0, 0.2], [0.4, -1.4], [1.3, 0.9],
                    [1.6, -0.3], [-0.3, 1.6], [0.9, 0.1]])
    grid = np.linspace(-2.5, 2.5, 41)
    flows = [ev.flow_fields(pts, grid, grid, s, 0.3) for s in (0.05, 0.2, 0.6)]
    res["times_s"] = times

    tp.plot_delta_sweep(sweep, out / "sweep.png", title="digits: position-error sweep")
    tp.plot_gap_vs_train_size(sizes, out / "sizes.png")
    for d, f in first.items():
        tp.plot_first_order(f, out / f"first_order_{d:g}.png")
    tp.plot_delta_fit(target, fit, out / "fit.png", label="MLP, N=128, EMA")
    tp.plot_flow_fields(flows, out / "flow.png", dpi=90)
    (out / "evidence.json").write_text(json.dumps(res, indent=1))

    lines = ["| delta | peak sigma | peak gap | gap at sigma=0.01 | memorized +- se |",
             "|---|---|---|---|---|"]
    for d, c, ps, pg, m, ms in zip(sweep.deltas, sweep.curves, sweep.peak_sigma,
                                   sweep.peak_gap, sweep.memorized, sweep.memorized_se,
                                   strict=True):
        lines.append(f"| {d:g} | {ps:.3g} | {pg:.4f} | {float(c.gap[0]):.4f} | "
                     f"{m:.3f} +- {ms:.3f} |")
    lines += ["", f"gap vs N at delta = {sizes.delta:g}: " + ", ".join(
        f"N={n}: {pg:.4f} at sigma {ps:.3g}"
        for n, ps, pg in zip(sizes.sizes, sizes.peak_sigma, sizes.peak_gap, strict=True))]
    lines += ["", f"fitted delta {fit.delta:.4g} (weighted mse {fit.sse:.3g}); net peak "
              f"{res['fit']['net_peak']}, toy peak {res['fit']['toy_peak']}"]
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("times (s):", {k: round(v, 1) for k, v in times.items()})


if __name__ == "__main__":
    main()
