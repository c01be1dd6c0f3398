"""EmpiricalDenoiser against independent float64 NumPy references, limits and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap.denoisers import EmpiricalDenoiser, score, velocity


def reference(x, y, sigma):
    """Brute force: exact differences, softmax, weighted mean. Returns (D, w) in float64.

    Squared distances are summed in extended precision (np.longdouble) and reduced to
    float64 only after subtracting each query's smallest one: a float64 sum of d = 3072
    squares carries ~1e-13 absolute error, too much for the x64 checks at sigma = 1e-3.
    """
    x = np.asarray(x, np.longdouble)
    y = np.asarray(y, np.longdouble)
    sigma = np.broadcast_to(np.asarray(sigma, np.float64), x.shape[:-1])
    d2 = ((x[..., None, :] - y) ** 2).sum(-1)
    d2 = np.asarray(d2 - d2.min(-1, keepdims=True), np.float64)
    y = np.asarray(y, np.float64)
    logits = -d2 / (2 * sigma[..., None] ** 2)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return w @ y, w


def max_rel_err(out, ref):
    out = np.asarray(out, np.float64)
    return float(np.max(np.linalg.norm(out - ref, axis=-1) / np.linalg.norm(ref, axis=-1)))


def near_tie_problem(rng, n, d, m, noise=0.002, tie_sigma=None):
    """Data uniform in [-1, 1]; queries halfway between two points plus small noise.

    With ``tie_sigma``, the noise component along ``y_j - y_i`` of the second half of the
    queries is set so that their two logits differ by U(-3, 3) at that sigma: real ties
    (the rest keep isotropic noise of 0.002 per coordinate).
    """
    y = rng.uniform(-1, 1, (n, d)).astype(np.float32)
    i = rng.integers(0, n, m)
    j = (i + 1 + rng.integers(0, n - 1, m)) % n
    v = y[j].astype(np.float64) - y[i]
    eps = noise * rng.standard_normal((m, d))
    if tie_sigma is not None:
        k = slice(m // 2, m)
        vv = (v[k] ** 2).sum(1, keepdims=True)
        eps_perp = eps[k] - (eps[k] * v[k]).sum(1, keepdims=True) / vv * v[k]
        gap = rng.uniform(-3, 3, (m - m // 2, 1))  # logit_j - logit_i = 2 eps.v / (2 s^2)
        eps[k] = eps_perp + gap * tie_sigma**2 / vv * v[k]
    x = (0.5 * (y[i].astype(np.float64) + y[j]) + eps).astype(np.float32)
    return x, y


# Data scale of uniform[-1, 1] is ~0.58 per coordinate: sigma spans 1e-3..1e3 of it.
SIGMAS = [6e-4, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 600.0]


@pytest.mark.parametrize("sigma", SIGMAS)
def test_matches_float64_reference_noisy_queries(sigma):
    rng = np.random.default_rng(0)
    n, d, m = 300, 48, 64
    y = rng.uniform(-1, 1, (n, d)).astype(np.float32)
    x = (y[rng.integers(0, n, m)] + sigma * rng.standard_normal((m, d))).astype(np.float32)
    ref, _ = reference(x, y, sigma)
    # float32 target of the issue: 1e-4 relative per query.
    assert max_rel_err(EmpiricalDenoiser(y, chunk_size=64)(x, sigma), ref) < 1e-4


@pytest.mark.parametrize("sigma", [0.01, 0.02, 0.05, 0.1, 0.3, 1.0])
def test_near_ties_high_dimension(sigma):
    """Queries halfway between two points (d = 3072): the plain formula is off by >1%."""
    rng = np.random.default_rng(1)
    x, y = near_tie_problem(rng, n=96, d=3072, m=96, tie_sigma=sigma)
    ref, w = reference(x, y, sigma)
    out = EmpiricalDenoiser(y, chunk_size=32)(x, sigma)
    assert max_rel_err(out, ref) < 1e-4
    # The test has teeth: many queries really are ties (two weights of similar size).
    assert np.sum(np.sort(w, axis=1)[:, -2] > 0.05) >= 20


def test_plain_formula_fails_on_near_ties():
    """num_exact=0 is the plain matmul formula; it is visibly wrong on the same queries."""
    rng = np.random.default_rng(1)
    x, y = near_tie_problem(rng, n=96, d=3072, m=96, tie_sigma=0.02)
    ref, _ = reference(x, y, 0.02)
    assert max_rel_err(EmpiricalDenoiser(y, num_exact=0)(x, 0.02), ref) > 1e-3


def test_clustered_data_small_sigma():
    """Many points close to each other (clusters of 20 at spread 0.01, far from the origin)."""
    rng = np.random.default_rng(2)
    centers = rng.uniform(2, 4, (5, 32))
    y = (np.repeat(centers, 20, 0) + 0.01 * rng.standard_normal((100, 32))).astype(np.float32)
    for sigma in [0.003, 0.01, 0.03]:
        x = (y[rng.integers(0, 100, 50)] + sigma * rng.standard_normal((50, 32))).astype(
            np.float32)
        ref, _ = reference(x, y, sigma)
        assert max_rel_err(EmpiricalDenoiser(y)(x, sigma), ref) < 1e-4


def test_limits(key):
    y = jax.random.normal(key, (40, 6))
    den = EmpiricalDenoiser(y)
    # sigma -> infinity: the mean of the training set.
    x = jnp.ones((3, 6))
    np.testing.assert_allclose(den(x, 1e6), np.broadcast_to(y.mean(0), (3, 6)), atol=1e-5)
    # sigma -> 0 at a training point: that point, exactly.
    np.testing.assert_array_equal(den(y[:10], 1e-4), y[:10])


def test_chunking_and_blocking_do_not_change_results():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((203, 16)).astype(np.float32)  # 203: last chunk overlaps
    x = (y[:37] + 0.5 * rng.standard_normal((37, 16))).astype(np.float32)
    ref, _ = reference(x, y, 0.5)
    outs = [EmpiricalDenoiser(y, chunk_size=c, query_block=b)(x, 0.5)
            for c, b in [(203, 64), (64, 64), (50, 8), (7, 5), (1, 37)]]
    for out in outs:
        assert max_rel_err(out, ref) < 1e-5
        np.testing.assert_allclose(out, outs[0], rtol=2e-6, atol=2e-6)


def test_jit_equals_eager_and_pytree(key):
    y = jax.random.normal(key, (64, 8))
    x = jax.random.normal(jax.random.fold_in(key, 1), (5, 8))
    den = EmpiricalDenoiser(y, chunk_size=16)
    eager = den(x, 0.7)
    jitted = jax.jit(lambda D, q, s: D(q, s))(den, x, 0.7)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    leaves, treedef = jax.tree.flatten(den)
    assert len(leaves) == 3
    rebuilt = jax.tree.unflatten(treedef, leaves)
    np.testing.assert_array_equal(rebuilt(x, 0.7), eager)


def test_per_sample_sigma_and_batch_shapes():
    rng = np.random.default_rng(4)
    y = rng.standard_normal((50, 5)).astype(np.float32)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    sig = np.exp(rng.uniform(-2, 1, (3, 4))).astype(np.float32)
    den = EmpiricalDenoiser(y)
    out = den(x, sig)
    assert out.shape == (3, 4, 5)
    ref, _ = reference(x.reshape(12, 5), y, sig.reshape(12))
    assert max_rel_err(out.reshape(12, 5), ref) < 1e-5
    # broadcasting a [3, 1] sigma over [3, 4] queries equals the explicit loop
    col = sig[:, :1]
    loop = np.stack([np.asarray(den(x[i], float(col[i, 0]))) for i in range(3)])
    np.testing.assert_allclose(den(x, col), loop, rtol=1e-6, atol=1e-6)
    # vmap over a noise grid
    grid = jnp.array([0.1, 1.0, 10.0])
    v = jax.vmap(lambda s: den(x[0], s))(grid)
    np.testing.assert_allclose(v[1], den(x[0], 1.0), rtol=1e-6, atol=1e-6)


def test_weights_effective_count_and_stats():
    rng = np.random.default_rng(5)
    y = rng.standard_normal((80, 10)).astype(np.float32)
    x = (y[:20] + 0.6 * rng.standard_normal((20, 10))).astype(np.float32)
    ref, w = reference(x, y, 0.6)
    den = EmpiricalDenoiser(y, chunk_size=32)
    np.testing.assert_allclose(den.weights(x, 0.6), w, atol=2e-6)
    stats = den.posterior_stats(x, 0.6)
    assert max_rel_err(stats.mean, ref) < 1e-5
    np.testing.assert_allclose(stats.max_weight, w.max(1), rtol=1e-4)
    np.testing.assert_allclose(den.effective_count(x, 0.6), 1 / (w**2).sum(1), rtol=1e-4)
    logz = np.log(np.exp(-((x[:, None].astype(np.float64) - y) ** 2).sum(-1) / 0.72).sum(1))
    np.testing.assert_allclose(stats.log_normalizer, logz, rtol=1e-5)


def test_jacobian_is_posterior_covariance(key):
    """dD*/dx = Cov_w(y) / sigma^2 (autodiff through the streaming kernel)."""
    y = jax.random.normal(key, (30, 4))
    x = jnp.array([0.1, -0.2, 0.3, 0.05])
    sigma = 0.8
    den = EmpiricalDenoiser(y, chunk_size=8)
    jac = jax.jacfwd(lambda q: den(q, sigma))(x)
    _, w = reference(x, y, sigma)
    y64 = np.asarray(y, np.float64)
    mean = w @ y64
    cov = (w[:, None] * (y64 - mean)).T @ (y64 - mean)
    np.testing.assert_allclose(jac, cov / sigma**2, rtol=1e-4, atol=1e-5)
    jac_rev = jax.jacrev(lambda q: den(q, sigma))(x)
    np.testing.assert_allclose(jac_rev, jac, rtol=1e-4, atol=1e-5)


def test_score_and_velocity(key):
    y = jax.random.normal(key, (20, 3))
    x = jax.random.normal(jax.random.fold_in(key, 2), (4, 3))
    den = EmpiricalDenoiser(y)
    d = den(x, 0.5)
    np.testing.assert_allclose(score(den, x, 0.5), (d - x) / 0.25, rtol=1e-6)
    np.testing.assert_allclose(velocity(den, x, 0.5), (x - d) / 0.5, rtol=1e-6)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: EmpiricalDenoiser(np.zeros((0, 3))), "train: expected a non-empty"),
        (lambda: EmpiricalDenoiser(np.zeros(3)), "train: expected rank 2"),
        (lambda: EmpiricalDenoiser(np.array([[0.0, np.nan]])), "train: expected finite"),
        (lambda: EmpiricalDenoiser(np.array([[0.0, np.inf]])), "train: expected finite"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)), chunk_size=0), "chunk_size"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)), num_exact=-1), "num_exact"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)))(np.zeros((4, 3)), 1.0), "x: expected last"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)))(np.zeros((4, 2)), 0.0), "sigma: expected v"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)))(np.zeros((4, 2)), -1.0), "sigma: expected"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)))(np.zeros((4, 2)), np.nan), "sigma: expected"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)))(np.zeros((4, 2)), np.ones(3)), "sigma: exp"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)))(np.zeros((4, 2)), np.ones((2, 4))), "sigma"),
        (lambda: EmpiricalDenoiser(np.zeros((2, 2)))(np.full((1, 2), np.nan), 1.0), "x: expected"),
    ],
)
def test_bad_input(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.x64
@pytest.mark.parametrize("sigma", [0.001, 0.01, 0.02, 0.1, 1.0, 10.0, 1000.0])
def test_x64_near_ties_and_noisy(sigma):
    rng = np.random.default_rng(6)
    x, y = near_tie_problem(rng, n=96, d=3072, m=96, tie_sigma=sigma)
    x, y = x.astype(np.float64), y.astype(np.float64)
    den = EmpiricalDenoiser(y, chunk_size=32)
    assert den.train.dtype == jnp.float64
    ref, _ = reference(x, y, sigma)
    assert max_rel_err(den(x, sigma), ref) < 1e-9
    xn = y[rng.integers(0, 96, 40)] + sigma * rng.standard_normal((40, 3072))
    ref, _ = reference(xn, y, sigma)
    assert max_rel_err(den(xn, sigma), ref) < 1e-9


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_gmm_with_vanishing_covariances_equals_empirical(sigma):
    """A GMM of point masses at the training points with equal weights is the empirical law."""
    from jaxgap.denoisers import GMMDenoiser

    rng = np.random.default_rng(7)
    y = rng.standard_normal((40, 6)).astype(np.float32)
    x = (y[:15] + sigma * rng.standard_normal((15, 6))).astype(np.float32)
    gmm = GMMDenoiser(np.ones(40), y, np.zeros(40))
    np.testing.assert_allclose(gmm(x, sigma), EmpiricalDenoiser(y)(x, sigma), rtol=2e-5,
                               atol=2e-5)


def test_two_level_top_k_equals_lax_top_k():
    from jax import lax

    from jaxgap._exact import top_k as _top_k

    rng = np.random.default_rng(8)
    logits = jnp.asarray(rng.standard_normal((7, 256)), jnp.float32)
    for k in (1, 4, 8, 16):
        v, i = _top_k(logits, k)
        rv, ri = lax.top_k(logits, k)
        np.testing.assert_array_equal(v, rv)
        np.testing.assert_array_equal(i, ri)


def test_data_far_from_the_origin_is_centred():
    """Data in [5, 7] (e.g. unnormalized pixels), sigma where several points contribute.

    Without centring, the bulk logits carry errors ~eps |x| |y| / sigma^2 and the plain
    formula (num_exact=0) is off by ~2e-5 here; centring on the training mean gives ~6e-7.
    """
    rng = np.random.default_rng(0)
    y = (rng.uniform(-1, 1, (200, 3072)) + 6).astype(np.float32)
    x = (y[rng.integers(0, 200, 40)] + 10.0 * rng.standard_normal((40, 3072))).astype(
        np.float32)
    ref, _ = reference(x, y, 10.0)
    assert max_rel_err(EmpiricalDenoiser(y, num_exact=0)(x, 10.0), ref) < 3e-6
    assert max_rel_err(EmpiricalDenoiser(y)(x, 10.0), ref) < 3e-6


def test_image_shaped_training_set_error_says_how_to_flatten():
    """[n, H, W] images get an error that names the reshape to do (issue 12)."""
    with pytest.raises(ValueError, match=r"train: expected rank 2, got shape \[5, 2, 3\]; "
                                         r"flatten the images first: train.reshape\(5, -1\) "
                                         r"gives \[5, 6\]"):
        EmpiricalDenoiser(np.zeros((5, 2, 3), np.float32))
