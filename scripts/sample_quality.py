"""The sample-quality table on digits (issue 12, "Quality metrics on digits").

Every row is a set of ``--num-samples`` points scored against the held-out validation split
(300 digits, the reference of every row) with :func:`jaxgap.metrics.sample_quality`: k-NN
precision, recall, density and coverage in pixel space and in the penultimate features of a
small classifier trained on the training split's labels
(:func:`jaxgap.metrics.train_feature_classifier`), and the Fréchet distance in those
features (and in pixels, in the JSON). Rows:

- ``real train digits``: a random subset of the training split, the baseline (real data
  that is not the reference);
- ``empirical denoiser``: samples of the optimal denoiser of the training set (copies);
- ``Gaussian denoiser``: samples of the Gaussian fitted to the training set;
- ``MLP, N steps``: samples of the default MLP trained for ``--under-steps`` (under-trained)
  and ``--trained-steps`` steps (EMA weights), one network each (TrainConfig seed 0, the
  split used here; run folders under ``--workdir`` are reused when complete).

Seeds vary the sampling noise, the baseline's subset and the classifier's initialization and
data order; the table gives mean +- standard deviation over seeds. Sampling is
:func:`jaxgap.sampling.sample` (Heun, 18 steps, EDM schedule), no clipping. The fraction of
samples that the 1/3 rule calls copies of a training point is given alongside (1 for the
baseline by construction: its points are training points). The spread of the baseline's
feature Fréchet distance over 30 random training subsets (seed-0 classifier) is recorded
too.

    .venv/bin/python scripts/sample_quality.py            # writes docs/sample_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from jaxgap import data
from jaxgap.denoisers import EmpiricalDenoiser, GaussianDenoiser
from jaxgap.metrics import (
    frechet_distance,
    memorized_fraction,
    sample_quality,
    train_feature_classifier,
)
from jaxgap.sampling import sample
from jaxgap.train import TrainConfig, load_denoiser, read_metrics, train_and_evaluate

METRICS = ("precision", "recall", "density", "coverage")
ROOT = Path(__file__).resolve().parent.parent


def network(workdir: Path, steps: int, progress: bool):
    """The default MLP trained for ``steps`` steps (EMA weights); reuses a complete run."""
    folder = workdir / f"mlp_{steps}"
    done = folder.exists() and any(r.get("step") == steps for r in read_metrics(folder))
    t0 = time.perf_counter()
    if not done:
        config = TrainConfig(data="digits", model="mlp", steps=steps, eval_every=steps,
                             ckpt_every=steps, seed=0)
        train_and_evaluate(config, folder, resume=folder.exists(), progress=progress)
    return load_denoiser(folder, ema=True), (None if done else time.perf_counter() - t0)


def measure(x, ds, clf, k):
    pix = sample_quality(x, ds.val, k=k)
    feat = sample_quality(x, ds.val, k=k, features=clf.features)
    out = {f"pixel_{m}": float(getattr(pix, m)) for m in METRICS}
    out.update({f"feature_{m}": float(getattr(feat, m)) for m in METRICS})
    out["pixel_frechet"] = pix.frechet
    out["feature_frechet"] = feat.frechet
    out["copied"] = float(memorized_fraction(x, ds.train).fraction)
    out["pixel_range"] = [float(np.min(x)), float(np.max(x))]
    return out


def noise_floor(ds, clf, sizes, repeats=30):
    """The Fréchet distance in features between random training subsets and the val split
    (one classifier, ``repeats`` subsets per size): the spread of the baseline from the
    choice of subset alone."""
    ft = np.asarray(clf.features(ds.train))
    fv = np.asarray(clf.features(ds.val))
    out = {}
    for n in sizes:
        vals = np.array([frechet_distance(
            ft[np.random.default_rng(1000 + r).choice(ds.num_train, n, replace=False)], fv)
            for r in range(repeats)])
        out[str(n)] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)),
                       "min": float(vals.min()), "max": float(vals.max()),
                       "repeats": repeats}
    return out


def timings(ds, key, k, sizes):
    """Seconds for the classifier's training and for the metrics (first call compiles)."""
    out = {}
    t0 = time.perf_counter()
    clf = train_feature_classifier(key, ds)
    out["classifier_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf = train_feature_classifier(jax.random.fold_in(key, 1), ds)
    out["classifier_again_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    for n in sizes:
        x = ds.train[rng.choice(ds.num_train, n, replace=n > ds.num_train)]
        for space, feats in (("pixels", None), ("features", clf.features)):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                q = sample_quality(x, ds.val, k=k, features=feats)
                float(q.precision)
                times.append(time.perf_counter() - t0)
            out[f"metrics_{space}_{n}_first_s"] = times[0]
            out[f"metrics_{space}_{n}_warm_s"] = float(np.median(times[1:]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--num-samples", type=int, nargs="+", default=[300, 1000],
                   help="points per row and seed, one table each (default 300, the size of "
                        "the reference, and 1000); the smaller sets are the first points of "
                        "the largest")
    p.add_argument("--k", type=int, default=5, help="neighbour rank of the balls (default 5)")
    p.add_argument("--under-steps", type=int, default=200,
                   help="training steps of the under-trained MLP (default 200)")
    p.add_argument("--trained-steps", type=int, default=4000,
                   help="training steps of the trained MLP (default 4000; 0 skips the row)")
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "sample_quality",
                   help="run folders of the networks (reused when complete)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "sample_quality.json")
    p.add_argument("--timing-sizes", type=int, nargs="*", default=[256, 1000],
                   help="sample counts at which the metrics are timed")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    ds = data.load("digits", seed=0)
    # first, in a fresh process: the first calls include compilation
    load_before = os.getloadavg()[0]
    timing = timings(ds, jax.random.PRNGKey(100), args.k, args.timing_sizes)
    timing["load_average_1min_before_after"] = [load_before, os.getloadavg()[0]]
    nets = [("under", args.under_steps)]
    if args.trained_steps:
        nets.append(("trained", args.trained_steps))
    train_seconds = {}
    denoisers = [("real train digits (baseline)", None),
                 ("empirical denoiser (copies)", EmpiricalDenoiser(ds.train)),
                 ("Gaussian denoiser", GaussianDenoiser.from_data(ds.train))]
    for _, steps in nets:
        net, seconds = network(args.workdir, steps, not args.quiet)
        train_seconds[steps] = seconds
        denoisers.append((f"MLP, {steps} steps", net))

    sizes = sorted(set(args.num_samples))
    largest = sizes[-1]
    rows = {(n, name): [] for n in sizes for name, _ in denoisers}
    accuracy = []
    floor = None
    for seed in range(args.seeds):
        k_clf, k_smp = jax.random.split(jax.random.PRNGKey(seed))
        clf = train_feature_classifier(k_clf, ds)
        accuracy.append(clf.accuracy)
        if seed == 0:
            floor = noise_floor(ds, clf, sizes)
        for name, den in denoisers:
            if den is None:
                idx = np.random.default_rng(seed).choice(ds.num_train, largest, replace=False)
                x_all = ds.train[idx]
            else:  # sample i depends on (key, i) only: the first n are an n-sample draw
                x_all = np.asarray(sample(k_smp, den, largest, ds.dim))
            for n in sizes:
                r = measure(x_all[:n], ds, clf, args.k)
                rows[n, name].append(r)
                if not args.quiet:
                    print(f"seed {seed} n {n:5d} {name:30s} pixel P {r['pixel_precision']:.3f} "
                          f"R {r['pixel_recall']:.3f} | feature P {r['feature_precision']:.3f} "
                          f"R {r['feature_recall']:.3f} FD {r['feature_frechet']:.2f}",
                          flush=True)

    tables = []
    for n in sizes:
        summary = []
        for name, _ in denoisers:
            per_seed = rows[n, name]
            keys = [k for k in per_seed[0] if k != "pixel_range"]
            vals = {k: np.array([r[k] for r in per_seed]) for k in keys}
            summary.append({"name": name, "per_seed": per_seed,
                            "mean": {k: float(v.mean()) for k, v in vals.items()},
                            "std": {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0
                                    for k, v in vals.items()}})
        tables.append({"num_samples": n, "rows": summary})
    result = {
        "settings": {"dataset": "digits (seed 0 split: 1497 train, 300 val)",
                     "reference": "val split (300 held-out digits)",
                     "num_samples": sizes, "k": args.k, "seeds": args.seeds,
                     "sampler": "jaxgap.sampling.sample: heun, 18 steps, EDM schedule",
                     "networks": {f"MLP, {s} steps": "TrainConfig(model='mlp', width=256, "
                                  f"depth=4, steps={s}, seed=0), EMA weights"
                                  for _, s in nets},
                     "classifier": "train_feature_classifier defaults: 64-256-128-10 ReLU, "
                                   "500 AdamW steps, batch 128; features = 128 "
                                   "penultimate activations; one classifier per seed",
                     "std": "over seeds (ddof=1)"},
        "classifier_accuracy": accuracy,
        "network_train_seconds": {str(k): v if v is not None else "reused run folder"
                                  for k, v in train_seconds.items()},
        "tables": tables,
        "feature_frechet_baseline_spread": floor,
        "timings": timing,
        "environment": {"jax": jax.__version__, "device": str(jax.devices()[0]),
                        "cpu_count": os.cpu_count(), "machine": platform.machine(),
                        "python": platform.python_version()},
    }
    result["total_seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for t in tables:
        print(f"\n{t['num_samples']} samples per row and seed, reference: val split (300)")
        print(table(t))
    print(f"classifier held-out accuracy: {accuracy}")
    print(f"FD feat of random train subsets vs val (seed-0 classifier): {json.dumps(floor)}")
    print(f"timings (s): {json.dumps(timing)}")
    print(f"wrote {args.out}")


def table(result) -> str:
    """The markdown table of one sample size: mean +- std over seeds."""
    def cell(row, key, digits=2):
        return f"{row['mean'][key]:.{digits}f} ± {row['std'][key]:.{digits}f}"

    head = ("| samples | P pix | R pix | D pix | C pix | FD pix | P feat | R feat | D feat "
            "| C feat | FD feat | copied |")
    lines = [head, "|---|" + "--:|" * 11]
    for row in result["rows"]:
        cells = [cell(row, f"pixel_{m}") for m in METRICS]
        cells += [cell(row, "pixel_frechet")]
        cells += [cell(row, f"feature_{m}") for m in METRICS]
        cells += [cell(row, "feature_frechet", 1), cell(row, "copied")]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
