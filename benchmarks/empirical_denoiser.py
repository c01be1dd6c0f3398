"""Speed and near-tie accuracy of the empirical optimal denoiser.

Speed workload (the issue's): 1024 queries, 8192 training points, d = 784, sigma = 1,
float32, FLOPs counted as 4 * M * N * d (two matmuls). Rows: jaxgap, the plain float32
matmul ceiling measured in this process (X @ Y^T, rate = 2MNd / t), the conditional
denoiser (10 conditions, a different condition per query in one batch; it streams over all N
points and masks the others, so its FLOPs are counted as the unconditional one's), a naive
broadcast implementation, and the torch.cdist + softmax + matmul formula when torch is
importable.

Accuracy workload: data uniform in [-1, 1], d = 3072, queries halfway between two training
points plus N(0, 0.002^2) noise per coordinate; the largest per-query relative error
|D - D_ref| / |D_ref| against a float64 NumPy reference, for several sigma.

Usage: python benchmarks/empirical_denoiser.py [--quick]
Writes benchmarks/results/empirical_denoiser.json.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import environment, median_time, print_table, write_json  # noqa: E402

from jaxgap.denoisers import ConditionalEmpiricalDenoiser, EmpiricalDenoiser  # noqa: E402

try:  # torch is only a peer to compare against; jaxgap never depends on it
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None


def plain_formula(x, y, sigma):
    """softmax((x Y^T - |Y|^2 / 2) / sigma^2) Y in one shot (the textbook float32 formula)."""
    logits = (x @ y.T - 0.5 * jnp.sum(y * y, axis=1)[None, :]) / sigma**2
    return jax.nn.softmax(logits, axis=1) @ y


def naive_broadcast(x, y, sigma, block=16):
    """Exact-difference distances by broadcasting ``[block, N, d]``, blocked over queries."""
    def one(xb):
        d2 = jnp.sum((xb[:, None, :] - y[None, :, :]) ** 2, axis=-1)
        return jax.nn.softmax(-d2 / (2 * sigma**2), axis=1) @ y
    m = x.shape[0]
    return jax.lax.map(one, x.reshape(m // block, block, -1)).reshape(m, -1)


def torch_formula(x, y, sigma):
    """torch.cdist + softmax + matmul, the usual PyTorch implementation."""
    d2 = torch.cdist(x, y) ** 2
    return torch.softmax(-d2 / (2 * sigma**2), dim=1) @ y


def torch_time(x, y, sigma, repeats):
    import time
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))
    torch_formula(xt, yt, sigma)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch_formula(xt, yt, sigma)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def speed(m, n, d, repeats):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (m, d)), jnp.float32)
    y = jnp.asarray(rng.uniform(-1, 1, (n, d)), jnp.float32)
    flops = 4 * m * n * d
    rows = []
    mm = jax.jit(lambda a, b: a @ b.T)
    t_mm = median_time(mm, x, y, repeats=repeats)
    ceiling = 2 * m * n * d / t_mm / 1e9
    den = EmpiricalDenoiser(y)
    f = jax.jit(lambda D, q: D(q, 1.0))
    t = median_time(f, den, x, repeats=repeats)
    rows.append({"impl": "jaxgap EmpiricalDenoiser", "seconds": t, "gflops": flops / t / 1e9})
    rows.append({"impl": "matmul ceiling (X @ Y^T)", "seconds": 2 * t_mm,
                 "gflops": ceiling})
    labels = rng.integers(0, 10, n).astype(np.int32)
    cond = jnp.asarray(rng.integers(0, 10, m), jnp.int32)
    cden = ConditionalEmpiricalDenoiser(y, labels)
    fc = jax.jit(lambda D, q, c: D(q, 1.0, c))
    t = median_time(fc, cden, x, cond, repeats=repeats)
    rows.append({"impl": "jaxgap ConditionalEmpiricalDenoiser (10 conds)", "seconds": t,
                 "gflops": flops / t / 1e9})
    plain = jax.jit(plain_formula)
    t = median_time(plain, x, y, 1.0, repeats=repeats)
    rows.append({"impl": "plain float32 formula (jax)", "seconds": t, "gflops": flops / t / 1e9})
    sub = 64  # the naive broadcast is slow: time a subset of queries and scale the FLOPs
    nb = jax.jit(naive_broadcast)
    t = median_time(nb, x[:sub], y, 1.0, repeats=max(1, repeats // 2))
    rows.append({"impl": f"naive broadcast (jax, {sub} queries)", "seconds": t * m / sub,
                 "gflops": 4 * sub * n * d / t / 1e9})
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
        t = torch_time(x, y, 1.0, repeats)
        rows.append({"impl": f"torch cdist+softmax+matmul ({torch.__version__})",
                     "seconds": t, "gflops": flops / t / 1e9})
    for r in rows:
        r["ratio_to_ceiling"] = r["gflops"] / ceiling
    return rows, ceiling


def near_tie_accuracy(n, d, m, sigmas):
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, (n, d)).astype(np.float32)
    i = rng.integers(0, n, m)
    j = (i + 1 + rng.integers(0, n - 1, m)) % n
    x = (0.5 * (y[i] + y[j]) + 0.002 * rng.standard_normal((m, d))).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    d2 = np.stack([((x64[k] - y64) ** 2).sum(-1) for k in range(m)])
    den = EmpiricalDenoiser(y)
    rows = []
    for s in sigmas:
        logits = -d2 / (2 * s * s)
        w = np.exp(logits - logits.max(1, keepdims=True))
        ref = (w / w.sum(1, keepdims=True)) @ y64

        def err(out, ref=ref):
            out = np.asarray(out, np.float64)
            return float(np.max(np.linalg.norm(out - ref, axis=1) / np.linalg.norm(ref, axis=1)))

        row = {"sigma": s, "jaxgap": err(den(x, s)), "plain_f32": err(plain_formula(x, y, s)),
               "exact_diff_f32": err(naive_broadcast(jnp.asarray(x), jnp.asarray(y), s))}
        if torch is not None:
            xt, yt = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
            row["torch_cdist"] = err(torch_formula(xt, yt, s))
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    if args.quick:
        m, n, d, repeats, tie = 256, 2048, 256, 3, (256, 1024, 64)
    else:
        m, n, d, repeats, tie = 1024, 8192, 784, 7, (1024, 3072, 512)
    rows, ceiling = speed(m, n, d, repeats)
    print(f"\nEmpiricalDenoiser speed: M={m} queries, N={n} points, d={d}, sigma=1, float32 "
          f"({environment()['device']})")
    print_table(rows, ["impl", "seconds", "gflops", "ratio_to_ceiling"])
    ours = rows[0]["seconds"]
    cond_ratio = rows[2]["seconds"] / ours
    print(f"conditional / unconditional time: {cond_ratio:.2f}x")
    vs_torch = None
    if torch is not None:
        vs_torch = rows[-1]["seconds"] / ours
        print(f"jaxgap speed-up over the torch formula: {vs_torch:.2f}x")
    else:
        print("torch row left out: torch is not importable "
              "(pip install torch==2.13.0, CPU build, to compare)")
    sigmas = [0.01, 0.02, 0.05, 0.1, 0.3, 1.0]
    acc = near_tie_accuracy(*tie, sigmas)
    print(f"\nNear-tie accuracy: max relative error, N={tie[0]}, d={tie[1]}, {tie[2]} queries "
          "halfway between two points + N(0, 0.002^2) noise")
    print_table(acc, list(acc[0].keys()))
    path = write_json("empirical_denoiser", {
        "environment": environment(), "sizes": {"M": m, "N": n, "d": d}, "dtype": "float32",
        "speed": rows, "ceiling_gflops": ceiling, "speedup_vs_torch": vs_torch,
        "conditional_time_ratio": cond_ratio,
        "near_tie": {"N": tie[0], "d": tie[1], "queries": tie[2], "rows": acc}})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
