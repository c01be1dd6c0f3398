"""Tests of jaxgap.nets: EDM-preconditioned flax.nnx denoisers obeying the protocol.

Speed: on CPU the run time is XLA compilation (a weight initializer per parameter shape,
one program per model structure and input shape, and every eager jax op per shape). The
tests therefore share one small architecture per kind with every width 16 (initializers
compile once), reuse input shapes, and make inputs and checks with NumPy. Tolerances:
float32, ~1e-5 relative, covering reassociation differences between compiled programs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxgap import losses, noise, sampling
from jaxgap._protocol import NULL, check_denoiser, takes_cond
from jaxgap.denoisers import guided
from jaxgap.nets import (
    DENOISER_KINDS,
    MLP,
    EDMPrecond,
    MLPDenoiser,
    NoiseEmbedding,
    UNetDenoiser,
    make_denoiser,
    param_count,
)
from jaxgap.nets._embedding import embed_noise_and_class

RTOL, ATOL = 2e-5, 2e-6
D = 16  # data dimension of the small models: flat 16 = a 4x4x1 image
_MLP = dict(width=16, depth=2, emb_dim=16)
_UNET = dict(channels=(16, 16), emb_dim=16)


def _small(kind, seed=0, **kw):
    if kind == "mlp":
        return MLPDenoiser(D, **_MLP, rngs=nnx.Rngs(seed), **kw)
    return UNetDenoiser((4, 4, 1), **_UNET, rngs=nnx.Rngs(seed), **kw)


def _randomize_output_layer(model, seed=1):
    """Give the zero-initialized last layer random weights (so F != 0)."""
    out = model.net.linear_out if isinstance(model, MLPDenoiser) else model.net.conv_out
    rng = np.random.default_rng(seed)
    out.kernel[...] = jnp.asarray(0.3 * rng.standard_normal(out.kernel.shape), jnp.float32)
    out.bias[...] = jnp.asarray(0.3 * rng.standard_normal(out.bias.shape), jnp.float32)
    return model


@pytest.fixture(scope="module", params=["mlp", "unet"])
def model(request):
    return _randomize_output_layer(_small(request.param))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _normal(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _sigmas(rng, shape):
    return np.exp(rng.standard_normal(shape) - 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Shapes and sigma broadcasting
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [(), (6,), (2, 3)])
def test_output_shapes(model, rng, batch):
    x = _normal(rng, (*batch, D))
    assert model(x, 0.7).shape == (*batch, D)
    assert model(x, _sigmas(rng, batch)).shape == (*batch, D)
    if len(batch) == 2:  # broadcastable, not equal, to the batch shape
        assert model(x, _sigmas(rng, (batch[0], 1))).shape == (*batch, D)


def test_per_sample_sigma_equals_loop(model, rng):
    x = _normal(rng, (2, 3, D))
    sig = _sigmas(rng, (2, 3))
    batched = np.asarray(model(x, sig))
    looped = np.stack([np.stack([model(x[i, j], sig[i, j]) for j in range(3)])
                       for i in range(2)])
    np.testing.assert_allclose(batched, looped, rtol=RTOL, atol=ATOL)
    # A scalar sigma equals the same sigma given per sample.
    np.testing.assert_allclose(model(x, 0.3), model(x, np.full((2, 3), 0.3, np.float32)),
                               rtol=RTOL, atol=ATOL)
    # The output depends on sigma (the noise embedding and the coefficients reach F).
    assert not np.allclose(model(x, 0.3), model(x, 0.6), rtol=1e-3)


def test_vmap_over_examples(model, rng):
    x, sig = _normal(rng, (6, D)), _sigmas(rng, (6,))
    vmapped = jax.vmap(lambda xi, si: model(xi, si))(x, sig)
    np.testing.assert_allclose(vmapped, model(x, sig), rtol=RTOL, atol=ATOL)


def test_empty_batch(model):
    assert model(np.zeros((0, D), np.float32), 1.0).shape == (0, D)


# ------------------------------------------------------------------------------------------
# Preconditioning
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "sigma_data"), [("mlp", 0.5), ("unet", 0.5), ("mlp", 1.3)])
def test_zero_init_gives_c_skip_x(kind, sigma_data, rng):
    model = _small(kind, sigma_data=sigma_data)  # last layer zero-initialized: F = 0
    x = _normal(rng, (6, D))
    sig = np.concatenate([[0.002, 1.0, 80.0], _sigmas(rng, (3,))]).astype(np.float32)
    c_skip = np.asarray(noise.edm_precond(sig, sigma_data).c_skip)
    # c_out * F is exactly 0; c_skip comes from two programs (the fused net and the eager
    # noise.edm_precond) that may round hypot differently (e.g. with or without FMA
    # contraction): a few float32 ulps (eps32 = 1.2e-7), not bit equality.
    np.testing.assert_allclose(model(x, sig), c_skip[:, None] * x, rtol=1e-6, atol=0)
    # and c_skip is the closed form sigma_data^2 / (sigma^2 + sigma_data^2), in float64
    s64 = sig.astype(np.float64)
    np.testing.assert_allclose(c_skip, sigma_data**2 / (s64**2 + sigma_data**2), rtol=1e-6)


class _Probe(nnx.Module):
    """A raw network F(x_in, c_noise) = x_in * c_noise that exposes every coefficient."""

    def __call__(self, x_in, c_noise):
        return x_in * c_noise[:, None]


def test_precond_formula_with_custom_net(rng):
    d, sigma_data = 5, 0.7
    den = EDMPrecond(_Probe(), d, sigma_data=sigma_data)
    x, sig = _normal(rng, (3, 4, d)), _sigmas(rng, (3, 4))
    # Reference in float64 from the paper's formulas (Karras et al. 2022, Table 1).
    x64, s = x.astype(np.float64), sig.astype(np.float64)[..., None]
    norm = np.sqrt(s**2 + sigma_data**2)
    expected = (sigma_data**2 / norm**2) * x64 + (s * sigma_data / norm) * (
        x64 / norm * np.log(s) / 4.0)
    np.testing.assert_allclose(den(x, sig), expected, rtol=1e-5, atol=1e-6)
    # Same coefficients as jaxgap.noise.edm_precond.
    c = [np.asarray(v)[..., None] for v in noise.edm_precond(sig, sigma_data)]
    c_skip, c_out, c_in, c_noise = c
    np.testing.assert_allclose(den(x, sig), c_skip * x + c_out * (c_in * x * c_noise),
                               rtol=1e-6, atol=1e-7)


def test_noise_embedding_frequencies():
    emb = NoiseEmbedding(16, max_freq=100.0, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(emb.frequencies(), np.geomspace(1.0, 100.0, 8), rtol=1e-12)
    out = jax.jit(lambda e, c: e(c))(emb, np.linspace(-2.0, 2.0, 6, dtype=np.float32))
    assert out.shape == (6, 16)


# ------------------------------------------------------------------------------------------
# JAX transformations, training, determinism, parameters
# ------------------------------------------------------------------------------------------

def test_jit_equals_eager_and_does_not_retrace(model, rng):
    x, sig = _normal(rng, (6, D)), _sigmas(rng, (6,))
    traces = []

    @jax.jit
    def apply(den, x, sig):
        traces.append(1)
        return den(x, sig)

    np.testing.assert_allclose(apply(model, x, sig), model(x, sig), rtol=RTOL, atol=ATOL)
    # New parameter values with the same structure reuse the compiled program.
    graphdef, params = nnx.split(model)
    apply(nnx.merge(graphdef, jax.tree.map(lambda p: p * 1.01, params)), x, sig)
    assert len(traces) == 1


_TRACES = []


class _Scale(nnx.Module):
    """F(x_in, c_noise) = w * x_in, recording each trace of its call."""

    def __init__(self, d, value):
        self.w = nnx.Param(jnp.full((d,), value, jnp.float32))

    def __call__(self, x_in, c_noise):
        _TRACES.append(1)  # runs only while tracing
        return self.w[...][None, :] * x_in


def test_eager_calls_compile_once(rng):
    x, sig = _normal(rng, (6, 5)), _sigmas(rng, (6,))
    den = EDMPrecond(_Scale(5, 0.5), 5)
    _TRACES.clear()
    first = np.asarray(den(x, sig))
    den.net.w[...] = jnp.full((5,), 2.0, jnp.float32)  # new values, same structure
    second = np.asarray(den(x, sig))
    third = np.asarray(EDMPrecond(_Scale(5, 2.0), 5)(x, 2.0 * sig))  # a new module
    assert len(_TRACES) == 1
    assert not np.allclose(first, second) and not np.allclose(second, third)
    assert EDMPrecond.conditional is False and den.conditional is False


def _edm_loss(den, x0, sigma, eps):
    """EDM's weighted loss on a fixed batch (Karras et al. 2022, Eq. 2 and Table 1)."""
    weight = 1.0 / sigma**2 + 1.0 / den.sigma_data**2  # noise.edm_loss_weight
    err = jnp.mean((den(x0 + sigma[:, None] * eps, sigma) - x0) ** 2, axis=-1)
    return jnp.mean(weight * err)


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_grad_and_adam_steps_lower_the_loss(kind, rng):
    model = _small(kind)
    batch = (_normal(rng, (32, D), 0.5), _sigmas(rng, (32,)), _normal(rng, (32, D)))
    graphdef, params = nnx.split(model, nnx.Param)
    opt = optax.adam(3e-3)

    @jax.jit
    def step(p, state):
        loss, g = jax.value_and_grad(lambda q: _edm_loss(nnx.merge(graphdef, q), *batch))(p)
        updates, state = opt.update(g, state, p)
        return optax.apply_updates(p, updates), state, loss, g

    state = jax.jit(opt.init)(params)
    history = []
    for i in range(16):
        params, state, loss, grads = step(params, state)
        history.append(float(loss))
        if i in (0, 1):  # at i = 0 only the zero-initialized last layer has a gradient
            leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
            assert len(leaves) == len(jax.tree.leaves(params))
            assert all(np.all(np.isfinite(g)) for g in leaves)
            nonzero = sum(bool(np.any(g != 0)) for g in leaves)
            assert nonzero >= (1 if i == 0 else len(leaves) // 2), (i, nonzero, len(leaves))
    # history[-1] is the loss before the last update
    assert np.all(np.isfinite(history)) and history[-1] < 0.9 * history[0], history


def test_nnx_value_and_grad_matches_split_merge(rng):
    model = _randomize_output_layer(_small("mlp"))
    batch = (_normal(rng, (6, D)), _sigmas(rng, (6,)), _normal(rng, (6, D)))
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def both(model, params):
        loss = lambda p: _edm_loss(nnx.merge(graphdef, p), *batch)
        return jax.value_and_grad(loss)(params), nnx.value_and_grad(_edm_loss)(model, *batch)

    (value, grads), (value2, grads2) = both(model, params)
    np.testing.assert_allclose(value2, value, rtol=RTOL)
    leaves, leaves2 = jax.tree.leaves(grads), jax.tree.leaves(nnx.state(grads2, nnx.Param))
    for a, b in zip(leaves, leaves2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert sum(float(np.sum(np.square(g))) for g in leaves) > 0


def _params(model):
    return [np.asarray(p) for p in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_deterministic_given_seed():
    for kind in ("mlp", "unet"):
        pa, pb, pc = (_params(_small(kind, seed=s)) for s in (3, 3, 4))
        assert all(np.array_equal(u, v) for u, v in zip(pa, pb, strict=True))
        assert not all(np.array_equal(u, v) for u, v in zip(pa, pc, strict=True))
    a, b = make_denoiser("mlp", D, seed=5, **_MLP), _small("mlp", seed=5)
    for u, v in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(u, v)


def test_param_count():
    d, w, e = 6, 10, 4
    # nnx.eval_shape: abstract models, counted without initializing any weight.
    m0 = nnx.eval_shape(lambda: MLPDenoiser(d, width=w, depth=0, emb_dim=e, rngs=nnx.Rngs(0)))
    m3 = nnx.eval_shape(lambda: MLPDenoiser(d, width=w, depth=3, emb_dim=e, rngs=nnx.Rngs(0)))
    # embedding MLP (2 layers e -> e), input layer, output LayerNorm, output layer
    assert param_count(m0) == 2 * (e * e + e) + (d * w + w) + 2 * w + (w * d + d)
    block = 2 * w + 2 * (w * w + w) + (e * w + w)  # LayerNorm, two layers, embedding proj
    assert param_count(m3) == param_count(m0) + 3 * block
    small = _small("mlp")
    assert param_count(small) == sum(p.size for p in _params(small))
    with pytest.raises(ValueError, match="^model"):
        param_count(object())


def test_default_digits_models_are_small():
    mlp = nnx.eval_shape(lambda: make_denoiser("mlp", 64))
    unet = nnx.eval_shape(lambda: make_denoiser("unet", 64, (8, 8, 1)))
    assert isinstance(mlp, MLPDenoiser) and isinstance(unet, UNetDenoiser)
    assert 10_000 < param_count(unet) < 150_000
    assert 10_000 < param_count(mlp) < 1_000_000
    assert unet.image_shape == (8, 8, 1) and unet.dim == 64 and mlp.dim == 64
    assert mlp.sigma_data == unet.sigma_data == 0.5


@pytest.mark.parametrize("shape", [(8, 8, 1), (16, 16, 3), (32, 32, 3)])
def test_unet_image_sizes(shape, rng):
    dim = math.prod(shape)
    den = _randomize_output_layer(make_denoiser("unet", dim, shape, **_UNET))
    assert den.image_shape == shape and den.dim == dim
    out = np.asarray(den(_normal(rng, (2, dim)), np.array([0.1, 3.0], np.float32)))
    assert out.shape == (2, dim) and np.all(np.isfinite(out))


def test_unet_three_levels(rng):
    den = UNetDenoiser((8, 8, 1), channels=(16, 16, 16), blocks_per_level=2, emb_dim=16,
                       rngs=nnx.Rngs(0))
    assert den(_normal(rng, (2, 64)), 0.5).shape == (2, 64)


@pytest.mark.parametrize("shape,channels", [((8, 8, 1), (8, 16, 16)), ((12, 20, 2), (8, 16)),
                                            ((4, 4, 1), (8, 8, 8))])
def test_unet_fast_paths_equal_plain_convs(shape, channels, rng, monkeypatch):
    """The low-resolution upsampling conv and the tiny-image matmul give the function (and
    gradient) of plain nearest upsampling + ``nnx.Conv`` on the same parameters."""
    from jaxgap.nets import unet as unet_mod

    den = _randomize_output_layer(UNetDenoiser(shape, channels=channels, blocks_per_level=2,
                                               emb_dim=16, rngs=nnx.Rngs(1)))
    dim = math.prod(shape)
    x, sigma = _normal(rng, (3, dim)), np.array([0.05, 0.7, 4.0], np.float32)

    def loss(d):
        return jnp.sum(d(x, sigma) ** 2)

    fast, g_fast = loss(den), nnx.grad(loss)(den)
    monkeypatch.setattr(unet_mod, "_TINY_PIXELS", 0)
    monkeypatch.setattr(unet_mod._Upsample, "__call__", lambda self, h: self.conv(
        jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)))
    plain, g_plain = loss(den), nnx.grad(loss)(den)
    np.testing.assert_allclose(float(fast), float(plain), rtol=1e-4)
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_plain))
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_plain), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4 * scale)


