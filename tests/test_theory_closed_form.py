"""Closed-form gap predictions (jaxgap.theory.closed_form) against independent references.

References: float64 NumPy brute-force quadrature (uniform trapezoid, spectrally accurate for
these analytic integrands), limits, an independent numerical Legendre transform for the
random-energy-model nearest-neighbour distance, the exact finite-d nearest-neighbour
distance (noncentral chi-square), and Monte Carlo with PositionError + jaxgap.losses in units
of its standard error.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, stats

from jaxgap.losses import per_example_loss
from jaxgap.theory import PositionError
from jaxgap.theory.closed_form import (
    ClosedFormGap,
    _two_point_along,
    gap_peak,
    gaussian_losses,
    two_point_losses,
)

# ----------------------------------------------------------------------------- two points


def _along_trapezoid(sigma, delta, a, s):
    """Brute force ``E (f(t) - alpha)^2``: uniform trapezoid with step << the tanh width."""
    v = sigma**2 + delta**2
    c = delta**2 / v
    tot = s**2 + sigma**2
    std = math.sqrt(tot)
    h = min(std, v / a) / 8.0  # trapezoid error ~ exp(-2 pi (pi v / 2a) / h) ~ e^-77
    t = a - 14 * std + h * np.arange(int(28 * std / h) + 1)
    f = (1 - c) * a * np.tanh(a * t / v) + c * t
    # E(f(t) - alpha)^2 = E f^2 - 2 E[f E(alpha|t)] + E alpha^2 (the sketch's form)
    e_alpha = a + s**2 / tot * (t - a)
    dens = np.exp(-0.5 * (t - a) ** 2 / tot) / math.sqrt(2 * math.pi * tot)
    return float(np.sum((f * f - 2 * f * e_alpha) * dens) * h + a * a + s * s)


CASES = [  # sigma, delta, a, s: smooth to very sharp (a * std / v up to ~1e4)
    (0.3, 0.1, 1.0, 0.5),
    (2.0, 0.05, 1.0, 0.0),
    (0.02, 0.0, 1.0, 0.3),
    (0.05, 0.02, 3.0, 2.0),
    (0.03, 0.0, 1.0, 1.0),
]


@pytest.mark.parametrize("case", CASES)
def test_two_point_quadrature_converged(case):
    sigma, delta, a, s = case
    got = _two_point_along(np.array([sigma]), delta, a, s)[0]
    finer = _two_point_along(np.array([sigma]), delta, a, s, n_main=192, n_core=128, n_geom=60,
                             order=24, span=14.0)[0]
    assert abs(got - finer) <= 1e-12 * abs(finer)
    brute = _along_trapezoid(sigma, delta, a, s)
    assert abs(got - brute) <= 1e-12 * abs(brute)  # measured <= 3e-15


def test_two_point_limits():
    d, a, s = 5, 1.0, 0.1
    sig = np.array([1e4, 1e5])
    cf = two_point_losses(sig, delta=0.2, separation=2 * a, dim=d, spread=s)
    # sigma -> inf: c -> 0, D -> mu: train a^2 / d, val (a^2 + d s^2) / d (relative O(1/sigma^2))
    np.testing.assert_allclose(cf.train, a * a / d, rtol=1e-6)
    np.testing.assert_allclose(cf.val, (a * a + d * s * s) / d, rtol=1e-6)
    # delta = 0, sigma -> 0: train 0, val -> s^2 (nearest training point; crossing ~ e^-50)
    small = np.array([1e-4, 1e-3])
    cf0 = two_point_losses(small, delta=0.0, separation=2 * a, dim=d, spread=s)
    np.testing.assert_allclose(cf0.train, 0.0, atol=1e-30)
    np.testing.assert_allclose(cf0.val, s * s, rtol=1e-12)
    # delta -> inf: D(x) = x, loss sigma^2 for train and val
    big = two_point_losses(small, delta=1e7, separation=2 * a, dim=d, spread=s)
    np.testing.assert_allclose(big.train, small**2, rtol=1e-8)
    np.testing.assert_allclose(big.val, small**2, rtol=1e-8)


def test_two_point_gap_peak_matches_dense_grid():
    cf = two_point_losses(np.geomspace(0.05, 3.0, 9), delta=0.1, separation=2.0, dim=1,
                          spread=0.4)
    dense = np.geomspace(0.05, 3.0, 801)
    ref = two_point_losses(dense, delta=0.1, separation=2.0, dim=1, spread=0.4)
    i = int(np.argmax(ref.gap))
    assert 0 < i < dense.size - 1  # an interior peak
    assert cf.peak_gap >= ref.gap[i] - 1e-12
    assert cf.peak_gap - ref.gap[i] < 1e-6 * ref.gap[i]
    assert abs(math.log(cf.peak_sigma / dense[i])) < 2 * math.log(dense[1] / dense[0])
    np.testing.assert_allclose(cf.gap, cf.val - cf.train, rtol=0, atol=0)


@pytest.mark.parametrize("a,delta,s", [(0.6, 0.1, 0.4), (1.0, 0.3, 0.5)])
def test_two_point_against_monte_carlo(a, delta, s):
    """PositionError + per_example_loss; 1000 examples per set, |z| < 4.5 over 2 x 6 sigmas."""
    rng = np.random.default_rng(1)
    n, dim = 1000, 6  # one shape for both cases: compiled once
    e = rng.normal(size=dim)
    e /= np.linalg.norm(e)
    mu = rng.normal(size=dim)
    y = np.stack([mu + a * e, mu - a * e])
    lab = rng.integers(0, 2, n)
    sig = np.geomspace(0.05, 3.0, 6)
    den = PositionError(jnp.asarray(y, jnp.float32), delta)
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    sets = (y[lab], y[lab] + s * rng.normal(size=(n, dim)))
    cf = two_point_losses(sig, delta=delta, separation=2 * a, dim=dim, spread=s)
    for k, data, ref in ((k1, sets[0], cf.train), (k2, sets[1], cf.val)):
        loss = np.asarray(per_example_loss(k, den, jnp.asarray(data, jnp.float32),
                                           jnp.asarray(sig, jnp.float32)), np.float64)
        z = (loss.mean(1) - ref) / (loss.std(1, ddof=1) / math.sqrt(n))
        assert np.all(np.abs(z) < 4.5), z


# ----------------------------------------------------------------------------- Gaussian REM


def _wiener_loss(sigma, s, delta):
    """Loss on N(0, s^2) data of the Wiener filter for data variance s^2 + delta^2."""
    a = (s * s + delta * delta) / (s * s + delta * delta + sigma**2)
    return (a - 1) ** 2 * s * s + a * a * sigma**2


def _rem_nearest(alpha, s):
    """Independent REM nearest-neighbour distance ``r* = min_j |x0 - y_j|^2 / d``.

    Cramer rate of ``r = |x0 - y|^2 / d`` (``|x0|^2 / d = s^2``) by a numerical Legendre
    transform of ``Lambda(l) = -log(1 + 2 l s^2)/2 - l s^2/(1 + 2 l s^2)``; ``r*`` solves
    ``I(r*) = alpha`` below the mean ``2 s^2``.
    """
    cgf = lambda u: -0.5 * math.log1p(2 * u * s * s) - u * s * s / (1 + 2 * u * s * s)

    def rate(r):
        res = optimize.minimize_scalar(lambda u: u * r + cgf(u), bounds=(0, 1e8),
                                       method="bounded", options={"xatol": 1e-13})
        return -res.fun

    return optimize.brentq(lambda r: rate(r) - alpha, 1e-6 * s * s, 2 * s * s * (1 - 1e-9),
                           xtol=1e-14)


def test_gaussian_delta0_thresholds_and_limits():
    d, n, s = 64, 25, 1.5
    alpha, alpha1 = math.log(n) / d, math.log(n - 1) / d
    sig = np.geomspace(1e-3, 30, 41) * s
    cf = gaussian_losses(sig, delta=0.0, num_train=n, dim=d, scale=s)
    assert isinstance(cf, ClosedFormGap)
    ph = cf.phase
    # condensation (val) and memorization (train) thresholds: s / sqrt(exp(2 alpha) - 1)
    assert abs(ph.sigma_condense - s / math.sqrt(math.expm1(2 * alpha))) < 1e-9 * s
    assert abs(ph.sigma_memorize - s / math.sqrt(math.expm1(2 * alpha1))) < 1e-9 * s
    np.testing.assert_array_equal(ph.val_condensed, sig < ph.sigma_condense)
    np.testing.assert_array_equal(ph.train_memorized, sig < ph.sigma_memorize)
    # memorized: train 0; otherwise train is the val formula (annealed: Wiener filter)
    assert np.all(cf.train[ph.train_memorized] == 0)
    ann = ~ph.train_memorized
    np.testing.assert_allclose(cf.train[ann], _wiener_loss(sig[ann], s, 0.0), rtol=1e-12)
    np.testing.assert_allclose(cf.val[~ph.val_condensed], _wiener_loss(sig[~ph.val_condensed],
                                                                       s, 0.0), rtol=1e-12)
    # sigma -> 0: val is the REM nearest-neighbour distance, participation -> 1
    np.testing.assert_allclose(cf.val[0], _rem_nearest(alpha, s), rtol=1e-6)
    assert ph.participation[0] > 1 - 1e-5
    # delta = 0: the gap is largest at sigma -> 0 (train 0, val the NN distance), where it is
    # flat to O(sigma^2): the search stops anywhere on that plateau
    assert cf.peak_sigma < 1.01 * sig[0]
    assert cf.peak_gap == pytest.approx(cf.gap[0], rel=1e-9)


def test_gaussian_annealed_is_wiener_and_one_point():
    sig = np.geomspace(0.01, 100, 30)
    # annealed phase (large alpha): val = Wiener filter of variance s^2 + delta^2
    cf = gaussian_losses(sig, delta=0.4, num_train=10**6, dim=4, scale=0.7)
    ok = ~cf.phase.val_condensed
    assert ok.sum() > 10 and np.all(cf.phase.participation[ok] == 0)
    np.testing.assert_allclose(cf.val[ok], _wiener_loss(sig[ok], 0.7, 0.4), rtol=1e-12)
    # N = 1: D = (1 - c) y_1 + c x; train c^2 sigma^2, val (1-c)^2 2 s^2 + c^2 sigma^2
    one = gaussian_losses(sig, delta=0.4, num_train=1, dim=7, scale=0.7)
    c = 0.16 / (sig**2 + 0.16)
    np.testing.assert_allclose(one.train, c**2 * sig**2, rtol=1e-12)
    np.testing.assert_allclose(one.val, (1 - c) ** 2 * 2 * 0.49 + c**2 * sig**2, rtol=1e-9)


def test_gaussian_peak_moves_up_and_shrinks_with_delta():
    sig = np.geomspace(0.01, 10, 64)
    peaks = [gaussian_losses(sig, delta=dl, num_train=25, dim=64) for dl in (0.1, 0.3, 1.0)]
    ps = [p.peak_sigma for p in peaks]
    hs = [p.peak_gap for p in peaks]
    assert ps[0] < ps[1] < ps[2] and hs[0] > hs[1] > hs[2]
    for p in peaks:  # the refined peak is at least as high as every grid value
        assert p.peak_gap >= p.gap.max() - 1e-12


def _exact_nn(d, log_n, s=1.0):
    """Exact finite-d ``E min_j |x0 - y_j|^2 / d`` for ``|x0|^2 = d s^2``: ncx2 survival."""
    n = math.exp(log_n)
    lam = d  # noncentrality |x0|^2 / s^2

    def surv(r):
        cdf = stats.ncx2.cdf(r, d, lam)
        return math.exp(n * math.log1p(-min(cdf, 1 - 1e-16)))

    hi = 2 * d + 20 * math.sqrt(2 * 3 * d)
    val, _ = integrate.quad(surv, 0, hi, limit=200, points=[1.0 * d, 1.3 * d, 1.6 * d])
    return s * s * val / d


def test_gaussian_nearest_neighbour_finite_d_converges():
    """Exact finite-d NN distance -> the closed form's sigma -> 0 limit as d grows."""
    errs = []
    for d in (128, 512, 2048):
        n = round(math.exp(0.05 * d))  # alpha = log(N) / d = 0.05 up to rounding
        # the closed form depends on N and d only through log(N) / d
        limit = gaussian_losses([1e-6], delta=0.0, num_train=n, dim=d).val[0]
        assert limit == pytest.approx(_rem_nearest(math.log(n) / d, 1.0), rel=1e-6)
        errs.append(_exact_nn(d, math.log(n)) - limit)
    # measured: 0.078, 0.026, 0.0086 (about log(d)/d)
    assert errs[0] > errs[1] > errs[2] > 0
    assert errs[2] < 0.012


