r"""Closed-form train/validation losses of :class:`~jaxgap.theory.PositionError` in two toy models.

:class:`~jaxgap.theory.PositionError` is the optimal denoiser of the training set
``y_1..y_N`` convolved with ``N(0, delta^2 I)``: with ``v = sigma^2 + delta^2`` and
``c = delta^2 / v``,

.. math:: D(x, \sigma) = (1 - c)\, m(x; v) + c\, x, \qquad
    m = \sum_i w_i y_i, \quad w_i = \operatorname{softmax}_i\Big(-\frac{|x - y_i|^2}{2v}\Big).

Its per-dimension loss ``E|D(x0 + sigma n, sigma) - x0|^2 / d`` (the quantity
:func:`jaxgap.losses.denoising_loss` estimates by Monte Carlo) is computed here in float64
NumPy, deterministically and vectorized over the noise grid, for

- :func:`two_point_losses`: two training points ``mu +- a e`` in any dimension, validation
  points ``y_+- + s g`` (a two-component isotropic mixture of spread ``s``); exact up to a
  one-dimensional Gaussian integral evaluated by composite Gauss-Legendre quadrature.
- :func:`gaussian_losses`: ``N`` i.i.d. ``N(0, s^2 I_d)`` training points, validation points
  from the same law, in the high-dimensional limit ``d -> inf`` with ``alpha = log(N) / d``
  fixed (a random-energy-model calculation with an annealed and a condensed phase, and a
  memorization transition of the training loss).

The derivations, their checks and the measured finite-``d`` discrepancies are in
``docs/theory.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jaxgap._checks import positive_float, positive_int
from jaxgap._search import golden_section

__all__ = ["ClosedFormGap", "GaussianPhase", "gap_peak", "gaussian_losses", "two_point_losses"]


class GaussianPhase(NamedTuple):
    """Phase information of :func:`gaussian_losses` (high-dimensional limit).

    Attributes:
      alpha: ``log(N) / d`` (validation: all ``N`` points compete).
      alpha_train: ``log(N - 1) / d`` (training query: the ``N - 1`` other points compete;
        ``-inf`` for ``N = 1``).
      val_condensed: ``[K]`` bool, validation posterior condensed on ``O(1)`` points.
      train_memorized: ``[K]`` bool, training posterior sits on the query's own point.
      participation: ``[K]`` ``E sum_j w_j^2`` of the validation weights (0 annealed,
        ``1 - beta_c / beta`` condensed).
      sigma_condense: largest sigma (within ``[1e-6, 1e6] * scale``) at which the validation
        posterior is condensed; ``nan`` if it never is.
      sigma_memorize: largest sigma at which the training posterior is memorized (``nan`` if
        never).
    """

    alpha: float
    alpha_train: float
    val_condensed: Any
    train_memorized: Any
    participation: Any
    sigma_condense: float
    sigma_memorize: float


class ClosedFormGap(NamedTuple):
    """Closed-form per-dimension losses over a noise grid.

    Attributes:
      sigmas: ``[K]`` float64 noise levels (as given).
      train: ``[K]`` training loss.
      val: ``[K]`` validation loss.
      gap: ``[K]`` ``val - train``.
      peak_sigma: sigma of the largest gap within ``[min(sigmas), max(sigmas)]`` (found on a
        fine log grid and refined by golden section in ``log sigma``; not restricted to the
        grid ``sigmas``).
      peak_gap: the gap there.
      phase: :class:`GaussianPhase` for :func:`gaussian_losses`, None otherwise.
    """

    sigmas: Any
    train: Any
    val: Any
    gap: Any
    peak_sigma: float
    peak_gap: float
    phase: GaussianPhase | None = None


# ----------------------------------------------------------------------------- helpers


def _sigmas(sigmas) -> np.ndarray:
    try:
        arr = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sigmas: expected a 1-D array of noise levels > 0, got "
                         f"{type(sigmas).__name__}") from err
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"sigmas: expected a non-empty 1-D array, got shape {list(arr.shape)}")
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"sigmas: expected finite values > 0, got min {float(np.min(arr))!r}")
    return arr


def gap_peak(gap_fn: Callable[[np.ndarray], np.ndarray], sigma_min: float, sigma_max: float,
             *, num: int = 256, xtol: float = 1e-10,
             candidates: tuple[float, ...] = ()) -> tuple[float, float]:
    r"""Location and height of the largest gap over ``[sigma_min, sigma_max]``.

    The gap is evaluated on ``num`` log-spaced points; the best point and its two neighbours
    bracket the maximum, which golden-section search in ``log sigma`` refines to ``xtol``.
    ``candidates`` (e.g. the two sides of a known discontinuity) are compared as well.

    Args:
      gap_fn: vectorized ``[M] sigma -> [M] gap``.
      sigma_min, sigma_max: search interval, ``0 < sigma_min <= sigma_max``.
      num: grid points of the bracketing scan (>= 3).
      xtol: tolerance in ``log sigma``.
      candidates: extra sigmas to compare (those outside the interval are ignored).

    Returns:
      ``(peak_sigma, peak_gap)``.
    """
    lo = positive_float(sigma_min, "sigma_min")
    hi = positive_float(sigma_max, "sigma_max")
    if hi < lo:
        raise ValueError(f"sigma_max: expected >= sigma_min = {lo!r}, got {hi!r}")
    num = positive_int(num, "num", minimum=3)
    if not callable(gap_fn):
        raise ValueError(f"gap_fn: expected a callable sigma -> gap, got {type(gap_fn).__name__}")
    if lo == hi:
        return lo, float(gap_fn(np.array([lo]))[0])
    f = lambda u: gap_fn(np.exp(np.atleast_1d(np.asarray(u, np.float64))))
    grid = np.linspace(math.log(lo), math.log(hi), num)
    vals = f(grid)
    i = int(np.argmax(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, num - 1)]
    (x1, f1), (x2, f2) = golden_section(lambda u: f(u)[0], a, b, maximize=True, xtol=xtol)
    best_u = [grid[i], x1, x2]
    best_f = [vals[i], f1, f2]
    cands = [math.log(c) for c in candidates if np.isfinite(c) and lo <= c <= hi]
    if cands:
        best_u += cands
        best_f += list(f(np.array(cands)))
    j = int(np.argmax(best_f))
    return float(math.exp(best_u[j])), float(best_f[j])


# ----------------------------------------------------------------------------- two points

_GL_ORDER = 16


def _two_point_breakpoints(lo, hi, width, *, n_main, n_core, n_geom):
    """Panel breakpoints ``[K, B]`` (sorted, clipped to ``[lo, hi]``): a uniform grid on the
    range, a uniform grid on ``[-10 w, 10 w]`` around the tanh step at ``t = 0`` and a
    geometric ladder ``+-10 w 2^j`` that grades the panels away from it."""
    u = np.linspace(0.0, 1.0, n_main + 1)
    main = lo[:, None] + (hi - lo)[:, None] * u[None]
    core = width[:, None] * np.linspace(-10.0, 10.0, n_core + 1)[None]
    ladder = 10.0 * width[:, None] * 2.0 ** np.arange(1, n_geom + 1)[None]
    pts = np.concatenate([main, core, ladder, -ladder], axis=1)
    pts = np.clip(pts, lo[:, None], hi[:, None])
    return np.sort(pts, axis=1)


def _gauss_expect(fn, mean, std, width, *, n_main=48, n_core=32, n_geom=40, order=_GL_ORDER,
                  span=12.0):
    r"""``E fn(t)`` for ``t ~ N(mean, std^2)``, vectorized over ``[K]`` parameters.

    Composite Gauss-Legendre on ``mean +- span std``, with extra panels of width
    ``~ width`` around ``t = 0`` (where ``fn`` has a step of width ``width``) graded
    geometrically outwards. ``fn(t)`` receives ``t [K, P, Q]``.
    """
    lo, hi = mean - span * std, mean + span * std
    br = _two_point_breakpoints(lo, hi, width, n_main=n_main, n_core=n_core, n_geom=n_geom)
    xi, wi = np.polynomial.legendre.leggauss(order)
    left, right = br[:, :-1], br[:, 1:]
    half, mid = 0.5 * (right - left), 0.5 * (right + left)
    t = mid[..., None] + half[..., None] * xi  # [K, P, Q]
    z = (t - mean[:, None, None]) / std[:, None, None]
    dens = np.exp(-0.5 * z * z) / (math.sqrt(2.0 * math.pi) * std[:, None, None])
    w = half[..., None] * wi * dens
    return np.sum(w * fn(t), axis=(1, 2))


def _two_point_along(sigmas, delta, a, s, **quad):
    r"""``E (f(t) - alpha)^2`` along the axis ``e`` (see :func:`two_point_losses`), ``[K]``."""
    v = sigmas**2 + delta**2
    c = delta**2 / v
    tot = s**2 + sigmas**2
    std = np.sqrt(tot)
    r = s**2 / tot  # regression slope of alpha on t
    cond_var = s**2 * sigmas**2 / tot  # Var(alpha | t)
    width = v / a  # tanh(a t / v) steps over |t| ~ v / a

    def resid_sq(t):
        c_, v_, r_ = c[:, None, None], v[:, None, None], r[:, None, None]
        f = (1.0 - c_) * a * np.tanh(a * t / v_) + c_ * t
        h = f - a - r_ * (t - a)
        return h * h

    return _gauss_expect(resid_sq, np.full_like(sigmas, a), std, width, **quad) + cond_var


def _two_point_loss(sigmas, delta, a, dim, s, **quad):
    v = sigmas**2 + delta**2
    c = delta**2 / v
    perp = (dim - 1) * ((1.0 - c) ** 2 * s**2 + c**2 * sigmas**2)
    return (perp + _two_point_along(sigmas, delta, a, s, **quad)) / dim


def two_point_losses(sigmas, *, delta: float, separation: float, dim: int,
                     spread: float) -> ClosedFormGap:
    r"""Train/val losses of :class:`~jaxgap.theory.PositionError` on two training points.

    Training set ``{mu + a e, mu - a e}``, ``|e| = 1``, ``separation = 2a``; validation points
    ``x0 = y_+- + s g`` with ``g ~ N(0, I_d)`` and ``s = spread`` (``s = 0``: the training
    points themselves, i.e. the train loss). With ``v = sigma^2 + delta^2``,
    ``c = delta^2 / v``, the logit difference of the two weights is ``2 a t / v`` where ``t``
    is the query's coordinate along ``e``, so ``m = mu + a tanh(a t / v) e``. Per dimension,

    .. math::
        L(\sigma) = \frac{1}{d}\Big[(d-1)\big((1-c)^2 s^2 + c^2\sigma^2\big)
          + \mathbb{E}_t\big(f(t) - \mathbb{E}[\alpha|t]\big)^2
          + \frac{s^2\sigma^2}{s^2+\sigma^2}\Big],

    with ``f(t) = (1 - c) a tanh(a t / v) + c t``, ``t ~ N(a, s^2 + sigma^2)``,
    ``E[alpha | t] = a + s^2 (t - a) / (s^2 + sigma^2)``. The ``t``-integral is evaluated by
    composite 16-point Gauss-Legendre on ``a +- 12 sqrt(s^2 + sigma^2)`` with 32 extra panels
    on ``|t| < 10 v / a`` (the tanh step) graded geometrically outwards: it agrees with a finer
    rule and with an independent trapezoid rule to ~1e-15 relative however sharp the step
    (tests). ``mu`` and ``e`` drop out.

    Args:
      sigmas: ``[K]`` noise levels > 0.
      delta: position uncertainty ``>= 0`` of :class:`~jaxgap.theory.PositionError`.
      separation: distance ``2a > 0`` between the two training points.
      dim: dimension ``d >= 1``.
      spread: ``s >= 0``, spread of the validation mixture around the training points
        (``s = 0``: validation equals training, gap 0).

    Returns:
      :class:`ClosedFormGap` (float64; ``phase`` None). The peak is searched on
      ``[min(sigmas), max(sigmas)]``.

    Example:
      >>> import numpy as np
      >>> from jaxgap.theory import two_point_losses
      >>> cf = two_point_losses(np.geomspace(0.01, 10, 64), delta=0.1, separation=2.0,
      ...                       dim=16, spread=0.3)
      >>> round(cf.peak_sigma, 3), round(cf.peak_gap, 4)  # -> spread^2 at large sigma
      (10.0, 0.0899)
    """
    sig = _sigmas(sigmas)
    delta = positive_float(delta, "delta", allow_zero=True)
    a = 0.5 * positive_float(separation, "separation")
    dim = positive_int(dim, "dim")
    s = positive_float(spread, "spread", allow_zero=True)

    def curves(x):
        tr = _two_point_loss(x, delta, a, dim, 0.0)
        va = _two_point_loss(x, delta, a, dim, s)
        return tr, va

    train, val = curves(sig)
    peak_sigma, peak_gap = gap_peak(lambda x: np.subtract(*curves(x)[::-1]),
                                    float(sig.min()), float(sig.max()))
    return ClosedFormGap(sig, train, val, val - train, peak_sigma, peak_gap, None)


# ----------------------------------------------------------------------------- Gaussian REM


def _entropy(k, alpha, rho):
    r"""Saddle-point entropy ``S = alpha + phi - beta phi'`` in ``k = beta s^2/(1 + beta s^2)``.

    ``S(k) = alpha + log(1 - k)/2 + k/2 - rho k^2/2`` with ``rho = q / s^2``; strictly
    decreasing in ``k`` on ``[0, 1)`` from ``alpha`` to ``-inf``.
    """
    return alpha + 0.5 * np.log1p(-k) + 0.5 * k - 0.5 * rho * k * k


def _critical_k(alpha, rho):
    """Root ``k_c`` of ``S(k) = 0`` (vectorized bisection; ``k_c = 0`` for ``alpha <= 0``)."""
    rho = np.asarray(rho, np.float64)
    if alpha <= 0:
        return np.zeros_like(rho)
    lo, hi = np.zeros_like(rho), np.ones_like(rho)
    for _ in range(200):  # k in [0, 1): 2^-200 is far below float64 resolution
        mid = 0.5 * (lo + hi)
        pos = _entropy(mid, alpha, rho) > 0
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
        if np.all(hi - lo <= 4e-16):
            break
    return 0.5 * (lo + hi)


def _rest(sig, delta, s, alpha):
    """Effective tilt and log-partition of ``e^{alpha d}`` Gaussian points at query norm
    ``q = s^2 + sigma^2``: ``(k_b, participation, log Z / d, condensed)``, each ``[K]``."""
    v = sig**2 + delta**2
    beta = 1.0 / v
    rho = 1.0 + sig**2 / s**2
    k = s**2 / (v + s**2)  # beta s^2 / (1 + beta s^2)
    if alpha == -math.inf:  # no other points
        nan = np.full_like(sig, np.nan)
        return nan, nan, np.full_like(sig, -np.inf), np.zeros(sig.shape, bool)
    kc = _critical_k(alpha, rho)
    condensed = k > kc
    kb = np.where(condensed, kc, k)
    # phi(beta) = log(1 - k)/2 - rho k / 2 ; phi'(beta) = -(s^2 (1 - k) + q (1 - k)^2) / 2
    annealed = alpha + 0.5 * np.log1p(-k) - 0.5 * rho * k
    q = s**2 + sig**2
    dphi_c = -0.5 * (s**2 * (1.0 - kc) + q * (1.0 - kc) ** 2)
    log_z = np.where(condensed, beta * dphi_c, annealed)
    beta_c = kc / (s**2 * (1.0 - kc))
    part = np.where(condensed, 1.0 - beta_c / beta, 0.0)
    return kb, part, log_z, condensed


def _rest_loss(sig, delta, s, kb, part):
    """Per-dimension loss when the query's posterior is carried by independent points."""
    v = sig**2 + delta**2
    c = delta**2 / v
    a = (1.0 - c) * kb + c
    tau2 = s**2 * (1.0 - kb)
    return (a - 1.0) ** 2 * s**2 + a**2 * sig**2 + (1.0 - c) ** 2 * tau2 * part


