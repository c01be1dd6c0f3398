"""Input validation at the public boundary (outside jit).

Shape checks run on tracers too (shapes are static). Value checks (finite, positive) run
where data enter (dataset loading, constructing a denoiser from data, a consumer's data
arguments) and on host inputs (Python numbers, NumPy arrays); a denoiser call never reads
values back from a ``jax.Array`` (that would be a host sync on every call): its noise level
is checked inside the compiled call instead (:func:`guard_positive`, an in-graph check).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def shape_str(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def float_array(x, name: str, *, ndim: int | None = None, min_ndim: int | None = None,
                dim: int | None = None, allow_empty: bool = False,
                finite: bool | str = True):
    """Return ``x`` as a floating JAX array after checking rank, last dimension and values.

    Args:
      x: array-like.
      name: the argument's name, used in the error message.
      ndim: required rank, or None.
      min_ndim: smallest allowed rank, or None.
      dim: required size of the last axis, or None.
      allow_empty: whether a zero-size leading axis is accepted.
      finite: check that every value is finite: True for concrete arrays (where data
        enter), ``"host"`` only for host inputs (Python/NumPy, no device sync: a denoiser's
        per-call check), False never.
    """
    if x is None:
        raise ValueError(f"{name}: expected an array, got None")
    if finite == "host":
        finite = not isinstance(x, jax.Array)
    if not isinstance(x, jax.Array):
        try:
            x = np.asarray(x)
        except Exception as err:  # pragma: no cover - numpy's own message is kept
            raise ValueError(f"{name}: expected an array, got {type(x).__name__}") from err
        if x.dtype == object:
            raise ValueError(f"{name}: expected a numeric array, got {type(x).__name__} of objects")
    shape = tuple(x.shape)
    if ndim is not None and len(shape) != ndim:
        hint = ""
        if ndim == 2 and len(shape) > 2:  # image-shaped [n, H, W(, C)]: say how to flatten
            hint = (f"; flatten the images first: {name}.reshape({shape[0]}, -1) gives "
                    f"[{shape[0]}, {int(np.prod(shape[1:]))}]")
        raise ValueError(f"{name}: expected rank {ndim}, got shape {shape_str(shape)}{hint}")
    if min_ndim is not None and len(shape) < min_ndim:
        raise ValueError(f"{name}: expected rank >= {min_ndim}, got shape {shape_str(shape)}")
    if dim is not None and (len(shape) == 0 or shape[-1] != dim):
        raise ValueError(
            f"{name}: expected last dimension d = {dim}, got shape {shape_str(shape)}")
    if not allow_empty and any(s == 0 for s in shape):
        raise ValueError(f"{name}: expected a non-empty array, got shape {shape_str(shape)}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
            or x.dtype == bool):
        raise ValueError(f"{name}: expected a real numeric array, got dtype {x.dtype}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    # NumPy, not jnp: inside a jit trace jnp ops on a captured constant give tracers.
    if finite and is_concrete(x) and x.size and not np.all(np.isfinite(np.asarray(x))):
        bad = int(x.size - np.sum(np.isfinite(np.asarray(x))))
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or inf entries")
    return x


def sigma_shape(sigma, name: str, batch_shape: tuple[int, ...]):
    """Check that ``sigma`` is real and broadcasts to ``batch_shape`` without enlarging it.

    Returns ``sigma`` as a JAX array (kept as is) or a NumPy array; no value is inspected,
    so this is safe on tracers and costs no host sync.
    """
    if sigma is None:
        raise ValueError(f"{name}: expected a positive noise level, got None")
    sig = sigma if isinstance(sigma, jax.Array) else np.asarray(sigma)
    if not (jnp.issubdtype(sig.dtype, jnp.floating) or jnp.issubdtype(sig.dtype, jnp.integer)):
        raise ValueError(f"{name}: expected a real number or array, got dtype {sig.dtype}")
    try:
        out_shape = jnp.broadcast_shapes(tuple(sig.shape), tuple(batch_shape))
    except ValueError:
        out_shape = None
    if out_shape != tuple(batch_shape):
        raise ValueError(
            f"{name}: expected a scalar or shape broadcastable to the batch shape "
            f"{shape_str(batch_shape)} (x.shape[:-1]), got shape {shape_str(sig.shape)}")
    return sig


def sigma_array(sigma, name: str, batch_shape: tuple[int, ...], dtype=None):
    """Check a noise level against a batch shape; return it broadcast to ``batch_shape``.

    ``sigma`` may be a scalar or any array whose broadcast with ``batch_shape`` is
    ``batch_shape`` itself (never a silent enlargement of the batch). Values must be finite
    and > 0: checked when ``sigma`` comes from the host (a Python number or NumPy array),
    never on a ``jax.Array``, whose values would have to be copied back from the device (a
    sync on every call).
    """
    sig = sigma_shape(sigma, name, batch_shape)
    dtype = dtype if dtype is not None else jnp.result_type(float)
    if not isinstance(sig, jax.Array):  # host values: checked with NumPy (no device work)
        values = np.asarray(sig, dtype=dtype)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
        if not np.all(values > 0):
            raise ValueError(f"{name}: expected values > 0, got min {float(values.min())!r}")
    return jnp.broadcast_to(jnp.asarray(sig, dtype=dtype), batch_shape)


def guard_positive(result, sigma, name: str = "sigma"):
    """``result`` unchanged, with an in-graph check that every value of ``sigma`` is finite
    and > 0.

    For noise levels that reach compiled code as ``jax.Array`` values or tracers (under a
    caller's ``jax.jit``, ``vmap`` or ``grad``, or inside jaxgap's compiled loops), which
    the eager checks above do not read. Call it inside the compiled function with the
    ``sigma`` it actually used and return the result it gives back: ``equinox.error_if``
    then raises at run time (under ``vmap``: if any batch entry is bad; under ``grad``: on
    the primal values), at the cost of one reduction over ``sigma`` and one branch. The
    check is threaded through the result, not through ``sigma``, so the computation itself
    is unchanged (bit for bit). The environment variable ``EQX_ON_ERROR`` (read at import)
    chooses what a failed check does: ``raise`` (default), ``nan`` (a NaN result),
    ``breakpoint`` or ``off`` (no check).
    """
    bad = ~(jnp.isfinite(sigma) & (sigma > 0))
    return eqx.error_if(
        result, bad, f"{name}: expected finite values > 0, got a value <= 0, NaN or inf "
                     f"(checked inside the compiled call)")


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Check an integer hyper-parameter (e.g. a chunk size)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def positive_float(value, name: str, *, allow_zero: bool = False) -> float:
    """Check a scalar float hyper-parameter."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a real number, got {value!r}") from err
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")
    return v


def prng_key(key, name: str = "key"):
    """A PRNG key: ``jax.random.PRNGKey`` (``uint32[2]``) or a typed ``jax.random.key``."""
    ok = isinstance(key, jax.Array) and (
        (key.shape == (2,) and key.dtype == jnp.uint32)
        or (key.shape == () and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)))
    if not ok:
        raise ValueError(f"{name}: expected a PRNG key (jax.random.PRNGKey or jax.random.key), "
                         f"got {type(key).__name__} {getattr(key, 'shape', '')}")
    return key
