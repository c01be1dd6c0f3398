"""GMMDenoiser: brute-force float64 NumPy reference, covariance forms, Tweedie, limits.

float32 tolerances: each component's Wiener filter is well conditioned (shrinkage factors in
[0, 1]), so its error is a few d * eps32 * |x - mu_k| (eps32 = 1.2e-7); the responsibilities
are a softmax of log-densities L_k whose float32 error is ~eps32 * |L_k|, moving D by at most
that times the spread of the component outputs. With d = 5, |x| <= ~10 and |L_k| <= ~1e3 the
total stays below 1e-5 absolute (checked margins are >= 5x).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap.denoisers import GaussianDenoiser, GMMDenoiser, score

K, D = 3, 5


def _logsumexp(a):
    m = np.max(a)
    return m + np.log(np.sum(np.exp(a - m)))


def _gmm_ref(weights, means, covs, x, sigma):
    """Float64 brute force with full covariances [K, d, d]: (D [M, d], resp [M, K], logp [M])."""
    w = np.float64(weights) / np.sum(np.float64(weights))
    means, covs = np.float64(means), np.float64(covs)
    x = np.float64(x)
    sigma = np.broadcast_to(np.float64(sigma), x.shape[:1])
    d = means.shape[1]
    outs, resps, lps = [], [], []
    for xi, s in zip(x, sigma, strict=True):
        logits, comps = [], []
        for wk, mk, ck in zip(w, means, covs, strict=True):
            cs = ck + s**2 * np.eye(d)
            r = xi - mk
            _, logdet = np.linalg.slogdet(cs)
            logits.append(np.log(wk) - 0.5 * (r @ np.linalg.solve(cs, r) + logdet
                                               + d * np.log(2 * np.pi)))
            comps.append(mk + ck @ np.linalg.solve(cs, r))
        logits = np.array(logits)
        lse = _logsumexp(logits)
        resp = np.exp(logits - lse)
        outs.append(resp @ np.array(comps))
        resps.append(resp)
        lps.append(lse)
    return np.stack(outs), np.stack(resps), np.array(lps)


def _empirical_ref(weights, points, x, sigma):
    """Optimal denoiser of sum_i w_i delta(y_i) in float64: softmax(-|x - y|^2 / 2s^2) y."""
    points, x = np.float64(points), np.float64(x)
    sigma = np.broadcast_to(np.float64(sigma), x.shape[:1])
    out = []
    for xi, s in zip(x, sigma, strict=True):
        logits = np.log(np.float64(weights)) - np.sum((xi - points) ** 2, axis=-1) / (2 * s**2)
        p = np.exp(logits - _logsumexp(logits))
        out.append(p @ points)
    return np.stack(out)


def _make_problem():
    """Float64 weights, means, covs [K, d, d] (one singular), queries and per-query sigmas."""
    rng = np.random.default_rng(0)
    weights = np.array([0.5, 0.3, 0.2])
    means = 2.0 * rng.normal(size=(K, D))
    covs = []
    for k in range(K):
        a = rng.normal(size=(D, D if k < 2 else 2))  # component 2 is singular (rank 2)
        covs.append(a @ a.T / a.shape[1] + (0.05 * np.eye(D) if k < 2 else 0.0))
    covs = np.stack(covs)
    # Queries near each component and in between; per-sample sigmas over 4 decades.
    x = means[rng.integers(0, K, 40)] + 1.5 * rng.normal(size=(40, D))
    sigma = np.geomspace(0.05, 50.0, 40)
    rng.shuffle(sigma)
    return weights, means, covs, x, sigma


@pytest.fixture
def problem():
    # The float32 copies are what the denoiser sees; references use them in float64.
    return tuple(np.float32(a) for a in _make_problem())


def test_full_matches_float64_reference(problem):
    weights, means, covs, x, sigma = problem
    den = GMMDenoiser(weights, means, covs)
    assert den.cov_type == "full" and den.eigvecs.shape == (K, D, D)
    ref_d, ref_r, ref_lp = _gmm_ref(weights, means, covs, x, sigma)
    np.testing.assert_allclose(den(x, sigma), ref_d, rtol=0, atol=1e-5)
    np.testing.assert_allclose(den.responsibilities(x, sigma), ref_r, rtol=0, atol=1e-5)
    # log p: relative eps32-level error of terms up to ~1e3.
    np.testing.assert_allclose(den.log_prob(x, sigma), ref_lp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(den.covs, covs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(den.weights, weights / weights.sum(), rtol=1e-6)


def test_shapes_and_batch_broadcast(problem):
    weights, means, covs, x, sigma = problem
    den = GMMDenoiser(weights, means, covs)
    x3 = x.reshape(4, 10, D)
    s3 = sigma[::10].reshape(4, 1)
    assert den(x3, s3).shape == (4, 10, D)
    assert den.responsibilities(x3, s3).shape == (4, 10, K)
    assert den.log_prob(x3, s3).shape == (4, 10)
    assert den(x[0], 1.0).shape == (D,) and den.log_prob(x[0], 1.0).shape == ()
    looped = np.stack([den(x3[i], float(s3[i, 0])) for i in range(4)])
    # Same arithmetic on differently shaped batches: a few ulps.
    np.testing.assert_allclose(den(x3, s3), looped, rtol=0, atol=1e-6)
    resp = np.asarray(den.responsibilities(x, sigma))
    np.testing.assert_allclose(np.sum(resp, -1), 1.0, atol=1e-6)


def test_cov_forms_agree(problem):
    weights, means, _, x, sigma = problem
    var = np.float32(np.random.default_rng(5).uniform(0.1, 2.0, size=(K, D)))
    var[1] = 0.0  # a diagonal component with zero variance: a point mass
    full = GMMDenoiser(weights, means, np.stack([np.diag(v) for v in var]))
    diag = GMMDenoiser(weights, means, var)
    assert diag.cov_type == "diag" and diag.eigvecs is None
    for fn in ("__call__", "responsibilities", "log_prob"):
        a, b = getattr(full, fn)(x, sigma), getattr(diag, fn)(x, sigma)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=fn)
    ref_d, ref_r, _ = _gmm_ref(weights, means, np.stack([np.diag(v) for v in var]), x, sigma)
    np.testing.assert_allclose(diag(x, sigma), ref_d, rtol=0, atol=1e-5)

    iso_var = np.float32([0.5, 0.0, 2.0])
    iso = GMMDenoiser(weights, means, iso_var)
    assert iso.cov_type == "iso"
    as_diag = GMMDenoiser(weights, means, np.repeat(iso_var[:, None], D, axis=1))
    as_full = GMMDenoiser(weights, means, iso_var[:, None, None] * np.eye(D, dtype=np.float32))
    for fn in ("__call__", "responsibilities", "log_prob"):
        a = getattr(iso, fn)(x, sigma)
        for other in (as_diag, as_full):
            np.testing.assert_allclose(a, getattr(other, fn)(x, sigma), rtol=1e-5, atol=1e-5,
                                       err_msg=fn)


def test_single_component_equals_gaussian(problem):
    _, means, covs, x, sigma = problem
    for c in (covs[0], covs[2]):  # full rank and singular
        gmm = GMMDenoiser(np.ones(1), means[:1], c[None])
        gauss = GaussianDenoiser(means[0], c)
        np.testing.assert_allclose(gmm(x, sigma), gauss(x, sigma), rtol=0, atol=1e-5)
        np.testing.assert_allclose(gmm.log_prob(x, sigma), gauss.log_prob(x, sigma), rtol=1e-6)
        np.testing.assert_allclose(gmm.responsibilities(x, sigma), 1.0)


def test_tweedie_score_is_grad_log_prob(problem):
    weights, means, covs, x, _ = problem
    sigma = np.float32(np.geomspace(0.3, 10.0, len(x)))
    for c in (covs, np.float32(np.abs(covs[:, 0, :]) + 0.1), np.float32([0.2, 1.0, 0.0])):
        den = GMMDenoiser(weights, means, c)
        grad = jax.jit(jax.vmap(jax.grad(lambda xi, si, den=den: den.log_prob(xi, si))))(x, sigma)
        s = np.asarray(score(den, x, sigma))
        # (D - x) / sigma^2 cancels D against x: error ~ eps32 |x| / sigma^2 <= 1e-5 for
        # sigma >= 0.3; relative 1e-4 of the score (|score| ~ |x - mu| / var ~ 1-50).
        err = np.linalg.norm(s - np.asarray(grad), axis=-1)
        assert np.all(err <= 1e-4 * np.linalg.norm(grad, axis=-1) + 1e-5), err.max()


def test_large_sigma_gives_mixture_mean(problem):
    weights, means, covs, x, _ = problem
    mix_mean = (weights / weights.sum()) @ np.float64(means)
    for c in (covs, np.float32([0.2, 1.0, 0.0])):
        den = GMMDenoiser(weights, means, c)
        np.testing.assert_allclose(den.mean, mix_mean, atol=1e-6)
        # sigma = 1e4: responsibilities w_k + O(|x| |mu| / sigma^2), shrinkage O(lambda / sigma^2).
        np.testing.assert_allclose(den(x, 1e4), np.broadcast_to(mix_mean, x.shape), atol=1e-5)


@pytest.mark.parametrize("weights", [np.ones(K), np.array([0.7, 0.2, 0.1])])
def test_vanishing_covariances_give_empirical_denoiser(problem, weights):
    _, means, _, x, _ = problem
    weights = np.float32(weights)
    # sigma in [0.2, 5]: logits -|x - y|^2 / 2s^2 reach ~150, so float32 rounding moves a
    # logit by <~ eps32 * 150 = 2e-5 and D by at most that * p(1 - p) * |y_i - y_j| <~ 2e-5
    # (observed ~1e-6: the exact residual x - y, never |x|^2 - 2 x.y + |y|^2, is used).
    sigma = np.float32(np.geomspace(0.2, 5.0, len(x)))
    ref = _empirical_ref(weights, means, x, sigma)
    atol = 2e-5
    for c in (np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D)), 1e-12 * np.ones(K),
              1e-12 * np.eye(D)[None].repeat(K, 0)):
        den = GMMDenoiser(weights, means, np.float32(c))
        err = np.abs(np.asarray(den(x, sigma)) - ref)
        assert np.all(err <= atol), (np.shape(c), float(err.max()))


def test_tiny_sigma_far_query_is_stable(problem):
    _, means, _, _, _ = problem
    den = GMMDenoiser(np.ones(K), means, np.zeros(K))
    # Logits ~ -|x - y|^2 / 2s^2 ~ -1e8: a naive exp underflows to 0/0; log-sum-exp picks
    # the nearest point exactly.
    far = np.float32(means[1] + np.array([30.0, 0, 0, 0, 0]))
    out = np.asarray(den(far, 1e-3))
    nearest = means[np.argmin(np.sum((means - far) ** 2, -1))]
    np.testing.assert_array_equal(out, nearest)
    assert np.all(np.isfinite(np.asarray(den.log_prob(far, 1e-3))))


def _max_intermediate_size(jaxpr):
    size = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            size = max(size, int(np.prod(v.aval.shape)))
        for p in eqn.params.values():
            inner = getattr(p, "jaxpr", p)
            if hasattr(inner, "eqns"):
                size = max(size, _max_intermediate_size(inner))
    return size


def test_memory_is_at_most_mkd(problem):
    weights, means, covs, _, _ = problem
    m, k, d = 64, 4, 16
    rng = np.random.default_rng(6)
    a = rng.normal(size=(k, d, d))
    den = GMMDenoiser(np.ones(k), rng.normal(size=(k, d)), np.float32(a @ a.swapaxes(1, 2)))
    x = jnp.zeros((m, d))
    for fn in (lambda dn, xs: dn(xs, 1.0), lambda dn, xs: dn.log_prob(xs, 1.0)):
        jaxpr = jax.make_jaxpr(fn)(den, x).jaxpr
        assert _max_intermediate_size(jaxpr) <= m * k * d  # never [M, K, d, d]


def test_jit_vmap_grad_and_no_retrace(problem):
    weights, means, covs, x, sigma = problem
    den = GMMDenoiser(weights, means, covs)
    traces = []

    @jax.jit
    def apply(dn, xs, ss):
        traces.append(None)
        return dn(xs, ss)

    np.testing.assert_allclose(apply(den, x, sigma), den(x, sigma), rtol=0, atol=1e-5)
    other = GMMDenoiser(2.0 * weights, means + 1.0, 2.0 * covs)
    np.testing.assert_allclose(apply(other, x, sigma), other(x, sigma), rtol=0, atol=1e-5)
    assert len(traces) == 1

    # Compiled vs op-by-op: XLA may reorder the reductions; logits reach ~1e3 at sigma = 0.05,
    # so eps32 * 1e3 ~ 1e-4 in a logit can move D by ~1e-5 (see the module docstring).
    vm = jax.jit(jax.vmap(lambda xi, si: den(xi, si)))(x, sigma)
    np.testing.assert_allclose(vm, den(x, sigma), rtol=0, atol=1e-5)

    g = jax.jit(jax.grad(lambda dn: jnp.sum(dn(x, sigma))))(den)
    assert isinstance(g, GMMDenoiser) and g.cov_type == "full"
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(g))

    iso = GMMDenoiser(weights, means, np.float32([0.2, 1.0, 0.0]))
    assert jax.tree_util.tree_structure(iso) != jax.tree_util.tree_structure(den)
    np.testing.assert_allclose(jax.jit(lambda dn: dn(x, sigma))(iso), iso(x, sigma), atol=1e-5)

    # Construction inside jit uses float32 jnp.linalg.eigh (float64 on the host otherwise):
    # eigenvalue errors ~eps32 * |C| ~ 1e-6 change the shrinkage of the singular component's
    # null directions by ~1e-6 / sigma^2 = 4e-4 at sigma = 0.05, times |z| <~ 0.1 there.
    traced = jax.jit(lambda w, m, c: GMMDenoiser(w, m, c)(x, sigma))(weights, means, covs)
    np.testing.assert_allclose(traced, den(x, sigma), atol=1e-4)


def test_eager_calls_compile_once_per_shape(problem):
    weights, means, covs, x, sigma = problem
    den = GMMDenoiser(weights, means, covs)
    den(x, sigma), den.log_prob(x, sigma), den.responsibilities(x, sigma)
    programs = [GMMDenoiser._denoise, GMMDenoiser._log_prob, GMMDenoiser._responsibilities]
    before = [p._cached._cache_size() for p in programs]  # equinox.filter_jit's jax.jit
    for other, s in [(GMMDenoiser(2.0 * weights, means + 1.0, 2.0 * covs), 0.5 * sigma),
                     (den, 3.0)]:
        other(x, s), other.log_prob(x, s), other.responsibilities(x, s)
    assert [p._cached._cache_size() for p in programs] == before


def test_posterior_is_a_deprecated_alias_of_responsibilities(problem):
    weights, means, covs, x, sigma = problem
    den = GMMDenoiser(weights, means, covs)
    with pytest.warns(DeprecationWarning, match="responsibilities"):
        old = den.posterior(x, sigma)
    np.testing.assert_array_equal(old, den.responsibilities(x, sigma))


def _bad_cases():
    w, m, c = np.ones(2), np.zeros((2, 3)), np.stack([np.eye(3)] * 2)
    den = GMMDenoiser(w, m, c)
    x = np.zeros((4, 3))
    asym = c.copy()
    asym[1, 0, 1] = 0.5
    nonpsd = c.copy()
    nonpsd[0, 2, 2] = -0.1
    return [
        ("weights", lambda: GMMDenoiser(np.ones((2, 1)), m, c)),
        ("weights", lambda: GMMDenoiser(np.array([1.0, -1.0]), m, c)),
        ("weights", lambda: GMMDenoiser(np.array([1.0, 0.0]), m, c)),
        ("weights", lambda: GMMDenoiser(np.array([1.0, np.nan]), m, c)),
        ("means", lambda: GMMDenoiser(w, np.zeros(3), c)),
        ("means", lambda: GMMDenoiser(w, np.zeros((3, 3)), c)),
        ("means", lambda: GMMDenoiser(w, np.array([[0, 0, np.inf], [0, 0, 0.0]]), c)),
        ("covs", lambda: GMMDenoiser(w, m, np.stack([np.eye(4)] * 2))),
        ("covs", lambda: GMMDenoiser(w, m, np.stack([np.eye(3)] * 3))),
        ("covs", lambda: GMMDenoiser(w, m, np.ones((2, 4)))),
        ("covs", lambda: GMMDenoiser(w, m, np.ones(3))),
        ("covs", lambda: GMMDenoiser(w, m, np.ones((2, 3, 3, 1)))),
        ("covs", lambda: GMMDenoiser(w, m, np.array([1.0, -1.0]))),
        ("covs", lambda: GMMDenoiser(w, m, np.array([[1.0, 1, 1], [1, -1e-3, 1]]))),
        ("covs", lambda: GMMDenoiser(w, m, asym)),
        ("covs", lambda: GMMDenoiser(w, m, nonpsd)),
        ("covs", lambda: GMMDenoiser(w, m, np.array([1.0, np.nan]))),
        ("x", lambda: den(np.zeros((4, 2)), 1.0)),
        ("x", lambda: den.responsibilities(np.zeros((4, 4)), 1.0)),
        ("x", lambda: den.log_prob(np.zeros(()), 1.0)),
        ("sigma", lambda: den(x, 0.0)),
        ("sigma", lambda: den(x, -0.5)),
        ("sigma", lambda: den(x, np.nan)),
        ("sigma", lambda: den(x, np.ones(3))),
        ("sigma", lambda: den.responsibilities(x, np.ones((4, 2)))),
        ("sigma", lambda: den.log_prob(x, np.array([1.0, 1, 1, 0]))),
    ]


@pytest.mark.parametrize("name,fn", _bad_cases())
def test_bad_inputs_raise_naming_argument(name, fn):
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        fn()


def test_error_message_names_shapes():
    with pytest.raises(ValueError, match=r"means: expected shape \[K, d\] with K = 2 .* \[3, 3\]"):
        GMMDenoiser(np.ones(2), np.zeros((3, 3)), np.ones(2))
    with pytest.raises(ValueError, match=r"covs: .*component 1"):
        GMMDenoiser(np.ones(2), np.zeros((2, 2)), np.array([np.eye(2), -np.eye(2)]))


@pytest.mark.x64
def test_float64_reference_tight():
    # In float64 the eigendecomposition route agrees with np.linalg.solve to ~1e-12.
    weights, means, covs, x, sigma = _make_problem()
    den = GMMDenoiser(weights, means, covs)
    assert den.eigvecs.dtype == jnp.float64
    ref_d, ref_r, ref_lp = _gmm_ref(weights, means, covs, x, sigma)
    np.testing.assert_allclose(den(x, sigma), ref_d, atol=1e-10)
    np.testing.assert_allclose(den.responsibilities(x, sigma), ref_r, atol=1e-10)
    np.testing.assert_allclose(den.log_prob(x, sigma), ref_lp, rtol=1e-10)
    emp = GMMDenoiser(weights, means, np.zeros(K))
    np.testing.assert_allclose(emp(x, sigma), _empirical_ref(weights, means, x, sigma),
                               atol=1e-10)
