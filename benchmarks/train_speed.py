"""Training speed: jaxgap's jitted EDM training step against an equivalent PyTorch loop.

Workload: ``jaxgap train``'s step on digits (d = 64, 8x8x1 images, 1497 training examples),
batch 128, float32, for each network family (MLP, U-Net, DiT) at its default architecture
(``TrainConfig(model=family)``) and at each size rung ``xs .. xl``
(``TrainConfig(model=family, model_size=rung)``, see ``jaxgap.nets.size_kwargs``). The jax
step is ``jaxgap.train.make_step`` itself (epoch-wise permuted batch, EDM loss with
log-normal sigma, AdamW with linear warm-up, EMA, running loss sum), built from
``init_state`` and ``make_step`` exactly as ``train_and_evaluate`` builds it. A rung whose
architecture is the family default (the MLP's ``l``) is timed once and reported twice.

The torch peer (``_train_speed_torch.py``) is the same network written in ``torch.nn``
(same layers, widths, LayerNorm / GroupNorm eps 1e-6, SiLU, Fourier noise embedding,
adaLN-Zero blocks with ``scaled_dot_product_attention`` for the DiT, EDM preconditioning,
zero-initialized output layers), started from the jax weights (copied), trained by the same
loop: a ``torch.randperm`` per epoch, log-normal sigmas, the EDM-weighted loss,
``torch.optim.AdamW`` (same lr, betas, eps, weight decay) with a ``LambdaLR`` linear
warm-up, and an EMA by ``lerp_`` under ``torch.no_grad``; float32,
``torch.set_num_threads`` = the usable CPUs. Before timing, the script checks that both
have the same parameter count and names and that the forward passes agree (weights copied,
every parameter perturbed so the zero-initialized layers are active).

Timing: steady state, compilation and warm-up excluded. Both steps are timed over chunks of
consecutive steps (jax: ``block_until_ready`` on the returned state), jax and torch chunks
alternating so that a change of machine load hits both alike; the chunk length is chosen
per model so that one chunk of the slower of the two takes about ``--chunk-seconds``.
Reported: steps/s (median chunk), the jax/torch speed ratio, the first step apart
(``first_step_s``: for jax the tracing and XLA compilation), the parameter count, and
GFLOP/s with the step's FLOPs from XLA's cost analysis against a plain float32 matmul of
about the median step's FLOPs measured in this process (the ceiling). Every chunk's time is
in the JSON (``chunk_seconds``). On a loaded machine torch's OpenMP threads slow down
sharply (10x and more) while other processes take the cores: compare on a quiet machine,
or pin the process to one core (``--pin 1``: both libraries then run one thread).
``XLA_FLAGS`` in the environment is recorded with the results: on XLA:CPU (jax 0.10) the
kernel gradients of convolutions run several times faster with the convolutions left to
Eigen instead of YNNPACK (``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=
individual_dot,reduce``; see docs/unet_speed.md).

Targets (reported, not asserted): MLP and DiT at least 1.0x the torch loop, U-Net 0.8x.

Usage:
  python benchmarks/train_speed.py                  # every family, default + xs..xl
  python benchmarks/train_speed.py --quick          # smoke run: default + xs, short timing
  python benchmarks/train_speed.py --families unet --sizes default,m --pin 1
  python benchmarks/train_speed.py --batch 128,512 --no-torch   # e.g. on a GPU
Writes benchmarks/results/train_speed.json (``--out NAME``: NAME.json).
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
from _common import environment, median_time, print_table, write_json  # noqa: E402

from jaxgap.nets import MODEL_SIZES, param_count  # noqa: E402
from jaxgap.train import (  # noqa: E402
    TrainConfig,
    build_model,
    hyper,
    init_state,
    load_data,
    make_step,
    step_body,
)

try:  # torch is only a peer to compare against; jaxgap never depends on it
    import _train_speed_torch as peers
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = peers = None

FAMILIES = ("mlp", "unet", "dit")
SIZES = ("default", *MODEL_SIZES)
TARGETS = {"mlp": 1.0, "unet": 0.8, "dit": 1.0}


# ---------------------------------------------------------------------------------------
# jax: the real training step of `jaxgap train`
# ---------------------------------------------------------------------------------------

def jax_setup(config: TrainConfig):
    """Data, model, initial state and step function as ``train_and_evaluate`` builds them."""
    ds = load_data(config)
    graphdef, tx, state = init_state(config, ds.dim, ds.image_shape)
    model = nnx.merge(graphdef, state["params"])
    batch = min(config.batch_size, ds.num_train)
    step = make_step(graphdef, tx, config, jnp.asarray(ds.train), batch)
    flops = step_flops(config, graphdef, ds.train, batch, state)
    return ds, model, state, step, batch, flops


def step_flops(config: TrainConfig, graphdef, train, batch: int, state) -> float | None:
    """FLOPs of one step from XLA's cost analysis of the lowered step body (the function
    ``make_step`` compiles; lowered with a plain ``jax.jit``, since the step itself carries
    compiler options and cannot be nested; no compilation); None where the backend gives
    none."""
    body = step_body(graphdef, config, batch)
    args = (state, jnp.asarray(train), None, jnp.asarray(train.shape[0], jnp.int32),
            jax.random.PRNGKey(config.seed), hyper(config))
    try:
        cost = jax.jit(body).lower(*args).cost_analysis()
    except Exception:  # pragma: no cover - backend dependent
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def matmul_ceiling(flops: float, repeats: int) -> tuple[float, int]:
    """GFLOP/s of a square float32 matmul with about ``flops`` FLOPs (2 m^3), and m."""
    m = int(min(max(round((flops / 2) ** (1 / 3)), 64), 4096))
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((m, m)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((m, m)), jnp.float32)
    t = median_time(jax.jit(jnp.matmul), a, b, repeats=max(repeats, 5), warmup=2)
    return 2 * m**3 / t / 1e9, m


def jax_stepper(step, state):
    """(compile + first step seconds, ``run(k)`` doing k steps, ``state()``); the state is
    held as its flat leaf list between steps, as the training loops hold it
    (``jaxgap.train.Step``)."""
    t0 = time.perf_counter()
    leaves, _ = step.flat(step.flatten(state))
    jax.block_until_ready(leaves)
    first = time.perf_counter() - t0
    box = [leaves]

    def run(k: int):
        s = box[0]
        for _ in range(k):
            s, _ = step.flat(s)
        jax.block_until_ready(s)
        box[0] = s

    return first, run, lambda: step.unflatten(box[0])


# ---------------------------------------------------------------------------------------
# torch: the same network and the same loop
# ---------------------------------------------------------------------------------------

def torch_stepper(config: TrainConfig, kind: str, model, params, train: np.ndarray,
                  batch: int):
    """The torch twin (jax weights copied) and ``(first step seconds, run(k), box)``."""
    tmodel = peers.torch_peer(kind, model)
    peers.copy_jax_params(tmodel, params)
    tparams = list(tmodel.parameters())
    ema = [p.detach().clone() for p in tparams]
    opt = torch.optim.AdamW(tparams, lr=config.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=config.weight_decay)
    warmup = max(config.warmup, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(t / warmup, 1.0))
    train_x = torch.from_numpy(np.array(train, np.float32))
    n = train_x.shape[0]
    per_epoch = n // batch
    gen = torch.Generator().manual_seed(config.seed)
    box = {"step": 0, "perm": None, "loss_sum": torch.zeros(()), "loss_count": 0,
           "params": sum(p.numel() for p in tparams)}
    sd = config.sigma_data

    def one_step():
        t = box["step"]
        pos = t % per_epoch
        if pos == 0:
            box["perm"] = torch.randperm(n, generator=gen)
        x0 = train_x[box["perm"][pos * batch:(pos + 1) * batch]]
        sigma = torch.exp(config.p_mean + config.p_std * torch.randn(batch, generator=gen))
        eps = torch.randn(x0.shape, generator=gen)
        out = tmodel(x0 + sigma[:, None] * eps, sigma)
        weight = 1.0 / sigma**2 + 1.0 / sd**2
        loss = torch.mean(weight * torch.mean((out - x0) ** 2, dim=-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        decay = min(config.ema, (1.0 + t) / (10.0 + t))
        with torch.no_grad():
            for e, p in zip(ema, tparams, strict=True):
                e.lerp_(p, 1.0 - decay)  # decay * e + (1 - decay) * p
        box["loss_sum"] += loss.detach()
        box["loss_count"] += 1
        box["step"] = t + 1

    def run(k: int):
        for _ in range(k):
            one_step()

    t0 = time.perf_counter()
    one_step()
    return time.perf_counter() - t0, run, box


# ---------------------------------------------------------------------------------------

def interleaved_times(runs: list, chunk: int, repeats: int, warmup: int) -> list[list[float]]:
    """Wall times of ``repeats`` calls ``run(chunk)`` of each of ``runs``, the runs
    alternating (a change of machine load hits all alike), after ``warmup`` untimed calls
    of each."""
    for run in runs:
        for _ in range(warmup):
            run(chunk)
    times = [[] for _ in runs]
    for _ in range(repeats):
        for run, ts in zip(runs, times, strict=True):
            t0 = time.perf_counter()
            run(chunk)
            ts.append(time.perf_counter() - t0)
    return times


def probe(run, steps: int = 3) -> float:
    """Seconds per step over a few steps (to size the chunks)."""
    t0 = time.perf_counter()
    run(steps)
    return (time.perf_counter() - t0) / steps


def signature(model) -> tuple:
    """The architecture as parameter paths and shapes (equal for equal networks)."""
    leaves = jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
    return tuple((jax.tree_util.keystr(p), tuple(v.shape)) for p, v in leaves)


def bench_model(kind: str, size: str, args, batch: int, use_torch: bool):
    """One model: jax and (optionally) torch steps timed alternately; a row and the info."""
    config = TrainConfig(model=kind, model_size=None if size == "default" else size,
                         data=args.data, batch_size=batch).validate()
    ds, model, state, step, batch, flops = jax_setup(config)
    info = {"model": kind, "size": size, "params_jax": param_count(model), "batch": batch,
            "dim": ds.dim, "image_shape": None if ds.image_shape is None
            else list(ds.image_shape), "flops_per_step": flops}
    first, run, jax_state = jax_stepper(step, state)  # first: trace + compile + run
    firsts, runs = [first], [run]
    if use_torch:
        fresh = build_model(config, ds.dim, ds.image_shape)
        info["forward_rel_diff"] = peers.forward_check(kind, fresh, np.asarray(ds.train[:64]))
        first, trun, box = torch_stepper(config, kind, model, nnx.state(model, nnx.Param),
                                         ds.train, batch)
        info["params_torch"] = box["params"]
        firsts.append(first)
        runs.append(trun)
    per_step = max(probe(r) for r in runs)
    chunk = int(np.clip(round(args.chunk_seconds / per_step), 1, 50))
    warmup = max(1, round(args.warmup_seconds / (chunk * per_step)))
    times = interleaved_times(runs, chunk, args.repeats, warmup)
    info.update(chunk_steps=chunk, warmup_chunks=warmup, chunk_seconds=times,
                first_step_s=firsts)
    info["mean_loss_jax"] = float(jax_state()["loss_sum"]) / int(jax_state()["loss_count"])
    sps = [chunk / float(np.median(ts)) for ts in times]
    row = {"family": kind, "size": size, "params": info["params_jax"], "batch": batch,
           "jax_first_step_s": firsts[0], "jax_steps_per_s": sps[0]}
    if info["flops_per_step"]:
        row["jax_gflops"] = info["flops_per_step"] * sps[0] / 1e9
    if use_torch:
        info["mean_loss_torch"] = float(box["loss_sum"]) / box["loss_count"]
        row.update(torch_steps_per_s=sps[1], jax_over_torch=sps[0] / sps[1],
                   fwd_rel_diff=info["forward_rel_diff"])
    return row, info


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes default,xs (unless --sizes), short timing")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated subset of mlp,unet,dit (default: all)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated subset of default,xs,s,m,l,xl (default: all; "
                             "--quick: default,xs)")
    parser.add_argument("--batch", default="128", help="batch size(s), comma-separated")
    parser.add_argument("--data", default="digits", help="dataset name (default digits)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed chunks per implementation (default 9; --quick 3)")
    parser.add_argument("--chunk-seconds", type=float, default=None,
                        help="target seconds per chunk (default 0.3; --quick 0.05)")
    parser.add_argument("--warmup-seconds", type=float, default=None,
                        help="untimed warm-up per implementation (default 1.0; --quick 0.1)")
    parser.add_argument("--pin", default=None,
                        help="run on these CPUs only, e.g. 1 or 0,1 (both libraries then use "
                             "that many threads)")
    parser.add_argument("--no-torch", action="store_true", help="jax rows only")
    parser.add_argument("--out", default="train_speed", help="result name (NAME.json)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats or (3 if quick else 9)
    args.chunk_seconds = args.chunk_seconds or (0.05 if quick else 0.3)
    args.warmup_seconds = args.warmup_seconds if args.warmup_seconds is not None else (
        0.1 if quick else 1.0)
    fams = [f.strip() for f in args.families.split(",") if f.strip()]
    sizes = [s.strip() for s in (args.sizes or ("default,xs" if quick else ",".join(SIZES)))
             .split(",") if s.strip()]
    for name, got, allowed in (("--families", fams, FAMILIES), ("--sizes", sizes, SIZES)):
        bad = [v for v in got if v not in allowed]
        if bad or not got:
            parser.error(f"{name}: expected a comma-separated subset of {','.join(allowed)}, "
                         f"got {','.join(got) or 'nothing'}")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        parser.error(f"--batch: expected positive integers, got {args.batch!r}")
    args.families, args.sizes, args.batches = fams, sizes, batches
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.pin:
        os.sched_setaffinity(0, {int(c) for c in args.pin.split(",")})  # before jax's pools
    cpus = len(os.sched_getaffinity(0))
    use_torch = torch is not None and not args.no_torch and jax.default_backend() == "cpu"
    if use_torch:
        torch.set_num_threads(cpus)
    rows, infos, done = [], [], {}
    for kind in args.families:
        for size in args.sizes:
            for batch in args.batches:
                config = TrainConfig(model=kind, model_size=None if size == "default"
                                     else size, data=args.data).validate()
                ds = load_data(config)
                sig = (kind, batch, signature(nnx.eval_shape(
                    lambda c=config, d=ds: build_model(c, d.dim, d.image_shape))))
                if sig in done:  # the same network as an earlier row: report it again
                    row, info = (dict(v) for v in done[sig])
                    row["size"] = f"{size} (= {row['size']})"
                else:
                    print(f"{kind} {size} batch {batch} ...", flush=True)
                    row, info = bench_model(kind, size, args, batch, use_torch)
                    done[sig] = (row, info)
                rows.append(row)
                infos.append(info)
    flops = [i["flops_per_step"] for i in infos if i["flops_per_step"]]
    ceiling = m = None
    if flops:
        ceiling, m = matmul_ceiling(float(np.median(flops)), args.repeats)
        for r in rows:
            if "jax_gflops" in r:
                r["jax_ratio_to_ceiling"] = r["jax_gflops"] / ceiling
    env = environment()
    print(f"\nTraining step speed: {args.data}, float32, jaxgap make_step (jax {jax.__version__})"
          + (f" vs torch.nn eager ({torch.__version__}, {torch.get_num_threads()} threads)"
             if use_torch else "") + f"; {env['device']}, {cpus} usable CPUs"
          + (f" (pinned {args.pin})" if args.pin else "")
          + (f"; XLA_FLAGS={os.environ['XLA_FLAGS']}" if os.environ.get("XLA_FLAGS") else "")
          + f"; median of {args.repeats} chunks of ~{args.chunk_seconds} s after warm-up")
    print_table(rows, ["family", "size", "params", "batch", "jax_steps_per_s",
                       "torch_steps_per_s", "jax_over_torch", "jax_first_step_s", "jax_gflops",
                       "jax_ratio_to_ceiling", "fwd_rel_diff"])
    if ceiling:
        print(f"ceiling: {m}x{m} float32 matmul (jax) at {ceiling:.1f} GFLOP/s; step FLOPs "
              "from XLA cost analysis")
    if use_torch:
        for kind in args.families:
            ratios = [r["jax_over_torch"] for r in rows if r["family"] == kind]
            if ratios:
                ok = "met" if min(ratios) >= TARGETS[kind] else "NOT met"
                print(f"{kind}: jax/torch {min(ratios):.2f}x .. {max(ratios):.2f}x (median "
                      f"{np.median(ratios):.2f}x); target >= {TARGETS[kind]}x: {ok} "
                      f"(reported, not asserted)")
        bad = [f"{i['model']} {i['size']}" for i in infos if "params_torch" in i and
               (i["params_torch"] != i["params_jax"] or i["forward_rel_diff"] > 1e-4)]
        if bad:
            raise SystemExit(f"torch peer differs from the jax model for {bad}")
    path = write_json(args.out, {
        "environment": env, "dtype": "float32", "quick": args.quick, "data": args.data,
        "pinned_cpus": args.pin, "usable_cpus": cpus, "xla_flags": os.environ.get("XLA_FLAGS"),
        "torch": torch.__version__ if use_torch else None,
        "torch_threads": torch.get_num_threads() if use_torch else None,
        "timing": {"repeats": args.repeats, "chunk_seconds_target": args.chunk_seconds,
                   "warmup_seconds": args.warmup_seconds},
        "config": dataclasses.asdict(TrainConfig()), "targets": TARGETS,
        "ceiling_gflops": ceiling, "ceiling_matmul_m": m, "models": infos, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