def _gaussian_curves(sig, delta, s, alpha, alpha_train):
    kb, part, _, condensed = _rest(sig, delta, s, alpha)
    val = _rest_loss(sig, delta, s, kb, part)
    kb_t, part_t, log_z_t, _ = _rest(sig, delta, s, alpha_train)
    v = sig**2 + delta**2
    self_term = -0.5 * sig**2 / v
    memorized = self_term > log_z_t
    c = delta**2 / v
    rest_train = np.where(memorized, 0.0, _rest_loss(sig, delta, s, np.nan_to_num(kb_t),
                                                     np.nan_to_num(part_t)))
    train = np.where(memorized, c**2 * sig**2, rest_train)
    return train, val, condensed, memorized, part


def _last_true(fn, lo, hi, num=2000):
    """Largest sigma in ``[lo, hi]`` where the boolean ``fn`` holds (bisection in log sigma
    after a log-grid scan); ``nan`` if it holds nowhere on the grid."""
    grid = np.geomspace(lo, hi, num)
    flags = fn(grid)
    if not np.any(flags):
        return math.nan
    i = int(np.nonzero(flags)[0][-1])
    if i == num - 1:
        return float(hi)
    a, b = math.log(grid[i]), math.log(grid[i + 1])
    for _ in range(100):
        m = 0.5 * (a + b)
        if fn(np.array([math.exp(m)]))[0]:
            a = m
        else:
            b = m
        if b - a < 1e-13:
            break
    return float(math.exp(0.5 * (a + b)))


