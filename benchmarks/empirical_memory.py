"""Peak memory of the empirical denoiser against the training-set size.

Each configuration runs in a fresh subprocess; its peak resident set size (ru_maxrss) is
reported next to the size of the training data itself, so that growth beyond the data
shows. Default: d = 64, 4096 queries, N = 1e4, 1e5, 1e6 (the issue's target: 1e6 points
within 4 GB peak).

Usage: python benchmarks/empirical_memory.py [--quick]
Writes benchmarks/results/empirical_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _common import environment, print_table, write_json  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
from jaxgap.denoisers import EmpiricalDenoiser
n, d, m = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
key = jax.random.PRNGKey(0)
y = jax.random.normal(key, (n, d), jnp.float32)
x = y[:m] + 0.5 * jax.random.normal(jax.random.fold_in(key, 1), (m, d), jnp.float32)
den = EmpiricalDenoiser(y)
jax.block_until_ready((den, x))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
f = jax.jit(lambda D, q: D(q, 0.5))
t0 = time.perf_counter(); jax.block_until_ready(f(den, x)); t1 = time.perf_counter()
jax.block_until_ready(f(den, x)); t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_mb": base / 1024, "peak_mb": peak / 1024,
                  "peak_before_call_mb": before / 1024, "call_increase_mb": (peak - before) / 1024,
                  "first_call_s": t1 - t0, "second_call_s": t2 - t1}))
"""


def run(n, d, m):
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(d), str(m)],
                         capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update({"N": n, "d": d, "queries": m, "data_mb": n * d * 4 / 2**20})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    rows = [run(n, 64, 4096) for n in sizes]
    print(f"\nEmpiricalDenoiser peak memory, d=64, 4096 queries ({environment()['device']})")
    print_table(rows, ["N", "data_mb", "peak_mb", "peak_before_call_mb", "call_increase_mb",
                       "second_call_s"])
    print("peak_before_call_mb includes generating the random data (PRNG temporaries);"
          " call_increase_mb is what evaluating the denoiser adds.")
    path = write_json("empirical_memory", {"environment": environment(), "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
