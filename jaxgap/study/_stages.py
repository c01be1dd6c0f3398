"""The stages of the study. Each takes the run's context and the results of the stages before
it, and returns its typed result and its files ``{name: bytes or writer}``."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxgap import _progress, _streams
from jaxgap import train as train_mod
from jaxgap.denoisers import EmpiricalDenoiser, GaussianDenoiser
from jaxgap.losses import gap_curve
from jaxgap.metrics import sample_and_measure, trajectory_domain
from jaxgap.report.plots import (
    plot_domain_diagnostics,
    plot_gap_curves,
    plot_gap_over_training,
    plot_sample_grid,
)
from jaxgap.study import results as res
from jaxgap.study._measure import Measurer, copy_record, sharpness_grid
from jaxgap.study.config import StudyConfig
from jaxgap.study.criteria import (
    delta_bracket,
    domain_record,
    fit_residual,
    load_criteria,
)
from jaxgap.sweep import tables
from jaxgap.sweep.analysis import summarize
from jaxgap.sweep.run import EXTRAS, LOSSES, SAMPLES, loss_columns, run_sweep, sample_columns
from jaxgap.sweep.spec import data_size, parse_spec
from jaxgap.theory import fit_delta

SWEEP, MEMORIZE, NOISE, PHASE = "sweep", "memorize", "noise", "phase"
NOISE_DATA = "noise_data.npz"


class Context(NamedTuple):
    """What every stage reads: the settings, the run folder, the data of the run's first
    seed and the noise grid."""

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
    sweep: res.StageResult | None = None
    memorize: res.StageResult | None = None
    noise: res.StageResult | None = None
    controls: res.StageResult | None = None
    toy: res.StageResult | None = None
    sizes: res.StageResult | None = None  # the factor study (--full)
    conditions: res.StageResult | None = None
    guidance: res.StageResult | None = None


def _bar(ctx: Context, total: int, desc: str, unit: str = "step"):
    return _progress.bar(total, desc, mode=ctx.progress, unit=unit, leave=False)


def png(plot: Callable, *args, **kw) -> bytes:
    buf = io.BytesIO()
    plot(*args, path=buf, **kw)
    return buf.getvalue()


def seed_config(config: StudyConfig, seed: int, train_size: int | None = None):
    """The network config of one seed (and training-set size) of the study."""
    return dataclasses.replace(config.train, seed=seed,
                               train_size=train_size or config.train.train_size)


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
    image = png(plot_gap_curves, {"empirical (optimal)": curves["empirical"],
                                 "Gaussian (Wiener filter)": curves["gaussian"]},
               title=f"{ctx.ds.name}: closed-form denoisers (n_train = {ctx.ds.num_train})")
    bar.update(1)
    bar.close()
    summaries = {name: res.CurveSummary.of(c["sigmas"], c["gap"], c["gap_se"])
                 for name, c in curves.items()}
    result = res.ClosedFormResult(curves, float(np.min(np.asarray(ctx.sigmas))), summaries)
    return result, {"gap_closed_form.png": image}


# ----------------------------------------------------------------------------- sweeps

def spec_doc(config: StudyConfig, *, data: str, seeds, sizes, steps: int,
              sample_steps) -> dict:
    tc = config.train
    base = {k: v for k, v in json.loads(tc.to_json()).items()
            if k not in ("seed", "train_size", "data", "eval_every", "ckpt_every", "steps",
                         "data_seed", "train_offset", "guidance", "condition")
            and v is not None and v != getattr(train_mod.TrainConfig, k, None)}
    every = max(1, min(tc.eval_every, steps))
    evals = sorted({0, *range(every, steps + 1, every), steps})
    return {"sweep": {**base, "data": data, "model": tc.model, "steps": steps,
                      "seeds": list(seeds), "eval_steps": evals,
                      "sample_steps": sorted(set(sample_steps)),
                      "num_samples": config.num_samples, "sampler_steps": config.sample_steps,
                      "num_bootstrap": config.num_bootstrap,
                      "features": data == "digits" and not config.quick},
            "grid": {"train_size": list(sizes)}}


def phase_steps(steps: int) -> list[int]:
    """The sampled steps of a phase-map row: 0, T/4, T/2 and T."""
    return sorted({0, steps // 4, steps // 2, steps})


def _measurer(ctx: Context, detail, final_step: int) -> Measurer:
    crit = load_criteria()
    grid = sharpness_grid(ctx.sigmas, float(np.min(np.asarray(ctx.sigmas))),
                          ctx.config.train.sigma_data, crit)
    return Measurer(final_step=final_step, sigmas=ctx.sigmas, sharp_sigmas=grid,
                    detail=detail)


def run_sweep_stage(ctx: Context, name: str, doc: dict, detail=None, *,
                    measure: bool = True) -> res.StageResult:
    """Run (or resume) the sweep of spec ``doc`` in ``out/name`` (with the study's
    measurements of every sampled network when ``measure``)."""
    folder = ctx.out / name
    spec = parse_spec(doc, num_train=data_size)
    extra = _measurer(ctx, detail, doc["sweep"]["steps"]) if measure else None
    summary = run_sweep(spec, folder, resume=(folder / "spec.json").exists(),
                        progress=ctx.progress, extra=extra)
    return res.StageResult({"folder": name, "members": summary["members"],
                            "steps": doc["sweep"]["steps"],
                            "sweep_seconds": summary["timings"]["seconds"]})


def sweep(ctx: Context, done: Done) -> tuple[res.StageResult, dict]:
    """The network on ``train_size`` images, ``seeds`` seeds trained as one ensemble (the
    claims), evaluated over training and sampled at 0, T/4, T/2 and T."""
    cfg = ctx.config
    doc = spec_doc(cfg, data=cfg.data, seeds=cfg.seed_list(), sizes=[cfg.train.train_size],
                    steps=cfg.train.steps, sample_steps=phase_steps(cfg.train.steps))
    result = run_sweep_stage(ctx, SWEEP, doc, detail=(cfg.seed, cfg.train.train_size))
    files = {}
    rows = _member_rows(ctx.out / SWEEP / LOSSES, cfg.seed, cfg.train.train_size)
    if rows:
        files["gap_over_training.png"] = png(
            plot_gap_over_training, rows,
            title=f"{ctx.ds.name} / {train_mod.describe_model(cfg.train)}, n_train = "
            f"{cfg.train.train_size}, seed {cfg.seed}: EMA gap over training")
    return result, files


def memorize(ctx: Context, done: Done) -> tuple[res.StageResult, dict]:
    """The memorizing control: the same network on ``memorize_size`` images for
    ``memorize_steps`` steps (``memorize_seeds`` seeds, one ensemble); then the phase map
    (N x step, both sweeps' tables in ``phase/``) and the memorization onset against N."""
    cfg = ctx.config
    steps = cfg.steps_of("memorize")
    doc = spec_doc(cfg, data=cfg.data, seeds=cfg.seed_list(cfg.memorize_seeds),
                    sizes=[cfg.memorize_size], steps=steps, sample_steps=phase_steps(steps))
    result = run_sweep_stage(ctx, MEMORIZE, doc)
    folder = ctx.out / PHASE
    folder.mkdir(exist_ok=True)
    losses, samples = [], []
    for point, name in enumerate((MEMORIZE, SWEEP)):
        losses += [{**r, "point": point} for r in tables.read_csv(ctx.out / name / LOSSES)]
        samples += [{**r, "point": point} for r in tables.read_csv(ctx.out / name / SAMPLES)]
    spec = parse_spec(doc, num_train=data_size)
    tables.write_csv(folder / LOSSES, losses, loss_columns(spec))
    tables.write_csv(folder / SAMPLES, samples, sample_columns(spec))
    from jaxgap.report.sweep_plots import plot_sweep

    files = {p.name: p.read_bytes() for p in plot_sweep(folder)
             if p.name in ("phase_map.png", "memorization.png")}
    analyses = summarize(losses, samples, ["train_size"])
    return res.StageResult({**result.doc, "onset": analyses["memorization_onset"]}), files


def noise_data(config: StudyConfig, like) -> dict:
    """Structureless data of the study's shape: every pixel independent and uniform on the
    data's range, as many training and validation points as the data has."""
    rng = np.random.default_rng(config.seed + 1234)
    lo, hi = float(np.min(like.train)), float(np.max(like.train))
    n = like.num_train + len(like.val)
    x = rng.uniform(lo, hi, size=(n, like.dim)).astype(np.float32)
    return {"x": x}


def noise(ctx: Context, done: Done) -> tuple[res.StageResult, dict]:
    """The structureless-data control: the same network on noise of the data's shape,
    ``noise_seeds`` seeds, ``noise_steps`` steps."""
    cfg = ctx.config
    full = train_mod.load_data(dataclasses.replace(cfg.train, train_size=None))
    path = ctx.out / NOISE_DATA
    if not path.exists():
        arrays = noise_data(cfg, full)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)
    steps = cfg.steps_of("noise")
    doc = spec_doc(cfg, data=f"npz:{path.resolve()}", seeds=cfg.seed_list(cfg.noise_seeds),
                    sizes=[cfg.train.train_size], steps=steps, sample_steps=[steps])
    doc["sweep"]["features"] = False
    return run_sweep_stage(ctx, NOISE, doc), {}


