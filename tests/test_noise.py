"""Tests for jaxgap.noise: grids, EDM preconditioning, log-normal sigmas, conversions.

References are written independently of the code under test (NumPy in float64, closed forms,
variance identities). float32 tolerances: grids from concrete hyper-parameters are rounded once
from float64 (rtol 1e-6 is a few ulps); formulas evaluated in float32 get rtol 1e-5.
Monte Carlo checks are stated in units of their standard error (SE), with the sample size
in the test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap import noise

F32_RTOL = 1e-5


def _rounded(value):
    """``value`` rounded once to the default float dtype (float32, or float64 under x64)."""
    return np.asarray(value, dtype=jnp.result_type(float))


def _np_karras(num, sigma_min, sigma_max, rho):
    i = np.arange(num, dtype=np.float64)
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (hi + i / (num - 1) * (lo - hi)) ** rho


# ------------------------------------------------------------------------------------------
# Grids
# ------------------------------------------------------------------------------------------

GRID_CASES = [(2, 0.002, 80.0, 7.0), (18, 0.002, 80.0, 7.0), (64, 0.01, 10.0, 3.0),
              (257, 1e-3, 1e3, 7.0)]


@pytest.mark.parametrize("num, sigma_min, sigma_max, rho", GRID_CASES)
def test_karras_endpoints_monotone_and_reference(num, sigma_min, sigma_max, rho):
    s = noise.karras_sigmas(num, sigma_min, sigma_max, rho)
    assert s.shape == (num,)
    assert s.dtype == jnp.result_type(float)
    assert s[0] == _rounded(sigma_max) and s[-1] == _rounded(sigma_min)
    assert bool(jnp.all(jnp.diff(s) < 0))
    np.testing.assert_allclose(np.asarray(s), _np_karras(num, sigma_min, sigma_max, rho),
                               rtol=1e-6)


def test_karras_defaults_and_rho_one_is_linear():
    np.testing.assert_allclose(noise.karras_sigmas(18), _np_karras(18, 0.002, 80.0, 7.0),
                               rtol=1e-6)
    np.testing.assert_allclose(noise.karras_sigmas(11, 1.0, 2.0, rho=1.0),
                               np.linspace(2.0, 1.0, 11), rtol=1e-6)


@pytest.mark.parametrize("num, sigma_min, sigma_max, rho", GRID_CASES)
def test_log_sigmas_endpoints_monotone_and_reference(num, sigma_min, sigma_max, rho):
    del rho
    s = noise.log_sigmas(num, sigma_min, sigma_max)
    assert s.shape == (num,)
    assert s[0] == _rounded(sigma_min) and s[-1] == _rounded(sigma_max)
    assert bool(jnp.all(jnp.diff(s) > 0))
    ref = np.exp(np.linspace(np.log(sigma_min), np.log(sigma_max), num))
    np.testing.assert_allclose(np.asarray(s), ref, rtol=1e-6)
    # Constant ratio between neighbours (log spacing).
    ratios = np.diff(np.log(np.asarray(s, dtype=np.float64)))
    np.testing.assert_allclose(ratios, np.log(sigma_max / sigma_min) / (num - 1), rtol=1e-4)


def test_grids_with_traced_hyperparameters_match_concrete():
    sigma_max = jnp.array([1.0, 10.0, 80.0])
    batched = jax.vmap(lambda m: noise.karras_sigmas(6, 0.002, m, 7.0))(sigma_max)
    for row, m in zip(batched, [1.0, 10.0, 80.0], strict=True):
        np.testing.assert_allclose(row, _np_karras(6, 0.002, m, 7.0), rtol=F32_RTOL)
        assert row[0] == _rounded(m) and row[-1] == _rounded(0.002)
    jitted = jax.jit(lambda lo, hi: noise.log_sigmas(5, lo, hi))(0.01, 100.0)
    np.testing.assert_allclose(jitted, [0.01, 0.1, 1.0, 10.0, 100.0], rtol=F32_RTOL)
    alpha_bar = jax.jit(lambda b0, b1: noise.ddpm_alpha_bar(50, b0, b1))(1e-4, 0.02)
    np.testing.assert_allclose(alpha_bar, noise.ddpm_alpha_bar(50), rtol=F32_RTOL)


@pytest.mark.parametrize("fn", [noise.karras_sigmas, noise.log_sigmas])
@pytest.mark.parametrize("args, name", [
    ((1, 0.002, 80.0), "num"),
    ((0, 0.002, 80.0), "num"),
    ((2.0, 0.002, 80.0), "num"),
    ((5, 0.0, 80.0), "sigma_min"),
    ((5, -1.0, 80.0), "sigma_min"),
    ((5, 80.0, 80.0), "sigma_min"),
    ((5, 90.0, 80.0), "sigma_min"),
    ((5, float("nan"), 80.0), "sigma_min"),
    ((5, 0.002, float("inf")), "sigma_max"),
    ((5, 0.002, -3.0), "sigma_max"),
    ((5, np.array([0.1, 0.2]), 80.0), "sigma_min"),
])
def test_grids_reject_bad_inputs(fn, args, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected .*, got "):
        fn(*args)


@pytest.mark.parametrize("rho", [0.0, -7.0, float("nan")])
def test_karras_rejects_bad_rho(rho):
    with pytest.raises(ValueError, match=r"^rho: expected .*, got "):
        noise.karras_sigmas(5, rho=rho)


# ------------------------------------------------------------------------------------------
# EDM preconditioning and loss weight
# ------------------------------------------------------------------------------------------

SIGMAS = np.array([1e-3, 0.02, 0.3, 0.5, 1.0, 3.7, 80.0, 500.0])


@pytest.mark.parametrize("sigma_data", [0.5, 0.13])
def test_precond_matches_numpy_formulas(sigma_data):
    c = noise.edm_precond(jnp.asarray(SIGMAS, jnp.float32), sigma_data)
    s, sd = SIGMAS, sigma_data
    np.testing.assert_allclose(c.c_skip, sd**2 / (s**2 + sd**2), rtol=F32_RTOL)
    np.testing.assert_allclose(c.c_out, s * sd / np.sqrt(s**2 + sd**2), rtol=F32_RTOL)
    np.testing.assert_allclose(c.c_in, 1 / np.sqrt(s**2 + sd**2), rtol=F32_RTOL)
    np.testing.assert_allclose(c.c_noise, np.log(s) / 4, rtol=F32_RTOL, atol=1e-6)
    np.testing.assert_allclose(noise.edm_loss_weight(s, sigma_data),
                               (s**2 + sd**2) / (s * sd) ** 2, rtol=F32_RTOL)


@pytest.mark.parametrize("sigma_data", [0.5, 2.0])
def test_precond_variance_identities(sigma_data):
    """EDM App. B.6: derive c_in, c_skip, c_out from variances of x0 ~ (0, sd^2), eps ~ (0, 1)."""
    s = SIGMAS
    sd = sigma_data
    c = noise.edm_precond(s, sd)
    c_skip, c_out, c_in = (np.asarray(v, np.float64) for v in c[:3])
    # Unit-variance network input: Var[c_in (x0 + s eps)] = c_in^2 (sd^2 + s^2) = 1.
    np.testing.assert_allclose(c_in**2 * (sd**2 + s**2), 1.0, rtol=F32_RTOL)

    # Effective target (x0 - c_skip x) / c_out; its variance as a function of c_skip:
    def target_var(k):
        return (1 - k) ** 2 * sd**2 + k**2 * s**2

    # c_out makes the target unit-variance ...
    np.testing.assert_allclose(target_var(c_skip) / c_out**2, 1.0, rtol=F32_RTOL)
    # ... and c_skip minimizes that variance (check both neighbours).
    for step in (1e-3, -1e-3):
        assert np.all(target_var(c_skip + step) > target_var(c_skip))
    # Loss weight gives the effective (F-space) loss unit weight: lambda * c_out^2 = 1.
    lam = np.asarray(noise.edm_loss_weight(s, sd), np.float64)
    np.testing.assert_allclose(lam * c_out**2, 1.0, rtol=F32_RTOL)
    # Limits: sigma -> 0 keeps the input, sigma -> inf outputs the (scaled) network only.
    assert c_skip[0] == pytest.approx(1.0, abs=1e-5) and c_out[0] < 1e-2
    assert c_skip[-1] < 1e-4 and c_out[-1] == pytest.approx(sd, rel=1e-4)


def test_precond_unit_variance_monte_carlo():
    n, sd, sigma = 200_000, 0.5, 2.3
    rng = np.random.default_rng(0)
    x0 = sd * rng.standard_normal(n)
    eps = rng.standard_normal(n)
    c_in = float(noise.edm_precond(sigma, sd).c_in)
    z = c_in * (x0 + sigma * eps)
    # For a Gaussian, the sample variance has SE sqrt(2 / (n - 1)) * Var ~ 0.0032 here.
    se = math.sqrt(2.0 / (n - 1))
    assert abs(z.var(ddof=1) - 1.0) < 5 * se


def test_precond_shapes_jit_and_vmap():
    sig = jnp.linspace(0.1, 5.0, 6).reshape(2, 3)
    c = noise.edm_precond(sig)
    assert isinstance(c, noise.Precond)
    assert all(v.shape == (2, 3) for v in c)
    assert all(v.shape == () for v in noise.edm_precond(1.0))
    assert noise.edm_precond(jnp.zeros((0,)) + 1.0).c_skip.shape == (0,)
    cj = jax.jit(noise.edm_precond)(sig, 0.5)
    cv = jax.vmap(noise.edm_precond, in_axes=(0, None))(sig, 0.5)
    for a, b, d in zip(c, cj, cv, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(a, d, rtol=1e-6)
    wj = jax.jit(noise.edm_loss_weight)(sig, 0.5)
    np.testing.assert_allclose(wj, noise.edm_loss_weight(sig), rtol=1e-6)


@pytest.mark.parametrize("fn", [noise.edm_precond, noise.edm_loss_weight])
def test_precond_rejects_bad_inputs(fn):
    with pytest.raises(ValueError, match=r"^sigma: expected values > 0, got 0\.0"):
        fn(jnp.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"^sigma: expected values > 0, got -1\.0"):
        fn(-1.0)
    with pytest.raises(ValueError, match=r"^sigma: expected finite values"):
        fn(jnp.array([1.0, jnp.inf]))
    with pytest.raises(ValueError, match=r"^sigma_data: expected .*> 0, got 0"):
        fn(1.0, 0)
    with pytest.raises(ValueError, match=r"^sigma_data: expected a scalar, got shape \[2\]"):
        fn(1.0, jnp.array([0.5, 0.5]))


# ------------------------------------------------------------------------------------------
# Log-normal training distribution of sigma
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p_mean, p_std", [(-1.2, 1.2), (0.4, 0.3)])
def test_lognormal_sampler_moments(key, p_mean, p_std):
    n = 100_000
    sig = noise.sample_lognormal_sigmas(key, (n,), p_mean=p_mean, p_std=p_std)
    assert sig.shape == (n,) and sig.dtype == jnp.result_type(float)
    assert bool(jnp.all(sig > 0))
    u = np.log(np.asarray(sig, np.float64))
    # ln sigma ~ N(p_mean, p_std^2): SE of the mean p_std / sqrt(n); SE of the sample std
    # p_std / sqrt(2 (n - 1)) (Gaussian). Both must lie within 5 SE.
    assert abs(u.mean() - p_mean) < 5 * p_std / math.sqrt(n)
    assert abs(u.std(ddof=1) - p_std) < 5 * p_std / math.sqrt(2 * (n - 1))


def test_lognormal_sampler_shapes_keys_and_jit(key):
    a = noise.sample_lognormal_sigmas(key, (4, 3))
    assert a.shape == (4, 3)
    assert noise.sample_lognormal_sigmas(key, 7).shape == (7,)
    assert noise.sample_lognormal_sigmas(key, ()).shape == ()
    np.testing.assert_array_equal(a, noise.sample_lognormal_sigmas(key, (4, 3)))
    other = noise.sample_lognormal_sigmas(jax.random.fold_in(key, 1), (4, 3))
    assert not np.array_equal(a, other)
    traced = jax.jit(lambda k, m, s: noise.sample_lognormal_sigmas(k, (4, 3), p_mean=m,
                                                                   p_std=s))(key, -1.2, 1.2)
    np.testing.assert_allclose(traced, a, rtol=1e-6)


def test_lognormal_sampler_rejects_bad_inputs(key):
    with pytest.raises(ValueError, match=r"^p_std: expected .*> 0, got -1"):
        noise.sample_lognormal_sigmas(key, (3,), p_std=-1)
    with pytest.raises(ValueError, match=r"^p_mean: expected a finite number, got nan"):
        noise.sample_lognormal_sigmas(key, (3,), p_mean=float("nan"))
    with pytest.raises(ValueError, match=r"^shape: expected an integer >= 0, got -2"):
        noise.sample_lognormal_sigmas(key, (-2,))
    with pytest.raises(ValueError, match=r"^dtype: expected a floating dtype"):
        noise.sample_lognormal_sigmas(key, (3,), dtype=jnp.int32)


@pytest.mark.parametrize("p_mean, p_std", [(-1.2, 1.2), (0.4, 0.3)])
def test_lognormal_density_integrates_to_one_and_has_lognormal_mean(p_mean, p_std):
    # Quadrature in u = ln sigma over +-12 std (tail mass < 1e-30); density in u is sigma p(sigma).
    u = np.linspace(p_mean - 12 * p_std, p_mean + 12 * p_std, 4001)
    sig = np.exp(u)
    p = np.asarray(noise.lognormal_sigma_density(jnp.asarray(sig, jnp.float32), p_mean=p_mean,
                                                 p_std=p_std), np.float64)
    assert np.trapezoid(p * sig, u) == pytest.approx(1.0, abs=1e-5)
    # E[sigma] = exp(p_mean + p_std^2 / 2) for a log-normal: checks the shape, not only mass.
    assert np.trapezoid(p * sig**2, u) == pytest.approx(math.exp(p_mean + p_std**2 / 2),
                                                        rel=1e-4)
    # Pointwise against the closed form in float64.
    ref = np.exp(-0.5 * ((u - p_mean) / p_std) ** 2) / (sig * p_std * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(p, ref, rtol=1e-4, atol=1e-30)


def test_lognormal_density_matches_sampler_histogram(key):
    n, bins = 200_000, 20
    sig = np.asarray(noise.sample_lognormal_sigmas(key, (n,)), np.float64)
    edges = np.exp(np.linspace(-1.2 - 2.5 * 1.2, -1.2 + 2.5 * 1.2, bins + 1))
    counts, _ = np.histogram(sig, edges)
    # Expected bin probabilities by quadrature of the density over each bin (in log space).
    probs = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        uu = np.linspace(np.log(lo), np.log(hi), 201)
        d = np.asarray(noise.lognormal_sigma_density(np.exp(uu)), np.float64)
        probs.append(np.trapezoid(d * np.exp(uu), uu))
    probs = np.array(probs)
    # Binomial SE per bin: sqrt(n p (1 - p)); every bin within 5 SE.
    se = np.sqrt(n * probs * (1 - probs))
    assert np.all(np.abs(counts - n * probs) < 5 * se)


def test_lognormal_density_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"^sigma: expected values > 0, got 0\.0"):
        noise.lognormal_sigma_density(jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"^p_std: expected .*> 0, got 0\.0"):
        noise.lognormal_sigma_density(1.0, p_std=0.0)


# ------------------------------------------------------------------------------------------
# Conversions
# ------------------------------------------------------------------------------------------

def test_ddpm_alpha_bar_matches_numpy():
    ab = noise.ddpm_alpha_bar()
    ref = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    assert ab.shape == (1000,)
    np.testing.assert_allclose(ab, ref, rtol=1e-6)
    assert bool(jnp.all(jnp.diff(ab) < 0)) and ab[0] == _rounded(1 - 1e-4)
    np.testing.assert_allclose(noise.ddpm_alpha_bar(1, 0.1, 0.2), [0.9], rtol=1e-7)
    ref_short = np.cumprod(1.0 - np.linspace(0.01, 0.3, 7))
    np.testing.assert_allclose(noise.ddpm_alpha_bar(7, 0.01, 0.3), ref_short, rtol=1e-6)


@pytest.mark.parametrize("kwargs, name", [
    ({"num_steps": 0}, "num_steps"), ({"beta_start": 0.0}, "beta_start"),
    ({"beta_end": 1.0}, "beta_end"), ({"beta_end": float("nan")}, "beta_end")])
def test_ddpm_alpha_bar_rejects_bad_inputs(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected .*, got "):
        noise.ddpm_alpha_bar(**kwargs)


def test_vp_round_trips_and_known_values():
    ab = noise.ddpm_alpha_bar()
    sigma, scale = noise.vp_to_edm(ab)
    ab64 = np.asarray(ab, np.float64)
    np.testing.assert_allclose(sigma, np.sqrt((1 - ab64) / ab64), rtol=F32_RTOL)
    np.testing.assert_allclose(scale, np.sqrt(ab64), rtol=F32_RTOL)
    np.testing.assert_allclose(noise.edm_to_vp(sigma), ab, rtol=F32_RTOL)
    # sigma -> alpha_bar -> sigma: alpha_bar = 1 - sigma^2 + ... holds sigma only to about
    # eps_f32 / sigma^2 relative, so in float32 the round trip is checked for sigma >= 0.1
    # (x64 test below: every sigma) and loosely at small sigma.
    s = jnp.asarray(SIGMAS, jnp.float32)
    back = noise.vp_to_edm(noise.edm_to_vp(s)).sigma
    big = (SIGMAS >= 0.1) & (SIGMAS <= 80.0)
    np.testing.assert_allclose(back[big], s[big], rtol=1e-5)
    np.testing.assert_allclose(back[SIGMAS < 0.1], s[SIGMAS < 0.1], rtol=0.05)
    # Exact special values: alpha_bar = 1 is clean data, 1/2 is sigma = 1.
    out = noise.vp_to_edm(jnp.array([1.0, 0.5]))
    np.testing.assert_allclose(out.sigma, [0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(out.scale, [1.0, math.sqrt(0.5)], rtol=1e-7)
    assert float(noise.edm_to_vp(0.0)) == 1.0


def test_flow_round_trips_and_known_values():
    t = jnp.linspace(0.0, 0.99, 12)
    sigma, scale = noise.flow_to_edm(t)
    t64 = np.asarray(t, np.float64)
    np.testing.assert_allclose(sigma, t64 / (1 - t64), rtol=F32_RTOL, atol=1e-7)
    np.testing.assert_allclose(scale, 1 - t64, rtol=F32_RTOL)
    np.testing.assert_allclose(noise.edm_to_flow(sigma), t, rtol=F32_RTOL, atol=1e-7)
    s = jnp.asarray(SIGMAS, jnp.float32)
    np.testing.assert_allclose(noise.flow_to_edm(noise.edm_to_flow(s)).sigma, s, rtol=1e-4)
    out = noise.flow_to_edm(jnp.array([0.0, 0.5]))
    np.testing.assert_allclose(out.sigma, [0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(out.scale, [1.0, 0.5], rtol=1e-7)


def test_conversions_map_same_noise_to_consistent_states():
    # States are built in NumPy float64 from the same (x0, eps); only the conversions come
    # from jaxgap (float32), hence rtol 1e-5 relative to the state's scale (atol 1e-5).
    n, d = 64, 5
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    tol = {"rtol": 1e-5, "atol": 1e-5}
    # VP / DDPM: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, at n steps spread over the schedule.
    ab = np.asarray(noise.ddpm_alpha_bar(), np.float64)[np.linspace(0, 999, n).astype(int)]
    sigma, scale = (np.asarray(v, np.float64)[:, None] for v in noise.vp_to_edm(ab))
    x_vp = np.sqrt(ab)[:, None] * x0 + np.sqrt(1 - ab)[:, None] * eps
    np.testing.assert_allclose(scale * (x0 + sigma * eps), x_vp, **tol)
    # Flow matching: x_t = (1 - t) x0 + t eps.
    t = np.linspace(0.0, 0.995, n)
    sigma, scale = (np.asarray(v, np.float64)[:, None] for v in noise.flow_to_edm(t))
    x_flow = (1 - t)[:, None] * x0 + t[:, None] * eps
    np.testing.assert_allclose(scale * (x0 + sigma * eps), x_flow, **tol)
    # EDM -> other parametrizations: the same state up to the scale sqrt(abar) or 1 - t.
    # sigma >= 0.02: below, a float32 alpha_bar ~ 1 - sigma^2 cannot hold sqrt(1 - abar) to
    # 1e-5 (see test_vp_round_trips_and_known_values).
    sigmas = SIGMAS[SIGMAS >= 0.02]
    x0, eps = x0[: len(sigmas)], eps[: len(sigmas)]
    x_edm = x0 + sigmas[:, None] * eps
    ab = np.asarray(noise.edm_to_vp(sigmas), np.float64)[:, None]
    np.testing.assert_allclose(np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps, np.sqrt(ab) * x_edm,
                               **tol)
    t = np.asarray(noise.edm_to_flow(sigmas), np.float64)[:, None]
    np.testing.assert_allclose((1 - t) * x0 + t * eps, (1 - t) * x_edm, **tol)


def test_conversions_under_jit_and_vmap():
    ab = jnp.array([0.2, 0.7, 1.0])
    for fn, arg in [(noise.vp_to_edm, ab), (noise.flow_to_edm, 1 - ab),
                    (noise.edm_to_vp, ab), (noise.edm_to_flow, ab)]:
        ref = fn(arg)
        for out in (jax.jit(fn)(arg), jax.vmap(fn)(arg)):
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), out, ref)


@pytest.mark.parametrize("fn, value, name, expected", [
    (noise.vp_to_edm, [0.5, 0.0], "alpha_bar", r"values in \(0, 1\], got 0\.0"),
    (noise.vp_to_edm, 1.5, "alpha_bar", r"values in \(0, 1\], got 1\.5"),
    (noise.vp_to_edm, -0.1, "alpha_bar", r"values in \(0, 1\], got -0\.1"),
    (noise.vp_to_edm, float("nan"), "alpha_bar", r"finite values"),
    (noise.flow_to_edm, 1.0, "t", r"values in \[0, 1\), got 1\.0"),
    (noise.flow_to_edm, [0.2, -0.5], "t", r"values in \[0, 1\), got -0\.5"),
    (noise.flow_to_edm, float("inf"), "t", r"finite values"),
    (noise.edm_to_vp, -1.0, "sigma", r"values >= 0, got -1\.0"),
    (noise.edm_to_vp, float("inf"), "sigma", r"finite values"),
    (noise.edm_to_flow, [1.0, -2.0], "sigma", r"values >= 0, got -2\.0"),
    (noise.edm_to_flow, float("nan"), "sigma", r"finite values"),
])
def test_conversions_reject_bad_inputs(fn, value, name, expected):
    with pytest.raises(ValueError, match=rf"^{name}: expected {expected}"):
        fn(value)


def test_value_checks_are_skipped_on_tracers():
    # Inside jit the values are unknown: no check, no host sync, no error.
    out = jax.jit(noise.vp_to_edm)(jnp.array([1.5]))
    assert out.sigma.shape == (1,)


# ------------------------------------------------------------------------------------------
# float64 (run with JAX_ENABLE_X64=1)
# ------------------------------------------------------------------------------------------

@pytest.mark.x64
def test_x64_grids_and_conversions_to_float64_precision():
    s = noise.karras_sigmas(40, 0.002, 80.0, 7.0)
    assert s.dtype == jnp.float64
    np.testing.assert_allclose(s, _np_karras(40, 0.002, 80.0, 7.0), rtol=1e-12)
    np.testing.assert_allclose(noise.log_sigmas(9, 1e-3, 1e3), np.logspace(-3, 3, 9),
                               rtol=1e-12)
    sig = jnp.asarray(SIGMAS)
    np.testing.assert_allclose(noise.vp_to_edm(noise.edm_to_vp(sig)).sigma, SIGMAS, rtol=1e-10)
    np.testing.assert_allclose(noise.flow_to_edm(noise.edm_to_flow(sig)).sigma, SIGMAS,
                               rtol=1e-10)
    c = noise.edm_precond(sig, 0.5)
    np.testing.assert_allclose(c.c_skip * SIGMAS**2, c.c_out**2, rtol=1e-12)
