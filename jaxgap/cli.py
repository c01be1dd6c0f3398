"""The ``jaxgap`` command.

Subcommands (one ``_cmd_<name>(args) -> int`` function each, registered in
:func:`build_parser`):

- ``jaxgap gap``: the generalization-gap curve ``L_val(sigma) - L_train(sigma)`` of a
  closed-form optimal denoiser fit on a dataset's training split; writes ``gap.json``,
  ``gap.csv`` and ``gap.png`` into ``--out`` and prints a short table.

- ``jaxgap train``: train a score network, recording the per-sigma gap over training.
- ``jaxgap reproduce``: the whole study end to end (:mod:`jaxgap.reproduce`): five
  resumable stages, then ``report.md``, a self-contained ``report.html``, PNGs and
  ``results.json`` with the claims table.
- ``jaxgap sample``: sample with a closed-form denoiser or a trained run's network; writes
  ``samples.npz``, ``memorization.json`` (1/3-rule copy fraction with a bootstrap standard
  error, distances to train and val), ``samples.png`` (image data), ``domain.json`` and
  ``domain.png`` (sampling trajectories against noisy train and val states at the sampler's
  noise levels) into ``--out`` and prints a short summary.

Errors share one path: bad arguments, unusable data and unwritable output folders are
reported as ONE line ``jaxgap: error: ...`` on stderr with exit status 2 and no traceback.
Outputs are written to temporary names inside the output folder and renamed into place only
after every file was produced, so a failed run leaves no partial results.

Example::

    jaxgap gap --data digits --denoiser empirical --out runs/demo
    jaxgap sample --denoiser gaussian --data digits --num 256 --steps 18 --out runs/gauss
    jaxgap sample --denoiser runs/mlp --num 256 --out runs/mlp-samples
    python -m jaxgap gap --data npz:cifar10.npz --denoiser gaussian --out runs/cifar
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, NoReturn

import numpy as np

PROG = "jaxgap"
EXIT_ERROR = 2
DENOISERS = ("empirical", "gaussian")
GAP_FILES = ("gap.json", "gap.csv", "gap.png")
SAMPLE_METHODS = ("heun", "euler", "edm")  # jaxgap.sampling.METHODS, without importing JAX
THRESHOLD = 1.0 / 3.0  # the 1/3 rule of the copy ratio
NUM_BOOTSTRAP = 1000
QUANTILES = (0.1, 0.5, 0.9)  # bands of the inference-domain diagnostics


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors raise :class:`CLIError` (one line) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------------------------
# Argument types
# ------------------------------------------------------------------------------------------

def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _data_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a Python literal (int, float, bool) or else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


# ------------------------------------------------------------------------------------------
# Output folder: early writability check, atomic multi-file commit
# ------------------------------------------------------------------------------------------

def _prepare_out_dir(path: str) -> list[str]:
    """Create ``path`` (with parents) and check it is writable; return the folders created.

    Raises:
      CLIError: the path (or a parent) is a regular file, or the folder cannot be written.
    """
    path = os.path.abspath(path)
    missing = []
    probe = path
    while not os.path.exists(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(probe) and not os.path.isdir(probe):
        raise CLIError(f"--out: expected a folder, but {probe!r} is a file")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--out: cannot create folder {path!r}: {err.strerror or err}") from None
    created = list(reversed(missing))
    try:
        with _temp_file(path, ".write-check") as (_, f):
            f.write(b"ok")
    except OSError as err:
        _remove_dirs(created)
        raise CLIError(f"--out: folder {path!r} is not writable: {err.strerror or err}") from None
    return created


def _remove_dirs(created: Sequence[str]) -> None:
    """Remove folders this run created (deepest first), if they are still empty."""
    for d in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(d)


@contextlib.contextmanager
def _temp_file(folder: str, name: str) -> Iterator[tuple[str, IO[bytes]]]:
    """A fresh hidden file next to ``folder/name`` (:func:`jaxgap.report.report.temp_file`)."""
    from jaxgap.report.report import temp_file

    with temp_file(folder, name) as out:
        yield out


def _write_all(folder: str, writers: dict[str, Callable[[IO[bytes]], None]]) -> list[str]:
    """Write every file atomically (:func:`jaxgap.report.report.write_files`): nothing named
    in ``writers`` is replaced unless all of them were written successfully."""
    from jaxgap.report.report import write_files

    return write_files(folder, writers)


# ------------------------------------------------------------------------------------------
# jaxgap gap
# ------------------------------------------------------------------------------------------

def _stage_fns(bar, stages: dict[str, float]):
    """``stage(name, desc)`` starts a timed stage on ``bar``; ``done(name)`` ends it and
    records its seconds in ``stages``."""
    def stage(name: str, desc: str):
        bar.set_description_str(desc)
        stages[name] = time.perf_counter()

    def done(name: str):
        stages[name] = time.perf_counter() - stages[name]
        bar.update(1)

    return stage, done


@contextlib.contextmanager
def _stage_bar(total: int) -> Iterator:
    """A tqdm bar over named stages whose clock keeps ticking during a long stage.

    No bar when stderr is not a terminal (logs, pipes, tests). On failure the bar is erased,
    so the error line stands alone.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="stage", disable=None, file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc:<34} {bar} {n_fmt}/{total_fmt} [{elapsed}]")
    stop = threading.Event()

    def tick():  # JAX releases the GIL while it compiles and runs
        while not stop.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        ticker.start()
    ok = False
    try:
        yield bar
        ok = True
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        bar.leave = ok
        bar.close()


