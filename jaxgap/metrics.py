r"""Memorization metrics and inference-domain diagnostics.

Three groups of measurements, all on plain ``[n, d]`` arrays:

- **Nearest neighbours** (:func:`nearest_neighbors`): exact k-nearest neighbours in JAX,
  streamed over chunks of the reference points with one matmul per chunk (memory
  independent of the number of points beyond the data), then re-ranked exactly.
- **Copying** (:func:`copy_ratio`, :func:`memorized_fraction`, :func:`distance_to_sets`):
  the memorization criterion of the literature, "the 1/3 rule": a generated sample ``x``
  counts as a copy of the training set when

  .. math:: \frac{|x - \mathrm{NN}_1(x)|}{|x - \mathrm{NN}_2(x)|} < \frac{1}{3},

  with ``NN_1``, ``NN_2`` its nearest and second-nearest training points.
- **Inference domain** (claim C3 of Kaiser and Kollmann, 2026: intermediate states of
  sampling trajectories lie far from the noisy training samples the model was trained on):
  :func:`normalized_nn_distance`, :func:`posterior_concentration` and
  :func:`domain_diagnostics`, which summarize noisy-train, noisy-val
  (:func:`noisy_states`) and sampler states side by side, per noise level.

References:
  Kaiser and Kollmann, "Diffusion Models Memorize in Training -- and Generalize in
  Inference" (2026). Yoon et al., "Diffusion Probabilistic Models Generalize when They Fail
  to Memorize" (ICML 2023 workshop), the 1/3 rule; Gu et al., "On Memorization in Diffusion
  Models" (2023); Somepalli et al., "Diffusion Art or Digital Forgery?" (CVPR 2023).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from jaxgap._checks import float_array, positive_int, prng_key, shape_str, sigma_array
from jaxgap.denoisers._kernel import _top_k, exact_sq_dist_diff
from jaxgap.denoisers.empirical import EmpiricalDenoiser
from jaxgap.losses import example_noise

__all__ = [
    "Concentration",
    "DomainDiagnostics",
    "MemorizedFraction",
    "Neighbors",
    "SetDiagnostics",
    "SetDistances",
    "copy_ratio",
    "distance_to_sets",
    "domain_diagnostics",
    "memorized_fraction",
    "nearest_neighbors",
    "noisy_states",
    "normalized_nn_distance",
    "posterior_concentration",
]

_HI = lax.Precision.HIGHEST
_MAX_ELEMENTS = 1 << 22  # bootstrap indices drawn per batch


def _floats(x) -> list:
    """A float64 NumPy view of ``x`` as nested lists (JSON-ready)."""
    return np.asarray(x, np.float64).tolist()


# ---------------------------------------------------------------------------------------------
# Nearest neighbours
# ---------------------------------------------------------------------------------------------


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
    (:func:`~jaxgap.denoisers._kernel.exact_sq_dist_diff`); the order is that of
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
        cv, ci = _top_k(score, k_chunk)
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


@functools.partial(jax.jit, static_argnames=("k", "num_cand", "chunk", "query_block"))
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
    arithmetic (:func:`~jaxgap.denoisers._kernel.exact_sq_dist_diff`), so a query almost
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


# ---------------------------------------------------------------------------------------------
# Copying
# ---------------------------------------------------------------------------------------------


def _ratio(nb: Neighbors):
    d1, d2 = nb.dist[:, 0], nb.dist[:, 1]
    return jnp.where(d1 == 0, 0.0, d1 / jnp.where(d2 == 0, 1.0, d2))


def copy_ratio(samples: Float[ArrayLike, "m d"], train: Float[ArrayLike, "n d"], *,
               chunk_size: int = 4096) -> Float[Array, " m"]:
    r"""Nearest-to-second-nearest distance ratio of each sample against the training set.

    .. math:: r(x) = \frac{|x - \mathrm{NN}_1(x)|}{|x - \mathrm{NN}_2(x)|} \in [0, 1]

    Small ``r`` means ``x`` sits on one training point rather than between several: the
    1/3 rule calls ``x`` memorized when ``r < 1/3`` (see :func:`memorized_fraction`).
    An exact copy (``|x - NN_1| = 0``) has ``r = 0``, also when the copied point is
    duplicated in ``train``.

    Args:
      samples: ``[M, d]`` generated samples.
      train: ``[N, d]`` training points, ``N >= 2``.
      chunk_size: as in :func:`nearest_neighbors`.

    Returns:
      ``[M]`` ratios.

    References:
      Yoon et al. (2023); Gu et al. (2023), the 1/3 rule.
    """
    samples, train = _check_pair(samples, train, "samples", "train")
    if train.shape[0] < 2:
        raise ValueError(f"train: expected at least 2 points (two nearest neighbours), "
                         f"got shape {shape_str(train.shape)}")
    opts = _nn_options(train.shape[0], 2, chunk_size, None, 512, "train")
    return _ratio(_nearest_neighbors(samples, train, **opts))


class MemorizedFraction(NamedTuple):
    """Fraction of samples that the 1/3 rule calls copies, with its standard error.

    Attributes:
      fraction: scalar, ``mean_m [r_m < threshold]``.
      se: scalar bootstrap standard error of ``fraction`` over samples.
    """

    fraction: Array
    se: Array

    def to_dict(self) -> dict:
        """Plain floats, ready for ``json.dump``."""
        return {"fraction": float(self.fraction), "se": float(self.se)}


@functools.partial(jax.jit, static_argnames=("num_bootstrap",))
def _bootstrap_counts(indicator, key, *, num_bootstrap):
    """``[B]`` int32 counts of the resampled indicators; resample ``b`` uses
    ``fold_in(key, b)`` (so the counts do not depend on the batching below)."""
    m = indicator.shape[0]

    def one(b):
        idx = jax.random.randint(jax.random.fold_in(key, b), (m,), 0, m)
        return jnp.sum(jnp.take(indicator, idx))

    batch = max(1, min(num_bootstrap, _MAX_ELEMENTS // m))
    return lax.map(one, jnp.arange(num_bootstrap, dtype=jnp.uint32), batch_size=batch)


def memorized_fraction(samples: Float[ArrayLike, "m d"], train: Float[ArrayLike, "n d"], *,
                       threshold: float = 1.0 / 3.0, key: jax.Array | None = None,
                       num_bootstrap: int = 1000,
                       chunk_size: int = 4096) -> MemorizedFraction:
    r"""Fraction of samples memorized by the 1/3 rule, with a bootstrap standard error.

    .. math:: \hat p = \frac1M \sum_{m=1}^M \big[\, r(x_m) < \tau \,\big], \qquad
              r(x) = \frac{|x - \mathrm{NN}_1(x)|}{|x - \mathrm{NN}_2(x)|}

    The standard error is the bootstrap over samples: resample ``b`` (``b = 0 .. B-1``)
    draws ``M`` sample indices uniformly with replacement using the key
    ``jax.random.fold_in(key, b)``, so the result does not depend on batching; ``se`` is the
    standard deviation (``ddof=1``) of the ``B`` resampled fractions. Without a ``key`` it is
    the bootstrap's closed-form limit ``B -> infinity``, ``sqrt(p (1 - p) / M)``.

    Args:
      samples: ``[M, d]`` generated samples.
      train: ``[N, d]`` training points, ``N >= 2``.
      threshold: ``tau`` in ``(0, 1]``; the literature's value is 1/3.
      key: PRNG key for the bootstrap, or None for the closed form.
      num_bootstrap: number of resamples ``B >= 2`` (with a key).
      chunk_size: as in :func:`nearest_neighbors`.

    Returns:
      :class:`MemorizedFraction` ``(fraction, se)`` (scalars).

    Example:
      >>> out = memorized_fraction(samples, ds.train, key=jax.random.PRNGKey(0))
      >>> float(out.fraction), float(out.se)

    References:
      Yoon et al. (2023); Gu et al. (2023): memorized iff ``r < 1/3``.
    """
    try:
        tau = float(threshold)
    except (TypeError, ValueError) as err:
        raise ValueError(f"threshold: expected a number in (0, 1], got {threshold!r}") from err
    if not (0.0 < tau <= 1.0):
        raise ValueError(f"threshold: expected a number in (0, 1], got {threshold!r}")
    num_bootstrap = positive_int(num_bootstrap, "num_bootstrap", minimum=2)
    if key is not None:
        key = prng_key(key)
    ratio = copy_ratio(samples, train, chunk_size=chunk_size)
    indicator = (ratio < tau).astype(jnp.int32)
    m = indicator.shape[0]
    # Counts are integers: the fraction and the spread are formed in float64 on the host, so
    # a constant indicator gives se = 0 exactly.
    p = int(jnp.sum(indicator)) / m
    if key is None:
        se = math.sqrt(p * (1.0 - p) / m)
    else:
        counts = np.asarray(_bootstrap_counts(indicator, key, num_bootstrap=num_bootstrap))
        se = float(np.std(counts.astype(np.float64), ddof=1)) / m
    return MemorizedFraction(jnp.asarray(p, ratio.dtype), jnp.asarray(se, ratio.dtype))


class SetDistances(NamedTuple):
    """Each sample's nearest distance to the training and to the validation set.

    Attributes:
      to_train: ``[M]`` ``min_i |x_m - y_i|`` over the training set.
      to_val: ``[M]`` the same over the validation set.
      mean_to_train: scalar mean of ``to_train``.
      mean_to_val: scalar mean of ``to_val``.
      closer_to_train: scalar fraction of samples with ``to_train < to_val``.
    """

    to_train: Array
    to_val: Array
    mean_to_train: Array
    mean_to_val: Array
    closer_to_train: Array

    def to_dict(self) -> dict:
        """Plain lists and floats, ready for ``json.dump``."""
        return {f: _floats(getattr(self, f)) for f in self._fields}


def distance_to_sets(samples: Float[ArrayLike, "m d"], train: Float[ArrayLike, "n d"],
                     val: Float[ArrayLike, "v d"], *, chunk_size: int = 4096) -> SetDistances:
    r"""Nearest distances of samples to the training set and to a held-out set.

    .. math:: d_{\mathrm{train}}(x) = \min_i |x - y_i|, \qquad
              d_{\mathrm{val}}(x) = \min_j |x - v_j|

    A model that copies puts its samples markedly closer to ``train`` than to ``val``; one
    that generalizes puts them at similar distances from both (for sets of equal size drawn
    from one distribution).

    Args:
      samples: ``[M, d]`` generated samples.
      train: ``[N, d]`` training points.
      val: ``[V, d]`` held-out points.
      chunk_size: as in :func:`nearest_neighbors`.

    Returns:
      :class:`SetDistances`.
    """
    train = float_array(train, "train", ndim=2)
    val = float_array(val, "val", ndim=2, dim=train.shape[1])
    samples = float_array(samples, "samples", ndim=2, dim=train.shape[1])
    dtype = _common_dtype(samples, train, val)
    samples, train, val = samples.astype(dtype), train.astype(dtype), val.astype(dtype)
    dt = _nearest_neighbors(samples, train, **_nn_options(
        train.shape[0], 1, chunk_size, None, 512, "train")).dist[:, 0]
    dv = _nearest_neighbors(samples, val, **_nn_options(
        val.shape[0], 1, chunk_size, None, 512, "val")).dist[:, 0]
    return SetDistances(dt, dv, jnp.mean(dt), jnp.mean(dv),
                        jnp.mean((dt < dv).astype(dtype)))


# ---------------------------------------------------------------------------------------------
# Inference-domain diagnostics
# ---------------------------------------------------------------------------------------------


def _check_states(x, sigma, train, name: str = "x"):
    """``x [..., d]`` against ``train [N, d]``; ``sigma`` broadcast to ``x.shape[:-1]``."""
    x = float_array(x, name, min_ndim=1, dim=train.shape[1])
    dtype = _common_dtype(x, train)
    sigma = sigma_array(sigma, "sigma", x.shape[:-1], dtype=dtype)
    return x.astype(dtype), sigma, train.astype(dtype)


def _train_array(train):
    if isinstance(train, EmpiricalDenoiser):
        return train.train
    return float_array(train, "train", ndim=2)


def normalized_nn_distance(x: Float[ArrayLike, "*batch d"], sigma: Float[ArrayLike, "*#batch"],
                           train: Float[ArrayLike, "n d"], *,
                           chunk_size: int = 4096) -> Float[Array, "*batch"]:
    r"""Distance to the nearest training point in units of the noise radius.

    .. math:: \rho(x, \sigma) = \frac{\min_i |x - y_i|}{\sigma \sqrt d}

    For a noisy training sample ``x = y_j + sigma eps`` (``eps ~ N(0, I_d)``),
    ``|x - y_j| ~ sigma sqrt(d)``, so ``rho ~ 1`` while ``y_j`` is the nearest point (small
    sigma) and ``rho < 1`` once other points come closer (large sigma). States with ``rho``
    far from the noisy-train values lie outside the domain the denoiser was trained on.

    Args:
      x: ``[..., d]`` states.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``, values > 0.
      train: ``[N, d]`` training points (or an :class:`EmpiricalDenoiser` of them).
      chunk_size: as in :func:`nearest_neighbors`.

    Returns:
      ``[...]`` normalized distances.
    """
    train = _train_array(train)
    x, sigma, train = _check_states(x, sigma, train)
    flat = x.reshape(-1, x.shape[-1])
    nb = _nearest_neighbors(flat, train, **_nn_options(
        train.shape[0], 1, chunk_size, None, 512, "train"))
    return nb.dist[:, 0].reshape(x.shape[:-1]) / (sigma * math.sqrt(x.shape[-1]))


class Concentration(NamedTuple):
    """How concentrated the empirical posterior over training points is.

    Attributes:
      max_weight: ``[...]`` ``max_i w_i`` (1: one training point explains ``x``).
      effective_count: ``[...]`` ``1 / sum_i w_i^2``, from 1 (one point) to ``N`` (all).
    """

    max_weight: Array
    effective_count: Array


def _denoiser(train) -> EmpiricalDenoiser:
    if isinstance(train, EmpiricalDenoiser):
        return train
    return EmpiricalDenoiser(float_array(train, "train", ndim=2))


def posterior_concentration(x: Float[ArrayLike, "*batch d"], sigma: Float[ArrayLike, "*#batch"],
                            train) -> Concentration:
    r"""Concentration of the empirical posterior ``p(y_i | x_sigma = x)``.

    .. math::
        w_i = \operatorname{softmax}_i\Big(-\frac{|x - y_i|^2}{2\sigma^2}\Big), \qquad
        w_{\max} = \max_i w_i, \qquad N_{\mathrm{eff}} = \Big(\sum_i w_i^2\Big)^{-1}

    Computed by :meth:`EmpiricalDenoiser.posterior_stats` (streamed, exact at small sigma,
    without materialising the ``[..., N]`` weights). Noisy training samples at small sigma
    give ``w_max ~ 1``, ``N_eff ~ 1``: the optimal denoiser returns their source point.

    Args:
      x: ``[..., d]`` states.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``, values > 0.
      train: ``[N, d]`` training points, or an :class:`EmpiricalDenoiser` (reused as is).

    Returns:
      :class:`Concentration` with ``[...]`` fields.
    """
    den = _denoiser(train)
    post = den.posterior_stats(x, sigma)
    return Concentration(post.max_weight, 1.0 / post.sum_sq_weights)


class SetDiagnostics(NamedTuple):
    """Quantile bands of one set of states, per noise level.

    Attributes:
      normalized_nn_distance: ``[K, Q]`` quantiles of :func:`normalized_nn_distance`.
      max_weight: ``[K, Q]`` quantiles of the largest posterior weight.
      effective_count: ``[K, Q]`` quantiles of ``1 / sum_i w_i^2``.
      num_states: number of states per noise level (``M``).
    """

    normalized_nn_distance: Array
    max_weight: Array
    effective_count: Array
    num_states: int

    def to_dict(self) -> dict:
        out = {f: _floats(getattr(self, f)) for f in self._fields[:3]}
        out["num_states"] = int(self.num_states)
        return out


class DomainDiagnostics(NamedTuple):
    """Inference-domain statistics of named sets of states over a noise grid.

    Attributes:
      sigmas: ``[K]`` noise levels.
      quantiles: ``[Q]`` quantile levels in ``[0, 1]``.
      sets: ``{name: SetDiagnostics}`` in the order given.
    """

    sigmas: Array
    quantiles: Array
    sets: dict

    def to_dict(self) -> dict:
        """Plain lists, ready for ``json.dump``."""
        return {"sigmas": _floats(self.sigmas), "quantiles": _floats(self.quantiles),
                "sets": {name: s.to_dict() for name, s in self.sets.items()}}

    def to_json(self, **extra) -> str:
        """JSON text of :meth:`to_dict` plus any extra metadata keys."""
        return json.dumps({**extra, **self.to_dict()}, indent=2)


@jax.jit
def _distance_to_rows(x, train, index):
    """``|x - train[index]|`` for ``x [..., d]``, ``index [...]``, accurate to a few ulps."""
    rows = jnp.take(train, index.reshape(-1), axis=0, mode="clip").reshape(x.shape)
    return jnp.sqrt(jnp.maximum(exact_sq_dist_diff(x, rows, x), 0.0))


def _check_sigmas(sigmas):
    sigmas = float_array(sigmas, "sigmas", ndim=1)
    values = np.asarray(sigmas)
    if not np.all(values > 0):
        raise ValueError(f"sigmas: expected values > 0, got min {float(values.min())!r}")
    return sigmas


def domain_diagnostics(train, sigmas: Float[ArrayLike, " k"],
                       states: Float[ArrayLike, "k m d"] | Mapping[str, Any], *,
                       quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> DomainDiagnostics:
    r"""Quantile bands of three inference-domain statistics, per set and noise level.

    For states ``x`` at noise level ``sigma_k`` and the training set ``{y_i}``:

    .. math::
        \rho = \frac{\min_i |x - y_i|}{\sigma_k \sqrt d}, \qquad
        w_{\max} = \max_i w_i, \qquad N_{\mathrm{eff}} = \Big(\sum_i w_i^2\Big)^{-1},

    with ``w`` the empirical posterior (:func:`posterior_concentration`). Noisy training
    samples (:func:`noisy_states` of ``train``) define the domain the model was trained on;
    noisy validation samples and the states of sampling trajectories at the same sigmas
    (a trajectory's ``x[:-1]`` with its ``sigma[:-1]``) are compared with it. Claim C3:
    trajectory states sit far from that domain (``rho`` unlike noisy-train, posterior
    spread over many points) at intermediate sigma.

    Args:
      train: ``[N, d]`` training points, or an :class:`EmpiricalDenoiser` of them.
      sigmas: ``[K]`` noise levels, > 0.
      states: ``[K, M, d]`` states (``states[k]`` at ``sigmas[k]``), named ``"states"``, or a
        mapping ``{name: [K, M_name, d]}``.
      quantiles: levels in ``[0, 1]`` of the reported bands.

    Returns:
      :class:`DomainDiagnostics`; ``.sets[name].max_weight[k]`` etc. are ``[Q]`` quantiles,
      ``.to_dict()`` is JSON-serializable.

    Example:
      >>> key = jax.random.PRNGKey(0)
      >>> k_train, k_val = jax.random.split(key)
      >>> sig = traj.sigma[:-1]
      >>> diag = domain_diagnostics(ds.train, sig, {
      ...     "train": noisy_states(k_train, ds.train, sig),
      ...     "val": noisy_states(k_val, ds.val, sig),
      ...     "sampler": traj.x[:-1]})
      >>> diag.sets["sampler"].normalized_nn_distance  # [K, 3]
    """
    den = _denoiser(train)
    train = den.train
    sigmas = _check_sigmas(sigmas)
    q = np.asarray(quantiles, np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all(np.isfinite(q)) or np.any((q < 0) | (q > 1)):
        raise ValueError(f"quantiles: expected a non-empty sequence of levels in [0, 1], "
                         f"got {quantiles!r}")
    if isinstance(states, Mapping):
        if not states:
            raise ValueError("states: expected an array or a non-empty mapping, got {}")
        named = dict(states)
    else:
        named = {"states": states}
    k_len, dim = sigmas.shape[0], train.shape[1]
    checked = {}
    for name, s in named.items():
        if not isinstance(name, str):
            raise ValueError(f"states: expected string names, got {name!r}")
        label = "states" if name == "states" and len(named) == 1 else f"states[{name!r}]"
        s = float_array(s, label, ndim=3)
        if s.shape[0] != k_len or s.shape[2] != dim:
            raise ValueError(f"{label}: expected shape [{k_len}, M, {dim}] (one row of states "
                             f"per sigma, d of train), got {shape_str(s.shape)}")
        checked[name] = s
    dtype = _common_dtype(train, *checked.values())
    qj = jnp.asarray(q, dtype)
    train = train.astype(dtype)
    # All sets in one batch of queries [K, sum M, d]: one compiled program per call.
    sizes = [int(s.shape[1]) for s in checked.values()]
    allx = jnp.concatenate([s.astype(dtype) for s in checked.values()], axis=1)
    sig = jnp.broadcast_to(sigmas.astype(dtype)[:, None], allx.shape[:2])
    post = den.posterior_stats(allx, sig)
    if den.num_exact > 0:  # the posterior's nearest point is the exact nearest neighbour
        dist = _distance_to_rows(allx, train, post.nearest)
    else:
        dist = _nearest_neighbors(allx.reshape(-1, dim), train, **_nn_options(
            train.shape[0], 1, 4096, None, 512, "train")).dist[:, 0].reshape(allx.shape[:2])
    stats = [np.asarray(v, np.float64) for v in
             (dist / (sig * math.sqrt(dim)), post.max_weight, 1.0 / post.sum_sq_weights)]
    sets, start = {}, 0
    for name, size in zip(checked, sizes, strict=True):
        # Linear interpolation between order statistics (monotone in q), on the host.
        bands = [jnp.asarray(np.quantile(v[:, start:start + size], q, axis=1).T, dtype)
                 for v in stats]  # [K, Q]
        sets[name] = SetDiagnostics(*bands, size)
        start += size
    return DomainDiagnostics(sigmas, qj, sets)


@jax.jit
def _noisy_states(key, data, sigmas, draw):
    n, dim = data.shape
    index = jnp.arange(n, dtype=jnp.uint32)
    grid = jnp.arange(sigmas.shape[0], dtype=jnp.uint32)
    eps = jax.vmap(lambda k: jax.vmap(
        lambda i: example_noise(key, i, k, draw, dim, data.dtype))(index))(grid)
    return data[None, :, :] + sigmas[:, None, None] * eps


def noisy_states(key: jax.Array, data: Float[ArrayLike, "n d"],
                 sigmas: Float[ArrayLike, " k"], *, draw: int = 0) -> Float[Array, "k n d"]:
    r"""Forward-noised copies of ``data`` at every noise level: the training-time inputs.

    .. math:: x_{k,i} = y_i + \sigma_k\, \epsilon_{k,i}, \qquad
              \epsilon_{k,i} = \texttt{example\_noise}(key, i, k, r, d)

    The noise follows :func:`jaxgap.losses.example_noise` (common random numbers: a
    function of ``(key, i, k, r)`` only, with ``r = draw``), so these are exactly the noisy
    queries the denoising loss of :mod:`jaxgap.losses` evaluates with the same key.

    Args:
      key: PRNG key.
      data: ``[n, d]`` clean points (training or validation set).
      sigmas: ``[K]`` noise levels, > 0.
      draw: noise draw index ``r >= 0``.

    Returns:
      ``[K, n, d]`` noisy states; ``out[k]`` is at ``sigmas[k]``.
    """
    key = prng_key(key)
    data = float_array(data, "data", ndim=2)
    data = data.astype(_common_dtype(data))
    sigmas = _check_sigmas(sigmas).astype(data.dtype)
    draw = positive_int(draw, "draw", minimum=0)
    return _noisy_states(key, data, sigmas, jnp.uint32(draw))

