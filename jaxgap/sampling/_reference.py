"""Error-controlled reference solutions of the probability-flow ODE (diffrax)."""

from __future__ import annotations

import diffrax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap._checks import float_array, is_concrete, positive_float, positive_int, shape_str
from jaxgap._protocol import call
from jaxgap.sampling._solvers import _check_x

__all__ = ["reference_solve"]

_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
}

# ------------------------------------------------------------------------------------------

def _field_log_sigma(t, y, args):
    """``dx/dlog(sigma) = x - D(x, sigma)`` at ``t = log(sigma)``; ``args = (D, cond)``."""
    return y - call(args[0], y, jnp.exp(t), args[1])


def _field_sigma(t, y, args):
    """``dx/dsigma = (x - D(x, sigma)) / sigma`` at ``t = sigma``; ``args = (D, cond)``."""
    return (y - call(args[0], y, t, args[1])) / t


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
                    variable: str = "log_sigma", max_steps: int = 16_384, cond=None):
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
      cond: condition ids broadcastable to ``x_init.shape[:-1]``, for a conditional
        denoiser.

    Returns:
      ``[..., d]`` the state at ``sigma_end``, or with ``save_sigmas`` the ``[K, ..., d]``
      states at those levels.

    Raises:
      ValueError: naming the offending argument.
      RuntimeError: (``equinox.EquinoxRuntimeError``, from diffrax) ``max_steps`` reached.

    Example:
      >>> import jax.numpy as jnp
      >>> D = lambda x, s: x / (1.0 + s**2)  # N(0, I): x(s) = x(s0) sqrt((1 + s^2)/(1 + s0^2))
      >>> x = reference_solve(D, jnp.ones(2), 3.0, 1.0, rtol=1e-6, atol=1e-6)
      >>> [round(v, 4) for v in x.tolist()], round((2.0 / 10.0) ** 0.5, 4)
      ([0.4472, 0.4472], 0.4472)

    References:
      Karras et al. (2022), Eq. (4) and Appendix B; Tsitouras (2011), "Runge-Kutta pairs of
      order 5(4) satisfying only the first column simplifying assumption" (Tsit5).
    """
    x, cond = _check_x(x_init, denoiser, cond)
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
        diffrax.ODETerm(field), solver, t0=t0, t1=t1, dt0=None, y0=x, args=(denoiser, cond),
        saveat=saveat, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps)
    return sol.ys[0] if save_sigmas is None else sol.ys