def test_works_with_losses(key):
    den = _randomize_output_layer(_small("mlp"))
    data = _normal(np.random.default_rng(0), (6, D))
    sig = noise.log_sigmas(3, 0.05, 5.0)
    out = losses.denoising_loss(key, den, data, sig)
    assert out.shape == (3,) and bool(np.all(np.isfinite(out)))

    @jax.jit
    def by_hand(den):  # the per-sigma loss, same noise (common random numbers)
        eps = jax.vmap(lambda k: jax.vmap(lambda i: losses.example_noise(key, i, k, 0, D))(
            jnp.arange(6, dtype=jnp.uint32)))(jnp.arange(3))
        x = data[None] + sig[:, None, None] * eps
        return jnp.mean((den(x, sig[:, None]) - data[None]) ** 2, axis=(1, 2))

    np.testing.assert_allclose(out, by_hand(den), rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

def test_bad_x_shape(model):
    with pytest.raises(ValueError, match=r"^x: expected last dimension d = 16, got shape \[3, 17"):
        model(np.zeros((3, D + 1), np.float32), 1.0)
    with pytest.raises(ValueError, match="^x: expected rank"):
        model(np.zeros((), np.float32), 1.0)
    with pytest.raises(ValueError, match=r"^x: expected last dimension"):  # also under jit
        jax.jit(lambda den, x: den(x, 1.0))(model, np.zeros((2, D + 2), np.float32))


def test_bad_sigma_shape(model):
    with pytest.raises(ValueError, match=r"^sigma: expected a scalar or shape broadcastable"):
        model(np.zeros((3, D), np.float32), np.ones((4,), np.float32))
    with pytest.raises(ValueError, match="^sigma"):  # no silent enlargement of the batch
        model(np.zeros((D,), np.float32), np.ones((2,), np.float32))


def test_factory_errors():
    assert DENOISER_KINDS == ("mlp", "unet", "dit")
    with pytest.raises(ValueError,
                       match="^kind: expected one of 'mlp', 'unet', 'dit', got 'cnn'"):
        make_denoiser("cnn", 64)
    with pytest.raises(ValueError, match="^image_shape: expected .* for kind='unet', got None"):
        make_denoiser("unet", 64)
    with pytest.raises(ValueError, match="^image_shape: expected a shape with product d = 64"):
        make_denoiser("unet", 64, (8, 8, 3))
    with pytest.raises(ValueError, match="^image_shape: expected a shape with product d = 64"):
        make_denoiser("mlp", 64, (4, 4, 1))
    with pytest.raises(ValueError, match="^image_shape: expected"):
        make_denoiser("unet", 64, (8, 8))
    with pytest.raises(ValueError, match="^dim"):
        make_denoiser("mlp", 0)
    with pytest.raises(ValueError, match="^seed"):
        make_denoiser("mlp", 4, seed=-1)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"^image_shape: expected H and W divisible by 2\*\*"):
        UNetDenoiser((6, 6, 1), channels=(4, 8, 8), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="^channels"):
        UNetDenoiser((8, 8, 1), channels=(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="^blocks_per_level"):
        UNetDenoiser((8, 8, 1), blocks_per_level=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="^emb_dim"):
        MLPDenoiser(4, emb_dim=7, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="^sigma_data"):
        MLPDenoiser(4, sigma_data=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="^net"):
        EDMPrecond(None, 4)


# ------------------------------------------------------------------------------------------
# Conditional networks: a class embedding added to the noise embedding, a null token
# ------------------------------------------------------------------------------------------

C = 3  # conditions of the small conditional models (ids 0, 1, 2 and NULL -> row 3)


def _set_class_embedding(model, table):
    model.net.class_embed.embedding[...] = jnp.asarray(table, jnp.float32)
    return model


def _class_table(seed=2):
    return 0.5 * np.random.default_rng(seed).standard_normal((C + 1, _MLP["emb_dim"]))


@pytest.fixture(scope="module", params=["mlp", "unet"])
def cmodel(request):
    """A conditional model (C = 3) with random output layer and class embedding."""
    model = _randomize_output_layer(_small(request.param, num_classes=C))
    return _set_class_embedding(model, _class_table())


def _flat_params(model):
    return {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_conditional_flags_and_shapes(cmodel, rng):
    kind = "mlp" if isinstance(cmodel, MLPDenoiser) else "unet"
    plain = _small(kind)
    assert plain.conditional is False and plain.num_classes == 0 and not takes_cond(plain)
    assert cmodel.conditional is True and cmodel.num_classes == C and takes_cond(cmodel)
    assert EDMPrecond.conditional is False  # the class attribute is unchanged
    assert cmodel.net.class_embed.embedding.shape == (C + 1, _MLP["emb_dim"])
    assert param_count(cmodel) == param_count(plain) + (C + 1) * _MLP["emb_dim"]
    x = _normal(rng, (2, 3, D))
    for cond in (1, np.array([[0], [NULL]]), np.array([[0, 1, 2], [NULL, 2, 0]])):
        assert cmodel(x, 0.7, cond).shape == (2, 3, D)


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_unconditional_weights_unchanged(kind, rng):
    """The class embedding is built last: with the same seed, every other weight of a
    conditional network is bit for bit that of the unconditional one (which is today's
    network: no new parameter, no new draw from the seed before the last one). Zero
    initialization: at init, the conditional network computes the unconditional function
    for every condition and NULL."""
    base, zero, cond = (_small(kind, seed=4, **kw) for kw in ({}, {"num_classes": 0},
                                                              {"num_classes": C}))
    pb, pz, pc = _flat_params(base), _flat_params(zero), _flat_params(cond)
    assert not any("class_embed" in k for k in pb)
    assert pb.keys() == pz.keys() and set(pc) - set(pb) == {("net", "class_embed", "embedding")}
    for k, v in pb.items():
        assert v.dtype == pc[k].dtype and np.array_equal(v, pz[k]) and np.array_equal(v, pc[k])
    np.testing.assert_array_equal(pc[("net", "class_embed", "embedding")], 0.0)
    base, cond = _randomize_output_layer(base), _randomize_output_layer(cond)
    x, sig = _normal(rng, (4, D)), _sigmas(rng, (4,))
    out = np.asarray(cond(x, sig, np.array([0, 1, 2, NULL])))
    np.testing.assert_allclose(out, base(x, sig), rtol=1e-6, atol=1e-7)


def test_null_is_the_null_row(cmodel, rng):
    """NULL selects row C of the class embedding: a copy whose row k is replaced by row C
    gives D(x, sigma, k) == D(x, sigma, NULL)."""
    x, sig = _normal(rng, (4, D)), _sigmas(rng, (4,))
    table = _class_table()
    null = np.asarray(cmodel(x, sig, NULL))
    graphdef, state = nnx.split(cmodel)
    copy = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))
    _set_class_embedding(copy, np.concatenate([table[C:], table[1:]]))  # row 0 := null row
    np.testing.assert_allclose(copy(x, sig, 0), null, rtol=RTOL, atol=ATOL)
    assert not np.allclose(cmodel(x, sig, 0), null, rtol=1e-3)
    # the blocks receive the noise embedding plus the table's row (NULL -> row C)
    c_noise = jnp.asarray(np.log(sig) / 4.0)
    emb = embed_noise_and_class(cmodel.net, c_noise, jnp.array([0, 2, NULL, 1]))
    ref = np.asarray(cmodel.net.embed(c_noise)) + table[[0, 2, C, 1]]
    np.testing.assert_allclose(emb, ref, rtol=1e-6, atol=1e-6)


