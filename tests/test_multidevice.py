"""Sharded evaluation on 8 forced CPU devices, in a process of its own.

XLA reads ``XLA_FLAGS`` once, when its backend starts, and the main test process runs on the
machine's own devices. So :func:`test_in_own_process` runs the tests marked ``multidevice``
below with pytest in a child process whose environment forces 8 host devices; in the main
process they are deselected (``tests/conftest.py``). To run them directly::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        python -m pytest -m multidevice tests/test_multidevice.py

Tolerances: float32 sums over a different split of the same terms (queries or training
points spread over devices) agree to a few ulps times the number of terms; 1e-5 relative
leaves a margin of >= 10. The near-tie case is the kernel's exactness bar (1e-4 in float32).
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

FLAG = "--xla_force_host_platform_device_count=8"
IN_CHILD = FLAG in os.environ.get("XLA_FLAGS", "")


@pytest.mark.slow
def test_in_own_process():
    if IN_CHILD:
        pytest.skip("already in the 8-device child process")
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {FLAG}".strip())
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "multidevice",
           str(Path(__file__).resolve())]
    out = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=900)
    report = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, report
    assert " passed" in out.stdout and "skipped" not in out.stdout, report


# ------------------------------------------------------------------------------------------
# The tests the child process runs
# ------------------------------------------------------------------------------------------

multidevice = pytest.mark.multidevice


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def _row_rel(a, b):
    """Per-query ``|a - b| / |b|`` for ``[M, d]`` outputs."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)))


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, jax.devices()
    return jax.sharding.Mesh(np.array(jax.devices()), ("shards",))


@pytest.fixture(scope="module")
def setup(mesh):
    from jaxgap import data, noise
    from jaxgap.denoisers import EmpiricalDenoiser

    ds = data.load("digits").with_train_size(301)  # 301: not a multiple of 8
    sig = noise.log_sigmas(6, 0.01, 20.0)
    return ds, sig, EmpiricalDenoiser(ds.train), jax.random.PRNGKey(0)


@multidevice
def test_queries_spread_over_the_mesh_give_the_same_numbers(mesh, setup):
    from jaxgap.losses import gap_curve, per_example_loss

    ds, sig, den, key = setup
    one = gap_curve(key, den, ds.train, ds.val[:77], sig, num_noise=2)
    many = gap_curve(key, den, ds.train, ds.val[:77], sig, num_noise=2, mesh=mesh)
    for f in ("train", "val", "train_se", "val_se"):
        assert _rel(getattr(many, f)[:4], getattr(one, f)[:4]) < 1e-5, f
    assert _rel(per_example_loss(key, den, ds.val[:13], sig, mesh=mesh)[:4],
                per_example_loss(key, den, ds.val[:13], sig)[:4]) < 1e-5


@multidevice
def test_training_points_spread_over_the_mesh_merge_exactly(mesh, setup):
    from jaxgap.denoisers import ShardedEmpiricalDenoiser
    from jaxgap.losses import denoising_loss

    ds, sig, den, key = setup
    sharded = ShardedEmpiricalDenoiser(ds.train, mesh)
    x = ds.val[:40] + 0.3 * np.random.default_rng(0).standard_normal((40, 64)).astype("f4")
    for s in (0.02, 0.3, 3.0):
        assert _row_rel(sharded(x, s), den(x, s)) < 1e-5, s
        a, b = sharded.posterior_stats(x, s), den.posterior_stats(x, s)
        # ``nearest`` is an argmax of exact (double-word) logit differences, so it does not
        # depend on rounding; random queries have no exact ties.
        np.testing.assert_array_equal(a.nearest, b.nearest)
        assert _rel(a.sum_sq_weights, b.sum_sq_weights) < 1e-4
    assert _rel(denoising_loss(key, sharded, ds.val[:50], sig)[:4],
                denoising_loss(key, den, ds.val[:50], sig)[:4]) < 1e-5


@multidevice
def test_near_ties_between_points_on_different_devices_stay_exact(mesh):
    from jaxgap.denoisers import ShardedEmpiricalDenoiser

    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, (64, 3072)).astype(np.float32)  # d = 3072, 8 points per device
    i = np.arange(32)
    j = i + 32  # pairs on different shards
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
    assert _row_rel(out, ref) < 1e-4
    assert (np.sort(w / w.sum(1, keepdims=True), 1)[:, -2] > 0.05).sum() >= 10  # real ties


@multidevice
def test_bad_input(mesh, setup):
    from jaxgap.denoisers import ShardedEmpiricalDenoiser
    from jaxgap.losses import denoising_loss

    ds, sig, _, key = setup
    with pytest.raises(ValueError, match="at least 8"):
        ShardedEmpiricalDenoiser(ds.train[:5], mesh)
    sharded = ShardedEmpiricalDenoiser(ds.train, mesh)
    with pytest.raises(ValueError, match="already sharded"):
        denoising_loss(key, sharded, ds.val[:4], sig, mesh=mesh)
