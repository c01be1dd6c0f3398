"""Fixed-step solvers (EDM Algorithms 1 and 2) and :func:`sample`: see :mod:`jaxgap.sampling`."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from jaxgap import noise as _noise
from jaxgap._checks import (
    float_array,
    is_concrete,
    positive_float,
    positive_int,
    prng_key,
    shape_str,
)
from jaxgap._jit import jit
from jaxgap._protocol import bind, check_denoiser

__all__ = ["METHODS", "Trajectory", "edm_stochastic", "euler", "heun", "sample"]

METHODS = ("heun", "euler", "edm")
"""Names accepted by :func:`sample`'s ``method``."""

_SQRT2_M1 = math.sqrt(2.0) - 1.0  # EDM's cap on gamma_i: the churned sigma is at most sqrt(2) t_i


class Trajectory(NamedTuple):
    r"""States of a sampler along its schedule.

    With a schedule ``sigmas [S+1]`` (``S`` steps) and states ``x_init: [..., d]``:

    Attributes:
      sigma: ``[S+1]`` the schedule, ``sigma[0]`` the start and ``sigma[-1]`` the end (often 0).
      x: ``[S+1, ..., d]`` the state at each ``sigma[i]``: ``x[0]`` is ``x_init`` and
        ``x[-1]`` the returned end state; for :func:`edm_stochastic`, ``x[i]`` is the state
        at ``sigma[i]`` before churn noise is added.
      denoised: ``[S, ..., d]`` the denoiser's output at the start of step ``i``, the first
        evaluation of that step: ``D(x[i], sigma[i])`` for :func:`euler` and :func:`heun`,
        ``D(x_hat_i, sigma_hat[i])`` (the churned state) for :func:`edm_stochastic`.
      sigma_hat: ``[S]`` the noise level at which ``denoised[i]`` was evaluated:
        ``sigma[:-1]`` for :func:`euler` and :func:`heun`,
        :math:`\hat t_i = (1 + \gamma_i) t_i` for :func:`edm_stochastic`.
    """

    sigma: Float[Array, " S1"]
    x: Float[Array, "S1 *batch d"]
    denoised: Float[Array, "S *batch d"]
    sigma_hat: Float[Array, " S"]


# ------------------------------------------------------------------------------------------
# One step (one sigma pair), EDM Algorithms 1 and 2
# ------------------------------------------------------------------------------------------

def _heun_step(denoiser, x, sigma_cur, sigma_next, *, second_order: bool):
    """One step from ``sigma_cur`` to ``sigma_next``; returns ``(x_next, D(x, sigma_cur))``.

    ``second_order=False`` is Euler's method; ``True`` is Heun's method with the correction
    skipped when ``sigma_next == 0`` (EDM Algorithm 1, lines 4-8).
    """
    # Alg. 1 l.4: evaluate dx/dt at t_i: d_i = (x_i - D(x_i; t_i)) / t_i
    denoised = denoiser(x, sigma_cur)
    d_cur = (x - denoised) / sigma_cur
    # Alg. 1 l.5: take an Euler step from t_i to t_{i+1}: x_{i+1} = x_i + (t_{i+1} - t_i) d_i
    x_next = x + (sigma_next - sigma_cur) * d_cur
    if not second_order:
        return x_next, denoised

    def correct(x_euler):
        # Alg. 1 l.7: evaluate dx/dt at t_{i+1}: d'_i = (x_{i+1} - D(x_{i+1}; t_{i+1})) / t_{i+1}
        # (sigma_next > 0 here; the guard only keeps a vmapped select free of 0/0.)
        sigma = jnp.where(sigma_next > 0, sigma_next, jnp.ones_like(sigma_next))
        d_next = (x_euler - denoiser(x_euler, sigma)) / sigma
        # Alg. 1 l.8: apply the trapezoidal rule: x_{i+1} = x_i + (t_{i+1} - t_i)(d_i/2 + d'_i/2)
        return x + (sigma_next - sigma_cur) * (0.5 * d_cur + 0.5 * d_next)

    # Alg. 1 l.6: if t_{i+1} != 0, apply the 2nd-order correction (else keep the Euler step)
    x_next = jax.lax.cond(sigma_next != 0, correct, lambda x_euler: x_euler, x_next)
    return x_next, denoised


def _churn_noise(key, step, index, shape, dtype):
    """Standard normal ``[..., d]`` for step ``step``: row ``j`` from ``fold_in(fold_in(key,
    step), index[j])``, a function of ``(key, step, index[j])`` only."""
    step_key = jax.random.fold_in(key, step)
    flat = jnp.reshape(index, (-1,))
    eps = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(step_key, j),
                                               shape[-1:], dtype))(flat)
    return jnp.reshape(eps, shape)


