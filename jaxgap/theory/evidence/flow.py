r"""Probability-flow velocities of ``D*`` and of the position-error model on a 2-D grid."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap._checks import float_array, positive_float
from jaxgap.denoisers import EmpiricalDenoiser, velocity
from jaxgap.theory.error_models import PositionError
from jaxgap.theory.evidence._args import amplitudes

__all__ = ["FlowFields", "flow_fields"]


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

    Example:
      >>> import numpy as np
      >>> from jaxgap.theory import flow_fields
      >>> grid = np.linspace(-1.0, 1.0, 5)
      >>> ff = flow_fields([[0.0, 0.0], [0.5, 0.5]], grid, grid, 0.1, 0.3)
      >>> ff.optimal.shape, ff.error.shape
      ((5, 5, 2), (5, 5, 2))
    """
    train = float_array(train, "train", ndim=2)
    if train.shape[1] != 2:
        raise ValueError(f"train: expected 2-D points, shape [N, 2], got shape "
                         f"[{train.shape[0]}, {train.shape[1]}]")
    gx, gy = _axis(grid_x, "grid_x"), _axis(grid_y, "grid_y")
    sigma = positive_float(sigma, "sigma")
    delta = float(amplitudes([delta], "delta")[0])
    xx, yy = np.meshgrid(gx, gy)  # [H, W]
    pts = jnp.asarray(np.stack([xx, yy], axis=-1), train.dtype)
    v_opt = velocity(EmpiricalDenoiser(train), pts, sigma)
    v_err = velocity(PositionError(train, delta), pts, sigma)
    return FlowFields(gx, gy, np.asarray(v_opt, np.float64), np.asarray(v_err, np.float64),
                      np.asarray(train, np.float64), sigma, delta)
