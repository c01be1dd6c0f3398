"""``jaxgap train``: train a score network, unconditional or conditional (``--condition``,
classifier-free guidance training with ``--p-uncond``), recording the per-sigma gap over
training (:func:`jaxgap.train.train_and_evaluate`), and draw the gap over training."""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

from jaxgap import _io
from jaxgap.cli import common
from jaxgap.cli.gap import CONDITION_HELP, DATA_HELP, GUIDANCE_HELP, guidance_weight
from jaxgap.data import GRANULARITIES

NAME = "train"
HELP = "train a score network, tracking the gap over training"
DESCRIPTION = ("Train an EDM-preconditioned network with the EDM loss; every --eval-every "
               "steps record per-sigma train/val losses (raw and EMA weights) in "
               "metrics.jsonl; checkpoint every --ckpt-every steps (orbax); --resume "
               "continues. With --condition, the network is conditional on the data's "
               "condition ids (a class embedding with a null class; labels dropped with "
               "probability --p-uncond) and its evaluations are guided with --guidance.")


def probability(text: str) -> float:
    """An argparse type: a number in ``[0, 1)``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


probability.__name__ = "float"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``jaxgap train``."""
    from jaxgap.nets import MODEL_SIZES
    from jaxgap.train import ARCH_FIELDS, EVAL_SIZE, TrainConfig

    d = TrainConfig()
    count = common.int_at_least(1)
    p.add_argument("--data", default=d.data, metavar="NAME",
                   help=f"{DATA_HELP} (default: {d.data})")
    common.add_data_options(p, "see jaxgap.data.load; stored in the run's config")
    p.add_argument("--model", choices=tuple(ARCH_FIELDS), default=d.model,
                   help=f"network: an MLP on flat points, a U-Net on image data, or a DiT "
                   f"(transformer on image patches, or on feature groups of flat points) "
                   f"(default: {d.model})")
    p.add_argument("--model-size", choices=MODEL_SIZES, default=None,
                   help="a rung of the model's size ladder, about 4x the parameters per rung "
                   "(xs about 10k ... xl a few million; README table); --width, --depth, "
                   "--channels, --heads, --patch override it (default: the family's default "
                   "size)")
    p.add_argument("--condition", choices=GRANULARITIES, default=d.condition,
                   help=f"{CONDITION_HELP}; not none: a conditional network D(x, sigma, c) "
                   "trained on each example's condition id (default: none, unconditional)")
    p.add_argument("--p-uncond", type=probability, default=None, metavar="P",
                   help="probability that a training example's condition is replaced by the "
                   "null condition, so one network serves every guidance weight; in [0, 1); "
                   f"needs --condition (default: {d.p_uncond:g})")
    p.add_argument("--guidance", type=common.finite_float, default=None, metavar="W",
                   help=f"{GUIDANCE_HELP}; the weight of the network's evaluations in "
                   "metrics.jsonl (and the default of 'jaxgap sample' on this run); the null "
                   f"condition is the network's learned null token; needs --condition "
                   f"(default: {d.guidance:g})")
    p.add_argument("--train-size", type=count, default=None, metavar="N",
                   help="train on the first N training examples (default: all)")
    p.add_argument("--steps", type=count, default=d.steps, metavar="T",
                   help=f"optimizer steps (default: {d.steps})")
    p.add_argument("--batch-size", type=count, default=d.batch_size, metavar="B",
                   help=f"examples per step, capped at the training set (default: "
                   f"{d.batch_size})")
    p.add_argument("--lr", type=common.positive_float, default=d.lr,
                   help=f"Adam learning rate after a {d.warmup}-step warm-up (default: {d.lr:g})")
    p.add_argument("--width", type=count, default=None, metavar="W",
                   help="MLP or DiT hidden width (default: the rung's, else MLP 256, DiT 64)")
    p.add_argument("--depth", type=common.int_at_least(0), default=None, metavar="L",
                   help="MLP residual blocks or DiT transformer blocks (default: the rung's, "
                   "else 4)")
    p.add_argument("--channels", type=_channels, default=None, metavar="C1,C2,...",
                   help="U-Net channels per level (default: the rung's, else 32,64)")
    p.add_argument("--heads", type=count, default=None, metavar="H",
                   help="DiT attention heads (default: the rung's, else 4)")
    p.add_argument("--patch", type=count, default=None, metavar="P",
                   help="DiT patch side (image data; on flat data the feature-group size) "
                   "(default: chosen from the data shape)")
    p.add_argument("--eval-every", type=count, default=d.eval_every, metavar="E",
                   help=f"record per-sigma train/val losses every E steps, and at the first "
                   f"and last step (default: {d.eval_every})")
    p.add_argument("--ckpt-every", type=count, default=d.ckpt_every, metavar="C",
                   help=f"checkpoint every C steps and at the last step; Ctrl-C also "
                   f"checkpoints (default: {d.ckpt_every})")
    p.add_argument("--eval-sigmas", type=common.int_at_least(2), default=d.eval_sigmas,
                   metavar="K", help=f"noise levels of the evaluations, log-spaced in "
                   f"[{d.sigma_min:g}, {d.sigma_max:g}] (default: {d.eval_sigmas})")
    p.add_argument("--eval-num-noise", type=count, default=d.eval_num_noise, metavar="R",
                   help=f"noise draws per example and sigma in the evaluations (default: "
                   f"{d.eval_num_noise})")
    p.add_argument("--eval-train-size", type=count, default=EVAL_SIZE, metavar="N",
                   help=f"training examples evaluated, the first N (default: {EVAL_SIZE})")
    p.add_argument("--eval-val-size", type=count, default=EVAL_SIZE, metavar="N",
                   help=f"validation examples evaluated, the first N (default: {EVAL_SIZE})")
    p.add_argument("--seed", type=common.int_at_least(0), default=d.seed,
                   help=f"the run's one seed: data split, initialization, data order, noise "
                   f"(default: {d.seed})")
    common.add_output_options(p, resumable=True)


