"""``jaxgap sweep``: run a factor sweep from a TOML specification (:mod:`jaxgap.sweep`), on
one device, all local devices, or many hosts, and plot it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jaxgap.cli import common

NAME = "sweep"
HELP = "train and evaluate a grid of models x seeds as ensembles; tables and plots"
DESCRIPTION = (
    "Run the sweep of SPEC.toml ([sweep] settings, [grid] factor lists, seeds): members "
    "that share a program are trained as one ensemble, the member axis sharded over every "
    "device; writes losses.csv, samples.csv, sweep.json and figures into --out. A killed "
    "sweep continues with --resume (finished groups are kept). --plot FOLDER redraws the "
    "figures of a sweep. Multi-host: run the same command on every host with --distributed "
    "(TPU slices, SLURM and Open MPI are detected) or --coordinator/--num-processes/"
    "--process-id; only process 0 writes.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``jaxgap sweep``."""
    p.add_argument("spec", nargs="?", metavar="SPEC.toml", help="the sweep specification")
    p.add_argument("--out", metavar="DIR", help="the sweep folder (required with SPEC)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed sweep of the same spec in --out")
    p.add_argument("--plot", metavar="DIR",
                   help="only redraw the figures of the sweep in DIR (no SPEC)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    dist = p.add_argument_group("multi-host (any of these calls jax.distributed.initialize)")
    dist.add_argument("--distributed", action="store_true",
                      help="initialize jax.distributed, detecting the cluster (TPU slice, "
                      "SLURM, Open MPI) for anything not given")
    dist.add_argument("--coordinator", metavar="HOST:PORT",
                      help="process 0's address (env JAX_COORDINATOR_ADDRESS)")
    dist.add_argument("--num-processes", type=common.int_at_least(1), metavar="P",
                      help="number of processes (env JAX_NUM_PROCESSES)")
    dist.add_argument("--process-id", type=common.int_at_least(0), metavar="I",
                      help="this process, 0..P-1 (env JAX_PROCESS_ID)")


def _initialize_distributed(args) -> bool:
    """``jax.distributed.initialize`` when asked to, before anything touches a device."""
    env = os.environ
    coordinator = args.coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    num = args.num_processes or (int(env["JAX_NUM_PROCESSES"])
                                 if env.get("JAX_NUM_PROCESSES") else None)
    pid = args.process_id if args.process_id is not None else (
        int(env["JAX_PROCESS_ID"]) if env.get("JAX_PROCESS_ID") else None)
    if not (args.distributed or coordinator or (num is not None and num > 1)):
        return False
    import jax

    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num,
                               process_id=pid)
    return True


def _plot(folder: str, quiet: bool) -> int:
    from jaxgap.report.sweep_plots import plot_sweep

    if not (Path(folder) / "losses.csv").exists():
        raise common.CLIError(f"--plot: {folder} holds no sweep (no losses.csv)")
    written = plot_sweep(folder)
    if not quiet:
        for path in written:
            print(path)
    return 0


def run(args: argparse.Namespace) -> int:
    """``jaxgap sweep``: run or resume a sweep, or redraw its figures."""
    if args.plot is not None:
        if args.spec is not None or args.out is not None or args.resume:
            raise common.CLIError("--plot: takes only the sweep folder (no SPEC, --out, "
                                  "--resume)")
        return _plot(args.plot, args.quiet)
    if args.spec is None or args.out is None:
        raise common.CLIError("expected SPEC.toml and --out DIR (or --plot DIR)")
    distributed = _initialize_distributed(args)

    import jax
    import numpy as np

    from jaxgap.sweep.run import check_folder, run_sweep
    from jaxgap.sweep.spec import data_size, load_spec

    spec = load_spec(args.spec, num_train=data_size)  # ValueError: one line, exit status 2
    lead = jax.process_index() == 0
    if lead:
        check_folder(spec, args.out, resume=args.resume)
    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("members",)) if len(devices) > 1 else None
    if lead and not args.quiet:
        print(f"sweep: {len(spec.members())} members, {jax.process_count()} process(es), "
              f"{len(devices)} {devices[0].platform} device(s)"
              f"{' (distributed)' if distributed else ''}", file=sys.stderr)
    summary = run_sweep(spec, args.out, resume=args.resume, mesh=mesh,
                        progress=common.progress_mode(args))
    if lead:
        from jaxgap.report.sweep_plots import plot_sweep

        plot_sweep(args.out)
        if not args.quiet:
            _print_summary(summary, args.out)
    return 0


def _print_summary(summary: dict, out: str) -> None:
    seconds = summary["timings"]["seconds"]
    print(f"sweep: {summary['members']} members in {summary['groups']} program(s), "
          f"{seconds:.0f} s; results in {out}/ (losses.csv, samples.csv, sweep.json)")
    for onset in summary["analyses"].get("memorization_onset") or []:
        if onset.get("slope") is None:
            continue
        where = ", ".join(f"{k}={v}" for k, v in onset.get("slice", {}).items())
        interval = onset.get("slope_interval")
        band = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
        print(f"memorization onset ~ N^{onset['slope']:.2f}{band} ({where})")
