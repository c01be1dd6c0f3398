r"""Denoising losses over noise grids, generalization-gap curves and the EDM objective.

Per-sigma loss (EDM convention, mean squared error per dimension):

.. math:: L(\sigma) = \mathbb{E}_{x_0, \epsilon}\,
    \frac{1}{d}\,\big|D(x_0 + \sigma\epsilon, \sigma) - x_0\big|^2 .

Common random numbers: the noise of example ``i`` at grid index ``k`` and draw ``r`` is
``normal(fold_in(fold_in(fold_in(key, i), k), r))``, a function of ``(key, i, k, r)`` only.
Two denoisers evaluated with one key see identical noise, and results do not depend on the
batch size or the number of devices.

One compiled program per (grid length, data shape, denoiser structure): the grid is a traced
argument, so a new grid of the same length does not recompile.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxgap import noise as _noise
from jaxgap._checks import float_array, prng_key
from jaxgap._compat import key_first
from jaxgap._jit import jit
from jaxgap._mc import check_loss_args, example_noise, noisy_queries, per_example_map
from jaxgap._protocol import call

__all__ = [
    "PLATEAU_RTOL",
    "GapCurve",
    "curve_peak",
    "denoising_loss",
    "example_noise",
    "gap_curve",
    "optimal_loss_identity",
    "per_example_loss",
    "weighted_objective",
]


@jit
def _all_stats(denoiser, data, sigmas, key, cond, *, num_noise, batch_size, mesh):
    """``[K, n]`` per-example ``mean_r |D - x0|^2 / d`` and ``mean_r |D|^2 / d``.

    Each batch's ``[K, R, B, d]`` noisy queries go to the denoiser in one call with a
    per-query sigma, so closed-form denoisers batch the whole grid at once.
    """

    def batch_stats(x0, index, c):
        x, sig = noisy_queries(key, x0, index, sigmas, num_noise)
        out = call(denoiser, x, sig, c)
        mse = jnp.mean((out - x0[None, None]) ** 2, axis=-1)
        out_sq = jnp.mean(out**2, axis=-1)
        return jnp.mean(mse, axis=1), jnp.mean(out_sq, axis=1)

    return per_example_map(batch_stats, data, cond, batch_size=batch_size, mesh=mesh)


def per_example_loss(key, denoiser, data, sigmas, *, cond=None, num_noise: int = 1,
                     batch_size: int | None = None, mesh: Mesh | None = None):
    r"""Per-example denoising loss, averaged over ``num_noise`` draws: ``[K, n]``.

    .. math:: \ell_{ki} = \frac{1}{R}\sum_{r} \frac{1}{d}
        \big|D(x_i + \sigma_k \epsilon_{ikr}, \sigma_k) - x_i\big|^2

    Args:
      key: PRNG key; the noise is a function of ``(key, i, k, r)`` only.
      denoiser: any callable ``D(x, sigma)`` obeying the protocol (``D(x, sigma, cond)`` with
        ``cond``).
      data: ``[n, d]`` clean examples.
      sigmas: ``[K]`` noise levels (> 0).
      cond: ``[n]`` (or scalar) integer condition ids of the examples, for a conditional
        denoiser.
      num_noise: noise draws ``R`` per example and sigma.
      batch_size: examples per compiled batch (default: ``K * R * batch * d ~ 4M``).
      mesh: optional 1-D ``jax.sharding.Mesh``: examples are spread over its devices.

    Returns:
      ``[K, n]`` float array.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> per_example_loss(jax.random.key(0), lambda x, s: 0 * x, jnp.ones((3, 2)),
      ...                  jnp.array([0.5, 1.0])).shape  # D = 0: the loss is |x0|^2 / d = 1
      (2, 3)
    """
    args = check_loss_args(key, denoiser, data, sigmas, cond, num_noise, batch_size, mesh)
    return _all_stats(**args)[0]


@key_first(3)
def denoising_loss(key, denoiser, data, sigmas, *, cond=None, num_noise: int = 1,
                   batch_size: int | None = None, mesh: Mesh | None = None):
    r"""Per-sigma denoising loss ``[K]``: the mean of :func:`per_example_loss` over examples.

    .. math:: L(\sigma_k) = \frac{1}{n R}\sum_{i, r} \frac{1}{d}
        \big|D(x_i + \sigma_k \epsilon_{ikr}, \sigma_k) - x_i\big|^2

    Args and noise as in :func:`per_example_loss`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgap import noise
      >>> L = denoising_loss(jax.random.key(0), lambda x, s: x, jnp.zeros((4, 8)),
      ...                    noise.log_sigmas(3, 0.1, 10.0))  # D = identity: about sigma^2
      >>> L.shape
      (3,)
    """
    return jnp.mean(per_example_loss(key, denoiser, data, sigmas, cond=cond, num_noise=num_noise,
                                     batch_size=batch_size, mesh=mesh), axis=1)


def optimal_loss_identity(key, denoiser, data, sigmas, *, cond=None, num_noise: int = 1,
                          batch_size: int | None = None, mesh: Mesh | None = None):
    r"""``E|x0|^2 / d - E|D(x_sigma)|^2 / d`` per sigma, ``[K]``, with the loss's noise.

    For the posterior-mean denoiser of the distribution the data are drawn from (the
    :class:`~jaxgap.denoisers.EmpiricalDenoiser` of ``data`` itself), this equals the
    optimal loss ``J*(sigma)`` in expectation, since ``E[x0 . D] = E|D|^2``: an independent
    cross-check of :func:`denoising_loss`. Arguments as in :func:`per_example_loss`.
    """
    args = check_loss_args(key, denoiser, data, sigmas, cond, num_noise, batch_size, mesh)
    _, out_sq = _all_stats(**args)
    data = args["data"]
    return jnp.mean(jnp.sum(data**2, axis=1)) / data.shape[1] - jnp.mean(out_sq, axis=1)


PLATEAU_RTOL = 1e-6
"""Values within ``PLATEAU_RTOL x |max|`` of a curve's maximum are tied (a plateau): about
eight float32 rounding steps, so a tie is never decided by the sign of a rounding error."""


def curve_peak(sigmas, values, *, refine: bool = False, return_index: bool = False):
    r"""Peak of a sampled curve (a gap curve): ``(sigma, value)``. The one definition.

    ``refine=False``: the grid point of the largest value (NaN ignored).
    ``refine=True``: with ``k`` the grid index of the largest value, the sigma of the vertex
    of the parabola through ``(log sigma_j, value_j)``, ``j = k-1, k, k+1`` (it lies between
    the two neighbours); at an end of the grid, or where the three points are collinear, the
    grid sigma. The value returned is always the measured grid value ``value_k``.

    .. math:: g(u) = g_k + b\,(u - u_k) + c\,(u - u_k)^2, \quad u = \log\sigma,
        \qquad \log\sigma^\star = u_k - \frac{b}{2c}.

    Plateaus (ties): values within :data:`PLATEAU_RTOL` ``x |max|`` of the maximum count
    as equal. Of the tied grid points, ordered by sigma, the first run of neighbours is the
    plateau, and the peak is

    - its smallest sigma when the plateau reaches the smallest sigma of the grid (the
      curve may stay maximal below the grid, as a memorizing denoiser's gap does; a flat
      curve also gives the smallest sigma), else
    - its largest sigma when it reaches the largest sigma of the grid, else
    - its middle grid point (of two middle points the smaller sigma); with
      ``refine=True`` the geometric middle ``sqrt(sigma_first sigma_last)`` of the plateau.

    The answer depends on the sigmas and values only, not on the order of the grid.

    Args:
      sigmas: ``[K]`` noise levels ``> 0`` (strictly monotonic for ``refine=True``).
      values: ``[K]`` curve values.
      refine: the parabola vertex instead of the grid point.
      return_index: also return the grid index ``k`` of the chosen point (into ``sigmas``
        as given).

    Returns:
      ``(peak_sigma, peak_value)`` floats, or ``(peak_sigma, peak_value, k)``.

    Example:
      >>> curve_peak([0.1, 1.0, 10.0], [0.0, 2.0, 1.0])
      (1.0, 2.0)
      >>> curve_peak([0.1, 0.2, 0.4, 0.8, 1.6], [0.0, 1.0, 1.0, 1.0, 0.0])  # a plateau
      (0.4, 1.0)
      >>> curve_peak([0.1, 0.2, 0.4, 0.8], [1.0, 1.0, 0.5, 0.0])  # reaches the grid's end
      (0.1, 1.0)
    """
    # NumPy float64 throughout (float_array would round to float32 without x64).
    s = np.asarray(float_array(sigmas, "sigmas", ndim=1), np.float64)
    if not isinstance(sigmas, jax.Array):
        s = np.asarray(sigmas, np.float64).reshape(s.shape)
    g = np.asarray(values, np.float64)
    if g.ndim != 1:
        raise ValueError(f"values: expected rank 1, got shape {list(g.shape)}")
    if g.shape != s.shape:
        raise ValueError(f"values: expected shape [{s.shape[0]}] like sigmas, "
                         f"got [{g.shape[0]}]")
    if not np.all(s > 0):
        raise ValueError(f"sigmas: expected values > 0, got min {float(np.min(s))!r}")
    if np.all(np.isnan(g)):
        raise ValueError("values: expected at least one value that is not NaN")
    if refine and not (np.all(np.diff(s) > 0) or np.all(np.diff(s) < 0)):
        raise ValueError("sigmas: expected strictly monotonic values")
    order = np.argsort(s, kind="stable")
    first, last = _plateau(g[order])
    if first == 0:
        k = int(order[0])
    elif last == s.shape[0] - 1:
        k = int(order[-1])
    else:
        k = int(order[(first + last) // 2])
    if not refine:
        found = float(s[k])
    elif first == last:
        found = _vertex(s, g, k)
    elif first == 0 or last == s.shape[0] - 1:
        found = float(s[k])
    else:
        found = float(np.sqrt(s[order[first]] * s[order[last]]))
    return (found, float(g[k]), k) if return_index else (found, float(g[k]))


def _plateau(g) -> tuple[int, int]:
    """``(first, last)`` positions of the first run of tied maxima of ``g`` (ordered)."""
    top = np.nanmax(g)
    tied = g >= top - PLATEAU_RTOL * abs(top) if np.isfinite(top) else g == top
    first = int(np.argmax(tied))  # NaN compares False: never tied
    last = first
    while last + 1 < g.shape[0] and tied[last + 1]:
        last += 1
    return first, last


def _vertex(s, g, k) -> float:
    """The parabola vertex of :func:`curve_peak` (float64 NumPy)."""
    if k == 0 or k == s.shape[0] - 1:
        return float(s[k])
    u = np.log(s)
    # Local coordinate x along the index direction: x = -hm at k-1, 0 at k, +hp at k+1.
    hm, hp = abs(u[k] - u[k - 1]), abs(u[k + 1] - u[k])
    dm, dp = g[k - 1] - g[k], g[k + 1] - g[k]  # both <= 0 at the argmax
    c = (dp / hp + dm / hm) / (hp + hm)
    if not c < 0:  # collinear (flat) points, or a NaN neighbour: no interior vertex
        return float(s[k])
    b = (dp / hp - dm / hm - c * (hp - hm)) / 2.0
    x = min(max(-b / (2.0 * c), -hm), hp)
    return float(np.exp(u[k] + np.sign(u[k + 1] - u[k]) * x))


class GapCurve(NamedTuple):
    """Train and validation denoising losses over a noise grid, with standard errors.

    All fields are ``[K]`` arrays (``sigmas`` ascending or as given). Standard errors are
    over examples (each example's loss averaged over its noise draws); ``gap_se`` treats the
    train and validation sets as independent.
    """

    sigmas: Any
    train: Any
    val: Any
    gap: Any
    train_se: Any
    val_se: Any
    gap_se: Any

    @property
    def peak_sigma(self) -> float:
        """The grid sigma where the gap is largest (``self.peak()[0]``; a plateau of equal
        largest values gives the point :func:`curve_peak` documents)."""
        return self.peak()[0]

    def peak(self, *, refine: bool = False) -> tuple[float, float]:
        """``(sigma, gap)`` at the gap's peak: :func:`curve_peak` of this curve."""
        return curve_peak(self.sigmas, self.gap, refine=refine)

    def to_dict(self) -> dict:
        """Plain lists, ready for ``json.dump``."""
        return {f: np.asarray(getattr(self, f), np.float64).tolist() for f in self._fields}

    def to_json(self, **extra) -> str:
        """JSON text of :meth:`to_dict` plus any extra metadata keys."""
        return json.dumps({**extra, **self.to_dict()}, indent=2)

    def to_csv(self) -> str:
        """CSV text, one row per sigma."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self._fields)
        cols = [np.asarray(getattr(self, f), np.float64) for f in self._fields]
        for row in zip(*cols, strict=True):
            writer.writerow([repr(float(v)) for v in row])
        return buf.getvalue()


def _mean_se(losses):
    n = losses.shape[1]
    mean = jnp.mean(losses, axis=1)
    se = jnp.std(losses, axis=1, ddof=1) / math.sqrt(n) if n > 1 else jnp.full_like(mean, jnp.nan)
    return mean, se


@key_first(4)
def gap_curve(key, denoiser, train, val, sigmas, *, train_cond=None, val_cond=None,
              num_noise: int = 1, batch_size: int | None = None,
              mesh: Mesh | None = None) -> GapCurve:
    r"""Generalization-gap curve ``L_val(sigma) - L_train(sigma)`` with standard errors.

    Args:
      key: PRNG key, split once into a train and a validation key.
      denoiser: any ``D(x, sigma)`` (typically fit on ``train``), or ``D(x, sigma, cond)``.
      train: ``[n_train, d]`` training examples.
      val: ``[n_val, d]`` held-out examples.
      sigmas: ``[K]`` noise levels.
      train_cond, val_cond: ``[n_train]``, ``[n_val]`` condition ids for a conditional
        denoiser (both or neither).
      num_noise, batch_size, mesh: as in :func:`per_example_loss`.

    Returns:
      :class:`GapCurve`.

    Example:
      >>> import jax
      >>> from jaxgap import noise
      >>> from jaxgap.denoisers import EmpiricalDenoiser
      >>> train, val = jax.random.normal(jax.random.key(1), (2, 32, 8))
      >>> curve = gap_curve(jax.random.key(0), EmpiricalDenoiser(train), train, val,
      ...                   noise.log_sigmas(4, 0.01, 10.0))
      >>> float(curve.train[0]) < 1e-6  # the optimal denoiser memorizes its training set
      True
    """
    for name, arr in (("train", train), ("val", val)):
        if np.ndim(arr) == 2 and np.shape(arr)[0] < 2:
            raise ValueError(f"{name}: expected at least 2 examples (a standard error needs "
                             f"two), got shape {list(np.shape(arr))}")
    if (train_cond is None) != (val_cond is None):
        missing = "val_cond" if val_cond is None else "train_cond"
        raise ValueError(f"{missing}: expected condition ids for both sets or neither, got None")
    k_train, k_val = jax.random.split(prng_key(key))
    opts = dict(num_noise=num_noise, batch_size=batch_size, mesh=mesh)
    lt = per_example_loss(k_train, denoiser, train, sigmas, cond=train_cond, **opts)
    lv = per_example_loss(k_val, denoiser, val, sigmas, cond=val_cond, **opts)
    t, t_se = _mean_se(lt)
    v, v_se = _mean_se(lv)
    return GapCurve(jnp.asarray(sigmas), t, v, v - t, t_se, v_se, jnp.sqrt(t_se**2 + v_se**2))


def weighted_objective(sigmas, losses, *, p_mean: float = -1.2, p_std: float = 1.2,
                       sigma_data: float = 0.5, min_mass: float = 0.98):
    r"""The EDM training objective from per-sigma losses: what a network minimizes.

    .. math:: J = \int p(\sigma)\,\lambda(\sigma)\,L(\sigma)\,d\sigma
              = \int p(\sigma)\,\sigma\,\lambda(\sigma)\,L(\sigma)\,d\log\sigma

    with ``p`` the log-normal training density (``P_mean``, ``P_std``) and
    ``lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (Karras et al. 2022, eq. 8
    and Table 1), by the trapezoidal rule in ``log sigma`` over the grid.

    Args:
      sigmas: ``[K]`` strictly increasing or decreasing noise levels.
      losses: ``[K]`` per-dimension losses at those levels.
      min_mass: the grid must hold at least this much of the density's mass.

    Returns:
      Scalar objective (per dimension).
    """
    sigmas = np.asarray(float_array(sigmas, "sigmas", ndim=1), np.float64)
    losses = np.asarray(float_array(losses, "losses", ndim=1), np.float64)
    if losses.shape != sigmas.shape:
        raise ValueError(f"losses: expected shape [{sigmas.shape[0]}] like sigmas, "
                         f"got [{losses.shape[0]}]")
    if sigmas.shape[0] < 2 or not (np.all(np.diff(sigmas) > 0) or np.all(np.diff(sigmas) < 0)):
        raise ValueError("sigmas: expected at least 2 strictly monotonic values")
    order = np.argsort(sigmas)
    s, ls = sigmas[order], losses[order]
    log_s = np.log(s)
    dens = np.asarray(_noise.lognormal_sigma_density(s, p_mean=p_mean, p_std=p_std)) * s
    mass = np.trapezoid(dens, log_s)
    if mass < min_mass:
        raise ValueError(
            f"sigmas: the grid [{s[0]:.3g}, {s[-1]:.3g}] holds only {mass:.3f} of the training "
            f"density's mass (expected >= {min_mass}); widen it to about "
            f"[{math.exp(p_mean - 3 * p_std):.3g}, {math.exp(p_mean + 3 * p_std):.3g}]")
    weight = np.asarray(_noise.edm_loss_weight(s, sigma_data))
    return float(np.trapezoid(dens * weight * ls, log_s))
