"""``jaxgap reproduce``: the whole study end to end (:mod:`jaxgap.study`): five resumable
stages, then ``report.md``, a self-contained ``report.html``, PNGs and ``results.json`` with
the claims judged by the pre-registered criteria over seeds, with controls."""

from __future__ import annotations

import argparse
import os
import time

from jaxgap.cli import common
from jaxgap.cli.gap import DATA_HELP

NAME = "reproduce"
HELP = "the whole study end to end, with a report and a claims table"
DESCRIPTION = ("Run the study in five stages (closed-form gap curves; the network's seeds and "
               "the memorizing control trained as one ensemble, evaluated and sampled over "
               "training; the structureless-data control; the optimal denoiser as a "
               "sampler; toy-model fits), each skipped on --resume when its results exist. "
               "Every claim is judged by the pre-registered criteria (criteria.toml) over "
               "the seeds, with its controls. Writes report.md, a self-contained "
               "report.html, the figures as PNG and results.json (claims with intervals "
               "and controls, the phase map's regimes, a disclosure) into --out.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``jaxgap reproduce``."""
    from jaxgap.study.config import QUICK, STUDY_TRAIN, StudyConfig

    d = StudyConfig()
    count = common.int_at_least(1)

    def default(name, value):
        return f"(default: {value}; with --quick: {QUICK[name]})"

    p.add_argument("--data", default="digits", metavar="NAME",
                   help=f"{DATA_HELP} (default: digits)")
    common.add_data_options(p, "see jaxgap.data.load")
    p.add_argument("--quick", action="store_true",
                   help="small settings: a smoke test of the pipeline (about 2 minutes)")
    p.add_argument("--full", action="store_true",
                   help="also the factor study: model-size, condition-granularity and "
                   "guidance sweeps, each a report section with a claims row")
    p.add_argument("--train-size", type=common.int_at_least(2), default=None, metavar="N",
                   help="training examples of the network and the closed forms "
                   + default("train_size", STUDY_TRAIN.train_size))
    p.add_argument("--steps", type=count, default=None, metavar="T",
                   help="the network's training steps " + default("steps", STUDY_TRAIN.steps))
    p.add_argument("--eval-sigmas", type=common.int_at_least(3), default=None, metavar="K",
                   help="noise levels of every gap curve "
                   + default("eval_sigmas", STUDY_TRAIN.eval_sigmas))
    p.add_argument("--num-samples", type=count, default=None, metavar="M",
                   help="samples per sampler " + default("num_samples", d.num_samples))
    p.add_argument("--sample-steps", type=common.int_at_least(2), default=None, metavar="K",
                   help="Heun steps of the samplers " + default("sample_steps", d.sample_steps))
    p.add_argument("--seed", type=common.int_at_least(0), default=0,
                   help="first seed of the data split, network, noise and sampling "
                   "(default: 0)")
    p.add_argument("--seeds", type=common.int_at_least(3), default=None, metavar="S",
                   help="seeds of the network (one ensemble) " + default("seeds", d.seeds))
    common.add_output_options(p, resumable=True, default=os.path.join("runs", "reproduce"))


OVERRIDES = ("train_size", "steps", "eval_sigmas", "num_samples", "sample_steps", "seeds")


def run(args: argparse.Namespace) -> int:
    """``jaxgap reproduce``: the whole study in five resumable stages."""
    from jaxgap import study

    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    data_kw = common.data_options(args)
    if data_kw:
        overrides["data_options"] = data_kw
    try:
        config = study.default_config(args.data, quick=args.quick, seed=args.seed,
                                      full=args.full, **overrides)
    except ValueError as err:
        raise common.CLIError(str(err)) from None
    with common.output_folder(args, resumable=True, what=NAME) as folder:
        ds = common.load_data(args.data, args.seed, data_kw)  # unusable data fail before writes
        train_size = config.train.train_size
        if train_size is not None and train_size > ds.num_train:
            raise common.CLIError(f"--train-size: {ds.name!r} has {ds.num_train} training "
                                  f"points; the study needs {train_size}")
        start = time.perf_counter()
        out_dir = folder.prepare()
        try:
            results = study.run(config, out_dir, resume=args.resume,
                                progress=common.progress_mode(args),
                                log=None if args.quiet else
                                lambda line: print(line, flush=True))
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"{args.out!r} is unchanged (--overwrite replaces it only after a finished "
                "run)" if folder.replacing else f"finished stages are kept in {args.out!r}; "
                "continue with --resume") from None
        except ValueError as err:
            msg = str(err)
            raise common.CLIError(f"--out: {msg[len('out: '):]}" if msg.startswith("out: ")
                                  else msg) from None
    print("claims:")
    for c in results["claims"] + results["factors"]:
        lo, hi = c["interval"]
        print(f"  [{'supported' if c['supported'] else 'NOT supported'}] {c['claim']} "
              f"({c['seeds_supporting']}/{c['seeds']} seeds; estimate {c['estimate']}, 95% "
              f"interval [{lo}, {hi}])")
    where = os.path.join(args.out, "report.html")
    print(f"report: {where} (and report.md, results.json) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0
