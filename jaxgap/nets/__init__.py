r"""Flax ``nnx`` denoisers with EDM preconditioning, obeying the protocol ``D(x, sigma)``.

Every network here (:class:`MLPDenoiser`, :class:`UNetDenoiser`, the transformer
:class:`DiTDenoiser`) is an :class:`EDMPrecond` around a raw network ``F``:

.. math::
    D(x, \sigma) = c_\mathrm{skip}(\sigma)\, x + c_\mathrm{out}(\sigma)\,
    F\bigl(c_\mathrm{in}(\sigma)\, x, c_\mathrm{noise}(\sigma)\bigr)

(Karras et al., 2022, Table 1). Inputs and outputs are flat ``[..., d]`` arrays (images in
HWC order, as :mod:`jaxgap.data` stores them) and ``sigma`` is a scalar or an array
broadcastable to ``x.shape[:-1]``, exactly as for the closed-form denoisers, so losses,
samplers and metrics take them unchanged. flax 0.12 ``nnx`` modules are pytrees: pass them
straight through ``jax.jit``; differentiate with ``nnx.split``/``nnx.merge`` or
``nnx.value_and_grad``.

Built with ``num_classes = C > 0``, a network is conditional, ``D(x, sigma, cond)`` with
ids ``cond`` in ``[0, C)`` or ``NULL`` (-1): a class embedding table
:math:`E \in \mathbb{R}^{(C + 1) \times \mathrm{emb\_dim}}`, whose row ``C`` is the
learned null token, is added to the noise embedding that every block receives,

.. math::
    e = \mathrm{NoiseEmbedding}(c_\mathrm{noise}(\sigma)) + E_{\iota(c)}, \qquad
    \iota(c) = c \;(0 \le c < C), \quad \iota(\mathrm{NULL}) = C.

``E`` is zero-initialized and built after every other submodule: with the same seed, the
other weights are those of the unconditional network, and at initialization both compute
the same function. ``D(x, sigma, NULL)`` is the unconditional term of classifier-free
guidance (:func:`jaxgap.denoisers.guided`); training replaces labels by ``NULL`` with a
small probability so that one network serves every guidance weight.

Each family has a ladder of named sizes, :data:`MODEL_SIZES` ``("xs", "s", "m", "l", "xl")``,
about 4x more parameters per rung from about 10k (:func:`size_kwargs`,
``make_denoiser(kind, dim, image_shape, model_size="m")``; :func:`param_table` counts them).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxgap import nets
  >>> D = nets.MLPDenoiser(16, width=16, depth=1, emb_dim=8, rngs=nnx.Rngs(0))
  >>> x, sigma = jnp.zeros((4, 16)), jnp.full((4,), 0.5)
  >>> jax.jit(lambda D, x, s: D(x, s))(D, x, sigma).shape   # D passes through jit
  (4, 16)
  >>> C = nets.MLPDenoiser(16, width=16, depth=1, emb_dim=8, num_classes=10, rngs=nnx.Rngs(0))
  >>> C.conditional, C(x, sigma, jnp.array([0, 3, 9, -1])).shape  # -1: NULL, the null token
  (True, (4, 16))

References:
  T. Karras, M. Aittala, T. Aila, S. Laine. Elucidating the Design Space of Diffusion-Based
  Generative Models. NeurIPS 2022 (arXiv:2206.00364).
"""

from jaxgap.nets._embedding import NoiseEmbedding
from jaxgap.nets._factory import DENOISER_KINDS, make_denoiser
from jaxgap.nets._precond import EDMPrecond, param_count
from jaxgap.nets._sizes import MODEL_SIZES, param_table, param_table_markdown, size_kwargs
from jaxgap.nets.dit import DiT, DiTDenoiser
from jaxgap.nets.mlp import MLP, MLPDenoiser
from jaxgap.nets.unet import UNet, UNetDenoiser

__all__ = [
    "DENOISER_KINDS",
    "MODEL_SIZES",
    "DiT",
    "DiTDenoiser",
    "EDMPrecond",
    "MLP",
    "MLPDenoiser",
    "NoiseEmbedding",
    "UNet",
    "UNetDenoiser",
    "make_denoiser",
    "param_count",
    "param_table",
    "param_table_markdown",
    "size_kwargs",
]