def _solve(denoiser, x_init, sigmas, *, method: str, return_trajectory: bool,
           key=None, index=None, churn=None, cond=None):
    """``lax.scan`` of one method over the ``(sigma_cur, sigma_next)`` pairs of ``sigmas``.

    ``method`` is ``"euler"``, ``"heun"`` or ``"edm"``; for ``"edm"``, ``key`` (the churn
    key), ``index`` (global sample indices, ``x_init.shape[:-1]``) and
    ``churn = (s_churn, s_min, s_max, s_noise)`` are used. ``cond`` (condition ids
    broadcastable to ``x_init.shape[:-1]``) is passed to a conditional denoiser.
    """
    denoiser = bind(denoiser, cond)
    num_steps = sigmas.shape[0] - 1
    steps = (sigmas[:-1], sigmas[1:], jnp.arange(num_steps))

    if method == "edm":
        s_churn, s_min, s_max, s_noise = churn
        gamma_max = jnp.minimum(s_churn / num_steps, _SQRT2_M1)

    def body(x, step):
        sigma_cur, sigma_next, i = step
        if method == "edm":
            # Alg. 2 l.5: gamma_i = min(S_churn / N, sqrt(2) - 1) if t_i in [S_tmin, S_tmax]
            in_range = (sigma_cur >= s_min) & (sigma_cur <= s_max)
            gamma = jnp.where(in_range, gamma_max, jnp.zeros_like(gamma_max))
            # Alg. 2 l.6: sample eps_i ~ N(0, S_noise^2 I) (per-sample keys)
            eps = s_noise * _churn_noise(key, i, index, x.shape, x.dtype)
            # Alg. 2 l.7: select temporarily increased noise level t_hat_i = t_i + gamma_i t_i
            sigma_hat = sigma_cur + gamma * sigma_cur
            # Alg. 2 l.8: add new noise to move from t_i to t_hat_i:
            # x_hat_i = x_i + sqrt(t_hat_i^2 - t_i^2) eps_i, with t_hat_i^2 - t_i^2 written as
            # t_i^2 gamma_i (2 + gamma_i): exactly 0 without churn (a difference of squares can
            # round to a negative number under fused multiply-adds)
            x_hat = x + sigma_cur * jnp.sqrt(gamma * (2.0 + gamma)) * eps
            # Alg. 2 l.9-11: Heun step from t_hat_i to t_{i+1} (Euler if t_{i+1} = 0)
            x_next, denoised = _heun_step(denoiser, x_hat, sigma_hat, sigma_next,
                                          second_order=True)
        else:
            sigma_hat = sigma_cur
            x_next, denoised = _heun_step(denoiser, x, sigma_cur, sigma_next,
                                          second_order=method == "heun")
        out = (x_next, denoised, sigma_hat) if return_trajectory else None
        return x_next, out

    x_end, ys = jax.lax.scan(body, x_init, steps)
    if not return_trajectory:
        return x_end
    xs, denoised, sigma_hat = ys
    x = jnp.concatenate([x_init[None], xs], axis=0)
    return Trajectory(sigma=sigmas, x=x, denoised=denoised, sigma_hat=sigma_hat)


_run = jit(_solve)
"""The compiled :func:`_solve`: the one jit boundary of the fixed-step solvers."""


# ------------------------------------------------------------------------------------------
# Validation (public boundary, outside jit)
# ------------------------------------------------------------------------------------------

def _check_x(x_init, denoiser, cond):
    """``x_init [..., d]`` checked against the denoiser; returns ``(x, cond)``."""
    x = float_array(x_init, "x_init", min_ndim=1)
    cond = check_denoiser(denoiser, cond, x.shape[:-1])
    dim = getattr(denoiser, "dim", None)
    if dim is not None and x.shape[-1] != dim:
        raise ValueError(f"x_init: expected last dimension d = {dim} (the denoiser's dim), "
                         f"got shape {shape_str(x.shape)}")
    return x, cond


