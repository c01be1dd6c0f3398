r"""A diffusion transformer (DiT) denoiser with adaLN-Zero blocks, with EDM preconditioning.

The raw network follows Peebles and Xie (2023): the input is cut into tokens, each token is
embedded linearly and given a fixed sin-cos position, ``depth`` transformer blocks whose
layer norms are modulated by the conditioning embedding (adaLN-Zero) process the token
sequence, and a modulated final layer maps every token back to its patch.

Tokens:

- images ``(H, W, C)`` stored flat in HWC order: non-overlapping ``p x p`` patches in
  row-major order, ``T = (H / p)(W / p)`` tokens of ``p * p * C`` values (HWC order inside
  the patch), with 2-D sin-cos positions (the first half of the features encodes the patch
  row, the second half its column);
- vectors (``image_shape=None``): ``T = d / p`` contiguous groups of ``p`` features, with
  1-D sin-cos positions.

References:
  W. Peebles, S. Xie. Scalable Diffusion Models with Transformers. ICCV 2023
  (arXiv:2212.09748), Section 3.2 (patchify, adaLN-Zero); A. Vaswani et al., Attention Is
  All You Need, NeurIPS 2017 (multi-head attention, sin-cos positions).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxgap._checks import positive_float, positive_int
from jaxgap.nets._embedding import NoiseEmbedding, class_embedding, embed_noise_and_class
from jaxgap.nets._precond import EDMPrecond, check_image_shape

__all__ = ["DiT", "DiTDenoiser", "default_patch"]

_zeros = nnx.initializers.zeros_init()
_MAX_TOKENS = 64  # the default patch keeps the sequence at most this long
_LN_EPS = 1e-6


def default_patch(dim: int, image_shape=None) -> int:
    """The patch size :class:`DiT` uses when none is given: the smallest ``p >= 2`` that
    tiles the data into at most 64 tokens.

    Images: ``p`` divides ``H`` and ``W`` and ``(H / p)(W / p) <= 64`` (8x8 digits: 2, 16
    tokens; 32x32: 4, 64 tokens; 16x16: 2, 64 tokens). Vectors: ``p`` divides ``d`` and
    ``d / p <= 64`` (d = 64: 2, 32 tokens). When no ``p >= 2`` qualifies, the largest common
    divisor is used (one token per image or vector when it is > 1; ``p = 1`` when ``H`` and
    ``W`` are coprime).

    Example:
      >>> default_patch(64, (8, 8, 1)), default_patch(3072, (32, 32, 3)), default_patch(64)
      (2, 4, 2)
    """
    if image_shape is None:
        sides = (positive_int(dim, "dim"),)
    else:
        sides = check_image_shape(image_shape)[:2]
    common = math.gcd(*sides)
    divisors = [p for p in range(2, common + 1) if common % p == 0]
    for p in divisors:
        if math.prod(s // p for s in sides) <= _MAX_TOKENS:
            return p
    return divisors[-1] if divisors else 1


def _sincos(positions: np.ndarray, features: int) -> np.ndarray:
    r"""Fixed 1-D sin-cos embedding ``[len(positions), features]`` (float64):
    :math:`[\sin(\omega_k t), \cos(\omega_k t)]_k` with :math:`\omega_k = 10000^{-k / m}`,
    ``m = features // 2``, a zero column appended when ``features`` is odd."""
    m = features // 2
    omega = 10000.0 ** (-np.arange(m) / max(m, 1))
    angles = positions[:, None] * omega[None, :]
    out = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    return np.pad(out, ((0, 0), (0, features - 2 * m)))


def _positions(grid: tuple[int, ...], width: int) -> np.ndarray:
    """Fixed positional embeddings ``[T, width]`` of a 1-D or 2-D (row-major) token grid."""
    if len(grid) == 1:
        return _sincos(np.arange(grid[0], dtype=np.float64), width)
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    half = width // 2
    return np.concatenate([_sincos(rows.ravel().astype(np.float64), half),
                           _sincos(cols.ravel().astype(np.float64), width - half)], axis=1)


def _layer_norm(h: Float[Array, "n t w"]) -> Float[Array, "n t w"]:
    """Layer norm over features without learned scale or offset (adaLN supplies them)."""
    mean = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + _LN_EPS)


def _tokenwise(linear: nnx.Linear, h: Float[Array, "n t a"]) -> Float[Array, "n t b"]:
    """A linear layer applied to every token, as one ``[n * T, a] @ [a, b]`` product (on
    CPU, XLA's gradient of the rank-3 ``dot_general`` was markedly slower)."""
    n, t, _ = h.shape
    return linear(h.reshape(n * t, -1)).reshape(n, t, -1)