# ----------------------------------------------------------------------------- arguments


def test_bad_arguments():
    with pytest.raises(ValueError, match="sigmas"):
        two_point_losses([0.1, -1.0], delta=0.1, separation=1.0, dim=2, spread=0.1)
    with pytest.raises(ValueError, match="sigmas"):
        gaussian_losses(np.ones((2, 2)), delta=0.1, num_train=3, dim=2)
    with pytest.raises(ValueError, match="delta"):
        two_point_losses([0.1], delta=-0.1, separation=1.0, dim=2, spread=0.1)
    with pytest.raises(ValueError, match="separation"):
        two_point_losses([0.1], delta=0.1, separation=0.0, dim=2, spread=0.1)
    with pytest.raises(ValueError, match="dim"):
        two_point_losses([0.1], delta=0.1, separation=1.0, dim=0, spread=0.1)
    with pytest.raises(ValueError, match="spread"):
        two_point_losses([0.1], delta=0.1, separation=1.0, dim=2, spread=float("nan"))
    with pytest.raises(ValueError, match="num_train"):
        gaussian_losses([0.1], delta=0.1, num_train=0, dim=2)
    with pytest.raises(ValueError, match="num_train"):
        gaussian_losses([0.1], delta=0.1, num_train=2.5, dim=2)
    with pytest.raises(ValueError, match="scale"):
        gaussian_losses([0.1], delta=0.1, num_train=3, dim=2, scale=0.0)
    with pytest.raises(ValueError, match="sigma_max"):
        gap_peak(lambda x: x, 2.0, 1.0)


