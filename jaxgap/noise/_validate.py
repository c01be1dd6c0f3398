"""Validation and backend helpers shared by :mod:`jaxgap.noise`'s modules.

Hyper-parameters and arrays are checked when their values are concrete; inside
``jit``/``vmap``/``grad`` the value checks are skipped (shapes are still checked). A failed
check raises ``ValueError`` with the message ``"<argument>: expected ..., got ..."``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from jaxgap._checks import float_array, is_concrete, positive_float, positive_int, shape_str

__all__ = ["array_in", "backend", "ramp", "scalar", "shape_tuple", "sigma_range",
           "with_endpoints"]


def scalar(value, name: str, *, positive: bool = True):
    """A real scalar hyper-parameter.

    Concrete values are checked (finite, and > 0 when ``positive``) and returned as a Python
    float; a tracer is returned unchanged after a rank check (its value cannot be checked).
    """
    if value is None:
        raise ValueError(f"{name}: expected a real number, got None")
    if np.ndim(value) != 0:
        raise ValueError(f"{name}: expected a scalar, got shape {shape_str(np.shape(value))}")
    if not is_concrete(value):
        return value
    if positive:
        return positive_float(value, name)
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a real number, got {value!r}") from err
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return v


def shape_tuple(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError as err:
        raise ValueError(f"shape: expected an int or a tuple of ints, got {shape!r}") from err
    return tuple(positive_int(s, "shape", minimum=0) for s in dims)


def _interval(low: float, high: float, low_closed: bool, high_closed: bool) -> str:
    if math.isinf(high):
        return f"values {'>=' if low_closed else '>'} {low:g}"
    left, right = ("[" if low_closed else "("), ("]" if high_closed else ")")
    return f"values in {left}{low:g}, {high:g}{right}"


def array_in(x, name: str, *, low: float = 0.0, high: float = math.inf,
              low_closed: bool = False, high_closed: bool = False) -> Array:
    """``x`` as a floating array, its values (when concrete) finite and inside the interval."""
    x = float_array(x, name, allow_empty=True)  # dtype, and finiteness when concrete
    if is_concrete(x) and x.size:
        v = np.asarray(x)  # NumPy: inside a jit trace jnp ops on a constant give tracers
        above = (v >= low) if low_closed else (v > low)
        below = (v <= high) if high_closed else (v < high)
        ok = above & below
        if not np.all(ok):
            bad = float(v[~ok].ravel()[0])
            raise ValueError(
                f"{name}: expected {_interval(low, high, low_closed, high_closed)}, got {bad!r}")
    return x


def sigma_range(sigma_min, sigma_max):
    """Check ``0 < sigma_min < sigma_max`` (order checked only when both are concrete)."""
    sigma_min = scalar(sigma_min, "sigma_min")
    sigma_max = scalar(sigma_max, "sigma_max")
    if is_concrete(sigma_min) and is_concrete(sigma_max) and not sigma_min < sigma_max:
        raise ValueError(f"sigma_min: expected a value < sigma_max = {sigma_max!r}, "
                         f"got {sigma_min!r}")
    return sigma_min, sigma_max


def backend(*params):
    """NumPy in float64 when every hyper-parameter is concrete, else jax.numpy (traced).

    Grids built from concrete hyper-parameters are computed in float64 and rounded once to
    the default float dtype, so their values are correctly rounded and their endpoints exact.
    """
    if all(is_concrete(p) for p in params):
        return np, np.float64
    return jnp, jnp.result_type(float)


def ramp(xp, num: int, dtype):
    """``i / (num - 1)`` for ``i = 0 .. num - 1`` (``[0]`` when ``num == 1``)."""
    return xp.arange(num, dtype=dtype) / max(num - 1, 1)


def with_endpoints(xp, grid, first, last, dtype):
    """Replace the first and last entries of ``grid`` by the exact endpoint values."""
    first = xp.reshape(xp.asarray(first, dtype=dtype), (1,))
    last = xp.reshape(xp.asarray(last, dtype=dtype), (1,))
    return xp.concatenate([first, grid[1:-1], last])