def _member_rows(path: Path, seed: int, size: int, step: int | None = None) -> list[dict]:
    """The EMA gap curves of one sweep member as ``train_and_evaluate``'s metric rows."""
    if not path.exists():
        return []
    by_step: dict = {}
    for r in tables.read_csv(path):
        if r["seed"] == seed and r["train_size"] == size and not r.get("half"):
            by_step.setdefault(r["step"], []).append(r)
    out = []
    for t in sorted(by_step):
        if step is not None and t != step:
            continue
        g = sorted(by_step[t], key=lambda r: r["sigma"])
        out.append({"step": t, "sigmas": [r["sigma"] for r in g],
                    **{f"ema_{c}": [r[f"ema_{c}"] for r in g]
                       for c in ("train", "val", "gap", "gap_se")}})
    return out


# ----------------------------------------------------------------------------- controls

def controls(ctx: Context, done: Done) -> tuple[res.StageResult, dict]:
    """The optimal (empirical) denoiser as a sampler, per seed: its copies, trajectory
    domain and field sharpness (the positive control of copying, a negative one of the
    no-copying, domain and smoothing claims)."""
    cfg = ctx.config
    seeds = cfg.seed_list(cfg.control_seeds)
    measurer = _measurer(ctx, None, cfg.train.steps)
    bar = _bar(ctx, len(seeds), "optimal denoiser: samples, domain", unit="seed")
    per_seed = []
    for s in seeds:
        tc = seed_config(cfg, s)
        ds = train_mod.load_data(tc)
        den = EmpiricalDenoiser(ds.train)
        key = _streams.stream(jax.random.PRNGKey(s), _streams.SAMPLING)
        run = sample_and_measure(key, den, ds.train, ds.val, num=cfg.num_samples,
                                 num_steps=cfg.sample_steps, num_bootstrap=cfg.num_bootstrap,
                                 name=f"optimal denoiser, seed {s}")
        det, base, num_base = measurer.detector(_Member(s, tc), ds)
        samples = np.asarray(run.samples)
        sig = np.asarray(run.trajectory.sigma, np.float64)[:-1]
        diag = trajectory_domain(key, den, ds.val, sig,
                                 {"optimal": np.asarray(run.trajectory.x)[:-1]},
                                 num=cfg.num_samples)
        opt = measurer.optimal_sharpness(_Member(s, tc), ds)
        per_seed.append({"seed": s,
                         "copies": copy_record(det(samples).summary(), base,
                                               samples.shape[0], num_base),
                         "domain": domain_record(diag, "optimal"),
                         "sharpness": {"sigmas": measurer.sharp_sigmas.tolist(),
                                       "network": opt, "optimal": opt}})
        bar.update(1)
    bar.close()
    doc = res.jsonable({"optimal": per_seed})
    return res.StageResult(doc), {}


