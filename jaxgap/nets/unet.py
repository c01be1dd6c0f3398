r"""A small U-Net denoiser for images stored flat (HWC order), with EDM preconditioning."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jaxtyping import Array, Float, Int

from jaxgap._checks import positive_float, positive_int
from jaxgap.nets._embedding import NoiseEmbedding, class_embedding, embed_noise_and_class
from jaxgap.nets._precond import EDMPrecond, check_image_shape

__all__ = ["UNet", "UNetDenoiser"]

_zeros = nnx.initializers.zeros_init()
_MAX_GROUPS = 8
# Images of at most this many pixels (the 2x2 bottom of a 3-level U-Net on 8x8 digits) are
# convolved as one dense matmul: XLA:CPU runs convs over such images in a generic loop at a
# fraction of its matmul rate (see _conv_matrix).
_TINY_PIXELS = 4


def _groups(channels: int) -> int:
    """GroupNorm groups: the largest divisor of ``channels`` that divides 8."""
    return math.gcd(channels, _MAX_GROUPS)


def _channels(channels) -> tuple[int, ...]:
    try:
        chans = tuple(channels)
    except TypeError as err:
        raise ValueError(f"channels: expected a tuple of ints, got {channels!r}") from err
    if not chans:
        raise ValueError("channels: expected at least one level, got ()")
    return tuple(positive_int(c, "channels") for c in chans)


class _ResBlock(nnx.Module):
    r"""Residual conv block: GroupNorm, noise embedding added, SiLU, 3x3 conv.

    .. math:: h \leftarrow S h + \mathrm{Conv}\bigl(\mathrm{SiLU}(\mathrm{GN}(h) + P e)\bigr),

    with ``P`` a linear map of the noise embedding ``e`` to one bias per channel, and ``S`` a
    1x1 conv when the channel count changes (identity otherwise).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, rngs: nnx.Rngs):
        self.norm = nnx.GroupNorm(c_in, num_groups=_groups(c_in), rngs=rngs)
        self.emb_proj = nnx.Linear(emb_dim, c_in, rngs=rngs)
        self.conv = nnx.Conv(c_in, c_out, (3, 3), rngs=rngs)
        self.skip = nnx.Conv(c_in, c_out, (1, 1), rngs=rngs) if c_in != c_out else None

    def __call__(self, x: Float[Array, "n h w c"], emb: Float[Array, "n e"]):
        h = nnx.silu(self.norm(x) + self.emb_proj(emb)[:, None, None, :])
        h = _conv(self.conv, h)
        return (x if self.skip is None else _conv(self.skip, x)) + h


