"""jaxgap.metrics against float64 NumPy brute force, limits, near ties and bad input."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap.denoisers import EmpiricalDenoiser
from jaxgap.losses import example_noise
from jaxgap.metrics import (
    _neighbors,
    copy_ratio,
    distance_to_sets,
    domain_diagnostics,
    memorized_fraction,
    nearest_neighbors,
    noisy_states,
    normalized_nn_distance,
    posterior_concentration,
)


def brute_force(x, y, k):
    """Exact k-NN in float64 from explicit differences; ties by lower index."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(y.shape[0]), d2.shape), d2), axis=1)[:, :k]
    return np.sqrt(np.take_along_axis(d2, order, 1)), order


def assert_matches(out, x, y, k, rtol=1e-5):
    dist, index = brute_force(x, y, k)
    np.testing.assert_array_equal(np.asarray(out.index), index)
    # float32: distances from exact differences, a few ulps (1e-5 leaves a wide margin).
    np.testing.assert_allclose(np.asarray(out.dist, np.float64), dist, rtol=rtol, atol=1e-30)
    assert out.index.dtype == jnp.int32
    assert np.all(np.diff(np.asarray(out.dist), axis=1) >= 0)


def test_nearest_neighbors_brute_force():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((3000, 8)).astype(np.float32)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    # 3000 = 5 * 512 + 440: an overlapping last chunk; 200 queries in blocks of 64 + padding.
    out = nearest_neighbors(x, y, k=5, chunk_size=512, query_block=64)
    assert out.dist.shape == (200, 5) and out.index.shape == (200, 5)
    assert_matches(out, x, y, 5)


def near_tie_problem(rng, pairs=300, d=8, half_gap=0.05, offset=100.0):
    """Pairs of points far from the origin; queries almost halfway between the two.

    The two squared distances of a query differ by ``4 v . e`` (``v`` half the pair's
    difference, ``e`` the query's offset from the midpoint, 1e-6 to 1e-4), far below the
    ``~eps |x|^2 ~ 5e-3`` rounding error of the float32 formula ``|x|^2 - 2 x.y + |y|^2``.
    """
    c = offset + 3.0 * rng.standard_normal((pairs, d))
    v = rng.standard_normal((pairs, d))
    v *= half_gap / np.linalg.norm(v, axis=1, keepdims=True)
    y = np.concatenate([c + v, c - v]).astype(np.float32)
    perm = rng.permutation(2 * pairs)
    y = y[perm]
    a, b = np.argsort(perm)[:pairs], np.argsort(perm)[pairs:]  # rows of c + v and c - v
    mid = 0.5 * (y[a].astype(np.float64) + y[b])
    scale = 10.0 ** rng.uniform(-6, -4, (pairs, 1))
    x = (mid + scale * rng.standard_normal((pairs, d))).astype(np.float32)
    return x, y, a, b


def test_nearest_neighbors_near_ties_ordered_exactly():
    rng = np.random.default_rng(1)
    x, y, a, b = near_tie_problem(rng)
    ref_dist, ref_idx = brute_force(x, y, 2)
    assert np.all(np.sort(ref_idx, 1) == np.sort(np.stack([a, b], 1), 1))  # the pair itself
    # The plain float32 formula misorders a good share of the pairs (so the test has teeth).
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    naive = ((x32 * x32).sum(1)[:, None] - 2 * x32 @ y32.T + (y32 * y32).sum(1)[None, :])
    naive_first = np.where(naive[np.arange(len(x)), a] < naive[np.arange(len(x)), b], a, b)
    assert np.mean(naive_first != ref_idx[:, 0]) > 0.2
    out = nearest_neighbors(x, y, k=2, chunk_size=128)
    assert_matches(out, x, y, 2)


