"""``jaxgap gap``: the generalization-gap curve ``L_val(sigma) - L_train(sigma)`` of a
closed-form optimal denoiser fit on a dataset's training split, unconditional or conditioned
on the data's condition ids (``--condition``, with classifier-free guidance ``--guidance``);
writes ``gap.json``, ``gap.csv`` and ``gap.png`` into ``--out`` and prints a short table."""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np

from jaxgap.cli import common
from jaxgap.data import GRANULARITIES

NAME = "gap"
HELP = "generalization-gap curve of a closed-form optimal denoiser"
DESCRIPTION = ("Fit a closed-form optimal denoiser on a dataset's training split and measure "
               "L_val(sigma) - L_train(sigma) over a log-spaced noise grid. With --condition, "
               "the denoiser is conditioned on the data's condition ids at that granularity "
               "and every example is denoised under its own condition (guided with "
               "--guidance). Writes gap.json, gap.csv and gap.png into --out.")
DENOISERS = ("empirical", "gaussian")
CONDITION_HELP = ("condition ids of the data at this granularity (jaxgap.data.conditions: "
                  "none, coarse groups of classes, class labels, fine sub-clusters of each "
                  "class, random ids as a control; all but none need labelled data)")
GUIDANCE_HELP = ("classifier-free guidance weight w of a conditional denoiser: "
                 "D_w = D(x, sigma, null) + w (D(x, sigma, c) - D(x, sigma, null)); 0 is "
                 "unconditional, 1 conditional, > 1 guided; any finite number")
