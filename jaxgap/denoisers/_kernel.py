"""Streaming, exact softmax-attention kernel behind the empirical optimal denoiser.

For queries ``x_m`` with temperatures ``v_m`` (a variance, ``sigma^2`` for the empirical
denoiser) and points ``y_i`` it computes the posterior

.. math::
    w_{mi} = \\operatorname{softmax}_i\\Big(-\\frac{|x_m - y_i|^2}{2 v_m}\\Big), \\qquad
    \\bar y_m = \\sum_i w_{mi} y_i,

together with the log-normaliser, the largest weight and ``sum_i w_mi^2``.

Speed: the logits are ``((x - c) . y - |y - c|^2 / 2) / v`` up to a per-query constant
(``c`` the points' mean, which keeps rounding errors small for data far from the origin), so
the work is two matmuls per chunk of points (``X Y_c^T`` and ``P_c Y_c``) and one ``exp``:
attention.
Points are streamed in chunks with an online log-sum-exp, so memory is ``O(M * chunk)``
beyond the data itself, whatever the number of points ``N``.

Exactness: in float32 the matmul form cancels catastrophically when a query is close to
several points at once (``|x|^2 - 2 x.y + |y|^2`` loses all digits at small ``v``). The kernel
therefore keeps, per query, the ``num_exact`` points with the largest approximate logits and
re-evaluates their logits exactly *relative to the best one*, using

.. math:: |x - y_k|^2 - |x - y_r|^2 = (y_k - y_r) \\cdot (y_k + y_r - 2x),

evaluated in double-word float arithmetic (TwoSum, TwoProd and an error-free row sum), so
the small difference of two near-equal distances is obtained without cancellation. Each
chunk's best points are kept out of the bulk sums by index and enter the result once, with
either their approximate logit (when displaced from the running candidate set) or their exact
one. No step relies on two computations of a logit agreeing bit for bit (XLA may fuse and
round them differently). Points outside the final candidate set either carry negligible
weight or have logits whose float32 error is small against their spread.

Conditions: with point ``labels [N]`` and per-query condition ids ``cond [M]``, query ``m``
sees only the points with ``labels_i == cond_m`` (every point when ``cond_m`` is
:data:`~jaxgap._protocol.NULL`): the other points' logits are set to ``-inf`` inside the same
streamed matmul (same FLOPs), before the candidate selection, so the exact re-evaluation
applies to each query's own points.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxgap._checks import positive_int
from jaxgap._exact import exact_sq_dist_diff, top_k
from jaxgap._protocol import NULL


class Posterior(NamedTuple):
    """Posterior summaries of the empirical kernel for ``M`` queries.

    Attributes:
      mean: ``[M, d]`` posterior mean ``sum_i w_i y_i``.
      log_normalizer: ``[M]`` ``log sum_i exp(logit_i)`` with
        ``logit_i = -|x - y_i|^2 / (2 v)`` (the query's own ``|x|^2`` included).
      max_weight: ``[M]`` largest posterior weight.
      sum_sq_weights: ``[M]`` ``sum_i w_i^2``; ``1 / sum_sq_weights`` is the effective number
        of contributing points.
      nearest: ``[M]`` int32 index of the point with the largest weight (the nearest point,
        from exact distances among the candidates); -1 when ``num_exact = 0``.
    """

    mean: jax.Array
    log_normalizer: jax.Array
    max_weight: jax.Array
    sum_sq_weights: jax.Array
    nearest: jax.Array


def _posterior_block(x, xc, inv_var, y, h, labels=None, cond=None, *, chunk_size, num_exact):
    """Posterior for one block of queries ``x [B, d]`` with ``inv_var [B]`` (= 1 / v).

    With ``labels [N]`` and ``cond [B]``, query ``b`` sees the points with
    ``labels == cond[b]`` only (all points where ``cond[b] == NULL``); a query that sees no
    point gets NaN (callers check conditions first).

    ``xc = x - c`` and ``h = |y - c|^2 / 2`` for a centre ``c``: the approximate logits
    ``xc . y - h`` (equal to ``-|x - y|^2 / 2`` up to a per-query constant) then carry
    rounding errors ``~ eps |x - c| |y|`` instead of ``eps |x| |y|``.

    Every point is accumulated exactly once, from one value of its logit: either in the
    bulk sums of its chunk, or (a chunk's ``num_exact`` best, kept aside by index) when it
    is displaced from the running candidate set, or at the end with its exact logit. XLA may
    compute the logits in several fusions with different roundings (~|x.y| / v ulps, whole
    units at small v), so no step relies on two computations of a logit agreeing.
    """
    n, _ = y.shape
    bsz = x.shape[0]
    dtype = x.dtype
    chunk = min(chunk_size, n)
    num_chunks = -(-n // chunk)
    k_top = min(num_exact, n)
    k_chunk = min(k_top, chunk)
    hi = lax.Precision.HIGHEST
    rows = jnp.arange(bsz)[:, None]

    def rows_of(idx):
        """``y[idx]`` for ``idx [B, K]`` in bounds (``mode="clip"``: a plain row copy,
        several times faster on CPU than the default out-of-bounds-checking gather)."""
        return jnp.take(y, idx.reshape(-1), axis=0, mode="clip").reshape(idx.shape + y.shape[1:])

    def accumulate(z, z2, s, w, y_rows):
        """Add weights ``w [B, K]`` of gathered points ``y_rows [B, K, d]``."""
        return (z + jnp.sum(w, axis=1), z2 + jnp.sum(w * w, axis=1),
                s + jnp.einsum("bk,bkd->bd", w, y_rows, precision=hi))

    def body(c, carry):
        m, z, z2, s, top_v, top_i = carry
        start_nominal = c * chunk
        start = jnp.minimum(start_nominal, n - chunk)  # last chunk overlaps; mask repeats
        y_c = lax.dynamic_slice_in_dim(y, start, chunk, axis=0)
        h_c = lax.dynamic_slice_in_dim(h, start, chunk, axis=0)
        idx = start + jnp.arange(chunk, dtype=jnp.int32)
        logits = (jnp.dot(xc, y_c.T, precision=hi) - h_c[None, :]) * inv_var[:, None]
        keep = (idx >= start_nominal)[None, :]
        if labels is not None:
            lab_c = lax.dynamic_slice_in_dim(labels, start, chunk, axis=0)
            keep = keep & ((lab_c[None, :] == cond[:, None]) | (cond == NULL)[:, None])
        logits = jnp.where(keep, logits, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(logits, axis=1))
        # The reference of the exponentials: m_new, or 0 while a query has seen no point of
        # its condition (m_new = -inf; its sums are still 0).
        m_ref = m_new if labels is None else jnp.where(m_new > -jnp.inf, m_new, 0.0)
        scale = jnp.exp(m - m_ref)
        z, z2, s = z * scale, z2 * scale * scale, s * scale[:, None]
        if k_top == 0:
            p = jnp.exp(logits - m_ref[:, None])
            return (m_new, z + jnp.sum(p, axis=1), z2 + jnp.sum(p * p, axis=1),
                    s + jnp.dot(p, y_c, precision=hi), top_v, top_i)
        cv, ci = top_k(logits, k_chunk)
        # The chunk's best are kept aside, by index (so whatever their rounding elsewhere).
        p = jnp.exp(logits - m_ref[:, None]).at[rows, ci].set(0.0)
        z, z2 = z + jnp.sum(p, axis=1), z2 + jnp.sum(p * p, axis=1)
        s = s + jnp.dot(p, y_c, precision=hi)
        # Merge the chunk's best into the running candidates; accumulate the displaced ones.
        all_v = jnp.concatenate([top_v, cv], axis=1)
        all_i = jnp.concatenate([top_i, idx[ci]], axis=1)
        order = jnp.argsort(-all_v, axis=1)
        all_v = jnp.take_along_axis(all_v, order, axis=1)
        all_i = jnp.take_along_axis(all_i, order, axis=1)
        out_v, out_i = all_v[:, k_top:], all_i[:, k_top:]
        z, z2, s = accumulate(z, z2, s, jnp.exp(out_v - m_ref[:, None]), rows_of(out_i))
        return m_new, z, z2, s, all_v[:, :k_top], all_i[:, :k_top]

    init = (
        jnp.full((bsz,), -jnp.inf, dtype),
        jnp.zeros((bsz,), dtype),
        jnp.zeros((bsz,), dtype),
        jnp.zeros(x.shape, dtype),
        jnp.full((bsz, k_top), -jnp.inf, dtype),
        jnp.zeros((bsz, k_top), jnp.int32),
    )
    m, z, z2, s, top_v, top_i = lax.fori_loop(0, num_chunks, body, init)

    if k_top > 0:
        # The candidates' logits, exactly, relative to the best candidate (index 0). Logits
        # are large numbers (|x.y| / v); everything here works with differences to the
        # running max m, which are small, so no absolute logit is rounded again.
        y_cand = rows_of(top_i)  # [B, K, d]
        # Blocks of 32 queries keep the double-word temporaries in cache (3x faster on CPU).
        shift = lax.map(lambda a: exact_sq_dist_diff(a[0][None, :], a[1], a[1][:1]),
                        (x, y_cand), batch_size=min(bsz, max(32, 2**17 // (k_top * x.shape[1]))))
        exact_rel = (top_v[:, :1] - m[:, None]) - 0.5 * shift * inv_var[:, None]
        exact_rel = jnp.where(jnp.isfinite(top_v), exact_rel, -jnp.inf)  # unfilled slots
        u_max = jnp.maximum(jnp.max(exact_rel, axis=1), 0.0)
        rescale = jnp.exp(-u_max)
        beta = jnp.exp(exact_rel - u_max[:, None])
        z, z2, s = accumulate(z * rescale, z2 * rescale * rescale, s * rescale[:, None],
                              beta, y_cand)
        m = m + u_max
        top = jnp.max(beta, axis=1)
        nearest = jnp.take_along_axis(top_i, jnp.argmax(beta, axis=1)[:, None], axis=1)[:, 0]
    else:
        top = jnp.ones_like(z)
        nearest = jnp.full(z.shape, -1, jnp.int32)
    mean = s / z[:, None]
    log_z = m + jnp.log(z)
    return Posterior(mean, log_z, top / z, z2 / (z * z), nearest)


def posterior(x, var, y, center, half_sq, labels=None, cond=None, *, chunk_size=2048,
              query_block=512, num_exact=4):
    """Exact streaming posterior of the points ``y`` for queries ``x`` at variances ``var``.

    Args:
      x: ``[M, d]`` queries.
      var: ``[M]`` positive temperatures (``sigma^2`` for the empirical denoiser).
      y: ``[N, d]`` points (the training set).
      center: ``[d]`` a centre ``c`` of the points (their mean), for conditioning.
      half_sq: ``[N]`` ``|y_i - c|^2 / 2``, precomputed once.
      labels: optional ``[N]`` integer condition ids of the points (``>= 0``).
      cond: ``[M]`` integer condition ids of the queries, with ``labels``: query ``m`` sees
        the points with ``labels == cond[m]``, or all points where ``cond[m] == NULL``
        (-1). A query whose condition no point carries gets NaN.
      chunk_size: number of points per streamed chunk.
      query_block: number of queries evaluated together (bounds the ``[B, chunk]`` logits).
      num_exact: candidates per query whose logits are re-evaluated exactly.

    Returns:
      :class:`Posterior` with ``[M, ...]`` fields; ``log_normalizer`` is
      ``log sum_i exp(-|x - y_i|^2 / 2v)`` over the points the query sees; ``nearest``
      indexes ``y``.
    """
    m_q = x.shape[0]
    inv_var = 1.0 / var
    xc = x - center[None, :]
    masked = labels is not None
    run = lambda xb, xcb, ivb, cb=None: _posterior_block(  # noqa: E731
        xb, xcb, ivb, y, half_sq, labels, cb, chunk_size=chunk_size, num_exact=num_exact)
    if m_q <= query_block:
        out = run(x, xc, inv_var, cond)
    else:
        nb = -(-m_q // query_block)
        pad = nb * query_block - m_q
        blocks = lambda a: jnp.pad(a, ((0, pad), (0, 0))).reshape(nb, query_block, -1)  # noqa: E731
        ivp = jnp.pad(inv_var, (0, pad), constant_values=1.0).reshape(nb, query_block)
        args = (blocks(x), blocks(xc), ivp)
        if masked:
            args += (jnp.pad(cond, (0, pad), constant_values=NULL).reshape(nb, query_block),)
        out = lax.map(lambda a: run(*a), args)
        out = jax.tree.map(lambda t: t.reshape((nb * query_block,) + t.shape[2:])[:m_q], out)
    # -|x - y|^2 / 2 = xc . y - |y - c|^2 / 2 - (xc . c + |xc|^2 / 2)
    const = jnp.dot(xc, center, precision=lax.Precision.HIGHEST) + 0.5 * jnp.sum(xc * xc, -1)
    return out._replace(log_normalizer=out.log_normalizer - const * inv_var)


def merge_shards(x, inv_var, parts: Posterior, best_rows):
    """Exactly combine posteriors computed on disjoint shards of the points.

    Args:
      x: ``[M, d]`` queries; ``inv_var``: ``[M]``.
      parts: :class:`Posterior` with a leading shard axis ``[S, M, ...]`` (``nearest`` holds
        global indices).
      best_rows: ``[S, M, d]`` each shard's nearest point.

    Each shard's sums are relative to its own best point's weight (``1 / max_weight`` is
    its total weight in those units). The shards' best points are put on one scale by exact
    distance differences to a reference best point (:func:`exact_sq_dist_diff`), never by
    comparing the (large, rounded) absolute log-normalizers, so near-ties across shards stay
    exact.

    Returns:
      The merged :class:`Posterior` ``[M, ...]``.
    """
    ref = jnp.argmax(parts.log_normalizer, axis=0)  # [M]
    y_ref = jnp.take_along_axis(best_rows, ref[None, :, None], axis=0)[0]
    shift = exact_sq_dist_diff(x[None], best_rows, y_ref[None])  # [S, M]
    log_a = -0.5 * shift * inv_var[None, :]
    log_a = jnp.where(parts.max_weight > 0, log_a, -jnp.inf)
    top = jnp.max(log_a, axis=0)
    a = jnp.exp(log_a - top[None])  # the shards' best weights, the global best at 1
    rel_z = a / parts.max_weight  # each shard's total weight, in units of the global best
    rel_z = jnp.where(a > 0, rel_z, 0.0)
    z = jnp.sum(rel_z, axis=0)
    w = rel_z / z[None]  # each shard's share of the posterior
    mean = jnp.einsum("sm,smd->md", w, jnp.where(w[..., None] > 0, parts.mean, 0.0),
                      precision=lax.Precision.HIGHEST)
    log_ref = jnp.take_along_axis(parts.log_normalizer, ref[None], axis=0)[0]
    rel_ref = jnp.take_along_axis(rel_z, ref[None], axis=0)[0]
    log_z = log_ref + jnp.log(z) - jnp.log(rel_ref)
    sum_sq = jnp.sum(jnp.where(w > 0, w * w * parts.sum_sq_weights, 0.0), axis=0)
    winner = jnp.argmax(log_a, axis=0)
    nearest = jnp.take_along_axis(parts.nearest, winner[None], axis=0)[0]
    return Posterior(mean, log_z, 1.0 / z, sum_sq, nearest)


def prepare(train, chunk_size, query_block, num_exact):
    """What a streaming denoiser stores besides its (checked) training set:
    ``(center [d], half_sq_norms [N], chunk_size, query_block, num_exact)``, the options
    checked (``num_exact >= 0``)."""
    center = jnp.mean(train, axis=0)
    half_sq_norms = 0.5 * jnp.sum((train - center[None, :]) ** 2, axis=1)
    return (center, half_sq_norms, positive_int(chunk_size, "chunk_size"),
            positive_int(query_block, "query_block"),
            positive_int(num_exact, "num_exact", minimum=0))
