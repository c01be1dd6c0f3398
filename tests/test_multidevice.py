"""Sharded evaluation on 8 forced CPU devices, in a separate process (XLA_FLAGS is read once)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r'''
    import jax, jax.numpy as jnp, numpy as np
    assert jax.device_count() == 8, jax.devices()
    from jaxgap import data, noise
    from jaxgap.denoisers import EmpiricalDenoiser, ShardedEmpiricalDenoiser
    from jaxgap.losses import denoising_loss, gap_curve, per_example_loss

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))

    def row_rel(a, b):  # per-query |a - b| / |b| for [M, d] outputs
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)))

    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("shards",))
    ds = data.load("digits").with_train_size(301)   # 301: not a multiple of 8
    sig = noise.log_sigmas(6, 0.01, 20.0)
    key = jax.random.PRNGKey(0)
    den = EmpiricalDenoiser(ds.train)

    # 1. Queries (examples x noise draws) spread over the mesh: same numbers.
    one = gap_curve(den, ds.train, ds.val[:77], sig, key, num_noise=2)
    many = gap_curve(den, ds.train, ds.val[:77], sig, key, num_noise=2, mesh=mesh)
    for f in ("train", "val", "train_se", "val_se"):
        assert rel(getattr(many, f)[:4], getattr(one, f)[:4]) < 1e-5, f
    assert rel(per_example_loss(den, ds.val[:13], sig, key, mesh=mesh)[:4],
               per_example_loss(den, ds.val[:13], sig, key)[:4]) < 1e-5

    # 2. Training points spread over the mesh, exact cross-device merge.
    sharded = ShardedEmpiricalDenoiser(ds.train, mesh)
    x = ds.val[:40] + 0.3 * np.random.default_rng(0).standard_normal((40, 64)).astype("f4")
    for s in (0.02, 0.3, 3.0):
        assert row_rel(sharded(x, s), den(x, s)) < 1e-5, (s, row_rel(sharded(x, s), den(x, s)))
        a, b = sharded.posterior_stats(x, s), den.posterior_stats(x, s)
        assert (np.asarray(a.nearest) == np.asarray(b.nearest)).all()
        assert rel(a.sum_sq_weights, b.sum_sq_weights) < 1e-4
    assert rel(denoising_loss(sharded, ds.val[:50], sig, key)[:4],
               denoising_loss(den, ds.val[:50], sig, key)[:4]) < 1e-5

    # 3. Near ties between points on different devices stay exact (d = 3072).
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, (64, 3072)).astype(np.float32)
    i = np.arange(32); j = i + 32                       # pairs on different shards
    v = y[j].astype(np.float64) - y[i]
    e = 0.002 * rng.standard_normal((32, 3072))
    e -= (e * v).sum(1, keepdims=True) / (v * v).sum(1, keepdims=True) * v
    e += rng.uniform(-3, 3, (32, 1)) * 0.02**2 / (v * v).sum(1, keepdims=True) * v
    q = (0.5 * (y[i].astype(np.float64) + y[j]) + e).astype(np.float32)
    ql, yl = q.astype(np.longdouble), y.astype(np.longdouble)
    d2 = ((ql[:, None] - yl[None]) ** 2).sum(-1)
    w = np.exp(-np.asarray(d2 - d2.min(1, keepdims=True), np.float64) / (2 * 0.02**2))
    ref = (w / w.sum(1, keepdims=True)) @ y.astype(np.float64)
    out = np.asarray(ShardedEmpiricalDenoiser(y, mesh)(q, 0.02), np.float64)
    err = np.max(np.linalg.norm(out - ref, axis=1) / np.linalg.norm(ref, axis=1))
    assert err < 1e-4, err
    assert (np.sort(w / w.sum(1, keepdims=True), 1)[:, -2] > 0.05).sum() >= 10

    # 4. Bad input.
    for build, match in [(lambda: ShardedEmpiricalDenoiser(ds.train[:5], mesh), "at least 8"),
                         (lambda: denoising_loss(sharded, ds.val[:4], sig, key, mesh=mesh),
                          "already sharded")]:
        try:
            build()
        except ValueError as err_:
            assert match in str(err_), err_
        else:
            raise AssertionError(match)
    print("MULTIDEVICE OK")
''')


def test_eight_forced_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "MULTIDEVICE OK" in out.stdout
