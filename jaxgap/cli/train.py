"""``jaxgap train``: train a score network, recording the per-sigma gap over training
(:func:`jaxgap.train.train_and_evaluate`), and draw the gap over training."""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

from jaxgap import _io
from jaxgap.cli import common

NAME = "train"
HELP = "train a score network, tracking the gap over training"
DESCRIPTION = ("Train an EDM-preconditioned network with the EDM loss; every --eval-every "
               "steps record per-sigma train/val losses (raw and EMA weights) in "
               "metrics.jsonl; checkpoint every --ckpt-every steps (orbax); --resume "
               "continues.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``jaxgap train``."""
    count = common.int_at_least(1)
    p.add_argument("--data", default="digits", metavar="NAME",
                   help="dataset name (default: digits)")
    p.add_argument("--model", choices=("mlp", "unet"), default="mlp",
                   help="network (default: mlp)")
    p.add_argument("--train-size", type=count, default=None, metavar="N",
                   help="training examples used (default: all)")
    p.add_argument("--steps", type=count, default=2000)
    p.add_argument("--batch-size", type=count, default=128)
    p.add_argument("--lr", type=common.positive_float, default=1e-3)
    p.add_argument("--width", type=count, default=None, help="MLP width")
    p.add_argument("--depth", type=count, default=None, help="MLP depth")
    p.add_argument("--eval-every", type=count, default=200, metavar="E")
    p.add_argument("--ckpt-every", type=count, default=500, metavar="C")
    p.add_argument("--eval-sigmas", type=common.int_at_least(2), default=24, metavar="K")
    p.add_argument("--eval-num-noise", type=count, default=1, metavar="R")
    p.add_argument("--seed", type=common.int_at_least(0), default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")


def run(args: argparse.Namespace) -> int:
    """``jaxgap train``: train a network, tracking the per-sigma gap over training."""
    from jaxgap.losses import curve_peak
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
    png = io.BytesIO()
    plot_gap_over_training(rows, png, title=f"{config.data} / {config.model}, "
                           f"n_train = {config.train_size or 'all'}")
    _io.write_bytes(figure, png.getvalue())
    last = summary["last"]
    k = curve_peak(last["sigmas"], last["ema_gap"], return_index=True)[2]
    print(f"trained {config.model} for {config.steps} steps on {config.data} in "
          f"{time.perf_counter() - start:.1f} s; {len(rows)} evaluations in "
          f"{os.path.join(args.out, 'metrics.jsonl')}")
    print(f"final EMA gap is largest at sigma = {last['sigmas'][k]:.4g} "
          f"(gap {last['ema_gap'][k]:.4g}; train {last['ema_train'][k]:.4g}, "
          f"val {last['ema_val'][k]:.4g})")
    print(f"wrote {figure}")
    return 0