def gaussian_losses(sigmas, *, delta: float, num_train: int, dim: int,
                    scale: float = 1.0) -> ClosedFormGap:
    r"""High-dimensional limit of the train/val losses of PositionError on Gaussian data.

    Data ``x0 ~ N(0, s^2 I_d)`` (``s = scale``), ``N = num_train`` i.i.d. training points,
    :class:`~jaxgap.theory.PositionError` with uncertainty ``delta``; limit ``d -> inf`` at
    fixed ``alpha = log(N) / d`` (a random energy model). With ``v = sigma^2 + delta^2``,
    ``beta = 1/v``, ``c = delta^2 / v``, ``k(b) = b s^2 / (1 + b s^2)`` and
    ``rho = 1 + sigma^2 / s^2`` (the query's ``|x|^2 / (d s^2)``), the saddle-point entropy is

    .. math:: S(k) = \alpha + \tfrac12\log(1-k) + \tfrac k2 - \tfrac{\rho k^2}{2}.

    Annealed phase (``S(k(beta)) >= 0``): tilt ``b = beta``, participation ``P = 0``;
    condensed phase: ``b = beta_c`` with ``S(k(beta_c)) = 0``, Poisson-Dirichlet weights with
    ``P = E sum w^2 = 1 - beta_c / beta``. With ``kappa = k(b)``, ``tau^2 = s^2 (1 - kappa)``
    and ``A = (1 - c) kappa + c``,

    .. math:: L_\mathrm{val} = (A - 1)^2 s^2 + A^2 \sigma^2 + (1-c)^2 \tau^2 P .

    Train: the query's own point has log-weight ``-beta sigma^2 / 2`` per dimension; when it
    exceeds the others' ``(1/d) log Z`` (``alpha + phi(beta)`` annealed,
    ``beta phi'(beta_c)`` condensed, computed with ``alpha_train = log(N - 1) / d``), the
    posterior sits on it and ``L_train = c^2 sigma^2``; otherwise ``L_train`` is the
    validation formula at ``alpha_train``. The derivation is in ``docs/theory.md``.

    Args:
      sigmas: ``[K]`` noise levels > 0.
      delta: position uncertainty ``>= 0``.
      num_train: ``N >= 1``.
      dim: ``d >= 1`` (only ``alpha = log(N)/d`` and ``log(N - 1)/d`` enter).
      scale: data standard deviation ``s > 0``.

    Returns:
      :class:`ClosedFormGap` with a :class:`GaussianPhase`. The peak is searched on
      ``[min(sigmas), max(sigmas)]``, including the left limit at the memorization
      threshold (where the limiting train loss jumps).

    Example:
      >>> import numpy as np
      >>> from jaxgap.theory import gaussian_losses
      >>> cf = gaussian_losses(np.geomspace(0.01, 10, 64), delta=0.0, num_train=600, dim=128)
      >>> round(cf.phase.sigma_memorize, 4)  # delta = 0: 1 / sqrt(exp(2 log(N - 1) / d) - 1)
      3.0848
    """
    sig = _sigmas(sigmas)
    delta = positive_float(delta, "delta", allow_zero=True)
    n = positive_int(num_train, "num_train")
    dim = positive_int(dim, "dim")
    s = positive_float(scale, "scale")
    alpha = math.log(n) / dim
    alpha_train = math.log(n - 1) / dim if n > 1 else -math.inf

    curves = lambda x: _gaussian_curves(x, delta, s, alpha, alpha_train)
    train, val, condensed, memorized, part = curves(sig)
    lo, hi = 1e-6 * s, 1e6 * s
    sigma_c = _last_true(lambda x: curves(x)[2], lo, hi)
    sigma_m = _last_true(lambda x: curves(x)[3], lo, hi)
    phase = GaussianPhase(alpha, alpha_train, condensed, memorized, part, sigma_c, sigma_m)
    cands = (sigma_m * (1.0 - 1e-12), sigma_m * (1.0 + 1e-12)) if np.isfinite(sigma_m) else ()
    peak_sigma, peak_gap = gap_peak(lambda x: (lambda t, v, *_: v - t)(*curves(x)),
                                    float(sig.min()), float(sig.max()), candidates=cands)
    return ClosedFormGap(sig, train, val, val - train, peak_sigma, peak_gap, phase)
