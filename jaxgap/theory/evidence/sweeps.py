r"""Sweeps of the position-error toy model: over ``delta`` and over the training-set size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap._checks import positive_float, positive_int, prng_key
from jaxgap.losses import GapCurve, gap_curve
from jaxgap.metrics import memorized_fraction
from jaxgap.sampling import sample
from jaxgap.theory.error_models import PositionError
from jaxgap.theory.evidence._args import amplitudes, curve_np, sigma_grid, train_val

__all__ = ["DeltaSweep", "TrainSizeSweep", "delta_sweep", "gap_vs_train_size"]


def _peak(curve: GapCurve) -> tuple[float, float]:
    """The parabola peak in ``log sigma`` (:func:`jaxgap.losses.curve_peak`)."""
    return curve.peak(refine=True)


class DeltaSweep(NamedTuple):
    r"""Gap curves and sampling memorization of ``PositionError(train, delta)`` per ``delta``.

    Attributes:
      deltas: ``[E]`` the amplitudes, as given.
      curves: ``E`` :class:`~jaxgap.losses.GapCurve` (float64 NumPy fields, ``[K]`` each).
      peak_sigma: ``[E]`` where the gap peaks (:func:`jaxgap.losses.curve_peak` with
        ``refine=True``: interpolated in ``log sigma`` around the grid maximum).
      peak_gap: ``[E]`` the largest gap on the grid.
      memorized: ``[E]`` fraction of samples within the 1/3 rule of a training point
        (:func:`jaxgap.metrics.memorized_fraction`).
      memorized_se: ``[E]`` its bootstrap standard error.
      num_samples: samples drawn per ``delta``.
    """

    deltas: np.ndarray
    curves: tuple
    peak_sigma: np.ndarray
    peak_gap: np.ndarray
    memorized: np.ndarray
    memorized_se: np.ndarray
    num_samples: int

    def to_dict(self) -> dict:
        """Plain floats and lists, ready for ``json.dump``."""
        out = {k: np.asarray(getattr(self, k), np.float64).tolist()
               for k in ("deltas", "peak_sigma", "peak_gap", "memorized", "memorized_se")}
        out["curves"] = [c.to_dict() for c in self.curves]
        out["num_samples"] = int(self.num_samples)
        return out


def delta_sweep(key, train: Float[ArrayLike, "n d"], val: Float[ArrayLike, "m d"],
                deltas: Float[ArrayLike, " e"], sigmas: Float[ArrayLike, " k"], *,
                num_samples: int = 256, num_steps: int = 18, num_noise: int = 1,
                batch_size: int | None = None, num_bootstrap: int = 200,
                sigma_max: float = 80.0) -> DeltaSweep:
    r"""Sweep the position-error amplitude: gap curve, its peak and sample memorization.

    For each ``delta``: the gap curve of ``PositionError(train, delta)`` on ``sigmas``
    (:func:`jaxgap.losses.gap_curve`; one key for every ``delta``), its peak
    (:func:`jaxgap.losses.curve_peak`, ``refine=True``), and the fraction of
    ``num_samples`` samples drawn with the model (:func:`jaxgap.sampling.sample`, EDM's Heun
    sampler; the same initial noise for every ``delta``) that the 1/3 rule calls copies of
    a training point, with a bootstrap standard error
    (:func:`jaxgap.metrics.memorized_fraction`).

    Args:
      key: PRNG key, split into the gap, sampling and bootstrap keys.
      train: ``[N, d]`` training points (``N >= 2``).
      val: ``[M, d]`` held-out points.
      deltas: ``[E]`` amplitudes ``>= 0`` (distinct).
      sigmas: ``[K]`` noise levels ``> 0``.
      num_samples: samples per ``delta`` (0: skip sampling; ``memorized`` is then NaN).
      num_steps: sampler noise levels (EDM: 18).
      num_noise: noise draws per example and sigma of the gap curves.
      batch_size: as in :func:`jaxgap.losses.gap_curve`.
      num_bootstrap: bootstrap resamples of the memorized fraction.
      sigma_max: the sampler's initial noise level.

    Returns:
      :class:`DeltaSweep`.

    Example:
      >>> import jax, numpy as np
      >>> from jaxgap.theory import delta_sweep
      >>> train, val = np.split(np.random.default_rng(0).normal(size=(32, 2)), 2)
      >>> sweep = delta_sweep(jax.random.key(0), train, val, [0.0, 1.0],
      ...                     np.geomspace(0.05, 5.0, 6), num_samples=0)
      >>> print(sweep.peak_gap[0] > sweep.peak_gap[1])  # position error closes the gap
      True
    """
    key = prng_key(key)
    train, val = train_val(train, val)
    if train.shape[0] < 2:
        raise ValueError(f"train: expected at least 2 points, got {train.shape[0]}")
    deltas = amplitudes(deltas)
    sig = jnp.asarray(sigma_grid(sigmas), train.dtype)
    num_samples = positive_int(num_samples, "num_samples", minimum=0)
    num_steps = positive_int(num_steps, "num_steps", minimum=2)
    sigma_max = positive_float(sigma_max, "sigma_max")
    k_gap, k_sample, k_boot = jax.random.split(key, 3)
    curves, peaks, heights, mem, mem_se = [], [], [], [], []
    for delta in deltas:
        model = PositionError(train, float(delta))
        curve = curve_np(gap_curve(k_gap, model, train, val, sig, num_noise=num_noise,
                                   batch_size=batch_size))
        curves.append(curve)
        s, g = _peak(curve)
        peaks.append(s)
        heights.append(g)
        if num_samples:
            x = sample(k_sample, model, num_samples, model.dim, num_steps=num_steps,
                       sigma_max=sigma_max)
            frac = memorized_fraction(x, train, key=k_boot, num_bootstrap=num_bootstrap)
            mem.append(float(frac.fraction))
            mem_se.append(float(frac.se))
        else:
            mem.append(math.nan)
            mem_se.append(math.nan)
    return DeltaSweep(deltas, tuple(curves), np.array(peaks), np.array(heights), np.array(mem),
                      np.array(mem_se), num_samples)


class TrainSizeSweep(NamedTuple):
    r"""Gap curves of ``PositionError(train[:n], delta)`` for nested training subsets.

    Attributes:
      sizes: ``[S]`` training-set sizes, ascending.
      delta: the fixed amplitude.
      curves: ``S`` :class:`~jaxgap.losses.GapCurve` (float64 NumPy fields).
      peak_sigma: ``[S]`` where the gap peaks (:func:`jaxgap.losses.curve_peak`,
        ``refine=True``).
      peak_gap: ``[S]`` the largest gap on the grid.
    """

    sizes: np.ndarray
    delta: float
    curves: tuple
    peak_sigma: np.ndarray
    peak_gap: np.ndarray

    def to_dict(self) -> dict:
        """Plain floats and lists, ready for ``json.dump``."""
        return {"sizes": np.asarray(self.sizes).tolist(), "delta": float(self.delta),
                "curves": [c.to_dict() for c in self.curves],
                "peak_sigma": np.asarray(self.peak_sigma, np.float64).tolist(),
                "peak_gap": np.asarray(self.peak_gap, np.float64).tolist()}


def _sizes(sizes, n_max: int) -> list[int]:
    if isinstance(sizes, (int, np.integer)):
        sizes = [sizes]
    try:
        sizes = [positive_int(s, "sizes") for s in sizes]
    except TypeError as err:
        raise ValueError(f"sizes: expected a sequence of integers, got {sizes!r}") from err
    if not sizes or max(sizes) > n_max or len(set(sizes)) != len(sizes):
        raise ValueError(f"sizes: expected distinct integers in [1, {n_max}] (the training "
                         f"points), got {sizes}")
    return sorted(sizes)


def gap_vs_train_size(key, ds_or_train_val, sizes, delta: float,
                      sigmas: Float[ArrayLike, " k"], *, num_noise: int = 1,
                      batch_size: int | None = None) -> TrainSizeSweep:
    r"""The gap at fixed ``delta`` as the density of the data support grows.

    For each ``n`` in ``sizes`` the model is ``PositionError(train[:n], delta)`` (nested
    subsets: the first ``n`` points, as :meth:`jaxgap.data.Dataset.with_train_size`), its
    gap is measured on ``train[:n]`` against the whole validation set with one key for
    every ``n``.

    Args:
      key: PRNG key.
      ds_or_train_val: a :class:`jaxgap.data.Dataset` or a pair ``(train [N, d], val [M, d])``.
      sizes: training-set sizes, integers in ``[1, N]``, distinct.
      delta: the amplitude ``>= 0``.
      sigmas: ``[K]`` noise levels ``> 0``.
      num_noise, batch_size: as in :func:`jaxgap.losses.gap_curve`.

    Returns:
      :class:`TrainSizeSweep` (sizes ascending).

    Example:
      >>> import jax, numpy as np
      >>> from jaxgap.theory import gap_vs_train_size
      >>> points = np.random.default_rng(0).normal(size=(32, 2))
      >>> out = gap_vs_train_size(jax.random.key(0), (points[:16], points[16:]), [16, 4], 0.1,
      ...                         np.geomspace(0.05, 5.0, 6))
      >>> out.sizes.tolist()  # ascending
      [4, 16]
    """
    key = prng_key(key)
    if hasattr(ds_or_train_val, "train") and hasattr(ds_or_train_val, "val"):
        train, val = ds_or_train_val.train, ds_or_train_val.val
    elif isinstance(ds_or_train_val, Sequence) and len(ds_or_train_val) == 2:
        train, val = ds_or_train_val
    else:
        raise ValueError(f"ds_or_train_val: expected a Dataset or a pair (train, val), got "
                         f"{type(ds_or_train_val).__name__}")
    train, val = train_val(train, val)
    sizes = _sizes(sizes, train.shape[0])
    delta = float(amplitudes([delta], "delta")[0])
    sig = jnp.asarray(sigma_grid(sigmas), train.dtype)
    curves = []
    for n in sizes:
        sub = train[:n]
        curves.append(curve_np(gap_curve(key, PositionError(sub, delta), sub, val, sig,
                                         num_noise=num_noise, batch_size=batch_size)))
    peaks = [_peak(c) for c in curves]
    return TrainSizeSweep(np.array(sizes), delta, tuple(curves),
                          np.array([p[0] for p in peaks]), np.array([p[1] for p in peaks]))
