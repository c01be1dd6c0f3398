"""Gap-curve throughput of the empirical denoiser: the loss engine against a matmul ceiling.

One call of the loss engine, ``denoising_loss(key, EmpiricalDenoiser(train), data, sigmas,
num_noise=R)``, denoises K * R * M noisy queries (K sigmas, R noise draws, M examples)
against N training points in d dimensions: two matmuls per query and training point, so
FLOPs = 4 * (K * R * M) * N * d. Effective GFLOP/s are reported with the ratio to a plain
float32 matmul ``X @ Y^T`` measured in the same process, as in empirical_denoiser.py:
X: [Q, d], Y: [N, d], rate = 2 Q N d / t, with Q = min(K R M, max(128, 2^21 // N)) so that
the [Q, N] output stays within 8 MB (cache-resident, like the engine's own 512 x 2048
tiles), repeated inside one jitted loop (~2 GFLOP per sample). A matmul whose output spills
the cache is bound by memory writes, and separate short calls pay for waking idle threads
and fresh output pages: each runs up to ~3x slower on CPU and would flatter the ratio.

Tables:
  1. headline: a synthetic workload (K=32, R=2), the same with ``num_exact=0`` (the plain
     formula without the exact re-ranking of each query's leading candidates: the cost of
     exactness), and the full ``gap_curve`` on the embedded digits (train and validation
     sets, FLOPs counted over both);
  2. sigma: the same program on a low, a middle and a high grid (sigma barely matters);
  3. scaling: time against K, M, N and d, each varied around a base point with the others
     fixed, synthetic Gaussian data. The column ``norm_time`` is
     (t / (K M N d)) / (t_base / (K_base M_base N_base d_base)): linear growth shows as a
     constant 1. The log-log slope of time against each variable is fitted (expected ~1;
     below 1 where fixed costs matter: per-query exact re-ranking of the leading
     candidates and noise generation (no N), per-(query, point) exp and candidate selection
     (no d), per-call validation and dispatch, and a matmul rate that itself grows with d
     and N).

The sigma grid is fixed, ``log_sigmas(K, 0.01, 10)``. Compilation is excluded (one warm-up
call per shape); times are medians with ``jax.block_until_ready``. The workloads of each
table and their ceilings are timed round-robin (one call of each per round), so that load
from other processes on a shared machine spreads over all of them rather than skewing one
row.

Usage: python benchmarks/gap_curve.py [--quick]
Writes benchmarks/results/gap_curve.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import environment, print_table, write_json  # noqa: E402

from jaxgap import data, noise  # noqa: E402
from jaxgap.denoisers import EmpiricalDenoiser  # noqa: E402
from jaxgap.losses import denoising_loss, gap_curve  # noqa: E402

SIGMA_MIN, SIGMA_MAX = 0.01, 10.0
CEILING_OUTPUT = 1 << 21  # elements of the ceiling matmul's [Q, N] output (8 MB float32)
CEILING_FLOPS = 2 * 10**9  # matmul FLOPs per timed ceiling sample (one jitted loop)


def flops(k, r, m, n, d) -> int:
    """Two matmuls per (query, training point): 4 * (K R M) * N * d."""
    return 4 * k * r * m * n * d


def ceiling_rows(queries, n) -> int:
    """Rows Q of the ceiling matmul: its [Q, N] output stays within CEILING_OUTPUT."""
    return min(queries, max(128, CEILING_OUTPUT // n))


def _repeated_matmul(x, y, reps):
    """``reps`` times ``max(X @ Y^T)`` inside one program. X is perturbed by the loop index
    so that XLA cannot hoist the matmul out of the loop; the max (one compare per output
    element, < 1% of the matmul's 2d FLOPs per element at d >= 64) keeps it from being
    dropped and, unlike a sum, admits no algebraic shortcut."""
    def body(i, acc):
        xi = x * (1.0 + i.astype(x.dtype) * 1e-30)
        return jnp.maximum(acc, jnp.max(xi @ y.T))
    return jax.lax.fori_loop(0, reps, body, jnp.asarray(-jnp.inf, x.dtype))


_repeated = jax.jit(_repeated_matmul, static_argnames="reps")


def ceiling_call(queries, n, d, rng):
    """The ceiling workload: a plain float32 ``X @ Y^T`` (X: [Q, d], Y: [N, d]) repeated
    ``reps`` times in one jitted loop (~2 GFLOP in all), and its matmul FLOPs 2 Q N d reps.

    Separate short calls are unreliable on CPU: one call after other work pays for waking
    idle threads and for fresh output pages, and unblocked calls in flight together contend
    for the cores; each can understate the ceiling by up to 3x.
    """
    q = ceiling_rows(queries, n)
    x = jnp.asarray(rng.standard_normal((q, d)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    reps = max(1, -(-CEILING_FLOPS // (2 * q * n * d)))
    return (lambda: _repeated(x, y, reps=reps)), 2 * q * n * d * reps


def interleaved(calls: dict, repeats: int, per_round: dict | None = None) -> tuple[dict, dict]:
    """Median and first-call (compile included) time per callable.

    After one warm-up call each, the callables are timed round-robin, ``per_round[name]``
    calls (default 1) of each per round, so that load from other processes on a shared
    machine spreads over all of them instead of skewing one configuration.
    """
    per_round = per_round or {}
    first = {}
    for name, fn in calls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t0
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            for _ in range(per_round.get(name, 1)):
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}, first


def time_with_ceilings(calls: dict, ceilings: dict, repeats: int) -> tuple[dict, dict]:
    """:func:`interleaved` over workloads and their ceilings (keyed ``("ceiling", name)``).

    The ceilings are short (~10 ms), so each is sampled 3 times per round: a robust median
    at little cost.
    """
    ceil = {("ceiling", c): fn for c, (fn, _) in ceilings.items()}
    return interleaved({**calls, **ceil}, repeats, dict.fromkeys(ceil, 3))


def synthetic(m, n, d):
    """Gaussian training set [N, d] and M held-out examples (the timed data)."""
    ds = data.load("gaussian", seed=0, num_train=n, num_val=m, dim=d)
    return EmpiricalDenoiser(ds.train), jnp.asarray(ds.val)


def rate_row(k, r, m, n, d, seconds, ceiling_flops, ceiling_seconds) -> dict:
    gflops = flops(k, r, m, n, d) / seconds / 1e9
    ceiling = ceiling_flops / ceiling_seconds / 1e9
    return {"K": k, "R": r, "M": m, "N": n, "d": d, "seconds": seconds, "gflops": gflops,
            "ceiling_gflops": ceiling, "ratio_to_ceiling": gflops / ceiling}


def headline(quick, repeats):
    """A synthetic K=32, R=2 workload (default and ``num_exact=0``) and the digits gap curve."""
    rng = np.random.default_rng(1)
    key = jax.random.PRNGKey(0)
    k, r = (16, 1) if quick else (32, 2)
    sigmas = noise.log_sigmas(k, SIGMA_MIN, SIGMA_MAX)
    m, n, d = (512, 2048, 64) if quick else (1024, 4096, 64)
    den, x = synthetic(m, n, d)
    plain = EmpiricalDenoiser(den.train, num_exact=0)
    ds = data.load("digits", seed=0)
    den_dg = EmpiricalDenoiser(ds.train)
    train, val = jnp.asarray(ds.train), jnp.asarray(ds.val)
    digits = (ds.num_train + ds.num_val, ds.num_train, ds.dim)
    work = {  # name: (callable, (M, N, d))
        "denoising_loss, gaussian": (
            lambda: denoising_loss(key, den, x, sigmas, num_noise=r), (m, n, d)),
        "  same, num_exact=0 (no exact re-ranking)": (
            lambda: denoising_loss(key, plain, x, sigmas, num_noise=r), (m, n, d)),
        "gap_curve, digits (M = train + val)": (
            lambda: gap_curve(key, den_dg, train, val, sigmas, num_noise=r), digits)}
    calls = {w: fn for w, (fn, _) in work.items()}
    ceilings = {w: ceiling_call(k * r * mm, nn, dd, rng) for w, (_, (mm, nn, dd)) in work.items()}
    times, first = time_with_ceilings(calls, ceilings, repeats)
    return [{"workload": w, "first_call_s": first[w],
             **rate_row(k, r, *shape, times[w], ceilings[w][1], times[("ceiling", w)])}
            for w, (_, shape) in work.items()]


def sigma_rows(base, repeats):
    """Same compiled program (the grid is traced), four grids: speed barely depends on it."""
    k, m, n, d = base["K"], base["M"], base["N"], base["d"]
    den, x = synthetic(m, n, d)
    key = jax.random.PRNGKey(0)
    grids = ((0.01, 0.03), (0.3, 1.0), (3.0, 10.0), (SIGMA_MIN, SIGMA_MAX))
    grid_arrays = {g: noise.log_sigmas(k, *g) for g in grids}
    calls = {g: (lambda s=s: denoising_loss(key, den, x, s)) for g, s in grid_arrays.items()}
    times, _ = interleaved(calls, repeats)
    ref = times[(SIGMA_MIN, SIGMA_MAX)]
    return [{"grid": f"{g[0]:g}..{g[1]:g}", "seconds": times[g],
             "gflops": flops(k, 1, m, n, d) / times[g] / 1e9, "time_vs_full_grid": times[g] / ref}
            for g in grids]


def scaling(base, values, repeats):
    """Vary each of K, M, N, d around ``base``; normalized times and log-log slopes.

    All configurations are timed together, round-robin (see :func:`interleaved`), with
    their matmul ceilings.
    """
    configs = {(base["K"], base["M"], base["N"], base["d"])}
    for var, vals in values.items():
        configs |= {tuple({**base, var: v}[c] for c in "KMNd") for v in vals}
    configs = sorted(configs)
    calls, ceil_calls = {}, {}
    key = jax.random.PRNGKey(0)
    rng = np.random.default_rng(1)
    for k, m, n, d in configs:
        den, x = synthetic(m, n, d)
        sigmas = noise.log_sigmas(k, SIGMA_MIN, SIGMA_MAX)
        calls[(k, m, n, d)] = (lambda den=den, x=x, s=sigmas:
                               denoising_loss(key, den, x, s, num_noise=1))
        ceil_calls[(k, m, n, d)] = ceiling_call(k * m, n, d, rng)
    times, _ = time_with_ceilings(calls, ceil_calls, repeats)
    results = {c: rate_row(c[0], 1, *c[1:], times[c], ceil_calls[c][1], times[("ceiling", c)])
               for c in configs}
    t_base = results[(base["K"], base["M"], base["N"], base["d"])]["seconds"]
    work_base = base["K"] * base["M"] * base["N"] * base["d"]
    tables, slopes = {}, {}
    for var, vals in values.items():
        rows = []
        for v in vals:
            row = dict(results[tuple({**base, var: v}[c] for c in "KMNd")])
            work = row["K"] * row["M"] * row["N"] * row["d"]
            row["norm_time"] = (row["seconds"] / work) / (t_base / work_base)
            rows.append(row)
        x = np.log([r[var] for r in rows])
        y = np.log([r["seconds"] for r in rows])
        slopes[var] = float(np.polyfit(x, y, 1)[0])
        tables[var] = rows
    return tables, slopes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run, ~30 s)")
    args = parser.parse_args()
    if args.quick:
        repeats = 3
        base = {"K": 4, "M": 512, "N": 1024, "d": 64}
        values = {"K": [2, 4, 8], "M": [256, 512, 1024], "N": [512, 1024, 2048],
                  "d": [32, 64, 128]}
    else:
        repeats = 7
        base = {"K": 8, "M": 1024, "N": 2048, "d": 64}
        values = {"K": [4, 8, 16, 32], "M": [256, 512, 1024, 2048, 4096],
                  "N": [512, 1024, 2048, 4096, 8192], "d": [16, 32, 64, 128, 256]}
    env = environment()
    t_start = time.perf_counter()

    head = headline(args.quick, repeats)
    print(f"\nGap-curve throughput, EmpiricalDenoiser, float32, sigmas log 0.01..10 "
          f"({env['device']}, {env['cpu_count']} CPUs)")
    print("FLOPs = 4 * (K R M) * N * d; ceiling = plain X @ Y^T in this process")
    print_table(head, ["workload", "K", "R", "M", "N", "d", "first_call_s", "seconds", "gflops",
                       "ceiling_gflops", "ratio_to_ceiling"])

    sig = sigma_rows(base, repeats)
    print(f"\nSigma grid (K={base['K']}, M={base['M']}, N={base['N']}, d={base['d']}, one "
          "compiled program): speed depends on sigma only mildly")
    print_table(sig, ["grid", "seconds", "gflops", "time_vs_full_grid"])

    tables, slopes = scaling(base, values, repeats)
    print(f"\nScaling around K={base['K']}, M={base['M']}, N={base['N']}, d={base['d']}, R=1 "
          "(norm_time = time / (K M N d), base = 1: linear growth shows as a constant)")
    for var, rows in tables.items():
        print(f"\n{var} varied; log-log slope of time vs {var}: {slopes[var]:.2f} "
              "(expected ~1)")
        print_table(rows, [var, "seconds", "norm_time", "gflops", "ceiling_gflops",
                           "ratio_to_ceiling"])
    print("\nlog-log slopes: " + ", ".join(f"{v} {s:.2f}" for v, s in slopes.items()))
    print("Slopes below 1 mean fixed costs are amortized: per query, the exact re-ranking of "
          "the leading candidates (the num_exact=0 row above shows its share) and noise "
          "generation (~K M d, no N); per (query, point), exp, online max and candidate "
          "selection (~K M N, no d); per call, validation and dispatch; and the matmul rate "
          "itself grows with d and N (see ceiling_gflops).")
    total = time.perf_counter() - t_start
    print(f"total wall time {total:.0f} s")
    path = write_json("gap_curve", {
        "environment": env, "dtype": "float32", "quick": args.quick,
        "sigma_grid": [SIGMA_MIN, SIGMA_MAX], "flops": "4 * K * R * M * N * d",
        "ceiling": "X[Q, d] @ Y[N, d]^T repeated in one jitted loop (~2 GFLOP), "
                   "Q = min(K R M, max(128, 2^21 // N)); rate 2 Q N d / t",
        "timing": f"median of {repeats} round-robin rounds after one warm-up call each",
        "headline": head, "sigma": sig, "base": base, "scaling": tables, "slopes": slopes,
        "wall_s": total})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
