"""``jaxgap sample``: sample with a closed-form denoiser or a trained run's network
(:func:`jaxgap.study.sample_and_measure`, the study's sampling stage); writes
``samples.npz``, ``memorization.json`` (1/3-rule copy fraction with a bootstrap standard
error, distances to train and val), ``samples.png`` (image data), ``domain.json`` and
``domain.png`` (sampling trajectories against noisy train and val states at the sampler's
noise levels, :func:`jaxgap.metrics.trajectory_domain`) into ``--out`` and prints a short
summary.

A conditional denoiser (``--condition`` on a closed form, or a run folder trained with a
condition) samples under the condition ids of training points drawn uniformly (the key's
``CONDITIONS`` stream), so the samples follow the training set's condition frequencies;
each is guided with weight ``--guidance``; copying is measured against all training
points."""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from typing import Any, NamedTuple

import numpy as np

from jaxgap.cli import common
from jaxgap.cli.common import CLIError
from jaxgap.cli.gap import (
    CONDITION_HELP,
    DATA_HELP,
    DENOISERS,
    GUIDANCE_HELP,
    closed_form,
    condition_text,
    guidance_weight,
)
from jaxgap.data import GRANULARITIES

NAME = "sample"
HELP = "sample with a denoiser; measure copying and the inference domain"
DESCRIPTION = ("Draw samples with a closed-form optimal denoiser fit on a dataset's training "
               "split, or with the trained network (EMA weights) of a 'jaxgap train' run "
               "folder. Writes samples.npz (samples and trajectories), memorization.json "
               "(1/3-rule copy fraction, distances to train and val), samples.png (image "
               "data: samples beside their nearest training images), domain.json and "
               "domain.png (trajectory states against noisy train/val samples at the "
               "sampler's noise levels) into --out. A conditional denoiser (--condition, or "
               "a run trained with one) samples under the conditions of randomly drawn "
               "training points, guided with --guidance; samples.npz records each sample's "
               "condition id (cond).")
