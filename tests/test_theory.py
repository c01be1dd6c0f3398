"""Error-prone toy models (jaxgap.theory) against float64 NumPy brute force."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap.denoisers import EmpiricalDenoiser
from jaxgap.losses import denoising_loss
from jaxgap.theory import (
    InputNoiseError,
    KernelWidthError,
    LogitNoiseError,
    PositionError,
    loss_expansion,
    position_error_field,
    with_error,
)


def _data(n=24, d=4, m=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(m, d)).astype(np.float32)


def _weights(x, y, var, logit_shift=0.0):
    """Float64 ``softmax_i(-|x - y_i|^2 / 2 var + shift_i)``, ``[M, N]``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    var = np.broadcast_to(np.asarray(var, np.float64), x.shape[:1])
    logits = -0.5 * np.sum((x[:, None] - y[None]) ** 2, -1) / var[:, None] + logit_shift
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


def _brute_position(x, y, sigma, delta):
    var = np.asarray(sigma, np.float64) ** 2 + delta**2
    m = _weights(x, y, var) @ np.asarray(y, np.float64)
    lam = np.broadcast_to(delta**2 / var, x.shape[:1])[:, None]
    return m + lam * (np.asarray(x, np.float64) - m)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0])
@pytest.mark.parametrize("delta", [0.0, 0.1, 0.7])
def test_position_error_brute_force(sigma, delta):
    y, x = _data()
    out = PositionError(y, delta)(x, sigma)
    np.testing.assert_allclose(out, _brute_position(x, y, sigma, delta), rtol=1e-5, atol=1e-5)


def test_position_error_per_query_sigma_and_batch_shape():
    y, x = _data()
    sig = np.linspace(0.1, 2.0, x.shape[0]).astype(np.float32)
    P = PositionError(y, 0.3)
    np.testing.assert_allclose(P(x, sig), _brute_position(x, y, sig, 0.3), rtol=1e-5, atol=1e-5)
    assert P(x.reshape(1, 7, 4), 0.5).shape == (1, 7, 4)
    w = P.weights(x, 0.5)
    np.testing.assert_allclose(w, _weights(x, y, 0.25 + 0.09), rtol=1e-4, atol=1e-6)


def test_position_error_delta_zero_is_empirical():
    y, x = _data()
    for sigma in (0.01, 0.3, 2.0):
        np.testing.assert_array_equal(PositionError(y, 0.0)(x, sigma),
                                      EmpiricalDenoiser(y)(x, sigma))


