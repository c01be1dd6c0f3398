r"""Noise-level embedding: Fourier features of ``c_noise`` followed by a small MLP."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxgap._checks import positive_float, positive_int

__all__ = ["NoiseEmbedding"]


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
