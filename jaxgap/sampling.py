r"""Samplers of the probability-flow ODE and EDM's stochastic sampler, for any denoiser.

EDM convention (Karras et al., 2022): a state at noise level :math:`\sigma` is
``x_sigma = x0 + sigma * eps``, and the probability-flow ODE that carries the noisy
distributions :math:`p_\sigma` into each other is

.. math:: \frac{dx}{d\sigma} = \frac{x - D(x, \sigma)}{\sigma}
    = -\sigma\, \nabla_x \log p_\sigma(x),

or, in :math:`\log\sigma` (better conditioned: the right-hand side stays of order ``|x|``),

.. math:: \frac{dx}{d\log\sigma} = x - D(x, \sigma).

Entry points:

- :func:`euler`, :func:`heun`: fixed-step solvers of the ODE over an explicit schedule
  ``sigmas [S+1]`` (EDM Algorithm 1; Heun's last step to an exact 0 is an Euler step).
- :func:`edm_stochastic`: EDM Algorithm 2 (Heun with "churn": noise is added before each
  step); with ``s_churn=0`` it equals :func:`heun` exactly.
- :func:`reference_solve`: an error-controlled solution of the same ODE with diffrax, the
  reference against which fixed-step samplers are measured.
- :func:`sample`: draw ``num`` samples from ``N(0, sigma_max^2 I)`` and integrate them over
  EDM's schedule (:func:`jaxgap.noise.karras_sigmas` plus a final 0), jit-compiled once per
  ``(num, dim, method, num_steps)``.

Every solver takes any pytree callable ``D(x, sigma)`` obeying jaxgap's protocol; the
denoiser is called with ``x: [..., d]`` and a scalar ``sigma``. Randomness is per sample:
sample ``i`` uses keys derived from ``fold_in(key, i)`` only, so results do not depend on the
number of samples or the batch size.

Validation happens at the public boundary, outside jit; a failed check raises ``ValueError``
with the message ``"<argument>: expected ..., got ..."``. Inside a caller's ``jit`` the value
checks of traced arguments are skipped (shapes are still checked).

References:
  T. Karras, M. Aittala, T. Aila, S. Laine. Elucidating the Design Space of Diffusion-Based
  Generative Models. NeurIPS 2022 (arXiv:2206.00364), Algorithms 1 and 2, Eq. (4)-(5).
  Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. Score-Based
  Generative Modeling through Stochastic Differential Equations. ICLR 2021 (probability flow).
  P. Kidger. On Neural Differential Equations. PhD thesis, 2021 (diffrax).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import diffrax
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

__all__ = [
    "METHODS",
    "Trajectory",
    "edm_stochastic",
    "euler",
    "heun",
    "reference_solve",
    "sample",
]

METHODS = ("heun", "euler", "edm")
"""Names accepted by :func:`sample`'s ``method``."""

_SQRT2_M1 = math.sqrt(2.0) - 1.0  # EDM's cap on gamma_i: the churned sigma is at most sqrt(2) t_i

_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
}


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
# The denoiser as a jit argument: array leaves traced, everything else static
# ------------------------------------------------------------------------------------------

def _is_array(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


class _Static:
    """The non-array part of a denoiser pytree: its treedef and its non-array leaves.

    Hashable (for ``jax.jit``'s static arguments), so a plain function denoiser, a closed-form
    denoiser or an ``nnx`` module all compile once per structure and re-use the program for
    new parameter values.
    """

    def __init__(self, treedef, leaves):
        self.treedef = treedef
        self.leaves = leaves

    def _key(self):
        return (self.treedef, tuple((type(v), v) for v in self.leaves))

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _Static) and self._key() == other._key()

    def merge(self, dynamic):
        leaves = [d if s is None else s for d, s in zip(dynamic, self.leaves, strict=True)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _partition(denoiser) -> tuple[list, _Static]:
    leaves, treedef = jax.tree_util.tree_flatten(denoiser)
    dynamic = [v if _is_array(v) else None for v in leaves]
    static = _Static(treedef, tuple(None if _is_array(v) else v for v in leaves))
    return dynamic, static


def _hashable(static: _Static) -> bool:
    try:
        hash(static)
    except TypeError:
        return False
    return True


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
           key=None, index=None, churn=None):
    """``lax.scan`` of one method over the ``(sigma_cur, sigma_next)`` pairs of ``sigmas``.

    ``method`` is ``"euler"``, ``"heun"`` or ``"edm"``; for ``"edm"``, ``key`` (the churn
    key), ``index`` (global sample indices, ``x_init.shape[:-1]``) and
    ``churn = (s_churn, s_min, s_max, s_noise)`` are used.
    """
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


