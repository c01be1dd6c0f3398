r"""Samplers: solver order against the analytic Gaussian flow, diffrax reference, Monte Carlo
covariance, per-sample keys, EDM churn, trajectories, compile counts, validation.

The analytic reference. For data ``N(mu, C)``, ``C = V diag(lambda) V^T``, the optimal
denoiser is the Wiener filter ``D = mu + C (C + s^2 I)^{-1} (x - mu)``, so in the eigenbasis
``z = V^T (x - mu)`` the velocity is ``(x - D)_k / s = z_k s / (lambda_k + s^2)``: each
coordinate obeys ``d log z_k / ds = s / (lambda_k + s^2) = (1/2) d log(lambda_k + s^2) / ds``,

    z_k(s) = z_k(s0) * sqrt((lambda_k + s^2) / (lambda_k + s0^2)),

which ``test_gaussian_flow_closed_form`` checks against the ODE by finite differences in
float64 NumPy, independently of the code under test.

float32 tolerances (eps32 = 1.2e-7): states of size ~10 carry rounding ~1e-6 after a few
hundred steps, so the float32 comparisons with the exact flow use ~1e-5 relative; the
discretization errors whose slopes are measured are >= 3e-2 (Euler) and >= 5e-4 (Heun),
far above rounding.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap import noise
from jaxgap.denoisers import GaussianDenoiser, GMMDenoiser, Pytree
from jaxgap.sampling import (
    Trajectory,
    edm_stochastic,
    euler,
    heun,
    reference_solve,
    sample,
)

LAMBDAS = np.array([0.05, 0.3, 1.0, 2.5])  # eigenvalues of the d = 4 test covariance


@pytest.fixture(scope="module")
def gauss():
    """A rotated d = 4 Gaussian, as float32 parameters plus the float64 eigenbasis of the
    float32 covariance the denoiser actually sees."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    mean = np.float32(rng.normal(size=4))
    cov = np.float32(q @ np.diag(LAMBDAS) @ q.T)
    lam, vec = np.linalg.eigh(np.float64(cov))
    return GaussianDenoiser(mean, cov), np.float64(mean), np.float64(cov), lam, vec


def _exact_flow(x0, s0, s, mean, lam, vec):
    """Closed-form probability-flow solution from ``(x0, s0)`` to level ``s`` (float64)."""
    z = (np.float64(x0) - mean) @ vec
    return mean + (z * np.sqrt((lam + s**2) / (lam + s0**2))) @ vec.T


def _wiener(x, s, mean, cov):
    """Float64 Wiener filter by a linear solve (independent of GaussianDenoiser)."""
    return mean + (cov @ np.linalg.solve(cov + s**2 * np.eye(len(mean)), (x - mean).T)).T


