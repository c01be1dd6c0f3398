"""Ensembles: E members trained as one compiled program vs E sequential single-model runs.

Workload: the default MLP of ``jaxgap train`` (``TrainConfig()``: width 256, depth 4, batch
128, float32, AdamW with warm-up, EMA) on digits (d = 64) with ``--train-size`` examples
(default 1024), members = seeds ``0..E-1`` (each seed its own data split, initialization,
data order and noise), for ``E`` in ``--members`` (default 1, 4, 8, 16, 64). Both sides do the
same work: ``--steps`` optimizer steps (default 200) and the evaluation schedule of
``jaxgap.train.train_and_evaluate`` (step 0, every ``--eval-every`` steps (default 100) and
the last step): the per-sigma gap curves of the raw and the EMA parameters on the first
``eval_train_size`` training and ``eval_val_size`` validation examples (``TrainConfig``
defaults), brought to the host. Checkpoints and progress bars are left out of both.

- ensemble: ``jaxgap.ensemble.Ensemble.create(configs, dim=64)``, ``member_data(configs)``,
  one jitted step ``ens.make_step(data)`` (``state -> (state, loss [E])``) and one jitted
  evaluation ``ens.make_eval(data)`` for all members.
- sequential: per member, the single-run trainer's pieces as ``train_and_evaluate`` uses
  them: ``load_data``, ``init_state``, ``make_step(graphdef, tx, config, train_x, batch)``
  (a fresh jit, so every run compiles its step, as a user pays it) and
  ``jaxgap.losses.gap_curve`` on the raw and the EMA parameters with the run's evaluation key
  (what ``train_and_evaluate`` evaluates). The runs are in this one process, so the
  evaluation's compiled program is reused from the first run on. ``--seq-runs`` runs
  (default 4, at most E) are timed, once, and reused for every E; beyond them the
  sequential cost is extrapolated linearly: each further run costs the mean of runs 2..k
  (run 1 alone pays the one-time compilations that later runs reuse; with k = 1 run 1
  itself). The table's ``seq_k`` and the JSON's ``sequential_extrapolated_from`` say how
  many runs were measured.

Timing (``jax.block_until_ready`` at every evaluation; the steps between evaluations are
dispatched asynchronously, as in the trainer): ``setup_s`` (data and initial states),
``first_s`` (the step-0 evaluation and the first step: tracing and XLA compilation), the
remaining steps and evaluations. ``total_s`` = setup + everything (what a user waits,
compilation included); ``steady_s`` = the whole schedule at steady state (the first step and
evaluation replaced by the mean of the later ones; setup excluded). ``compile_s`` = first_s
minus one steady step and one steady evaluation. Member-steps per second = E x steps /
seconds (``msps``: steady, ``msps_total``: with setup and compilation; ``train_msps``:
training steps alone, evaluations left out). ``speedup`` = ensemble member-steps/s /
sequential member-steps/s (steady; ``speedup_total`` with compilation); ``vs_E1`` = the
ensemble's steady member-steps/s at E over that at E = 1. As a sanity check, member 0's final
gap curves are compared with those of its single run (same seed: they agree to float32
rounding, amplified over the training steps).

``--model unet|dit`` and ``--model-size xs..xl`` train another network (the family's
default, or its rung; ``--quick`` shrinks only the MLP). ``--layout vmap|turns`` steps the
ensemble's members side by side (``jax.vmap``) or in turns in one single-member program
against ``Ensemble.make_step``'s rule (on one CPU device: U-Net in turns, MLP and DiT side
by side); the evaluation is the same either way.

Targets (issue 13): on the 2-core CPUs of this project at least 1.0x at E = 8 (a CPU is
already busy with one model: the gain is compile and dispatch time); on a GPU, E = 64 at
least 20x the member-steps per second of E = 1 (one small MLP leaves a GPU idle). A GPU, when
present, is used by JAX without changes.

Usage: python benchmarks/ensemble.py [--quick] [--members 1,4,8,16,64] [--steps 200]
    [--eval-every 100] [--train-size 1024] [--seq-runs 4] [--model mlp] [--model-size m]
    [--layout vmap|turns] [--out ensemble]
Writes benchmarks/results/OUT.json (default ensemble.json).
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
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from _common import environment, print_table, write_json  # noqa: E402

from jaxgap import _mc, _streams  # noqa: E402
from jaxgap import noise as _noise  # noqa: E402
from jaxgap.ensemble import Ensemble, member_data  # noqa: E402
from jaxgap.losses import gap_curve  # noqa: E402
from jaxgap.nets import MODEL_SIZES  # noqa: E402
from jaxgap.train import ARCH_FIELDS, TrainConfig, init_state, load_data, make_step  # noqa: E402

QUICK = dict(members="1,4", steps=4, eval_every=2, train_size=256, seq_runs=2)
FULL = dict(members="1,4,8,16,64", steps=200, eval_every=100, train_size=1024, seq_runs=4)
QUICK_CONFIG = dict(width=32, depth=1, eval_sigmas=4, eval_train_size=64, eval_val_size=64)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def eval_marks(steps: int, every: int) -> set[int]:
    """Steps after which ``train_and_evaluate`` evaluates (besides step 0)."""
    return {t for t in range(1, steps + 1) if t % every == 0 or t == steps}


def run_schedule(step, evaluate, state, steps: int, every: int) -> dict:
    """Evaluate at step 0, then ``steps`` steps with evaluations at :func:`eval_marks`.

    The step-0 evaluation and the first step are timed apart (they compile); the later
    steps run asynchronously between evaluations (blocked on before each one). The state is
    held as its flat leaf list between steps, as the training loops hold it
    (``jaxgap.train.Step``)."""
    marks = eval_marks(steps, every)
    t0 = time.perf_counter()
    last = evaluate(state)
    first_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    leaves, _ = step.flat(step.flatten(state))
    jax.block_until_ready(leaves)
    first_step = time.perf_counter() - t0
    train_s, evals = 0.0, []
    t0 = time.perf_counter()
    for now in range(1, steps + 1):
        if now > 1:
            leaves, _ = step.flat(leaves)
        if now in marks:
            jax.block_until_ready(leaves)
            t1 = time.perf_counter()
            train_s += t1 - t0
            last = evaluate(step.unflatten(leaves))
            t0 = time.perf_counter()
            evals.append(t0 - t1)
    step_s = train_s / (steps - 1)  # steps 2..S at steady state
    eval_s = float(np.mean(evals))
    return {"first_eval_s": first_eval, "first_step_s": first_step,
            "first_s": first_eval + first_step, "train_s": train_s, "evals_s": evals,
            "steady_step_s": step_s, "steady_eval_s": eval_s,
            "compile_s": first_eval + first_step - step_s - eval_s,
            "loop_s": first_eval + first_step + train_s + float(np.sum(evals)),
            "steady_s": steps * step_s + (len(evals) + 1) * eval_s,
            "steady_train_s": steps * step_s, "last": last}


def single_run(config: TrainConfig) -> dict:
    """One single-model run with the trainer's pieces, timed (see the module docstring)."""
    t0 = time.perf_counter()
    ds = load_data(config)
    graphdef, tx, state = init_state(config, ds.dim, ds.image_shape)
    train_x = jnp.asarray(ds.train)
    eval_train = train_x[: config.eval_train_size]
    val_x = jnp.asarray(ds.val[: config.eval_val_size])
    step = make_step(graphdef, tx, config, train_x, min(config.batch_size, ds.num_train))
    sigmas = _noise.log_sigmas(config.eval_sigmas, config.sigma_min, config.sigma_max)
    key = _streams.stream(jax.random.PRNGKey(config.seed), _streams.EVAL_NOISE)
    jax.block_until_ready((state, train_x, val_x))
    setup = time.perf_counter() - t0

    def evaluate(state):  # what train_and_evaluate's evaluation computes
        row = {}
        for prefix, params in (("", state["params"]), ("ema_", state["ema"])):
            curve = gap_curve(key, nnx.merge(graphdef, params), eval_train, val_x, sigmas,
                              num_noise=config.eval_num_noise)
            for name in ("train", "val", "gap", "gap_se"):
                row[prefix + name] = np.asarray(getattr(curve, name), np.float64).tolist()
        return row

    out = run_schedule(step, evaluate, state, config.steps, config.eval_every)
    return {"seed": config.seed, "setup_s": setup, "total_s": setup + out["loop_s"], **out}