def test_nearest_neighbors_sub_ulp_ties_ordered_exactly():
    """Queries ``e`` (|e| ~ 1e-9) between ``+v`` and ``-v``: the squared distances differ by
    ``4 v.e``, ~1e-8 relative, below float32 resolution; only exact differences order them."""
    rng = np.random.default_rng(13)
    v = rng.uniform(0.5, 1.5, (1, 6)).astype(np.float32)
    y = np.concatenate([v, -v, 3.0 + rng.standard_normal((50, 6)).astype(np.float32)])
    x = (1e-9 * rng.standard_normal((200, 6))).astype(np.float32)
    out = nearest_neighbors(x, y, k=2)
    assert_matches(out, x, y, 2)
    _, ref_idx = brute_force(x, y, 1)
    assert 0.2 < np.mean(ref_idx[:, 0] == 1) < 0.8  # both orders occur
    # The float32 distances themselves are (mostly) equal: the order is finer than them.
    assert np.mean(np.asarray(out.dist[:, 0]) == np.asarray(out.dist[:, 1])) > 0.5


def test_nearest_neighbors_exact_ties_lower_index_first():
    y = np.array([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0]],
                 np.float32)
    out = nearest_neighbors(np.zeros((1, 2), np.float32), y, k=5)
    np.testing.assert_array_equal(np.asarray(out.index), [[0, 1, 3, 4, 5]])
    np.testing.assert_array_equal(np.asarray(out.dist), np.ones((1, 5)))
    # A query on a duplicated point: distance exactly 0 to both copies, lower index first.
    out = nearest_neighbors(y[4:5], y, k=3)
    np.testing.assert_array_equal(np.asarray(out.index), [[1, 4, 0]])
    np.testing.assert_array_equal(np.asarray(out.dist[:, :2]), [[0.0, 0.0]])


def test_nearest_neighbors_chunk_and_block_independence():
    rng = np.random.default_rng(2)
    y = rng.uniform(-1, 1, (1000, 5)).astype(np.float32)
    x = rng.uniform(-1, 1, (150, 5)).astype(np.float32)
    base = nearest_neighbors(x, y, k=3)
    for chunk, block in [(7, 512), (100, 32)]:
        out = nearest_neighbors(x, y, k=3, chunk_size=chunk, query_block=block)
        np.testing.assert_array_equal(np.asarray(out.index), np.asarray(base.index))
        np.testing.assert_allclose(np.asarray(out.dist), np.asarray(base.dist), rtol=1e-6)
    assert_matches(base, x, y, 3)
    # k = N: every point, in order; more candidates than points is clipped.
    out = nearest_neighbors(x[:4], y[:6], k=6, candidates=50)
    assert_matches(out, x[:4], y[:6], 6)


def test_nearest_neighbors_no_retrace():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((300, 4)).astype(np.float32)
    nearest_neighbors(rng.standard_normal((10, 4)).astype(np.float32), y, k=2)
    compiled = _neighbors._nearest_neighbors._cached  # equinox.filter_jit's jax.jit
    before = compiled._cache_size()
    nearest_neighbors(rng.standard_normal((10, 4)).astype(np.float32), y + 1.0, k=2)
    assert compiled._cache_size() == before


def test_nearest_neighbors_200k_points_smoke():
    rng = np.random.default_rng(4)
    n, d = 200_000, 16
    y = rng.standard_normal((n, d)).astype(np.float32)
    x = (y[rng.integers(0, n, 256)] + 0.3 * rng.standard_normal((256, d))).astype(np.float32)
    out = nearest_neighbors(x, y, k=2)
    sub = np.arange(0, 256, 8)  # float64 brute force on a subset of 32 queries
    x64, y64 = x[sub].astype(np.float64), y.astype(np.float64)
    d2 = (x64**2).sum(1)[:, None] - 2 * x64 @ y64.T + (y64**2).sum(1)[None, :]
    ref_idx = np.argsort(d2, axis=1, kind="stable")[:, :2]
    ref_dist = np.linalg.norm(x64[:, None, :] - y64[ref_idx], axis=-1)
    np.testing.assert_array_equal(np.asarray(out.index)[sub], ref_idx)
    np.testing.assert_allclose(np.asarray(out.dist, np.float64)[sub], ref_dist, rtol=1e-5)


def test_copy_ratio_brute_force():
    rng = np.random.default_rng(5)
    train = rng.standard_normal((400, 6)).astype(np.float32)
    samples = rng.standard_normal((100, 6)).astype(np.float32)
    dist, _ = brute_force(samples, train, 2)
    np.testing.assert_allclose(np.asarray(copy_ratio(samples, train)), dist[:, 0] / dist[:, 1],
                               rtol=1e-5)