def _gaussian_mc(d, n, delta, sig, seeds, n_query):
    """PositionError + per_example_loss on fresh N(0, I_d) training/validation sets,
    averaged over ``seeds`` training sets: ``(train [K], val [K])``."""
    tr, va = [], []
    sig32 = jnp.asarray(sig, jnp.float32)
    for seed in range(seeds):
        rng = np.random.default_rng(100 * d + seed)
        y = rng.normal(size=(n, d)).astype(np.float32)
        val = rng.normal(size=(n_query, d)).astype(np.float32)
        idx = rng.choice(n, size=n_query, replace=n_query > n)  # same shape as val: 1 compile
        den = PositionError(jnp.asarray(y), delta)
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        tr.append(np.mean(np.asarray(per_example_loss(k1, den, jnp.asarray(y[idx]), sig32)),
                          axis=1))
        va.append(np.mean(np.asarray(per_example_loss(k2, den, jnp.asarray(val), sig32)), axis=1))
    return np.mean(tr, axis=0), np.mean(va, axis=0)


def test_gaussian_against_monte_carlo_away_from_transitions():
    """Finite-d Monte Carlo vs the d -> inf limit at alpha = log(N)/d ~ 0.2, delta = 0.3.

    Transitions at sigma ~ 1.37 (condensation) and 1.43 (memorization); the sigmas here are a
    factor >= 4 away. Measured (|MC - limit|): at sigma = 0.1, 0.2 (memorized train,
    condensed val; MC se ~ 0.001) train <= 0.0003, val 0.0018/0.018 at d = 16 (N = 25) and
    0.0012/0.008 at d = 32 (N = 602); at sigma = 6, 12 (annealed; MC se ~ 0.01-0.02, from
    the spread of |x0|^2 / d) train 0.063 at d = 16 (a finite-N effect: the query's own
    point is one of only 25; the limit has train = val there) and <= 0.011 at d = 32, val
    <= 0.05 and <= 0.005.
    Tolerances: small sigma val 0.03 (d = 16) and 0.012 (d = 32), train 0.002; large sigma
    0.1 (d = 16) and 0.06 (d = 32); the small-sigma val discrepancy must shrink with d.
    """
    sig = np.array([0.1, 0.2, 6.0, 12.0])
    small = slice(0, 2)
    large = slice(2, 4)
    errs = {}
    for d, n, seeds, n_query in ((16, 25, 12, 48), (32, 602, 3, 128)):
        cf = gaussian_losses(sig, delta=0.3, num_train=n, dim=d)
        assert not np.any(np.abs(np.log(sig / cf.phase.sigma_condense)) < math.log(4))
        assert not np.any(np.abs(np.log(sig / cf.phase.sigma_memorize)) < math.log(4))
        assert np.all(cf.phase.train_memorized == [True, True, False, False])
        mc_train, mc_val = _gaussian_mc(d, n, 0.3, sig, seeds, n_query)
        dt, dv = np.abs(mc_train - cf.train), np.abs(mc_val - cf.val)
        errs[d] = dict(small_train=dt[small].max(), small_val=dv[small].max(),
                       large=max(dt[large].max(), dv[large].max()))
    assert errs[16]["small_train"] < 0.002 and errs[32]["small_train"] < 0.002, errs
    assert errs[16]["small_val"] < 0.03 and errs[32]["small_val"] < 0.012, errs
    assert errs[16]["large"] < 0.1 and errs[32]["large"] < 0.06, errs
    assert errs[32]["small_val"] < errs[16]["small_val"], errs
