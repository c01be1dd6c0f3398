r"""Fit the position-error amplitude ``delta`` to a target gap curve (:func:`fit_delta`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap._checks import float_array, positive_int, prng_key
from jaxgap._search import golden_section
from jaxgap.losses import GapCurve, gap_curve
from jaxgap.theory.error_models import PositionError
from jaxgap.theory.evidence._args import amplitudes, curve_np, sigma_grid, train_val

__all__ = ["DeltaFit", "default_fit_deltas", "fit_delta"]


def _target_arrays(target) -> tuple[np.ndarray, np.ndarray]:
    """``(sigmas, gap)`` of a GapCurve-like target, as float64 ``[K]`` arrays."""
    if isinstance(target, Mapping):
        get = target.get
    else:
        def get(k):
            return getattr(target, k, None)
    sig, gap = get("sigmas"), get("gap")
    if sig is None or gap is None:
        raise ValueError(f"target: expected a GapCurve (or an object/mapping with 'sigmas' "
                         f"and 'gap'), got {type(target).__name__}")
    sig = sigma_grid(sig, "target.sigmas")
    gap = np.asarray(float_array(gap, "target.gap", ndim=1), np.float64)
    if gap.shape != sig.shape:
        raise ValueError(f"target.gap: expected shape [{sig.shape[0]}] like target.sigmas, "
                         f"got [{gap.shape[0]}]")
    if sig.shape[0] >= 2 and not (np.all(np.diff(sig) > 0) or np.all(np.diff(sig) < 0)):
        raise ValueError("target.sigmas: expected strictly monotonic values")
    return sig, gap


def _log_weights(sigmas: np.ndarray) -> np.ndarray:
    """Trapezoid weights in ``log sigma`` (sum 1): a log grid is weighted evenly."""
    k = sigmas.shape[0]
    if k == 1:
        return np.ones(1)
    step = np.abs(np.diff(np.log(sigmas)))
    w = np.zeros(k)
    w[:-1] += step / 2
    w[1:] += step / 2
    return w / w.sum()


class DeltaFit(NamedTuple):
    r"""Least-squares fit of the position-error amplitude ``delta`` to a target gap curve.

    Attributes:
      delta: the best ``delta`` found (float).
      sse: its objective, the ``log sigma``-weighted mean squared gap difference (float).
      curve: the :class:`~jaxgap.losses.GapCurve` of ``PositionError(train, delta)`` on the
        target's sigmas (float64 NumPy fields).
      deltas: ``[E]`` every ``delta`` evaluated (grid and refinement), ascending.
      sse_values: ``[E]`` the objective at each of ``deltas``.
    """

    delta: float
    sse: float
    curve: GapCurve
    deltas: np.ndarray
    sse_values: np.ndarray

    def to_dict(self) -> dict:
        """Plain floats and lists, ready for ``json.dump``."""
        return {"delta": float(self.delta), "sse": float(self.sse),
                "curve": self.curve.to_dict(),
                "deltas": np.asarray(self.deltas, np.float64).tolist(),
                "sse_values": np.asarray(self.sse_values, np.float64).tolist()}


def default_fit_deltas() -> np.ndarray:
    """The coarse grid of :func:`fit_delta`: ``0`` and 12 geometric values ``0.01 .. 3``."""
    return np.concatenate([[0.0], np.geomspace(0.01, 3.0, 12)])


def fit_delta(key, train: Float[ArrayLike, "n d"], val: Float[ArrayLike, "m d"], target, *,
              deltas: Float[ArrayLike, " g"] | None = None, num_noise: int = 1,
              batch_size: int | None = None, num_refine: int = 6) -> DeltaFit:
    r"""Fit the position-error amplitude ``delta`` to a target gap curve.

    Minimizes, over ``delta``, the ``log sigma``-weighted mean squared difference

    .. math:: S(\delta) = \sum_k w_k\,\big(g_\delta(\sigma_k) - g_\mathrm{target}(\sigma_k)
        \big)^2, \qquad w_k \propto \tfrac12(|\log\sigma_{k+1} - \log\sigma_k|
        + |\log\sigma_k - \log\sigma_{k-1}|),\ \sum_k w_k = 1,

    where ``g_delta`` is the gap curve of ``PositionError(train, delta)`` on the target's
    sigmas (:func:`jaxgap.losses.gap_curve`, the same ``key`` for every ``delta``: common
    random numbers make ``S`` smooth in ``delta``). ``S`` is evaluated on a coarse grid, then
    refined by ``num_refine`` golden-section steps in ``log delta`` between the neighbours of
    the best grid point (in ``delta`` itself when the lower neighbour is 0).

    Args:
      key: PRNG key of the gap curves.
      train: ``[N, d]`` training points (the same split the target was measured on).
      val: ``[M, d]`` held-out points.
      target: a :class:`~jaxgap.losses.GapCurve`, or any object or mapping with ``sigmas
        [K]`` (> 0, strictly monotonic) and ``gap [K]`` (e.g. a trained network's EMA gap).
      deltas: ``[G]`` coarse grid (values >= 0, distinct); default :func:`default_fit_deltas`.
      num_noise: noise draws per example and sigma.
      batch_size: as in :func:`jaxgap.losses.gap_curve`.
      num_refine: golden-section evaluations after the grid (0: grid only, else >= 2).
        When the best grid point is the grid's last, the search stays between it and its
        lower neighbour: widen ``deltas`` if the fit lands on the edge.

    Returns:
      :class:`DeltaFit`.

    Example:
      >>> import jax, numpy as np
      >>> from jaxgap.losses import gap_curve
      >>> from jaxgap.theory import PositionError, fit_delta
      >>> rng = np.random.default_rng(0)
      >>> train, val = rng.normal(size=(16, 2)), rng.normal(size=(16, 2))
      >>> sigmas, key = np.geomspace(0.05, 5.0, 6), jax.random.PRNGKey(0)
      >>> target = gap_curve(key, PositionError(train, 0.3), train, val, sigmas)
      >>> fit = fit_delta(key, train, val, target, deltas=[0.1, 0.3, 1.0], num_refine=0)
      >>> fit.delta, float(fit.sse)
      (0.3, 0.0)
    """
    key = prng_key(key)
    train, val = train_val(train, val)
    sigmas, target_gap = _target_arrays(target)
    grid = default_fit_deltas() if deltas is None else amplitudes(deltas)
    num_noise = positive_int(num_noise, "num_noise")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    num_refine = positive_int(num_refine, "num_refine", minimum=0)
    if num_refine == 1:
        raise ValueError("num_refine: expected 0 (grid only) or an integer >= 2 (golden "
                         "section starts from two interior points), got 1")
    weights = _log_weights(sigmas)
    sig = jnp.asarray(sigmas, train.dtype)
    cache: dict[float, tuple[float, GapCurve]] = {}

    def objective(delta: float) -> float:
        delta = float(delta)
        if delta not in cache:
            model = PositionError(train, delta)
            curve = curve_np(gap_curve(key, model, train, val, sig, num_noise=num_noise,
                                       batch_size=batch_size))
            sse = float(np.sum(weights * (curve.gap - target_gap) ** 2))
            cache[delta] = (sse, curve)
        return cache[delta][0]

    grid = np.sort(grid)
    values = np.array([objective(d) for d in grid])
    best = int(np.argmin(values))
    if num_refine and grid.shape[0] >= 2:
        lo = grid[max(best - 1, 0)]
        hi = grid[min(best + 1, grid.shape[0] - 1)]
        if lo > 0:  # golden section in log delta
            golden_section(lambda u: objective(np.exp(u)), np.log(lo), np.log(hi),
                           max_evals=num_refine)
        else:
            golden_section(objective, lo, hi, max_evals=num_refine)
    evaluated = np.array(sorted(cache))
    sse_values = np.array([cache[d][0] for d in evaluated])
    i = int(np.argmin(sse_values))
    return DeltaFit(float(evaluated[i]), float(sse_values[i]), cache[float(evaluated[i])][1],
                    evaluated, sse_values)
