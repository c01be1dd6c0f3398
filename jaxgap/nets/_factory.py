"""``make_denoiser``: build a network denoiser by kind name (for configs and the CLI)."""

from __future__ import annotations

import math

from flax import nnx

from jaxgap._checks import positive_int
from jaxgap.nets._precond import EDMPrecond, check_image_shape
from jaxgap.nets.mlp import MLPDenoiser
from jaxgap.nets.unet import UNetDenoiser

__all__ = ["DENOISER_KINDS", "make_denoiser"]

#: Kinds accepted by :func:`make_denoiser`.
DENOISER_KINDS = ("mlp", "unet")


def make_denoiser(kind: str, dim: int, image_shape=None, *, seed: int = 0,
                  num_classes: int = 0, **kwargs) -> EDMPrecond:
    """Build an EDM-preconditioned network denoiser from a kind name.

    Args:
      kind: ``"mlp"`` (:class:`MLPDenoiser`) or ``"unet"`` (:class:`UNetDenoiser`).
      dim: data dimension ``d``.
      image_shape: ``(H, W, C)`` with ``H * W * C == d``; required for ``"unet"``, checked
        against ``dim`` (and otherwise unused) for ``"mlp"``.
      seed: integer seed of ``nnx.Rngs`` for the initial weights.
      num_classes: number of conditions ``C >= 0``: 0 builds an unconditional denoiser
        ``D(x, sigma)``; ``C > 0`` a conditional one ``D(x, sigma, cond)`` with ids in
        ``[0, C)`` and ``NULL`` (a zero-initialized class embedding added to the noise
        embedding; the other weights are those of the unconditional network with the same
        seed).
      **kwargs: keyword arguments of the chosen class (``width``, ``depth``, ``channels``,
        ``blocks_per_level``, ``emb_dim``, ``sigma_data``, ...).

    Returns:
      The denoiser, an ``nnx.Module`` obeying the protocol ``D(x, sigma)`` (or
      ``D(x, sigma, cond)`` when ``num_classes > 0``).

    Raises:
      ValueError: an unknown ``kind``, a missing or inconsistent ``image_shape``, a bad
        ``dim``, ``seed`` or ``num_classes``.

    Example:
      >>> from flax import nnx
      >>> from jaxgap.nets import param_count
      >>> D = nnx.eval_shape(lambda: make_denoiser("unet", 64, (8, 8, 1)))  # shapes only
      >>> D.image_shape, param_count(D)
      ((8, 8, 1), 127649)
    """
    if kind not in DENOISER_KINDS:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, DENOISER_KINDS))}, "
                         f"got {kind!r}")
    dim = positive_int(dim, "dim")
    seed = positive_int(seed, "seed", minimum=0)
    num_classes = positive_int(num_classes, "num_classes", minimum=0)
    if image_shape is not None:
        image_shape = check_image_shape(image_shape)
        if math.prod(image_shape) != dim:
            raise ValueError(f"image_shape: expected a shape with product d = {dim}, got "
                             f"{image_shape} (product {math.prod(image_shape)})")
    rngs = nnx.Rngs(seed)
    if kind == "mlp":
        return MLPDenoiser(dim, num_classes=num_classes, rngs=rngs, **kwargs)
    if image_shape is None:
        raise ValueError("image_shape: expected (H, W, C) for kind='unet', got None")
    return UNetDenoiser(image_shape, num_classes=num_classes, rngs=rngs, **kwargs)