def _table(curve, num_rows: int = 10) -> str:
    """About ``num_rows`` rows of the curve, evenly spaced over the grid; the peak is marked."""
    s = np.asarray(curve.sigmas, np.float64)
    cols = [np.asarray(getattr(curve, f), np.float64) for f in ("train", "val", "gap", "gap_se")]
    peak = int(np.nanargmax(cols[2]))
    rows = set(np.round(np.linspace(0, s.size - 1, min(num_rows, s.size))).astype(int).tolist())
    rows.add(peak)
    lines = [f"  {'sigma':>10} {'train':>11} {'val':>11} {'gap':>11} {'+- se':>11}"]
    for k in sorted(rows):
        t, v, g, se = (c[k] for c in cols)
        mark = "  <- largest gap" if k == peak else ""
        lines.append(f"  {s[k]:10.4g} {t:11.4e} {v:11.4e} {g:11.4e} {f'+- {se:.2e}':>11}{mark}")
    return "\n".join(lines)


def _finite_or_none(value):
    """``value`` with non-finite floats replaced by None
    (:func:`jaxgap.report.report.finite_or_none`)."""
    from jaxgap.report.report import finite_or_none

    return finite_or_none(value)


def _load_data(name: str, seed: int, options: dict):
    """:func:`jaxgap.data.load`, its ValueError turned into a one-line ``--data`` error."""
    from jaxgap import data

    try:
        return data.load(name, seed=seed, **options)
    except ValueError as err:
        msg = str(err)
        msg = msg[len("name: "):] if msg.startswith("name: ") else msg
        raise CLIError(f"--data: {msg}") from None