def _channels(text: str) -> tuple[int, ...]:
    """``--channels 32,64``: positive integers separated by commas."""
    try:
        out = tuple(int(c) for c in text.split(","))
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, "
                                         f"got {text!r}")
    return out


def _config(args: argparse.Namespace):
    from jaxgap.train import ARCH_FIELDS, TrainConfig

    fields = dict(data=args.data, data_options=common.data_options(args), model=args.model,
                  train_size=args.train_size, steps=args.steps, batch_size=args.batch_size,
                  lr=args.lr, eval_every=args.eval_every, ckpt_every=args.ckpt_every,
                  eval_sigmas=args.eval_sigmas, eval_num_noise=args.eval_num_noise,
                  eval_train_size=args.eval_train_size, eval_val_size=args.eval_val_size,
                  seed=args.seed, condition=args.condition)
    conditional = args.condition != "none"
    w = guidance_weight(args.guidance, conditional, "--condition none",
                        default=TrainConfig.guidance)
    if args.p_uncond is not None and not conditional:
        raise common.CLIError(f"--p-uncond: expected a conditional network (pass --condition "
                              f"{'|'.join(GRANULARITIES[1:])}), got --p-uncond "
                              f"{args.p_uncond:g} with --condition none")
    if conditional:
        fields["guidance"] = w
        if args.p_uncond is not None:
            fields["p_uncond"] = args.p_uncond
    for name in ("model_size", *sorted({f for fs in ARCH_FIELDS.values() for f in fs})):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    try:
        return TrainConfig(**fields).validate()
    except ValueError as err:
        raise common.CLIError(str(err)) from None


