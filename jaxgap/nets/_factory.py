"""``make_denoiser``: build a network denoiser by kind name (for configs and the CLI)."""

from __future__ import annotations

from flax import nnx

from jaxgap._checks import positive_int
from jaxgap.nets._precond import EDMPrecond
from jaxgap.nets._sizes import check_data_shape, size_kwargs
from jaxgap.nets.dit import DiTDenoiser
from jaxgap.nets.mlp import MLPDenoiser
from jaxgap.nets.unet import UNetDenoiser

__all__ = ["DENOISER_KINDS", "make_denoiser"]

#: Kinds accepted by :func:`make_denoiser`.
DENOISER_KINDS = ("mlp", "unet", "dit")


def make_denoiser(kind: str, dim: int, image_shape=None, *, seed: int = 0,
                  num_classes: int = 0, model_size: str | None = None,
                  **kwargs) -> EDMPrecond:
    """Build an EDM-preconditioned network denoiser from a kind name.

    Args:
      kind: ``"mlp"`` (:class:`MLPDenoiser`), ``"unet"`` (:class:`UNetDenoiser`) or
        ``"dit"`` (:class:`DiTDenoiser`).
      dim: data dimension ``d``.
      image_shape: ``(H, W, C)`` with ``H * W * C == d``; required for ``"unet"``; for
        ``"dit"`` it makes the tokens image patches (None: groups of features); checked
        against ``dim`` (and otherwise unused) for ``"mlp"``.
      seed: integer seed of ``nnx.Rngs`` for the initial weights.
      num_classes: number of conditions ``C >= 0``: 0 builds an unconditional denoiser
        ``D(x, sigma)``; ``C > 0`` a conditional one ``D(x, sigma, cond)`` with ids in
        ``[0, C)`` and ``NULL`` (a zero-initialized class embedding added to the noise
        embedding; the other weights are those of the unconditional network with the same
        seed).
      model_size: None (the class defaults), or a size rung of
        :data:`jaxgap.nets.MODEL_SIZES` (``"xs"`` ... ``"xl"``, about 10k to 2.6M
        parameters; see :func:`jaxgap.nets.size_kwargs`), whose keywords ``kwargs``
        override one by one.
      **kwargs: keyword arguments of the chosen class (``width``, ``depth``, ``channels``,
        ``blocks_per_level``, ``heads``, ``patch``, ``emb_dim``, ``sigma_data``, ...); one
        given as None is left out (the rung's value, or the class default).

    Returns:
      The denoiser, an ``nnx.Module`` obeying the protocol ``D(x, sigma)`` (or
      ``D(x, sigma, cond)`` when ``num_classes > 0``).

    Raises:
      ValueError: an unknown ``kind`` or ``model_size``, a missing or inconsistent
        ``image_shape``, a bad ``dim``, ``seed`` or ``num_classes``, or a keyword the class
        refuses (naming it).

    Example:
      >>> from flax import nnx
      >>> from jaxgap.nets import param_count
      >>> D = nnx.eval_shape(lambda: make_denoiser("unet", 64, (8, 8, 1)))  # shapes only
      >>> D.image_shape, param_count(D)
      ((8, 8, 1), 127649)
      >>> T = nnx.eval_shape(lambda: make_denoiser("dit", 64, (8, 8, 1), model_size="xs"))
      >>> T.patch, param_count(T)
      (2, 10932)
      >>> M = nnx.eval_shape(lambda: make_denoiser("mlp", 64, model_size="s", depth=3))
      >>> M.net.width, M.net.depth  # the rung's width, the depth given
      (76, 3)
    """
    if kind not in DENOISER_KINDS:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, DENOISER_KINDS))}, "
                         f"got {kind!r}")
    dim, image_shape = check_data_shape(dim, image_shape)
    seed = positive_int(seed, "seed", minimum=0)
    num_classes = positive_int(num_classes, "num_classes", minimum=0)
    if kind == "unet" and image_shape is None:
        raise ValueError("image_shape: expected (H, W, C) for kind='unet', got None")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if model_size is not None:
        kwargs = size_kwargs(kind, model_size, dim, image_shape) | kwargs
    rngs = nnx.Rngs(seed)
    if kind == "mlp":
        return MLPDenoiser(dim, num_classes=num_classes, rngs=rngs, **kwargs)
    if kind == "dit":
        return DiTDenoiser(dim, image_shape, num_classes=num_classes, rngs=rngs, **kwargs)
    return UNetDenoiser(image_shape, num_classes=num_classes, rngs=rngs, **kwargs)