def test_memorized_fraction_limits():
    rng = np.random.default_rng(6)
    train = rng.standard_normal((300, 6)).astype(np.float32)
    copies = train[:80]
    out = memorized_fraction(copies, train, key=jax.random.PRNGKey(0))
    assert float(out.fraction) == 1.0 and float(out.se) == 0.0
    np.testing.assert_array_equal(np.asarray(copy_ratio(copies, train)), 0.0)
    far = (100.0 + rng.standard_normal((80, 6))).astype(np.float32)
    out = memorized_fraction(far, train)
    assert float(out.fraction) == 0.0 and float(out.se) == 0.0
    assert json.loads(json.dumps(out.to_dict())) == {"fraction": 0.0, "se": 0.0}
    # threshold = 1 counts everything but exact ties of NN1 and NN2.
    assert float(memorized_fraction(far, train, threshold=1.0).fraction) == 1.0


def test_memorized_fraction_bootstrap_se():
    rng = np.random.default_rng(7)
    m = 400
    train = rng.standard_normal((500, 6)).astype(np.float32)
    copies = train[:150] + 1e-4 * rng.standard_normal((150, 6)).astype(np.float32)
    fresh = rng.standard_normal((m - 150, 6)).astype(np.float32) * 3.0
    samples = np.concatenate([copies, fresh])
    ratio = np.asarray(copy_ratio(samples, train))
    p = np.mean(ratio < 1 / 3)
    key = jax.random.PRNGKey(1)
    out = memorized_fraction(samples, train, key=key, num_bootstrap=2000)
    assert float(out.fraction) == pytest.approx(p)
    # Bootstrap se of a mean of M Bernoulli draws: sqrt(p (1 - p) / M); with 2000 resamples
    # its relative Monte Carlo error is ~1 / sqrt(2 * 2000) ~ 1.6%, so 15% is > 9 se.
    expected = np.sqrt(p * (1 - p) / m)
    assert 0.85 * expected < float(out.se) < 1.15 * expected
    again = memorized_fraction(samples, train, key=key, num_bootstrap=2000)
    assert float(again.se) == float(out.se)
    closed = memorized_fraction(samples, train)
    assert float(closed.se) == pytest.approx(expected, rel=1e-5)