def test_kernel_width_error_brute_force():
    y, x = _data()
    for sigma, tau in [(0.05, 0.2), (0.5, 0.5), (2.0, 0.0)]:
        out = KernelWidthError(y, tau)(x, sigma)
        want = _weights(x, y, sigma**2 + tau**2) @ y.astype(np.float64)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_input_noise_error_is_explicit_average(key):
    y, x = _data()
    model = InputNoiseError(key, y, 0.3, num_draws=5)
    assert model.eta.shape == (5, 4)
    D = EmpiricalDenoiser(y)
    eta = np.asarray(model.eta)
    want = np.mean([np.asarray(D(x + 0.3 * eta[j], 0.4)) for j in range(5)], axis=0)
    np.testing.assert_allclose(model(x, 0.4), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(InputNoiseError(key, y, 0.0)(x, 0.4), D(x, 0.4), atol=1e-6)


def test_logit_noise_error_brute_force(key):
    y, x = _data()
    for sigma, s in [(0.05, 0.5), (0.5, 1.0), (2.0, 2.0)]:
        model = LogitNoiseError(key, y, s)
        g = np.asarray(model.g, np.float64)
        want = _weights(x, y, sigma**2, s * g[None, :]) @ y.astype(np.float64)
        np.testing.assert_allclose(model(x, sigma), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(LogitNoiseError(key, y, 0.0)(x, 0.3),
                               EmpiricalDenoiser(y)(x, 0.3), atol=1e-5)


def test_with_error(key):
    y, x = _data()
    D, e = EmpiricalDenoiser(y), KernelWidthError(y, 0.5)
    model = with_error(D, e, 0.25)
    np.testing.assert_allclose(model(x, 0.4), D(x, 0.4) + 0.25 * e(x, 0.4), atol=1e-6)
    plain = with_error(D, lambda x, sigma: jnp.ones_like(x), -1.0)  # a plain function
    # A function is a static leaf: jaxgap's jit boundary (equinox.filter_jit) holds it static.
    np.testing.assert_allclose(eqx.filter_jit(lambda m, x: m(x, 0.4))(plain, x),
                               D(x, 0.4) - 1.0, atol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda x: plain(x, 0.4))(x), D(x, 0.4) - 1.0, atol=1e-6)
    g = jax.grad(lambda eps: jnp.sum(with_error(D, e, eps)(x, 0.4)))(0.25)
    np.testing.assert_allclose(g, jnp.sum(e(x, 0.4)), rtol=1e-5)


def test_loss_expansion_matches_denoising_loss(key):
    y, _ = _data(n=32)
    D = EmpiricalDenoiser(y)
    e = lambda x, sigma: jnp.sin(3.0 * x) * sigma[..., None]  # noqa: E731 (a plain function)
    sig = jnp.array([0.05, 0.3, 1.0, 4.0])
    ex = loss_expansion(key, D, e, y, sig, num_noise=2)
    np.testing.assert_allclose(ex.base, denoising_loss(key, D, y, sig, num_noise=2),
                               rtol=1e-6, atol=1e-7)
    for eps in (0.3, -0.05):
        full = denoising_loss(key, with_error(D, e, eps), y, sig, num_noise=2)
        np.testing.assert_allclose(ex.base + 2 * eps * ex.cross + eps**2 * ex.power, full,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ex.loss(eps), full, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(ex.power) >= 0)


def test_position_error_field_remainder_is_second_order():
    y, x = _data()
    sigma = 1.0
    D = EmpiricalDenoiser(y)(x, sigma)
    e = position_error_field(y)(x, sigma)
    amps = 0.1 / 2.0 ** np.arange(5)  # delta^2, four halvings
    rem = [float(jnp.linalg.norm(PositionError(y, np.sqrt(a))(x, sigma) - D - a * e))
           for a in amps]
    slope = np.polyfit(np.log(amps), np.log(rem), 1)[0]
    print(f"remainder slope in delta^2: {slope:.3f}", rem)
    assert 1.85 < slope < 2.15, (slope, rem)


def test_position_error_jvp_grad_in_delta():
    y, x = _data()
    f = lambda d: jnp.sum(PositionError(y, d)(x, 0.5) ** 2)  # noqa: E731
    g = jax.grad(f)(0.3)
    fd = (f(0.31) - f(0.29)) / 0.02
    np.testing.assert_allclose(g, fd, rtol=2e-2)
    model = PositionError(y, 0.3)
    tangent = jax.tree.map(jnp.zeros_like, model)
    tangent.delta = jnp.ones(())
    _, t = jax.jvp(lambda m: jnp.sum(m(x, 0.5) ** 2), (model,), (tangent,))
    np.testing.assert_allclose(t, g, rtol=1e-4)


def test_pytrees_through_jit(key):
    y, x = _data()
    models = [PositionError(y, 0.2), KernelWidthError(y, 0.2),
              InputNoiseError(key, y, 0.2, num_draws=5), LogitNoiseError(key, y, 0.2),
              position_error_field(y, 0.1),
              with_error(EmpiricalDenoiser(y), KernelWidthError(y, 0.2), 0.1)]
    call = jax.jit(lambda m, x, s: m(x, s))
    for m in models:
        leaves, tree = jax.tree.flatten(m)
        np.testing.assert_allclose(call(jax.tree.unflatten(tree, leaves), x, 0.4), m(x, 0.4),
                                   rtol=1e-5, atol=1e-6)


def test_bad_inputs(key):
    y, x = _data()
    with pytest.raises(ValueError, match="delta"):
        PositionError(y, -0.1)
    with pytest.raises(ValueError, match="tau"):
        KernelWidthError(y, -1.0)
    with pytest.raises(ValueError, match="tau"):
        InputNoiseError(key, y, -1.0)
    with pytest.raises(ValueError, match="s:"):
        LogitNoiseError(key, y, float("nan"))
    with pytest.raises(ValueError, match="key"):
        InputNoiseError(0, y, 0.1)
    with pytest.raises(ValueError, match="train"):
        PositionError(y[0], 0.1)
    for m in (PositionError(y, 0.1), InputNoiseError(key, y, 0.1), LogitNoiseError(key, y, 0.1),
              position_error_field(y)):
        with pytest.raises(ValueError, match="x"):
            m(x[:, :3], 0.5)
    with pytest.raises(ValueError, match="error_field"):
        with_error(EmpiricalDenoiser(y), EmpiricalDenoiser(y[:, :3]), 0.1)
    with pytest.raises(ValueError, match="error_field"):
        loss_expansion(key, EmpiricalDenoiser(y), position_error_field(y[:, :3]), y,
                       jnp.array([0.5]))
    with pytest.raises(ValueError, match="data"):
        loss_expansion(key, EmpiricalDenoiser(y), position_error_field(y), y[:, :3],
                       jnp.array([0.5]))
    with pytest.raises(ValueError, match="error_field"):
        loss_expansion(key, EmpiricalDenoiser(y), 3.0, y, jnp.array([0.5]))
    with pytest.raises(ValueError, match="key"):
        loss_expansion(EmpiricalDenoiser(y), position_error_field(y), y, jnp.array([0.5]), key)


def _conditional(x, sigma, cond):
    """A conditional denoiser ``D(x, sigma, cond)``: shrink, then shift by the class id."""
    return 0.5 * x + cond[..., None].astype(x.dtype)


def test_cond_passes_through(key):
    y, x = _data()
    e = lambda x, sigma: jnp.ones_like(x)  # noqa: E731
    c = jnp.arange(x.shape[0]) % 3
    model = with_error(_conditional, e, 0.25)
    np.testing.assert_allclose(model(x, 0.4, c), 0.5 * x + c[:, None] + 0.25, rtol=1e-6)
    sig = jnp.array([0.1, 1.0])
    cy = jnp.arange(y.shape[0]) % 3
    ex = loss_expansion(key, _conditional, e, y, sig, cond=cy, num_noise=2)
    np.testing.assert_allclose(ex.base, denoising_loss(key, _conditional, y, sig, cond=cy,
                                                       num_noise=2), rtol=1e-6)
    full = denoising_loss(key, model, y, sig, cond=cy, num_noise=2)
    np.testing.assert_allclose(ex.loss(0.25), full, rtol=1e-5)
    # A conditional error field gets the condition too.
    e_c = lambda x, sigma, cond: jnp.ones_like(x) * cond[..., None]  # noqa: E731
    np.testing.assert_allclose(with_error(_conditional, e_c, 1.0)(x, 0.4, c),
                               0.5 * x + 2 * c[:, None], rtol=1e-6)
    ex_c = loss_expansion(key, _conditional, e_c, y, sig, cond=cy)
    np.testing.assert_allclose(ex_c.power, np.full(2, np.mean(np.asarray(cy) ** 2)), rtol=1e-6)


def test_cond_rejected_or_required(key):
    y, _ = _data()
    sig = jnp.array([0.5])
    cy = jnp.zeros(y.shape[0], jnp.int32)
    e = position_error_field(y)
    with pytest.raises(ValueError, match="cond"):  # unconditional: no cond
        loss_expansion(key, EmpiricalDenoiser(y), e, y, sig, cond=cy)
    with pytest.raises(ValueError, match="cond"):  # conditional: cond required
        loss_expansion(key, _conditional, e, y, sig)
    with pytest.raises(ValueError, match="cond"):
        denoising_loss(key, with_error(EmpiricalDenoiser(y), e, 0.1), y, sig, cond=cy)
    with pytest.raises(ValueError, match="cond"):
        denoising_loss(key, with_error(_conditional, e, 0.1), y, sig)