SAMPLE_METHODS = ("heun", "euler", "edm")  # jaxgap.sampling.METHODS, without importing JAX
NUM_BOOTSTRAP = 1000


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``jaxgap sample``."""
    p.add_argument("--denoiser", default="empirical", metavar="KIND|RUN_DIR",
                   help="'empirical' or 'gaussian' (closed form, fit on the training split) "
                   "or a training run folder; a run folder brings its own data, train size "
                   "and data seed; write ./NAME for a folder named like a kind (default: "
                   "empirical)")
    p.add_argument("--data", default=None, metavar="NAME",
                   help=f"{DATA_HELP} (default: digits; with a run folder: the run's, and "
                   "only that)")
    common.add_data_options(p, "closed-form denoisers only")
    p.add_argument("--condition", choices=GRANULARITIES, default=None,
                   help=f"{CONDITION_HELP}; not none: the conditional closed form (as in "
                   "'jaxgap gap'); each sample takes the condition of a training point drawn "
                   "at random (seeded by --seed), so conditions follow their training "
                   "frequencies; with a run folder: the run's, and only that (default: none; "
                   "with a run folder: the run's)")
    p.add_argument("--guidance", type=common.finite_float, default=None, metavar="W",
                   help=f"{GUIDANCE_HELP}; closed forms: the null condition is the "
                   "unconditional denoiser of all training points; networks: their learned "
                   "null token; needs a conditional denoiser (default: 1; with a run folder: "
                   "the run's evaluation guidance)")
    p.add_argument("--train-size", type=common.int_at_least(2), default=None, metavar="N",
                   help="use the first N training points (default: all; with a run folder: "
                   "the run's)")
    p.add_argument("--num", type=common.int_at_least(1), default=256, metavar="M",
                   help="number of samples (default: 256)")
    p.add_argument("--steps", type=common.int_at_least(2), default=18, metavar="K",
                   help="sampler steps: EDM noise levels before the final 0 (default: 18)")
    p.add_argument("--method", choices=SAMPLE_METHODS, default="heun",
                   help="ODE solver (heun, euler) or EDM's stochastic sampler (edm) "
                   "(default: heun)")
    p.add_argument("--s-churn", type=common.nonnegative_float, default=0.0, metavar="S",
                   help="churn of --method edm (default: 0, which equals heun)")
    p.add_argument("--seed", type=common.int_at_least(0), default=None,
                   help="seed of the sampling noise, the bootstrap and the noisy states "
                   "(default: 0, or the run's seed); for closed-form denoisers also of the "
                   "data split (a run folder keeps its own)")
    p.add_argument("--diagnostic-sigmas", type=common.int_at_least(1), default=None,
                   metavar="L", help="use L of the sampler's noise levels, evenly spread, "
                   "for the domain diagnostics (default: all --steps)")
    common.add_output_options(p, resumable=False)


class _Source(NamedTuple):
    """Where the denoiser and its data come from."""

    kind: str  # "empirical", "gaussian" or "network"
    config: Any  # the run folder's TrainConfig, or None
    data: str
    data_kw: dict
    seed: int  # sampling, bootstrap and noisy states
    data_seed: int
    condition: str  # a granularity; "none": unconditional
    guidance: float | None  # the guidance weight of a conditional denoiser, else None


def _run_folder(path: str):
    """The :class:`~jaxgap.train.TrainConfig` of a ``jaxgap train`` folder (else CLIError)."""
    from jaxgap import train as train_mod

    expected = (f"expected {' or '.join(repr(d) for d in DENOISERS)} or a training run folder "
                "written by 'jaxgap train'")
    if not os.path.isdir(path):
        raise CLIError(f"--denoiser: {expected}, got {path!r} (no such folder)")
    if not os.path.isfile(os.path.join(path, train_mod.CONFIG)):
        raise CLIError(f"--denoiser: {expected}, got {path!r} (a folder without "
                       f"{train_mod.CONFIG})")
    try:
        return train_mod.load_config(path)
    except ValueError as err:
        raise CLIError(f"--denoiser: {err}") from None


def _source(args: argparse.Namespace) -> _Source:
    """The denoiser's kind, data and seeds, with the argument checks that need no data."""
    if args.s_churn > 0 and args.method != "edm":
        raise CLIError(f"--s-churn: expected 0 with --method {args.method} (churn needs "
                       f"--method edm), got {args.s_churn:g}")
    if args.diagnostic_sigmas is not None and args.diagnostic_sigmas > args.steps:
        raise CLIError(f"--diagnostic-sigmas: expected at most --steps = {args.steps} (the "
                       f"diagnostics use the sampler's noise levels), got "
                       f"{args.diagnostic_sigmas}")
    data_kw = common.data_options(args)
    if args.denoiser in DENOISERS:
        seed = args.seed if args.seed is not None else 0
        condition = args.condition or "none"
        w = guidance_weight(args.guidance, condition != "none",
                            f"--denoiser {args.denoiser} and --condition none")
        return _Source(args.denoiser, None, args.data if args.data is not None else "digits",
                       data_kw, seed, seed, condition, w)
    config = _run_folder(args.denoiser)
    run_dir, out = os.path.abspath(args.denoiser), os.path.abspath(args.out)
    if args.overwrite and os.path.commonpath([run_dir, out]) == out:
        raise CLIError(f"--overwrite: --out {args.out!r} holds the run folder --denoiser "
                       f"{args.denoiser!r}; replacing it would delete the network: choose "
                       "another --out")
    if args.data is not None and args.data != config.data:
        raise CLIError(f"--data: the run {args.denoiser!r} was trained on "
                       f"{config.data!r}; leave --data out or pass that, got {args.data!r}")
    if args.train_size is not None and args.train_size != config.train_size:
        raise CLIError(f"--train-size: the run {args.denoiser!r} was trained on "
                       f"train_size = {config.train_size}; leave --train-size out, got "
                       f"{args.train_size}")
    if data_kw:
        raise CLIError("--data-opt: not used with a run folder (its data come from its "
                       f"config), got {', '.join(sorted(data_kw))}")
    if args.condition is not None and args.condition != config.condition:
        raise CLIError(f"--condition: the run {args.denoiser!r} was trained with condition "
                       f"{config.condition!r}; leave --condition out or pass that, got "
                       f"{args.condition!r}")
    w = guidance_weight(args.guidance, config.conditional,
                        f"the unconditional run {args.denoiser!r}", default=config.guidance,
                        need="a run trained with 'jaxgap train --condition'")
    seed = args.seed if args.seed is not None else config.seed
    return _Source("network", config, config.data, data_kw, seed, config.seed,
                   config.condition, w)


def _load(args: argparse.Namespace, src: _Source):
    """The dataset: a run folder's, or a named one cut to ``--train-size``."""
    from jaxgap import train as train_mod

    if src.config is not None:
        try:
            ds = train_mod.load_data(src.config)
        except ValueError as err:
            raise CLIError(f"--denoiser: the data of run {args.denoiser!r}: {err}") from None
        common.print_notes(ds)
    else:
        ds = common.load_data(src.data, src.data_seed, src.data_kw)
        if args.train_size is not None and args.train_size > ds.num_train:
            raise CLIError(f"--train-size: expected at most {ds.num_train} (the training "
                           f"points of {ds.name!r}), got {args.train_size}")
        # conditions on the whole training split, then the cut (nested sets share them)
        ds = common.condition_data(ds, src.condition, args.train_size)
    if ds.num_train < 2:
        raise CLIError(f"--data: the copy ratio needs at least 2 training points, "
                       f"{ds.name!r} has {ds.num_train}")
    return ds