def _check_sigmas(sigmas, dtype):
    """A strictly decreasing schedule ``[S+1]``, values > 0 and finite but a single final 0."""
    sigmas = float_array(sigmas, "sigmas", ndim=1, allow_empty=True)
    if sigmas.shape[0] < 2:
        raise ValueError(f"sigmas: expected at least 2 noise levels (one step), "
                         f"got shape {shape_str(sigmas.shape)}")
    sigmas = sigmas.astype(dtype)
    if is_concrete(sigmas):
        v = np.asarray(sigmas)
        bad = np.flatnonzero(~(v[:-1] > 0))
        if bad.size or not v[-1] >= 0:
            i = int(bad[0]) if bad.size else v.shape[0] - 1
            raise ValueError(f"sigmas: expected values > 0 (only the last may be exactly 0), "
                             f"got sigmas[{i}] = {float(v[i])!r}")
        up = np.flatnonzero(~(np.diff(v) < 0))
        if up.size:
            i = int(up[0])
            raise ValueError(f"sigmas: expected a strictly decreasing schedule, got "
                             f"sigmas[{i}] = {float(v[i])!r} <= sigmas[{i + 1}] = "
                             f"{float(v[i + 1])!r} (in {sigmas.dtype})")
    return sigmas


def _check_churn(s_churn, s_min, s_max, s_noise, dtype):
    s_churn = positive_float(s_churn, "s_churn", allow_zero=True)
    s_min = positive_float(s_min, "s_min", allow_zero=True)
    try:
        s_max_v = float(s_max)
    except (TypeError, ValueError) as err:
        raise ValueError(f"s_max: expected a number > 0 or inf, got {s_max!r}") from err
    if not (s_max_v > 0):  # NaN fails too
        raise ValueError(f"s_max: expected a number > 0 or inf, got {s_max!r}")
    if s_max_v < s_min:
        raise ValueError(f"s_max: expected a value >= s_min = {s_min!r}, got {s_max!r}")
    s_noise = positive_float(s_noise, "s_noise", allow_zero=True)
    # Traced arguments: new values re-use the compiled program.
    return tuple(jnp.asarray(v, dtype) for v in (s_churn, s_min, s_max_v, s_noise))


def _sample_index(batch_shape):
    size = math.prod(batch_shape)
    return jnp.arange(size, dtype=jnp.uint32).reshape(batch_shape)


# ------------------------------------------------------------------------------------------
# Public fixed-step solvers
# ------------------------------------------------------------------------------------------

def euler(denoiser, x_init: Float[ArrayLike, "*batch d"], sigmas: Float[ArrayLike, " S1"], *,
          cond=None, return_trajectory: bool = False):
    r"""Euler's method for the probability-flow ODE over an explicit schedule.

    .. math::
        d_i = \frac{x_i - D(x_i, \sigma_i)}{\sigma_i}, \qquad
        x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\, d_i, \qquad i = 0, \dots, S - 1.

    A first-order method: the global error at a fixed end point is :math:`O(1/S)`. A step to
    :math:`\sigma_{i+1} = 0` returns :math:`D(x_i, \sigma_i)`. One denoiser evaluation per step.

    Args:
      denoiser: any pytree callable ``D(x, sigma)`` (called with ``x: [..., d]`` and a scalar
        ``sigma``); its ``dim`` attribute, when present, must equal ``d``.
      x_init: ``[..., d]`` states at ``sigmas[0]`` (any batch shape).
      cond: condition ids broadcastable to ``x_init.shape[:-1]``, for a conditional
        denoiser ``D(x, sigma, cond)``.
      sigmas: ``[S+1]`` strictly decreasing noise levels, positive and finite, the last
        optionally an exact 0; ``S >= 1`` steps.
      return_trajectory: return a :class:`Trajectory` instead of the end state.

    Returns:
      ``[..., d]`` states at ``sigmas[-1]``, or a :class:`Trajectory` with ``sigma [S+1]``,
      ``x [S+1, ..., d]`` (``x[-1]`` the end state), ``denoised [S, ..., d]`` and
      ``sigma_hat [S]`` (``= sigmas[:-1]``).

    Raises:
      ValueError: naming ``denoiser``, ``x_init`` or ``sigmas``.

    Example:
      >>> import jax.numpy as jnp
      >>> D = lambda x, s: 0.5 * x  # any callable D(x, sigma)
      >>> euler(D, jnp.ones((3, 2)), jnp.array([2.0, 1.0])).tolist()  # x + (1 - 2)(x - D)/2
      [[0.75, 0.75], [0.75, 0.75], [0.75, 0.75]]

    References:
      Karras et al. (2022), Algorithm 1 without its second-order correction (lines 6-8).
    """
    x, cond = _check_x(x_init, denoiser, cond)
    sigmas = _check_sigmas(sigmas, x.dtype)
    return _run(denoiser, x, sigmas, method="euler", return_trajectory=bool(return_trajectory),
                cond=cond)


