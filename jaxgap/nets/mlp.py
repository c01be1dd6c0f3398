r"""A residual MLP denoiser for flat data, with EDM preconditioning."""

from __future__ import annotations

from flax import nnx
from jaxtyping import Array, Float, Int

from jaxgap._checks import positive_float, positive_int
from jaxgap.nets._embedding import NoiseEmbedding, class_embedding, embed_noise_and_class
from jaxgap.nets._precond import EDMPrecond

__all__ = ["MLP", "MLPDenoiser"]

_zeros = nnx.initializers.zeros_init()


class _MLPBlock(nnx.Module):
    r"""Pre-norm residual block, the noise embedding added after the first layer.

    .. math:: h \leftarrow h + W_1\, \mathrm{SiLU}\bigl(W_0\, \mathrm{SiLU}(\mathrm{LN}(h))
              + b_0 + P e\bigr) + b_1
    """

    def __init__(self, width: int, emb_dim: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.linear0 = nnx.Linear(width, width, rngs=rngs)
        self.emb_proj = nnx.Linear(emb_dim, width, rngs=rngs)
        self.linear1 = nnx.Linear(width, width, rngs=rngs)

    def __call__(self, h: Float[Array, "n w"], emb: Float[Array, "n e"]) -> Float[Array, "n w"]:
        y = self.linear0(nnx.silu(self.norm(h)))
        y = nnx.silu(y + self.emb_proj(emb))
        return h + self.linear1(y)


class MLP(nnx.Module):
    r"""The raw network ``F(x_in, c_noise[, cond])`` of :class:`MLPDenoiser`.

    ``x_in -> Linear(d, width) -> depth x residual block -> LayerNorm -> SiLU ->
    Linear(width, d)``, each block receiving the embedding ``e`` (added after its first
    layer). The last layer is zero-initialized, so ``F = 0`` at initialization.

    Unconditional (``num_classes = 0``): ``e`` is the :class:`NoiseEmbedding` of
    ``c_noise``. Conditional (``num_classes = C > 0``): a class embedding table
    :math:`E \in \mathbb{R}^{(C + 1) \times \mathrm{emb\_dim}}` (row ``C`` the learned
    null token) is added,

    .. math::
        e = \mathrm{NoiseEmbedding}(c_\mathrm{noise}) + E_{\iota(c)}, \qquad
        \iota(c) = c \;(0 \le c < C), \quad \iota(\mathrm{NULL}) = C,

    zero-initialized and built after every other submodule (so with the same seed the other
    weights are bit for bit those of the unconditional network, and at initialization the
    two compute the same function).

    Args:
      dim: data dimension ``d``.
      width: hidden width.
      depth: number of residual blocks, ``>= 0``.
      emb_dim: noise-embedding size (even).
      num_classes: number of conditions ``C >= 0`` (0: unconditional).
      rngs: ``nnx.Rngs`` for the initial weights.
    """

    def __init__(self, dim: int, *, width: int = 256, depth: int = 4, emb_dim: int = 64,
                 num_classes: int = 0, rngs: nnx.Rngs):
        self.num_classes = positive_int(num_classes, "num_classes", minimum=0)
        self.dim = positive_int(dim, "dim")
        self.width = positive_int(width, "width")
        self.depth = positive_int(depth, "depth", minimum=0)
        self.embed = NoiseEmbedding(emb_dim, rngs=rngs)
        self.linear_in = nnx.Linear(self.dim, self.width, rngs=rngs)
        self.blocks = nnx.List([_MLPBlock(self.width, self.embed.emb_dim, rngs=rngs)
                                for _ in range(self.depth)])
        self.norm_out = nnx.LayerNorm(self.width, rngs=rngs)
        self.linear_out = nnx.Linear(self.width, self.dim, kernel_init=_zeros, bias_init=_zeros,
                                     rngs=rngs)
        if self.num_classes:  # last: the weights above are the unconditional network's
            self.class_embed = class_embedding(self.num_classes, self.embed.emb_dim, rngs=rngs)

    def __call__(self, x_in: Float[Array, "n d"], c_noise: Float[Array, " n"],
                 cond: Int[Array, " n"] | None = None) -> Float[Array, "n d"]:
        """Args: ``x_in: [n, d]``, ``c_noise: [n]``, ``cond: [n]`` condition ids in
        ``[0, num_classes)`` or ``NULL`` (conditional network only; None otherwise).
        Returns: ``F: [n, d]``."""
        emb = embed_noise_and_class(self, c_noise, cond)
        h = self.linear_in(x_in)
        for block in self.blocks:
            h = block(h, emb)
        return self.linear_out(nnx.silu(self.norm_out(h)))


class MLPDenoiser(EDMPrecond):
    r"""EDM-preconditioned residual-MLP denoiser ``D(x, sigma)`` for flat data ``[..., d]``.

    .. math::
        D(x, \sigma) = c_\mathrm{skip}(\sigma)\, x + c_\mathrm{out}(\sigma)\,
        F_\theta\bigl(c_\mathrm{in}(\sigma)\, x, \tfrac14 \ln \sigma\bigr)

    with ``F`` an :class:`MLP` (residual LayerNorm/SiLU blocks, Fourier noise embedding
    added into each block, zero-initialized output layer, so that initially
    ``D = c_skip * x``). Obeys jaxgap's denoiser protocol (see :class:`EDMPrecond`). With
    ``num_classes = C > 0`` it is conditional, ``D(x, sigma, cond)``: a zero-initialized
    class embedding (``C`` conditions and a learned null token for ``NULL``) is added to
    the noise embedding (see :class:`MLP`).

    Args:
      dim: data dimension ``d``.
      width: hidden width.
      depth: number of residual blocks, ``>= 0``.
      emb_dim: noise-embedding size, an even integer.
      num_classes: number of conditions ``C >= 0`` (0: unconditional).
      sigma_data: standard deviation of the data per dimension, ``> 0``.
      rngs: ``nnx.Rngs`` (e.g. ``nnx.Rngs(0)``); the same seed gives the same weights.

    Example:
      >>> import jax.numpy as jnp
      >>> D = MLPDenoiser(16, width=16, depth=1, emb_dim=8, rngs=nnx.Rngs(0))
      >>> D(jnp.zeros((8, 16)), jnp.full((8,), 0.5)).shape  # per-example noise levels
      (8, 16)

    References:
      Karras et al. (2022), Table 1 and Eq. (7).
    """

    def __init__(self, dim: int, *, width: int = 256, depth: int = 4, emb_dim: int = 64,
                 num_classes: int = 0, sigma_data: float = 0.5, rngs: nnx.Rngs):
        sigma_data = positive_float(sigma_data, "sigma_data")  # before building the net
        net = MLP(dim, width=width, depth=depth, emb_dim=emb_dim, num_classes=num_classes,
                  rngs=rngs)
        super().__init__(net, net.dim, sigma_data=sigma_data)
