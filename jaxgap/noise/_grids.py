r"""Noise-level grids: EDM's sampling grid and log-spaced grids for loss curves."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxgap._checks import positive_int
from jaxgap.noise._validate import backend, ramp, scalar, sigma_range, with_endpoints

__all__ = ["karras_sigmas", "log_sigmas"]


def karras_sigmas(num: int, sigma_min=0.002, sigma_max=80.0, rho=7.0) -> Float[Array, " K"]:
    r"""EDM's sampling grid of noise levels, descending from ``sigma_max`` to ``sigma_min``.

    Equally spaced in :math:`\sigma^{1/\rho}`:

    .. math::
        \sigma_i = \Bigl(\sigma_{\max}^{1/\rho} + \tfrac{i}{K-1}
                   \bigl(\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho}\bigr)\Bigr)^{\rho},
        \qquad i = 0, \dots, K - 1.

    Unlike EDM's sampler, no trailing :math:`\sigma_K = 0` is appended: every entry is a valid
    noise level for losses and denoisers (append a zero yourself for a sampler's last step).
    ``rho = 1`` gives a linear grid; large ``rho`` concentrates levels near ``sigma_min``.

    Args:
      num: number of levels ``K``, an integer ``>= 2`` (both endpoints are always included;
        ``num == 1`` is rejected because it cannot hold both).
      sigma_min: smallest level, ``0 < sigma_min < sigma_max``.
      sigma_max: largest level.
      rho: exponent ``> 0`` (EDM uses 7).

    Returns:
      ``[K]`` levels in the default float dtype, strictly descending, with
      ``out[0] == sigma_max`` and ``out[-1] == sigma_min`` exactly (after rounding to the
      dtype). With concrete hyper-parameters the grid is computed in float64 and rounded once;
      traced ``sigma_min``/``sigma_max``/``rho`` (e.g. under ``vmap``) are supported.

    Raises:
      ValueError: ``num < 2``, a non-positive or non-finite ``sigma_min``, ``sigma_max`` or
        ``rho``, or ``sigma_min >= sigma_max``.

    Example:
      >>> [round(float(s), 3) for s in karras_sigmas(5, 0.002, 80.0)]
      [80.0, 17.528, 2.515, 0.17, 0.002]

    References:
      Karras et al. (2022), Eq. (5) and Table 1 ("Time steps").
    """
    num = positive_int(num, "num", minimum=2)
    sigma_min, sigma_max = sigma_range(sigma_min, sigma_max)
    rho = scalar(rho, "rho")
    xp, dtype = backend(sigma_min, sigma_max, rho)
    hi = xp.asarray(sigma_max, dtype=dtype) ** (1.0 / rho)
    lo = xp.asarray(sigma_min, dtype=dtype) ** (1.0 / rho)
    grid = (hi + ramp(xp, num, dtype) * (lo - hi)) ** rho
    grid = with_endpoints(xp, grid, sigma_max, sigma_min, dtype)
    return jnp.asarray(grid, dtype=jnp.result_type(float))


def log_sigmas(num: int, sigma_min, sigma_max) -> Float[Array, " K"]:
    r"""Log-spaced noise levels, ascending from ``sigma_min`` to ``sigma_max``.

    .. math::
        \sigma_i = \sigma_{\min} \Bigl(\frac{\sigma_{\max}}{\sigma_{\min}}\Bigr)^{i/(K-1)},
        \qquad i = 0, \dots, K - 1.

    The natural grid for per-sigma loss and gap curves plotted on a log axis.

    Args:
      num: number of levels ``K``, an integer ``>= 2``.
      sigma_min: smallest level, ``0 < sigma_min < sigma_max``.
      sigma_max: largest level.

    Returns:
      ``[K]`` levels in the default float dtype, strictly ascending, with
      ``out[0] == sigma_min`` and ``out[-1] == sigma_max`` exactly (after rounding to the
      dtype).

    Raises:
      ValueError: ``num < 2``, a non-positive or non-finite level, or
        ``sigma_min >= sigma_max``.

    Example:
      >>> log_sigmas(3, 0.01, 100.0)
      Array([1.e-02, 1.e+00, 1.e+02], dtype=float32)
    """
    num = positive_int(num, "num", minimum=2)
    sigma_min, sigma_max = sigma_range(sigma_min, sigma_max)
    xp, dtype = backend(sigma_min, sigma_max)
    log_lo = xp.log(xp.asarray(sigma_min, dtype=dtype))
    log_hi = xp.log(xp.asarray(sigma_max, dtype=dtype))
    grid = xp.exp(log_lo + ramp(xp, num, dtype) * (log_hi - log_lo))
    grid = with_endpoints(xp, grid, sigma_min, sigma_max, dtype)
    return jnp.asarray(grid, dtype=jnp.result_type(float))
