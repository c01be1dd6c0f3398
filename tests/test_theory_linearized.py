"""Linearized sampling and closed-form denoiser Jacobians (jaxgap.theory.linearized)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap.denoisers import EmpiricalDenoiser, GaussianDenoiser
from jaxgap.sampling import heun
from jaxgap.theory import (
    PositionError,
    denoiser_jacobian,
    empirical_jacobian,
    linearized_sampling,
    position_error_jacobian,
    with_error,
)


def _data(n=30, d=4, m=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(m, d)).astype(np.float32)


def _field(x, s):
    return jnp.sin(x) * s


def _gaussian(d=3):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(d, d))
    cov = (a @ a.T / d + 0.5 * np.eye(d)).astype(np.float32)
    return GaussianDenoiser(rng.normal(size=d).astype(np.float32), cov)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_empirical_jacobian_matches_autodiff(sigma):
    y, x = _data()
    D = EmpiricalDenoiser(y)
    want = denoiser_jacobian(D, x, sigma)
    assert want.shape == (5, 4, 4)
    for i in range(x.shape[0]):
        got = empirical_jacobian(y, x[i], sigma)
        assert got.shape == (4, 4)
        np.testing.assert_allclose(got, want[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got, jax.jacfwd(lambda v: D(v, sigma))(x[i]),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(empirical_jacobian(y, x, sigma), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("sigma", "delta"), [(0.3, 0.2), (1.0, 0.5), (0.5, 0.0)])
def test_position_error_jacobian_matches_autodiff(sigma, delta):
    y, x = _data()
    P = PositionError(y, delta)
    for i in range(x.shape[0]):
        got = position_error_jacobian(y, delta, x[i], sigma)
        want = jax.jacfwd(lambda v: P(v, sigma))(x[i])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    batch = position_error_jacobian(y, delta, x, sigma)
    np.testing.assert_allclose(batch, denoiser_jacobian(P, x, sigma), rtol=1e-4, atol=1e-5)
    if delta == 0.0:
        np.testing.assert_allclose(batch, empirical_jacobian(y, x, sigma), rtol=1e-6, atol=1e-7)


def _setup(key):
    D = _gaussian()
    x_init = 3.0 * jax.random.normal(key, (6, 3))
    sigmas = jnp.geomspace(3.0, 0.3, 12)
    return D, x_init, sigmas


def test_linearized_sampling_endpoint_and_finite_difference(key):
    D, x_init, sigmas = _setup(key)
    x_end, dx_end = linearized_sampling(D, _field, x_init, sigmas)
    np.testing.assert_allclose(x_end, heun(D, x_init, sigmas), rtol=1e-6, atol=1e-6)
    eps = 1e-2
    fd = (heun(with_error(D, _field, eps), x_init, sigmas) - x_end) / eps
    np.testing.assert_allclose(fd, dx_end, rtol=5e-2, atol=5e-3)
    assert float(jnp.max(jnp.abs(dx_end))) > 1e-2  # a nontrivial tangent


def test_linearized_sampling_remainder_is_second_order(key):
    D, x_init, sigmas = _setup(key)
    x_end, dx_end = linearized_sampling(D, _field, x_init, sigmas)
    eps = np.array([0.2, 0.1, 0.05, 0.025])
    rem = [float(jnp.linalg.norm(heun(with_error(D, _field, e), x_init, sigmas)
                                 - x_end - e * dx_end)) for e in eps]
    slope = np.polyfit(np.log(eps), np.log(rem), 1)[0]
    assert 1.7 <= slope <= 2.3, (slope, rem)


def test_linearized_sampling_trajectory(key):
    D, x_init, sigmas = _setup(key)
    xs, dxs = linearized_sampling(D, _field, x_init, sigmas, return_trajectory=True)
    assert xs.shape == dxs.shape == (12, 6, 3)
    np.testing.assert_allclose(xs, heun(D, x_init, sigmas, return_trajectory=True).x,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(dxs[0], 0.0)
    x_end, dx_end = linearized_sampling(D, _field, x_init, sigmas)
    np.testing.assert_allclose(dxs[-1], dx_end, rtol=1e-6, atol=1e-6)
    # to sigma = 0 (the final Euler step) with an empirical denoiser
    y, _ = _data()
    sig0 = jnp.append(jnp.geomspace(2.0, 0.2, 8), 0.0)
    xs, dxs = linearized_sampling(EmpiricalDenoiser(y), _field, x_init[:, :1].repeat(4, 1),
                                  sig0, return_trajectory=True)
    assert xs.shape == dxs.shape == (9, 6, 4)
    assert bool(jnp.all(jnp.isfinite(dxs)))


def test_linearized_sampling_validates():
    D = _gaussian()
    with pytest.raises(ValueError, match="sigmas"):
        linearized_sampling(D, _field, jnp.zeros((2, 3)), jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="x_init"):
        linearized_sampling(D, _field, jnp.zeros((2, 4)), jnp.array([2.0, 1.0]))
    with pytest.raises(ValueError, match="error_field"):
        linearized_sampling(D, 3.0, jnp.zeros((2, 3)), jnp.array([2.0, 1.0]))


def test_cond_passes_through(key):
    D, x_init, sigmas = _setup(key)
    cond = jnp.arange(x_init.shape[0]) % 2

    def conditional(x, sigma, c):
        return D(x, sigma) + 0.1 * c[..., None].astype(x.dtype)

    x_end, dx_end = linearized_sampling(conditional, _field, x_init, sigmas, cond=cond)
    np.testing.assert_allclose(x_end, heun(conditional, x_init, sigmas, cond=cond),
                               rtol=1e-6, atol=1e-6)
    eps = 1e-2
    fd = (heun(with_error(conditional, _field, eps), x_init, sigmas, cond=cond) - x_end) / eps
    np.testing.assert_allclose(fd, dx_end, rtol=5e-2, atol=5e-3)
    np.testing.assert_allclose(denoiser_jacobian(conditional, x_init, 0.5, cond=cond),
                               denoiser_jacobian(D, x_init, 0.5), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="cond"):
        linearized_sampling(D, _field, x_init, sigmas, cond=cond)
    with pytest.raises(ValueError, match="cond"):
        denoiser_jacobian(D, x_init, 0.5, cond=cond)
    with pytest.raises(ValueError, match="cond"):
        linearized_sampling(conditional, _field, x_init, sigmas)
