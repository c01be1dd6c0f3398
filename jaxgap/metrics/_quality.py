r"""Sample quality without an Inception network: k-NN precision, recall, density and
coverage, and the Fréchet distance between Gaussians fitted to two feature sets
(:func:`sample_quality`, :func:`frechet_distance`, :func:`gaussian_frechet_distance`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import ArrayLike, Float

from jaxgap._checks import float_array, positive_int, shape_str
from jaxgap._jit import jit
from jaxgap.metrics._neighbors import _check_pair, _neighbors_in

__all__ = ["SampleQuality", "frechet_distance", "gaussian_frechet_distance", "sample_quality"]

_HI = lax.Precision.HIGHEST


class SampleQuality(NamedTuple):
    r"""Quality of ``M`` samples against ``N`` reference points in one feature space.

    All metric fields are Python floats. The ideal values, reached by a second independent
    draw of the reference distribution of the same size, are close to (not exactly)
    precision = recall = density = coverage = 1 and frechet = 0: all five are biased
    estimators at finite ``M``, ``N`` and ``k``.

    Attributes:
      precision: fraction of samples inside the reference manifold (fidelity).
      recall: fraction of reference points inside the sample manifold (diversity).
      density: mean number of reference balls containing a sample, divided by ``k``; ``> 1``
        when samples crowd where reference points are dense.
      coverage: fraction of reference balls that contain at least one sample.
      frechet: Fréchet distance between the Gaussians fitted to the two sets
        (:func:`frechet_distance`), in squared feature units.
      num_samples: ``M``.
      num_reference: ``N``.
      k: the neighbour rank defining the balls.
    """

    precision: float
    recall: float
    density: float
    coverage: float
    frechet: float
    num_samples: int
    num_reference: int
    k: int

    def to_dict(self) -> dict:
        """Plain Python floats and ints, ready for ``json.dump``."""
        out = {name: float(getattr(self, name))
               for name in ("precision", "recall", "density", "coverage", "frechet")}
        out.update(num_samples=int(self.num_samples), num_reference=int(self.num_reference),
                   k=int(self.k))
        return out


# ------------------------------------------------------------------------------------------
# Ball membership counts: one matmul per (query block, center chunk)
# ------------------------------------------------------------------------------------------

def _blocks(a, size: int, fill):
    """``a [n, ...]`` padded with ``fill`` to a multiple of ``size``, as ``[nb, size, ...]``."""
    n = a.shape[0]
    nb = -(-n // size)
    pad = [(0, nb * size - n)] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, pad, constant_values=fill).reshape((nb, size) + a.shape[1:])


@jit
def _ball_counts(queries, centers, radii, *, block: int, chunk: int):
    r"""How many balls ``B(c_i, r_i)`` contain each query, and how many queries each contains.

    ``inside[j, i] = |q_j - c_i|^2 <= r_i^2`` with the squared distance from one matmul,
    ``|q - m|^2 - 2 (q - m) . (c - m) + |c - m|^2`` (``m`` the centers' mean, which keeps the
    rounding error at ``~eps (|q - m|^2 + |c - m|^2)``). Memory is ``O(block * chunk)``
    beyond the data.

    Returns:
      ``(per_query [M], per_center [N])`` int32 counts: row and column sums of ``inside``.
    """
    m, n = queries.shape[0], centers.shape[0]
    mean = jnp.mean(centers, axis=0)
    q = queries - mean[None, :]
    c = centers - mean[None, :]
    block, chunk = min(block, m), min(chunk, n)
    qb = _blocks(q, block, 0.0)
    qq = _blocks(jnp.sum(q * q, axis=1), block, 0.0)
    valid = _blocks(jnp.ones((m,), bool), block, False)
    cb = _blocks(c, chunk, 0.0)
    cc = _blocks(jnp.sum(c * c, axis=1), chunk, 0.0)
    r2 = _blocks(radii * radii, chunk, -1.0)  # padded centers contain nothing

    def per_block(col, args):
        xq, xqq, ok = args

        def per_chunk(row, cargs):
            xc, xcc, xr2 = cargs
            d2 = xqq[:, None] - 2.0 * jnp.dot(xq, xc.T, precision=_HI) + xcc[None, :]
            inside = (d2 <= xr2[None, :]) & ok[:, None]
            return row + jnp.sum(inside, axis=1, dtype=jnp.int32), jnp.sum(
                inside, axis=0, dtype=jnp.int32)

        row, col_add = lax.scan(per_chunk, jnp.zeros((block,), jnp.int32), (cb, cc, r2))
        return col + col_add, row

    col, rows = lax.scan(per_block, jnp.zeros(cb.shape[:2], jnp.int32), (qb, qq, valid))
    return rows.reshape(-1)[:m], col.reshape(-1)[:n]


def _knn_metrics(samples, reference, *, k: int, block: int, chunk: int):
    """Precision, recall, density, coverage (Python floats) of checked, equal-dtype arrays.

    Four compiled calls (two radii, two ball counts) rather than one program: with
    ``M = N`` each pair shares one compilation, and the radii share the neighbour search's.
    """
    r_ref = _neighbors_in(reference, reference, k + 1, chunk, "reference").dist[:, k]
    r_smp = _neighbors_in(samples, samples, k + 1, chunk, "samples").dist[:, k]
    in_ref, ref_hit = _ball_counts(samples, reference, r_ref, block=block, chunk=chunk)
    in_smp, _ = _ball_counts(reference, samples, r_smp, block=block, chunk=chunk)
    in_ref, ref_hit, in_smp = (np.asarray(a, np.int64) for a in (in_ref, ref_hit, in_smp))
    return (float(np.mean(in_ref > 0)), float(np.mean(in_smp > 0)),
            float(np.sum(in_ref) / (k * samples.shape[0])), float(np.mean(ref_hit > 0)))


# ------------------------------------------------------------------------------------------
# Fréchet distance (float64 NumPy)
# ------------------------------------------------------------------------------------------

def _host64(x, name: str, *, ndim: int) -> np.ndarray:
    """A finite float64 NumPy array of rank ``ndim``, checked like the other metrics'
    inputs but never rounded to float32 on the way."""
    if x is None:
        raise ValueError(f"{name}: expected an array, got None")
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected rank {ndim}, got shape {shape_str(a.shape)}")
    if a.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {shape_str(a.shape)}")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name}: expected a real numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite values, got "
                         f"{int(a.size - np.isfinite(a).sum())} NaN or inf entries")
    return a


def _sqrt_psd(cov):
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues
    clipped at 0)."""
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _frechet(mean1, cov1, mean2, cov2) -> float:
    cov1 = 0.5 * (cov1 + cov1.T)
    cov2 = 0.5 * (cov2 + cov2.T)
    root1 = _sqrt_psd(cov1)
    inner = root1 @ cov2 @ root1
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    diff = mean1 - mean2
    value = float(diff @ diff) + float(np.trace(cov1) + np.trace(cov2)) - 2.0 * trace_sqrt
    return max(value, 0.0)