def _load_network(path: str, dim: int, conditional: bool = False):
    """The EMA network of a run folder, checked to map ``[1, dim]`` to ``[1, dim]`` (with the
    null condition when ``conditional``)."""
    import jax.numpy as jnp

    from jaxgap import train as train_mod

    ckpt = os.path.join(path, train_mod.CHECKPOINTS)
    if not os.path.isdir(ckpt):  # checked here: the checkpoint manager would create it
        raise CLIError(f"--denoiser: no checkpoint in {path!r} (no {train_mod.CHECKPOINTS}/ "
                       "folder; has the run saved one?)")
    try:
        den = train_mod.load_denoiser(path, ema=True)
    except Exception as err:  # orbax raises many kinds for unreadable or partial checkpoints
        raise CLIError(f"--denoiser: cannot load the network of {path!r}: "
                       f"{type(err).__name__}: {err}") from None
    den_dim = getattr(den, "dim", None)
    if den_dim is not None and int(den_dim) != dim:
        raise CLIError(f"--denoiser: dimension mismatch: the network of {path!r} takes "
                       f"d = {int(den_dim)}, its data have d = {dim}")
    probe = (jnp.zeros((1, dim), jnp.float32), jnp.float32(1.0))
    if conditional:
        from jaxgap.denoisers import NULL

        probe += (jnp.full((1,), NULL, jnp.int32),)
    try:
        out_shape = tuple(den(*probe).shape)
    except Exception as err:  # a network built for other shapes fails in many ways
        raise CLIError(f"--denoiser: dimension mismatch: the network of {path!r} cannot "
                       f"denoise points of d = {dim}: {type(err).__name__}: {err}") from None
    if out_shape != (1, dim):
        raise CLIError(f"--denoiser: dimension mismatch: the network of {path!r} maps "
                       f"[1, {dim}] to {list(out_shape)}")
    return den


def sample_conditions(key, train_cond, num: int) -> np.ndarray:
    """``[num]`` int32 condition ids of training points drawn uniformly with replacement
    (the key's ``CONDITIONS`` stream): the samples follow the training set's condition
    frequencies."""
    import jax

    from jaxgap import _streams

    index = jax.random.randint(_streams.stream(key, _streams.CONDITIONS), (num,), 0,
                               len(train_cond))
    return np.asarray(train_cond, np.int32)[np.asarray(index)]


def _grid_index(num_levels: int, num: int | None) -> np.ndarray:
    """``num`` indices evenly spread over ``range(num_levels)`` (all of them for None)."""
    if num is None or num >= num_levels:
        return np.arange(num_levels)
    return np.unique(np.round(np.linspace(0, num_levels - 1, num)).astype(int))


def _exit_summary(diag, exits) -> str:
    from jaxgap.metrics import exit_ranges

    band = np.asarray(diag.quantiles, np.float64)
    band = f"{100 * band.min():.0f}-{100 * band.max():.0f}%"
    num = len(exits)
    out = sum(e is not None for e in exits)
    head = (f"trajectories vs noisy train (median normalized NN distance against the "
            f"noisy-train {band} band, {num} sigmas):")
    if not out:
        return f"{head} inside the band at every sigma"
    parts = []
    for a, b, e in exit_ranges(diag.sigmas, exits):
        where = f"sigma = {a:.3g}" if a == b else f"sigma = {a:.3g}..{b:.3g}"
        parts.append(f"{where} ({e})")
    return f"{head} outside at {out} of {num}: " + ", ".join(parts)