def _cmd_gap(args: argparse.Namespace) -> int:
    """``jaxgap gap``: gap curve of a closed-form optimal denoiser; see the module docstring."""
    import jax

    from jaxgap import __version__, noise
    from jaxgap.denoisers import EmpiricalDenoiser, GaussianDenoiser
    from jaxgap.losses import gap_curve
    from jaxgap.report import plot_gap_curve

    if args.sigma_min >= args.sigma_max:
        raise CLIError(f"--sigma-min: expected a value < --sigma-max = {args.sigma_max:g}, "
                       f"got {args.sigma_min:g}")
    data_kw = dict(args.data_opt)
    if "seed" in data_kw:
        raise CLIError("--data-opt: the seed is set with --seed, got seed=...")

    start = time.perf_counter()
    stages: dict[str, float] = {}
    created: list[str] = []
    ok = False
    try:
        with _stage_bar(total=5) as bar:
            stage, done = _stage_fns(bar, stages)

            stage("load", f"load {args.data}")
            ds = _load_data(args.data, args.seed, data_kw)
            done("load")

            # Before any long computation: the results must have somewhere to go.
            created = _prepare_out_dir(args.out)

            stage("fit", f"fit {args.denoiser} denoiser")
            if args.denoiser == "empirical":
                den = EmpiricalDenoiser(ds.train)
            else:
                den = GaussianDenoiser.from_data(ds.train)
            done("fit")

            # One compiled program per split (train, val): not divisible into steps without
            # changing the noise, which is a function of (key, example, grid index, draw).
            stage("losses", "losses (compile + run)")
            sigmas = noise.log_sigmas(args.num_sigmas, args.sigma_min, args.sigma_max)
            curve = gap_curve(den, ds.train, ds.val, sigmas, jax.random.PRNGKey(args.seed),
                              num_noise=args.num_noise, batch_size=args.batch_size)
            curve = jax.block_until_ready(curve)
            done("losses")

            stage("plot", "plot")
            png = io.BytesIO()
            plot_gap_curve(curve, png, title=f"{ds.name} / {args.denoiser} denoiser  "
                           f"(n_train = {ds.num_train}, n_val = {ds.num_val}, d = {ds.dim})")
            done("plot")

            stage("write", f"write {args.out}")
            device = jax.devices()[0]
            meta = {
                "command": "gap",
                "data": ds.name,
                "data_options": data_kw,
                "denoiser": args.denoiser,
                "num_train": ds.num_train,
                "num_val": ds.num_val,
                "dim": ds.dim,
                "image_shape": list(ds.image_shape) if ds.image_shape is not None else None,
                "num_sigmas": args.num_sigmas,
                "sigma_min": args.sigma_min,
                "sigma_max": args.sigma_max,
                "num_noise": args.num_noise,
                "seed": args.seed,
                "batch_size": args.batch_size,
                "peak_sigma": curve.peak_sigma,
                "jax_version": jax.__version__,
                "jaxgap_version": __version__,
                "device": f"{device.platform}: {device.device_kind}",
                "stage_seconds": {k: round(v, 4) for k, v in stages.items() if k != "write"},
                "elapsed_s": round(time.perf_counter() - start, 4),
            }
            doc = {**meta, **_finite_or_none(curve.to_dict())}
            json_text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
            try:
                _write_all(os.path.abspath(args.out), {
                    "gap.json": lambda f: f.write(json_text.encode()),
                    "gap.csv": lambda f: f.write(curve.to_csv().encode()),
                    "gap.png": lambda f: f.write(png.getvalue()),
                })
            except OSError as err:
                where = f" {err.filename!r}" if err.filename else ""
                raise CLIError(f"--out: cannot write{where}: {err.strerror or err}") from None
            done("write")
        ok = True
    finally:
        if not ok:
            _remove_dirs(created)

    k = int(np.nanargmax(np.asarray(curve.gap)))
    print(f"{ds.name} / {args.denoiser}: n_train = {ds.num_train}, n_val = {ds.num_val}, "
          f"d = {ds.dim}; {args.num_sigmas} sigmas in [{args.sigma_min:g}, {args.sigma_max:g}], "
          f"{args.num_noise} noise draw(s)")
    print(_table(curve))
    print(f"largest gap: {float(curve.gap[k]):.4e} +- {float(curve.gap_se[k]):.1e} (1 se) "
          f"at sigma = {curve.peak_sigma:.4g}")
    print(f"wrote {', '.join(os.path.join(args.out, n) for n in GAP_FILES)} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """``jaxgap train``: train a network, tracking the per-sigma gap over training."""
    from jaxgap.report import plot_gap_over_training
    from jaxgap.train import TrainConfig, read_metrics, train_and_evaluate

    fields = dict(data=args.data, model=args.model, train_size=args.train_size,
                  steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                  eval_every=args.eval_every, ckpt_every=args.ckpt_every,
                  eval_sigmas=args.eval_sigmas, eval_num_noise=args.eval_num_noise,
                  seed=args.seed)
    if args.width is not None:
        fields["width"] = args.width
    if args.depth is not None:
        fields["depth"] = args.depth
    config = TrainConfig(**fields).validate()
    start = time.perf_counter()
    summary = train_and_evaluate(config, args.out, resume=args.resume,
                                 progress=sys.stderr.isatty())
    rows = read_metrics(args.out)
    figure = os.path.join(args.out, "gap_over_training.png")
    tmp = os.path.join(args.out, ".gap_over_training.png.tmp.png")
    plot_gap_over_training(rows, tmp, title=f"{config.data} / {config.model}, "
                           f"n_train = {config.train_size or 'all'}")
    os.replace(tmp, figure)
    last = summary["last"]
    gaps = np.asarray(last["ema_gap"])
    k = int(np.argmax(gaps))
    print(f"trained {config.model} for {config.steps} steps on {config.data} in "
          f"{time.perf_counter() - start:.1f} s; {len(rows)} evaluations in "
          f"{os.path.join(args.out, 'metrics.jsonl')}")
    print(f"final EMA gap is largest at sigma = {last['sigmas'][k]:.4g} "
          f"(gap {gaps[k]:.4g}; train {last['ema_train'][k]:.4g}, val {last['ema_val'][k]:.4g})")
    print(f"wrote {figure}")
    return 0


# ------------------------------------------------------------------------------------------
# jaxgap sample
# ------------------------------------------------------------------------------------------

def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


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


def _load_network(path: str, dim: int):
    """The EMA network of a run folder, checked to map ``[1, dim]`` to ``[1, dim]``."""
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
    try:
        out_shape = tuple(den(jnp.zeros((1, dim), jnp.float32), jnp.float32(1.0)).shape)
    except Exception as err:  # a network built for other shapes fails in many ways
        raise CLIError(f"--denoiser: dimension mismatch: the network of {path!r} cannot "
                       f"denoise points of d = {dim}: {type(err).__name__}: {err}") from None
    if out_shape != (1, dim):
        raise CLIError(f"--denoiser: dimension mismatch: the network of {path!r} maps "
                       f"[1, {dim}] to {list(out_shape)}")
    return den


def _grid_index(num_levels: int, num: int | None) -> np.ndarray:
    """``num`` indices evenly spread over ``range(num_levels)`` (all of them for None)."""
    if num is None or num >= num_levels:
        return np.arange(num_levels)
    return np.unique(np.round(np.linspace(0, num_levels - 1, num)).astype(int))


def _exit_summary(diag, exits) -> str:
    from jaxgap.reproduce import exit_ranges

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


def _cmd_sample(args: argparse.Namespace) -> int:
    """``jaxgap sample``: sample, measure copying and the inference domain; see the module
    docstring."""
    if args.s_churn > 0 and args.method != "edm":
        raise CLIError(f"--s-churn: expected 0 with --method {args.method} (churn needs "
                       f"--method edm), got {args.s_churn:g}")
    if args.diagnostic_sigmas is not None and args.diagnostic_sigmas > args.steps:
        raise CLIError(f"--diagnostic-sigmas: expected at most --steps = {args.steps} (the "
                       f"diagnostics use the sampler's noise levels), got "
                       f"{args.diagnostic_sigmas}")
    data_kw = dict(args.data_opt)
    if "seed" in data_kw:
        raise CLIError("--data-opt: the seed is set with --seed, got seed=...")
    config = None
    if args.denoiser in DENOISERS:
        kind, label = args.denoiser, args.denoiser
        data_name = args.data if args.data is not None else "digits"
        seed = args.seed if args.seed is not None else 0
        data_seed = seed
    else:
        kind, label = "network", args.denoiser
        config = _run_folder(args.denoiser)
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
        data_name = config.data
        seed = args.seed if args.seed is not None else config.seed
        data_seed = config.seed

    import jax
    import jax.numpy as jnp

    from jaxgap import __version__, sampling
    from jaxgap import train as train_mod
    from jaxgap.denoisers import EmpiricalDenoiser, GaussianDenoiser
    from jaxgap.report import plot_domain_diagnostics, plot_sample_grid
    from jaxgap.reproduce import domain_exits, measure_memorization, trajectory_domain

    start = time.perf_counter()
    stages: dict[str, float] = {}
    created: list[str] = []
    ok = False
    try:
        with _stage_bar(total=7) as bar:
            stage, done = _stage_fns(bar, stages)

            stage("load", f"load {data_name}")
            if config is not None:
                try:
                    ds = train_mod.load_data(config)
                except ValueError as err:
                    raise CLIError(f"--denoiser: the data of run {args.denoiser!r}: "
                                   f"{err}") from None
            else:
                ds = _load_data(data_name, data_seed, data_kw)
                if args.train_size is not None:
                    if args.train_size > ds.num_train:
                        raise CLIError(f"--train-size: expected at most {ds.num_train} (the "
                                       f"training points of {ds.name!r}), got {args.train_size}")
                    ds = ds.with_train_size(args.train_size)
            if ds.num_train < 2:
                raise CLIError(f"--data: the copy ratio needs at least 2 training points, "
                               f"{ds.name!r} has {ds.num_train}")
            done("load")

            stage("denoiser", "load network" if kind == "network" else f"fit {kind} denoiser")
            if kind == "empirical":
                den = EmpiricalDenoiser(ds.train)
            elif kind == "gaussian":
                den = GaussianDenoiser.from_data(ds.train)
            else:
                den = _load_network(args.denoiser, ds.dim)
            done("denoiser")

            # Before any long computation: the results must have somewhere to go.
            created = _prepare_out_dir(args.out)

            stage("sample", f"sample {args.num} x {args.steps} steps (compile + run)")
            key = jax.random.PRNGKey(seed)
            traj = sampling.sample(key, den, args.num, ds.dim, num_steps=args.steps,
                                   method=args.method, s_churn=args.s_churn,
                                   return_trajectory=True)
            traj = jax.block_until_ready(traj)
            samples = traj.x[-1]
            bad = int(np.sum(~np.all(np.isfinite(np.asarray(samples)), axis=1)))
            if bad:
                raise CLIError(f"--denoiser: sampling diverged: {bad} of {args.num} samples "
                               "hold non-finite values")
            done("sample")

            stage("metrics", "memorization metrics")
            train = jnp.asarray(ds.train)
            meas = measure_memorization(samples, train, ds.val, jax.random.fold_in(key, 1),
                                        threshold=THRESHOLD, num_bootstrap=NUM_BOOTSTRAP)
            mem, ratio, nearest = meas.memorized, meas.copy_ratio, meas.nearest
            to_train, to_val = meas.to_train, meas.to_val
            done("metrics")

            stage("domain", "inference-domain diagnostics")
            levels = _grid_index(args.steps, args.diagnostic_sigmas)
            sig = traj.sigma[:-1][levels]  # the trajectory states sit at the sampler's sigmas
            diag = trajectory_domain(den if kind == "empirical" else train, key, sig, ds.train,
                                     ds.val, {"trajectories": traj.x[:-1][levels]},
                                     num=args.num, quantiles=QUANTILES)
            exits = domain_exits(diag)
            done("domain")

            stage("plot", "plot")
            short = kind
            if kind == "network":
                short = os.path.basename(os.path.normpath(args.denoiser)) or args.denoiser
            title = (f"{ds.name} / {short}: {args.num} samples, {args.method}, "
                     f"{args.steps} steps "
                     f"(n_train = {ds.num_train}, d = {ds.dim})")
            pngs: dict[str, bytes] = {}
            if ds.image_shape is not None:
                buf = io.BytesIO()
                plot_sample_grid(samples, ds.train[nearest], ds.image_shape, buf,
                                 max_pairs=32, title=title + "\nupper: sample, lower: nearest "
                                 "training image (copy ratio r; r < 1/3 counts as a copy)",
                                 labels=[f"r={r:.2f}" for r in ratio])
                pngs["samples.png"] = buf.getvalue()
            buf = io.BytesIO()
            plot_domain_diagnostics(diag, buf, title=title)
            pngs["domain.png"] = buf.getvalue()
            done("plot")

            stage("write", f"write {args.out}")
            device = jax.devices()[0]
            exit_sigmas = [float(s) for s, e in zip(np.asarray(diag.sigmas), exits,
                                                    strict=True) if e is not None]
            meta = {
                "command": "sample",
                "denoiser": kind,
                "run_dir": os.path.abspath(args.denoiser) if kind == "network" else None,
                "run_config": json.loads(config.to_json()) if config is not None else None,
                "data": ds.name,
                "data_options": data_kw,
                "num_train": ds.num_train,
                "num_val": ds.num_val,
                "dim": ds.dim,
                "image_shape": list(ds.image_shape) if ds.image_shape is not None else None,
                "train_size": args.train_size if config is None else config.train_size,
                "num": args.num,
                "steps": args.steps,
                "method": args.method,
                "s_churn": args.s_churn,
                "seed": seed,
                "data_seed": data_seed,
            }
            doc = {
                **meta,
                **meas.summary(),
                "domain_exit_sigmas": exit_sigmas,
                "jax_version": jax.__version__,
                "jaxgap_version": __version__,
                "device": f"{device.platform}: {device.device_kind}",
                "stage_seconds": {k: round(v, 4) for k, v in stages.items() if k != "write"},
                "elapsed_s": round(time.perf_counter() - start, 4),
            }
            mem_text = json.dumps(_finite_or_none(doc), indent=2, allow_nan=False) + "\n"
            domain_doc = {**meta, "subsample": {
                              name: int(diag.sets[name].num_states)
                              for name in ("noisy_train", "noisy_val")},
                          "trajectories_outside_noisy_train": exits, **diag.to_dict()}
            domain_text = (json.dumps(_finite_or_none(domain_doc), indent=2, allow_nan=False)
                           + "\n")

            def write_npz(f):
                np.savez(f, samples=np.asarray(samples), sigma=np.asarray(traj.sigma),
                         x=np.asarray(traj.x), denoised=np.asarray(traj.denoised),
                         sigma_hat=np.asarray(traj.sigma_hat), copy_ratio=ratio,
                         nearest_train_index=nearest,
                         distance_to_train=to_train, distance_to_val=to_val)

            writers = {"samples.npz": write_npz,
                       "memorization.json": lambda f: f.write(mem_text.encode())}
            if "samples.png" in pngs:
                writers["samples.png"] = lambda f: f.write(pngs["samples.png"])
            writers["domain.json"] = lambda f: f.write(domain_text.encode())
            writers["domain.png"] = lambda f: f.write(pngs["domain.png"])
            try:
                written = _write_all(os.path.abspath(args.out), writers)
            except OSError as err:
                where = f" {err.filename!r}" if err.filename else ""
                raise CLIError(f"--out: cannot write{where}: {err.strerror or err}") from None
            if "samples.png" not in pngs:  # no stale grid of an earlier image run
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(os.path.abspath(args.out), "samples.png"))
            done("write")
        ok = True
    finally:
        if not ok:
            _remove_dirs(created)

    print(f"{ds.name} / {label}: {args.num} samples, {args.method}, {args.steps} steps; "
          f"n_train = {ds.num_train}, n_val = {ds.num_val}, d = {ds.dim}, seed = {seed}")
    print(f"memorized (copy ratio < 1/3): {float(mem.fraction):.3f} +- {float(mem.se):.3f} "
          f"(bootstrap se); copy ratio mean {np.mean(ratio):.3f}, median {np.median(ratio):.3f}")
    print(f"mean nearest distance: to train {np.mean(to_train):.4g}, to val "
          f"{np.mean(to_val):.4g}; closer to train than to val: "
          f"{100 * np.mean(to_train < to_val):.1f}%")
    print(_exit_summary(diag, exits))
    names = [os.path.basename(p) for p in written]
    print(f"wrote {', '.join(os.path.join(args.out, n) for n in names)} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


# ------------------------------------------------------------------------------------------
# jaxgap reproduce
# ------------------------------------------------------------------------------------------

def _cmd_reproduce(args: argparse.Namespace) -> int:
    """``jaxgap reproduce``: the whole study in five resumable stages (see
    :mod:`jaxgap.reproduce`); writes report.md, report.html, PNGs and results.json."""
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out: expected a folder, but {args.out!r} is a file")
    if not args.resume and os.path.isdir(out) and os.listdir(out):
        raise CLIError(f"--out: {args.out!r} is not empty; pass --resume to continue the run "
                       "in it or choose another --out")

    from jaxgap.reproduce import default_config, run

    try:
        config = default_config(args.data, quick=args.quick, seed=args.seed)
    except ValueError as err:
        raise CLIError(str(err)) from None
    ds = _load_data(args.data, args.seed, {})  # an unusable dataset fails before any write
    if config.train_size is not None and config.train_size > ds.num_train:
        raise CLIError(f"--data: {ds.name!r} has {ds.num_train} training points; the study "
                       f"needs {config.train_size}")
    start = time.perf_counter()
    created = _prepare_out_dir(args.out)
    ok = False
    try:
        try:
            results = run(config, args.out, resume=args.resume,
                          progress=None, log=lambda line: print(line, flush=True))
        except ValueError as err:
            msg = str(err)
            raise CLIError(f"--out: {msg[len('out: '):]}" if msg.startswith("out: ") else msg
                           ) from None
        ok = True
    finally:
        if not ok:
            _remove_dirs(created)
    print("claims:")
    for c in results["claims"]:
        print(f"  [{'supported' if c['supported'] else 'NOT supported'}] {c['claim']}: "
              f"{c['measured']}")
    where = os.path.join(args.out, "report.html")
    print(f"report: {where} (and report.md, results.json) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


# ------------------------------------------------------------------------------------------
# Parser and entry point
# ------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The ``jaxgap`` argument parser; each subcommand sets ``func`` to its handler."""
    parser = _Parser(prog=PROG, description="Memorization and generalization in diffusion "
                     "models, measured exactly in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gap = sub.add_parser(
        "gap", help="generalization-gap curve of a closed-form optimal denoiser",
        description="Fit a closed-form optimal denoiser on a dataset's training split and "
        "measure L_val(sigma) - L_train(sigma) over a log-spaced noise grid. Writes gap.json, "
        "gap.csv and gap.png into --out.")
    gap.add_argument("--data", default="digits", metavar="NAME",
                     help="dataset: digits, gaussian, gmm, manifold, npz:PATH or npy:PATH "
                     "(default: digits)")
    gap.add_argument("-D", "--data-opt", type=_data_option, action="append", default=[],
                     metavar="KEY=VALUE", help="dataset keyword, e.g. -D num_train=500 "
                     "(repeatable; see jaxgap.data.load)")
    gap.add_argument("--denoiser", choices=DENOISERS, default="empirical",
                     help="closed-form denoiser fit on the training split (default: empirical)")
    gap.add_argument("--num-sigmas", type=_int_at_least(2), default=48, metavar="K",
                     help="number of noise levels (default: 48)")
    gap.add_argument("--sigma-min", type=_positive_float, default=0.002,
                     help="smallest noise level (default: 0.002)")
    gap.add_argument("--sigma-max", type=_positive_float, default=80.0,
                     help="largest noise level (default: 80)")
    gap.add_argument("--num-noise", type=_int_at_least(1), default=4, metavar="R",
                     help="noise draws per example and sigma (default: 4)")
    gap.add_argument("--seed", type=_int_at_least(0), default=0,
                     help="seed of the data split and of the noise (default: 0)")
    gap.add_argument("--batch-size", type=_int_at_least(1), default=None, metavar="N",
                     help="examples per compiled batch (default: automatic)")
    gap.add_argument("--out", required=True, metavar="DIR", help="output folder")
    gap.set_defaults(func=_cmd_gap)

    train = sub.add_parser(
        "train", help="train a score network, tracking the gap over training",
        description="Train an EDM-preconditioned network with the EDM loss; every "
        "--eval-every steps record per-sigma train/val losses (raw and EMA weights) in "
        "metrics.jsonl; checkpoint every --ckpt-every steps (orbax); --resume continues.")
    train.add_argument("--data", default="digits", metavar="NAME",
                       help="dataset name (default: digits)")
    train.add_argument("--model", choices=("mlp", "unet"), default="mlp",
                       help="network (default: mlp)")
    train.add_argument("--train-size", type=_int_at_least(1), default=None, metavar="N",
                       help="training examples used (default: all)")
    train.add_argument("--steps", type=_int_at_least(1), default=2000)
    train.add_argument("--batch-size", type=_int_at_least(1), default=128)
    train.add_argument("--lr", type=_positive_float, default=1e-3)
    train.add_argument("--width", type=_int_at_least(1), default=None, help="MLP width")
    train.add_argument("--depth", type=_int_at_least(1), default=None, help="MLP depth")
    train.add_argument("--eval-every", type=_int_at_least(1), default=200, metavar="E")
    train.add_argument("--ckpt-every", type=_int_at_least(1), default=500, metavar="C")
    train.add_argument("--eval-sigmas", type=_int_at_least(2), default=24, metavar="K")
    train.add_argument("--eval-num-noise", type=_int_at_least(1), default=1, metavar="R")
    train.add_argument("--seed", type=_int_at_least(0), default=0)
    train.add_argument("--out", required=True, metavar="DIR", help="run folder")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    train.set_defaults(func=_cmd_train)

    samp = sub.add_parser(
        "sample", help="sample with a denoiser; measure copying and the inference domain",
        description="Draw samples with a closed-form optimal denoiser fit on a dataset's "
        "training split, or with the trained network (EMA weights) of a 'jaxgap train' run "
        "folder. Writes samples.npz (samples and trajectories), memorization.json (1/3-rule "
        "copy fraction, distances to train and val), samples.png (image data: samples beside "
        "their nearest training images), domain.json and domain.png (trajectory states "
        "against noisy train/val samples at the sampler's noise levels) into --out.")
    samp.add_argument("--denoiser", default="empirical", metavar="KIND|RUN_DIR",
                      help="'empirical' or 'gaussian' (closed form, fit on the training "
                      "split) or a training run folder; a run folder brings its own data, "
                      "train size and data seed; write ./NAME for a folder named like a "
                      "kind (default: empirical)")
    samp.add_argument("--data", default=None, metavar="NAME",
                      help="dataset: digits, gaussian, gmm, manifold, npz:PATH or npy:PATH "
                      "(default: digits; with a run folder: the run's, and only that)")
    samp.add_argument("-D", "--data-opt", type=_data_option, action="append", default=[],
                      metavar="KEY=VALUE", help="dataset keyword, e.g. -D num_train=500 "
                      "(repeatable; closed-form denoisers only)")
    samp.add_argument("--train-size", type=_int_at_least(2), default=None, metavar="N",
                      help="use the first N training points (default: all; with a run "
                      "folder: the run's)")
    samp.add_argument("--num", type=_int_at_least(1), default=256, metavar="M",
                      help="number of samples (default: 256)")
    samp.add_argument("--steps", type=_int_at_least(2), default=18, metavar="K",
                      help="sampler steps: EDM noise levels before the final 0 (default: 18)")
    samp.add_argument("--method", choices=SAMPLE_METHODS, default="heun",
                      help="ODE solver (heun, euler) or EDM's stochastic sampler (edm) "
                      "(default: heun)")
    samp.add_argument("--s-churn", type=_nonnegative_float, default=0.0, metavar="S",
                      help="churn of --method edm (default: 0, which equals heun)")
    samp.add_argument("--seed", type=_int_at_least(0), default=None,
                      help="seed of the sampling noise, the bootstrap and the noisy states "
                      "(default: 0, or the run's seed); for closed-form denoisers also of the "
                      "data split (a run folder keeps its own)")
    samp.add_argument("--diagnostic-sigmas", type=_int_at_least(1), default=None, metavar="L",
                      help="use L of the sampler's noise levels, evenly spread, for the "
                      "domain diagnostics (default: all --steps)")
    samp.add_argument("--out", required=True, metavar="DIR", help="output folder")
    samp.set_defaults(func=_cmd_sample)

    repro = sub.add_parser(
        "reproduce", help="the whole study end to end, with a report and a claims table",
        description="Run the study in five stages (closed-form gap curves; training the "
        "default network with the gap tracked; toy-model fit, sampling and memorization; "
        "inference-domain diagnostics; toy-model field), each skipped on --resume when its "
        "results exist. Writes report.md, a self-contained report.html, the figures as PNG "
        "and results.json (with the claims table) into --out.")
    repro.add_argument("--data", default="digits", metavar="NAME",
                       help="dataset: digits, gaussian, gmm, manifold, npz:PATH or npy:PATH "
                       "(default: digits)")
    repro.add_argument("--quick", action="store_true",
                       help="small settings: a smoke test of the pipeline (about a minute)")
    repro.add_argument("--seed", type=_int_at_least(0), default=0,
                       help="seed of the data split, network, noise and sampling (default: 0)")
    repro.add_argument("--out", default=os.path.join("runs", "reproduce"), metavar="DIR",
                       help="output folder (default: runs/reproduce)")
    repro.add_argument("--resume", action="store_true",
                       help="continue the run in --out: skip finished stages, continue "
                       "training from its last checkpoint")
    repro.set_defaults(func=_cmd_reproduce)
    return parser


def _error(message: str) -> int:
    line = " ".join(str(message).split())  # one line, whatever the message holds
    print(f"{PROG}: error: {line}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxgap`` command line; return the exit status.

    Args:
      argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
      0 on success, 2 on a usage or input/output error (reported as one line on stderr).
    """
    parser = build_parser()
    # orbax logs through absl; failures reach the user as our one error line instead.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except CLIError as err:
        return _error(str(err))
    except (ValueError, OSError) as err:  # input errors raised below the subcommand layer
        return _error(f"{type(err).__name__}: {err}" if isinstance(err, OSError) else str(err))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit_:  # --help, --version
        return exit_.code if isinstance(exit_.code, int) else 0