def heun(denoiser, x_init: Float[ArrayLike, "*batch d"], sigmas: Float[ArrayLike, " S1"], *,
         cond=None, return_trajectory: bool = False):
    r"""Heun's second-order method for the probability-flow ODE (EDM Algorithm 1).

    .. math::
        d_i &= \frac{x_i - D(x_i, \sigma_i)}{\sigma_i}, \qquad
        \tilde x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\, d_i, \\
        d'_i &= \frac{\tilde x_{i+1} - D(\tilde x_{i+1}, \sigma_{i+1})}{\sigma_{i+1}}, \qquad
        x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\, \tfrac12 (d_i + d'_i),

    with the correction skipped (an Euler step, :math:`x_S = D(x_{S-1}, \sigma_{S-1})`) when
    :math:`\sigma_{i+1} = 0`. Global error :math:`O(1/S^2)` at an end point ``> 0``; two
    denoiser evaluations per step (one for a step to 0), so EDM's 18 sigmas plus 0 cost 35.

    Args:
      denoiser: any pytree callable ``D(x, sigma)`` (called with ``x: [..., d]`` and a scalar
        ``sigma``); its ``dim`` attribute, when present, must equal ``d``.
      x_init: ``[..., d]`` states at ``sigmas[0]``.
      sigmas: ``[S+1]`` strictly decreasing noise levels, positive and finite, the last
        optionally an exact 0 (as EDM appends).
      cond: condition ids broadcastable to ``x_init.shape[:-1]``, for a conditional
        denoiser.
      return_trajectory: return a :class:`Trajectory` instead of the end state.

    Returns:
      ``[..., d]`` states at ``sigmas[-1]``, or a :class:`Trajectory` with ``sigma [S+1]``,
      ``x [S+1, ..., d]``, ``denoised [S, ..., d]`` (``D(x[i], sigma[i])``, the first
      evaluation of each step) and ``sigma_hat [S]`` (``= sigmas[:-1]``).

    Raises:
      ValueError: naming ``denoiser``, ``x_init`` or ``sigmas``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgap import noise
      >>> D = lambda x, s: x / (1.0 + s**2)  # the optimal denoiser of N(0, I)
      >>> sigmas = jnp.append(noise.karras_sigmas(18), 0.0)
      >>> x0 = heun(D, 80.0 * jax.random.normal(jax.random.key(0), (16, 2)), sigmas)
      >>> x0.shape
      (16, 2)

    References:
      Karras et al. (2022), Algorithm 1 ("Deterministic sampling using Heun's 2nd order
      method with arbitrary sigma(t) and s(t)"), with sigma(t) = t and s(t) = 1.
    """
    x, cond = _check_x(x_init, denoiser, cond)
    sigmas = _check_sigmas(sigmas, x.dtype)
    return _run(denoiser, x, sigmas, method="heun", return_trajectory=bool(return_trajectory),
                cond=cond)


