"""The five stages of the study. Each takes the run's context and the results of the stages
before it, and returns its typed result and its files ``{name: bytes or writer}``."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgap import _progress, _streams, metrics
from jaxgap import train as train_mod
from jaxgap.denoisers import EmpiricalDenoiser, GaussianDenoiser
from jaxgap.losses import gap_curve
from jaxgap.metrics import measure_quality, sample_and_measure
from jaxgap.report.plots import (
    plot_domain_diagnostics,
    plot_gap_curves,
    plot_gap_over_training,
    plot_sample_grid,
)
from jaxgap.study import results as res
from jaxgap.study.config import StudyConfig
from jaxgap.theory import PositionError, fit_delta

SAMPLERS = ("empirical", "network", "toy_model")


class Context(NamedTuple):
    """What every stage reads: the settings, the run folder, the data and the noise grid."""

    config: StudyConfig
    out: Path
    ds: Any
    val: np.ndarray  # the validation points evaluated
    sigmas: Any  # [K] the log grid of every gap curve
    key: jax.Array  # the evaluation key (common random numbers with the training evals)
    progress: bool | str | None  # a mode of jaxgap._progress.bar


@dataclass
class Done:
    """The results of the stages finished so far (resumed or run)."""

    closed_form: res.ClosedFormResult | None = None
    train: res.TrainResult | None = None
    sample: res.SampleResult | None = None
    domain: res.DomainResult | None = None
    toy: res.ToyResult | None = None


def _bar(ctx: Context, total: int, desc: str):
    return _progress.bar(total, desc, mode=ctx.progress, unit="step", leave=False)


def _png(plot: Callable, *args, **kw) -> bytes:
    buf = io.BytesIO()
    plot(*args, path=buf, **kw)
    return buf.getvalue()


def closed_form(ctx: Context, done: Done) -> tuple[res.ClosedFormResult, dict]:
    """Gap curves of the empirical (optimal) and Gaussian denoisers of the training set."""
    bar = _bar(ctx, 3, "closed form: empirical, Gaussian")
    curves = {}
    for name, den in (("empirical", EmpiricalDenoiser(ctx.ds.train)),
                      ("gaussian", GaussianDenoiser.from_data(ctx.ds.train))):
        c = gap_curve(ctx.key, den, ctx.ds.train, ctx.val, ctx.sigmas,
                      num_noise=ctx.config.num_noise)
        curves[name] = jax.block_until_ready(c).to_dict()
        bar.update(1)
    png = _png(plot_gap_curves, {"empirical (optimal)": curves["empirical"],
                                 "Gaussian (Wiener filter)": curves["gaussian"]},
               title=f"{ctx.ds.name}: closed-form denoisers (n_train = {ctx.ds.num_train})")
    bar.update(1)
    bar.close()
    summaries = {name: res.CurveSummary.of(c["sigmas"], c["gap"], c["gap_se"])
                 for name, c in curves.items()}
    result = res.ClosedFormResult(curves, float(np.min(np.asarray(ctx.sigmas))), summaries)
    return result, {"gap_closed_form.png": png}


def train(ctx: Context, done: Done) -> tuple[res.TrainResult, dict]:
    """The network trained with its EMA gap tracked (orbax checkpoints in ``train/``)."""
    tc = ctx.config.train
    run_dir = ctx.out / "train"
    resume = (run_dir / train_mod.CONFIG).exists()
    train_mod.train_and_evaluate(tc, run_dir, resume=resume, progress=ctx.progress)
    rows = train_mod.read_metrics(run_dir)
    if not rows:
        raise ValueError(f"out: no evaluations in {run_dir}")
    png = _png(plot_gap_over_training, rows,
               title=f"{ctx.ds.name} / {train_mod.describe_model(tc)}, n_train = "
               f"{ctx.ds.num_train}: EMA gap over training")
    later = [r for r in rows if r["step"] > 0]
    first, last = (later[0] if later else None), rows[-1]

    def peak(r):
        return res.CurveSummary.of(r["sigmas"], r["ema_gap"], r["ema_gap_se"])

    lp = peak(last)
    result = res.TrainResult(
        resumed=resume, num_evaluations=len(rows),
        first_step=first["step"] if first else None,
        gap_max_first=peak(first).gap_max if first else None,
        gap_max_first_se=peak(first).gap_max_se if first else None,
        last_step=last["step"], gap_max_last=lp.gap_max, gap_max_last_se=lp.gap_max_se,
        peak_sigma=lp.peak_sigma, gap_at_sigma_min=lp.gap_at_sigma_min,
        gap_max_by_step=[[r["step"], peak(r).gap_max] for r in rows],
        final_curve={"sigmas": last["sigmas"], "train": last["ema_train"],
                     "val": last["ema_val"], "gap": last["ema_gap"],
                     "gap_se": last["ema_gap_se"]})
    return result, {"gap_over_training.png": png}


def sample(ctx: Context, done: Done) -> tuple[res.SampleResult, dict]:
    """The toy model fitted to the network's gap; every sampler's samples and copying."""
    cfg, ds = ctx.config, ctx.ds
    bar = _bar(ctx, 2 + 2 * len(SAMPLERS), "fit toy model")
    grid = (None if cfg.fit_grid is None else
            np.concatenate([[0.0], np.geomspace(0.01, 3.0, cfg.fit_grid - 1)]))
    fit = fit_delta(ctx.key, ds.train, ctx.val, done.train.final_curve, deltas=grid,
                    num_noise=cfg.num_noise, num_refine=cfg.fit_refine)
    bar.update(1)
    dens = {"empirical": EmpiricalDenoiser(ds.train),
            "network": train_mod.load_denoiser(ctx.out / "train"),
            "toy_model": PositionError(ds.train, fit.delta)}
    key = cfg.sample_key()  # one key: every sampler starts from the same noise
    arrays, mems, files, finals = {}, {}, {}, {}
    for name, den in dens.items():
        bar.set_description_str(f"sample: {name}")
        run = sample_and_measure(key, den, ds.train, ds.val, num=cfg.num_samples,
                                 num_steps=cfg.sample_steps, num_bootstrap=cfg.num_bootstrap,
                                 name=name)
        bar.update(1)
        mem = run.memorization
        mems[name] = mem.summary()
        finals[name] = np.asarray(run.samples)
        arrays[f"{name}_x"] = np.asarray(run.trajectory.x)
        arrays[f"{name}_copy_ratio"] = mem.copy_ratio
        if ds.image_shape is not None:
            files[f"samples_{name}.png"] = _png(
                plot_sample_grid, np.asarray(run.samples), ds.train[mem.nearest],
                ds.image_shape, max_pairs=16, labels=[f"r={r:.2f}" for r in mem.copy_ratio],
                title=f"{name}: upper sample, lower nearest training image (r < 1/3: copy)")
        bar.update(1)
    arrays["sigma"] = np.asarray(run.trajectory.sigma)
    bar.set_description_str("sample quality")
    quality = measure_quality(key, finals, ds)
    bar.update(1)
    bar.close()

    def write_npz(f):
        np.savez(f, **arrays)

    # The scale of a generalizing sample: a held-out point's distance to the training set.
    ref = np.asarray(metrics.nearest_neighbors(ctx.val, ds.train, k=1).dist[:, 0], np.float64)
    result = res.SampleResult(fit, mems, float(np.mean(ref)), cfg.num_samples, cfg.sample_steps,
                              "heun", quality=quality)
    return result, {"samples.npz": write_npz, **files}


def domain(ctx: Context, done: Done) -> tuple[res.DomainResult, dict]:
    """Trajectory states of every sampler against noisy train and val states."""
    cfg, ds = ctx.config, ctx.ds
    bar = _bar(ctx, 2, "domain diagnostics")
    with np.load(ctx.out / "samples.npz") as z:
        sig = z["sigma"][:-1]  # the trajectory states sit at the sampler's sigmas
        trajs = {name: z[f"{name}_x"][:-1] for name in SAMPLERS}
    diag = metrics.trajectory_domain(cfg.sample_key(), EmpiricalDenoiser(ds.train), ds.val,
                                     sig, trajs, num=cfg.num_samples)
    bar.update(1)
    png = _png(plot_domain_diagnostics, diag, title=f"{ds.name}: trajectory states vs noisy "
               f"train / val (n_train = {ds.num_train}, {cfg.num_samples} samples)")
    bar.update(1)
    bar.close()
    mid = int(np.argmin(np.abs(np.asarray(metrics.QUANTILES) - 0.5)))

    def medians(name):
        return np.asarray(diag.sets[name].normalized_nn_distance, np.float64)[:, mid].tolist()

    summary = {}
    for name in (*SAMPLERS, "noisy_val"):
        exits = metrics.domain_exits(diag, name)
        summary[name] = {
            **{f"{e}_sigmas": [float(s) for s, x in zip(sig, exits, strict=True) if x == e]
               for e in ("farther", "closer")},
            "median_normalized_nn_distance": medians(name),
        }
    summary["noisy_train"] = {"median_normalized_nn_distance": medians("noisy_train")}
    result = res.DomainResult([float(s) for s in sig], summary, diag.to_dict())
    return result, {"domain.png": png}


def toy(ctx: Context, done: Done) -> tuple[res.ToyResult, dict]:
    """The fitted toy model's field (sharpness, posterior spread) and its fit figure."""
    cfg, ds = ctx.config, ctx.ds
    bar = _bar(ctx, 2, "toy model: field")
    fit = done.sample.fit
    sig = np.sort(np.asarray(done.domain.sigmas, np.float64))
    dens = {"empirical": EmpiricalDenoiser(ds.train), "toy_model": PositionError(ds.train,
                                                                                 fit.delta)}
    states = metrics.noisy_states(_streams.stream(cfg.sample_key(), _streams.NOISY_VAL),
                                  ctx.val[:cfg.num_samples], jnp.asarray(sig, jnp.float32))
    sig_b = jnp.broadcast_to(jnp.asarray(sig, jnp.float32)[:, None], states.shape[:2])
    neff = {name: np.median(np.asarray(metrics.posterior_concentration(states, sig_b, den)
                                       .effective_count, np.float64), axis=1).tolist()
            for name, den in dens.items()}
    sharp = {name: np.median(metrics.field_sharpness(den, ds.train, sig), axis=1).tolist()
             for name, den in dens.items()}
    bar.update(1)
    png = _png(plot_gap_curves, {
        "network (EMA, final)": done.train.final_curve,
        f"toy model, delta = {fit.delta:.3g}": fit.curve,
        "empirical (optimal)": done.closed_form.curves["empirical"]},
        title=f"{ds.name}: position-error toy model fitted to the network's gap")
    bar.update(1)
    bar.close()
    toy_curve = res.CurveSummary.of(fit.curve.sigmas, fit.curve.gap, fit.curve.gap_se)
    field = res.ToyField(float(sig[0]), sharp["empirical"][0], sharp["toy_model"][0],
                     neff["empirical"][0], neff["toy_model"][0], toy_curve.gap_at_sigma_min)
    result = res.ToyResult(fit.delta, fit.sse, sig.tolist(), neff, sharp, toy_curve, field)
    return result, {"toy_fit.png": png}


class Stage(NamedTuple):
    """A stage: its name (``<name>.json``), its title in the log, its result type, and the
    function that runs it."""

    name: str
    title: str
    result: type
    run: Callable[[Context, Done], tuple[Any, dict]]


STAGES = (
    Stage("closed_form", "closed-form gap curves", res.ClosedFormResult, closed_form),
    Stage("train", "train the network", res.TrainResult, train),
    Stage("sample", "fit toy model, sample, memorization", res.SampleResult, sample),
    Stage("domain", "inference-domain diagnostics", res.DomainResult, domain),
    Stage("toy", "toy-model fit and field", res.ToyResult, toy),
)
