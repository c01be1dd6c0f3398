r"""A small U-Net denoiser for images stored flat (HWC order), with EDM preconditioning."""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxgap._checks import positive_float, positive_int
from jaxgap.nets._embedding import NoiseEmbedding, class_embedding, embed_noise_and_class
from jaxgap.nets._precond import EDMPrecond, check_image_shape

__all__ = ["UNet", "UNetDenoiser"]

_zeros = nnx.initializers.zeros_init()
_MAX_GROUPS = 8


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
        h = self.conv(h)
        return (x if self.skip is None else self.skip(x)) + h


class _Upsample(nnx.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 conv."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(c_in, c_out, (3, 3), rngs=rngs)

    def __call__(self, x: Float[Array, "n h w c"]):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)


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
    - up, level ``i = L-2 .. 0``: nearest 2x upsampling and a 3x3 conv to ``channels[i]``,
      concatenation with the skip of level ``i``, ``blocks_per_level`` residual blocks;
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
        h = self.conv_in(x_in.reshape(n, *self.image_shape))
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
        h = self.conv_out(nnx.silu(self.norm_out(h)))
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