def test_gaussian_flow_closed_form(gauss):
    """The closed form satisfies dx/ds = (x - D(x, s)) / s (central differences, float64)."""
    _, mean, cov, lam, vec = gauss
    x0 = mean + 5.0 * np.random.default_rng(1).normal(size=(8, 4))
    for s in (0.05, 0.7, 3.0, 20.0):
        h = 1e-5 * s
        deriv = (_exact_flow(x0, 10.0, s + h, mean, lam, vec)
                 - _exact_flow(x0, 10.0, s - h, mean, lam, vec)) / (2 * h)
        x = _exact_flow(x0, 10.0, s, mean, lam, vec)
        vel = (x - _wiener(x, s, mean, cov)) / s
        # central-difference error O(h^2 x''') ~ 1e-10 relative, rounding ~1e-16 / 1e-5
        np.testing.assert_allclose(deriv, vel, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(_exact_flow(x0, 10.0, 10.0, mean, lam, vec), x0, rtol=1e-14)


@pytest.mark.parametrize(("solver", "order"), [(euler, 1.0), (heun, 2.0)])
def test_convergence_order(gauss, solver, order):
    """Log-log slope of the end-point error vs the number of steps: -1 (Euler), -2 (Heun).

    Geometric schedule 10 -> 0.1 without a final 0, 64 starting points, steps 8..128.
    Measured (float32, CPU): Euler -0.98, Heun -2.04. Tolerance +-0.2 (Euler) and +-0.3
    (Heun) on the fitted slope: the pre-asymptotic bend at 8 steps moves it by <= 0.05.
    """
    den, mean, _, lam, vec = gauss
    s0, s1 = 10.0, 0.1
    x0 = np.float32(mean + s0 * np.random.default_rng(2).normal(size=(64, 4)))
    exact = _exact_flow(x0, s0, s1, mean, lam, vec)
    steps = np.array([8, 16, 32, 64, 128])
    errors = []
    for n in steps:
        x = solver(den, x0, np.geomspace(s0, s1, n + 1))
        errors.append(np.max(np.abs(np.float64(x) - exact)))
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert -order - 0.1 * (1 + order) <= slope <= -order + 0.1 * (1 + order), (slope, errors)
    assert errors[-1] > 1e-4  # still far above float32 rounding (~1e-6): the slope is real


@pytest.mark.parametrize("variable", ["log_sigma", "sigma"])
def test_reference_solve_matches_closed_form(gauss, variable):
    """Tsit5 at rtol = atol = 1e-8 against the exact flow at save_sigmas (the last one the end).

    float32: the tolerance is below eps32, so the error is rounding, ~1e-6 of |x| ~ 5 (measured
    3e-7 to 6e-7 relative); asserted: 2e-5 relative to max |x|.
    """
    den, mean, _, lam, vec = gauss
    s0, s1 = 80.0, 0.05
    x0 = np.float32(mean + s0 * np.random.default_rng(3).normal(size=(16, 4)))
    save = np.array([80.0, 10.0, 1.0, 0.1, s1], np.float32)
    xs = np.float64(reference_solve(den, x0, s0, s1, save_sigmas=save, variable=variable))
    assert xs.shape == (5, 16, 4)
    for x_s, s in zip(xs, save, strict=True):
        ref = _exact_flow(x0, s0, float(s), mean, lam, vec)
        np.testing.assert_allclose(x_s, ref, atol=2e-5 * np.max(np.abs(ref)))


def test_reference_solve_matches_heun_nonlinear(key):
    """On a nonlinear flow (a two-component GMM, no closed form) Heun converges to the
    reference at second order: errors vs reference_solve fall ~4x per doubling, and 256
    steps agree to < 1e-3 of |x|."""
    den = GMMDenoiser(jnp.array([0.3, 0.7]), jnp.array([[-1.0, 0.5], [1.5, -0.5]]),
                      jnp.array([0.2, 0.4]))
    x0 = 10.0 * jax.random.normal(key, (32, 2))
    ref = np.float64(reference_solve(den, x0, 10.0, 0.05))
    errors = [np.max(np.abs(np.float64(heun(den, x0, np.geomspace(10.0, 0.05, n + 1))) - ref))
              for n in (32, 64, 128, 256)]
    slope = np.polyfit(np.log([32, 64, 128, 256]), np.log(errors), 1)[0]
    assert -2.3 <= slope <= -1.7, (slope, errors)
    assert errors[-1] < 1e-3 * np.max(np.abs(ref))


@pytest.mark.parametrize(("method", "s_churn"), [("heun", 0.0), ("edm", 30.0)])
def test_sample_covariance(key, method, s_churn):
    """4000 samples of N(mu, C), d = 3, 64 steps: mean and covariance within 4 standard errors.

    The expected moments are those of the exact flow from N(0, 80^2 I) (not N(mu, C + 80^2 I))
    followed by EDM's last step to 0, x -> D(x, sigma_min): per eigendirection
    z_end = a z_T with a = sqrt((lam + smin^2)/(lam + T^2)) * lam / (lam + smin^2), so
    E z_end = -a (V^T mu) and Var z_end = a^2 T^2. They differ from (mu, C) by
    O(lam / T^2) ~ 5e-4, i.e. < 0.05 standard errors. SE of a covariance entry:
    sqrt((C_ii C_jj + C_ij^2) / n); of a mean: sqrt(C_ii / n). The churn sampler must
    preserve the same marginals (its noise is exactly compensated at first order).
    """
    n, sig_min, sig_max = 4000, 0.002, 80.0
    mean = np.array([1.0, -2.0, 0.5])
    a = np.array([[1.0, 0.3, 0.0], [0.2, 0.8, 0.4], [-0.5, 0.1, 0.6]])
    cov = a @ a.T
    den = GaussianDenoiser(np.float32(mean), np.float32(cov))
    x = np.float64(sample(key, den, n, 3, num_steps=64, sigma_min=sig_min, sigma_max=sig_max,
                          method=method, s_churn=s_churn))
    assert x.shape == (n, 3) and np.all(np.isfinite(x))
    lam, vec = np.linalg.eigh(cov)
    gain = np.sqrt((lam + sig_min**2) / (lam + sig_max**2)) * lam / (lam + sig_min**2)
    exp_mean = mean - vec @ (gain * (vec.T @ mean))
    exp_cov = vec @ np.diag(gain**2 * sig_max**2) @ vec.T
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(exp_cov - cov) < 0.05 * se_cov)  # the target is the true covariance
    assert np.all(np.abs(x.mean(0) - exp_mean) < 4 * se_mean), (x.mean(0), exp_mean)
    assert np.all(np.abs(np.cov(x.T) - exp_cov) < 4 * se_cov), (np.cov(x.T), exp_cov)


