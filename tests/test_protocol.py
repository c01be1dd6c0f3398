"""Conformance: every kind of denoiser through every consumer, eagerly and under jax.jit.

A denoiser is any callable ``D(x, sigma)``: a closed form, an nnx network, a plain function,
a closure over arrays, a ``functools.partial``. Every consumer must accept each of them,
give the same result eagerly and inside an outer ``jax.jit``, pass ``cond=`` through to a
conditional ``D(x, sigma, cond)`` and reject ``cond`` for an unconditional one.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from jaxgap import losses, metrics, nets, sampling, theory
from jaxgap.denoisers import (
    ConditionalDenoiser,
    Denoiser,
    EmpiricalDenoiser,
    GaussianDenoiser,
    GMMDenoiser,
    ShardedEmpiricalDenoiser,
    score,
    velocity,
)

D = 4
RNG = np.random.default_rng(0)
TRAIN = RNG.standard_normal((6, D)).astype(np.float32)
DATA = RNG.standard_normal((5, D)).astype(np.float32)
SIGMAS = jnp.array([0.3, 1.0, 3.0], jnp.float32)
SCHEDULE = jnp.array([2.0, 0.5, 0.0], jnp.float32)
MU = jnp.asarray(TRAIN.mean(0))


def _shrink(x, s, mu, scale):
    """The Wiener filter of N(mu, scale^2 I): a plain function of arrays."""
    s2 = jnp.square(jnp.broadcast_to(s, x.shape[:-1]))[..., None]
    mu = jnp.broadcast_to(jnp.asarray(mu, x.dtype), x.shape)
    return mu + scale**2 / (scale**2 + s2) * (x - mu)


def _closure(mu):
    return lambda x, s: _shrink(x, s, mu, 1.0)


def _kinds():
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    return {
        "empirical": EmpiricalDenoiser(TRAIN),
        "sharded_empirical": ShardedEmpiricalDenoiser(TRAIN, mesh),
        "gaussian": GaussianDenoiser(MU, jnp.eye(D)),
        "gmm": GMMDenoiser(jnp.array([0.5, 0.5]), jnp.stack([MU, -MU]),
                           jnp.stack([jnp.eye(D), 2.0 * jnp.eye(D)])),
        "position_error": theory.PositionError(TRAIN, 0.3),
        "mlp": nets.MLPDenoiser(D, width=16, depth=2, emb_dim=8, rngs=nnx.Rngs(0)),
        "unet": nets.UNetDenoiser((2, 2, 1), channels=(4,), emb_dim=8, rngs=nnx.Rngs(0)),
        "lambda": lambda x, s: _shrink(x, s, 0.0, 1.0),
        "closure": _closure(MU),
        "partial": functools.partial(_shrink, mu=MU, scale=1.0),
        "with_error": theory.with_error(GaussianDenoiser(MU, jnp.eye(D)),
                                        lambda x, s: 0.1 * x, 0.5),
    }


KINDS = _kinds()
FIELD = lambda x, s: jnp.tanh(x)  # noqa: E731 - an error field e(x, sigma) for the theory


def _consumers(den, key):
    """Every consumer of the protocol, each returning an array (or a pytree of arrays)."""
    return {
        "per_example_loss": lambda: losses.per_example_loss(key, den, DATA, SIGMAS),
        # Same shapes and options: the four loss consumers share one compiled program.
        "denoising_loss": lambda: losses.denoising_loss(key, den, DATA, SIGMAS),
        "optimal_loss_identity": lambda: losses.optimal_loss_identity(key, den, DATA, SIGMAS),
        "gap_curve": lambda: losses.gap_curve(key, den, DATA, DATA[::-1], SIGMAS)[1:4],
        "euler": lambda: sampling.euler(den, DATA, SCHEDULE),
        "heun": lambda: sampling.heun(den, DATA, SCHEDULE),
        "edm_stochastic": lambda: sampling.edm_stochastic(key, den, DATA, SCHEDULE, s_churn=1.0),
        "sample": lambda: sampling.sample(key, den, 3, D, num_steps=2),
        "score": lambda: score(den, DATA, 0.7),
        "velocity": lambda: velocity(den, DATA, 0.7),
        "loss_expansion": lambda: theory.loss_expansion(key, den, FIELD, DATA, SIGMAS),
        "linearized_sampling": lambda: theory.linearized_sampling(den, FIELD, DATA, SCHEDULE),
        "denoiser_jacobian": lambda: theory.denoiser_jacobian(den, DATA[:2], 0.7),
        "field_sharpness": lambda: metrics.field_sharpness(den, TRAIN, SIGMAS[:2], num_pairs=2,
                                                           num_steps=3),
    }


CONSUMERS = tuple(_consumers(KINDS["lambda"], jax.random.key(0)))
HOST_CONSUMERS = ("field_sharpness",)  # returns a NumPy summary: a host-level function
KEY = jax.random.key(1)


@functools.cache
def _eager(kind):
    """Every consumer's eager result for one kind (computed once per test session)."""
    return {name: run() for name, run in _consumers(KINDS[kind], KEY).items()}