def _solve_split(dynamic, static, x_init, sigmas, key, index, churn, *, method,
                 return_trajectory):
    return _solve(static.merge(dynamic), x_init, sigmas, method=method,
                  return_trajectory=return_trajectory, key=key, index=index, churn=churn)


_solve_jit = jax.jit(_solve_split, static_argnames=("static", "method", "return_trajectory"))


def _run(denoiser, x_init, sigmas, *, method, return_trajectory, key=None, index=None,
         churn=None):
    """Compiled :func:`_solve` (the denoiser's array leaves traced, the rest static)."""
    dynamic, static = _partition(denoiser)
    if not _hashable(static):  # an unhashable non-array leaf: run uncompiled (still correct)
        return _solve(denoiser, x_init, sigmas, method=method,
                      return_trajectory=return_trajectory, key=key, index=index, churn=churn)
    return _solve_jit(dynamic, static, x_init, sigmas, key, index, churn, method=method,
                      return_trajectory=return_trajectory)


# ------------------------------------------------------------------------------------------
# Validation (public boundary, outside jit)
# ------------------------------------------------------------------------------------------

def _check_denoiser(denoiser):
    if not callable(denoiser):
        raise ValueError(
            f"denoiser: expected a callable D(x, sigma), got {type(denoiser).__name__}")
    return getattr(denoiser, "dim", None)


def _check_x(x_init, denoiser):
    dim = _check_denoiser(denoiser)
    x = float_array(x_init, "x_init", min_ndim=1)
    if dim is not None and x.shape[-1] != dim:
        raise ValueError(f"x_init: expected last dimension d = {dim} (the denoiser's dim), "
                         f"got shape {shape_str(x.shape)}")
    return x


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
          return_trajectory: bool = False):
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
      >>> x = euler(D, x_init, jnp.geomspace(80.0, 0.002, 256))  # doctest: +SKIP

    References:
      Karras et al. (2022), Algorithm 1 without its second-order correction (lines 6-8).
    """
    x = _check_x(x_init, denoiser)
    sigmas = _check_sigmas(sigmas, x.dtype)
    return _run(denoiser, x, sigmas, method="euler", return_trajectory=bool(return_trajectory))


def heun(denoiser, x_init: Float[ArrayLike, "*batch d"], sigmas: Float[ArrayLike, " S1"], *,
         return_trajectory: bool = False):
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
      return_trajectory: return a :class:`Trajectory` instead of the end state.

    Returns:
      ``[..., d]`` states at ``sigmas[-1]``, or a :class:`Trajectory` with ``sigma [S+1]``,
      ``x [S+1, ..., d]``, ``denoised [S, ..., d]`` (``D(x[i], sigma[i])``, the first
      evaluation of each step) and ``sigma_hat [S]`` (``= sigmas[:-1]``).

    Raises:
      ValueError: naming ``denoiser``, ``x_init`` or ``sigmas``.

    Example:
      >>> sigmas = jnp.append(noise.karras_sigmas(18), 0.0)  # doctest: +SKIP
      >>> x0 = heun(D, 80.0 * jax.random.normal(key, (16, d)), sigmas)  # doctest: +SKIP

    References:
      Karras et al. (2022), Algorithm 1 ("Deterministic sampling using Heun's 2nd order
      method with arbitrary sigma(t) and s(t)"), with sigma(t) = t and s(t) = 1.
    """
    x = _check_x(x_init, denoiser)
    sigmas = _check_sigmas(sigmas, x.dtype)
    return _run(denoiser, x, sigmas, method="heun", return_trajectory=bool(return_trajectory))