def _pngs(args, src: _Source, ds, drawn, diag) -> dict[str, bytes]:
    """``samples.png`` (image data) and ``domain.png``."""
    from jaxgap.report import plot_domain_diagnostics, plot_sample_grid

    short = src.kind
    if src.kind == "network":
        short = os.path.basename(os.path.normpath(args.denoiser)) or args.denoiser
    title = (f"{ds.name} / {short}: {args.num} samples, {args.method}, {args.steps} steps "
             f"(n_train = {ds.num_train}, d = {ds.dim}"
             f"{condition_text(src.condition, src.guidance, ds)})")
    pngs: dict[str, bytes] = {}
    mem = drawn.memorization
    if ds.image_shape is not None:
        buf = io.BytesIO()
        plot_sample_grid(drawn.samples, ds.train[mem.nearest], ds.image_shape, buf,
                         max_pairs=32, title=title + "\nupper: sample, lower: nearest "
                         "training image (copy ratio r; r < 1/3 counts as a copy)",
                         labels=[f"r={r:.2f}" for r in mem.copy_ratio])
        pngs["samples.png"] = buf.getvalue()
    buf = io.BytesIO()
    plot_domain_diagnostics(diag, buf, title=title)
    pngs["domain.png"] = buf.getvalue()
    return pngs


def quality_lines(quality: dict | None) -> list[str]:
    """The sample-quality table of :func:`jaxgap.study.measure_quality`, as printed lines."""
    if quality is None:
        return ["sample quality: not measured (needs more than k samples and validation "
                "points)"]
    acc = quality["classifier_accuracy"]
    spaces = [("pixels", "pixels")]
    if acc is not None:
        spaces.append(("features", f"classifier features (held-out accuracy {acc:.3f})"))
    lines = [f"sample quality against {quality['num_reference']} held-out validation points "
             f"(k = {quality['k']}; ideal: precision, recall, density, coverage ~ 1, Fréchet "
             "distance as small as the baseline's):"]
    for space, title in spaces:
        lines.append(f"  {title}:")
        lines.append(f"    {'':<24}{'precision':>10}{'recall':>8}{'density':>9}{'coverage':>10}"
                     f"{'Fréchet':>10}")
        for name, row in quality["sets"].items():
            q = row[space]
            lines.append(f"    {name:<24}{q['precision']:>10.3f}{q['recall']:>8.3f}"
                         f"{q['density']:>9.3f}{q['coverage']:>10.3f}{q['frechet']:>10.4g}")
    return lines


def same_condition(cond, nearest, train_cond) -> float | None:
    """The fraction of samples whose nearest training point carries the sample's own
    condition (None: unconditional)."""
    if cond is None:
        return None
    return float(np.mean(np.asarray(train_cond)[np.asarray(nearest)] == cond))


def _writers(args, src: _Source, ds, drawn, diag, exits, pngs, info: dict,
             quality: dict | None, cond) -> dict:
    """The files of ``--out``: samples.npz, memorization.json, quality.json, samples.png
    (image data), domain.json, domain.png."""
    meta = {
        "command": "sample",
        "denoiser": src.kind,
        "condition": src.condition,
        "guidance": src.guidance,
        "num_conditions": ds.num_conditions,
        "run_dir": os.path.abspath(args.denoiser) if src.kind == "network" else None,
        "run_config": json.loads(src.config.to_json()) if src.config is not None else None,
        "data": ds.name,
        "data_options": src.data_kw,
        "data_notes": list(ds.notes),
        "num_train": ds.num_train,
        "num_val": ds.num_val,
        "dim": ds.dim,
        "image_shape": list(ds.image_shape) if ds.image_shape is not None else None,
        "train_size": args.train_size if src.config is None else src.config.train_size,
        "num": args.num,
        "steps": args.steps,
        "method": args.method,
        "s_churn": args.s_churn,
        "seed": src.seed,
        "data_seed": src.data_seed,
    }
    exit_sigmas = [float(s) for s, e in zip(np.asarray(diag.sigmas), exits, strict=True)
                   if e is not None]
    mem = drawn.memorization
    mem_text = common.json_text({**meta, **mem.summary(), "nearest_train_same_condition":
                                 same_condition(cond, mem.nearest, ds.train_cond),
                                 "domain_exit_sigmas": exit_sigmas, **info})
    domain_text = common.json_text({**meta, "subsample": {
                                 name: int(diag.sets[name].num_states)
                                 for name in ("noisy_train", "noisy_val")},
                             "trajectories_outside_noisy_train": exits, **diag.to_dict()})
    traj = drawn.trajectory
    per_sample = {} if cond is None else {"cond": cond}  # each sample's condition id

    def write_npz(f):
        np.savez(f, samples=np.asarray(drawn.samples), sigma=np.asarray(traj.sigma),
                 x=np.asarray(traj.x), denoised=np.asarray(traj.denoised),
                 sigma_hat=np.asarray(traj.sigma_hat), copy_ratio=mem.copy_ratio,
                 nearest_train_index=mem.nearest, distance_to_train=mem.to_train,
                 distance_to_val=mem.to_val, **per_sample)

    quality_text = common.json_text({**meta, "quality": quality, **info})
    writers = {"samples.npz": write_npz,
               "memorization.json": lambda f: f.write(mem_text.encode()),
               "quality.json": lambda f: f.write(quality_text.encode())}
    if "samples.png" in pngs:
        writers["samples.png"] = lambda f: f.write(pngs["samples.png"])
    writers["domain.json"] = lambda f: f.write(domain_text.encode())
    writers["domain.png"] = lambda f: f.write(pngs["domain.png"])
    return writers