def test_distance_to_sets():
    rng = np.random.default_rng(8)
    train = rng.standard_normal((300, 5)).astype(np.float32)
    val = rng.standard_normal((200, 5)).astype(np.float32)
    samples = np.concatenate([train[:20], rng.standard_normal((30, 5)).astype(np.float32)])
    out = distance_to_sets(samples, train, val)
    dt, _ = brute_force(samples, train, 1)
    dv, _ = brute_force(samples, val, 1)
    np.testing.assert_allclose(np.asarray(out.to_train), dt[:, 0], rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(np.asarray(out.to_val), dv[:, 0], rtol=1e-5)
    assert float(out.mean_to_train) == pytest.approx(dt.mean(), rel=1e-5)
    assert float(out.mean_to_val) == pytest.approx(dv.mean(), rel=1e-5)
    assert float(out.closer_to_train) == pytest.approx(np.mean(dt < dv))
    json.dumps(out.to_dict())


def test_noisy_states_follow_example_noise(key):
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    sigmas = np.array([0.5, 2.0], np.float32)
    out = noisy_states(key, data, sigmas)
    assert out.shape == (2, 4, 3)
    for k in range(2):
        for i in range(4):
            ref = data[i] + sigmas[k] * np.asarray(example_noise(key, i, k, 0, 3))
            np.testing.assert_allclose(np.asarray(out[k, i]), ref, rtol=1e-6)
    other = noisy_states(key, data, sigmas, draw=1)
    assert not np.allclose(np.asarray(other), np.asarray(out))


def test_normalized_nn_distance_limits(key):
    rng = np.random.default_rng(9)
    train = rng.uniform(-1, 1, (500, 64)).astype(np.float32)
    sigma = 1e-3
    x = noisy_states(key, train, np.array([sigma], np.float32))[0]
    rho = np.asarray(normalized_nn_distance(x, sigma, train))
    assert rho.shape == (500,)
    # Each noisy point's nearest training point is its source: rho = |eps| / sqrt(d) exactly
    # (up to float32 rounding of x = y + sigma eps, ~1e-4 relative at sigma = 1e-3).
    eps_norm = np.linalg.norm(np.asarray(x, np.float64) - train, axis=1) / (sigma * 8.0)
    np.testing.assert_allclose(rho, eps_norm, rtol=1e-5)
    # E|eps| / sqrt(d) = 1 - 1/(4d) + ..., per-sample sd ~ 1/sqrt(2d): the mean of 500 is
    # 1 to within ~0.5% (3%: > 6 standard errors).
    assert abs(rho.mean() - 1.0) < 0.03
    # Large sigma (twice the data range, d = 4): other points come closer than the source.
    # Batched states [2, 500, 4] with a per-row sigma.
    small = rng.uniform(-1, 1, (500, 4)).astype(np.float32)
    sig = np.array([0.01, 2.0], np.float32)
    xs = noisy_states(key, small, sig)
    rho = np.asarray(normalized_nn_distance(xs, sig[:, None], small))
    assert rho.shape == (2, 500)
    source = np.linalg.norm(np.asarray(xs, np.float64) - small, axis=-1) / (sig[:, None] * 2.0)
    np.testing.assert_allclose(rho[0], source[0], rtol=1e-4)
    assert np.all(rho[1] <= source[1] * (1 + 1e-6)) and rho[1].mean() < 0.8 * source[1].mean()
    assert rho[1].mean() < 0.8


def test_posterior_concentration(key):
    rng = np.random.default_rng(10)
    train = rng.uniform(-1, 1, (300, 16)).astype(np.float32)
    x = noisy_states(key, train, np.array([0.01, 3.0], np.float32))
    small = posterior_concentration(x[0], 0.01, train)
    np.testing.assert_allclose(np.asarray(small.max_weight), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(small.effective_count), 1.0, atol=1e-4)
    large = posterior_concentration(x[1], 3.0, EmpiricalDenoiser(train))
    assert np.all(np.asarray(large.max_weight) < 0.5)
    assert np.all(np.asarray(large.effective_count) > 2.0)
    assert np.all(np.asarray(large.effective_count) <= 300 * (1 + 1e-5))


def test_domain_diagnostics(key):
    rng = np.random.default_rng(11)
    train = rng.uniform(-1, 1, (200, 8)).astype(np.float32)
    val = rng.uniform(-1, 1, (200, 8)).astype(np.float32)
    sigmas = np.array([0.01, 0.1, 1.0], np.float32)
    k_train, k_val = jax.random.split(key)
    states = {
        "train": noisy_states(k_train, train, sigmas),
        "val": noisy_states(k_val, val, sigmas),
        "far": jnp.asarray(5.0 + rng.standard_normal((3, 40, 8)), jnp.float32),
    }
    q = (0.05, 0.25, 0.5, 0.75, 0.95)
    diag = domain_diagnostics(train, sigmas, states, quantiles=q)
    assert list(diag.sets) == ["train", "val", "far"]
    for s in diag.sets.values():
        for band in (s.normalized_nn_distance, s.max_weight, s.effective_count):
            band = np.asarray(band)
            assert band.shape == (3, 5)
            assert np.all(np.diff(band, axis=1) >= 0)
    assert diag.sets["far"].num_states == 40
    tr = diag.sets["train"]
    # Noisy train at small sigma: rho ~ 1, posterior on the source point.
    np.testing.assert_allclose(np.asarray(tr.normalized_nn_distance[0, 2]), 1.0, atol=0.1)
    np.testing.assert_allclose(np.asarray(tr.max_weight[0]), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(tr.effective_count[0]), 1.0, atol=1e-4)
    # The NN distances agree with normalized_nn_distance (the posterior's nearest point).
    rho = normalized_nn_distance(states["val"], jnp.asarray(sigmas)[:, None], train)
    ref = np.quantile(np.asarray(rho), q, axis=1).T
    np.testing.assert_allclose(np.asarray(diag.sets["val"].normalized_nn_distance), ref,
                               rtol=1e-5)
    text = json.dumps(diag.to_dict())
    back = json.loads(text)
    assert back["sigmas"] == pytest.approx(sigmas.tolist())
    assert np.asarray(back["sets"]["far"]["max_weight"]).shape == (3, 5)
    assert json.loads(diag.to_json(run="x"))["run"] == "x"
    # A bare array is one set named "states".
    together = jnp.concatenate(list(states.values()), axis=1)
    single = domain_diagnostics(EmpiricalDenoiser(train), sigmas, together, quantiles=q)
    assert list(single.sets) == ["states"] and single.sets["states"].num_states == 440
    np.testing.assert_allclose(np.asarray(single.sets["states"].max_weight[:2, -1]), 1.0,
                               atol=1e-5)  # its 95% quantile: mostly noisy train and val


def _bad_calls():
    y = np.zeros((5, 3), np.float32)
    y[:, 0] = np.arange(5)
    x = np.ones((2, 3), np.float32)
    nan = x.copy()
    nan[0, 1] = np.nan
    k = jax.random.PRNGKey(0)
    s = np.array([0.1, 1.0], np.float32)
    st = np.ones((2, 4, 3), np.float32)
    return [
        ("queries", lambda: nearest_neighbors(np.ones((2, 4)), y)),
        ("queries", lambda: nearest_neighbors(np.ones((0, 3)), y)),
        ("queries", lambda: nearest_neighbors(nan, y)),
        ("points", lambda: nearest_neighbors(x, np.zeros((0, 3)))),
        ("points", lambda: nearest_neighbors(x, np.ones(3))),
        ("k", lambda: nearest_neighbors(x, y, k=6)),
        ("k", lambda: nearest_neighbors(x, y, k=0)),
        ("chunk_size", lambda: nearest_neighbors(x, y, chunk_size=0)),
        ("candidates", lambda: nearest_neighbors(x, y, k=3, candidates=2)),
        ("train", lambda: copy_ratio(x, y[:1])),
        ("samples", lambda: copy_ratio(np.ones((2, 2)), y)),
        ("threshold", lambda: memorized_fraction(x, y, threshold=0.0)),
        ("threshold", lambda: memorized_fraction(x, y, threshold=1.5)),
        ("threshold", lambda: memorized_fraction(x, y, threshold="a")),
        ("key", lambda: memorized_fraction(x, y, key=0)),
        ("num_bootstrap", lambda: memorized_fraction(x, y, key=k, num_bootstrap=1)),
        ("val", lambda: distance_to_sets(x, y, np.ones((4, 2)))),
        ("sigma", lambda: normalized_nn_distance(x, 0.0, y)),
        ("sigma", lambda: normalized_nn_distance(x, np.nan, y)),
        ("sigma", lambda: normalized_nn_distance(x, np.ones(3), y)),
        ("x", lambda: normalized_nn_distance(np.ones((2, 2)), 1.0, y)),
        ("sigma", lambda: posterior_concentration(x, -1.0, y)),
        ("sigmas", lambda: domain_diagnostics(y, np.array([0.1, -1.0]), st)),
        ("sigmas", lambda: domain_diagnostics(y, np.zeros((0,)), st)),
        ("states", lambda: domain_diagnostics(y, s[:1], st)),
        ("states", lambda: domain_diagnostics(y, s, np.ones((2, 4, 2)))),
        ("states", lambda: domain_diagnostics(y, s, {})),
        ("states['b']", lambda: domain_diagnostics(y, s, {"a": st, "b": st[:, :, :2]})),
        ("quantiles", lambda: domain_diagnostics(y, s, st, quantiles=(0.5, 1.2))),
        ("train", lambda: domain_diagnostics(np.ones(3), s, st)),
        ("key", lambda: noisy_states(None, y, s)),
        ("data", lambda: noisy_states(k, np.ones((0, 3)), s)),
        ("sigmas", lambda: noisy_states(k, y, np.array([np.inf]))),
    ]


@pytest.mark.parametrize("name, call", _bad_calls())
def test_bad_inputs_raise_naming_the_argument(name, call):
    with pytest.raises(ValueError, match=f"^{re.escape(name)}: expected"):
        call()


@pytest.mark.x64
def test_nearest_neighbors_float64_near_ties():
    rng = np.random.default_rng(12)
    x, y, a, b = near_tie_problem(rng, pairs=100)
    out = nearest_neighbors(x.astype(np.float64), y.astype(np.float64), k=2)
    assert out.dist.dtype == jnp.float64
    assert_matches(out, x, y, 2, rtol=1e-12)