def gaussian_frechet_distance(mean1: Float[ArrayLike, " f"], cov1: Float[ArrayLike, "f f"],
                              mean2: Float[ArrayLike, " f"],
                              cov2: Float[ArrayLike, "f f"]) -> float:
    r"""Fréchet (2-Wasserstein squared) distance between two Gaussians, in float64.

    .. math::
        d^2 = |\mu_1 - \mu_2|^2 + \mathrm{tr}\bigl(\Sigma_1 + \Sigma_2
              - 2 (\Sigma_1 \Sigma_2)^{1/2}\bigr), \qquad
        \mathrm{tr}(\Sigma_1 \Sigma_2)^{1/2}
              = \sum_i \sqrt{\lambda_i\bigl(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\bigr)}

    The trace term is computed from two symmetric eigendecompositions (``Sigma_1^{1/2}``,
    then the eigenvalues of the symmetric ``Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2}``, which has
    the eigenvalues of ``Sigma_1 Sigma_2``), with eigenvalues clipped at 0, so singular
    covariances (fewer points than features) are fine. Covariances are symmetrized first;
    the result is clipped at 0 (it can round to ``-1e-13`` for equal Gaussians).

    Args:
      mean1, mean2: ``[f]`` means.
      cov1, cov2: ``[f, f]`` symmetric positive semi-definite covariances.

    Returns:
      The distance as a Python float.

    Raises:
      ValueError: naming the argument, for wrong ranks, mismatched ``f`` or non-finite values.

    Example:
      >>> gaussian_frechet_distance([0.0, 0.0], [[4.0, 0.0], [0.0, 1.0]],
      ...                           [1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])  # 1 + (2 - 1)^2
      2.0

    References:
      Dowson and Landau, "The Fréchet distance between multivariate normal distributions"
      (J. Multivariate Anal. 1982); Heusel et al., "GANs trained by a two time-scale update
      rule converge to a local Nash equilibrium" (NeurIPS 2017), the FID.
    """
    mean1 = _host64(mean1, "mean1", ndim=1)
    f = mean1.shape[0]
    arrays = {"mean2": (mean2, 1), "cov1": (cov1, 2), "cov2": (cov2, 2)}
    out = {}
    for name, (value, ndim) in arrays.items():
        a = _host64(value, name, ndim=ndim)
        if a.shape != (f,) * ndim:
            want = f"[{f}]" if ndim == 1 else f"[{f}, {f}]"
            raise ValueError(f"{name}: expected shape {want} (as mean1), got "
                             f"{shape_str(a.shape)}")
        out[name] = a
    return _frechet(mean1, out["cov1"], out["mean2"], out["cov2"])


