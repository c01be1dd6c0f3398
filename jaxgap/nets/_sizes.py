r"""Model-size ladders: named rungs ``xs, s, m, l, xl`` for each network family.

Rung ``k`` (``xs = 0`` ... ``xl = 4``) of a family targets

.. math:: N_k = N_0 \cdot 4^k, \qquad N_0 = \max(10^4,\ N_\mathrm{floor})

trainable parameters (``10k, 41k, 164k, 655k, 2.6M``), where :math:`N_\mathrm{floor}` is the
count of the family's ``xs`` structure at its narrowest width: above ``10^4`` only where
reading and writing the data alone takes more (an MLP on ``d = 3072`` has ``2 d w`` weights
in its first and last layers: its ladder starts at about 53k and ends at about 14M). Each
rung fixes a structure (depth, heads, levels, embedding size, below); its width (the MLP's
and DiT's ``width``, the U-Net's base channels ``c``) is the multiple of 4 (DiT: of
``lcm(4, heads)``), at least 8 (DiT: 8 features per head), whose parameter count is nearest
:math:`N_k` in ratio. Widths and counts thus depend on the data shape.

=====  ===================  ===========================================  ========================
rung   MLP                  U-Net (``channels = c * mults``)             DiT (``mlp_ratio = 4``)
=====  ===================  ===========================================  ========================
xs     depth 2, emb 16      mults (1, 2), 1 block per level, emb 32      depth 2, heads 2, emb 16
s      depth 2, emb 32      mults (1, 2), 1 block per level, emb 32      depth 3, heads 2, emb 32
m      depth 3, emb 64      mults (1, 2, 2), 1 block per level, emb 64   depth 4, heads 4, emb 64
l      depth 4, emb 64      mults (1, 2, 2), 2 blocks per level, emb 64  depth 6, heads 4, emb 64
xl     depth 6, emb 64      mults (1, 2, 2), 3 blocks per level, emb 64  depth 8, heads 8, emb 64
=====  ===================  ===========================================  ========================

U-Net levels beyond what the image sides allow (``H`` and ``W`` divisible by
``2 ** (levels - 1)``) are dropped; the DiT's patch is :func:`jaxgap.nets.dit.default_patch`.
On the digits, rung ``l`` of the MLP is the default MLP (width 256, depth 4). The widths
are chosen with :func:`formula_count` (the architectures' parameter counts written out,
checked against the modules by the tests); :func:`param_table` measures the modules
themselves; ``print(jaxgap.nets.param_table_markdown())`` prints the README's table.

Example:
  >>> from jaxgap.nets import MODEL_SIZES, size_kwargs
  >>> MODEL_SIZES
  ('xs', 's', 'm', 'l', 'xl')
  >>> size_kwargs("unet", "s", 64, (8, 8, 1))
  {'channels': (20, 40), 'blocks_per_level': 1, 'emb_dim': 32}
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from flax import nnx

from jaxgap._checks import positive_int
from jaxgap.nets._precond import check_image_shape, param_count
from jaxgap.nets.dit import DiT, default_patch
from jaxgap.nets.mlp import MLP
from jaxgap.nets.unet import UNet

__all__ = ["MODEL_SIZES", "TABLE_SHAPES", "ParamRow", "check_data_shape", "formula_count",
           "param_table", "param_table_markdown", "size_kwargs"]

#: Rung names, smallest first; each has about 4x the parameters of the one before.
MODEL_SIZES = ("xs", "s", "m", "l", "xl")

_BASE, _RATIO = 10_000, 4
_RUNGS = {
    "mlp": ({"depth": 2, "emb_dim": 16}, {"depth": 2, "emb_dim": 32},
            {"depth": 3, "emb_dim": 64}, {"depth": 4, "emb_dim": 64},
            {"depth": 6, "emb_dim": 64}),
    "unet": ({"mults": (1, 2), "blocks_per_level": 1, "emb_dim": 32},
             {"mults": (1, 2), "blocks_per_level": 1, "emb_dim": 32},
             {"mults": (1, 2, 2), "blocks_per_level": 1, "emb_dim": 64},
             {"mults": (1, 2, 2), "blocks_per_level": 2, "emb_dim": 64},
             {"mults": (1, 2, 2), "blocks_per_level": 3, "emb_dim": 64}),
    "dit": ({"depth": 2, "heads": 2, "emb_dim": 16}, {"depth": 3, "heads": 2, "emb_dim": 32},
            {"depth": 4, "heads": 4, "emb_dim": 64}, {"depth": 6, "heads": 4, "emb_dim": 64},
            {"depth": 8, "heads": 8, "emb_dim": 64}),
}
#: The shapes of the README table: the digits and natural-image patches at CIFAR size.
TABLE_SHAPES = {"digits 8x8x1": (8, 8, 1), "patches 32x32x3": (32, 32, 3)}


def check_data_shape(dim, image_shape) -> tuple[int, tuple[int, int, int] | None]:
    """Check ``dim`` and ``image_shape`` (None or ``(H, W, C)`` with product ``dim``)."""
    dim = positive_int(dim, "dim")
    if image_shape is not None:
        image_shape = check_image_shape(image_shape)
        if math.prod(image_shape) != dim:
            raise ValueError(f"image_shape: expected a shape with product d = {dim}, got "
                             f"{image_shape} (product {math.prod(image_shape)})")
    return dim, image_shape


def _structure(kind: str, rung: int, dim: int, image_shape) -> dict:
    """The rung's fixed keywords on this data shape (everything but the width)."""
    s = dict(_RUNGS[kind][rung])
    if kind == "unet":
        height, width = image_shape[:2]
        levels = 1
        while (levels < len(s["mults"]) and height % 2**levels == 0
               and width % 2**levels == 0):
            levels += 1
        s["mults"] = s["mults"][:levels]
    elif kind == "dit":
        s["patch"] = default_patch(dim, image_shape)
    return s


