"""Per-step cost of holding the training state as a dict of ``nnx.State``s between steps.

``jaxgap.train.make_step`` returns a ``Step``: the training loops keep the state as its flat
leaf list between steps (``step.flat``) and rebuild the dict only to evaluate or checkpoint.
This script times, in one process and interleaved, the step as it was before (the step
body jitted on the state dict, ``state -> (state, loss)``: the dict's ``nnx.State``s are
flattened and rebuilt in Python on every call) against the flat step, on digits at batch
128 for small networks, where the step is a few milliseconds and the Python time shows.
Ensembles (``Ensemble.make_step``) are timed with the state dict passed in and out
(``step(state)``) against the flat step.

Timing: chunks of consecutive steps (about ``--chunk-seconds`` each, ``block_until_ready``
at the end), the two forms alternating; reported: the median ms per step of each and the
median of the paired chunk ratios (dict / flat) with the range of the middle 80% of the
paired ratios.

Usage:
  python benchmarks/step_dispatch.py                 # MLP, U-Net, DiT at xs; ensembles
  python benchmarks/step_dispatch.py --chunks 5 --chunk-seconds 0.2     # quick
Writes benchmarks/results/step_dispatch.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import environment, print_table, write_json  # noqa: E402

from jaxgap._jit import step_jit  # noqa: E402
from jaxgap.ensemble import Ensemble, member_data  # noqa: E402
from jaxgap.train import (  # noqa: E402
    TrainConfig,
    hyper,
    init_state,
    load_data,
    make_step,
    step_body,
)


def single(config: TrainConfig):
    """(dict runner, flat runner) of one network's step: each ``run(k)`` does k steps."""
    ds = load_data(config)
    graphdef, tx, state = init_state(config, ds.dim, ds.image_shape)
    train_x = jnp.asarray(ds.train)
    batch = min(config.batch_size, ds.num_train)
    old = step_jit(step_body(graphdef, config, batch))  # the step before ``Step``
    args = (train_x, None, jnp.asarray(train_x.shape[0], jnp.int32),
            jax.random.PRNGKey(config.seed), hyper(config))
    new = make_step(graphdef, tx, config, train_x, batch)
    return runner(lambda s: old(s, *args), state), flat_runner(new, state)


def ensemble(config: TrainConfig, members: int):
    """(dict runner, flat runner) of an ensemble's step (``Ensemble.make_step``'s rule)."""
    configs = [dataclasses.replace(config, seed=s) for s in range(members)]
    data = member_data(configs)
    ens = Ensemble.create(configs, dim=data.train.shape[-1],
                          image_shape=data.datasets[0].image_shape)
    step = ens.make_step(data)
    return runner(step, ens.state), flat_runner(step, ens.state)


def runner(step, state):
    box = [state]

    def run(k: int):
        s = box[0]
        for _ in range(k):
            s, _ = step(s)
        jax.block_until_ready(s)
        box[0] = s

    return run


def flat_runner(step, state):
    return runner(step.flat, step.flatten(state))


def timed(run, k: int) -> float:
    t0 = time.perf_counter()
    run(k)
    return time.perf_counter() - t0


def measure(name: str, runs, chunks: int, chunk_s: float) -> dict:
    old, new = runs
    for r in (old, new):  # compile and warm up
        r(3)
    k = max(5, int(chunk_s / max(timed(old, 5) / 5, 1e-5)))
    t_old, t_new = [], []
    for _ in range(chunks):
        t_old.append(timed(old, k) / k)
        t_new.append(timed(new, k) / k)
    ratios = np.asarray(t_old) / np.asarray(t_new)
    lo, hi = np.percentile(ratios, [10, 90])
    return {"case": name, "steps_per_chunk": k, "dict_ms": 1e3 * float(np.median(t_old)),
            "flat_ms": 1e3 * float(np.median(t_new)),
            "dict_over_flat": float(np.median(ratios)), "ratio_p10": float(lo),
            "ratio_p90": float(hi), "chunk_seconds_dict": t_old, "chunk_seconds_flat": t_new}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=11)
    ap.add_argument("--chunk-seconds", type=float, default=0.5)
    ap.add_argument("--out", default="step_dispatch")
    args = ap.parse_args(argv)
    cases = [(f"{m} xs", lambda m=m: single(TrainConfig(model=m, model_size="xs")))
             for m in ("mlp", "unet", "dit")]
    cases += [("mlp default", lambda: single(TrainConfig(model="mlp"))),
              ("ensemble mlp xs, E = 8 (vmap)",
               lambda: ensemble(TrainConfig(model="mlp", model_size="xs"), 8)),
              ("ensemble unet xs, E = 3 (turns)",
               lambda: ensemble(TrainConfig(model="unet", model_size="xs"), 3))]
    rows = []
    for name, make in cases:
        rows.append(measure(name, make(), args.chunks, args.chunk_seconds))
        print(f"  {name}: {rows[-1]['dict_ms']:.2f} ms -> {rows[-1]['flat_ms']:.2f} ms",
              flush=True)
    print("\nPer-step time, state dict vs flat leaves (digits, batch 128, float32)")
    print_table([{k: v for k, v in r.items() if not k.startswith("chunk_")} for r in rows],
                ["case", "dict_ms", "flat_ms", "dict_over_flat", "ratio_p10", "ratio_p90"])
    path = write_json(args.out, {"environment": environment(), "chunks": args.chunks,
                                 "chunk_seconds": args.chunk_seconds, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
