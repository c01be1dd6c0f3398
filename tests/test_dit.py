"""Tests of jaxgap.nets.dit: the diffusion transformer (DiT) denoiser.

Speed: the run time is XLA compilation. The tests share two small module-scoped models
(a 4x4x1 image in 2x2 patches and a 16-vector in groups of 4: 4 tokens each, width 16, two
blocks) and a few batch shapes; references are NumPy. Tolerances: float32, ~1e-5 relative
(reassociation differences between compiled programs of different batch sizes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxgap._protocol import NULL, check_denoiser, takes_cond
from jaxgap.nets import DiT, DiTDenoiser, make_denoiser, param_count
from jaxgap.nets.dit import _positions, default_patch
from jaxgap.train import edm_loss

RTOL, ATOL = 2e-5, 2e-6
D = 16
_SMALL = dict(width=16, depth=2, heads=2, emb_dim=16)
_SHAPES = {"image": (4, 4, 1), "vector": None}
_PATCH = {"image": 2, "vector": 4}
C = 3  # conditions of the conditional model


def _small(kind="image", seed=0, **kw):
    return DiTDenoiser(D, _SHAPES[kind], patch=_PATCH[kind], **_SMALL, rngs=nnx.Rngs(seed),
                       **kw)


def _zero_init_layers(model):
    net = model.net
    return ([net.linear_out, net.final_modulation]
            + [block.modulation for block in net.blocks])


def _randomize(model, seed=1, scale=0.3):
    """Give the zero-initialized layers (block modulations, final layer) random weights, so
    that every block acts and F != 0."""
    rng = np.random.default_rng(seed)
    for layer in _zero_init_layers(model):
        for p in (layer.kernel, layer.bias):
            p[...] = jnp.asarray(scale * rng.standard_normal(p.shape), jnp.float32)
    return model


@pytest.fixture(scope="module", params=["image", "vector"])
def model(request):
    return _randomize(_small(request.param))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _normal(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _sigmas(rng, shape):
    return np.exp(rng.standard_normal(shape) - 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Tokens, positions, patch size
# ------------------------------------------------------------------------------------------

def test_patchify_layout_and_inverse(rng):
    # abstract modules (no weights): patchify is a reshape, here on NumPy arrays
    net = nnx.eval_shape(lambda: DiT(96, (4, 8, 3), width=8, depth=0, heads=2, patch=2,
                                     emb_dim=4, rngs=nnx.Rngs(0)))
    assert net.grid == (2, 4) and net.tokens == 8 and net.token_dim == 12
    x = _normal(rng, (2, 96))
    tokens = net.patchify(x)
    images = x.reshape(2, 4, 8, 3)  # HWC
    for t in range(8):  # row-major patches, HWC inside each patch
        r, c = divmod(t, 4)
        np.testing.assert_array_equal(tokens[:, t],
                                      images[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2].reshape(2, 12))
    np.testing.assert_array_equal(net.unpatchify(tokens), x)
    vec = nnx.eval_shape(lambda: DiT(12, width=8, depth=0, heads=2, patch=3, emb_dim=4,
                                     rngs=nnx.Rngs(0)))
    np.testing.assert_array_equal(vec.patchify(x[:, :12]), x[:, :12].reshape(2, 4, 3))
    np.testing.assert_array_equal(vec.unpatchify(vec.patchify(x[:, :12])), x[:, :12])


def test_sincos_positions():
    width, m = 8, 2  # 2-D: 4 features for the row, 4 for the column, 2 frequencies each
    pos = _positions((2, 3), width)
    omega = 10000.0 ** (-np.arange(m) / m)
    for t in range(6):
        r, c = divmod(t, 3)
        ref = np.concatenate([np.sin(r * omega), np.cos(r * omega),
                              np.sin(c * omega), np.cos(c * omega)])
        np.testing.assert_allclose(pos[t], ref, rtol=1e-12, atol=1e-12)
    assert len({tuple(p) for p in pos}) == 6  # every token has its own position
    one = _positions((5,), 7)  # 1-D, odd width: a zero column at the end
    np.testing.assert_allclose(one[:, :3], np.sin(np.arange(5)[:, None] * 10000.0
                                                  ** (-np.arange(3) / 3)), atol=1e-12)
    np.testing.assert_array_equal(one[:, 6], 0.0)


@pytest.mark.parametrize(("dim", "shape", "patch"), [
    (64, (8, 8, 1), 2), (3072, (32, 32, 3), 4), (768, (16, 16, 3), 2), (784, (28, 28, 1), 4),
    (49, (7, 7, 1), 7), (56, (7, 8, 1), 1), (64, None, 2), (3072, None, 48), (2, None, 2),
    (1, None, 1), (7, None, 7)])
def test_default_patch(dim, shape, patch):
    assert default_patch(dim, shape) == patch


# ------------------------------------------------------------------------------------------
# Shapes, protocol, preconditioning
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [(), (6,), (2, 3)])
def test_output_shapes(model, rng, batch):
    x = _normal(rng, (*batch, D))
    out = np.asarray(model(x, _sigmas(rng, batch)))
    assert out.shape == (*batch, D) and np.all(np.isfinite(out))


def test_protocol(model):
    assert check_denoiser(model) is None and takes_cond(model) is False
    assert model.conditional is False and model.dim == D
    cmodel = _small("image", num_classes=C)
    assert takes_cond(cmodel) and cmodel.conditional and cmodel.num_classes == C
    np.testing.assert_array_equal(check_denoiser(cmodel, 2, (3,)), [2, 2, 2])
    with pytest.raises(ValueError, match="^cond: expected integer condition ids"):
        check_denoiser(cmodel, None, (3,))


@pytest.mark.parametrize(("kind", "sigma_data"), [("image", 0.5), ("vector", 1.3)])
def test_zero_init_gives_c_skip_x(kind, sigma_data, rng):
    den = _small(kind, sigma_data=sigma_data)  # adaLN-Zero and a zero output layer: F = 0
    x = _normal(rng, (6, D))
    sig = np.concatenate([[0.002, 1.0, 80.0], _sigmas(rng, (3,))]).astype(np.float32)
    c_skip = sigma_data**2 / (sig.astype(np.float64) ** 2 + sigma_data**2)
    np.testing.assert_allclose(den(x, sig), c_skip[:, None] * x, rtol=1e-6, atol=0)
    # every block is the identity: the gates and the output layer are exactly zero
    for layer in _zero_init_layers(den):
        assert not np.any(np.asarray(layer.kernel[...])) and not np.any(layer.bias[...])


def test_depends_on_sigma_and_on_every_token(model, rng):
    x, sig = _normal(rng, (6, D)), _sigmas(rng, (6,))
    out = np.asarray(model(x, sig))
    assert not np.allclose(out, model(x, 2.0 * sig), rtol=1e-3)
    # attention mixes tokens: changing the first tokens changes the output of the last one
    x2 = x.copy()
    x2[:, :4] += 1.0  # image: the first pixel row (tokens 0, 1); vector: token 0
    last = slice(D - 4, D) if model.image_shape is None else [10, 11, 14, 15]
    assert not np.allclose(np.asarray(model(x2, sig))[:, last], out[:, last], rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Batching, compilation, JAX transformations
# ------------------------------------------------------------------------------------------

def test_independent_of_batching(model, rng):
    """The output for an example does not depend on the batch size, on how the examples
    are split into batches, or on their order."""
    x, sig = _normal(rng, (6, D)), _sigmas(rng, (6,))
    full = np.asarray(model(x, sig))
    split = np.concatenate([model(x[:2], sig[:2]), model(x[2:], sig[2:])])
    np.testing.assert_allclose(split, full, rtol=1e-5, atol=1e-6)
    perm = np.array([3, 0, 5, 1, 4, 2])
    np.testing.assert_allclose(model(x[perm], sig[perm]), full[perm], rtol=1e-5, atol=1e-6)
    single = np.stack([model(x[i], sig[i]) for i in (0, 5)])
    np.testing.assert_allclose(single, full[[0, 5]], rtol=1e-5, atol=1e-6)


def test_jit_compiles_one_program_per_shape(rng):
    den = _randomize(_small("image"))
    traces = []

    @jax.jit
    def apply(den, x, sig):
        traces.append(x.shape)  # runs only while tracing
        return den(x, sig)

    x, sig = _normal(rng, (5, D)), _sigmas(rng, (5,))
    first = np.asarray(apply(den, x, sig))
    np.testing.assert_allclose(first, den(x, sig), rtol=RTOL, atol=ATOL)
    apply(den, 2.0 * x, sig)  # new values
    graphdef, params = nnx.split(den)
    apply(nnx.merge(graphdef, jax.tree.map(lambda p: 1.01 * p, params)), x, sig)  # new weights
    apply(_small("image", seed=3), x, sig)  # a new model of the same structure
    assert traces == [(5, D)]
    apply(den, x[:3], sig[:3])  # a new shape: one more program
    apply(den, x[:3], 2.0 * sig[:3])
    assert traces == [(5, D), (3, D)]


def test_vmap_over_examples_and_members(model, rng):
    x, sig = _normal(rng, (6, D)), _sigmas(rng, (6,))
    batched = np.asarray(model(x, sig))
    vmapped = jax.vmap(lambda xi, si: model(xi, si))(x, sig)
    np.testing.assert_allclose(vmapped, batched, rtol=RTOL, atol=ATOL)
    # an ensemble: parameters stacked on a member axis, merged inside vmap, one program
    graphdef, params = nnx.split(model)
    other = jax.tree.map(lambda p: 1.1 * p, params)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    both = jax.jit(jax.vmap(lambda p: nnx.merge(graphdef, p)(x, sig)))(stacked)
    np.testing.assert_allclose(both[0], batched, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(both[1], nnx.merge(graphdef, other)(x, sig), rtol=RTOL,
                               atol=ATOL)


def test_adam_steps_lower_the_edm_loss(rng):
    model = _small("image")
    x0 = _normal(rng, (32, D), 0.5)
    graphdef, params = nnx.split(model, nnx.Param)
    opt = optax.adam(3e-3)
    key = jax.random.PRNGKey(1)  # one fixed draw of sigma and noise: a fixed objective

    @jax.jit
    def step(p, state):
        def loss(q):
            return edm_loss(nnx.merge(graphdef, q), x0, key, p_mean=-1.2, p_std=1.2,
                            sigma_data=0.5)
        value, g = jax.value_and_grad(loss)(p)
        updates, state = opt.update(g, state, p)
        return optax.apply_updates(p, updates), state, value, g

    state = jax.jit(opt.init)(params)
    history = []
    for i in range(16):
        params, state, value, grads = step(params, state)
        history.append(float(value))
        # adaLN-Zero: at first only the output layer learns (kernel and bias); once it is
        # non-zero, the modulations do; once the gates are open, every parameter does
        nonzero = [bool(np.any(np.asarray(g) != 0)) for g in jax.tree.leaves(grads)]
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
        if i in (0, 2):
            assert sum(nonzero) == (2 if i == 0 else len(nonzero)), (i, nonzero)
    assert np.all(np.isfinite(history)) and history[-1] < 0.9 * history[0], history


# ------------------------------------------------------------------------------------------
# Conditional DiT
# ------------------------------------------------------------------------------------------

def _flat_params(model):
    return {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_conditional(rng):
    base, cond = _small("image", seed=4), _small("image", seed=4, num_classes=C)
    pb, pc = _flat_params(base), _flat_params(cond)
    assert set(pc) - set(pb) == {("net", "class_embed", "embedding")}
    assert all(np.array_equal(v, pc[k]) for k, v in pb.items())  # class embedding built last
    np.testing.assert_array_equal(pc[("net", "class_embed", "embedding")], 0.0)
    assert param_count(cond) == param_count(base) + (C + 1) * _SMALL["emb_dim"]
    base, cond = _randomize(base), _randomize(cond)
    x, sig = _normal(rng, (4, D)), _sigmas(rng, (4,))
    ids = np.array([0, 1, 2, NULL])
    reference = np.asarray(base(x, sig))  # zero class embedding: the unconditional function
    np.testing.assert_allclose(cond(x, sig, ids), reference, rtol=1e-6, atol=1e-7)
    table = 0.5 * rng.standard_normal((C + 1, _SMALL["emb_dim"]))
    cond.net.class_embed.embedding[...] = jnp.asarray(table, jnp.float32)
    outs = [np.asarray(cond(x, sig, np.full(4, k))) for k in ids]
    for i in range(len(ids)):
        for j in range(i):
            assert not np.allclose(outs[i], outs[j], rtol=1e-3), (ids[i], ids[j])
    np.testing.assert_allclose(cond(x, sig, ids), np.stack([o[i] for i, o in enumerate(outs)]),
                               rtol=RTOL, atol=ATOL)  # per-example ids in one batch
    # NULL selects the last row: a table whose row 0 is the null row makes 0 act as NULL
    cond.net.class_embed.embedding[...] = jnp.asarray(np.concatenate([table[C:], table[1:]]),
                                                      jnp.float32)
    np.testing.assert_allclose(cond(x, sig, np.full(4, 0)), outs[-1], rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=r"^cond: expected condition ids in \[0, 3\)"):
        cond(x, sig, np.array([0, 1, 3, NULL]))


# ------------------------------------------------------------------------------------------
# Factory and bad input
# ------------------------------------------------------------------------------------------

def test_make_denoiser_dit():
    a = make_denoiser("dit", D, (4, 4, 1), seed=5, patch=2, **_SMALL)
    b = _small("image", seed=5)
    assert isinstance(a, DiTDenoiser) and a.image_shape == (4, 4, 1) and a.patch == 2
    for u, v in zip(jax.tree.leaves(nnx.state(a, nnx.Param)),
                    jax.tree.leaves(nnx.state(b, nnx.Param)), strict=True):
        np.testing.assert_array_equal(u, v)
    vec = nnx.eval_shape(lambda: make_denoiser("dit", 64))  # vectors: groups of features
    assert vec.image_shape is None and vec.patch == 2 and vec.net.tokens == 32
    digits = nnx.eval_shape(lambda: make_denoiser("dit", 64, (8, 8, 1), num_classes=10))
    assert digits.patch == 2 and digits.net.tokens == 16 and digits.conditional


def test_bad_input(model):
    build = dict(rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^patch: expected a divisor of H = 4 and W = 4 "
                                         r"\(image_shape \(4, 4, 1\)\), got 3"):
        DiTDenoiser(16, (4, 4, 1), patch=3, **build)
    with pytest.raises(ValueError, match="^patch: expected a divisor of d = 16 .* got 3"):
        DiTDenoiser(16, patch=3, **build)
    with pytest.raises(ValueError, match="^patch: expected a divisor"):
        make_denoiser("dit", 3072, (32, 32, 3), patch=5)
    with pytest.raises(ValueError, match="^width: expected a multiple of heads = 4, got 18"):
        DiTDenoiser(16, width=18, heads=4, **build)
    with pytest.raises(ValueError, match="^image_shape: expected a shape with product d = 16"):
        DiTDenoiser(16, (4, 4, 2), **build)
    for name, value in [("heads", 0), ("depth", -1), ("patch", 0), ("width", 0),
                        ("mlp_ratio", 0.0), ("emb_dim", 7), ("num_classes", -1),
                        ("sigma_data", 0.0)]:
        with pytest.raises(ValueError, match=f"^{name}: expected"):
            DiTDenoiser(16, **{name: value}, **build)
    with pytest.raises(ValueError, match=r"^x: expected last dimension d = 16"):
        model(np.zeros((3, D + 1), np.float32), 1.0)
    with pytest.raises(ValueError, match="^cond: expected None for the unconditional"):
        model(np.zeros((3, D), np.float32), 1.0, 0)