def _jitted(kind):
    """Every jittable consumer inside ONE outer ``jax.jit`` (one compile per kind)."""
    den = KINDS[kind]
    names = [n for n in CONSUMERS if n not in HOST_CONSUMERS]
    if all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(den)):
        # A pytree of arrays (closed forms, nnx networks): traced as an argument.
        fn = jax.jit(lambda k, d: {n: _consumers(d, k)[n]() for n in names})
        return fn(KEY, den)
    # A function, closure or partial: closed over by the user's jit.
    return jax.jit(lambda k: {n: _consumers(den, k)[n]() for n in names})(KEY)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_consumer_eager_and_under_jit(kind):
    """14 consumers x 11 kinds: finite, and the same under an outer jit as eagerly."""
    den = KINDS[kind]
    assert isinstance(den, Denoiser)
    eager, jitted = _eager(kind), _jitted(kind)
    assert set(eager) == set(CONSUMERS)
    assert set(jitted) == set(CONSUMERS) - set(HOST_CONSUMERS)
    for name, out in eager.items():
        for a in jax.tree.leaves(out):
            assert np.all(np.isfinite(np.asarray(a))), (kind, name)
    for name, out in jitted.items():
        for a, b in zip(jax.tree.leaves(eager[name]), jax.tree.leaves(out), strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5,
                                       err_msg=f"{kind} {name}")


def test_plain_function_closure_and_partial_agree():
    """The same math as a closure and as a partial gives the same numbers in every consumer."""
    closure, partial = _eager("closure"), _eager("partial")
    for name in CONSUMERS:
        for a, b in zip(jax.tree.leaves(closure[name]), jax.tree.leaves(partial[name]),
                        strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7,
                                       err_msg=name)


def _cond_denoiser(x, sigma, cond):
    """A conditional denoiser whose output is its condition id in every coordinate."""
    return jnp.zeros_like(x) + jnp.asarray(cond, x.dtype)[..., None]