def edm_stochastic(key: PRNGKeyArray, denoiser, x_init: Float[ArrayLike, "*batch d"],
                   sigmas: Float[ArrayLike, " S1"], *, s_churn: float = 0.0, s_min: float = 0.0,
                   s_max: float = math.inf, s_noise: float = 1.0, cond=None,
                   return_trajectory: bool = False):
    r"""EDM's stochastic sampler (Algorithm 2): Heun steps with churn noise added first.

    For :math:`i = 0, \dots, N - 1` (``N = S`` steps):

    .. math::
        \gamma_i &= \begin{cases} \min(S_\mathrm{churn}/N, \sqrt2 - 1) &
                    t_i \in [S_\mathrm{tmin}, S_\mathrm{tmax}] \\ 0 & \text{otherwise}
                    \end{cases}, \qquad
        \epsilon_i \sim \mathcal N(0, S_\mathrm{noise}^2 I), \\
        \hat t_i &= t_i + \gamma_i t_i, \qquad
        \hat x_i = x_i + \sqrt{\hat t_i^2 - t_i^2}\, \epsilon_i,

    then one :func:`heun` step from :math:`(\hat x_i, \hat t_i)` to :math:`t_{i+1}` (Euler when
    :math:`t_{i+1} = 0`). With ``s_churn = 0`` no noise is added and the result equals
    :func:`heun`'s exactly.

    The noise of step ``i`` for the sample at flat batch index ``j`` (row-major over
    ``x_init.shape[:-1]``) is ``normal(fold_in(fold_in(key, i), j), [d])``: it depends on
    ``(key, i, j)`` only, not on the batch size.

    Args:
      key: PRNG key (for the churn noise only).
      denoiser: any pytree callable ``D(x, sigma)``.
      x_init: ``[..., d]`` states at ``sigmas[0]``.
      sigmas: ``[S+1]`` strictly decreasing noise levels ``t_i``, positive and finite, the last
        optionally an exact 0.
      s_churn: :math:`S_\mathrm{churn} \ge 0`, the total amount of churn (EDM uses 0-80).
      s_min: :math:`S_\mathrm{tmin} \ge 0`, churn only where ``t_i >= s_min``.
      s_max: :math:`S_\mathrm{tmax}`, churn only where ``t_i <= s_max`` (may be ``inf``).
      s_noise: :math:`S_\mathrm{noise} \ge 0`, the scale of the added noise (EDM: 1.0-1.007).
      cond: condition ids broadcastable to ``x_init.shape[:-1]``, for a conditional
        denoiser.
      return_trajectory: return a :class:`Trajectory` instead of the end state.

    Returns:
      ``[..., d]`` states at ``sigmas[-1]``, or a :class:`Trajectory` whose ``x[i]`` is the
      state at ``t_i`` before churn, ``denoised[i] = D(x_hat_i, t_hat_i)`` and
      ``sigma_hat[i] = t_hat_i``.

    Raises:
      ValueError: naming ``key``, ``denoiser``, ``x_init``, ``sigmas`` or a churn parameter.

    References:
      Karras et al. (2022), Algorithm 2 ("Our stochastic sampler with sigma(t) = t and
      s(t) = 1") and Table 5 (S_churn, S_tmin, S_tmax, S_noise).
    """
    key = prng_key(key)
    x, cond = _check_x(x_init, denoiser, cond)
    sigmas = _check_sigmas(sigmas, x.dtype)
    churn = _check_churn(s_churn, s_min, s_max, s_noise, x.dtype)
    return _run(denoiser, x, sigmas, method="edm", return_trajectory=bool(return_trajectory),
                key=key, index=_sample_index(x.shape[:-1]), churn=churn, cond=cond)


# ------------------------------------------------------------------------------------------
# Sampling from noise: the outer, jit-compiled entry point
# ------------------------------------------------------------------------------------------

def _initial_noise(key, index, dim, dtype):
    """``[B, d]`` standard normal, row ``j`` from ``fold_in(key, index[j])``."""
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (dim,), dtype))(index)