def test_sample_keys_per_sample(key, gauss):
    """Sample i depends on (key, i) only, not on num nor batch_size (EDM sampler with churn,
    so both the initial noise and the churn noise are covered).

    The initial noise x[0] is compared to 4 eps32 relative: a draw from another key would
    differ by O(1), but XLA may compute the same element's inverse error function in a vector
    lane or in a scalar remainder loop depending on the batch shape (XLA:CPU's elemental
    emitter, as the suite runs it, differs there by 1-2 ulp; its default emitter gives equal
    bits). Later states: rows are independent, but XLA compiles the batched body for another
    shape and may fuse or block it differently, so they are compared to 8 eps32 of the largest
    state (|x| <= ~250 from sigma_max = 80): 2.4e-4 absolute (measured differences <= 4e-6).
    """
    den = gauss[0]
    run = lambda k, num, **kw: sample(k, den, num, 4, num_steps=8, method="edm", s_churn=10.0,
                                      return_trajectory=True, **kw)
    full, few, batched = run(key, 8), run(key, 3), run(key, 8, batch_size=3)
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(few.x[0], full.x[0, :3], rtol=4 * eps, atol=0)
    np.testing.assert_allclose(batched.x[0], full.x[0], rtol=4 * eps, atol=0)
    assert full.x.shape == (9, 8, 4) and full.denoised.shape == (8, 8, 4)
    assert batched.x.shape == (9, 8, 4) and batched.denoised.shape == (8, 8, 4)
    assert few.sigma.shape == (9,) and float(few.sigma[0]) == 80.0 and float(few.sigma[-1]) == 0
    atol = 8 * eps * np.max(np.abs(full.x))
    np.testing.assert_allclose(few.x, full.x[:, :3], rtol=0, atol=atol)
    np.testing.assert_allclose(batched.x, full.x, rtol=0, atol=atol)
    np.testing.assert_allclose(batched.denoised, full.denoised, rtol=0, atol=atol)
    other = run(jax.random.PRNGKey(1), 3)
    assert np.min(np.abs(other.x[-1] - few.x[-1])) > 0


def test_edm_without_churn_equals_heun(key, gauss):
    """s_churn = 0 (and churn confined outside the schedule) reproduces heun: the same
    arithmetic, compiled as a different program, so equal to a few float32 ulps (XLA may fuse
    the two programs differently on other CPUs)."""
    den = gauss[0]
    x0 = 80.0 * jax.random.normal(key, (5, 4))
    sigmas = jnp.append(noise.karras_sigmas(12), 0.0)
    ref = heun(den, x0, sigmas)
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(edm_stochastic(key, den, x0, sigmas), ref, **tol)
    np.testing.assert_allclose(
        edm_stochastic(key, den, x0, sigmas, s_churn=40.0, s_min=100.0, s_max=200.0), ref,
        **tol)


