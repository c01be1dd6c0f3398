"""Conditional closed forms and guidance against float64 NumPy references and their
unconditional counterparts on each condition's points.

Sizes are small and the denoisers are shared between tests (module-level objects, fixed
query shapes), so few distinct programs are compiled.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap import losses, sampling
from jaxgap._protocol import takes_cond
from jaxgap.denoisers import (
    NULL,
    ConditionalDenoiser,
    ConditionalEmpiricalDenoiser,
    ConditionalGaussianDenoiser,
    EmpiricalDenoiser,
    GaussianDenoiser,
    guided,
)

RUNTIME = (RuntimeError, ValueError)  # an in-graph check (equinox.error_if) at run time
ABSENT = "cond: expected condition ids carried by the training points"


def reference(x, y, sigma):
    """Float64 brute force: squared distances in extended precision, relative to each
    query's smallest one, then a softmax-weighted mean (as in test_empirical.py)."""
    x = np.asarray(x, np.longdouble)
    y = np.asarray(y, np.longdouble)
    sigma = np.broadcast_to(np.asarray(sigma, np.float64), x.shape[:-1])
    d2 = ((x[..., None, :] - y) ** 2).sum(-1)
    d2 = np.asarray(d2 - d2.min(-1, keepdims=True), np.float64)
    logits = -d2 / (2 * sigma[..., None] ** 2)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return w @ np.asarray(y, np.float64), w


def conditional_reference(x, y, labels, sigma, cond):
    """Reference of the conditional denoiser: each query against its condition's points."""
    out = np.zeros(x.shape, np.float64)
    sigma = np.broadcast_to(sigma, x.shape[:-1])
    for c in np.unique(cond):
        sel = cond == c
        pts = y if c == NULL else y[labels == c]
        out[sel] = reference(x[sel], pts, sigma[sel])[0]
    return out


def max_rel_err(out, ref):
    out = np.asarray(out, np.float64)
    return float(np.max(np.linalg.norm(out - ref, axis=-1) / np.linalg.norm(ref, axis=-1)))


# --- ConditionalEmpiricalDenoiser ----------------------------------------------------------

C, N_PER, DIM = 3, 24, 6
RNG = np.random.default_rng(0)
LABELS = RNG.permutation(np.repeat(np.arange(C), N_PER))  # interleaved over the chunks
TRAIN = (RNG.standard_normal((C * N_PER, DIM)) + 2.0 * np.eye(C, DIM)[LABELS]).astype(np.float32)
DEN = ConditionalEmpiricalDenoiser(TRAIN, LABELS, chunk_size=16)
# 32 queries, conditions -1, 0, 1, 2 mixed in one batch, per-example sigma over 1e-3..1e2
COND = np.tile(np.arange(-1, C), 8)
SIG = np.exp(RNG.uniform(np.log(1e-3), np.log(1e2), 32)).astype(np.float32)
X = (TRAIN[RNG.integers(0, C * N_PER, 32)] + SIG[:, None] * RNG.standard_normal((32, DIM))
     ).astype(np.float32)


def test_equals_empirical_denoiser_of_each_condition_and_reference():
    out = np.asarray(DEN(X, SIG, COND))
    assert isinstance(DEN, ConditionalDenoiser) and takes_cond(DEN) is True
    for c in range(-1, C):  # equal N_c: one program serves every condition
        sel = COND == c
        den = EmpiricalDenoiser(TRAIN if c == NULL else TRAIN[LABELS == c], chunk_size=16)
        expected = np.asarray(den(X[sel], SIG[sel]))
        # float32 rounding: the kernels differ only in the centre of the bulk logits
        np.testing.assert_allclose(out[sel], expected, rtol=2e-6, atol=2e-6)
    assert max_rel_err(out, conditional_reference(X, TRAIN, LABELS, SIG, COND)) < 1e-5
    # the condition matters: NULL and a condition differ at small sigma
    assert not np.allclose(out[COND == 0], np.asarray(DEN(X[COND == 0], SIG[COND == 0], NULL)))


