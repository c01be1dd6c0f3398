r"""Memorization thresholds of the optimal *conditional* denoiser: one REM per condition.

A conditional optimal denoiser ``D(x, sigma, c)``
(:class:`~jaxgap.denoisers.ConditionalEmpiricalDenoiser`) averages only over the ``N_c``
training points that carry the query's condition ``c``. A training query ``x = y_1 +
sigma n`` of condition ``c`` therefore competes with the ``N_c - 1`` other points of ``c``,
not with the whole training set, and the Gaussian random-energy-model limit of
:func:`~jaxgap.theory.gaussian_losses` (``delta = 0``) applies per condition with
``alpha_c' = log(N_c - 1) / d``:

.. math:: \sigma_c = \frac{s_c}{\sqrt{e^{2 \log(N_c - 1)/d} - 1}} .

The scale ``s_c`` is the spread of the points the query competes with. In the REM the
competitors and the query's own point are i.i.d. ``N(mu, s^2 I_d)`` and only distances
between them enter (``|y_i - y_j|^2 / d -> 2 s^2``); for a condition whose points are
``N(mu_c, s_c^2 I)`` the same calculation holds about ``mu_c``, so ``s_c`` is the
*within-condition* per-dimension standard deviation (:attr:`ConditionStats.spread`), not
the data's overall spread. Finer conditions have fewer points (``sigma_c`` up) and, when
they follow the content, a smaller spread (``sigma_c`` down); random labels only remove
points. At ``delta = 0`` the REM depends on ``sigma / s`` only, so thresholds are ``s_c``
times those of unit scale, computed once per distinct ``(N_c, d)`` by
:func:`~jaxgap.theory.gaussian_losses` (its :class:`~jaxgap.theory.GaussianPhase`); nothing
of its math is repeated here.

The conditional training loss averaged over training examples is the count-weighted
mixture of the per-condition curves; in the limit each condition's curve jumps from 0 to
its annealed value at ``sigma_c``, so the fraction of training examples whose posterior is
memorized at ``sigma`` is the step function
``f(sigma) = sum_c N_c [sigma < sigma_c] / N`` (:meth:`ConditionalThresholds.memorized_fraction`)
and the aggregate curves are :func:`conditional_losses`.

The measurement side (:func:`condition_stats`, :func:`loss_onset`) defines the onset of a
condition's train-loss collapse against the limit's own non-memorized training loss
(:meth:`ConditionStats.annealed_loss`); the derivation, the digits comparison and its
caveats are in ``docs/theory.md`` (section 8).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from jaxgap._checks import positive_float
from jaxgap.theory.closed_form import gaussian_losses

__all__ = ["ConditionStats", "ConditionalGap", "ConditionalThresholds", "condition_stats",
           "conditional_losses", "conditional_thresholds", "loss_onset"]

#: Upper end (times the scale) of the window in which GaussianPhase searches its thresholds;
#: a threshold there means "at every sigma" (documented in GaussianPhase).
_WINDOW_TOP = 1e6


# ----------------------------------------------------------------------------- checks


def _sigmas(sigmas) -> np.ndarray:
    try:
        arr = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sigmas: expected a 1-D array of noise levels > 0, got "
                         f"{type(sigmas).__name__}") from err
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"sigmas: expected a non-empty 1-D array, got shape {list(arr.shape)}")
    if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ValueError(f"sigmas: expected finite values > 0, got min {float(np.min(arr))!r}")
    return arr


def _int_array(value, name: str, *, minimum: int, size: int | None = None,
               scalar_ok: bool = False) -> np.ndarray:
    """Integers ``>= minimum``: a 1-D array (of ``size`` entries), or a scalar if allowed."""
    arr = np.asarray(value)
    what = f"integers >= {minimum}"
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected {what}, got dtype {arr.dtype} ({value!r})")
    if arr.ndim == 0 and scalar_ok:
        arr = np.full(size, int(arr), np.int64)
    if arr.ndim != 1 or arr.size == 0 or (size is not None and arr.size != size):
        shape = f"[{size}]" if size is not None else "a non-empty 1-D array"
        raise ValueError(f"{name}: expected {what} of shape {shape}, got shape "
                         f"{list(arr.shape)}")
    if arr.min() < minimum:
        raise ValueError(f"{name}: expected {what}, got min {int(arr.min())}")
    return arr.astype(np.int64)


def _scales(scale, counts: np.ndarray, *, need_from: int) -> np.ndarray:
    """``[C]`` float64 scales; finite and > 0 where ``counts >= need_from`` (else ignored)."""
    try:
        arr = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"scale: expected a number > 0 or [C] numbers, got {scale!r}") from err
    if arr.ndim == 0:
        positive_float(float(arr), "scale")
        arr = np.full(counts.shape, float(arr))
    if arr.shape != counts.shape:
        raise ValueError(f"scale: expected a number or shape [{counts.size}] (one per "
                         f"condition), got shape {list(arr.shape)}")
    need = counts >= need_from
    bad = need & ~(np.isfinite(arr) & (arr > 0))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"scale: expected finite values > 0 for conditions with at least "
                         f"{need_from} points, got {arr[i]!r} for condition {i} "
                         f"(N_c = {counts[i]})")
    return np.where(need, arr, np.nan)


# ----------------------------------------------------------------------------- prediction


class ConditionalThresholds(NamedTuple):
    """Per-condition REM thresholds of the optimal conditional denoiser (``delta = 0``).

    Attributes:
      counts: ``[C]`` int64 training points per condition ``N_c``.
      dim: ``[C]`` int64 dimension entering ``alpha = log(N_c) / d`` (usually all ``d``).
      scale: ``[C]`` float64 spread ``s_c`` of each condition's points (``nan`` where
        ``N_c = 1``: it does not enter).
      sigma_memorize: ``[C]`` the training posterior of condition ``c`` sits on the query's
        own point for ``sigma < sigma_memorize[c]``: ``s_c / sqrt(e^{2 log(N_c - 1)/d} - 1)``;
        ``inf`` for ``N_c <= 2`` (at most one competitor: memorized at every sigma).
      sigma_condense: ``[C]`` the validation posterior of condition ``c`` condenses on
        ``O(1)`` of its points below it: ``s_c / sqrt(e^{2 log(N_c)/d} - 1)``; ``inf`` for
        ``N_c = 1``.
    """

    counts: Any
    dim: Any
    scale: Any
    sigma_memorize: Any
    sigma_condense: Any

    def memorized_fraction(self, sigmas) -> np.ndarray:
        r"""Fraction of training examples whose condition is memorized at each sigma, ``[K]``.

        .. math:: f(\sigma) = \frac{1}{N}\sum_c N_c\,[\sigma < \sigma_c]

        A right-continuous step function falling by ``N_c / N`` at each ``sigma_c``.
        """
        sig = _sigmas(sigmas)
        below = sig[:, None] < self.sigma_memorize[None, :]
        return (below * self.counts[None, :]).sum(axis=1) / self.counts.sum()


def conditional_thresholds(counts, dim, *, scale=1.0) -> ConditionalThresholds:
    r"""Predicted memorization thresholds of the optimal conditional denoiser, per condition.

    Condition ``c`` has ``N_c`` training points with per-dimension spread ``s_c``; a
    training query of ``c`` competes with the other ``N_c - 1`` points of ``c`` only, so the
    Gaussian REM limit of :func:`~jaxgap.theory.gaussian_losses` (``delta = 0``) gives

    .. math:: \sigma_c^\mathrm{mem} = \frac{s_c}{\sqrt{e^{2\log(N_c - 1)/d} - 1}}, \qquad
        \sigma_c^\mathrm{cond} = \frac{s_c}{\sqrt{e^{2\log N_c/d} - 1}} .

    ``scale`` is the spread of the points the query competes with: pass the data's overall
    spread to predict from the counts alone (content-free conditions such as random labels
    leave it unchanged), or the within-condition spreads (:attr:`ConditionStats.spread`)
    for conditions that follow the content (classes, clusters), whose points are closer
    to one another than the data at large.

    Args:
      counts: ``[C]`` positive integers ``N_c`` (a condition without training points has no
        denoiser: drop it).
      dim: data dimension ``d >= 1``, or ``[C]`` integers (e.g. per-condition effective
        dimensions).
      scale: per-dimension spread ``s > 0``, or ``[C]`` per-condition spreads ``s_c``
        (ignored, and may be ``nan``, where ``N_c = 1``).

    Returns:
      :class:`ConditionalThresholds` (float64; ``inf`` where the phase holds at every
      sigma); :meth:`~ConditionalThresholds.memorized_fraction` gives the aggregate.

    Raises:
      ValueError: naming ``counts``, ``dim`` or ``scale``.

    Example:
      >>> import numpy as np
      >>> from jaxgap.theory import conditional_thresholds
      >>> th = conditional_thresholds([600, 60, 6], 64)
      >>> th.sigma_memorize.round(3).tolist()  # fewer points per condition: larger threshold
      [2.126, 2.713, 4.403]
      >>> th.memorized_fraction([2.0, 2.5, 3.0, 5.0]).round(4).tolist()  # 1, 66/666, 6/666, 0
      [1.0, 0.0991, 0.009, 0.0]
    """
    counts = _int_array(counts, "counts", minimum=1)
    dims = _int_array(dim, "dim", minimum=1, size=counts.size, scalar_ok=True)
    scales = _scales(scale, counts, need_from=2)
    unit: dict[tuple[int, int], tuple[float, float]] = {}
    for n, d in zip(counts.tolist(), dims.tolist(), strict=True):
        if (n, d) not in unit:
            phase = gaussian_losses(np.ones(1), delta=0.0, num_train=n, dim=d).phase
            unit[(n, d)] = tuple(math.inf if t >= _WINDOW_TOP else t
                                 for t in (phase.sigma_memorize, phase.sigma_condense))
    mem, cond = (np.array([unit[(n, d)][j] for n, d in zip(counts.tolist(), dims.tolist(),
                                                           strict=True)]) for j in (0, 1))
    # s * inf = inf also where the scale is nan (N_c = 1).
    mem = np.where(np.isinf(mem), np.inf, mem * scales)
    cond = np.where(np.isinf(cond), np.inf, cond * scales)
    return ConditionalThresholds(counts, dims, scales, mem, cond)


class ConditionalGap(NamedTuple):
    """Count-weighted REM losses of the optimal conditional denoiser.

    Attributes:
      sigmas: ``[K]`` float64 noise levels.
      train: ``[K]`` ``sum_c N_c L_train,c / N``.
      val: ``[K]`` ``sum_c M_c L_val,c / M`` (``M_c`` validation examples of condition c).
      gap: ``[K]`` ``val - train``.
      train_by_condition: ``[C, K]`` each condition's training loss.
      val_by_condition: ``[C, K]`` each condition's validation loss.
      memorized_fraction: ``[K]`` :meth:`ConditionalThresholds.memorized_fraction`.
      thresholds: the :class:`ConditionalThresholds`.
    """

    sigmas: Any
    train: Any
    val: Any
    gap: Any
    train_by_condition: Any
    val_by_condition: Any
    memorized_fraction: Any
    thresholds: ConditionalThresholds


def conditional_losses(sigmas, counts, dim, *, scale=1.0, val_counts=None) -> ConditionalGap:
    r"""High-dimensional limit of the conditional train/val losses, averaged over conditions.

    Every training example is denoised among the points of its own condition, so the
    training loss is the mixture of the per-condition curves of
    :func:`~jaxgap.theory.gaussian_losses` (``delta = 0``, ``num_train = N_c``,
    ``scale = s_c``) weighted by ``N_c``, and the validation loss the mixture weighted by the
    validation counts ``M_c``:

    .. math:: L_\mathrm{train}(\sigma) = \sum_c \frac{N_c}{N} L^{(N_c, s_c)}_\mathrm{train}(\sigma),
        \qquad
        L_\mathrm{val}(\sigma) = \sum_c \frac{M_c}{M} L^{(N_c, s_c)}_\mathrm{val}(\sigma).

    Args:
      sigmas: ``[K]`` noise levels > 0.
      counts: ``[C]`` positive integers ``N_c``.
      dim: ``d >= 1`` or ``[C]`` integers.
      scale: ``s > 0`` or ``[C]`` per-condition spreads (all finite and > 0: the
        validation loss of a one-point condition depends on its spread).
      val_counts: ``[C]`` non-negative integers ``M_c`` (default ``counts``), not all zero.

    Returns:
      :class:`ConditionalGap` (float64).

    Example:
      >>> from jaxgap.theory import conditional_losses
      >>> cg = conditional_losses([0.5, 2.0, 3.0, 8.0], [100, 10], 64)
      >>> cg.thresholds.sigma_memorize.round(3).tolist()
      [2.545, 3.751]
      >>> cg.memorized_fraction.round(4).tolist()  # at sigma = 3 only the 10 points: 10/110
      [1.0, 1.0, 0.0909, 0.0]
      >>> cg.train.round(4).tolist()  # memorized: 0; else s^2 sigma^2 / (s^2 + sigma^2)
      [0.0, 0.0, 0.8182, 0.9846]
    """
    sig = _sigmas(sigmas)
    th = conditional_thresholds(counts, dim, scale=scale)
    scales = _scales(scale, th.counts, need_from=1)
    if val_counts is None:
        weights_val = th.counts
    else:
        weights_val = _int_array(val_counts, "val_counts", minimum=0, size=th.counts.size)
        if weights_val.sum() == 0:
            raise ValueError("val_counts: expected at least one validation example, got all "
                             "zeros")
    curves: dict[tuple[int, int, float], tuple[np.ndarray, np.ndarray]] = {}
    for key in zip(th.counts.tolist(), th.dim.tolist(), scales.tolist(), strict=True):
        if key not in curves:
            cf = gaussian_losses(sig, delta=0.0, num_train=key[0], dim=key[1], scale=key[2])
            curves[key] = (cf.train, cf.val)
    keys = list(zip(th.counts.tolist(), th.dim.tolist(), scales.tolist(), strict=True))
    train_c = np.stack([curves[k][0] for k in keys])
    val_c = np.stack([curves[k][1] for k in keys])
    train = (th.counts[:, None] * train_c).sum(axis=0) / th.counts.sum()
    val = (weights_val[:, None] * val_c).sum(axis=0) / weights_val.sum()
    return ConditionalGap(sig, train, val, val - train, train_c, val_c,
                          th.memorized_fraction(sig), th)


# ----------------------------------------------------------------------------- measurement


class ConditionStats(NamedTuple):
    """Second moments of the training points of each condition (float64).

    Attributes:
      counts: ``[C]`` int64 points per condition ``N_c`` (0 for an id no point carries).
      spread: ``[C]`` within-condition per-dimension standard deviation
        ``sqrt(sum_i |y_i - mean_c|^2 / ((N_c - 1) d))`` (unbiased; ``nan`` for ``N_c <= 1``):
        the ``s_c`` of :func:`conditional_thresholds`.
      eigvals: ``[C, d]`` eigenvalues (descending) of each condition's covariance
        ``sum_i (y_i - mean_c)(y_i - mean_c)^T / N_c`` (the empirical distribution's own;
        rank ``<= N_c - 1``).
      effective_dim: ``[C]`` participation ratio ``(sum lambda)^2 / sum lambda^2`` (``nan``
        where all eigenvalues vanish; at most ``N_c - 1``).
    """

    counts: Any
    spread: Any
    eigvals: Any
    effective_dim: Any

    def annealed_loss(self, sigmas) -> np.ndarray:
        r"""The non-memorized (annealed) REM training loss of each condition, ``[C, K]``.

        .. math:: R_c(\sigma) = \frac{s_c^2 \sigma^2}{s_c^2 + \sigma^2}

        the limit's training loss above the threshold at ``delta = 0`` (there ``A = kappa =
        s^2 / (s^2 + sigma^2)`` in :func:`~jaxgap.theory.gaussian_losses`: the Wiener filter
        of ``N(mu_c, s_c^2 I)``), with ``s_c`` = :attr:`spread`; ``nan`` where ``N_c <= 1``.
        It is the reference of :func:`loss_onset`: in the limit the training loss is 0 below
        ``sigma_c`` and ``R_c`` above. At finite ``N_c`` the optimal denoiser's loss tends
        to ``(N_c - 1) / N_c * R_c`` as ``sigma -> inf`` (the condition's mean includes the
        query's own point).
        """
        var = _sigmas(sigmas)[None, :] ** 2
        s2 = self.spread[:, None] ** 2
        return s2 * var / (s2 + var)


def condition_stats(train, cond, *, num_conditions: int | None = None) -> ConditionStats:
    """Counts, within-condition spreads and covariance spectra of a conditioned training set.

    Args:
      train: ``[n, d]`` training points.
      cond: ``[n]`` integer condition ids in ``[0, num_conditions)``.
      num_conditions: number of ids ``C`` (default ``max(cond) + 1``).

    Returns:
      :class:`ConditionStats` (float64, NumPy).

    Example:
      >>> import numpy as np
      >>> from jaxgap.theory import condition_stats
      >>> st = condition_stats(np.array([[0.0, 0], [2, 0], [5, 5]]), np.array([0, 0, 1]))
      >>> st.counts, st.spread.round(3)  # sqrt(|y1 - y2|^2 / 2 / (1 * 2)) = 1
      (array([2, 1]), array([ 1., nan]))
    """
    x = np.asarray(train, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"train: expected a non-empty [n, d] array, got shape {list(x.shape)}")
    ids = _int_array(cond, "cond", minimum=0, size=x.shape[0])
    top = int(ids.max()) + 1
    if num_conditions is None:
        num_conditions = top
    elif (isinstance(num_conditions, bool) or not isinstance(num_conditions, (int, np.integer))
          or num_conditions < top):
        raise ValueError(f"num_conditions: expected an integer >= {top} (largest id + 1), got "
                         f"{num_conditions!r}")
    n, d = x.shape
    counts = np.bincount(ids, minlength=num_conditions).astype(np.int64)
    eig = np.zeros((num_conditions, d))
    for c in np.flatnonzero(counts):
        pts = x[ids == c]
        centred = pts - pts.mean(axis=0)[None, :]
        cov = centred.T @ centred / pts.shape[0]
        eig[c] = np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)
    total = eig.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt(total * counts / ((counts - 1) * d))
        eff = total**2 / (eig**2).sum(axis=1)
    spread = np.where(counts > 1, spread, np.nan)
    eff = np.where(total > 0, eff, np.nan)
    return ConditionStats(counts, spread, eig, eff)


def loss_onset(sigmas, loss, reference, *, fraction: float = 0.5) -> np.ndarray:
    r"""Onset of a training-loss collapse: the largest sigma with ``loss < fraction * ref``.

    With the ratio ``r(sigma) = loss / reference`` on the grid, take the largest grid sigma
    ``sigma_k`` where ``r < fraction`` and interpolate linearly in ``log sigma`` between it
    and the next grid sigma (where ``r >= fraction``) to the crossing ``r = fraction``.
    In the REM limit the training loss jumps from ``0`` to the reference at the
    memorization threshold, so the onset equals the threshold for every ``fraction`` in
    ``(0, 1)``; at finite ``d`` the jump is smeared and the fraction sets where in the
    smeared window the onset is read.

    Args:
      sigmas: ``[K]`` increasing noise levels > 0.
      loss: ``[..., K]`` measured training losses.
      reference: ``[..., K]`` (or broadcastable) reference losses > 0, e.g.
        :meth:`ConditionStats.annealed_loss`.
      fraction: the level in ``(0, 1)``.

    Returns:
      ``[...]`` float64 onsets: ``nan`` where ``r >= fraction`` on the whole grid, and
      ``max(sigmas)`` (a lower bound) where ``r < fraction`` at the top of the grid.

    Example:
      >>> import numpy as np
      >>> from jaxgap.theory import loss_onset
      >>> s = np.array([0.5, 1.0, 2.0, 4.0])
      >>> round(float(loss_onset(s, np.array([0.0, 0.2, 0.8, 1.0]), np.ones(4))), 6)  # sqrt(2)
      1.414214
    """
    sig = _sigmas(sigmas)
    if np.any(np.diff(sig) <= 0):
        raise ValueError("sigmas: expected strictly increasing values")
    fraction = positive_float(fraction, "fraction")
    if not fraction < 1:
        raise ValueError(f"fraction: expected a number in (0, 1), got {fraction!r}")
    loss = np.asarray(loss, dtype=np.float64)
    if loss.ndim == 0 or loss.shape[-1] != sig.size:
        raise ValueError(f"loss: expected shape [..., {sig.size}] (one value per sigma), got "
                         f"shape {list(loss.shape)}")
    ref = np.asarray(reference, dtype=np.float64)
    try:
        ref = np.broadcast_to(ref, loss.shape)
    except ValueError as err:
        raise ValueError(f"reference: expected a shape broadcastable to {list(loss.shape)}, "
                         f"got {list(ref.shape)}") from err
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = loss / ref
    below = ratio < fraction  # nan (reference 0) counts as not below
    k_last = sig.size - 1 - np.argmax(below[..., ::-1], axis=-1)
    any_below = below.any(axis=-1)
    top = k_last == sig.size - 1
    k_next = np.minimum(k_last + 1, sig.size - 1)
    r_lo = np.take_along_axis(ratio, k_last[..., None], axis=-1)[..., 0]
    r_hi = np.take_along_axis(ratio, k_next[..., None], axis=-1)[..., 0]
    log_s = np.log(sig)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip((fraction - r_lo) / (r_hi - r_lo), 0.0, 1.0)
    onset = np.exp(log_s[k_last] + t * (log_s[k_next] - log_s[k_last]))
    onset = np.where(top, sig[-1], onset)
    return np.where(any_below, onset, np.nan)