def _kwargs(kind: str, structure: dict, width: int) -> dict:
    """Constructor keywords: the structure with the width filled in."""
    s = dict(structure)
    if kind == "unet":
        return {"channels": tuple(width * m for m in s.pop("mults")), **s}
    return {"width": width, **s}


def _granule(kind: str, structure: dict) -> int:
    """Widths are multiples of this (DiT: also of its heads)."""
    return math.lcm(4, structure["heads"]) if kind == "dit" else 4


def _narrowest(kind: str, structure: dict) -> int:
    """The smallest width tried: 8 (DiT: 8 features per head)."""
    return 8 * structure["heads"] if kind == "dit" else 8


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _res_block(c_in: int, c_out: int, emb: int) -> int:
    """A U-Net residual block: GroupNorm, embedding projection, 3x3 conv, 1x1 skip."""
    skip = _linear(c_in, c_out) if c_in != c_out else 0
    return 2 * c_in + _linear(emb, c_in) + _linear(9 * c_in, c_out) + skip


def formula_count(kind: str, dim: int, image_shape, kwargs: dict) -> int:
    """Trainable parameters of an unconditional network built with ``kwargs`` (missing
    keywords: the class defaults), counted from its architecture, layer by layer; the tests
    check it against :func:`jaxgap.nets.param_count` of the real modules."""
    emb = kwargs.get("emb_dim", 64)
    total = 2 * _linear(emb, emb)  # NoiseEmbedding: two emb -> emb layers
    if kind == "mlp":
        w, depth = kwargs.get("width", 256), kwargs.get("depth", 4)
        block = 2 * w + 2 * _linear(w, w) + _linear(emb, w)  # LayerNorm, 2 layers, emb proj
        return total + _linear(dim, w) + depth * block + 2 * w + _linear(w, dim)
    if kind == "unet":
        chans, blocks = kwargs.get("channels", (32, 64)), kwargs.get("blocks_per_level", 1)
        c_img = image_shape[2]
        total += _linear(9 * c_img, chans[0])  # conv_in
        c = chans[0]
        for level in chans:  # down path
            for _ in range(blocks):
                total, c = total + _res_block(c, level, emb), level
        total += _res_block(c, c, emb)  # middle
        for level in reversed(chans[:-1]):  # up path: upsample conv, blocks after the concat
            total += _linear(9 * c, level) + _res_block(2 * level, level, emb)
            total += (blocks - 1) * _res_block(level, level, emb)
            c = level
        return total + 2 * c + _linear(9 * c, c_img)  # GroupNorm, conv_out
    w, depth = kwargs.get("width", 64), kwargs.get("depth", 4)
    hidden = max(1, round(kwargs.get("mlp_ratio", 4.0) * w))
    patch = kwargs.get("patch") or default_patch(dim, image_shape)
    token = patch if image_shape is None else patch * patch * image_shape[2]
    block = (_linear(w, 3 * w) + _linear(w, w) + _linear(w, hidden) + _linear(hidden, w)
             + _linear(emb, 6 * w))  # qkv, attention out, MLP, adaLN modulation
    return total + _linear(token, w) + depth * block + _linear(emb, 2 * w) + _linear(w, token)


def _count(kind: str, dim: int, image_shape, kwargs: dict) -> int:
    """Trainable parameters of the raw network (``EDMPrecond`` adds none), measured on the
    module built abstractly (``nnx.eval_shape``: no weight is allocated)."""
    def build():
        rngs = nnx.Rngs(0)
        if kind == "mlp":
            return MLP(dim, rngs=rngs, **kwargs)
        if kind == "unet":
            return UNet(image_shape, rngs=rngs, **kwargs)
        return DiT(dim, image_shape, rngs=rngs, **kwargs)
    return param_count(nnx.eval_shape(build))


@functools.lru_cache(maxsize=256)
def _solve(kind: str, rung: int, dim: int, image_shape) -> tuple[tuple, int]:
    """The rung's constructor keywords on this data shape (as items), and their parameter
    count."""
    structure = _structure(kind, rung, dim, image_shape)
    step = _granule(kind, structure)
    xs = _structure(kind, 0, dim, image_shape)
    floor = formula_count(kind, dim, image_shape, _kwargs(kind, xs, _narrowest(kind, xs)))
    target = max(_BASE, floor) * _RATIO**rung
    best, width = None, _narrowest(kind, structure)
    while True:  # the count grows with the width: stop once past the target
        kwargs = _kwargs(kind, structure, width)
        count = formula_count(kind, dim, image_shape, kwargs)
        error = abs(math.log(count / target))
        if best is None or error < best[0]:
            best = (error, tuple(kwargs.items()), count)
        if count >= target:
            return best[1], best[2]
        width += step