def tie_problem(rng, d, sigma, n_per=32, m=48):
    """Queries nearly halfway between two points of their condition (logit differences
    U(-3, 3) at ``sigma``), plus a "decoy" point of another condition next to every
    conditional query: the decoy is the nearest point overall, so a mask that missed the
    exact candidates would return it. NULL queries (one in four) see every point."""
    y = rng.uniform(-1, 1, (C * n_per, d))
    labels = np.repeat(np.arange(C), n_per)
    cond = np.tile(np.arange(-1, C), m // 4)
    x = np.zeros((m, d))
    decoys, decoy_labels = [], []
    for q, c in enumerate(cond):
        pool = np.flatnonzero(labels == (c if c != NULL else q % C))
        i, j = rng.choice(pool, 2, replace=False)
        v = y[j] - y[i]
        eps = 0.002 * rng.standard_normal(d)
        eps -= (eps @ v) / (v @ v) * v
        eps += rng.uniform(-3, 3) * sigma**2 / (v @ v) * v
        x[q] = 0.5 * (y[i] + y[j]) + eps
        if c != NULL:
            decoys.append(x[q] + 0.05 * rng.standard_normal(d) / np.sqrt(d))
            decoy_labels.append((c + 1) % C)
    y = np.concatenate([y, decoys]).astype(np.float32)
    labels = np.concatenate([labels, decoy_labels])
    perm = rng.permutation(len(labels))
    return x.astype(np.float32), y[perm], labels[perm], cond


@pytest.mark.parametrize("sigma", [0.005, 0.02, 0.1])
def test_near_ties_within_a_condition(sigma):
    x, y, labels, cond = tie_problem(np.random.default_rng(1), 1024, sigma)
    ref = conditional_reference(x, y, labels, sigma, cond)
    den = ConditionalEmpiricalDenoiser(y, labels, chunk_size=32)
    out = np.asarray(den(x, sigma, cond))
    assert max_rel_err(out, ref) < 1e-4  # the float32 target
    # the test has teeth: the plain matmul formula is visibly off at the smaller sigmas
    if sigma <= 0.02:
        plain = ConditionalEmpiricalDenoiser(y, labels, chunk_size=32, num_exact=0)
        assert max_rel_err(plain(x, sigma, cond), ref) > 1e-3
    # and the decoys (the nearest points overall) are masked out of the exact candidates
    stats = den.posterior_stats(x, sigma, cond)
    nearest = np.asarray(stats.nearest)
    assert np.all(labels[nearest][cond != NULL] == cond[cond != NULL])


def test_condition_only_in_the_last_chunk_and_query_blocks():
    """Condition 1's points sit in the last chunk (the first chunks see none of them), and
    11 queries in blocks of 4 exercise the padded query blocks."""
    rng = np.random.default_rng(3)
    y = rng.standard_normal((40, 4)).astype(np.float32)
    labels = np.repeat([0, 1], [32, 8])
    cond = np.array([1, 0, NULL, 1, 1, 0, 1, NULL, 1, 1, 0])
    x = (y[rng.integers(0, 40, 11)] + 0.3 * rng.standard_normal((11, 4))).astype(np.float32)
    ref = conditional_reference(x, y, labels, 0.3, cond)
    den = ConditionalEmpiricalDenoiser(y, labels, chunk_size=8, query_block=4)
    assert max_rel_err(den(x, 0.3, cond), ref) < 1e-5
    assert np.all(np.isfinite(np.asarray(den(x, 1e-3, cond))))


def test_posterior_stats_weights_and_effective_count():
    sel = slice(0, 8)
    x, sig, cond = X[sel], SIG[sel], COND[sel]
    w = np.asarray(DEN.weights(x, sig, cond))
    assert w.shape == (8, C * N_PER)
    ref_w = np.zeros(w.shape)
    for q in range(8):
        pts = np.ones(C * N_PER, bool) if cond[q] == NULL else LABELS == cond[q]
        ref_w[q, pts] = reference(x[q], TRAIN[pts], sig[q])[1]
    np.testing.assert_allclose(w, ref_w, atol=2e-6)
    assert np.all(w[(cond[:, None] != NULL) & (LABELS[None, :] != cond[:, None])] == 0)
    stats = DEN.posterior_stats(x, sig, cond)
    np.testing.assert_allclose(stats.mean, DEN(x, sig, cond), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.max_weight, ref_w.max(1), rtol=1e-4, atol=1e-7)
    count = np.asarray(DEN.effective_count(x, sig, cond))
    np.testing.assert_allclose(count, 1 / (ref_w**2).sum(1), rtol=1e-4)
    assert np.all(count <= np.where(cond == NULL, C * N_PER, N_PER) + 1e-3)
    np.testing.assert_array_equal(DEN.counts, [N_PER] * C)


def test_jit_pytree_and_in_graph_condition_check():
    leaves, treedef = jax.tree.flatten(DEN)
    rebuilt = jax.tree.unflatten(treedef, leaves)
    eager = DEN(X, SIG, COND)
    np.testing.assert_array_equal(rebuilt(X, SIG, COND), eager)
    jitted = jax.jit(lambda D, x, s, c: D(x, s, c))
    np.testing.assert_allclose(jitted(DEN, X, SIG, jnp.asarray(COND)), eager, rtol=1e-6,
                               atol=1e-6)
    bad = jnp.asarray(np.where(COND == 1, C, COND))  # an id no training point carries
    with pytest.raises(RUNTIME, match=ABSENT):
        jax.block_until_ready(jitted(DEN, X, SIG, bad))
    with pytest.raises(RUNTIME, match=ABSENT):  # a jax.Array is checked in-graph too
        jax.block_until_ready(DEN(X, SIG, bad))


@pytest.mark.x64
@pytest.mark.parametrize("sigma", [0.001, 0.01, 0.1, 1.0, 100.0])
def test_x64_brute_force_and_near_ties(sigma):
    x, y, labels, cond = tie_problem(np.random.default_rng(6), 1024, sigma)
    x, y = x.astype(np.float64), y.astype(np.float64)
    den = ConditionalEmpiricalDenoiser(y, labels, chunk_size=32)
    assert den.train.dtype == jnp.float64
    assert max_rel_err(den(x, sigma, cond), conditional_reference(x, y, labels, sigma, cond)
                       ) < 1e-9
    rng = np.random.default_rng(7)
    xn = y[rng.integers(0, len(y), 48)] + sigma * rng.standard_normal((48, 1024))
    assert max_rel_err(den(xn, sigma, cond), conditional_reference(xn, y, labels, sigma, cond)
                       ) < 1e-9


# --- ConditionalGaussianDenoiser -----------------------------------------------------------

def wiener(x, sigma, mean, cov):
    """``mu + C (C + s^2 I)^-1 (x - mu)`` per query, float64 NumPy."""
    out = np.zeros(x.shape)
    for q in range(x.shape[0]):
        a = cov + sigma[q] ** 2 * np.eye(len(mean))
        out[q] = mean + cov @ np.linalg.solve(a, x[q] - mean)
    return out


def _gauss_problem():
    rng = np.random.default_rng(8)
    means = rng.standard_normal((C, 4)) * 3
    covs = []
    for k in range(C):
        a = rng.standard_normal((4, 4 - (k == 1)))  # condition 1: singular covariance
        covs.append(a @ a.T / 4)
    return means, np.stack(covs), rng


def test_gaussian_matches_wiener_filter_per_condition_and_null():
    means, covs, rng = _gauss_problem()
    den = ConditionalGaussianDenoiser(means.astype(np.float32), covs.astype(np.float32))
    x = rng.standard_normal((16, 4)).astype(np.float32) * 3
    sig = np.exp(rng.uniform(-3, 3, 16)).astype(np.float32)
    cond = np.tile(np.arange(-1, C), 4)
    out = np.asarray(den(x, sig, cond), np.float64)
    mu0 = means.mean(0)  # NULL: the equal-weight mixture's moments
    cov0 = covs.mean(0) + (means - mu0).T @ (means - mu0) / C
    for c in range(-1, C):
        sel = cond == c
        mean, cov = (mu0, cov0) if c == NULL else (means[c], covs[c])
        np.testing.assert_allclose(out[sel], wiener(x[sel], sig[sel], mean, cov), rtol=2e-5,
                                   atol=2e-5)
    # explicit null moments
    den = ConditionalGaussianDenoiser(means, covs, null_mean=np.zeros(4), null_cov=np.eye(4))
    np.testing.assert_allclose(den(x[:4], sig[:4], NULL),
                               wiener(x[:4], sig[:4], np.zeros(4), np.eye(4)), rtol=2e-5,
                               atol=2e-5)


def test_gaussian_from_data_fits_moments_per_condition():
    """ML moments per condition, the pooled ones for NULL; a label gap is rejected."""
    rng = np.random.default_rng(9)
    y = rng.standard_normal((30, 4)).astype(np.float32) + 1.0
    labels = np.repeat([0, 2, 3], [14, 15, 1])  # no point with 1; one point with 3
    den = ConditionalGaussianDenoiser.from_data(y, labels)
    x = rng.standard_normal((4, 4)).astype(np.float32)
    for c in (0, 2):
        pts = y[labels == c].astype(np.float64)
        mean, cov = pts.mean(0), np.cov(pts.T, bias=True)
        np.testing.assert_allclose(den(x, 0.7, c), wiener(x, np.full(4, 0.7), mean, cov),
                                   rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(den(x, 0.7, 3), np.broadcast_to(y[-1], x.shape), atol=1e-6)
    np.testing.assert_allclose(den(x, 0.7, NULL), GaussianDenoiser.from_data(y)(x, 0.7),
                               rtol=1e-5, atol=1e-5)
    assert den.num_conditions == 4
    with pytest.raises(ValueError, match=r"cond: expected condition ids carried by the "
                                         r"training points \(0, 2, 3\) or NULL = -1, got 1"):
        den(x, 0.7, np.array([0, 1, 2, 3]))


# --- guided ---------------------------------------------------------------------------------

def test_guided_limits_are_exact_and_w2_is_the_formula():
    gauss = ConditionalGaussianDenoiser.from_data(TRAIN, LABELS)
    for den in (DEN, gauss):
        cond_out = np.asarray(den(X, SIG, COND))
        null_out = np.asarray(den(X, SIG, NULL))
        np.testing.assert_array_equal(guided(den, 1)(X, SIG, COND), cond_out)
        np.testing.assert_array_equal(guided(den, 0.0)(X, SIG, COND), null_out)
        expected = null_out + 2.0 * (cond_out - null_out)
        g2 = guided(den, 2.0)
        assert g2.conditional and takes_cond(g2) is True
        np.testing.assert_allclose(g2(X, SIG, COND), expected, rtol=1e-5, atol=1e-5)
        # at NULL every w gives the unconditional denoiser
        np.testing.assert_allclose(g2(X, SIG, NULL), null_out, rtol=1e-5, atol=1e-5)
    # a plain function works as well
    fn = lambda x, s, c: x * 0 + jnp.asarray(c, x.dtype)[..., None]  # noqa: E731
    np.testing.assert_allclose(guided(fn, -0.5)(jnp.zeros((2, 3)), 1.0, jnp.array([2, 4])),
                               [[-2.5] * 3, [-3.5] * 3])  # 1.5 (-1) - 0.5 c


def test_guided_is_a_pytree_traced_w_and_grad():
    g = guided(DEN, 2.0)
    jitted = jax.jit(lambda g, x, s, c: g(x, s, c))
    np.testing.assert_allclose(jitted(g, X, SIG, COND), g(X, SIG, COND), rtol=1e-6, atol=1e-6)
    # dD_w/dw = D(x, s, c) - D(x, s, NULL), w traced inside jax.jacfwd
    grad = jax.jacfwd(lambda w: guided(DEN, w)(X, SIG, COND))(3.0)
    np.testing.assert_allclose(grad, DEN(X, SIG, COND) - DEN(X, SIG, NULL), rtol=1e-5,
                               atol=1e-5)


def test_guided_and_conditional_denoisers_in_losses_and_sampling(key):
    sigmas = jnp.array([1e-3, 0.3, 3.0])
    val = (TRAIN + 0.5).astype(np.float32)  # the shapes of train: one program serves both
    # guided at w = 2 still memorizes: at a training point of condition c, both the
    # conditional and the null denoiser return that point at small sigma
    curve = losses.gap_curve(key, guided(DEN, 2.0), TRAIN, val, sigmas, train_cond=LABELS,
                             val_cond=LABELS)
    assert float(curve.train[0]) < 1e-8
    assert float(curve.gap[0]) > 0.1
    # a validation condition absent from training: an error at the boundary, not a silent NaN
    with pytest.raises(ValueError, match=ABSENT):
        absent = np.full(len(val), C)
        jax.block_until_ready(losses.gap_curve(key, guided(DEN, 2.0), TRAIN, val, sigmas,
                                               train_cond=LABELS, val_cond=absent).val)
    # samples of the conditional optimal denoiser are training points of their condition
    cond = jnp.array([0, 1, 2, 0, 1, 2])
    samples = np.asarray(sampling.sample(key, DEN, 6, DIM, num_steps=12, cond=cond))
    dist = np.linalg.norm(samples[:, None, :] - TRAIN[None], axis=-1)
    assert np.all(dist.min(1) < 1e-3)
    np.testing.assert_array_equal(LABELS[dist.argmin(1)], cond)


# --- bad input -------------------------------------------------------------------------------

Y = np.zeros((4, 2), np.float32)
L = np.array([0, 0, 1, 1])


@pytest.mark.parametrize("build, match", [
    (lambda: ConditionalEmpiricalDenoiser(Y, L[:3]), r"labels: expected shape \[4\]"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L.astype(float)), "labels: expected integer"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L > 0), "labels: expected integer"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L - 1), "labels: expected ids >= 0"),
    (lambda: ConditionalEmpiricalDenoiser(Y, None), "labels: expected"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L, num_conditions=1), "num_conditions: expected"),
    (lambda: jax.jit(lambda lab: ConditionalEmpiricalDenoiser(Y, lab).counts)(L),
     "num_conditions: expected the number"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L)(Y, 1.0), "cond: expected integer condition ids"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L)(Y, 1.0, 2), f"{ABSENT}.*got 2"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L, num_conditions=3)(Y, 1.0, [0, 1, 2, 0]),
     f"{ABSENT}.*0..1.*got 2"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L)(Y, 1.0, -2), f"{ABSENT}.*got -2"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L)(Y, 1.0, 0.5), "cond: expected an integer"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L)(Y, 1.0, [0, 1]), "cond: expected a scalar or"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L)(Y, 0.0, 0), "sigma: expected"),
    (lambda: ConditionalEmpiricalDenoiser(Y, L).effective_count(Y, 1.0), "cond: expected int"),
    (lambda: losses.denoising_loss(jax.random.key(0), ConditionalEmpiricalDenoiser(Y, L), Y,
                                   jnp.ones(2)), "cond: expected integer condition ids"),
    (lambda: ConditionalGaussianDenoiser(np.zeros((2, 3)), np.zeros((2, 3, 2))),
     r"covs: expected shape \[2, 3, 3\]"),
    (lambda: ConditionalGaussianDenoiser(np.zeros((2, 3)), np.zeros((2, 3, 3)),
                                         null_mean=np.zeros(3)), "null_cov: expected"),
    (lambda: ConditionalGaussianDenoiser(np.zeros((2, 3)), np.zeros((2, 3, 3)),
                                         null_mean=np.zeros(2), null_cov=np.eye(2)),
     r"null_mean: expected shape \[3\]"),
    (lambda: ConditionalGaussianDenoiser(np.zeros((2, 3)), -np.eye(3)[None].repeat(2, 0)),
     "covs: expected a positive semi-definite"),
    (lambda: ConditionalGaussianDenoiser.from_data(Y, L[:2]), r"labels: expected shape \[4\]"),
    (lambda: ConditionalGaussianDenoiser(np.zeros((2, 3)), np.zeros((2, 3, 3)))(
        np.zeros((1, 3)), 1.0, 2), f"{ABSENT}.*0..1.*got 2"),
    (lambda: guided(EmpiricalDenoiser(Y), 2.0), "denoiser: expected a conditional"),
    (lambda: guided(3.0, 2.0), "denoiser: expected a conditional"),
    (lambda: guided(ConditionalEmpiricalDenoiser(Y, L), float("nan")), "w: expected a finite"),
    (lambda: guided(ConditionalEmpiricalDenoiser(Y, L), np.inf), "w: expected a finite"),
    (lambda: guided(ConditionalEmpiricalDenoiser(Y, L), "2"), "w: expected a finite"),
    (lambda: guided(ConditionalEmpiricalDenoiser(Y, L), [1.0, 2.0]), "w: expected a finite"),
    (lambda: guided(ConditionalEmpiricalDenoiser(Y, L), 2.0)(Y, 1.0), "cond: expected integer"),
    (lambda: guided(ConditionalEmpiricalDenoiser(Y, L), 2.0)(Y, 1.0, 5), f"{ABSENT}.*got 5"),
    (lambda: guided(ConditionalEmpiricalDenoiser(Y, L), 0.0)(Y, 1.0, 5), f"{ABSENT}.*got 5"),
])
def test_bad_input(build, match):
    with pytest.raises(ValueError, match=match):
        build()