def test_cond_is_passed_through():
    key = jax.random.key(3)
    assert isinstance(_cond_denoiser, ConditionalDenoiser)
    zeros = jnp.zeros((3, D))
    cond = jnp.array([0, 1, 2])
    # D = c and x0 = 0: the loss is c^2 at every sigma, for every example.
    loss = losses.per_example_loss(key, _cond_denoiser, zeros, SIGMAS, cond=cond)
    np.testing.assert_allclose(loss, np.broadcast_to([0.0, 1.0, 4.0], (3, 3)))
    curve = losses.gap_curve(key, _cond_denoiser, zeros, zeros[:2], SIGMAS,
                             train_cond=cond, val_cond=jnp.array([2, 2]))
    np.testing.assert_allclose(curve.gap, np.full(3, 4.0 - 5.0 / 3.0), rtol=1e-6)
    # A step to sigma = 0 returns D(x, sigma_0) = c.
    for out in (sampling.heun(_cond_denoiser, jnp.ones((3, D)), SCHEDULE, cond=cond),
                sampling.euler(_cond_denoiser, jnp.ones((3, D)), SCHEDULE, cond=cond),
                sampling.sample(key, _cond_denoiser, 3, D, num_steps=2, cond=cond),
                sampling.sample(key, _cond_denoiser, 3, D, num_steps=2, cond=cond,
                                batch_size=2)):
        np.testing.assert_allclose(out, np.broadcast_to(cond[:, None], (3, D)), atol=1e-6)
    np.testing.assert_allclose(score(_cond_denoiser, zeros, 1.0, cond), cond[:, None] + zeros)
    # Under an outer jit, with a traced condition.
    jitted = jax.jit(lambda c: losses.per_example_loss(key, _cond_denoiser, zeros, SIGMAS,
                                                       cond=c))(cond)
    np.testing.assert_allclose(jitted, loss)


@pytest.mark.parametrize("run, match", [
    (lambda: losses.denoising_loss(jax.random.key(0), KINDS["empirical"], DATA, SIGMAS,
                                   cond=jnp.zeros(5, int)), "cond: expected None"),
    (lambda: sampling.heun(KINDS["lambda"], DATA, SCHEDULE, cond=0), "cond: expected None"),
    (lambda: sampling.sample(jax.random.key(0), KINDS["mlp"], 2, D, cond=1),
     "cond: expected None"),
    (lambda: losses.denoising_loss(jax.random.key(0), _cond_denoiser, DATA, SIGMAS),
     "cond: expected integer condition ids"),
    (lambda: sampling.heun(_cond_denoiser, DATA, SCHEDULE), "cond: expected integer"),
    (lambda: losses.denoising_loss(jax.random.key(0), _cond_denoiser, DATA, SIGMAS,
                                   cond=jnp.zeros(4, int)), "cond: expected a scalar or shape"),
    (lambda: losses.denoising_loss(jax.random.key(0), _cond_denoiser, DATA, SIGMAS,
                                   cond=jnp.zeros(5)), "cond: expected an integer array"),
    (lambda: losses.gap_curve(jax.random.key(0), _cond_denoiser, DATA, DATA, SIGMAS,
                              train_cond=jnp.zeros(5, int)), "val_cond: expected"),
    (lambda: losses.gap_curve(0, KINDS["lambda"], DATA, DATA, SIGMAS), "key: expected a PRNG"),
    (lambda: losses.denoising_loss(jax.random.key(0), 3.0, DATA, SIGMAS),
     "denoiser: expected a callable"),
])
def test_bad_cond_and_denoiser(run, match):
    with pytest.raises(ValueError, match=match):
        run()


def test_old_argument_order_still_works_with_a_warning():
    """gap_curve and denoising_loss were shown in the 0.1 README as f(D, ..., key)."""
    key = jax.random.key(4)
    den = KINDS["lambda"]
    new = losses.gap_curve(key, den, TRAIN, DATA, SIGMAS)
    with pytest.warns(DeprecationWarning, match="key is now the first argument"):
        old = losses.gap_curve(den, TRAIN, DATA, SIGMAS, key)
    with pytest.warns(DeprecationWarning):
        old_kw = losses.gap_curve(den, TRAIN, DATA, SIGMAS, key=key)
    np.testing.assert_array_equal(new.gap, old.gap)
    np.testing.assert_array_equal(new.gap, old_kw.gap)
    with pytest.warns(DeprecationWarning):
        old_loss = losses.denoising_loss(den, DATA, SIGMAS, key)
    np.testing.assert_array_equal(old_loss, losses.denoising_loss(key, den, DATA, SIGMAS))
