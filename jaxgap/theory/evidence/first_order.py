r"""Where the expansion of the position-error loss in ``delta^2`` holds (first order, second
order), against the exact loss with the same noise."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap._checks import prng_key
from jaxgap.denoisers import EmpiricalDenoiser
from jaxgap.losses import denoising_loss
from jaxgap.theory.error_models import PositionError, loss_expansion, position_error_field
from jaxgap.theory.evidence._args import amplitudes, sigma_grid, train_val

__all__ = ["FirstOrderCheck", "FirstOrderGap", "first_order_check", "first_order_gap"]


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


def first_order_check(key, train: Float[ArrayLike, "n d"], data: Float[ArrayLike, "m d"],
                      delta: float, sigmas: Float[ArrayLike, " k"], *, num_noise: int = 1,
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
      key: PRNG key (the noise of :func:`jaxgap.losses.denoising_loss`).
      train: ``[N, d]`` training points.
      data: ``[n, d]`` evaluation points (``train`` itself or held-out data).
      delta: amplitude ``>= 0``.
      sigmas: ``[K]`` noise levels ``> 0``.
      num_noise, batch_size: as in :func:`jaxgap.losses.denoising_loss`.

    Returns:
      :class:`FirstOrderCheck`.

    Example:
      >>> import jax, numpy as np
      >>> from jaxgap.theory import first_order_check
      >>> train = np.random.default_rng(0).normal(size=(16, 2))
      >>> fo = first_order_check(jax.random.key(0), train, train + 0.5, 0.05, [1.0, 2.0])
      >>> print(np.all(fo.rel_first < 0.1))  # sigma >> delta: the first order holds
      True
    """
    key = prng_key(key)
    train, data = train_val(train, data, "data")
    delta = float(amplitudes([delta], "delta")[0])
    s = sigma_grid(sigmas)
    sig = jnp.asarray(s, train.dtype)
    exact = np.asarray(denoising_loss(key, PositionError(train, delta), data, sig,
                                      num_noise=num_noise, batch_size=batch_size), np.float64)
    terms = loss_expansion(key, EmpiricalDenoiser(train), position_error_field(train), data,
                           sig, num_noise=num_noise, batch_size=batch_size)
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


def first_order_gap(key, train: Float[ArrayLike, "n d"], val: Float[ArrayLike, "m d"],
                    delta: float, sigmas: Float[ArrayLike, " k"], *, num_noise: int = 1,
                    batch_size: int | None = None) -> FirstOrderGap:
    r""":func:`first_order_check` on ``train`` and ``val``: where the gap expansion holds.

    The key is split into a train and a validation key as in
    :func:`jaxgap.losses.gap_curve`, so ``gap_exact`` is the gap curve of
    ``PositionError(train, delta)`` with the same key.

    Args:
      key: PRNG key.
      train: ``[N, d]`` training points.
      val: ``[M, d]`` held-out points.
      delta, sigmas, num_noise, batch_size: as in :func:`first_order_check`.

    Returns:
      :class:`FirstOrderGap`.
    """
    key = prng_key(key)
    train, val = train_val(train, val)
    k_train, k_val = jax.random.split(key)
    kw = dict(num_noise=num_noise, batch_size=batch_size)
    tr = first_order_check(k_train, train, train, delta, sigmas, **kw)
    va = first_order_check(k_val, train, val, delta, sigmas, **kw)
    gaps = [va.base - tr.base, va.exact - tr.exact, va.first - tr.first,
            va.second - tr.second]
    return FirstOrderGap(tr, va, *gaps, _rel(gaps[2], gaps[1], gaps[0]),
                         _rel(gaps[3], gaps[1], gaps[0]))