GAP_FILES = ("gap.json", "gap.csv", "gap.png")
DATA_HELP = "dataset: digits, gaussian, gmm, manifold, npz:PATH or npy:PATH"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``jaxgap gap``."""
    p.add_argument("--data", default="digits", metavar="NAME",
                   help=f"{DATA_HELP} (default: digits)")
    common.add_data_options(p, "see jaxgap.data.load")
    p.add_argument("--denoiser", choices=DENOISERS, default="empirical",
                   help="closed-form denoiser fit on the training split (default: empirical)")
    p.add_argument("--condition", choices=GRANULARITIES, default="none",
                   help=f"{CONDITION_HELP}; not none: the conditional closed form (empirical: "
                   "the empirical denoiser of the training points of each condition; "
                   "gaussian: one Wiener filter per condition), every example denoised under "
                   "its own condition (default: none, unconditional)")
    p.add_argument("--guidance", type=common.finite_float, default=None, metavar="W",
                   help=f"{GUIDANCE_HELP}; the null condition is the unconditional denoiser of "
                   "all training points; needs --condition (default: 1)")
    p.add_argument("--num-sigmas", type=common.int_at_least(2), default=48, metavar="K",
                   help="number of noise levels (default: 48)")
    p.add_argument("--sigma-min", type=common.positive_float, default=0.002,
                   help="smallest noise level (default: 0.002)")
    p.add_argument("--sigma-max", type=common.positive_float, default=80.0,
                   help="largest noise level (default: 80)")
    p.add_argument("--num-noise", type=common.int_at_least(1), default=4, metavar="R",
                   help="noise draws per example and sigma (default: 4)")
    p.add_argument("--seed", type=common.int_at_least(0), default=0,
                   help="seed of the data split and of the noise (default: 0)")
    p.add_argument("--batch-size", type=common.int_at_least(1), default=None, metavar="N",
                   help="examples per compiled batch (default: automatic)")
    common.add_output_options(p, resumable=False)


def _table(curve, peak: int, num_rows: int = 10) -> str:
    """About ``num_rows`` rows of the curve, evenly spaced over the grid; the row ``peak``
    (the largest gap) is marked."""
    s = np.asarray(curve.sigmas, np.float64)
    cols = [np.asarray(getattr(curve, f), np.float64) for f in ("train", "val", "gap", "gap_se")]
    rows = set(np.round(np.linspace(0, s.size - 1, min(num_rows, s.size))).astype(int).tolist())
    rows.add(peak)
    lines = [f"  {'sigma':>10} {'train':>11} {'val':>11} {'gap':>11} {'+- se':>11}"]
    for k in sorted(rows):
        t, v, g, se = (c[k] for c in cols)
        mark = "  <- largest gap" if k == peak else ""
        lines.append(f"  {s[k]:10.4g} {t:11.4e} {v:11.4e} {g:11.4e} {f'+- {se:.2e}':>11}{mark}")
    return "\n".join(lines)


def guidance_weight(guidance: float | None, conditional: bool, source: str, *,
                    default: float = 1.0, need: str | None = None) -> float | None:
    """``--guidance`` checked against the denoiser's source: None for an unconditional one
    (which refuses ``--guidance``), else the given weight, ``default`` when omitted."""
    if not conditional:
        if guidance is not None:
            need = need or f"pass --condition {'|'.join(GRANULARITIES[1:])}"
            raise common.CLIError(f"--guidance: expected a conditional denoiser ({need}), got "
                                  f"--guidance {guidance:g} with {source}")
        return None
    return default if guidance is None else guidance


def closed_form(kind: str, ds, guidance: float | None):
    """The closed-form optimal denoiser ``kind`` fit on ``ds.train``; with ``guidance``
    (a dataset carrying condition ids): the conditional one on ``ds.train_cond``, guided
    with weight ``guidance`` (:func:`jaxgap.denoisers.guided`; at 1 exactly the conditional
    denoiser)."""
    from jaxgap.denoisers import (
        ConditionalEmpiricalDenoiser,
        ConditionalGaussianDenoiser,
        EmpiricalDenoiser,
        GaussianDenoiser,
        guided,
    )

    if guidance is None:
        return EmpiricalDenoiser(ds.train) if kind == "empirical" else \
            GaussianDenoiser.from_data(ds.train)
    if kind == "empirical":
        den = ConditionalEmpiricalDenoiser(ds.train, ds.train_cond,
                                           num_conditions=ds.num_conditions)
    else:
        den = ConditionalGaussianDenoiser.from_data(ds.train, ds.train_cond)
    return guided(den, guidance)


def condition_text(granularity: str, guidance: float | None, ds) -> str:
    """``", condition class (10), w = 1"`` for a conditional run, else ``""``."""
    if guidance is None:
        return ""
    return f", condition {granularity} ({ds.num_conditions}), w = {guidance:g}"


def run(args: argparse.Namespace) -> int:
    """``jaxgap gap``: gap curve of a closed-form optimal denoiser."""
    import jax

    from jaxgap import noise
    from jaxgap.losses import curve_peak, gap_curve
    from jaxgap.report import plot_gap_curve

    if args.sigma_min >= args.sigma_max:
        raise common.CLIError(f"--sigma-min: expected a value < --sigma-max = "
                              f"{args.sigma_max:g}, got {args.sigma_min:g}")
    data_kw = common.data_options(args)
    conditional = args.condition != "none"
    w = guidance_weight(args.guidance, conditional,
                        f"--denoiser {args.denoiser} and --condition none")

    start = time.perf_counter()
    with (common.output_folder(args, resumable=False, what=NAME) as folder,
          common.stage_bar(total=5, mode=common.progress_mode(args)) as st):
        st.start("load", f"load {args.data}")
        ds = common.condition_data(common.load_data(args.data, args.seed, data_kw),
                                   args.condition)
        st.done("load")

        out_dir = folder.prepare()  # before any long computation: results need somewhere to go

        st.start("fit", f"fit {'conditional ' if conditional else ''}{args.denoiser} "
                 "denoiser")
        den = closed_form(args.denoiser, ds, w)
        st.done("fit")

        # One compiled program per split (train, val): not divisible into steps without
        # changing the noise, which is a function of (key, example, grid index, draw).
        st.start("losses", "losses (compile + run)")
        sigmas = noise.log_sigmas(args.num_sigmas, args.sigma_min, args.sigma_max)
        curve = gap_curve(jax.random.PRNGKey(args.seed), den, ds.train, ds.val, sigmas,
                          train_cond=ds.train_cond, val_cond=ds.val_cond,
                          num_noise=args.num_noise, batch_size=args.batch_size)
        curve = jax.block_until_ready(curve)
        st.done("losses")

        st.start("plot", "plot")
        png = io.BytesIO()
        plot_gap_curve(curve, png, title=f"{ds.name} / {args.denoiser} denoiser  "
                       f"(n_train = {ds.num_train}, n_val = {ds.num_val}, d = {ds.dim}"
                       f"{condition_text(args.condition, w, ds)})")
        st.done("plot")

        st.start("write", f"write {args.out}")
        meta = {
            "command": "gap",
            "data": ds.name,
            "data_options": data_kw,
            "data_notes": list(ds.notes),
            "denoiser": args.denoiser,
            "condition": args.condition,
            "guidance": w,
            "num_conditions": ds.num_conditions,
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
            **common.run_info(start, st),
        }
        text = common.json_text({**meta, **curve.to_dict()})
        common.write_outputs(out_dir, {
            "gap.json": lambda f: f.write(text.encode()),
            "gap.csv": lambda f: f.write(curve.to_csv().encode()),
            "gap.png": lambda f: f.write(png.getvalue()),
        })
        st.done("write")

    k = curve_peak(curve.sigmas, curve.gap, return_index=True)[2]
    print(f"{ds.name} / {args.denoiser}: n_train = {ds.num_train}, n_val = {ds.num_val}, "
          f"d = {ds.dim}{condition_text(args.condition, w, ds)}; {args.num_sigmas} sigmas "
          f"in [{args.sigma_min:g}, {args.sigma_max:g}], "
          f"{args.num_noise} noise draw(s)")
    print(_table(curve, k))
    print(f"largest gap: {float(curve.gap[k]):.4e} +- {float(curve.gap_se[k]):.1e} (1 se) "
          f"at sigma = {curve.peak_sigma:.4g}")
    print(f"wrote {', '.join(os.path.join(args.out, n) for n in GAP_FILES)} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