class _Member(NamedTuple):
    """The fields of a sweep member that :class:`Measurer`'s caches read."""

    seed: int
    config: Any


# ----------------------------------------------------------------------------- toy fits

def _fit_grid(cfg: StudyConfig):
    return (None if cfg.fit_grid is None else
            np.concatenate([[0.0], np.geomspace(0.01, 3.0, cfg.fit_grid - 1)]))


def fit_record(ctx: Context, ds, curve: dict, seed: int) -> dict:
    """The toy model fitted to one gap curve: delta, its objective, the relative residual
    and the range of deltas fitting within the criteria's factor of the best."""
    cfg, crit = ctx.config, load_criteria()
    val = np.asarray(ds.val[:cfg.train.eval_val_size])
    key = _streams.stream(jax.random.PRNGKey(seed), _streams.EVAL_NOISE)
    fit = fit_delta(key, ds.train[:cfg.train.eval_train_size], val, curve,
                    deltas=_fit_grid(cfg), num_noise=cfg.num_noise, num_refine=cfg.fit_refine)
    lo, hi = delta_bracket(fit.deltas, fit.sse_values, factor=crit.smoothing.delta_sse_factor)
    return {"seed": seed, "delta": float(fit.delta), "sse": float(fit.sse),
            "fit_residual": fit_residual(curve["sigmas"], curve["gap"], fit.sse),
            "delta_low": lo, "delta_high": hi, "curve": fit.curve.to_dict()}


