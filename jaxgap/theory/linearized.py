r"""Linearized sampling and denoiser Jacobians.

:func:`linearized_sampling` propagates a denoiser error to first order through EDM's Heun
sampler: for the perturbed denoiser ``D + eps * e`` (:func:`~jaxgap.theory.with_error`) the
sampled end state is

.. math:: x_\epsilon = x + \epsilon\, \delta x + O(\epsilon^2), \qquad
    \delta x = \frac{\partial}{\partial \epsilon}\,
    \mathrm{heun}(D + \epsilon e, x_\mathrm{init}, \sigma)\Big|_{\epsilon = 0},

computed exactly (forward mode, ``jax.jvp``) through the same compiled solver as
:func:`jaxgap.sampling.heun`: ``delta x`` is the discrete tangent of the Heun map, i.e. the
Heun discretisation of the variational equation ``d(dx)/dsigma = ((I - J) dx - e) / sigma``
with ``J = dD/dx``.

:func:`denoiser_jacobian` gives ``J = dD/dx`` of any denoiser by autodiff;
:func:`empirical_jacobian` and :func:`position_error_jacobian` give it in closed form for the
empirical optimal denoiser and :class:`~jaxgap.theory.PositionError` from their posterior
weights ``w_i`` (see each function for the derivation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgap._checks import float_array, sigma_array
from jaxgap._jit import jit
from jaxgap._protocol import call, check_denoiser
from jaxgap.denoisers import EmpiricalDenoiser
from jaxgap.sampling import heun
from jaxgap.theory.error_models import PositionError, with_error

__all__ = ["denoiser_jacobian", "empirical_jacobian", "linearized_sampling",
           "position_error_jacobian"]

_HIGHEST = jax.lax.Precision.HIGHEST


def linearized_sampling(denoiser, error_field, x_init, sigmas, *, cond=None,
                        return_trajectory=False):
    r"""Heun end state for ``D`` and its first-order change per unit ``eps`` under ``D + eps e``.

    .. math:: (x, \delta x) = \Big(\mathrm{heun}(D, x_\mathrm{init}, \sigma),\
        \frac{d}{d\epsilon}\,\mathrm{heun}(D + \epsilon e, x_\mathrm{init}, \sigma)
        \Big|_{\epsilon=0}\Big)

    One forward-mode pass (``jax.jvp`` in ``eps`` at ``eps = 0``) through
    :func:`jaxgap.sampling.heun` and its compiled solver; the inputs are validated once, as
    the solver is traced. ``x`` equals ``heun(D, x_init, sigmas)``, and
    ``heun(D + eps e) = x + eps dx + O(eps^2)``.

    Args:
      denoiser: any callable ``D(x, sigma)`` (as for :func:`~jaxgap.sampling.heun`), or a
        conditional ``D(x, sigma, cond)`` with ``cond``.
      error_field: any callable ``e(x, sigma) -> [..., d]`` (as for
        :func:`~jaxgap.theory.with_error`: a pytree, a plain function, a closure).
      x_init: ``[..., d]`` states at ``sigmas[0]``.
      sigmas: ``[S+1]`` strictly decreasing noise levels (the last optionally 0).
      cond: condition ids broadcastable to ``x_init.shape[:-1]``, for a conditional
        denoiser.
      return_trajectory: return the states at every level instead of the end state.

    Returns:
      ``(x_end, dx_end)``, each ``[..., d]``; with ``return_trajectory=True``
      ``(xs, dxs)``, each ``[S+1, ..., d]`` (``xs[0] = x_init``, ``dxs[0] = 0``).

    Raises:
      ValueError: naming ``denoiser``, ``error_field``, ``x_init``, ``sigmas`` or ``cond``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgap.theory import linearized_sampling
      >>> x, dx = linearized_sampling(lambda x, s: 0.0 * x, lambda x, s: jnp.ones_like(x),
      ...                             jnp.ones(2), jnp.array([2.0, 1.0, 0.0]))
      >>> x, dx  # D = 0 maps every state to 0; D + eps maps it to eps
      (Array([0., 0.], dtype=float32), Array([1., 1.], dtype=float32))
    """
    with_error(denoiser, error_field, 0.0)  # validates error_field and its dim
    x = float_array(x_init, "x_init", min_ndim=1)
    traj = bool(return_trajectory)

    def solve(eps):
        perturbed = with_error(denoiser, error_field, eps)
        out = heun(perturbed, x, sigmas, cond=cond, return_trajectory=traj)
        return out.x if traj else out

    eps0 = jnp.zeros((), x.dtype)
    return jax.jvp(solve, (eps0,), (jnp.ones_like(eps0),))


@jit
def _jacobian(denoiser, x, sig, cond):
    d = x.shape[-1]
    flat = None if cond is None else jnp.broadcast_to(cond, x.shape[:-1]).reshape(-1)
    jac = jax.vmap(jax.jacfwd(lambda xi, si, ci: call(denoiser, xi, si, ci)),
                   in_axes=(0, 0, None if flat is None else 0))(
        x.reshape(-1, d), sig.reshape(-1), flat)
    return jac.reshape(x.shape + (d,))


def denoiser_jacobian(denoiser, x, sigma, *, cond=None):
    r"""``dD/dx`` of any denoiser at each query by forward-mode autodiff, ``[..., d, d]``.

    ``J[..., i, j] = dD_i / dx_j`` at ``(x[...], sigma[...])`` (queries are independent:
    one ``jax.jacfwd`` per query, vmapped).

    Args:
      denoiser: any callable ``D(x, sigma)`` accepting ``x: [d]`` and a scalar ``sigma``
        (or ``D(x, sigma, cond)`` with ``cond``).
      x: ``[..., d]`` queries.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``.
      cond: condition ids broadcastable to ``x.shape[:-1]``, for a conditional denoiser.

    Returns:
      ``[..., d, d]`` Jacobians.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgap.theory import denoiser_jacobian
      >>> denoiser_jacobian(lambda x, s: 0.5 * x, jnp.ones(2), 1.0)
      Array([[0.5, 0. ],
             [0. , 0.5]], dtype=float32)
    """
    x = float_array(x, "x", min_ndim=1)
    cond = check_denoiser(denoiser, cond, x.shape[:-1])
    sig = sigma_array(sigma, "sigma", x.shape[:-1], dtype=x.dtype)
    return _jacobian(denoiser, x, sig, cond)


def _queries(x, sigma, dim: int):
    """``x [..., d]`` and ``sigma`` broadcast to ``x.shape[:-1]``, checked."""
    x = float_array(x, "x", min_ndim=1, dim=dim)
    return x, sigma_array(sigma, "sigma", x.shape[:-1], dtype=x.dtype)


def _as_train(train):
    if isinstance(train, EmpiricalDenoiser):
        return train.train
    return float_array(train, "train", ndim=2)


def _weighted_cov(w, y):
    """``Cov_w(y) = sum_i w_i (y_i - m)(y_i - m)^T`` with ``m = sum_i w_i y_i``: ``[..., d, d]``."""
    m = jnp.einsum("...n,nd->...d", w, y, precision=_HIGHEST)
    y = y.reshape((1,) * (m.ndim - 1) + y.shape)  # explicit ranks (no implicit promotion)
    c = y - m[..., None, :]  # [..., N, d], centred (no E[yy^T] - mm^T cancellation)
    return jnp.einsum("...n,...ni,...nj->...ij", w, c, c, precision=_HIGHEST)


def empirical_jacobian(train, x, sigma):
    r"""Closed-form ``dD*/dx`` of the empirical optimal denoiser, ``[..., d, d]``.

    With ``D* = sum_i w_i y_i`` and ``w = softmax(-|x - y_i|^2 / (2 sigma^2))``,
    ``dw_i/dx = w_i (y_i - D*) / sigma^2``, hence

    .. math:: \frac{\partial D^*}{\partial x} = \frac{1}{\sigma^2} \sum_i w_i\, y_i
        (y_i - D^*)^\top = \frac{\operatorname{Cov}_w(y)}{\sigma^2},

    symmetric positive semi-definite (the posterior covariance over ``sigma^2``, Tweedie).
    Materialises the ``[..., N]`` weights: meant for small training sets.

    Args:
      train: ``[N, d]`` training points (or an :class:`~jaxgap.denoisers.EmpiricalDenoiser`).
      x: ``[..., d]`` queries (typically ``[d]``).
      sigma: scalar or array broadcastable to ``x.shape[:-1]``.

    Returns:
      ``[..., d, d]`` Jacobians.
    """
    y = _as_train(train)
    x, sig = _queries(x, sigma, y.shape[1])
    return _empirical_jac(EmpiricalDenoiser(y), x, sig)


def position_error_jacobian(train, delta, x, sigma):
    r"""Closed-form ``dD/dx`` of :class:`~jaxgap.theory.PositionError`, ``[..., d, d]``.

    With ``v = sigma^2 + delta^2``, ``a = delta^2 / v``, weights ``w_i(x; v)`` and
    ``m = sum_i w_i y_i``, the model is ``D = m + a (x - m) = a x + (1 - a) m``. As for
    :func:`empirical_jacobian` at temperature ``v``, ``dm/dx = Cov_w(y) / v``, so

    .. math:: \frac{\partial D}{\partial x} = a\, I + (1 - a)\,
        \frac{\operatorname{Cov}_w(y)}{v}
        = \frac{\delta^2 I + \sigma^2 \operatorname{Cov}_w(y) / v}{\sigma^2 + \delta^2}.

    (Equivalently the posterior covariance of the smeared data, ``delta^2 sigma^2 / v I +
    sigma^4 / v^2 Cov_w(y)``, over ``sigma^2``.) ``delta = 0`` gives
    :func:`empirical_jacobian`.

    Args:
      train: ``[N, d]`` training points.
      delta: position uncertainty ``>= 0``.
      x: ``[..., d]`` queries.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``.

    Returns:
      ``[..., d, d]`` Jacobians.
    """
    y = _as_train(train)
    x, sig = _queries(x, sigma, y.shape[1])
    return _position_jac(PositionError(y, delta), x, sig)


@jit
def _empirical_jac(model, x, sig):
    w = model.weights(x, sig)
    return _weighted_cov(w, model.train) / (sig * sig)[..., None, None]


@jit
def _position_jac(model, x, sig):
    y = model.train
    w = model.weights(x, sig)  # widened weights w_i(x; sigma^2 + delta^2)
    amp = model.delta * model.delta
    var = sig * sig + amp
    a = (amp / var)[..., None, None]
    eye = jnp.eye(model.dim, dtype=y.dtype).reshape((1,) * sig.ndim + (model.dim,) * 2)
    return a * eye + (1.0 - a) * _weighted_cov(w, y) / var[..., None, None]
