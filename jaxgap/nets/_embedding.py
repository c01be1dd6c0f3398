r"""Noise-level embedding (Fourier features of ``c_noise`` and a small MLP) and the class
embedding of conditional networks, added to it."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxgap._checks import positive_float, positive_int, shape_str
from jaxgap._protocol import NULL

__all__ = ["NoiseEmbedding", "class_embedding", "embed_noise_and_class"]

_zeros = nnx.initializers.zeros_init()


class NoiseEmbedding(nnx.Module):
    r"""Embed the noise conditioning ``c_noise = ln(sigma) / 4`` into ``emb_dim`` features.

    Fixed Fourier features at ``m = emb_dim / 2`` log-spaced angular frequencies from 1 to
    ``max_freq``, then a two-layer SiLU MLP:

    .. math::
        \omega_k = \omega_{\max}^{k / (m - 1)}, \quad k = 0, \dots, m - 1, \qquad
        \phi(c) = [\cos(\omega_k c), \sin(\omega_k c)]_k, \qquad
        e = \mathrm{SiLU}(W_1\, \mathrm{SiLU}(W_0 \phi(c) + b_0) + b_1).

    The frequencies are deterministic constants computed from ``emb_dim`` and ``max_freq``
    (not stored, not trained, independent of the seed). Over EDM's range
    :math:`\sigma \in [0.002, 80]`, ``c_noise`` spans about ``[-1.55, 1.10]``: the lowest
    frequency (1 rad per unit) encodes the coarse noise level almost linearly, the highest
    (default 100, about EDM's random Fourier scale :math:`2\pi \cdot 16`) resolves ratios of
    ``sigma`` of a few percent.

    Args:
      emb_dim: number of Fourier features and of output features, an even integer ``>= 2``.
      max_freq: the highest angular frequency, ``> 0`` (``m == 1`` uses frequency 1 only).
      rngs: ``nnx.Rngs`` for the MLP's initial weights.

    References:
      Karras et al. (2022), Appendix B.6 and ``training/networks.py``
      (``PositionalEmbedding``/``FourierEmbedding`` of c_noise); M. Tancik et al., Fourier
      Features Let Networks Learn High Frequency Functions in Low Dimensional Domains,
      NeurIPS 2020.
    """

    def __init__(self, emb_dim: int = 64, *, max_freq: float = 100.0, rngs: nnx.Rngs):
        emb_dim = positive_int(emb_dim, "emb_dim", minimum=2)
        if emb_dim % 2:
            raise ValueError(f"emb_dim: expected an even integer >= 2, got {emb_dim}")
        self.emb_dim = emb_dim
        self.max_freq = positive_float(max_freq, "max_freq")
        self.linear0 = nnx.Linear(emb_dim, emb_dim, rngs=rngs)
        self.linear1 = nnx.Linear(emb_dim, emb_dim, rngs=rngs)

    def frequencies(self) -> np.ndarray:
        """The ``[emb_dim / 2]`` angular frequencies (numpy float64), log-spaced from 1."""
        m = self.emb_dim // 2
        return self.max_freq ** (np.arange(m) / max(m - 1, 1))

    def __call__(self, c_noise: Float[Array, " n"]) -> Float[Array, "n emb"]:
        """Args: ``c_noise: [n]``. Returns: ``[n, emb_dim]`` embeddings (after a SiLU)."""
        freqs = jnp.asarray(self.frequencies(), dtype=c_noise.dtype)
        angles = c_noise[:, None] * freqs[None, :]
        features = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
        return nnx.silu(self.linear1(nnx.silu(self.linear0(features))))


def class_embedding(num_classes: int, emb_dim: int, *, rngs: nnx.Rngs) -> nnx.Embed:
    r"""The class embedding table :math:`E \in \mathbb{R}^{(C + 1) \times e}` of a
    conditional network: rows ``0 .. C - 1`` for the conditions, row ``C`` the learned null
    token (the condition ``NULL``).

    Zero-initialized: a fresh conditional network computes exactly what the unconditional
    network with the same seed computes (``e + 0 = e``), for every condition and ``NULL``,
    and starts from EDM's ``D = c_skip x`` like it; training separates the rows (each
    receives the gradient of its own examples only), so no random symmetry breaking is
    needed. Build it after every other submodule: its draw from ``rngs`` then comes last,
    and the other weights are those of the unconditional network with the same seed.
    """
    return nnx.Embed(num_classes + 1, emb_dim, embedding_init=_zeros, rngs=rngs)


def embed_noise_and_class(net, c_noise: Float[Array, " n"], cond) -> Float[Array, "n emb"]:
    r"""The embedding a raw network's blocks receive: the noise embedding, plus the class
    embedding of ``cond`` when the network is conditional.

    .. math::
        e(c_\mathrm{noise}, c) = \mathrm{NoiseEmbedding}(c_\mathrm{noise}) + E_{\iota(c)},
        \qquad \iota(c) = c \text{ for } 0 \le c < C, \quad \iota(\mathrm{NULL}) = C.

    Args:
      net: a raw network with ``embed`` (a :class:`NoiseEmbedding`), ``num_classes`` ``C``
        and, when ``C > 0``, ``class_embed`` (from :func:`class_embedding`).
      c_noise: ``[n]`` noise conditioning.
      cond: None for an unconditional network; ``[n]`` integer ids in ``[0, C)`` or
        ``NULL`` (-1) for a conditional one. Other ids are not checked here (the embedding
        lookup fills them with NaN); :class:`jaxgap.nets.EDMPrecond` checks them.

    Raises:
      ValueError: naming ``cond``: given to an unconditional network, missing for a
        conditional one, not integers or not of shape ``[n]``.
    """
    emb = net.embed(c_noise)
    if not net.num_classes:
        if cond is not None:
            raise ValueError(f"cond: expected None for the unconditional {type(net).__name__} "
                             f"(num_classes = 0), got {type(cond).__name__}")
        return emb
    if cond is None:
        raise ValueError(f"cond: expected integer condition ids in [0, {net.num_classes}) or "
                         f"NULL = {NULL} for the conditional {type(net).__name__}, got None")
    cond = jnp.asarray(cond)
    if not jnp.issubdtype(cond.dtype, jnp.integer):
        raise ValueError(f"cond: expected an integer array of condition ids, got dtype "
                         f"{cond.dtype}")
    if cond.shape != c_noise.shape:
        raise ValueError(f"cond: expected shape {shape_str(c_noise.shape)} (one id per "
                         f"example), got shape {shape_str(cond.shape)}")
    index = jnp.where(cond == NULL, net.num_classes, cond)
    return emb + net.class_embed(index).astype(emb.dtype)