def test_edm_churn(key, gauss):
    """Churn > 0 changes the result, is deterministic given the key, and depends on it; the
    batch position, not the batch size, picks the noise; t_hat_i = (1 + gamma_i) t_i."""
    den = gauss[0]
    x0 = 80.0 * jax.random.normal(key, (6, 4))
    sigmas = jnp.append(noise.karras_sigmas(12), 0.0)
    run = lambda k, x: edm_stochastic(k, den, x, sigmas, s_churn=20.0, s_max=10.0,
                                      return_trajectory=True)
    a = run(key, x0)
    np.testing.assert_array_equal(run(key, x0).x, a.x)
    assert np.max(np.abs(a.x[-1] - heun(den, x0, sigmas))) > 1e-2
    assert np.max(np.abs(a.x[-1] - run(jax.random.PRNGKey(7), x0).x[-1])) > 1e-2
    atol = 8 * np.finfo(np.float32).eps * np.max(np.abs(a.x))  # as in the test above
    np.testing.assert_allclose(run(key, x0[:2]).x, a.x[:, :2], rtol=0, atol=atol)
    # gamma = min(20 / 12, sqrt 2 - 1) where t_i <= s_max = 10, else 0
    gamma = np.where(np.asarray(sigmas[:-1]) <= 10.0, math.sqrt(2.0) - 1.0, 0.0)
    np.testing.assert_allclose(a.sigma_hat, (1 + gamma) * np.asarray(sigmas[:-1]), rtol=1e-6)
    # no churn above s_max: the first steps are plain Heun steps
    first = int(np.argmax(gamma > 0))
    np.testing.assert_allclose(a.x[:first + 1], heun(den, x0, sigmas[:first + 1],
                                                     return_trajectory=True).x,
                               rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("method", ["euler", "heun", "edm"])
def test_trajectory(key, gauss, method):
    """Shapes [S+1, ..., d] / [S, ..., d]; x[0] = x_init, x[-1] = the returned end state,
    denoised[i] = D(x[i], sigma[i]) without churn; any batch shape."""
    den = gauss[0]
    x0 = 80.0 * jax.random.normal(key, (2, 3, 4))
    sigmas = jnp.append(noise.karras_sigmas(6), 0.0)
    run = {"euler": lambda **kw: euler(den, x0, sigmas, **kw),
           "heun": lambda **kw: heun(den, x0, sigmas, **kw),
           "edm": lambda **kw: edm_stochastic(key, den, x0, sigmas, s_churn=5.0, **kw)}[method]
    traj = run(return_trajectory=True)
    assert isinstance(traj, Trajectory)
    assert traj.sigma.shape == (7,) and traj.sigma_hat.shape == (6,)
    assert traj.x.shape == (7, 2, 3, 4) and traj.denoised.shape == (6, 2, 3, 4)
    np.testing.assert_allclose(traj.x[-1], run(), rtol=1e-5, atol=1e-6)  # another program
    np.testing.assert_array_equal(traj.x[0], x0)
    np.testing.assert_array_equal(traj.sigma, sigmas)
    if method != "edm":
        np.testing.assert_array_equal(traj.sigma_hat, sigmas[:-1])
        np.testing.assert_allclose(traj.denoised, den(traj.x[:-1], traj.sigma[:-1, None, None]),
                                   rtol=1e-5, atol=1e-5)
    # the last step to 0 is an Euler step: it lands on the last denoised value
    np.testing.assert_allclose(traj.x[-1], traj.denoised[-1], rtol=1e-6, atol=1e-6)


class _Counting(Pytree):
    """D(x, s) = scale * x / (1 + s^2) (the optimal denoiser of N(0, I) when scale = 1)
    that counts how often it is traced."""

    _fields = ("scale",)
    _static = ("dim",)
    traces = 0

    def __init__(self, scale, dim):
        self.scale = jnp.asarray(scale, jnp.float32)
        self.dim = dim

    def __call__(self, x, sigma):
        if isinstance(x, jax.core.Tracer):
            type(self).traces += 1
        return self.scale * x / (1.0 + jnp.square(sigma))


def test_compiled_once(key):
    """New keys, parameter values, schedules and churn reuse the compiled program."""
    den = _Counting(1.0, 3)
    sample(key, den, 7, 3, num_steps=5, method="edm", s_churn=1.0)
    before = _Counting.traces
    assert before > 0
    sample(jax.random.PRNGKey(3), _Counting(0.5, 3), 7, 3, num_steps=5, sigma_max=20.0,
           rho=3.0, method="edm", s_churn=2.0)
    assert _Counting.traces == before
    x0 = jnp.ones((4, 3))
    heun(den, x0, jnp.array([3.0, 1.0, 0.0]))
    after_heun = _Counting.traces
    heun(_Counting(2.0, 3), 2 * x0, jnp.array([5.0, 0.5, 0.1]))
    assert _Counting.traces == after_heun
    sample(key, den, 8, 3, num_steps=5, method="edm", s_churn=1.0)  # new num: one new trace
    assert _Counting.traces > after_heun


def test_plain_function_denoiser(key):
    """A plain function (not a pytree of arrays) is a valid denoiser: N(0, I) data, so the
    exact flow is x(s) = x(s0) sqrt((1 + s^2)/(1 + s0^2))."""
    x0 = 10.0 * jax.random.normal(key, (8, 2))
    x = heun(lambda x, s: x / (1.0 + s**2), x0, np.geomspace(10.0, 0.1, 257))
    exact = np.float64(x0) * math.sqrt((1 + 0.01) / (1 + 100.0))
    np.testing.assert_allclose(x, exact, rtol=1e-3, atol=1e-4)


BAD = [
    ("x_init", lambda d: heun(d, jnp.ones((3, 5)), jnp.array([1.0, 0.0]))),
    ("sigmas", lambda d: heun(d, jnp.ones((3, 4)), jnp.array([1.0, 2.0, 0.0]))),
    ("sigmas", lambda d: heun(d, jnp.ones((3, 4)), jnp.array([2.0, 1.0, -0.5]))),
    ("sigmas", lambda d: heun(d, jnp.ones((3, 4)), jnp.array([2.0, 0.0, 0.0]))),
    ("sigmas", lambda d: euler(d, jnp.ones((3, 4)), jnp.array([jnp.inf, 1.0]))),
    ("sigmas", lambda d: euler(d, jnp.ones((3, 4)), jnp.array([2.0, jnp.nan]))),
    ("sigmas", lambda d: euler(d, jnp.ones((3, 4)), jnp.array([2.0]))),
    ("sigmas", lambda d: euler(d, jnp.ones((3, 4)), jnp.ones((2, 2)))),
    ("denoiser", lambda d: heun("D", jnp.ones((3, 4)), jnp.array([1.0, 0.0]))),
    ("key", lambda d: edm_stochastic(0, d, jnp.ones((3, 4)), jnp.array([1.0, 0.0]))),
    ("s_churn", lambda d: edm_stochastic(jax.random.PRNGKey(0), d, jnp.ones((3, 4)),
                                         jnp.array([1.0, 0.0]), s_churn=-1.0)),
    ("s_max", lambda d: edm_stochastic(jax.random.PRNGKey(0), d, jnp.ones((3, 4)),
                                       jnp.array([1.0, 0.0]), s_min=2.0, s_max=1.0)),
    ("num", lambda d: sample(jax.random.PRNGKey(0), d, 0, 4)),
    ("dim", lambda d: sample(jax.random.PRNGKey(0), d, 3, 5)),
    ("method", lambda d: sample(jax.random.PRNGKey(0), d, 3, 4, method="ddim")),
    ("batch_size", lambda d: sample(jax.random.PRNGKey(0), d, 3, 4, batch_size=0)),
    ("num_steps", lambda d: sample(jax.random.PRNGKey(0), d, 3, 4, num_steps=1)),
    ("s_churn", lambda d: sample(jax.random.PRNGKey(0), d, 3, 4, s_churn=5.0)),
    ("sigma_min", lambda d: sample(jax.random.PRNGKey(0), d, 3, 4, sigma_min=100.0)),
    ("sigma_end", lambda d: reference_solve(d, jnp.ones((3, 4)), 1.0, 2.0)),
    ("sigma_end", lambda d: reference_solve(d, jnp.ones((3, 4)), 1.0, 0.0)),
    ("solver", lambda d: reference_solve(d, jnp.ones((3, 4)), 2.0, 1.0, solver="rk4")),
    ("variable", lambda d: reference_solve(d, jnp.ones((3, 4)), 2.0, 1.0, variable="t")),
    ("save_sigmas", lambda d: reference_solve(d, jnp.ones((3, 4)), 2.0, 1.0,
                                              save_sigmas=jnp.array([1.5, 0.5]))),
    ("save_sigmas", lambda d: reference_solve(d, jnp.ones((3, 4)), 2.0, 1.0,
                                              save_sigmas=jnp.array([1.2, 1.5]))),
]


@pytest.mark.parametrize(("name", "call"), BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_inputs(gauss, name, call):
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        call(gauss[0])


@pytest.mark.x64
def test_order_and_reference_x64(gauss):
    """float64: Heun's slope over 8..1024 steps and reference_solve to ~1e-8 of the exact flow."""
    den64 = GaussianDenoiser(gauss[1], gauss[2])
    _, mean, _, lam, vec = gauss
    lam, vec = np.linalg.eigh(gauss[2])
    x0 = mean + 10.0 * np.random.default_rng(4).normal(size=(16, 4))
    exact = _exact_flow(x0, 10.0, 0.1, mean, lam, vec)
    steps = np.array([8, 32, 128, 512, 1024])
    errors = [np.max(np.abs(np.asarray(heun(den64, x0, np.geomspace(10.0, 0.1, n + 1)))
                            - exact)) for n in steps]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert -2.1 <= slope <= -1.9, (slope, errors)
    x_ref = np.asarray(reference_solve(den64, x0, 10.0, 0.1, rtol=1e-10, atol=1e-10))
    assert x_ref.dtype == np.float64
    np.testing.assert_allclose(x_ref, exact, atol=1e-8 * np.max(np.abs(exact)))
