"""Copying: the copy ratio, the memorized fraction by the 1/3 rule, distances to train and
val, and the combined measurement of a set of samples (:func:`measure_memorization`)."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from jaxgap._checks import float_array, positive_int, prng_key, shape_str
from jaxgap._jit import jit
from jaxgap.metrics._neighbors import (
    Neighbors,
    _check_pair,
    _common_dtype,
    _floats,
    _neighbors_in,
    nearest_neighbors,
)

__all__ = ["Memorization", "MemorizedFraction", "SetDistances", "copy_ratio",
           "distance_to_sets", "measure_memorization", "memorized_fraction"]

THRESHOLD = 1.0 / 3.0  # the 1/3 rule of the copy ratio
_MAX_ELEMENTS = 1 << 22  # bootstrap indices drawn per batch


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
    return _ratio(_neighbors_in(samples, train, 2, chunk_size, "train"))


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


@jit
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
                       threshold: float = THRESHOLD, key: jax.Array | None = None,
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
      >>> train = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> samples = jnp.array([[0.01, 0.0], [0.5, 0.5], [0.99, 1.0], [0.5, 0.1]])
      >>> out = memorized_fraction(samples, train)
      >>> float(out.fraction), round(float(out.se), 3)
      (0.5, 0.25)

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
    dt = _neighbors_in(samples, train, 1, chunk_size, "train").dist[:, 0]
    dv = _neighbors_in(samples, val, 1, chunk_size, "val").dist[:, 0]
    return SetDistances(dt, dv, jnp.mean(dt), jnp.mean(dv),
                        jnp.mean((dt < dv).astype(dtype)))


class Memorization(NamedTuple):
    """Copying measurements of a set of samples (:func:`measure_memorization`).

    Attributes:
      memorized: :class:`MemorizedFraction` (fraction, bootstrap se).
      copy_ratio: ``[M]`` ``|x - NN_1| / |x - NN_2|`` over the training set.
      nearest: ``[M]`` index of each sample's nearest training point.
      to_train: ``[M]`` distance to the nearest training point.
      to_val: ``[M]`` distance to the nearest validation point.
      threshold: the copy-ratio threshold (1/3).
      num_bootstrap: bootstrap resamples behind ``memorized.se``.
    """

    memorized: MemorizedFraction
    copy_ratio: np.ndarray
    nearest: np.ndarray
    to_train: np.ndarray
    to_val: np.ndarray
    threshold: float
    num_bootstrap: int

    def summary(self) -> dict:
        """Plain floats, ready for ``json.dump``."""
        return {
            "threshold": self.threshold,
            "memorized_fraction": float(self.memorized.fraction),
            "memorized_fraction_se": float(self.memorized.se),
            "num_bootstrap": self.num_bootstrap,
            "copy_ratio_mean": float(np.mean(self.copy_ratio)),
            "copy_ratio_median": float(np.median(self.copy_ratio)),
            "mean_distance_to_train": float(np.mean(self.to_train)),
            "mean_distance_to_val": float(np.mean(self.to_val)),
            "closer_to_train": float(np.mean(self.to_train < self.to_val)),
        }


def measure_memorization(key: jax.Array, samples: Float[ArrayLike, "m d"],
                         train: Float[ArrayLike, "n d"], val: Float[ArrayLike, "v d"], *,
                         threshold: float = THRESHOLD,
                         num_bootstrap: int = 1000) -> Memorization:
    """Memorized fraction (1/3 rule, bootstrap se), copy ratios and nearest distances.

    One call gives what a report of a sampler needs: :func:`memorized_fraction` with the
    bootstrap of ``key``, every sample's :func:`copy_ratio`, its nearest training point and
    its nearest distances to ``train`` and ``val`` (as :func:`distance_to_sets`).

    Args:
      key: PRNG key of the bootstrap.
      samples: ``[M, d]`` generated samples.
      train: ``[N, d]`` training points, ``N >= 2``.
      val: ``[V, d]`` validation points.
      threshold: copy-ratio threshold.
      num_bootstrap: bootstrap resamples.

    Returns:
      :class:`Memorization`.

    Example:
      >>> train = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> val = jnp.array([[0.5, 0.5]])
      >>> m = measure_memorization(jax.random.PRNGKey(0), train[:2] + 0.01, train, val,
      ...                          num_bootstrap=10)
      >>> m.summary()["memorized_fraction"], m.nearest.tolist()
      (1.0, [0, 1])
    """
    train = jnp.asarray(train)
    mem = memorized_fraction(samples, train, threshold=threshold, key=key,
                             num_bootstrap=num_bootstrap)
    ratio = np.asarray(copy_ratio(samples, train), np.float64)
    # The program of copy_ratio's two nearest neighbours is re-used (one compile less than
    # distance_to_sets, same distances).
    nb_train = nearest_neighbors(samples, train, k=2)
    nearest = np.asarray(nb_train.index[:, 0])
    to_train = np.asarray(nb_train.dist[:, 0], np.float64)
    to_val = np.asarray(nearest_neighbors(samples, val, k=1).dist[:, 0], np.float64)
    return Memorization(mem, ratio, nearest, to_train, to_val, float(threshold),
                        int(num_bootstrap))