def ensemble_run(configs: list[TrainConfig], layout: str | None = None) -> dict:
    """The members as one ensemble, timed (see the module docstring); ``layout``: that of
    ``Ensemble.make_step`` (None: its rule)."""
    t0 = time.perf_counter()
    data = member_data(configs)
    ens = Ensemble.create(configs, dim=data.train.shape[-1],
                          image_shape=data.datasets[0].image_shape)
    step = ens.make_step(data, layout=layout)
    evaluate = ens.make_eval(data)
    jax.block_until_ready(ens.state)
    setup = time.perf_counter() - t0
    out = run_schedule(step, evaluate, ens.state, configs[0].steps, configs[0].eval_every)
    out["last"] = out["last"][0]  # member 0, for the check against its single run
    return {"E": len(configs), "setup_s": setup, "total_s": setup + out["loop_s"], **out}


def sequential_cost(runs: list[dict], e: int) -> dict:
    """Sequential seconds of ``e`` runs from the measured ``runs`` (see the docstring)."""
    k = min(e, len(runs))
    later = runs[1:] if len(runs) > 1 else runs[:1]
    out = {"k": k}
    for name in ("total_s", "steady_s", "steady_train_s"):
        measured = sum(r[name] for r in runs[:k])
        out[name] = measured + (e - k) * float(np.mean([r[name] for r in later]))
    return out