def edm_stochastic(key: PRNGKeyArray, denoiser, x_init: Float[ArrayLike, "*batch d"],
                   sigmas: Float[ArrayLike, " S1"], *, s_churn: float = 0.0, s_min: float = 0.0,
                   s_max: float = math.inf, s_noise: float = 1.0,
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
    x = _check_x(x_init, denoiser)
    sigmas = _check_sigmas(sigmas, x.dtype)
    churn = _check_churn(s_churn, s_min, s_max, s_noise, x.dtype)
    return _run(denoiser, x, sigmas, method="edm", return_trajectory=bool(return_trajectory),
                key=key, index=_sample_index(x.shape[:-1]), churn=churn)


# ------------------------------------------------------------------------------------------
# Error-controlled reference solution (diffrax)
# ------------------------------------------------------------------------------------------

def _field_log_sigma(t, y, denoiser):
    """``dx/dlog(sigma) = x - D(x, sigma)`` at ``t = log(sigma)``."""
    return y - denoiser(y, jnp.exp(t))


def _field_sigma(t, y, denoiser):
    """``dx/dsigma = (x - D(x, sigma)) / sigma`` at ``t = sigma``."""
    return (y - denoiser(y, t)) / t


def _check_level(value, name):
    if not is_concrete(value):
        if np.ndim(value) != 0:
            raise ValueError(f"{name}: expected a scalar, got shape {shape_str(np.shape(value))}")
        return value
    return positive_float(value, name)


def reference_solve(denoiser, x_init: Float[ArrayLike, "*batch d"], sigma_start: float,
                    sigma_end: float, *, save_sigmas: Float[ArrayLike, " K"] | None = None,
                    rtol: float = 1e-8, atol: float = 1e-8,
                    solver: str | diffrax.AbstractAdaptiveSolver = "tsit5",
                    variable: str = "log_sigma", max_steps: int = 16_384):
    r"""Error-controlled solution of the probability-flow ODE with diffrax.

    Integrates from ``sigma_start`` down to ``sigma_end > 0`` with an adaptive Runge-Kutta
    solver and a PID step-size controller (``diffrax.diffeqsolve``). By default the variable
    of integration is :math:`t = \log\sigma`:

    .. math:: \frac{dx}{d\log\sigma} = x - D(x, \sigma),

    whose right-hand side stays of the size of ``x`` at every noise level, so a tolerance
    means the same thing across six decades of sigma; ``variable="sigma"`` integrates
    :math:`dx/d\sigma = (x - D(x, \sigma)) / \sigma` instead. Both describe the same
    trajectory. The error norm is diffrax's RMS over all entries of ``x_init`` (the whole
    batch is one ODE system, so the steps serve the hardest sample).

    Args:
      denoiser: any pytree callable ``D(x, sigma)`` (called with ``x: [..., d]`` and a scalar
        ``sigma``).
      x_init: ``[..., d]`` states at ``sigma_start``.
      sigma_start: noise level ``> 0`` of ``x_init``.
      sigma_end: noise level ``0 < sigma_end < sigma_start`` to integrate to (the ODE is
        singular at 0; finish with ``denoiser(x, sigma_end)`` if a clean sample is wanted).
      save_sigmas: optional ``[K]`` strictly decreasing levels in
        ``[sigma_end, sigma_start]`` at which to return the solution (dense output is not used:
        the solver steps onto each of them).
      rtol: relative tolerance of the controller. In float32 the result is limited by rounding
        to a relative error of about ``1e-6`` (a few epsilons, 1.2e-7, accumulated over the
        steps) whatever the tolerance; in float64 it follows the tolerance.
      atol: absolute tolerance of the controller.
      solver: ``"tsit5"`` (default), ``"dopri5"``, ``"dopri8"``, ``"bosh3"``, or a
        ``diffrax.AbstractAdaptiveSolver`` instance.
      variable: ``"log_sigma"`` (default) or ``"sigma"``, the variable of integration.
      max_steps: most solver steps before diffrax raises.

    Returns:
      ``[..., d]`` the state at ``sigma_end``, or with ``save_sigmas`` the ``[K, ..., d]``
      states at those levels.

    Raises:
      ValueError: naming the offending argument.
      RuntimeError: (``equinox.EquinoxRuntimeError``, from diffrax) ``max_steps`` reached.

    Example:
      >>> x_ref = reference_solve(D, x_init, 80.0, 0.002, rtol=1e-8)  # doctest: +SKIP

    References:
      Karras et al. (2022), Eq. (4) and Appendix B; Tsitouras (2011), "Runge-Kutta pairs of
      order 5(4) satisfying only the first column simplifying assumption" (Tsit5).
    """
    x = _check_x(x_init, denoiser)
    dtype = x.dtype
    sigma_start = _check_level(sigma_start, "sigma_start")
    sigma_end = _check_level(sigma_end, "sigma_end")
    if is_concrete(sigma_start) and is_concrete(sigma_end) and not sigma_end < sigma_start:
        raise ValueError(f"sigma_end: expected a value < sigma_start = {sigma_start!r}, "
                         f"got {sigma_end!r}")
    if variable not in ("log_sigma", "sigma"):
        raise ValueError(f"variable: expected 'log_sigma' or 'sigma', got {variable!r}")
    if isinstance(solver, str):
        if solver not in _SOLVERS:
            raise ValueError(f"solver: expected one of {sorted(_SOLVERS)} or a diffrax "
                             f"AbstractAdaptiveSolver, got {solver!r}")
        solver = _SOLVERS[solver]()
    elif not isinstance(solver, diffrax.AbstractAdaptiveSolver):
        raise ValueError(f"solver: expected one of {sorted(_SOLVERS)} or a diffrax "
                         f"AbstractAdaptiveSolver, got {type(solver).__name__}")
    rtol = positive_float(rtol, "rtol")
    atol = positive_float(atol, "atol")
    max_steps = positive_int(max_steps, "max_steps")

    to_t = jnp.log if variable == "log_sigma" else (lambda s: s)
    t0 = to_t(jnp.asarray(sigma_start, dtype))
    t1 = to_t(jnp.asarray(sigma_end, dtype))
    if save_sigmas is None:
        saveat = diffrax.SaveAt(t1=True)
    else:
        save = float_array(save_sigmas, "save_sigmas", ndim=1).astype(dtype)
        if is_concrete(save) and is_concrete(sigma_start) and is_concrete(sigma_end):
            v = np.asarray(save)
            lo, hi = np.asarray(jnp.asarray(sigma_end, dtype)), np.asarray(
                jnp.asarray(sigma_start, dtype))
            if not np.all(np.diff(v) < 0):
                raise ValueError("save_sigmas: expected strictly decreasing levels, "
                                 f"got {v.tolist()}")
            if not (np.all(v >= lo) and np.all(v <= hi)):
                raise ValueError(f"save_sigmas: expected levels in [sigma_end, sigma_start] = "
                                 f"[{float(lo)!r}, {float(hi)!r}], got min {float(v.min())!r}, "
                                 f"max {float(v.max())!r}")
        saveat = diffrax.SaveAt(ts=to_t(save))
    field = _field_log_sigma if variable == "log_sigma" else _field_sigma
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, t0=t0, t1=t1, dt0=None, y0=x, args=denoiser,
        saveat=saveat, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps)
    return sol.ys[0] if save_sigmas is None else sol.ys