def _moments(x: np.ndarray):
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def frechet_distance(features1: Float[ArrayLike, "m f"],
                     features2: Float[ArrayLike, "n f"]) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets (the FID's formula).

    Means and covariances (``ddof = 1``) are estimated in float64 and passed to
    :func:`gaussian_frechet_distance`. With pixels as features it is a "Fréchet pixel
    distance"; with a classifier's penultimate features
    (:func:`jaxgap.metrics.train_feature_classifier`) it plays the role of the FID. The
    estimate is biased upwards at finite sizes (about ``tr(Sigma) (1/m + 1/n)`` for equal
    distributions), so compare values at equal ``m``, ``n`` only.

    Args:
      features1: ``[m, f]`` features of one set, ``m >= 2``.
      features2: ``[n, f]`` features of the other, ``n >= 2``.

    Returns:
      The distance as a Python float.

    Raises:
      ValueError: naming the argument, for fewer than 2 points, mismatched ``f`` or
        non-finite values.

    Example:
      >>> x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
      >>> round(frechet_distance(x, x + 3.0), 6)  # equal covariances: |mu1 - mu2|^2
      18.0
    """
    x1 = _host64(features1, "features1", ndim=2)
    x2 = _host64(features2, "features2", ndim=2)
    if x2.shape[1] != x1.shape[1]:
        raise ValueError(f"features2: expected last dimension f = {x1.shape[1]} (as "
                         f"features1), got shape {shape_str(x2.shape)}")
    for name, x in (("features1", x1), ("features2", x2)):
        if x.shape[0] < 2:
            raise ValueError(f"{name}: expected at least 2 points (a covariance), got shape "
                             f"{shape_str(x.shape)}")
    return _frechet(*_moments(x1), *_moments(x2))


# ------------------------------------------------------------------------------------------
# Public entry
# ------------------------------------------------------------------------------------------

def _apply_features(features, x, name: str, num: int):
    out = features(x)
    shape = np.shape(out)
    if len(shape) != 2 or shape[0] != num:
        raise ValueError(f"features: expected features({name}) of shape [{num}, f], got "
                         f"{shape_str(shape)}")
    float_array(out, f"features({name})", ndim=2)  # numeric and finite
    return out


def sample_quality(samples: Float[ArrayLike, "m d"], reference: Float[ArrayLike, "n d"], *,
                   k: int = 5, features: Callable | None = None, block: int = 512,
                   chunk_size: int = 4096) -> SampleQuality:
    r"""Precision, recall, density, coverage and Fréchet distance of samples against
    reference data (held-out real data), in pixel space or a feature space.

    With ``r_k(x; S)`` the distance from ``x`` to its ``k``-th nearest neighbour in the set
    ``S`` (``x`` itself excluded) and ``B(x, r)`` the closed ball, the manifold of ``S`` is
    ``manif(S) = U_{x in S} B(x, r_k(x; S))``. For samples ``Y`` (``M`` points) and reference
    points ``X`` (``N``):

    .. math::
        \mathrm{precision} = \frac1M \sum_j [\,y_j \in \mathrm{manif}(X)\,], \qquad
        \mathrm{recall} = \frac1N \sum_i [\,x_i \in \mathrm{manif}(Y)\,],

        \mathrm{density} = \frac{1}{kM} \sum_j \sum_i [\,y_j \in B(x_i, r_k(x_i; X))\,],
        \qquad
        \mathrm{coverage} = \frac1N \sum_i [\,\exists j: y_j \in B(x_i, r_k(x_i; X))\,],

    and the Fréchet distance of :func:`frechet_distance`. Radii come from the exact
    nearest-neighbour search (:func:`jaxgap.metrics.nearest_neighbors`); ball membership
    from a blocked matmul of squared distances (rounding ``~eps |x|^2``: a point within that
    of a ball's boundary may go either way; duplicates among a set's points count as
    neighbours at distance 0). For identical sets precision = recall = coverage = 1.

    Args:
      samples: ``[M, d]`` generated samples, ``M > k``.
      reference: ``[N, d]`` reference points (held-out real data), ``N > k``.
      k: neighbour rank of the ball radii (Kynkäänniemi et al. and Naeem et al. use 3-5).
      features: an optional map ``[n, d] -> [n, f]`` applied to both sets first (e.g.
        :meth:`FeatureClassifier.features`); ``None`` measures in pixel space.
      block: samples (or reference points) per block of the pairwise distances.
      chunk_size: points per chunk of the pairwise distances and the neighbour search;
        memory is ``O(block * chunk_size)`` beyond the data.

    Returns:
      :class:`SampleQuality`.

    Raises:
      ValueError: naming the argument, for wrong ranks, mismatched ``d``, non-finite values,
        ``M <= k`` or ``N <= k``, or a ``features`` map returning the wrong shape.

    Example:
      >>> import jax
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (200, 2))
      >>> q = sample_quality(x, x, k=3)  # identical sets
      >>> q.precision, q.recall, q.coverage, round(q.frechet, 6)
      (1.0, 1.0, 1.0, 0.0)
      >>> far = sample_quality(x + 100.0, x, k=3)
      >>> far.precision, far.recall, far.density, far.coverage
      (0.0, 0.0, 0.0, 0.0)

    References:
      Kynkäänniemi, Karras, Laine, Lehtinen, Aila, "Improved Precision and Recall Metric
      for Assessing Generative Models" (NeurIPS 2019); Naeem, Oh, Uh, Choi, Yoo, "Reliable
      Fidelity and Diversity Metrics for Generative Models" (ICML 2020), density and
      coverage; Heusel et al. (NeurIPS 2017), the Fréchet distance.
    """
    k = positive_int(k, "k")
    block = positive_int(block, "block")
    chunk_size = positive_int(chunk_size, "chunk_size")
    if features is not None and not callable(features):
        raise ValueError(f"features: expected a callable [n, d] -> [n, f] or None, got "
                         f"{type(features).__name__}")
    samples_in, reference_in = samples, reference
    samples, reference = _check_pair(samples, reference, "samples", "reference")
    for name, x in (("samples", samples), ("reference", reference)):
        if x.shape[0] <= k:
            raise ValueError(f"{name}: expected more than k = {k} points (k-th nearest "
                             f"neighbours within the set), got shape {shape_str(x.shape)}")
    if features is None:
        host = samples_in, reference_in  # checked above; Fréchet moments from the input dtype
    else:
        host = (_apply_features(features, samples, "samples", samples.shape[0]),
                _apply_features(features, reference, "reference", reference.shape[0]))
        samples, reference = _check_pair(*host, "features(samples)", "features(reference)")
    precision, recall, density, coverage = _knn_metrics(
        samples, reference, k=k, block=block, chunk=chunk_size)
    frechet = _frechet(*_moments(np.asarray(host[0], np.float64)),
                       *_moments(np.asarray(host[1], np.float64)))
    return SampleQuality(precision, recall, density, coverage, frechet,
                         int(samples.shape[0]), int(reference.shape[0]), k)