def _modulate(h, shift, scale):
    """adaLN: ``h * (1 + scale) + shift`` with ``shift, scale: [n, 1, w]``."""
    return h * (1.0 + scale) + shift


class _Block(nnx.Module):
    r"""Transformer block with adaLN-Zero conditioning (Peebles and Xie 2023, Fig. 3).

    .. math::
        (\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2) = W_m\, c + b_m, \\
        h \leftarrow h + \alpha_1 \odot \mathrm{Attn}\bigl(\mathrm{LN}(h) \odot (1 + \gamma_1)
          + \beta_1\bigr), \qquad
        h \leftarrow h + \alpha_2 \odot \mathrm{MLP}\bigl(\mathrm{LN}(h) \odot (1 + \gamma_2)
          + \beta_2\bigr),

    with :math:`W_m, b_m` zero-initialized: the gates :math:`\alpha` start at 0 and the
    block starts as the identity. ``MLP`` is ``Linear -> GELU (tanh) -> Linear``.
    """

    def __init__(self, width: int, heads: int, hidden: int, emb_dim: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
        self.attn_out = nnx.Linear(width, width, rngs=rngs)
        self.mlp_in = nnx.Linear(width, hidden, rngs=rngs)
        self.mlp_out = nnx.Linear(hidden, width, rngs=rngs)
        self.modulation = nnx.Linear(emb_dim, 6 * width, kernel_init=_zeros, bias_init=_zeros,
                                     rngs=rngs)

    def attention(self, h: Float[Array, "n t w"]) -> Float[Array, "n t w"]:
        r"""Multi-head self-attention, :math:`\mathrm{softmax}(q k^\top / \sqrt{w / H})\, v`
        per head, then the output projection."""
        n, t, w = h.shape
        head = w // self.heads
        qkv = _tokenwise(self.qkv, h).reshape(n, t, 3 * self.heads, head)
        q, k, v = jnp.split(qkv, 3, axis=2)  # [n, t, heads, head] each
        logits = jnp.einsum("nqhc,nkhc->nhqk", q, k) / math.sqrt(head)
        out = jnp.einsum("nhqk,nkhc->nqhc", jax.nn.softmax(logits, axis=-1), v)
        return _tokenwise(self.attn_out, out.reshape(n, t, w))

    def __call__(self, h: Float[Array, "n t w"], c: Float[Array, "n e"]) -> Float[Array, "n t w"]:
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(
            self.modulation(c)[:, None, :], 6, axis=-1)
        h = h + gate1 * self.attention(_modulate(_layer_norm(h), shift1, scale1))
        y = _tokenwise(self.mlp_in, _modulate(_layer_norm(h), shift2, scale2))
        return h + gate2 * _tokenwise(self.mlp_out, nnx.gelu(y, approximate=True))


class DiT(nnx.Module):
    r"""The raw network ``F(x_in, c_noise[, cond])`` of :class:`DiTDenoiser`.

    ``x_in [n, d] -> tokens [n, T, P] -> Linear(P, width) + positions -> depth x adaLN-Zero
    block -> adaLN final layer -> Linear(width, P) -> [n, d]``, with ``P`` the values per
    token (``p * p * C`` for images, ``p`` for vectors). Every block and the final layer
    regress their shift/scale (and gates) from :math:`\mathrm{SiLU}(e)`, the conditioning
    embedding ``e`` being the :class:`NoiseEmbedding` of ``c_noise``, plus, when
    ``num_classes = C > 0``, a class embedding table :math:`E` (row ``C`` the null token for
    ``NULL``) built last and zero-initialized (see :func:`class_embedding`):

    .. math::
        e = \mathrm{NoiseEmbedding}(c_\mathrm{noise}) + E_{\iota(c)}, \qquad
        (\beta, \gamma) = W_f\, \mathrm{SiLU}(e) + b_f, \qquad
        F = W_o \bigl(\mathrm{LN}(h) \odot (1 + \gamma) + \beta\bigr) + b_o.

    The block modulations and :math:`W_o, b_o` are zero-initialized, so ``F = 0`` at
    initialization (each block is the identity; :class:`DiTDenoiser` starts at
    ``D = c_skip x``, like the other nets). Positions are fixed sin-cos embeddings (not
    trained): 2-D for images, 1-D for vectors (see :mod:`jaxgap.nets.dit`). Each example is
    computed on its own (attention mixes the tokens of one example only), so the output does
    not depend on the batch. Parameters: about ``depth * (12 width^2 + 6 emb_dim width)``
    with ``mlp_ratio = 4``.

    Args:
      dim: data dimension ``d``.
      image_shape: ``(H, W, C)`` with ``H * W * C == d`` (patches), or None (vectors:
        contiguous feature groups).
      width: token features, a multiple of ``heads``.
      depth: number of blocks, ``>= 0``.
      heads: attention heads.
      patch: patch side ``p`` (images: divides ``H`` and ``W``; vectors: divides ``d``);
        None: :func:`default_patch`.
      mlp_ratio: hidden features of each block's MLP per token feature, ``> 0``.
      emb_dim: noise-embedding size (even).
      num_classes: number of conditions ``C >= 0`` (0: unconditional).
      rngs: ``nnx.Rngs`` for the initial weights.

    Raises:
      ValueError: naming the argument: ``image_shape`` of the wrong product, a ``patch``
        that does not divide the image sides (or ``d``), a ``width`` not a multiple of
        ``heads``, a non-positive size.
    """

    def __init__(self, dim: int, image_shape=None, *, width: int = 64, depth: int = 4,
                 heads: int = 4, patch: int | None = None, mlp_ratio: float = 4.0,
                 emb_dim: int = 64, num_classes: int = 0, rngs: nnx.Rngs):
        self.num_classes = positive_int(num_classes, "num_classes", minimum=0)
        self.dim = positive_int(dim, "dim")
        if image_shape is not None:
            image_shape = check_image_shape(image_shape)
            if math.prod(image_shape) != self.dim:
                raise ValueError(f"image_shape: expected a shape with product d = {self.dim}, "
                                 f"got {image_shape} (product {math.prod(image_shape)})")
        self.image_shape = image_shape
        self.width = positive_int(width, "width")
        self.depth = positive_int(depth, "depth", minimum=0)
        self.heads = positive_int(heads, "heads")
        if self.width % self.heads:
            raise ValueError(f"width: expected a multiple of heads = {self.heads}, "
                             f"got {self.width}")
        self.patch = (default_patch(self.dim, image_shape) if patch is None
                      else positive_int(patch, "patch"))
        p = self.patch
        if image_shape is None:
            if self.dim % p:
                raise ValueError(f"patch: expected a divisor of d = {self.dim} (vectors are cut "
                                 f"into groups of patch features), got {p}")
            self.grid, self.token_dim = (self.dim // p,), p
        else:
            height, wid, channels = image_shape
            if height % p or wid % p:
                raise ValueError(f"patch: expected a divisor of H = {height} and W = {wid} "
                                 f"(image_shape {image_shape}), got {p}")
            self.grid, self.token_dim = (height // p, wid // p), p * p * channels
        ratio = positive_float(mlp_ratio, "mlp_ratio")
        hidden = max(1, round(ratio * self.width))
        self.embed = NoiseEmbedding(emb_dim, rngs=rngs)
        emb_dim = self.embed.emb_dim
        self.patch_embed = nnx.Linear(self.token_dim, self.width, rngs=rngs)
        self.blocks = nnx.List([_Block(self.width, self.heads, hidden, emb_dim, rngs=rngs)
                                for _ in range(self.depth)])
        self.final_modulation = nnx.Linear(emb_dim, 2 * self.width, kernel_init=_zeros,
                                           bias_init=_zeros, rngs=rngs)
        self.linear_out = nnx.Linear(self.width, self.token_dim, kernel_init=_zeros,
                                     bias_init=_zeros, rngs=rngs)
        if self.num_classes:  # last: the weights above are the unconditional network's
            self.class_embed = class_embedding(self.num_classes, emb_dim, rngs=rngs)

    @property
    def tokens(self) -> int:
        """The sequence length ``T``."""
        return math.prod(self.grid)

    def patchify(self, x: Float[Array, "n d"]) -> Float[Array, "n t p"]:
        """Flat inputs ``[n, d]`` to tokens ``[n, T, P]`` (row-major patches, HWC inside)."""
        n, p = x.shape[0], self.patch
        if self.image_shape is None:
            return x.reshape(n, self.tokens, p)
        (gh, gw), c = self.grid, self.image_shape[2]
        x = x.reshape(n, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(n, self.tokens, self.token_dim)

    def unpatchify(self, tokens: Float[Array, "n t p"]) -> Float[Array, "n d"]:
        """The inverse of :meth:`patchify`: tokens ``[n, T, P]`` to flat ``[n, d]``."""
        n, p = tokens.shape[0], self.patch
        if self.image_shape is None:
            return tokens.reshape(n, self.dim)
        (gh, gw), c = self.grid, self.image_shape[2]
        x = tokens.reshape(n, gh, gw, p, p, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(n, self.dim)

    def __call__(self, x_in: Float[Array, "n d"], c_noise: Float[Array, " n"],
                 cond: Int[Array, " n"] | None = None) -> Float[Array, "n d"]:
        """Args: ``x_in: [n, d]``, ``c_noise: [n]``, ``cond: [n]`` condition ids in
        ``[0, num_classes)`` or ``NULL`` (conditional network only; None otherwise).
        Returns: ``F: [n, d]``."""
        c = nnx.silu(embed_noise_and_class(self, c_noise, cond))
        pos = jnp.asarray(_positions(self.grid, self.width), x_in.dtype)
        h = _tokenwise(self.patch_embed, self.patchify(x_in)) + pos[None]
        for block in self.blocks:
            h = block(h, c)
        shift, scale = jnp.split(self.final_modulation(c)[:, None, :], 2, axis=-1)
        out = _tokenwise(self.linear_out, _modulate(_layer_norm(h), shift, scale))
        return self.unpatchify(out)


class DiTDenoiser(EDMPrecond):
    r"""EDM-preconditioned diffusion-transformer denoiser ``D(x, sigma)`` for images stored
    flat (HWC) or for vectors.

    .. math::
        D(x, \sigma) = c_\mathrm{skip}(\sigma)\, x + c_\mathrm{out}(\sigma)\,
        F_\theta\bigl(c_\mathrm{in}(\sigma)\, x, \tfrac14 \ln \sigma\bigr)

    with ``F`` a :class:`DiT` (patch tokens, fixed sin-cos positions, adaLN-Zero transformer
    blocks, zero-initialized output, so that initially ``D = c_skip * x``). Obeys jaxgap's
    denoiser protocol (see :class:`EDMPrecond`). With ``num_classes = C > 0`` it is
    conditional, ``D(x, sigma, cond)``: a zero-initialized class embedding (``C`` conditions
    and a learned null token for ``NULL``) is added to the noise embedding that drives the
    modulations.

    Args:
      dim: data dimension ``d``.
      image_shape: ``(H, W, C)`` (patches of ``p x p`` pixels), or None (vectors: groups
        of ``p`` contiguous features).
      width, depth, heads, patch, mlp_ratio, emb_dim, num_classes: see :class:`DiT`.
      sigma_data: standard deviation of the data per dimension, ``> 0``.
      rngs: ``nnx.Rngs`` (e.g. ``nnx.Rngs(0)``); the same seed gives the same weights.

    Attributes:
      image_shape: ``(H, W, C)`` or None.
      patch: ``p``.
      dim: ``d``.

    Example:
      >>> import jax.numpy as jnp
      >>> D = DiTDenoiser(64, (8, 8, 1), width=16, depth=1, heads=2, emb_dim=8,
      ...                 rngs=nnx.Rngs(0))
      >>> D.patch, D.net.tokens  # 2x2 patches of an 8x8 image: 16 tokens
      (2, 16)
      >>> x = jnp.ones((3, 64))
      >>> D(x, 0.5).round(4)[0, :3]  # F = 0 at initialization: D = c_skip x = x / 2
      Array([0.5, 0.5, 0.5], dtype=float32)
      >>> V = DiTDenoiser(12, width=8, depth=1, heads=2, patch=3, emb_dim=8, rngs=nnx.Rngs(0))
      >>> V.net.tokens, V(jnp.zeros((2, 12)), 1.0).shape  # vectors: 4 groups of 3 features
      (4, (2, 12))

    References:
      Peebles and Xie (2023); Karras et al. (2022), Table 1 and Eq. (7).
    """

    def __init__(self, dim: int, image_shape=None, *, width: int = 64, depth: int = 4,
                 heads: int = 4, patch: int | None = None, mlp_ratio: float = 4.0,
                 emb_dim: int = 64, num_classes: int = 0, sigma_data: float = 0.5,
                 rngs: nnx.Rngs):
        sigma_data = positive_float(sigma_data, "sigma_data")  # before building the net
        net = DiT(dim, image_shape, width=width, depth=depth, heads=heads, patch=patch,
                  mlp_ratio=mlp_ratio, emb_dim=emb_dim, num_classes=num_classes, rngs=rngs)
        super().__init__(net, net.dim, sigma_data=sigma_data)
        self.image_shape = net.image_shape
        self.patch = net.patch