# ------------------------------------------------------------------------------------------
# Sampling from noise: the outer, jit-compiled entry point
# ------------------------------------------------------------------------------------------

def _initial_noise(key, index, dim, dtype):
    """``[B, d]`` standard normal, row ``j`` from ``fold_in(key, index[j])``."""
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (dim,), dtype))(index)


def _sample_core(key, dynamic, static, sigmas, churn, *, num, dim, method, return_trajectory,
                 batch_size):
    denoiser = static.merge(dynamic)
    key_init, key_churn = jax.random.split(key)

    def run(index):  # index [B] global sample indices
        # EDM Alg. 1/2 l.1: sample x_0 ~ N(0, t_0^2 I)
        x_init = sigmas[0] * _initial_noise(key_init, index, dim, sigmas.dtype)
        return _solve(denoiser, x_init, sigmas, method=method,
                      return_trajectory=return_trajectory, key=key_churn, index=index,
                      churn=churn)

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


_sample_jit = jax.jit(_sample_core, static_argnames=(
    "static", "num", "dim", "method", "return_trajectory", "batch_size"))


def sample(key: PRNGKeyArray, denoiser, num: int, dim: int, *, num_steps: int = 18,
           sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
           method: str = "heun", s_churn: float = 0.0, s_min: float = 0.0,
           s_max: float = math.inf, s_noise: float = 1.0, return_trajectory: bool = False,
           batch_size: int | None = None):
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
      return_trajectory: return a :class:`Trajectory` with ``x [K+1, num, dim]``.
      batch_size: samples per batch (``lax.map`` over batches bounds memory); ``None`` runs
        all ``num`` at once.

    Returns:
      ``[num, dim]`` samples, or a :class:`Trajectory` (``sigma [K+1]``,
      ``x [K+1, num, dim]``, ``denoised [K, num, dim]``, ``sigma_hat [K]``).

    Raises:
      ValueError: naming the argument (``num``, ``dim``, ``method``, ``batch_size``, ...).

    Example:
      >>> x = sample(jax.random.PRNGKey(0), GaussianDenoiser(mu, C), 1000, 2)  # doctest: +SKIP

    References:
      Karras et al. (2022), Algorithms 1 and 2, Eq. (5) and Table 1 (EDM's schedule).
    """
    key = prng_key(key)
    den_dim = _check_denoiser(denoiser)
    num = positive_int(num, "num")
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
    dynamic, static = _partition(denoiser)
    kwargs = dict(num=num, dim=dim, method=method, return_trajectory=bool(return_trajectory),
                  batch_size=batch_size)
    if not _hashable(static):
        return _sample_core(key, dynamic, static, sigmas, churn, **kwargs)
    return _sample_jit(key, dynamic, static, sigmas, churn, **kwargs)