def test_conditions_give_different_outputs(cmodel, rng):
    x, sig = _normal(rng, (4, D)), _sigmas(rng, (4,))
    ids = [0, 1, 2, NULL]
    outs = [np.asarray(cmodel(x, sig, k)) for k in ids]
    for i in range(len(ids)):
        for j in range(i):
            assert not np.allclose(outs[i], outs[j], rtol=1e-3), (ids[i], ids[j])
    # per-example ids in one batch: row i is the output for its own id
    mixed = np.asarray(cmodel(x, sig, np.array(ids)))
    np.testing.assert_allclose(mixed, np.stack([o[i] for i, o in enumerate(outs)]),
                               rtol=RTOL, atol=ATOL)


def test_conditional_jit_split_merge_vmap(cmodel, rng):
    x, sig = _normal(rng, (4, D)), _sigmas(rng, (4,))
    cond = np.array([2, NULL, 0, 1], np.int32)
    eager = np.asarray(cmodel(x, sig, cond))
    jitted = jax.jit(lambda m, x, s, c: m(x, s, c))(cmodel, x, sig, jnp.asarray(cond))
    np.testing.assert_allclose(jitted, eager, rtol=RTOL, atol=ATOL)
    # an ensemble: parameters stacked on a member axis, merged inside vmap
    graphdef, params = nnx.split(cmodel)
    other = jax.tree.map(lambda p: 1.1 * p, params)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    both = jax.jit(jax.vmap(lambda p, c: nnx.merge(graphdef, p)(x, sig, c), in_axes=(0, None)))(
        stacked, jnp.asarray(cond))
    np.testing.assert_allclose(both[0], eager, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(both[1], nnx.merge(graphdef, other)(x, sig, cond),
                               rtol=RTOL, atol=ATOL)


def test_class_embedding_gradient_reaches_used_rows_only(rng):
    model = _randomize_output_layer(_small("mlp", num_classes=C))
    x0, sig, eps = _normal(rng, (4, D), 0.5), _sigmas(rng, (4,)), _normal(rng, (4, D))
    cond = jnp.array([0, NULL, 0, NULL])

    def loss(m):
        return jnp.mean((m(x0 + sig[:, None] * eps, sig, cond) - x0) ** 2)

    grads = jax.jit(nnx.grad(loss))(model)
    g = np.asarray(grads.net.class_embed.embedding[...])
    assert np.all(np.isfinite(g)) and np.any(g[0] != 0) and np.any(g[C] != 0)
    np.testing.assert_array_equal(g[1:C], 0.0)  # conditions 1, 2 are absent from the batch


def test_guided_network(cmodel, rng):
    x, sig = _normal(rng, (4, D)), _sigmas(rng, (4,))
    cond = np.array([2, 0, 1, NULL])
    cond_out, null_out = np.asarray(cmodel(x, sig, cond)), np.asarray(cmodel(x, sig, NULL))
    np.testing.assert_array_equal(guided(cmodel, 1)(x, sig, cond), cond_out)
    np.testing.assert_array_equal(guided(cmodel, 0.0)(x, sig, cond), null_out)
    np.testing.assert_allclose(guided(cmodel, 2.5)(x, sig, cond),
                               null_out + 2.5 * (cond_out - null_out), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"^cond: expected condition ids in \[0, 3\)"):
        guided(cmodel, 2.0)(x, sig, 3)


def test_conditional_network_in_consumers(key):
    den = _set_class_embedding(_randomize_output_layer(_small("mlp", num_classes=C)),
                               _class_table())
    data = _normal(np.random.default_rng(0), (6, D))
    sig = noise.log_sigmas(2, 0.1, 2.0)
    cond = np.array([0, 1, 2, 0, 1, 2])
    out = losses.per_example_loss(key, den, data, sig, cond=cond)
    null = losses.per_example_loss(key, den, data, sig, cond=NULL)
    assert out.shape == (2, 6) and np.all(np.isfinite(out)) and not np.allclose(out, null)
    with pytest.raises(ValueError, match="^cond: expected integer condition ids"):
        losses.per_example_loss(key, den, data, sig)
    with pytest.raises(ValueError, match=r"^cond: expected condition ids in \[0, 3\)"):
        losses.per_example_loss(key, den, data, sig, cond=np.array([0, 1, 2, 3, 1, 2]))
    xs = sampling.sample(key, guided(den, 2.0), 4, D, num_steps=3, method="euler",
                         cond=np.array([0, 1, 2, 0]))
    assert xs.shape == (4, D) and np.all(np.isfinite(xs))


def test_conditional_errors(cmodel, rng):
    x = _normal(rng, (4, D))
    plain = _small("mlp")
    with pytest.raises(ValueError, match=r"^cond: expected integer condition ids in \[0, 3\) "
                                         r"or NULL = -1 for the conditional .* got None"):
        cmodel(x, 0.5)
    with pytest.raises(ValueError, match=r"^cond: expected None for the unconditional "
                                         r"MLPDenoiser .* got int"):
        plain(x, 0.5, 1)
    for bad in (3, -2, np.array([0, 1, 7, NULL]), 2**40):
        with pytest.raises(ValueError, match=r"^cond: expected condition ids in \[0, 3\) or "
                                             r"NULL = -1, got (3|-2|7|1099511627776)$"):
            cmodel(x, 0.5, bad)
    with pytest.raises(ValueError, match="^cond: expected an integer array"):
        cmodel(x, 0.5, np.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="^cond: expected a scalar or shape broadcastable"):
        cmodel(x, 0.5, np.array([0, 1]))
    # device and traced ids are not read back: checked inside the compiled call
    call = jax.jit(lambda m, x, c: m(x, 0.5, c))
    for bad in (jnp.array([0, 1, 3, NULL]), jnp.array([0, -2, 1, 2])):
        with pytest.raises((RuntimeError, ValueError), match="cond: expected condition ids"):
            jax.block_until_ready(cmodel(x, 0.5, bad))
        with pytest.raises((RuntimeError, ValueError), match="cond: expected condition ids"):
            jax.block_until_ready(call(cmodel, x, bad))
    # the denoiser's own check, as the protocol's boundary check calls it
    out = cmodel.check_cond(np.array([[1], [NULL]]), (2, 3))
    assert out.dtype == jnp.int32 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[1, 1, 1], [NULL, NULL, NULL]])
    assert plain.check_cond(None, (4,)) is None
    np.testing.assert_array_equal(check_denoiser(cmodel, 2, (3,)), [2, 2, 2])
    with pytest.raises(ValueError, match="^cond: expected integer condition ids"):
        check_denoiser(cmodel, None, (4,))
    with pytest.raises(ValueError, match=r"^cond: expected condition ids in \[0, 3\)"):
        check_denoiser(cmodel, np.array([0, 5]), (2,))
    with pytest.raises(ValueError, match="^cond: expected None"):
        check_denoiser(plain, 1, (4,))


