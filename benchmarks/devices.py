"""gap_curve on 1 vs 8 forced CPU devices, without and with a 1-D mesh.

Each configuration runs in a fresh subprocess whose environment sets
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (and ``JAX_PLATFORMS=cpu``) before
JAX is imported. The child times ``gap_curve(key, EmpiricalDenoiser(train), train, val, sigmas,
key, num_noise=R, mesh=...)`` on the embedded digits with ``mesh=None`` (device 0 only) or
``mesh=jax.sharding.Mesh(np.array(jax.devices()), ("data",))`` (examples spread over all
devices), and returns the curve. The parent reports times relative to the 1-device,
``mesh=None`` run and checks that every configuration gives the same curve: the noise is a
function of (key, example, sigma index, draw) only, so results must agree to float32
rounding (max relative difference of the train and validation losses; the gap's largest
difference divided by max |gap|).

Forced host devices share the machine's cores: on a small CPU machine this is an overhead
check of the sharded code path (partitioning, per-device batching, collectives), not a
speed-up. Real speed-ups come from real devices (GPUs, TPU cores, hosts).

Usage: python benchmarks/devices.py [--quick]
Writes benchmarks/results/devices.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

FORCE = "--xla_force_host_platform_device_count"


def child(args) -> None:
    """Run one configuration (JAX imported here, after the parent set XLA_FLAGS)."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, os.path.dirname(__file__))
    from _common import median_time

    from jaxgap import data, noise
    from jaxgap.denoisers import EmpiricalDenoiser
    from jaxgap.losses import gap_curve

    ds = data.load("digits", seed=0).with_train_size(args.train_size)
    den = EmpiricalDenoiser(ds.train)
    train, val = jnp.asarray(ds.train), jnp.asarray(ds.val)
    sigmas = noise.log_sigmas(args.num_sigmas, 0.01, 10.0)
    key = jax.random.PRNGKey(0)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",)) if args.mesh else None

    def call():
        return gap_curve(key, den, train, val, sigmas, num_noise=args.num_noise, mesh=mesh)

    t0 = time.perf_counter()
    curve = jax.block_until_ready(call())
    first = time.perf_counter() - t0
    t = median_time(call, repeats=args.repeats)
    print(json.dumps({"device_count": jax.device_count(), "first_call_s": first, "seconds": t,
                      "curve": curve.to_dict()}))


def run(devices: int, mesh: bool, args) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(FORCE)]
    env["XLA_FLAGS"] = " ".join([*flags, f"{FORCE}={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, __file__, "--child", "--train-size", str(args.train_size),
           "--num-sigmas", str(args.num_sigmas), "--num-noise", str(args.num_noise),
           "--repeats", str(args.repeats)] + (["--mesh"] if mesh else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"child {devices} devices, mesh={mesh} failed:\n{out.stderr}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if row["device_count"] != devices:
        raise RuntimeError(f"expected {devices} devices in the child, got {row['device_count']}")
    return {"devices": devices, "mesh": "1-D over all" if mesh else "None", **row}


def compare(row, ref) -> None:
    import numpy as np

    c, r = row["curve"], ref["curve"]
    for f in ("train", "val"):
        a, b = np.asarray(c[f]), np.asarray(r[f])
        diff = np.abs(a - b)  # relative where the reference is nonzero (train loss can be 0)
        rel = np.where(b != 0, diff / np.where(b != 0, np.abs(b), 1.0), diff)
        row[f"max_rel_diff_{f}"] = float(np.max(rel))
    gap, gref = np.asarray(c["gap"]), np.asarray(r["gap"])
    row["gap_diff_over_max_gap"] = float(np.max(np.abs(gap - gref)) / np.max(np.abs(gref)))
    row["time_vs_1dev_nomesh"] = row["seconds"] / ref["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mesh", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train-size", type=int, default=1497, help=argparse.SUPPRESS)
    parser.add_argument("--num-sigmas", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--num-noise", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.train_size, args.num_sigmas, args.num_noise, args.repeats = 512, 8, 1, 3

    sys.path.insert(0, os.path.dirname(__file__))
    from _common import environment, print_table, write_json

    configs = [(1, False), (1, True), (8, False), (8, True)]
    rows = [run(d, m, args) for d, m in configs]
    for row in rows:
        compare(row, rows[0])
    env = environment()
    print(f"\ngap_curve on forced CPU devices: digits, {args.train_size} train / 300 val, "
          f"d=64, K={args.num_sigmas} sigmas (log 0.01..10), R={args.num_noise}, float32 "
          f"({env['cpu_count']} CPU cores); each row a fresh process")
    print_table(rows, ["devices", "mesh", "first_call_s", "seconds", "time_vs_1dev_nomesh",
                       "max_rel_diff_train", "max_rel_diff_val", "gap_diff_over_max_gap"])
    worst = max(max(r["max_rel_diff_train"], r["max_rel_diff_val"]) for r in rows)
    print(f"results agree across configurations: max relative difference {worst:.2e}")
    print(f"NOTE: the forced devices share {env['cpu_count']} CPU cores, so this is an overhead "
          "check of the sharded path, not a speed-up; expect real gains only from real "
          "devices (GPUs, TPU cores, hosts).")
    for row in rows:
        row.pop("curve")
    path = write_json("devices", {
        "environment": env, "dtype": "float32", "quick": args.quick,
        "workload": {"data": "digits", "train_size": args.train_size, "val_size": 300,
                     "d": 64, "K": args.num_sigmas, "R": args.num_noise,
                     "sigma_grid": [0.01, 10.0]},
        "rows": rows, "max_rel_diff": worst})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