def _check(kind, model_size, dim, image_shape):
    if kind not in _RUNGS:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, _RUNGS))}, got {kind!r}")
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size: expected one of {', '.join(map(repr, MODEL_SIZES))}, "
                         f"got {model_size!r}")
    dim, image_shape = check_data_shape(dim, image_shape)
    if kind == "unet" and image_shape is None:
        raise ValueError("image_shape: expected (H, W, C) for kind='unet' (the U-Net needs "
                         "image data), got None")
    return MODEL_SIZES.index(model_size), dim, image_shape


def size_kwargs(kind: str, model_size: str, dim: int, image_shape=None) -> dict:
    """Constructor keywords of a family's size rung on data of a given shape.

    Args:
      kind: ``"mlp"``, ``"unet"`` or ``"dit"``.
      model_size: one of :data:`MODEL_SIZES` (``"xs"`` ... ``"xl"``).
      dim: data dimension ``d``.
      image_shape: ``(H, W, C)`` with product ``d`` (required for ``"unet"``), or None.

    Returns:
      A dict of keywords for :func:`jaxgap.nets.make_denoiser` (and the family's class):
      ``width, depth, emb_dim`` (MLP); ``channels, blocks_per_level, emb_dim`` (U-Net);
      ``width, depth, heads, patch, emb_dim`` (DiT). See the module docstring for the rule.

    Raises:
      ValueError: an unknown ``kind`` or ``model_size``, a bad ``dim``, an ``image_shape``
        of the wrong product, or none for ``"unet"``.

    Example:
      >>> size_kwargs("mlp", "xs", 64)
      {'width': 32, 'depth': 2, 'emb_dim': 16}
      >>> size_kwargs("dit", "m", 3072, (32, 32, 3))
      {'width': 48, 'depth': 4, 'heads': 4, 'emb_dim': 64, 'patch': 4}
    """
    rung, dim, image_shape = _check(kind, model_size, dim, image_shape)
    return dict(_solve(kind, rung, dim, image_shape)[0])


class ParamRow(NamedTuple):
    """One cell of :func:`param_table`: a family's rung on one data shape."""

    kind: str
    model_size: str
    data: str
    image_shape: tuple[int, int, int]
    params: int
    kwargs: dict


def param_table(shapes: dict | None = None, kinds=("mlp", "unet", "dit"),
                sizes=MODEL_SIZES) -> list[ParamRow]:
    """Parameter counts of every family and rung on each data shape, measured on the real
    modules with ``nnx.eval_shape`` (no weight is allocated; about a second per module).

    Args:
      shapes: ``{name: (H, W, C)}``; default :data:`TABLE_SHAPES` (digits 8x8x1 and
        patches 32x32x3).
      kinds: the families.
      sizes: the rungs.

    Returns:
      One :class:`ParamRow` per family, rung and shape (family-major, then rung, then shape).
    """
    shapes = TABLE_SHAPES if shapes is None else shapes
    rows = []
    for kind in kinds:
        for size in sizes:
            for name, shape in shapes.items():
                shape = check_image_shape(shape)
                dim = math.prod(shape)
                kwargs = size_kwargs(kind, size, dim, shape)
                rows.append(ParamRow(kind, size, name, shape,
                                     _count(kind, dim, shape, kwargs), kwargs))
    return rows


def param_table_markdown(shapes: dict | None = None, kinds=("mlp", "unet", "dit")) -> str:
    """:func:`param_table` as a markdown table: a row per family and rung, a column per
    data shape, each cell the parameter count (and the width or base channels).

    Example:
      >>> print(param_table_markdown({"digits": (8, 8, 1)}, kinds=("mlp",)))
      | family | size | digits |
      |---|---|---:|
      | MLP | xs | 10,240 (width 32) |
      | MLP | s | 40,860 (width 76) |
      | MLP | m | 157,544 (width 132) |
      | MLP | l | 636,864 (width 256) |
      | MLP | xl | 2,571,384 (width 440) |
    """
    shapes = TABLE_SHAPES if shapes is None else shapes
    names = {"mlp": "MLP", "unet": "U-Net", "dit": "DiT"}
    lines = ["| family | size | " + " | ".join(shapes) + " |",
             "|---|---|" + "---:|" * len(shapes)]
    rows = param_table(shapes, kinds)
    for i in range(0, len(rows), len(shapes)):
        cells = []
        for row in rows[i:i + len(shapes)]:
            w = (f"channels {row.kwargs['channels'][0]}" if row.kind == "unet"
                 else f"width {row.kwargs['width']}")
            cells.append(f"{row.params:,} ({w})")
        lines.append(f"| {names[rows[i].kind]} | {rows[i].model_size} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)