def run(args: argparse.Namespace) -> int:
    """``jaxgap sample``: sample, measure copying and the inference domain."""
    src = _source(args)

    import jax

    from jaxgap.denoisers import guided
    from jaxgap.metrics import domain_exits, measure_quality, sample_and_measure, trajectory_domain

    start = time.perf_counter()
    with (common.output_folder(args, resumable=False, what=NAME) as folder,
          common.stage_bar(total=8, mode=common.progress_mode(args)) as st):
        st.start("load", f"load {src.data}")
        ds = _load(args, src)
        st.done("load")

        conditional = src.guidance is not None
        st.start("denoiser", "load network" if src.kind == "network" else
                 f"fit {'conditional ' if conditional else ''}{src.kind} denoiser")
        if src.kind == "network":
            den = _load_network(args.denoiser, ds.dim, conditional)
            den = guided(den, src.guidance) if conditional else den
        else:
            den = closed_form(src.kind, ds, src.guidance)
        st.done("denoiser")

        out_dir = folder.prepare()  # before any long computation: results need somewhere to go

        st.bar.set_description_str(f"sample {args.num} x {args.steps} steps, memorization")
        key = jax.random.PRNGKey(src.seed)
        cond = sample_conditions(key, ds.train_cond, args.num) if conditional else None
        drawn = sample_and_measure(key, den, ds.train, ds.val, num=args.num,
                                   num_steps=args.steps, method=args.method,
                                   s_churn=args.s_churn, cond=cond,
                                   num_bootstrap=NUM_BOOTSTRAP, name="--denoiser")
        st.record("sample", drawn.seconds["sample"])
        st.record("metrics", drawn.seconds["memorization"])

        st.start("quality", "sample quality")
        quality = measure_quality(key, {"samples": np.asarray(drawn.samples)}, ds)
        st.done("quality")

        st.start("domain", "inference-domain diagnostics")
        levels = _grid_index(args.steps, args.diagnostic_sigmas)
        sig = drawn.trajectory.sigma[:-1][levels]  # the trajectory states sit at these sigmas
        plain_empirical = src.kind == "empirical" and not conditional  # reuse its statistics
        diag = trajectory_domain(key, den if plain_empirical else ds.train, ds.val,
                                 sig, {"trajectories": drawn.trajectory.x[:-1][levels]},
                                 num=args.num)
        exits = domain_exits(diag)
        st.done("domain")

        st.start("plot", "plot")
        pngs = _pngs(args, src, ds, drawn, diag)
        st.done("plot")

        st.start("write", f"write {args.out}")
        writers = _writers(args, src, ds, drawn, diag, exits, pngs, common.run_info(start, st),
                           quality, cond)
        written = common.write_outputs(out_dir, writers)
        st.done("write")

    mem = drawn.memorization
    print(f"{ds.name} / {args.denoiser if src.kind == 'network' else src.kind}: {args.num} "
          f"samples, {args.method}, {args.steps} steps; n_train = {ds.num_train}, n_val = "
          f"{ds.num_val}, d = {ds.dim}{condition_text(src.condition, src.guidance, ds)}, "
          f"seed = {src.seed}")
    print(f"memorized (copy ratio < 1/3): {float(mem.memorized.fraction):.3f} +- "
          f"{float(mem.memorized.se):.3f} (bootstrap se); copy ratio mean "
          f"{np.mean(mem.copy_ratio):.3f}, median {np.median(mem.copy_ratio):.3f}")
    print(f"mean nearest distance: to train {np.mean(mem.to_train):.4g}, to val "
          f"{np.mean(mem.to_val):.4g}; closer to train than to val: "
          f"{100 * np.mean(mem.to_train < mem.to_val):.1f}%")
    if cond is not None:
        print(f"nearest training point of the sample's own condition: "
              f"{100 * same_condition(cond, mem.nearest, ds.train_cond):.1f}% "
              f"({len(np.unique(cond))} of {ds.num_conditions} conditions drawn)")
    print(_exit_summary(diag, exits))
    print("\n".join(quality_lines(quality)))
    names = [os.path.basename(p) for p in written]
    print(f"wrote {', '.join(os.path.join(args.out, n) for n in names)} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