class _Upsample(nnx.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 conv (computed at the low
    resolution, see :func:`_upsample_conv`; from images of at most ``_TINY_PIXELS``
    pixels as one matmul, see :func:`_conv_matrix`)."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(c_in, c_out, (3, 3), rngs=rngs)

    def __call__(self, x: Float[Array, "n h w c"]) -> Float[Array, "n 2h 2w o"]:
        conv = self.conv
        x, kernel, bias = conv.promote_dtype((x, conv.kernel[...], conv.bias[...]),
                                             dtype=conv.dtype)
        if x.shape[1] * x.shape[2] <= _TINY_PIXELS:
            return _dense_conv(x, kernel, bias, upsample=True)
        return _upsample_conv(x, kernel, bias)


def _conv(conv: nnx.Conv, x: Float[Array, "n h w c"]) -> Float[Array, "n h w o"]:
    """``conv(x)`` for the U-Net's stride-1, zero-padded 3x3 and 1x1 convs; over images of
    at most ``_TINY_PIXELS`` pixels as one matmul (:func:`_conv_matrix`)."""
    if x.shape[1] * x.shape[2] > _TINY_PIXELS:
        return conv(x)
    x, kernel, bias = conv.promote_dtype((x, conv.kernel[...], conv.bias[...]),
                                         dtype=conv.dtype)
    return _dense_conv(x, kernel, bias)


@functools.cache
def _tap_selector(height: int, width: int, size: int, upsample: bool) -> np.ndarray:
    """``S[p, q, t] = 1`` where kernel tap ``t`` (row-major in the ``size x size`` kernel)
    links input pixel ``p`` to output pixel ``q`` (both row-major) of a zero-padded,
    stride-1 conv of a ``height x width`` image, or of its nearest 2x upsampling (several
    taps of one output pixel then link to the same input pixel), else 0."""
    scale = 2 if upsample else 1
    out_h, out_w, half = scale * height, scale * width, size // 2
    sel = np.zeros((height * width, out_h * out_w, size * size), np.float32)
    for a in range(out_h):
        for b in range(out_w):
            for i in range(size):
                for j in range(size):
                    r, c = a + i - half, b + j - half
                    if 0 <= r < out_h and 0 <= c < out_w:
                        sel[(r // scale) * width + c // scale, a * out_w + b, i * size + j] = 1
    return sel


def _conv_matrix(kernel: Float[Array, "k k c o"], height: int, width: int, *,
                 upsample: bool = False) -> Float[Array, "hwc pqo"]:
    r"""The zero-padded, stride-1 conv of ``height x width`` images (after a nearest 2x
    upsampling when ``upsample``) as a matrix ``M [H W C, H' W' O]``: ``conv(x)`` is
    ``x.reshape(n, H W C) @ M`` (flattened HWC on both sides),

    .. math:: M_{(p, c), (q, o)} = \sum_t S_{p q t}\, K_{t, c, o},

    with ``S`` the 0/1 tap selector (:func:`_tap_selector`). Used for tiny images (at most
    ``_TINY_PIXELS`` pixels), where the matrix is small (``16 C O`` entries for a 2x2
    image, fewer multiply-adds than the conv's ``36 C O``) and XLA:CPU would leave the conv
    (and its gradients) to a generic loop several times slower than its matmul; the same
    function to float32 rounding.

    Example:
      >>> import jax
      >>> from jax import lax
      >>> kx, kk = jax.random.split(jax.random.key(0))
      >>> x, k = jax.random.normal(kx, (3, 2, 2, 4)), jax.random.normal(kk, (3, 3, 4, 5))
      >>> dn = ("NHWC", "HWIO", "NHWC")
      >>> ref = lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)
      >>> out = (x.reshape(3, 16) @ _conv_matrix(k, 2, 2)).reshape(3, 2, 2, 5)
      >>> bool(jnp.allclose(out, ref, rtol=1e-5, atol=1e-5))
      True
      >>> up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      >>> ref = lax.conv_general_dilated(up, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)
      >>> out = (x.reshape(3, 16) @ _conv_matrix(k, 2, 2, upsample=True)).reshape(3, 4, 4, 5)
      >>> bool(jnp.allclose(out, ref, rtol=1e-5, atol=1e-5))
      True
    """
    size, _, c_in, c_out = kernel.shape
    sel = jnp.asarray(_tap_selector(height, width, size, upsample), kernel.dtype)
    matrix = jnp.einsum("pqt,tco->pcqo", sel, kernel.reshape(size * size, c_in, c_out))
    return matrix.reshape(height * width * c_in, -1)


def _dense_conv(x: Float[Array, "n h w c"], kernel: Float[Array, "k k c o"],
                bias: Float[Array, " o"], *, upsample: bool = False):
    """``conv(x) + bias`` (after a nearest 2x upsampling when ``upsample``) as one matmul
    with :func:`_conv_matrix`."""
    n, h, w, c = x.shape
    scale = 2 if upsample else 1
    y = x.reshape(n, h * w * c) @ _conv_matrix(kernel, h, w, upsample=upsample)
    return y.reshape(n, scale * h, scale * w, kernel.shape[-1]) + bias.reshape(1, 1, 1, -1)


def _merge_taps(k, phase: int, axis: int):
    """The 3 taps of a 3x3 kernel along ``axis`` (rows 0, columns 1) merged into the 2 taps
    that output phase ``phase`` of a nearest-upsampled input sees."""
    k0, k1, k2 = (jnp.take(k, i, axis=axis) for i in range(3))
    return jnp.stack([k0, k1 + k2] if phase == 0 else [k0 + k1, k2], axis=axis)


def _upsample_conv(x: Float[Array, "n h w c"], kernel: Float[Array, "3 3 c o"],
                   bias: Float[Array, " o"]) -> Float[Array, "n 2h 2w o"]:
    r"""``conv3x3(up(x)) + bias`` (zero padding 1) with ``up`` the nearest 2x upsampling,
    computed as four 2x2 convolutions of ``x`` itself, one per output phase.

    Output pixel ``(2a + p, 2b + q)`` sees upsampled rows ``2a + p - 1 .. 2a + p + 1``, which
    are input rows ``a - 1, a, a`` (``p = 0``) or ``a, a, a + 1`` (``p = 1``); the kernel
    taps that fall on the same input row (or column) add up:

    .. math::
        y_{2a+p,\,2b+q} = \sum_{u, v \in \{0, 1\}} x_{a+p+u-1,\,b+q+v-1}\,
            K^{(p,q)}_{u,v}, \qquad
        K^{(0)} = (k_0,\ k_1 + k_2), \quad K^{(1)} = (k_0 + k_1,\ k_2)

    per axis (out-of-range ``x`` is zero, as the upsampled image's zero padding is). The
    same function as upsampling then convolving, to float32 rounding (the tap sums), with
    4 instead of 9 multiply-adds per output pixel and channel pair, and without the
    upsampled image (nor its transposed copy for the kernel gradient).

    Example:
      >>> import jax
      >>> from jax import lax
      >>> kx, kk = jax.random.split(jax.random.key(0))
      >>> x = jax.random.normal(kx, (2, 3, 4, 5))
      >>> k = jax.random.normal(kk, (3, 3, 5, 6))
      >>> up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      >>> ref = lax.conv_general_dilated(up, k, (1, 1), ((1, 1), (1, 1)),
      ...                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
      >>> out = _upsample_conv(x, k, jnp.zeros(6))
      >>> out.shape, bool(jnp.allclose(out, ref, rtol=1e-5, atol=1e-5))
      ((2, 6, 8, 6), True)
    """
    n, h, w, _ = x.shape
    rows = []
    for p in range(2):
        k_p = _merge_taps(kernel, p, axis=0)
        cols = [lax.conv_general_dilated(x, _merge_taps(k_p, q, axis=1), (1, 1),
                                         ((1 - p, p), (1 - q, q)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
                for q in range(2)]
        rows.append(jnp.stack(cols, axis=3))  # [n, h, w, q, o]
    y = jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, kernel.shape[-1])  # [n, h, p, w, q, o]
    return y + bias.reshape(1, 1, 1, -1)


def _downsample(x: Float[Array, "n h w c"]):
    """2x2 average pooling (``H`` and ``W`` even)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class UNet(nnx.Module):
    r"""The raw network ``F(x_in, c_noise[, cond])`` of :class:`UNetDenoiser`.

    For images ``(H, W, C)`` stored flat as ``[n, H * W * C]`` (HWC order, as
    :mod:`jaxgap.data` stores them). With ``L = len(channels)`` levels:

    - ``conv_in``: 3x3 conv ``C -> channels[0]``;
    - down, level ``i``: ``blocks_per_level`` residual blocks to ``channels[i]`` (GroupNorm,
      noise embedding added, SiLU, 3x3 conv); except at the last (lowest-resolution)
      level, the output is kept as the skip of level ``i`` and 2x2 average pooling follows;
    - middle: one residual block at the lowest resolution;
    - up, level ``i = L-2 .. 0``: nearest 2x upsampling and a 3x3 conv to ``channels[i]``
      (computed at the low resolution as four 2x2 convs, one per output pixel phase: the
      same function to float32 rounding, 4/9 of the work), concatenation with the skip of
      level ``i``, ``blocks_per_level`` residual blocks;
    - out: GroupNorm, SiLU, 3x3 conv ``channels[0] -> C``, zero-initialized (``F = 0``
      at initialization).

    GroupNorm uses ``gcd(channels, 8)`` groups. ``H`` and ``W`` must be divisible by
    ``2 ** (L - 1)``.

    The embedding ``e`` every residual block receives is the :class:`NoiseEmbedding` of
    ``c_noise``; with ``num_classes = K > 0`` (conditional) a class embedding table
    :math:`E \in \mathbb{R}^{(K + 1) \times \mathrm{emb\_dim}}` (row ``K`` the null token) is
    added to it,

    .. math::
        e = \mathrm{NoiseEmbedding}(c_\mathrm{noise}) + E_{\iota(c)}, \qquad
        \iota(c) = c \;(0 \le c < K), \quad \iota(\mathrm{NULL}) = K,

    zero-initialized and built after every other submodule (so with the same seed the other
    weights are bit for bit those of the unconditional U-Net, and at initialization the two
    compute the same function).

    Args:
      image_shape: ``(H, W, C)``.
      channels: channels per resolution level, e.g. ``(32, 64)``.
      blocks_per_level: residual blocks per level on each path, ``>= 1``.
      emb_dim: noise-embedding size (even).
      num_classes: number of conditions ``K >= 0`` (0: unconditional).
      rngs: ``nnx.Rngs`` for the initial weights.
    """

    def __init__(self, image_shape, *, channels=(32, 64), blocks_per_level: int = 1,
                 emb_dim: int = 64, num_classes: int = 0, rngs: nnx.Rngs):
        self.num_classes = positive_int(num_classes, "num_classes", minimum=0)
        height, width, c_img = check_image_shape(image_shape)
        channels = _channels(channels)
        blocks_per_level = positive_int(blocks_per_level, "blocks_per_level")
        factor = 2 ** (len(channels) - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"image_shape: expected H and W divisible by 2**(len(channels) - 1) = {factor} "
                f"for channels={channels}, got {(height, width, c_img)}")
        self.image_shape = (height, width, c_img)
        self.dim = height * width * c_img
        self.channels = channels
        self.blocks_per_level = blocks_per_level
        self.embed = NoiseEmbedding(emb_dim, rngs=rngs)
        emb_dim = self.embed.emb_dim

        self.conv_in = nnx.Conv(c_img, channels[0], (3, 3), rngs=rngs)
        c = channels[0]
        down = []
        for c_level in channels:
            level = []
            for _ in range(blocks_per_level):
                level.append(_ResBlock(c, c_level, emb_dim, rngs=rngs))
                c = c_level
            down.append(nnx.List(level))
        self.down = nnx.List(down)
        self.mid = _ResBlock(c, c, emb_dim, rngs=rngs)
        ups, up = [], []
        for c_level in reversed(channels[:-1]):
            ups.append(_Upsample(c, c_level, rngs=rngs))
            level = [_ResBlock(2 * c_level if b == 0 else c_level, c_level, emb_dim, rngs=rngs)
                     for b in range(blocks_per_level)]
            up.append(nnx.List(level))
            c = c_level
        self.upsample = nnx.List(ups)
        self.up = nnx.List(up)
        self.norm_out = nnx.GroupNorm(c, num_groups=_groups(c), rngs=rngs)
        self.conv_out = nnx.Conv(c, c_img, (3, 3), kernel_init=_zeros, bias_init=_zeros,
                                 rngs=rngs)
        if self.num_classes:  # last: the weights above are the unconditional U-Net's
            self.class_embed = class_embedding(self.num_classes, emb_dim, rngs=rngs)

    def __call__(self, x_in: Float[Array, "n d"], c_noise: Float[Array, " n"],
                 cond: Int[Array, " n"] | None = None) -> Float[Array, "n d"]:
        """Args: ``x_in: [n, H*W*C]``, ``c_noise: [n]``, ``cond: [n]`` condition ids in
        ``[0, num_classes)`` or ``NULL`` (conditional network only; None otherwise).
        Returns: ``F: [n, H*W*C]``."""
        n = x_in.shape[0]
        emb = embed_noise_and_class(self, c_noise, cond)
        h = _conv(self.conv_in, x_in.reshape(n, *self.image_shape))
        skips = []
        for i, level in enumerate(self.down):
            for block in level:
                h = block(h, emb)
            if i < len(self.down) - 1:
                skips.append(h)
                h = _downsample(h)
        h = self.mid(h, emb)
        for upsample, level in zip(self.upsample, self.up, strict=True):
            h = jnp.concatenate([upsample(h), skips.pop()], axis=-1)
            for block in level:
                h = block(h, emb)
        h = _conv(self.conv_out, nnx.silu(self.norm_out(h)))
        return h.reshape(n, self.dim)


class UNetDenoiser(EDMPrecond):
    r"""EDM-preconditioned U-Net denoiser ``D(x, sigma)`` for images stored flat.

    .. math::
        D(x, \sigma) = c_\mathrm{skip}(\sigma)\, x + c_\mathrm{out}(\sigma)\,
        F_\theta\bigl(c_\mathrm{in}(\sigma)\, x, \tfrac14 \ln \sigma\bigr)

    with ``F`` a small :class:`UNet`. Input and output are flat ``[..., H * W * C]``
    vectors in HWC order (reshaped internally), so it obeys jaxgap's denoiser protocol (see
    :class:`EDMPrecond`) exactly like the closed-form denoisers. The output conv is
    zero-initialized: initially ``D = c_skip * x``. With ``num_classes = K > 0`` it is
    conditional, ``D(x, sigma, cond)``: a zero-initialized class embedding (``K``
    conditions and a learned null token for ``NULL``) is added to the noise embedding (see
    :class:`UNet`).

    Args:
      image_shape: ``(H, W, C)``, e.g. ``(8, 8, 1)`` for the digits, ``(32, 32, 3)`` for
        CIFAR-10; ``H`` and ``W`` divisible by ``2 ** (len(channels) - 1)``.
      channels: channels per resolution level.
      blocks_per_level: residual blocks per level on each path, ``>= 1``.
      emb_dim: noise-embedding size, an even integer.
      num_classes: number of conditions ``K >= 0`` (0: unconditional).
      sigma_data: standard deviation of the data per dimension, ``> 0``.
      rngs: ``nnx.Rngs`` (e.g. ``nnx.Rngs(0)``); the same seed gives the same weights.

    Attributes:
      image_shape: ``(H, W, C)``.
      dim: ``H * W * C``.

    Example:
      >>> import jax.numpy as jnp
      >>> D = UNetDenoiser((8, 8, 1), channels=(8,), emb_dim=8, rngs=nnx.Rngs(0))
      >>> D(jnp.zeros((2, 64)), 0.5).shape  # flat 8x8x1 images in, flat images out
      (2, 64)

    References:
      Karras et al. (2022), Table 1 and Eq. (7); O. Ronneberger, P. Fischer, T. Brox, U-Net,
      MICCAI 2015; J. Ho, A. Jain, P. Abbeel, DDPM, NeurIPS 2020 (the diffusion U-Net).
    """

    def __init__(self, image_shape, *, channels=(32, 64), blocks_per_level: int = 1,
                 emb_dim: int = 64, num_classes: int = 0, sigma_data: float = 0.5,
                 rngs: nnx.Rngs):
        sigma_data = positive_float(sigma_data, "sigma_data")  # before building the net
        net = UNet(image_shape, channels=channels, blocks_per_level=blocks_per_level,
                   emb_dim=emb_dim, num_classes=num_classes, rngs=rngs)
        super().__init__(net, net.dim, sigma_data=sigma_data)
        self.image_shape = net.image_shape