@jit
def _sample_core(key, denoiser, sigmas, churn, cond, *, num, dim, method, return_trajectory,
                 batch_size):
    key_init, key_churn = jax.random.split(key)

    def run(index):  # index [B] global sample indices
        # EDM Alg. 1/2 l.1: sample x_0 ~ N(0, t_0^2 I)
        x_init = sigmas[0] * _initial_noise(key_init, index, dim, sigmas.dtype)
        c = None if cond is None else jnp.take(cond, index, mode="clip")
        return _solve(denoiser, x_init, sigmas, method=method,
                      return_trajectory=return_trajectory, key=key_churn, index=index,
                      churn=churn, cond=c)

    if batch_size >= num:
        return run(jnp.arange(num, dtype=jnp.uint32))
    num_batches = -(-num // batch_size)
    index = jnp.arange(num_batches * batch_size, dtype=jnp.uint32)
    out = jax.lax.map(run, index.reshape(num_batches, batch_size))
    if not return_trajectory:
        return out.reshape(-1, dim)[:num]  # [nb, B, d] -> [num, d]

    def unbatch(a):  # [nb, S', B, d] -> [S', num, d]
        a = jnp.moveaxis(a, 0, 1)
        return a.reshape(a.shape[0], -1, dim)[:, :num]

    return Trajectory(sigma=out.sigma[0], x=unbatch(out.x), denoised=unbatch(out.denoised),
                      sigma_hat=out.sigma_hat[0])


def sample(key: PRNGKeyArray, denoiser, num: int, dim: int, *, num_steps: int = 18,
           sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
           method: str = "heun", s_churn: float = 0.0, s_min: float = 0.0,
           s_max: float = math.inf, s_noise: float = 1.0, cond=None,
           return_trajectory: bool = False, batch_size: int | None = None):
    r"""Draw ``num`` samples: integrate pure noise over EDM's schedule to ``sigma = 0``.

    .. math::
        x_0^{(i)} = \sigma_\max\, \epsilon^{(i)}, \quad
        \epsilon^{(i)} = \mathrm{normal}(\mathrm{fold\_in}(k_\mathrm{init}, i)), \qquad
        t_j = \Bigl(\sigma_\max^{1/\rho} + \tfrac{j}{K-1}
              (\sigma_\min^{1/\rho} - \sigma_\max^{1/\rho})\Bigr)^\rho,\ j < K,
        \quad t_K = 0,

    with ``K = num_steps`` and ``(k_init, k_churn) = split(key)``; the states are then carried
    from ``t_0 = sigma_max`` to ``t_K = 0`` by :func:`heun` (EDM's deterministic sampler,
    ``2K - 1`` denoiser evaluations), :func:`euler` (``K``) or :func:`edm_stochastic` (churn
    noise from ``k_churn`` with the global sample index). Sample ``i`` depends on
    ``(key, i)`` only: not on ``num``, ``batch_size`` or the device count.

    The whole computation is one ``jax.jit`` program, compiled once per
    ``(num, dim, num_steps, method, return_trajectory, batch_size)`` and denoiser structure;
    new keys, parameter values, ``sigma_min``/``sigma_max``/``rho`` and churn values re-use
    it.

    Args:
      key: PRNG key.
      denoiser: any pytree callable ``D(x, sigma)``; its ``dim``, when present, must be ``dim``.
      num: number of samples, ``>= 1``.
      dim: data dimension ``d``.
      num_steps: number of noise levels ``K >= 2`` before the final 0 (EDM: 18), so ``K``
        steps.
      sigma_min: smallest nonzero level (EDM: 0.002).
      sigma_max: largest level and scale of the initial noise (EDM: 80).
      rho: schedule exponent (EDM: 7).
      method: ``"heun"`` (default), ``"euler"`` or ``"edm"`` (:func:`edm_stochastic`).
      s_churn, s_min, s_max, s_noise: churn parameters of ``method="edm"`` (see
        :func:`edm_stochastic`); ``s_churn`` must be 0 for the deterministic methods.
      cond: ``[num]`` (or scalar) condition ids of the samples, for a conditional denoiser.
      return_trajectory: return a :class:`Trajectory` with ``x [K+1, num, dim]``.
      batch_size: samples per batch (``lax.map`` over batches bounds memory); ``None`` runs
        all ``num`` at once.

    Returns:
      ``[num, dim]`` samples, or a :class:`Trajectory` (``sigma [K+1]``,
      ``x [K+1, num, dim]``, ``denoised [K, num, dim]``, ``sigma_hat [K]``).

    Raises:
      ValueError: naming the argument (``num``, ``dim``, ``method``, ``batch_size``, ...).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgap.denoisers import GaussianDenoiser
      >>> x = sample(jax.random.PRNGKey(0), GaussianDenoiser(jnp.zeros(2), jnp.eye(2)), 1000, 2)
      >>> bool(abs(float(x.std()) - 1.0) < 0.1)  # samples of N(0, I)
      True

    References:
      Karras et al. (2022), Algorithms 1 and 2, Eq. (5) and Table 1 (EDM's schedule).
    """
    key = prng_key(key)
    num = positive_int(num, "num")
    cond = check_denoiser(denoiser, cond, (num,))
    cond = None if cond is None else jnp.broadcast_to(cond, (num,))
    den_dim = getattr(denoiser, "dim", None)
    dim = positive_int(dim, "dim")
    if den_dim is not None and dim != den_dim:
        raise ValueError(f"dim: expected {den_dim} (the denoiser's dim), got {dim}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    num_steps = positive_int(num_steps, "num_steps", minimum=2)
    batch_size = num if batch_size is None else positive_int(batch_size, "batch_size")
    dtype = jnp.result_type(float)
    churn = _check_churn(s_churn, s_min, s_max, s_noise, dtype)
    if method != "edm" and float(s_churn) != 0.0:
        raise ValueError(f"s_churn: expected 0 with method={method!r} (churn needs "
                         f"method='edm'), got {s_churn!r}")
    sigmas = _noise.karras_sigmas(num_steps, sigma_min, sigma_max, rho)
    sigmas = jnp.concatenate([sigmas, jnp.zeros((1,), sigmas.dtype)]).astype(dtype)
    sigmas = _check_sigmas(sigmas, dtype)  # strictly decreasing after rounding
    return _sample_core(key, denoiser, sigmas, churn, cond, num=num, dim=dim, method=method,
                        return_trajectory=bool(return_trajectory), batch_size=batch_size)
