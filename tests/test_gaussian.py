"""GaussianDenoiser: Wiener filter against float64 NumPy, limits, Monte Carlo MMSE, pytrees.

float32 tolerances: eps32 = 1.2e-7; the filter is two [d, d] rotations and a shrinkage by a
factor in [0, 1] (well conditioned for every sigma), so its error is a few d * eps32 times
|x - mean|. With d <= 6 and |x - mean| <= ~10, an absolute 1e-5 keeps a margin of >= 10.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap.denoisers import GaussianDenoiser, score

D = 6


def _random_cov(rng, d, rank=None):
    a = rng.normal(size=(d, d if rank is None else rank))
    return a @ a.T / a.shape[1] + (0.1 * np.eye(d) if rank is None else 0.0)


def _hadamard_cov(eigs):
    """A 4x4 covariance exact in float32: (H/2) diag(eigs) (H/2)^T with dyadic entries."""
    h = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
    return h @ np.diag(eigs) @ h.T, h


def _wiener_ref(mean, cov, x, sigma):
    """Float64 NumPy reference: mu + C (C + s^2 I)^{-1} (x - mu), one query at a time."""
    mean, cov = np.float64(mean), np.float64(cov)
    x = np.float64(x).reshape(-1, mean.shape[0])
    sigma = np.broadcast_to(np.float64(sigma), x.shape[:1])
    out = [mean + cov @ np.linalg.solve(cov + s**2 * np.eye(len(mean)), xi - mean)
           for xi, s in zip(x, sigma, strict=True)]
    return np.stack(out)


def _log_prob_ref(mean, cov, x, sigma):
    mean, cov = np.float64(mean), np.float64(cov)
    out = []
    for xi, s in zip(np.float64(x), np.float64(sigma), strict=True):
        cs = cov + s**2 * np.eye(len(mean))
        r = xi - mean
        _, logdet = np.linalg.slogdet(cs)
        out.append(-0.5 * (r @ np.linalg.solve(cs, r) + logdet + len(mean) * np.log(2 * np.pi)))
    return np.array(out)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=D)
    cov = _random_cov(rng, D)
    x = mean + 2.0 * rng.normal(size=(32, D))
    sigma = np.geomspace(1e-2, 1e2, 32)
    # The float32 copies are what the denoiser sees; the reference uses them in float64.
    return tuple(np.float32(a) for a in (mean, cov, x, sigma))


def test_matches_float64_reference(problem):
    mean, cov, x, sigma = problem
    den = GaussianDenoiser(mean, cov)
    out = den(x, sigma)
    assert out.shape == x.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, _wiener_ref(mean, cov, x, sigma), rtol=0, atol=1e-5)
    np.testing.assert_allclose(den.cov, cov, rtol=0, atol=1e-5)


def test_log_prob_matches_reference(problem):
    mean, cov, x, sigma = problem
    lp = GaussianDenoiser(mean, cov).log_prob(x, sigma)
    # log p is a sum of d terms of size up to |z|^2 / (lambda + s^2) ~ 1e3: relative 1e-5.
    np.testing.assert_allclose(lp, _log_prob_ref(mean, cov, x, sigma), rtol=1e-5, atol=1e-5)


def test_tweedie_score_is_grad_log_prob(problem):
    mean, cov, x, _ = problem
    den = GaussianDenoiser(mean, cov)
    sigma = np.float32(np.geomspace(0.3, 10.0, len(x)))
    grad = jax.jit(jax.vmap(jax.grad(lambda xi, si: den.log_prob(xi, si))))(x, sigma)
    s = score(den, x, sigma)
    # (D - x) / sigma^2 cancels D against x: error eps32 |x| / sigma^2 <= 1e-6 / 0.09.
    np.testing.assert_allclose(s, grad, rtol=1e-4, atol=2e-5)


def test_singular_cov_reference_and_projection_limit():
    # Data on a 2-dim subspace of R^4, covariance exact in float32 (no rounding eigenvalues).
    cov, h = _hadamard_cov([0.0, 0.0, 0.5, 3.0])
    mean = np.array([1.0, -2.0, 0.5, 0.0])
    x = np.random.default_rng(1).normal(size=(16, 4)) * 3.0
    den = GaussianDenoiser(mean, cov)
    assert np.all(np.asarray(den.eigvals) >= 0)
    sigma = np.geomspace(1e-3, 1e3, 16)
    np.testing.assert_allclose(den(x, sigma), _wiener_ref(mean, cov, x, sigma), atol=1e-5)
    # sigma -> 0: mean + projection of x - mean onto the support; bias s^2 / lambda_min = 2e-8.
    proj = h[:, 2:] @ h[:, 2:].T
    np.testing.assert_allclose(den(x, 1e-4), mean + (x - mean) @ proj, atol=1e-5)


def test_limits_full_rank(problem):
    mean, cov, x, _ = problem
    den = GaussianDenoiser(mean, cov)
    # sigma -> inf: D - mean = O(lambda_max / sigma^2 * |x - mean|) ~ 1e-11.
    np.testing.assert_allclose(den(x, 1e6), np.broadcast_to(mean, x.shape), atol=1e-5)
    # sigma -> 0 with lambda_min >= 0.1: D - x = O(sigma^2 / lambda_min * |x|) ~ 1e-7.
    np.testing.assert_allclose(den(x, 1e-4), x, atol=1e-5)


def test_per_sample_sigma_equals_loop(problem):
    mean, cov, x, sigma = problem
    den = GaussianDenoiser(mean, cov)
    batched = den(x, sigma)
    looped = np.stack([den(x[i], float(sigma[i])) for i in range(len(x))])
    # Same arithmetic, possibly different matmul blocking: a few ulps.
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-6)
    # sigma [4, 1] broadcast over x [4, 8, d].
    x3 = x.reshape(4, 8, D)
    s3 = sigma[::8].reshape(4, 1)
    out3 = den(x3, s3)
    ref3 = np.stack([den(x3[i], float(s3[i, 0])) for i in range(4)])
    np.testing.assert_allclose(out3, ref3, rtol=0, atol=1e-6)


def test_mmse_closed_form_shape_and_values(problem):
    mean, cov, _, _ = problem
    den = GaussianDenoiser(mean, cov)
    sig = np.array([[0.1, 1.0], [3.0, 30.0]])
    lam = np.linalg.eigvalsh(np.float64(cov))
    ref = np.mean(lam * sig[..., None] ** 2 / (lam + sig[..., None] ** 2), axis=-1)
    out = den.mmse(sig)
    assert out.shape == sig.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    assert den.mmse(0.5).shape == ()


def _psd_factor(cov):
    """``L [d, d]`` with ``L L^T = cov``, built in float64 NumPy from a clamped eigh.

    Sampling as ``mean + z @ L^T`` never takes a square root of a float32 eigenvalue that
    rounding made negative (``jax.random.multivariate_normal(method="eigh")`` on a singular
    float32 covariance can, and then draws all-NaN data on some CPUs).
    """
    lam, vec = np.linalg.eigh(np.float64(cov))
    return vec * np.sqrt(np.maximum(lam, 0.0))


@pytest.mark.parametrize("singular", [False, True])
def test_monte_carlo_loss_matches_mmse(key, singular):
    if singular:
        cov, _ = _hadamard_cov([0.0, 0.25, 1.0, 4.0])
        mean = np.array([0.5, -1.0, 2.0, 0.0])
    else:
        rng = np.random.default_rng(2)
        cov, mean = _random_cov(rng, 4), rng.normal(size=4)
    factor = _psd_factor(cov)
    np.testing.assert_allclose(factor @ factor.T, cov, rtol=0, atol=1e-12)
    den = GaussianDenoiser(mean, cov)
    n = 100_000  # per sigma; SE of the mean loss from the per-example losses
    k_x, k_eps = jax.random.split(key)
    z = jax.random.normal(k_x, (n, 4))
    x0 = jnp.asarray(mean, jnp.float32)[None, :] + z @ jnp.asarray(factor.T, jnp.float32)
    assert bool(jnp.all(jnp.isfinite(x0)))
    for i, s in enumerate([0.05, 0.3, 1.0, 3.0]):
        eps = jax.random.normal(jax.random.fold_in(k_eps, i), x0.shape)
        per_example = np.asarray(jnp.mean(jnp.square(den(x0 + s * eps, s) - x0), axis=-1),
                                 dtype=np.float64)
        mc, se = per_example.mean(), per_example.std(ddof=1) / np.sqrt(n)
        assert abs(mc - float(den.mmse(s))) < 3 * se, (s, mc, float(den.mmse(s)), se)


def test_from_data_recovers_ml_estimates():
    rng = np.random.default_rng(3)
    true_cov = _random_cov(rng, 5)
    x = np.float32(rng.multivariate_normal(np.arange(5.0), true_cov, size=4000))
    den = GaussianDenoiser.from_data(x)
    x64 = np.float64(x)
    mean_ref = x64.mean(0)
    cov_ref = np.cov(x64.T, bias=True)  # maximum likelihood: divides by n
    # Sums of 4000 float32 values: relative error ~ sqrt(n) eps32 ~ 1e-5.
    np.testing.assert_allclose(den.mean, mean_ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(den.cov, cov_ref, rtol=0, atol=2e-5)
    # ... and the estimates are within sampling error of the truth (SE ~ 1/sqrt(n) = 0.016).
    np.testing.assert_allclose(den.mean, np.arange(5.0), atol=0.1)
    np.testing.assert_allclose(den.cov, true_cov, atol=0.15)
    a = 0.3
    shrunk = GaussianDenoiser.from_data(x, shrinkage=a)
    target = (1 - a) * cov_ref + a * np.trace(cov_ref) / 5 * np.eye(5)
    np.testing.assert_allclose(shrunk.cov, target, rtol=0, atol=2e-5)


def test_from_data_on_subspace_is_psd_and_matches_reference():
    # Points on a 2-dim affine subspace of R^5: rounding gives eigenvalues of either sign
    # ~1e-7 that must be accepted (the negative ones clamped to 0).
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(5, 2)))[0]
    x = np.float32(rng.normal(size=(500, 2)) @ basis.T + 1.0)
    den = GaussianDenoiser.from_data(x)
    assert np.all(np.asarray(den.eigvals) >= 0)
    assert np.sum(np.asarray(den.eigvals) > 1e-4) == 2
    q = np.float32(rng.normal(size=(8, 5)))
    sigma = np.float32([0.3, 1.0, 3.0, 10.0] * 2)
    ref = _wiener_ref(den.mean, den.cov, q, sigma)
    # sigma >= 0.3 (s^2 >= 0.09 >> rounding eigenvalues): same f32 budget as above.
    np.testing.assert_allclose(den(q, sigma), ref, atol=1e-5)


def test_tiny_negative_eigenvalue_clamped():
    # -1e-6 is within the float32 rounding tolerance (1e3 * eps32 * lambda_max = 1.2e-4).
    den = GaussianDenoiser(np.zeros(3), np.float32(np.diag([1.0, 0.0, -1e-6])))
    assert float(jnp.min(den.eigvals)) == 0.0
    assert np.all(np.isfinite(np.asarray(den(np.ones((2, 3)), 1e-3))))


def test_jit_vmap_grad_and_no_retrace(problem):
    mean, cov, x, sigma = problem
    den = GaussianDenoiser(mean, cov)
    traces = []

    @jax.jit
    def apply(d, xs, ss):
        traces.append(None)
        return d(xs, ss)

    np.testing.assert_allclose(apply(den, x, sigma), den(x, sigma), rtol=0, atol=1e-6)
    other = GaussianDenoiser(mean + 1.0, 2.0 * cov)
    np.testing.assert_allclose(apply(other, x, sigma), other(x, sigma), rtol=0, atol=1e-6)
    assert len(traces) == 1  # a new denoiser of the same shapes does not retrace

    vm = jax.jit(jax.vmap(lambda xi, si: den(xi, si)))(x, sigma)
    np.testing.assert_allclose(vm, den(x, sigma), rtol=0, atol=1e-6)

    # Jacobian dD/dx = C (C + s^2 I)^{-1}.
    s = 0.7
    jac = jax.jit(jax.jacfwd(lambda xi: den(xi, s)))(x[0])
    ref = np.float64(cov) @ np.linalg.inv(np.float64(cov) + s**2 * np.eye(D))
    np.testing.assert_allclose(jac, ref, rtol=0, atol=1e-5)

    g = jax.jit(jax.grad(lambda d: jnp.sum(d(x, sigma))))(den)
    assert isinstance(g, GaussianDenoiser)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(g))
    # d/dmean sum_i D(x_i) = sum_i (I - W_i)^T 1: finite-difference free check via the reference.
    w = [np.float64(cov) @ np.linalg.inv(np.float64(cov) + si**2 * np.eye(D)) for si in sigma]
    ref_gmean = sum((np.eye(D) - wi).T @ np.ones(D) for wi in w)
    np.testing.assert_allclose(g.mean, ref_gmean, rtol=1e-4, atol=1e-4)


def test_eager_calls_compile_once_per_shape(problem):
    mean, cov, x, sigma = problem
    den = GaussianDenoiser(mean, cov)
    den(x, sigma), den.log_prob(x, sigma), den.mmse(sigma)
    programs = [GaussianDenoiser._denoise, GaussianDenoiser._log_prob, GaussianDenoiser._mmse]
    before = [p._cached._cache_size() for p in programs]  # equinox.filter_jit's jax.jit
    for other, s in [(GaussianDenoiser(mean + 1.0, 2.0 * cov), 0.5 * sigma), (den, 3.0)]:
        other(x, s), other.log_prob(x, s), other.mmse(np.broadcast_to(s, sigma.shape))
    assert [p._cached._cache_size() for p in programs] == before


def test_construction_inside_jit_matches_eager(problem):
    mean, cov, x, sigma = problem
    traced = jax.jit(lambda m, c, xs, ss: GaussianDenoiser(m, c)(xs, ss))(mean, cov, x, sigma)
    # Traced construction uses float32 jnp.linalg.eigh (vs float64 on the host): same budget.
    np.testing.assert_allclose(traced, GaussianDenoiser(mean, cov)(x, sigma), atol=1e-5)


def _bad_cases():
    m, c = np.zeros(3), np.eye(3)
    den = GaussianDenoiser(m, c)
    x = np.zeros((2, 3))
    return [
        ("mean", lambda: GaussianDenoiser(np.zeros((3, 1)), c)),
        ("mean", lambda: GaussianDenoiser(np.array([0.0, np.nan, 0.0]), c)),
        ("cov", lambda: GaussianDenoiser(m, np.eye(4))),
        ("cov", lambda: GaussianDenoiser(m, np.ones(3))),
        ("cov", lambda: GaussianDenoiser(m, np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 1.0]]))),
        ("cov", lambda: GaussianDenoiser(m, np.diag([1.0, 1.0, -0.01]))),
        ("cov", lambda: GaussianDenoiser(m, np.diag([1.0, np.inf, 1.0]))),
        ("x", lambda: den(np.zeros((2, 4)), 1.0)),
        ("x", lambda: den(np.float32(1.0), 1.0)),
        ("x", lambda: den.log_prob(np.zeros((2, 2)), 1.0)),
        ("sigma", lambda: den(x, 0.0)),
        ("sigma", lambda: den(x, -1.0)),
        ("sigma", lambda: den(x, np.nan)),
        ("sigma", lambda: den(x, np.ones(3))),
        ("sigma", lambda: den(x, np.ones((2, 2)))),
        ("sigma", lambda: den.mmse(np.array([1.0, -1.0]))),
        ("x", lambda: GaussianDenoiser.from_data(np.zeros(3))),
        ("shrinkage", lambda: GaussianDenoiser.from_data(x, shrinkage=1.5)),
    ]


@pytest.mark.parametrize("name,fn", _bad_cases())
def test_bad_inputs_raise_naming_argument(name, fn):
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        fn()


@pytest.mark.x64
def test_float64_reference_tight(problem):
    # In float64 the same computation agrees with np.linalg.solve to ~1e-12 (eps64 ~ 2e-16).
    mean, cov, x, sigma = (np.float64(a) for a in problem)
    den = GaussianDenoiser(mean, cov)
    assert den.eigvecs.dtype == jnp.float64
    np.testing.assert_allclose(den(x, sigma), _wiener_ref(mean, cov, x, sigma), atol=1e-10)
    np.testing.assert_allclose(den.log_prob(x, sigma), _log_prob_ref(mean, cov, x, sigma),
                               rtol=1e-10)
