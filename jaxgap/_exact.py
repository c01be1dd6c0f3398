"""Exact floating-point building blocks: double-word arithmetic and an exact top-k.

Owned here, used by the empirical denoiser's streaming kernel
(:mod:`jaxgap.denoisers._kernel`) and by the nearest-neighbour search of
:mod:`jaxgap.metrics`:

- :func:`exact_sq_dist_diff`: ``|x - y|^2 - |x - y_ref|^2`` without cancellation (TwoSum,
  TwoProd by bit masking, Rump's error-free row sum), so near-ties between two points are
  resolved at any noise level.
- :func:`top_k`: ``lax.top_k`` in two levels (exact, about twice as fast on CPU).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["exact_sq_dist_diff", "top_k"]


def _two_sum(a, b):
    """Error-free sum: ``a + b = s + e`` exactly (Knuth's TwoSum, no branch)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _dot_sum(v):
    """Sum over the last axis as a dot product with ones (XLA fuses producers into it)."""
    return jnp.dot(v, jnp.ones(v.shape[-1], v.dtype), precision=lax.Precision.HIGHEST)


def _exact_row_sum(p, small):
    """``sum(p) + sum(small)`` over the last axis with ``sum(p)`` error-free.

    Rump's extraction: with ``c`` a power of two ``>= 2^m * max|p|`` and ``2^m >= d + 2``,
    ``hi = (c + p) - c`` is ``p`` rounded to a grid on which every partial sum of ``hi`` is
    representable, so ``sum(hi)`` is exact in any order, and ``lo = p - hi`` is exact and
    tiny (``|lo| <= eps * c``). ``lo`` and ``small`` (already ``~eps`` relative) are summed
    plainly. ``|p|_2 >= max|p|`` is used for the bound (a dot product, cheaper than a max
    reduction on CPU); it loosens ``c`` by at most ``sqrt(d)``, which costs nothing
    measurable. Compilers keep ``(c + p) - c``: XLA does not reassociate floats without
    fast-math.
    """
    d = p.shape[-1]
    m = int(np.ceil(np.log2(d + 2)))
    norm = jnp.sqrt(jnp.einsum("...d,...d->...", p, p, precision=lax.Precision.HIGHEST))
    _, expo = jnp.frexp(norm[..., None] * 1.001)
    c = jnp.ldexp(jnp.ones((), p.dtype), expo + m)
    hi = (c + p) - c
    lo = p - hi
    return _dot_sum(hi) + _dot_sum(lo + small)


def _split(a):
    """Split floats into a high part with half the mantissa bits and an exact remainder.

    Done by masking bits (not Veltkamp's ``c * a`` trick), so a compiler that contracts
    multiply-adds into FMAs cannot break it. Products of two high or low parts are exact.
    """
    if a.dtype == jnp.float32:
        utype, mask = np.uint32, 0xFFFFF000  # keep 12 significant bits
    elif a.dtype == jnp.float64:
        utype, mask = np.uint64, 0xFFFFFFFFF8000000  # keep 26 significant bits
    else:
        raise TypeError(f"exact kernels support float32 and float64, got {a.dtype}")
    hi = lax.bitcast_convert_type(lax.bitcast_convert_type(a, utype) & utype(mask), a.dtype)
    return hi, a - hi


def _two_prod(a, b):
    """Error-free product (Dekker): ``a * b = p + e`` exactly, barring under/overflow."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def exact_sq_dist_diff(x, y, y_ref):
    """Accurate ``|x - y|^2 - |x - y_ref|^2`` for broadcastable ``[..., d]`` arrays.

    Uses ``(y - y_ref) . (y + y_ref - 2x)`` in double-word arithmetic: both factors are
    formed exactly as unevaluated sums ``a + a_lo`` and ``b + b_lo`` with error-free
    transformations (TwoSum), the leading products exactly (TwoProd), and the products are
    summed error-free (:func:`_exact_row_sum`). The absolute error is ``~ eps^2 * sum|a b|`` plus
    ``eps * |result|``, instead of ``eps * |x|^2`` for the matmul form, so the small
    difference of two near-equal distances (a query halfway between two points) is resolved.
    Returns ``[...]``; exactly zero where ``y`` is ``y_ref``.
    """
    a, a_lo = _two_sum(y, -y_ref)
    s, e = _two_sum(y, y_ref)
    b, f = _two_sum(s, -2.0 * x)
    b_lo = e + f
    p, p_err = _two_prod(a, b)
    return _exact_row_sum(p, p_err + (a * b_lo + a_lo * b))


def top_k(logits, k):
    """Exact ``lax.top_k(logits, k)`` along the last axis, in two levels.

    The row is cut into groups of 16; the ``k`` best elements lie in the ``k`` groups with
    the largest maxima, so a top-k of group maxima and a top-k of those groups' members
    give the same answer (values and indices, ties aside) at about half the cost on CPU.
    """
    rows, cols = logits.shape
    group = 16
    if cols % group or cols // group < k:
        return lax.top_k(logits, k)
    grouped = logits.reshape(rows, cols // group, group)
    _, gi = lax.top_k(jnp.max(grouped, axis=-1), k)
    members = jnp.take_along_axis(grouped, gi[:, :, None], axis=1).reshape(rows, k * group)
    values, pos = lax.top_k(members, k)
    index = (gi[:, :, None] * group + jnp.arange(group)[None, None, :]).reshape(rows, k * group)
    return values, jnp.take_along_axis(index, pos, axis=1)