def max_rel_diff(a: dict, b: dict) -> float:
    """Largest relative difference of the train and validation losses (raw and EMA)."""
    worst = 0.0
    for name in ("train", "val", "ema_train", "ema_val"):
        x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))))
    return worst


def parse_members(text: str) -> list[int]:
    try:
        members = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        members = []
    if not members or any(e < 1 for e in members):
        raise SystemExit(f"--members: expected positive integers separated by commas, got "
                         f"{text!r}")
    return sorted(set(members))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: E in 1,4, 4 steps, width 32, depth 1, small "
                             "evaluations (explicit options still apply)")
    parser.add_argument("--members", help=f"ensemble sizes E (default {FULL['members']})")
    parser.add_argument("--steps", type=int, help=f"training steps (default {FULL['steps']})")
    parser.add_argument("--eval-every", type=int,
                        help=f"steps between evaluations (default {FULL['eval_every']})")
    parser.add_argument("--train-size", type=int,
                        help=f"training examples per member (default {FULL['train_size']})")
    parser.add_argument("--seq-runs", type=int,
                        help=f"sequential single runs timed, at most E; the rest extrapolated "
                             f"(default {FULL['seq_runs']})")
    parser.add_argument("--model", default="mlp", choices=tuple(ARCH_FIELDS),
                        help="the network (default mlp)")
    parser.add_argument("--model-size", choices=MODEL_SIZES,
                        help="the family's size rung (default: its default network)")
    parser.add_argument("--layout", choices=("vmap", "turns"),
                        help="step the members side by side (vmap) or in turns (default: "
                             "Ensemble.make_step's rule)")
    parser.add_argument("--out", default="ensemble",
                        help="results name: benchmarks/results/OUT.json (default ensemble)")
    args = parser.parse_args()
    opts = dict(QUICK if args.quick else FULL)
    for name in opts:
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    members = parse_members(str(opts["members"]))
    for name in ("steps", "eval_every", "train_size", "seq_runs"):
        if opts[name] < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: expected a positive integer, got "
                             f"{opts[name]}")
    if opts["steps"] < 2:
        raise SystemExit(f"--steps: expected at least 2 (the first step is timed apart), got "
                         f"{opts['steps']}")
    shrink = QUICK_CONFIG if args.quick and args.model == "mlp" and not args.model_size else {}
    base = TrainConfig(model=args.model, model_size=args.model_size,
                       train_size=opts["train_size"], steps=opts["steps"],
                       eval_every=opts["eval_every"], **shrink)
    try:
        base = base.validate()
        ds = load_data(base)  # untimed warm-up: data loading, backend start, eager init ops
        jax.block_until_ready(init_state(base, ds.dim, ds.image_shape)[2])
    except ValueError as err:
        raise SystemExit(str(err)) from err
    device = _mc.device_text()
    log(f"device: {device}")

    num_seq = min(opts["seq_runs"], max(members))
    seq_runs = []
    for s in range(num_seq):
        log(f"sequential run {s + 1}/{num_seq} (seed {s})")
        seq_runs.append(single_run(dataclasses.replace(base, seed=s)))
    ens_runs = []
    for e in members:
        log(f"ensemble E = {e}")
        ens_runs.append(ensemble_run([dataclasses.replace(base, seed=s) for s in range(e)],
                                     layout=args.layout))

    steps = base.steps
    rows = []
    ref = None
    for r in ens_runs:
        e = r["E"]
        seq = sequential_cost(seq_runs, e)
        row = {"E": e, "ens_setup_s": r["setup_s"], "ens_compile_s": r["compile_s"],
               "ens_total_s": r["total_s"], "ens_steady_s": r["steady_s"],
               "seq_total_s": seq["total_s"], "seq_steady_s": seq["steady_s"], "seq_k": seq["k"],
               "ens_msps": e * steps / r["steady_s"], "seq_msps": e * steps / seq["steady_s"],
               "ens_msps_total": e * steps / r["total_s"],
               "seq_msps_total": e * steps / seq["total_s"],
               "ens_train_msps": e * steps / r["steady_train_s"],
               "seq_train_msps": e * steps / seq["steady_train_s"]}
        row["speedup"] = row["ens_msps"] / row["seq_msps"]
        row["speedup_total"] = row["ens_msps_total"] / row["seq_msps_total"]
        row["speedup_train"] = row["ens_train_msps"] / row["seq_train_msps"]
        if e == 1:
            ref = row["ens_msps"]
        row["vs_E1"] = row["ens_msps"] / ref if ref else None
        row["member0_rel_diff"] = max_rel_diff(r["last"], seq_runs[0]["last"])
        rows.append(row)

    env = environment()
    net = (f"{base.model} {base.model_size}" if base.model_size else
           f"default {base.model}") + (f" (width {base.width}, depth {base.depth})"
                                       if base.model == "mlp" and not base.model_size else "")
    layout = args.layout or "by make_step's rule"
    print(f"\nEnsemble (members stepped: {layout}) vs sequential training: {net}, batch "
          f"{base.batch_size}, digits (d = 64, {base.train_size} "
          f"training examples per member), {steps} steps, evaluations at step 0, every "
          f"{base.eval_every} and the last ({base.eval_sigmas} sigmas, raw + EMA); {device}, "
          f"{env['cpu_count']} CPUs, jax {env['jax']}")
    print("msps: member-steps/s (steady: compilation and setup excluded; _total: included); "
          "speedup: ensemble / sequential; vs_E1: ensemble msps / msps at E = 1")
    print_table(rows, ["E", "ens_setup_s", "ens_compile_s", "ens_total_s", "ens_steady_s",
                       "seq_total_s", "seq_steady_s", "seq_k", "ens_msps", "seq_msps",
                       "speedup", "speedup_total", "ens_train_msps", "speedup_train",
                       "vs_E1"])
    if any(r["seq_k"] < r["E"] for r in rows):
        print(f"sequential: {num_seq} single runs measured (seeds 0..{num_seq - 1}); for "
              f"E > seq_k the further runs are extrapolated at the mean cost of "
              f"{'run 1' if num_seq == 1 else 'the measured runs after the first'}")
    print("single runs: " + ", ".join(
        f"seed {r['seed']}: first {r['first_s']:.2f} s, steady step {1e3 * r['steady_step_s']:.2f}"
        f" ms, eval {r['steady_eval_s']:.2f} s" for r in seq_runs))
    print(f"check: member 0 vs its single run, final losses max rel. diff "
          f"{max(r['member0_rel_diff'] for r in rows):.1e}")
    targets = []
    by_e = {r["E"]: r for r in rows}
    if 8 in by_e:
        targets.append(f"E = 8 speedup {by_e[8]['speedup']:.2f}x (CPU target >= 1.0x)")
    if 64 in by_e and by_e[64]["vs_E1"] is not None:
        targets.append(f"E = 64 vs E = 1 {by_e[64]['vs_E1']:.1f}x (GPU target >= 20x)")
    if targets:
        print("targets: " + "; ".join(targets))
    for r in seq_runs + ens_runs:
        r.pop("last")
    path = write_json(args.out, {
        "environment": env, "device_text": device, "dtype": "float32", "quick": args.quick,
        "model": base.model, "model_size": base.model_size,
        "layout": args.layout or "rule",
        "options": opts, "config": dataclasses.asdict(base),
        "sequential_extrapolated_from": num_seq,
        "targets": {"cpu_speedup_at_E8": 1.0, "gpu_vs_E1_at_E64": 20.0},
        "rows": rows, "ensemble_runs": ens_runs, "sequential_runs": seq_runs})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
