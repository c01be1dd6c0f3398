"""Sample with a denoiser and measure what it copies and how good its samples are: the
functions behind ``jaxgap sample``, the study's sampling stage and the sweeps' samples."""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap import _streams, sampling
from jaxgap.metrics._copying import THRESHOLD, Memorization, measure_memorization
from jaxgap.metrics._features import FeatureClassifier, train_feature_classifier
from jaxgap.metrics._quality import sample_quality

__all__ = ["BASELINE", "QUALITY_K", "SamplerRun", "measure_quality", "quality_classifier",
           "sample_and_measure"]

QUALITY_K = 5
"""Neighbour rank of the quality metrics' balls (Kynkäänniemi et al. and Naeem et al. use
3-5)."""
BASELINE = "real train (baseline)"
"""The name of the reference row of :func:`measure_quality`: real training points."""


class SamplerRun(NamedTuple):
    """Samples of one denoiser, their trajectories and their copying measurements.

    Attributes:
      trajectory: the :class:`~jaxgap.sampling.Trajectory` (``x [S + 1, M, d]``, ...).
      samples: ``[M, d]`` the final states ``trajectory.x[-1]``.
      memorization: :class:`~jaxgap.metrics.Memorization` of the samples.
      seconds: ``{"sample": ..., "memorization": ...}`` wall times (compile included).
    """

    trajectory: sampling.Trajectory
    samples: jax.Array
    memorization: Memorization
    seconds: dict


def sample_and_measure(key: jax.Array, denoiser, train: Float[ArrayLike, "n d"],
                       val: Float[ArrayLike, "v d"], *, num: int, num_steps: int,
                       method: str = "heun", s_churn: float = 0.0, cond=None,
                       num_bootstrap: int = 1000, threshold: float = THRESHOLD,
                       name: str = "denoiser") -> SamplerRun:
    """Draw ``num`` samples with their trajectories and measure their copying.

    :func:`jaxgap.sampling.sample` from ``key`` (EDM schedule, ``num_steps`` steps), then
    :func:`jaxgap.metrics.measure_memorization` with the bootstrap key of the key's
    ``MEMORIZATION`` stream. Samplers given one key start from the same noise.

    Args:
      key: the sampling key.
      denoiser: any ``D(x, sigma)`` (or ``D(x, sigma, cond)`` with ``cond``).
      train: ``[N, d]`` training points, ``N >= 2`` (copy ratios, distances).
      val: ``[V, d]`` validation points (distances).
      num: number of samples.
      num_steps: sampler steps.
      method: ``"heun"``, ``"euler"`` or ``"edm"`` (:data:`jaxgap.sampling.METHODS`).
      s_churn: churn of ``method="edm"``.
      cond: condition ids passed to the sampler, or None.
      num_bootstrap: bootstrap resamples of the memorized fraction.
      threshold: copy-ratio threshold (the 1/3 rule).
      name: the denoiser's name in the error raised when sampling diverges.

    Returns:
      :class:`SamplerRun`.

    Raises:
      ValueError: ``"{name}: sampling diverged: ..."`` when a sample holds NaN or inf.

    Example:
      >>> import jax.numpy as jnp
      >>> train = jnp.array([[2.0, 2.0], [4.0, 0.0], [0.0, 4.0]])
      >>> run = sample_and_measure(jax.random.PRNGKey(0), lambda x, s: 0.0 * x, train,
      ...                          train, num=4, num_steps=4, num_bootstrap=10)
      >>> run.samples.shape, run.memorization.summary()["memorized_fraction"]
      ((4, 2), 0.0)
    """
    t0 = time.perf_counter()
    traj = sampling.sample(key, denoiser, num, np.shape(train)[-1], num_steps=num_steps,
                           method=method, s_churn=s_churn, cond=cond, return_trajectory=True)
    traj = jax.block_until_ready(traj)
    samples = traj.x[-1]
    bad = int(np.sum(~np.all(np.isfinite(np.asarray(samples)), axis=1)))
    if bad:
        raise ValueError(f"{name}: sampling diverged: {bad} of {num} samples hold non-finite "
                         "values")
    t1 = time.perf_counter()
    mem = measure_memorization(_streams.stream(key, _streams.MEMORIZATION), samples, train,
                               val, threshold=threshold, num_bootstrap=num_bootstrap)
    seconds = {"sample": t1 - t0, "memorization": time.perf_counter() - t1}
    return SamplerRun(traj, samples, mem, seconds)


def measure_quality(key: jax.Array, sets: dict, dataset, *, k: int = QUALITY_K,
                    classifier: FeatureClassifier | None = None,
                    features: bool = True) -> dict | None:
    """Sample quality of each set of samples against the held-out validation split, with real
    training points as the baseline.

    Each set, and a random subset of ``dataset.train`` of the largest set's size (the
    baseline: real data that is not the reference), is scored with
    :func:`jaxgap.metrics.sample_quality` against ``dataset.val``: k-NN precision, recall,
    density, coverage and the Fréchet distance, in pixels and, when the dataset has labels,
    in the features of a classifier trained on its training split
    (:func:`jaxgap.metrics.train_feature_classifier`). The key's ``QUALITY`` stream draws
    the subset and the classifier. Scores depend on the set sizes (compare rows of one
    table, not across sizes).

    Args:
      key: the sampling key.
      sets: ``{name: [M, d] samples}``.
      dataset: a :class:`jaxgap.data.Dataset` (``train``, ``val``, optional labels).
      k: neighbour rank of the balls.
      classifier: the feature classifier, when the caller already trained it with
        :func:`quality_classifier` (many sets of one dataset); None trains it here.
      features: also measure in the classifier's features (False: pixels only).

    Returns:
      ``{"reference": "val", "num_reference", "k", "classifier_accuracy" (None without
      labels), "sets": {name: {"num", "pixels": {...}, "features": {...} or None}}}`` with
      the baseline first under :data:`BASELINE`; None when a set or the validation split
      holds ``<= k`` points (too few for k-NN balls).
    """
    sizes = [int(np.shape(x)[0]) for x in sets.values()]
    num = max(sizes)
    if min(sizes + [dataset.num_val]) <= k or dataset.num_train <= k:
        return None
    k_sub, _ = jax.random.split(_streams.stream(key, _streams.QUALITY))
    pick = np.sort(np.asarray(jax.random.permutation(k_sub, dataset.num_train))[:num])
    rows = {BASELINE: np.asarray(dataset.train)[pick], **sets}
    clf = classifier
    if clf is None and features:
        clf = quality_classifier(key, dataset)
    out = {"reference": "val", "num_reference": dataset.num_val, "k": k,
           "classifier_accuracy": None if clf is None else float(clf.accuracy), "sets": {}}
    for name, x in rows.items():
        out["sets"][name] = {
            "num": int(np.shape(x)[0]),
            "pixels": sample_quality(x, dataset.val, k=k).to_dict(),
            "features": None if clf is None else
            sample_quality(x, dataset.val, k=k, features=clf.features).to_dict(),
        }
    return out


def quality_classifier(key: jax.Array, dataset) -> FeatureClassifier | None:
    """The feature classifier :func:`measure_quality` draws from the sampling key's
    ``QUALITY`` stream (None when the dataset has no labels)."""
    if dataset.train_labels is None or dataset.val_labels is None:
        return None
    _, k_clf = jax.random.split(_streams.stream(key, _streams.QUALITY))
    return train_feature_classifier(k_clf, dataset)
