r"""Evidence from the position-error toy model: sweeps, fits and validity checks.

The toy model is :class:`~jaxgap.theory.PositionError`: the optimal denoiser of the
training set convolved with ``N(0, delta^2 I)``. This module turns it into measurements:

- :func:`fit_delta`: the ``delta`` whose gap curve best matches a target gap curve (e.g. a
  trained network's), by least squares in ``log sigma``.
- :func:`delta_sweep`: gap curves, their peaks and the memorized fraction of samples drawn
  with the toy model, per ``delta``.
- :func:`gap_vs_train_size`: the gap at fixed ``delta`` for nested training subsets.
- :func:`first_order_check`: the first- and second-order expansions of the toy model's loss
  in ``delta^2`` against its exact loss, per sigma.
- :func:`flow_fields`: probability-flow velocities of ``D*`` and of the toy model on a 2-D
  grid (for stream plots).
- :func:`curve_peak`: the peak of a sampled gap curve, interpolated in ``log sigma``.

Figures of these results: :mod:`jaxgap.report.theory_plots`.

All losses use :func:`jaxgap.losses.gap_curve` / :func:`jaxgap.losses.denoising_loss` with one
key for every model compared (common random numbers), so differences between models are not
buried in Monte Carlo noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap._checks import float_array, positive_float, positive_int, prng_key
from jaxgap.denoisers import EmpiricalDenoiser, velocity
from jaxgap.losses import GapCurve, denoising_loss, gap_curve
from jaxgap.metrics import memorized_fraction
from jaxgap.sampling import sample
from jaxgap.theory.error_models import PositionError, loss_expansion, position_error_field

__all__ = [
    "DeltaFit",
    "DeltaSweep",
    "FirstOrderCheck",
    "FirstOrderGap",
    "FlowFields",
    "TrainSizeSweep",
    "curve_peak",
    "delta_sweep",
    "default_fit_deltas",
    "first_order_check",
    "first_order_gap",
    "fit_delta",
    "flow_fields",
    "gap_vs_train_size",
]

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


# ---------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------

def _train_val(train, val, val_name: str = "val"):
    train = float_array(train, "train", ndim=2)
    val = float_array(val, val_name, ndim=2)
    if val.shape[1] != train.shape[1]:
        raise ValueError(f"{val_name}: expected last dimension d = {train.shape[1]} (the "
                         f"training points'), got shape [{val.shape[0]}, {val.shape[1]}]")
    return train, val


def _sigma_grid(sigmas, name: str = "sigmas") -> np.ndarray:
    s = np.asarray(float_array(sigmas, name, ndim=1), np.float64)
    if not np.all(s > 0):
        raise ValueError(f"{name}: expected values > 0, got min {float(s.min())!r}")
    return s


def _deltas(deltas, name: str = "deltas") -> np.ndarray:
    float_array(deltas, name, ndim=1)  # rank, emptiness and finiteness
    d = np.asarray(deltas, np.float64)  # exact values (not rounded through float32)
    if not np.all(d >= 0):
        raise ValueError(f"{name}: expected values >= 0, got min {float(d.min())!r}")
    if np.unique(d).shape[0] != d.shape[0]:
        raise ValueError(f"{name}: expected distinct values, got {d.tolist()}")
    return d


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
    sig = _sigma_grid(sig, "target.sigmas")
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


def _curve_np(curve: GapCurve) -> GapCurve:
    return GapCurve(*(np.asarray(getattr(curve, f), np.float64) for f in GapCurve._fields))


# ---------------------------------------------------------------------------------------
# fit_delta
# ---------------------------------------------------------------------------------------

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


def fit_delta(train: Float[ArrayLike, "n d"], val: Float[ArrayLike, "m d"], target, key, *,
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
      train: ``[N, d]`` training points (the same split the target was measured on).
      val: ``[M, d]`` held-out points.
      target: a :class:`~jaxgap.losses.GapCurve`, or any object or mapping with ``sigmas
        [K]`` (> 0, strictly monotonic) and ``gap [K]`` (e.g. a trained network's EMA gap).
      key: PRNG key of the gap curves.
      deltas: ``[G]`` coarse grid (values >= 0, distinct); default :func:`default_fit_deltas`.
      num_noise: noise draws per example and sigma.
      batch_size: as in :func:`jaxgap.losses.gap_curve`.
      num_refine: golden-section evaluations after the grid (0: grid only, else >= 2).
        When the best grid point is the grid's last, the search stays between it and its
        lower neighbour: widen ``deltas`` if the fit lands on the edge.

    Returns:
      :class:`DeltaFit`.

    Example:
      >>> fit = fit_delta(ds.train, ds.val, net_curve, jax.random.PRNGKey(0))
      >>> fit.delta, fit.curve.peak_sigma
    """
    train, val = _train_val(train, val)
    sigmas, target_gap = _target_arrays(target)
    key = prng_key(key)
    grid = default_fit_deltas() if deltas is None else _deltas(deltas)
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
            curve = _curve_np(gap_curve(model, train, val, sig, key, num_noise=num_noise,
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
        use_log = lo > 0
        fwd = np.log if use_log else (lambda v: v)
        inv = np.exp if use_log else (lambda v: v)
        a, b = fwd(lo), fwd(hi)
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        fc, fd = objective(inv(c)), objective(inv(d))
        for _ in range(num_refine - 2):
            if fc <= fd:
                b, d, fd = d, c, fc
                c = b - _GOLDEN * (b - a)
                fc = objective(inv(c))
            else:
                a, c, fc = c, d, fd
                d = a + _GOLDEN * (b - a)
                fd = objective(inv(d))
    evaluated = np.array(sorted(cache))
    sse_values = np.array([cache[d][0] for d in evaluated])
    i = int(np.argmin(sse_values))
    return DeltaFit(float(evaluated[i]), float(sse_values[i]), cache[float(evaluated[i])][1],
                    evaluated, sse_values)


# ---------------------------------------------------------------------------------------
# delta_sweep
# ---------------------------------------------------------------------------------------

def curve_peak(sigmas: Float[ArrayLike, " k"],
               gap: Float[ArrayLike, " k"]) -> tuple[float, float]:
    r"""Peak of a sampled gap curve: ``(sigma, gap)``, sigma interpolated in ``log sigma``.

    With ``k`` the grid index of the largest gap, the peak sigma is the vertex of the
    parabola through the three points ``(log sigma_j, gap_j)``, ``j = k-1, k, k+1``
    (it lies between the two neighbours). At an end of the grid, or where the three points
    are collinear, the grid sigma is returned. The height returned is the measured grid
    maximum ``gap_k`` (not the parabola's).

    .. math:: g(u) = g_k + b\,(u - u_k) + c\,(u - u_k)^2, \quad u = \log\sigma,
        \qquad \log\sigma^\star = u_k - \frac{b}{2c}.

    Args:
      sigmas: ``[K]`` strictly monotonic noise levels ``> 0``.
      gap: ``[K]`` gap values.

    Returns:
      ``(peak_sigma, peak_gap)`` floats.
    """
    s = _sigma_grid(sigmas)
    g = np.asarray(float_array(gap, "gap", ndim=1), np.float64)
    if g.shape != s.shape:
        raise ValueError(f"gap: expected shape [{s.shape[0]}] like sigmas, got [{g.shape[0]}]")
    if s.shape[0] >= 2 and not (np.all(np.diff(s) > 0) or np.all(np.diff(s) < 0)):
        raise ValueError("sigmas: expected strictly monotonic values")
    k = int(np.argmax(g))
    if k == 0 or k == s.shape[0] - 1:
        return float(s[k]), float(g[k])
    u = np.log(s)
    # Local coordinate x along the index direction: x = -hm at k-1, 0 at k, +hp at k+1.
    hm, hp = abs(u[k] - u[k - 1]), abs(u[k + 1] - u[k])
    dm, dp = g[k - 1] - g[k], g[k + 1] - g[k]  # both <= 0 at the argmax
    c = (dp / hp + dm / hm) / (hp + hm)
    if not c < 0:  # collinear (flat) points: no interior vertex
        return float(s[k]), float(g[k])
    b = (dp / hp - dm / hm - c * (hp - hm)) / 2.0
    x = min(max(-b / (2.0 * c), -hm), hp)
    return float(np.exp(u[k] + np.sign(u[k + 1] - u[k]) * x)), float(g[k])


def _peak(curve: GapCurve) -> tuple[float, float]:
    return curve_peak(curve.sigmas, curve.gap)


class DeltaSweep(NamedTuple):
    r"""Gap curves and sampling memorization of ``PositionError(train, delta)`` per ``delta``.

    Attributes:
      deltas: ``[E]`` the amplitudes, as given.
      curves: ``E`` :class:`~jaxgap.losses.GapCurve` (float64 NumPy fields, ``[K]`` each).
      peak_sigma: ``[E]`` where the gap peaks (:func:`curve_peak`: interpolated in
        ``log sigma`` around the grid maximum).
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


def delta_sweep(train: Float[ArrayLike, "n d"], val: Float[ArrayLike, "m d"],
                deltas: Float[ArrayLike, " e"], sigmas: Float[ArrayLike, " k"], key, *,
                num_samples: int = 256, num_steps: int = 18, num_noise: int = 1,
                batch_size: int | None = None, num_bootstrap: int = 200,
                sigma_max: float = 80.0) -> DeltaSweep:
    r"""Sweep the position-error amplitude: gap curve, its peak and sample memorization.

    For each ``delta``: the gap curve of ``PositionError(train, delta)`` on ``sigmas``
    (:func:`jaxgap.losses.gap_curve`; one key for every ``delta``), its peak
    (:func:`curve_peak`),
    and the fraction of ``num_samples`` samples drawn with the model
    (:func:`jaxgap.sampling.sample`, EDM's Heun sampler; the same initial noise for every
    ``delta``) that the 1/3 rule calls copies of a training point, with a bootstrap standard
    error (:func:`jaxgap.metrics.memorized_fraction`).

    Args:
      train: ``[N, d]`` training points (``N >= 2``).
      val: ``[M, d]`` held-out points.
      deltas: ``[E]`` amplitudes ``>= 0`` (distinct).
      sigmas: ``[K]`` noise levels ``> 0``.
      key: PRNG key, split into the gap, sampling and bootstrap keys.
      num_samples: samples per ``delta`` (0: skip sampling; ``memorized`` is then NaN).
      num_steps: sampler noise levels (EDM: 18).
      num_noise: noise draws per example and sigma of the gap curves.
      batch_size: as in :func:`jaxgap.losses.gap_curve`.
      num_bootstrap: bootstrap resamples of the memorized fraction.
      sigma_max: the sampler's initial noise level.

    Returns:
      :class:`DeltaSweep`.
    """
    train, val = _train_val(train, val)
    if train.shape[0] < 2:
        raise ValueError(f"train: expected at least 2 points, got {train.shape[0]}")
    deltas = _deltas(deltas)
    sig = jnp.asarray(_sigma_grid(sigmas), train.dtype)
    key = prng_key(key)
    num_samples = positive_int(num_samples, "num_samples", minimum=0)
    num_steps = positive_int(num_steps, "num_steps", minimum=2)
    sigma_max = positive_float(sigma_max, "sigma_max")
    k_gap, k_sample, k_boot = jax.random.split(key, 3)
    curves, peaks, heights, mem, mem_se = [], [], [], [], []
    for delta in deltas:
        model = PositionError(train, float(delta))
        curve = _curve_np(gap_curve(model, train, val, sig, k_gap, num_noise=num_noise,
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


# ---------------------------------------------------------------------------------------
# gap_vs_train_size
# ---------------------------------------------------------------------------------------

class TrainSizeSweep(NamedTuple):
    r"""Gap curves of ``PositionError(train[:n], delta)`` for nested training subsets.

    Attributes:
      sizes: ``[S]`` training-set sizes, ascending.
      delta: the fixed amplitude.
      curves: ``S`` :class:`~jaxgap.losses.GapCurve` (float64 NumPy fields).
      peak_sigma: ``[S]`` where the gap peaks (:func:`curve_peak`).
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


def gap_vs_train_size(ds_or_train_val, sizes, delta: float, sigmas: Float[ArrayLike, " k"],
                      key, *, num_noise: int = 1,
                      batch_size: int | None = None) -> TrainSizeSweep:
    r"""The gap at fixed ``delta`` as the density of the data support grows.

    For each ``n`` in ``sizes`` the model is ``PositionError(train[:n], delta)`` (nested
    subsets: the first ``n`` points, as :meth:`jaxgap.data.Dataset.with_train_size`), its
    gap is measured on ``train[:n]`` against the whole validation set with one key for
    every ``n``.

    Args:
      ds_or_train_val: a :class:`jaxgap.data.Dataset` or a pair ``(train [N, d], val [M, d])``.
      sizes: training-set sizes, integers in ``[1, N]``, distinct.
      delta: the amplitude ``>= 0``.
      sigmas: ``[K]`` noise levels ``> 0``.
      key: PRNG key.
      num_noise, batch_size: as in :func:`jaxgap.losses.gap_curve`.

    Returns:
      :class:`TrainSizeSweep` (sizes ascending).
    """
    if hasattr(ds_or_train_val, "train") and hasattr(ds_or_train_val, "val"):
        train, val = ds_or_train_val.train, ds_or_train_val.val
    elif isinstance(ds_or_train_val, Sequence) and len(ds_or_train_val) == 2:
        train, val = ds_or_train_val
    else:
        raise ValueError(f"ds_or_train_val: expected a Dataset or a pair (train, val), got "
                         f"{type(ds_or_train_val).__name__}")
    train, val = _train_val(train, val)
    n_max = train.shape[0]
    if isinstance(sizes, (int, np.integer)):
        sizes = [sizes]
    try:
        sizes = [positive_int(s, "sizes") for s in sizes]
    except TypeError as err:
        raise ValueError(f"sizes: expected a sequence of integers, got {sizes!r}") from err
    if not sizes or max(sizes) > n_max or len(set(sizes)) != len(sizes):
        raise ValueError(f"sizes: expected distinct integers in [1, {n_max}] (the training "
                         f"points), got {sizes}")
    delta = float(_deltas([delta], "delta")[0])
    sig = jnp.asarray(_sigma_grid(sigmas), train.dtype)
    key = prng_key(key)
    sizes = sorted(sizes)
    curves = []
    for n in sizes:
        sub = train[:n]
        curves.append(_curve_np(gap_curve(PositionError(sub, delta), sub, val, sig, key,
                                          num_noise=num_noise, batch_size=batch_size)))
    peaks = [_peak(c) for c in curves]
    return TrainSizeSweep(np.array(sizes), delta, tuple(curves),
                          np.array([p[0] for p in peaks]), np.array([p[1] for p in peaks]))


# ---------------------------------------------------------------------------------------
# first_order_check
# ---------------------------------------------------------------------------------------

def _rel(pred, exact, ref):
    """``|pred - exact| / |exact - ref|`` (inf where the exact change is 0)."""
    change = np.abs(exact - ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(change > 0, np.abs(pred - exact) / change, np.inf)


def _finite_list(v) -> list:
    """A flat list of floats, non-finite values as ``None`` (JSON has no inf or nan)."""
    a = np.asarray(v, np.float64)
    return [float(t) if np.isfinite(t) else None for t in a.reshape(-1)]


class FirstOrderCheck(NamedTuple):
    r"""Expansions of the position-error loss in ``a = delta^2`` against the exact loss.

    All arrays are ``[K]`` float64 (per sigma), on one data set with one noise key:

    .. math:: L_\mathrm{exact} = L(D_\delta), \quad
        L_1 = L^* + 2 a\, \mathrm{cross}, \quad L_2 = L_1 + a^2\, \mathrm{power},

    with ``cross = E<D* - x0, e>/d``, ``power = E|e|^2/d`` and ``e`` the first-order field
    (:func:`~jaxgap.theory.position_error_field`). The relative errors are measured against
    the exact *change* of the loss: ``rel_first = |L_1 - L_exact| / |L_exact - L^*|``.

    Attributes:
      sigmas, delta: the grid and the amplitude.
      base: ``L^*``, the loss of ``D*``.
      exact, first, second: ``L_exact``, ``L_1``, ``L_2``.
      rel_first, rel_second: relative errors of ``L_1`` and ``L_2``.
    """

    sigmas: np.ndarray
    delta: float
    base: np.ndarray
    exact: np.ndarray
    first: np.ndarray
    second: np.ndarray
    rel_first: np.ndarray
    rel_second: np.ndarray

    def to_dict(self) -> dict:
        """Plain floats and lists, ready for ``json.dump`` (inf as ``None``)."""
        return {k: float(self.delta) if k == "delta" else _finite_list(getattr(self, k))
                for k in self._fields}


def first_order_check(train: Float[ArrayLike, "n d"], data: Float[ArrayLike, "m d"],
                      delta: float, sigmas: Float[ArrayLike, " k"], key, *, num_noise: int = 1,
                      batch_size: int | None = None) -> FirstOrderCheck:
    r"""Check the expansion of ``PositionError``'s loss in ``delta^2`` on one data set.

    The exact loss of ``PositionError(train, delta)`` and the terms of
    :func:`~jaxgap.theory.loss_expansion` of ``D* = EmpiricalDenoiser(train)`` along
    ``position_error_field(train)`` are computed with the same noise (same ``key``), so the
    difference between them is the remainder of the expansion, not Monte Carlo error. Since
    ``D_delta = D* + delta^2 e + O(delta^4)``, the first-order prediction is expected to hold
    where ``delta^2`` is small against the scale on which ``D*`` changes (``sigma >> delta``)
    and to fail at small sigma, where ``e ~ (x - m)/sigma^2`` blows up.

    Args:
      train: ``[N, d]`` training points.
      data: ``[n, d]`` evaluation points (``train`` itself or held-out data).
      delta: amplitude ``>= 0``.
      sigmas: ``[K]`` noise levels ``> 0``.
      key: PRNG key (the noise of :func:`jaxgap.losses.denoising_loss`).
      num_noise, batch_size: as in :func:`jaxgap.losses.denoising_loss`.

    Returns:
      :class:`FirstOrderCheck`.
    """
    train, data = _train_val(train, data, "data")
    delta = float(_deltas([delta], "delta")[0])
    s = _sigma_grid(sigmas)
    key = prng_key(key)
    sig = jnp.asarray(s, train.dtype)
    exact = np.asarray(denoising_loss(PositionError(train, delta), data, sig, key,
                                      num_noise=num_noise, batch_size=batch_size), np.float64)
    terms = loss_expansion(EmpiricalDenoiser(train), position_error_field(train), data, sig,
                           key, num_noise=num_noise, batch_size=batch_size)
    base, cross, power = (np.asarray(t, np.float64) for t in terms)
    a = delta * delta
    first = base + 2.0 * a * cross
    second = first + a * a * power
    return FirstOrderCheck(s, delta, base, exact, first, second, _rel(first, exact, base),
                           _rel(second, exact, base))


class FirstOrderGap(NamedTuple):
    r"""First- and second-order predictions of the toy model's gap, with both checks.

    Attributes:
      train, val: :class:`FirstOrderCheck` on the training and the held-out points.
      gap_base, gap_exact, gap_first, gap_second: ``[K]`` gaps ``L_val - L_train`` of
        ``D*``, of the exact model and of the two expansions.
      rel_first, rel_second: ``[K]`` ``|gap_pred - gap_exact| / |gap_exact - gap_base|``.
    """

    train: FirstOrderCheck
    val: FirstOrderCheck
    gap_base: np.ndarray
    gap_exact: np.ndarray
    gap_first: np.ndarray
    gap_second: np.ndarray
    rel_first: np.ndarray
    rel_second: np.ndarray

    @property
    def sigmas(self) -> np.ndarray:
        return self.train.sigmas

    def to_dict(self) -> dict:
        """Plain floats and lists, ready for ``json.dump`` (inf as ``None``)."""
        return {"delta": float(self.delta), "sigmas": _finite_list(self.sigmas),
                "train": self.train.to_dict(), "val": self.val.to_dict(),
                **{k: _finite_list(getattr(self, k)) for k in self._fields[2:]}}

    @property
    def delta(self) -> float:
        return self.train.delta


def first_order_gap(train: Float[ArrayLike, "n d"], val: Float[ArrayLike, "m d"],
                    delta: float, sigmas: Float[ArrayLike, " k"], key, *, num_noise: int = 1,
                    batch_size: int | None = None) -> FirstOrderGap:
    r""":func:`first_order_check` on ``train`` and ``val``: where the gap expansion holds.

    The key is split into a train and a validation key as in
    :func:`jaxgap.losses.gap_curve`, so ``gap_exact`` is the gap curve of
    ``PositionError(train, delta)`` with the same key.

    Args:
      train: ``[N, d]`` training points.
      val: ``[M, d]`` held-out points.
      delta, sigmas, key, num_noise, batch_size: as in :func:`first_order_check`.

    Returns:
      :class:`FirstOrderGap`.
    """
    train, val = _train_val(train, val)
    key = prng_key(key)
    k_train, k_val = jax.random.split(key)
    kw = dict(num_noise=num_noise, batch_size=batch_size)
    tr = first_order_check(train, train, delta, sigmas, k_train, **kw)
    va = first_order_check(train, val, delta, sigmas, k_val, **kw)
    gaps = [va.base - tr.base, va.exact - tr.exact, va.first - tr.first,
            va.second - tr.second]
    return FirstOrderGap(tr, va, *gaps, _rel(gaps[2], gaps[1], gaps[0]),
                         _rel(gaps[3], gaps[1], gaps[0]))


# ---------------------------------------------------------------------------------------
# flow_fields
# ---------------------------------------------------------------------------------------

class FlowFields(NamedTuple):
    r"""Probability-flow velocities ``(x - D(x, sigma)) / sigma`` on a 2-D grid.

    Attributes:
      grid_x: ``[W]`` and ``grid_y``: ``[H]`` the evenly spaced axes.
      optimal: ``[H, W, 2]`` velocity of ``D*`` (the empirical optimal denoiser);
        ``optimal[i, j]`` is at ``(grid_x[j], grid_y[i])``.
      error: ``[H, W, 2]`` velocity of ``PositionError(train, delta)``.
      train: ``[N, 2]`` the training points.
      sigma, delta: the noise level and the amplitude.
    """

    grid_x: np.ndarray
    grid_y: np.ndarray
    optimal: np.ndarray
    error: np.ndarray
    train: np.ndarray
    sigma: float
    delta: float


def _axis(v, name: str) -> np.ndarray:
    a = np.asarray(float_array(v, name, ndim=1), np.float64)
    if a.shape[0] < 2:
        raise ValueError(f"{name}: expected at least 2 values, got {a.shape[0]}")
    step = np.diff(a)
    if not np.all(step > 0) or not np.allclose(step, step[0], rtol=1e-4, atol=0):
        raise ValueError(f"{name}: expected evenly spaced increasing values (np.linspace), "
                         f"got steps from {float(step.min())!r} to {float(step.max())!r}")
    return a


def flow_fields(train: Float[ArrayLike, "n 2"], grid_x: Float[ArrayLike, " w"],
                grid_y: Float[ArrayLike, " h"], sigma: float, delta: float) -> FlowFields:
    r"""Velocity fields of ``D*`` and of ``PositionError`` on a 2-D grid (for stream plots).

    .. math:: v(x) = \frac{x - D(x, \sigma)}{\sigma}
        \quad\text{(the probability-flow ODE } dx/d\sigma\text{, EDM convention)}

    Integrating toward smaller sigma follows ``-v``. ``D*``'s field localizes around the
    training points as ``sigma -> 0``; with ``delta > 0`` the weights live at temperature
    ``sigma^2 + delta^2`` and the output is shrunk toward ``x``, so the field stays smooth.

    Args:
      train: ``[N, 2]`` training points.
      grid_x: ``[W]`` evenly spaced increasing x values.
      grid_y: ``[H]`` evenly spaced increasing y values.
      sigma: noise level ``> 0``.
      delta: amplitude ``>= 0``.

    Returns:
      :class:`FlowFields` with ``[H, W, 2]`` fields.
    """
    train = float_array(train, "train", ndim=2)
    if train.shape[1] != 2:
        raise ValueError(f"train: expected 2-D points, shape [N, 2], got shape "
                         f"[{train.shape[0]}, {train.shape[1]}]")
    gx, gy = _axis(grid_x, "grid_x"), _axis(grid_y, "grid_y")
    sigma = positive_float(sigma, "sigma")
    delta = float(_deltas([delta], "delta")[0])
    xx, yy = np.meshgrid(gx, gy)  # [H, W]
    pts = jnp.asarray(np.stack([xx, yy], axis=-1), train.dtype)
    v_opt = velocity(EmpiricalDenoiser(train), pts, sigma)
    v_err = velocity(PositionError(train, delta), pts, sigma)
    return FlowFields(gx, gy, np.asarray(v_opt, np.float64), np.asarray(v_err, np.float64),
                      np.asarray(train, np.float64), sigma, delta)
