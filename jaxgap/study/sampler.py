"""Sample with a denoiser and measure what it copies: the one function behind ``jaxgap
sample`` and the study's sampling stage."""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap import _streams, sampling
from jaxgap.metrics import THRESHOLD, Memorization, measure_memorization

__all__ = ["SamplerRun", "sample_and_measure"]


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