def _data_error(msg: str, config) -> str:
    """A :func:`jaxgap.train.load_data` error as the one line naming its argument."""
    if msg.startswith("train_size"):
        return f"--train-size{msg[len('train_size'):]}"
    if msg.startswith("granularity: "):  # labels the data do not have
        return f"--condition: {msg.removeprefix('granularity: ')}"
    if msg.startswith("val_cond: "):  # a validation condition without training points
        return (f"--condition: {config.condition!r} on train_size = "
                f"{config.train_size or 'all'}: {msg}")
    if msg.startswith(("k: ", "groups: ")):  # too few points per class for the granularity
        return f"--condition: {config.condition!r} on {config.data!r}: {msg}"
    return f"--data: {msg.removeprefix('name: ')}"


def run(args: argparse.Namespace) -> int:
    """``jaxgap train``: train a network, tracking the per-sigma gap over training."""
    from jaxgap.losses import curve_peak
    from jaxgap.report import plot_gap_over_training
    from jaxgap.train import last_checkpoint, load_data, read_metrics, train_and_evaluate

    config = _config(args)
    start = time.perf_counter()
    with common.output_folder(args, resumable=True, what=NAME) as folder:
        try:
            ds = load_data(config)
        except ValueError as err:
            raise common.CLIError(_data_error(str(err), config)) from None
        common.print_notes(ds)
        n_tr = min(ds.num_train, config.train_size or ds.num_train)
        e_tr, e_va = min(n_tr, config.eval_train_size), min(ds.num_val, config.eval_val_size)
        if not args.quiet and (e_tr < n_tr or e_va < ds.num_val):
            print(f"note: evaluating the first {e_tr} of {n_tr} training and {e_va} of "
                  f"{ds.num_val} validation examples at {config.eval_sigmas} sigmas "
                  "(--eval-train-size, --eval-val-size)", file=sys.stderr)
        out_dir = folder.prepare()
        try:
            summary = train_and_evaluate(config, out_dir, resume=args.resume,
                                         progress=common.progress_mode(args))
        except KeyboardInterrupt:
            if folder.replacing:
                raise KeyboardInterrupt(f"{args.out!r} is unchanged (--overwrite replaces it "
                                        "only after a finished run)") from None
            step = last_checkpoint(out_dir)
            where = (f"checkpoint of step {step} in {args.out!r}; continue with --resume"
                     if step else f"no checkpoint yet in {args.out!r}; --resume starts over")
            raise KeyboardInterrupt(where) from None
        except ValueError as err:
            msg = str(err)
            raise common.CLIError(f"--out: {msg.removeprefix('out: ')}"
                                  if msg.startswith("out: ") else msg) from None
        rows = read_metrics(out_dir)
        png = io.BytesIO()
        cond = (f", condition {config.condition}, w = {config.guidance:g}"
                if config.conditional else "")
        plot_gap_over_training(rows, png, title=f"{config.data} / {config.model}, "
                               f"n_train = {config.train_size or 'all'}{cond}")
        _io.write_bytes(os.path.join(out_dir, "gap_over_training.png"), png.getvalue())
    figure = os.path.join(args.out, "gap_over_training.png")
    last = summary["last"]
    k = curve_peak(last["sigmas"], last["ema_gap"], return_index=True)[2]
    what = (f"conditional {config.model} (condition {config.condition}, p_uncond "
            f"{config.p_uncond:g}, evaluated at w = {config.guidance:g})" if config.conditional
            else config.model)
    print(f"trained {what} for {config.steps} steps on {config.data} in "
          f"{time.perf_counter() - start:.1f} s; {len(rows)} evaluations in "
          f"{os.path.join(args.out, 'metrics.jsonl')}")
    print(f"final EMA gap is largest at sigma = {last['sigmas'][k]:.4g} "
          f"(gap {last['ema_gap'][k]:.4g}; train {last['ema_train'][k]:.4g}, "
          f"val {last['ema_val'][k]:.4g})")
    print(f"wrote {figure}")
    return 0
