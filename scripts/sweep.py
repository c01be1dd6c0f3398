"""Sweep generalization-gap curves over datasets x training-set sizes, on one or many hosts.

For every dataset in ``--data`` and every size in ``--train-sizes`` it fits the empirical
optimal denoiser on the first ``n`` training points, evaluates
``gap_curve(EmpiricalDenoiser(train), train, val, log_sigmas(K, sigma_min, sigma_max), key,
num_noise=R, mesh=mesh)`` with a 1-D mesh over ALL devices (``jax.devices()``: every host's
devices when distributed), and writes ``OUT/{data}_n{train_size}.json``: the curve's
``to_dict()`` fields at the top level (``sigmas, train, val, gap, train_se, val_se,
gap_se``) plus ``config``, ``timing``, ``devices`` and ``peak_sigma``.

Resumable: configurations whose JSON already exists are skipped, and files are written
atomically (a temporary file, then a rename), so a killed sweep restarts where it stopped.
Only process 0 reads and writes ``OUT``; it decides what is left to do and broadcasts that
to the other processes, so hosts need no shared filesystem.

Synthetic datasets (gaussian, gmm, manifold) are drawn with ``num_train`` = the largest
requested size, so smaller training sets are nested prefixes of larger ones and the
validation set is the same for all sizes. Sizes larger than a dataset holds are skipped
with a message (digits holds 1497 training images). The noise uses one key for every
configuration (common random numbers), and the result does not depend on the number of
devices or hosts.

Usage
-----
One machine (all its local devices: one CPU, several GPUs, or a TPU VM's chips)::

    python scripts/sweep.py --data digits,gaussian --train-sizes 128,512,1497 \\
        --num-sigmas 32 --num-noise 2 --seed 0 --out runs/sweep
    python scripts/sweep.py --quick          # smoke test, a few seconds on a CPU

A TPU pod slice: run the same command on every host at once (e.g.
``gcloud compute tpus tpu-vm ssh NAME --worker=all --command "..."``) with
``--distributed``; ``jax.distributed.initialize()`` detects the slice's hosts by itself::

    python scripts/sweep.py --distributed --data digits,gaussian --out runs/sweep

GPU nodes under SLURM (one process per node or per GPU, ``srun`` sets the cluster
variables that ``jax.distributed.initialize()`` detects) or Open MPI (``mpirun``, detected
from ``OMPI_*`` variables)::

    srun --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 \\
        python scripts/sweep.py --distributed --out runs/sweep
    mpirun -n 4 python scripts/sweep.py --distributed --out runs/sweep

Anything else (explicit coordinator): start one process per host with the same
``--coordinator HOST:PORT --num-processes P`` and its own ``--process-id i`` (0..P-1), or
set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` instead of the
flags. Without any of these the script runs as a single process.

Only process 0 prints and writes; ``OUT`` is relative to its working directory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

QUICK = {"data": "digits,gaussian", "train_sizes": "64,256", "num_sigmas": 8, "num_noise": 1,
         "out": "runs/sweep-quick"}
DEFAULTS = {"data": "digits,gaussian", "train_sizes": "128,512,1497", "num_sigmas": 32,
            "num_noise": 2, "out": "runs/sweep"}
SYNTHETIC = ("gaussian", "gmm", "manifold")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring for multi-host usage.")
    p.add_argument("--data", help=f"comma-separated dataset names (default {DEFAULTS['data']})")
    p.add_argument("--train-sizes",
                   help=f"comma-separated training-set sizes (default {DEFAULTS['train_sizes']})")
    p.add_argument("--num-sigmas", type=int,
                   help=f"noise levels K (default {DEFAULTS['num_sigmas']})")
    p.add_argument("--sigma-min", type=float, default=0.002, help="smallest sigma (0.002)")
    p.add_argument("--sigma-max", type=float, default=80.0, help="largest sigma (80)")
    p.add_argument("--num-noise", type=int,
                   help=f"noise draws R per example and sigma (default {DEFAULTS['num_noise']})")
    p.add_argument("--seed", type=int, default=0, help="data and noise seed (0)")
    p.add_argument("--out", help=f"output directory (default {DEFAULTS['out']})")
    p.add_argument("--quick", action="store_true",
                   help="small test config: digits,gaussian x 64,256, K=8, R=1, runs/sweep-quick")
    dist = p.add_argument_group("multi-host (any of these calls jax.distributed.initialize)")
    dist.add_argument("--distributed", action="store_true",
                      help="initialize jax.distributed, auto-detecting the cluster "
                           "(TPU slice, SLURM, Open MPI) for anything not given")
    dist.add_argument("--coordinator",
                      help="coordinator HOST:PORT (process 0's host); env JAX_COORDINATOR_ADDRESS")
    dist.add_argument("--num-processes", type=int,
                      help="number of processes; env JAX_NUM_PROCESSES")
    dist.add_argument("--process-id", type=int, help="this process, 0..P-1; env JAX_PROCESS_ID")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.data = [d.strip() for d in args.data.split(",") if d.strip()]
    try:
        args.train_sizes = sorted({int(s) for s in args.train_sizes.split(",") if s.strip()})
    except ValueError:
        p.error(f"--train-sizes: expected comma-separated integers, got {args.train_sizes!r}")
    if not args.data or not args.train_sizes or min(args.train_sizes) < 2:
        p.error("--data and --train-sizes need at least one entry; sizes must be >= 2")
    if args.num_sigmas < 1 or args.num_noise < 1:
        p.error("--num-sigmas and --num-noise must be >= 1")
    return args


def initialize_distributed(args) -> bool:
    """Call ``jax.distributed.initialize`` when asked to, before anything touches devices."""
    env = os.environ
    coordinator = args.coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    num = args.num_processes if args.num_processes is not None else (
        int(env["JAX_NUM_PROCESSES"]) if env.get("JAX_NUM_PROCESSES") else None)
    pid = args.process_id if args.process_id is not None else (
        int(env["JAX_PROCESS_ID"]) if env.get("JAX_PROCESS_ID") else None)
    if not (args.distributed or coordinator or (num is not None and num > 1)):
        return False
    import jax

    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num,
                               process_id=pid)
    return True


def file_tag(name: str) -> str:
    """A file-name-safe form of a dataset name (``npz:/a/b.npz`` -> ``npz_a_b.npz``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def to_host(x):
    """A numpy copy of ``x``, gathering it first when it spans other hosts' devices."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def main(argv=None) -> int:
    args = parse_args(argv)
    distributed = initialize_distributed(args)  # first: before any device is touched

    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from jaxgap import data, noise
    from jaxgap.denoisers import EmpiricalDenoiser
    from jaxgap.losses import GapCurve, gap_curve

    lead = jax.process_index() == 0

    def say(*a):
        if lead:
            print(*a, flush=True)

    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    device_info = {"device_count": jax.device_count(),
                   "local_device_count": jax.local_device_count(),
                   "process_count": jax.process_count(), "platform": devices[0].platform,
                   "device_kind": getattr(devices[0], "device_kind", ""),
                   "distributed": distributed, "jax": jax.__version__}
    say(f"sweep: {jax.process_count()} process(es), {jax.device_count()} "
        f"{devices[0].platform} device(s) in a 1-D mesh")
    out = Path(args.out)
    if lead:
        out.mkdir(parents=True, exist_ok=True)

    # Datasets (every process loads the same seeded arrays) and the configurations to run.
    datasets, configs = {}, []
    for name in args.data:
        kw = {"num_train": max(args.train_sizes)} if name in SYNTHETIC else {}
        ds = data.load(name, seed=args.seed, **kw)
        datasets[name] = ds
        for n in args.train_sizes:
            if n > ds.num_train:
                say(f"skip {name} n={n}: the dataset holds {ds.num_train} training points")
                continue
            configs.append((name, n, out / f"{file_tag(name)}_n{n}.json"))
    # Process 0 decides what is done (only it sees OUT), everyone follows the same plan.
    todo = np.array([not path.exists() for _, _, path in configs] if lead else
                    [True] * len(configs), dtype=np.int32)
    if jax.process_count() > 1 and len(configs):
        todo = np.asarray(multihost_utils.broadcast_one_to_all(todo))
    for (_, _, path), do in zip(configs, todo, strict=True):
        if not do:
            say(f"exists, skipped: {path}")

    sigmas = noise.log_sigmas(args.num_sigmas, args.sigma_min, args.sigma_max)
    key = jax.random.PRNGKey(args.seed)
    summary = []
    for (name, n, path), do in zip(configs, todo, strict=True):
        if not do:
            continue
        ds = datasets[name].with_train_size(n)
        den = EmpiricalDenoiser(ds.train)
        t0 = time.perf_counter()
        curve = gap_curve(key, den, ds.train, ds.val, sigmas, num_noise=args.num_noise,
                          mesh=mesh)
        curve = GapCurve(*(to_host(f) for f in curve))  # waits for the result
        seconds = time.perf_counter() - t0
        config = {"data": name, "train_size": n, "num_val": ds.num_val, "dim": ds.dim,
                  "num_sigmas": args.num_sigmas, "sigma_min": args.sigma_min,
                  "sigma_max": args.sigma_max, "num_noise": args.num_noise, "seed": args.seed,
                  "denoiser": "EmpiricalDenoiser", "dtype": str(ds.train.dtype)}
        timing = {"seconds": seconds, "includes_compile": True,
                  "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        if lead:
            write_atomic(path, curve.to_json(config=config, timing=timing,
                                             devices=device_info,
                                             peak_sigma=curve.peak_sigma))
        row = {"data": name, "n": n, "peak_sigma": curve.peak_sigma,
               "max_gap": float(np.max(curve.gap)), "seconds": seconds}
        summary.append(row)
        say(f"{name:>10s} n={n:<6d} peak sigma {row['peak_sigma']:.3g}  max gap "
            f"{row['max_gap']:.4g}  {seconds:.1f} s  -> {path}")
    if lead:
        print(f"done: {len(summary)} computed, {len(configs) - len(summary)} skipped; "
              f"results in {out}/", flush=True)
        write_atomic(out / "sweep_args.json", json.dumps(vars(args), indent=2))
    if distributed:
        multihost_utils.sync_global_devices("sweep done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
