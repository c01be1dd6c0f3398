"""``jaxgap reproduce``: the whole study end to end (:mod:`jaxgap.study`): five resumable
stages, then ``report.md``, a self-contained ``report.html``, PNGs and ``results.json`` with
the claims table."""

from __future__ import annotations

import argparse
import os
import time

from jaxgap.cli import common
from jaxgap.cli.gap import DATA_HELP

NAME = "reproduce"
HELP = "the whole study end to end, with a report and a claims table"
DESCRIPTION = ("Run the study in five stages (closed-form gap curves; training the default "
               "network with the gap tracked; toy-model fit, sampling and memorization; "
               "inference-domain diagnostics; toy-model field), each skipped on --resume "
               "when its results exist. Writes report.md, a self-contained report.html, the "
               "figures as PNG and results.json (with the claims table) into --out.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``jaxgap reproduce``."""
    p.add_argument("--data", default="digits", metavar="NAME",
                   help=f"{DATA_HELP} (default: digits)")
    p.add_argument("--quick", action="store_true",
                   help="small settings: a smoke test of the pipeline (about a minute)")
    p.add_argument("--seed", type=common.int_at_least(0), default=0,
                   help="seed of the data split, network, noise and sampling (default: 0)")
    p.add_argument("--out", default=os.path.join("runs", "reproduce"), metavar="DIR",
                   help="output folder (default: runs/reproduce)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: skip finished stages, continue "
                   "training from its last checkpoint")


def run(args: argparse.Namespace) -> int:
    """``jaxgap reproduce``: the whole study in five resumable stages."""
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise common.CLIError(f"--out: expected a folder, but {args.out!r} is a file")
    if not args.resume and os.path.isdir(out) and os.listdir(out):
        raise common.CLIError(f"--out: {args.out!r} is not empty; pass --resume to continue "
                              "the run in it or choose another --out")

    from jaxgap import study

    try:
        config = study.default_config(args.data, quick=args.quick, seed=args.seed)
    except ValueError as err:
        raise common.CLIError(str(err)) from None
    ds = common.load_data(args.data, args.seed, {})  # unusable data fail before any write
    train_size = config.train.train_size
    if train_size is not None and train_size > ds.num_train:
        raise common.CLIError(f"--data: {ds.name!r} has {ds.num_train} training points; the "
                              f"study needs {train_size}")
    start = time.perf_counter()
    with common.output_folder() as prepare:
        prepare(args.out)
        try:
            results = study.run(config, args.out, resume=args.resume, progress=None,
                                log=lambda line: print(line, flush=True))
        except ValueError as err:
            msg = str(err)
            raise common.CLIError(f"--out: {msg[len('out: '):]}" if msg.startswith("out: ")
                                  else msg) from None
    print("claims:")
    for c in results["claims"]:
        print(f"  [{'supported' if c['supported'] else 'NOT supported'}] {c['claim']}: "
              f"{c['measured']}")
    where = os.path.join(args.out, "report.html")
    print(f"report: {where} (and report.md, results.json) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0
