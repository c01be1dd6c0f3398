"""In-graph guards: a denoiser called inside compiled code with a bad ``sigma`` says so.

Eagerly, a host ``sigma`` (a Python number or NumPy array) is checked before the call and
gives a ``ValueError``; a ``jax.Array`` or a traced ``sigma`` (under the caller's
``jax.jit``, ``vmap``, ``grad``, or inside jaxgap's compiled loops) is checked inside the
compiled call with ``equinox.error_if``, which raises at run time. Before the guard, such a
call returned NaN (``sigma = 0``, NaN) or finite nonsense (``sigma < 0``) silently.

Sizes are tiny (compilation is the cost): one ``jax.jit`` program per denoiser kind serves
every bad and good ``sigma`` value (``sigma`` is traced).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgap.denoisers import (
    EmpiricalDenoiser,
    GaussianDenoiser,
    GMMDenoiser,
    ShardedEmpiricalDenoiser,
)
from jaxgap.nets import MLPDenoiser

D = 3
MSG = "sigma: expected finite values > 0"
BAD = [0.0, -0.5, float("nan"), float("inf")]


def _train():
    return np.random.default_rng(0).standard_normal((8, D)).astype(np.float32)


def _make(kind):
    train = _train()
    # the guard sits in the base class, in front of any kernel: the cheapest kernels to
    # compile (the default num_exact=4 is tested in test_empirical.py)
    if kind == "empirical":
        return EmpiricalDenoiser(train, num_exact=0)
    if kind == "sharded":
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("points",))
        return ShardedEmpiricalDenoiser(train, mesh, num_exact=1)
    if kind == "gaussian":
        return GaussianDenoiser.from_data(train)
    if kind == "gmm":
        covs = np.stack([np.eye(D), 0.5 * np.eye(D)]).astype(np.float32)
        return GMMDenoiser(np.array([1.0, 2.0]), train[:2], covs)
    mlp = MLPDenoiser(D, width=8, depth=1, emb_dim=8, rngs=nnx.Rngs(0))
    kernel = mlp.net.linear_out.kernel
    kernel[...] = jnp.asarray(  # F != 0: the output depends on the network
        0.3 * np.random.default_rng(1).standard_normal(kernel.shape), jnp.float32)
    return mlp


KINDS = ["empirical", "sharded", "gaussian", "gmm", "precond"]


@pytest.fixture(scope="module", params=KINDS)
def den(request):
    return _make(request.param)


def _x(batch=(4,)):
    return jnp.asarray(np.random.default_rng(2).standard_normal((*batch, D)), jnp.float32)


# One program per denoiser kind and input structure: the denoiser is an argument (a
# pytree), sigma is traced, so every bad and good value reuses it.
_jit_call = jax.jit(lambda den, x, sigma: den(x, sigma))
_jit_vmap = jax.jit(jax.vmap(lambda den, x, sigma: den(x, sigma), in_axes=(None, 0, 0)))


def _raises(fn, *args):
    # jax reports a failed callback as a RuntimeError (JaxRuntimeError, EquinoxRuntimeError)
    # or, under grad, as a ValueError
    with pytest.raises((RuntimeError, ValueError), match=MSG):
        jax.block_until_ready(fn(*args))


@pytest.mark.parametrize("bad", BAD)
def test_jit_raises(den, bad):
    _raises(_jit_call, den, _x(), jnp.float32(bad))


def test_vmap_raises(den):
    # a batch of noise levels (x [B, 4, d], sigma [B]), one entry bad, the others good
    x = jnp.stack([_x(), 2.0 * _x(), -_x()])
    for bad in (0.0, -1.0):
        _raises(_jit_vmap, den, x, jnp.array([0.5, bad, 2.0], jnp.float32))
    ok = _jit_vmap(den, x, jnp.array([0.5, 1.0, 2.0], jnp.float32))
    # batched matmuls may round differently from unbatched ones: float32 tolerance
    np.testing.assert_allclose(np.asarray(ok[1]), np.asarray(_jit_call(den, x[1], 1.0)),
                               rtol=1e-5, atol=1e-6)


def test_eager_jax_array_raises(den):
    # an eager call with a device array is checked inside the compiled call (no host sync)
    _raises(den, _x(), jnp.float32(0.0))


def test_eager_host_sigma_value_error(den):
    # host values keep the eager ValueError raised before the compiled call
    with pytest.raises(ValueError, match="sigma: expected values > 0"):
        den(_x(), 0.0)
    with pytest.raises(ValueError, match="sigma: expected finite values"):
        den(_x(), np.array([0.5, np.nan, 1.0, 1.0], np.float32))


def test_good_sigma_unchanged(den):
    # the check is threaded through the result, not through sigma: the eager call equals
    # the unguarded computation bit for bit; the caller's jit compiles the broadcast of
    # sigma into the same program, which may move the last bit (fusion)
    x, sig = _x(), jnp.float32(0.3)
    eager = den(x, sig)
    unguarded = den._denoise(x, jnp.broadcast_to(sig, x.shape[:-1]))
    assert np.all(np.isfinite(np.asarray(eager)))
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(unguarded))
    np.testing.assert_allclose(np.asarray(_jit_call(den, x, sig)), np.asarray(eager),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["empirical", "precond"])
def test_grad(kind):
    den = _make(kind)
    x = _x()
    value_and_grad = jax.jit(jax.value_and_grad(lambda s: jnp.sum(den(x, s) ** 2)))
    _, g = value_and_grad(jnp.float32(0.7))
    eps = 1e-2  # central difference: O(eps^2) ~ 1e-4 relative, f32 rounding ~1e-5 / eps
    hi, lo = value_and_grad(jnp.float32(0.7 + eps))[0], value_and_grad(jnp.float32(0.7 - eps))[0]
    np.testing.assert_allclose(float(g), float(hi - lo) / (2 * eps), rtol=2e-3)
    _raises(value_and_grad, jnp.float32(-0.7))
