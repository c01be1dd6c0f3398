"""Exact streaming k-nearest neighbours (:func:`jaxgap.metrics.nearest_neighbors`) and the
input checks the other metrics share."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from jaxgap._checks import float_array, positive_int
from jaxgap._exact import exact_sq_dist_diff, top_k
from jaxgap._jit import jit

__all__ = ["Neighbors", "nearest_neighbors"]

_HI = lax.Precision.HIGHEST


def _floats(x) -> list:
    """A float64 NumPy view of ``x`` as nested lists (JSON-ready)."""
    return np.asarray(x, np.float64).tolist()


class Neighbors(NamedTuple):
    """The ``k`` nearest points of ``M`` queries, nearest first.

    Attributes:
      dist: ``[M, k]`` Euclidean distances, ascending along each row.
      index: ``[M, k]`` int32 indices into the reference points.
    """

    dist: Array
    index: Array


def _rerank(x, points, cand_v, cand_i, k):
    """Exact order and distances of each query's candidates ``cand_i [B, K]``.

    Let ``y_r`` be the candidate nearest by a plain float sum of squared differences. Every
    candidate's ``delta = |x - y|^2 - |x - y_r|^2`` is computed without cancellation
    (:func:`~jaxgap._exact.exact_sq_dist_diff`); the order is that of
    ``(delta, index)``, so near-equal distances are ordered correctly and ties (``delta``
    within its rounding residue) go to the lower index. Distances are
    ``sqrt(|x - y_r|^2 + delta)`` (``|x - y_r|^2`` itself accurate to a few ulps): monotone in
    ``delta``, hence ascending, and without cancellation since ``delta >~ 0``.
    """
    bsz, num = cand_i.shape
    valid = jnp.isfinite(cand_v)
    y_cand = jnp.take(points, cand_i.reshape(-1), axis=0, mode="clip").reshape(
        (bsz, num, points.shape[1]))
    diff = x[:, None, :] - y_cand
    rough = jnp.where(valid, jnp.sum(diff * diff, axis=-1), jnp.inf)
    pos = jnp.broadcast_to(jnp.arange(num, dtype=jnp.int32)[None, :], (bsz, num))
    _, _, order = lax.sort((rough, cand_i, pos), dimension=1, num_keys=2)
    y_ref = jnp.take_along_axis(y_cand, order[:, :1, None], axis=1)  # [B, 1, d]
    d2_ref = jnp.maximum(exact_sq_dist_diff(x, y_ref[:, 0], x), 0.0)  # [B]
    delta = exact_sq_dist_diff(x[:, None, :], y_cand, y_ref)  # [B, K]
    # The rounding residue of exact_sq_dist_diff, ~d^2 eps^2 sum_j |a_j b_j| with
    # a = y - y_r, b = y + y_r - 2x: differences below it are ties (its sign is not
    # resolved; exact duplicates give exactly 0 already).
    eps = jnp.finfo(x.dtype).eps
    dim = x.shape[1]
    scale = jnp.sum(jnp.abs(y_cand - y_ref) * jnp.abs((y_cand - x[:, None, :]) +
                                                      (y_ref - x[:, None, :])), axis=-1)
    delta = jnp.where(jnp.abs(delta) <= dim * (dim + 2) * eps * eps * scale, 0.0, delta)
    delta = jnp.where(valid, delta, jnp.inf)
    delta, index = lax.sort((delta, cand_i), dimension=1, num_keys=2)
    dist = jnp.sqrt(jnp.maximum(d2_ref[:, None] + delta[:, :k], 0.0))
    return dist, index[:, :k]


def _nn_block(x, xc, points, half_sq, *, k, num_cand, chunk):
    """Nearest neighbours of one block of queries ``x [B, d]`` (``xc = x - c``).

    Approximate scores ``xc . y - |y - c|^2 / 2`` (``= -|x - y|^2 / 2`` up to a per-query
    constant; ``c`` the points' mean keeps rounding small for data far from the origin) are
    one matmul per chunk; each chunk's best ``num_cand`` are merged into a running candidate
    set, which :func:`_rerank` orders exactly at the end.
    """
    n = points.shape[0]
    bsz = x.shape[0]
    num_chunks = -(-n // chunk)
    k_chunk = min(num_cand, chunk)

    def body(c, carry):
        top_v, top_i = carry
        start_nominal = c * chunk
        start = jnp.minimum(start_nominal, n - chunk)  # the last chunk overlaps: mask repeats
        y_c = lax.dynamic_slice_in_dim(points, start, chunk, axis=0)
        h_c = lax.dynamic_slice_in_dim(half_sq, start, chunk, axis=0)
        idx = start + jnp.arange(chunk, dtype=jnp.int32)
        score = jnp.dot(xc, y_c.T, precision=_HI) - h_c[None, :]
        score = jnp.where((idx >= start_nominal)[None, :], score, -jnp.inf)
        cv, ci = top_k(score, k_chunk)
        all_v = jnp.concatenate([top_v, cv], axis=1)
        all_i = jnp.concatenate([top_i, idx[ci]], axis=1)
        top_v, pos = lax.top_k(all_v, num_cand)
        return top_v, jnp.take_along_axis(all_i, pos, axis=1)

    init = (jnp.full((bsz, num_cand), -jnp.inf, x.dtype),
            jnp.zeros((bsz, num_cand), jnp.int32))
    if num_chunks == 1:
        top_v, top_i = body(0, init)
    else:
        top_v, top_i = lax.fori_loop(0, num_chunks, body, init)
    return _rerank(x, points, top_v, top_i, k)


@jit
def _nearest_neighbors(queries, points, *, k, num_cand, chunk, query_block):
    center = jnp.mean(points, axis=0)
    half_sq = 0.5 * jnp.sum((points - center[None, :]) ** 2, axis=1)
    xc = queries - center[None, :]
    run = lambda xb, xcb: _nn_block(  # noqa: E731
        xb, xcb, points, half_sq, k=k, num_cand=num_cand, chunk=chunk)
    m = queries.shape[0]
    if m <= query_block:
        return Neighbors(*run(queries, xc))
    nb = -(-m // query_block)
    pad = nb * query_block - m
    blocks = lambda a: jnp.pad(a, ((0, pad), (0, 0))).reshape(nb, query_block, -1)  # noqa: E731
    dist, index = lax.map(lambda a: run(*a), (blocks(queries), blocks(xc)))
    return Neighbors(dist.reshape(nb * query_block, k)[:m], index.reshape(nb * query_block, k)[:m])


def _common_dtype(*arrays):
    """float32 at least (the exact kernels support float32 and float64)."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _check_pair(queries, points, qname: str, pname: str):
    points = float_array(points, pname, ndim=2)
    queries = float_array(queries, qname, ndim=2, dim=points.shape[1])
    dtype = _common_dtype(queries, points)
    return queries.astype(dtype), points.astype(dtype)


def _nn_options(n: int, k, chunk_size, candidates, query_block, pname: str):
    k = positive_int(k, "k")
    if k > n:
        raise ValueError(f"k: expected at most the number of points in {pname} ({n}), got {k}")
    chunk_size = positive_int(chunk_size, "chunk_size")
    query_block = positive_int(query_block, "query_block")
    if candidates is None:
        candidates = max(2 * k, k + 4)
    candidates = positive_int(candidates, "candidates", minimum=k)
    return dict(k=k, num_cand=min(candidates, n), chunk=min(chunk_size, n),
                query_block=query_block)


def nearest_neighbors(queries: Float[ArrayLike, "m d"], points: Float[ArrayLike, "n d"], *,
                      k: int = 2, chunk_size: int = 4096, candidates: int | None = None,
                      query_block: int = 512) -> Neighbors:
    r"""Exact ``k`` nearest neighbours of every query among ``points``.

    The points are streamed in chunks: for each chunk, one matmul gives approximate scores

    .. math:: s_i = (x - c) \cdot y_i - \tfrac12 |y_i - c|^2
              = -\tfrac12 |x - y_i|^2 + \mathrm{const}(x)

    (``c`` the points' mean, ``|y_i - c|^2`` precomputed), and the chunk's best
    ``candidates`` are merged into a running candidate set per query. The candidates are then
    re-ranked exactly: with ``y_r`` the nearest candidate,
    ``|x - y|^2 - |x - y_r|^2 = (y - y_r) . (y + y_r - 2x)`` is evaluated in double-word
    arithmetic (:func:`~jaxgap._exact.exact_sq_dist_diff`), so a query almost
    halfway between two points gets them in the right order even where the float32 formula
    ``|x|^2 - 2 x.y + |y|^2`` cancels catastrophically, and even where the two distances
    round to the same float. Differences within the rounding residue of that evaluation
    (``|delta| <= d (d + 2) eps^2 sum_j |a_j b_j|``, ``a = y - y_r``, ``b = y + y_r - 2x``;
    exact duplicates and exactly equal distances) are ties, broken by the lower index.

    Memory is ``O(query_block * chunk_size)`` beyond the data, whatever the number of points,
    so million-point reference sets run. Compiled once per shape and options.

    Args:
      queries: ``[M, d]`` query points.
      points: ``[N, d]`` reference points (e.g. the training set).
      k: number of neighbours, ``1 <= k <= N``.
      chunk_size: reference points per streamed chunk.
      candidates: approximate candidates kept per query for the exact re-ranking (``>= k``;
        default ``max(2k, k + 4)``). Raise it when more points than that can be nearly
        equidistant from a query (to float32 rounding of ``|x - c| |y|``).
      query_block: queries evaluated together (bounds the ``[query_block, chunk]`` scores).

    Returns:
      :class:`Neighbors` ``(dist [M, k], index [M, k])``, nearest first.

    Raises:
      ValueError: naming the argument, for mismatched ``d``, empty or non-finite arrays,
        ``k > N`` or bad options.

    Example:
      >>> pts = jnp.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
      >>> nearest_neighbors(jnp.array([[0.9, 0.0]]), pts, k=2).index
      Array([[1, 0]], dtype=int32)
    """
    queries, points = _check_pair(queries, points, "queries", "points")
    opts = _nn_options(points.shape[0], k, chunk_size, candidates, query_block, "points")
    return _nearest_neighbors(queries, points, **opts)


def _neighbors_in(queries, points, k: int, chunk_size: int, pname: str) -> Neighbors:
    """:func:`nearest_neighbors` of checked arrays with the default options, ``points``
    named ``pname`` in errors."""
    return _nearest_neighbors(queries, points, **_nn_options(
        points.shape[0], k, chunk_size, None, 512, pname))