def test_conditional_constructor_and_raw_net_errors():
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="^num_classes: expected an integer >= 0"):
            MLPDenoiser(4, num_classes=bad, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match="^num_classes: expected an integer >= 0"):
            UNetDenoiser((4, 4, 1), num_classes=bad, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match="^num_classes: expected an integer >= 0"):
            make_denoiser("mlp", 4, num_classes=bad)

    class _Bad(_Probe):
        num_classes = -1

    with pytest.raises(ValueError, match="^net.num_classes"):
        EDMPrecond(_Bad(), 4)
    net = MLP(D, **_MLP, num_classes=C, rngs=nnx.Rngs(0))
    x, c = jnp.zeros((2, D)), jnp.zeros((2,))
    with pytest.raises(ValueError, match="^cond: expected integer condition ids .* got None"):
        net(x, c)
    with pytest.raises(ValueError, match=r"^cond: expected shape \[2\] .* got shape \[2, 1\]"):
        net(x, c, jnp.zeros((2, 1), jnp.int32))
    with pytest.raises(ValueError, match="^cond: expected an integer array"):
        net(x, c, jnp.zeros((2,)))
    with pytest.raises(ValueError, match="^cond: expected None for the unconditional MLP"):
        MLP(D, **_MLP, rngs=nnx.Rngs(0))(x, c, jnp.zeros((2,), jnp.int32))