def toy(ctx: Context, done: Done) -> tuple[res.StageResult, dict]:
    """The position-error toy model fitted to each seed's final EMA gap curve, to the
    untrained (step-0) curves and to the optimal denoiser's curve (controls)."""
    cfg = ctx.config
    seeds, size = cfg.seed_list(), cfg.train.train_size
    ctrl = cfg.seed_list(cfg.control_seeds)
    bar = _bar(ctx, len(seeds) + len(ctrl) + 1, "toy model fits", unit="fit")
    path = ctx.out / SWEEP / LOSSES
    out: dict = {"final": [], "untrained": [], "optimal": []}
    data = {s: train_mod.load_data(seed_config(cfg, s)) for s in {*seeds, *ctrl}}
    for which, step, group in (("final", cfg.train.steps, seeds), ("untrained", 0, ctrl)):
        for s in group:
            rows = _member_rows(path, s, size, step)
            if not rows:
                raise ValueError(f"out: no step-{step} curve of seed {s} in {path}")
            r = rows[0]
            curve = {"sigmas": r["sigmas"], "gap": r["ema_gap"], "gap_se": r["ema_gap_se"],
                     "train": r["ema_train"], "val": r["ema_val"]}
            out[which].append(fit_record(ctx, data[s], curve, s))
            bar.update(1)
    emp = done.closed_form.curves["empirical"]
    out["optimal"].append(fit_record(ctx, ctx.ds, emp, cfg.seed))
    bar.update(1)
    bar.close()
    first = out["final"][0]
    final_rows = _member_rows(path, cfg.seed, size, cfg.train.steps)
    net = final_rows[0]
    image = png(plot_gap_curves, {
        "network (EMA, final)": {"sigmas": net["sigmas"], "gap": net["ema_gap"],
                                 "gap_se": net["ema_gap_se"], "train": net["ema_train"],
                                 "val": net["ema_val"]},
        f"toy model, delta = {first['delta']:.3g}": first["curve"],
        "empirical (optimal)": emp},
        title=f"{ctx.ds.name}: position-error toy model fitted to the network's gap "
              f"(seed {cfg.seed})")
    return res.StageResult(res.jsonable(out)), {"toy_fit.png": image}


# ----------------------------------------------------------------------------- figures

def detail_figures(ctx: Context) -> dict:
    """The samples and domain figures of the run's first seed (from the sweep's extras)."""
    path = ctx.out / SWEEP / EXTRAS
    if not path.exists():
        return {}
    cfg = ctx.config
    for e in json.loads(path.read_text()):
        det = e["extra"].get("detail")
        if det is None or e["seed"] != cfg.seed:
            continue
        files = {"domain.png": png(
            plot_domain_diagnostics, det["diagnostics"],
            title=f"{ctx.ds.name}: network trajectory states (seed {cfg.seed}) vs noisy "
                  f"train / val (n_train = {cfg.train.train_size})")}
        if ctx.ds.image_shape is not None:
            samples = np.asarray(det["samples"], np.float32)
            ds = train_mod.load_data(seed_config(cfg, cfg.seed))
            from jaxgap.metrics import nearest_neighbors

            nn = np.asarray(nearest_neighbors(samples, ds.train, k=2).index)
            files["samples_network.png"] = png(
                plot_sample_grid, samples, np.asarray(ds.train)[nn[:, 0]], ctx.ds.image_shape,
                max_pairs=16, title="network samples (upper) and their nearest training "
                "images (lower)")
        return files
    return {}


class Stage(NamedTuple):
    """A stage: its name (``<name>.json``), its title in the log, its result type, and the
    function that runs it."""

    name: str
    title: str
    result: type
    run: Callable[[Context, Done], tuple[Any, dict]]


STAGES = (
    Stage("closed_form", "closed-form gap curves", res.ClosedFormResult, closed_form),
    Stage("sweep", "train the network's seeds (one ensemble), evaluate, sample",
          res.StageResult, sweep),
    Stage("memorize", "memorizing control and the phase map", res.StageResult, memorize),
    Stage("noise", "structureless-data control", res.StageResult, noise),
    Stage("controls", "optimal denoiser as a sampler (controls)", res.StageResult, controls),
    Stage("toy", "toy-model fits", res.StageResult, toy),
)
