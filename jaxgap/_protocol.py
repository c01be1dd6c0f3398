"""The denoiser protocol, stated once, and the checks every consumer runs at its boundary.

A denoiser is any callable ``D(x, sigma) -> x_hat`` with ``x: [..., d]`` and ``sigma`` a
scalar or an array broadcastable to ``x.shape[:-1]``: a closed-form denoiser, an ``nnx``
network, a user's plain function, closure or ``functools.partial``. A conditional denoiser
takes ``D(x, sigma, cond)`` with ``cond`` an integer array broadcastable to
``x.shape[:-1]``.

Consumers (losses, samplers, metrics, theory, training, sweeps) call
:func:`check_denoiser` outside jit, which says whether the denoiser is to be called with a
condition, and :func:`call` inside compiled code, which passes ``cond`` through
(broadcast to the batch shape) or leaves it out. The public names :class:`Denoiser` and
:class:`ConditionalDenoiser` are re-exported by :mod:`jaxgap.denoisers`.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgap._checks import shape_str

__all__ = ["NULL", "ConditionalDenoiser", "Denoiser", "bind", "call", "check_cond",
           "check_denoiser", "takes_cond"]

NULL = -1
"""The null condition id: ``cond == NULL`` means "no condition". A conditional closed form
treats it as the unconditional denoiser of all its training points; a conditional network
maps it to a learned null token. Re-exported as :data:`jaxgap.denoisers.NULL`."""


@runtime_checkable
class Denoiser(Protocol):
    """``D(x, sigma) -> x_hat``: ``x [..., d]``, ``sigma`` scalar or ``[...]``; returns
    ``[..., d]``, an estimate of ``E[x0 | x0 + sigma eps = x]`` (EDM convention)."""

    def __call__(self, x: jax.Array, sigma: jax.Array, /) -> jax.Array: ...


@runtime_checkable
class ConditionalDenoiser(Protocol):
    """``D(x, sigma, cond) -> x_hat`` with ``cond`` an int array broadcastable to
    ``x.shape[:-1]``: the estimate of ``E[x0 | x_sigma = x, c = cond]``.

    A class may declare ``conditional = True`` (or ``False``) to say which protocol it
    follows; otherwise the number of positional parameters of its signature decides.
    """

    def __call__(self, x: jax.Array, sigma: jax.Array, cond: jax.Array, /) -> jax.Array: ...


def _positional(denoiser) -> tuple[int, int] | None:
    """``(required, total)`` positional parameters of ``denoiser``'s call, or None (unknown
    or ``*args``)."""
    try:
        sig = inspect.signature(denoiser)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(sig.parameters.values())
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    pos = [p for p in params if p.kind in kinds]
    return sum(p.default is inspect.Parameter.empty for p in pos), len(pos)


def takes_cond(denoiser) -> bool | None:
    """Whether ``denoiser`` follows the conditional protocol ``D(x, sigma, cond)``.

    A boolean class attribute ``conditional`` decides when present; otherwise the signature:
    True when a third positional parameter exists, False when it does not, None when the
    signature cannot be read (``*args``, some builtins).
    """
    flag = getattr(denoiser, "conditional", None)
    if isinstance(flag, bool):
        return flag
    counts = _positional(denoiser)
    return None if counts is None else counts[1] >= 3


def _requires_cond(denoiser) -> bool:
    flag = getattr(denoiser, "conditional", None)
    if isinstance(flag, bool):
        return flag
    counts = _positional(denoiser)
    return counts is not None and counts[0] >= 3


def check_cond(cond, batch_shape: tuple[int, ...], *, name: str = "cond"):
    """``cond`` as an integer JAX array broadcastable to ``batch_shape`` (shapes only: no
    value is read, so no host sync)."""
    arr = cond if isinstance(cond, jax.Array) else np.asarray(cond)
    if not (jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == bool):
        raise ValueError(f"{name}: expected an integer array of condition ids, got dtype "
                         f"{arr.dtype}")
    try:
        out = jnp.broadcast_shapes(tuple(arr.shape), tuple(batch_shape))
    except ValueError:
        out = None
    if out != tuple(batch_shape):
        raise ValueError(f"{name}: expected a scalar or shape broadcastable to "
                         f"{shape_str(batch_shape)}, got shape {shape_str(arr.shape)}")
    return jnp.asarray(arr, jnp.int32)


def check_denoiser(denoiser: Any, cond=None, batch_shape: tuple[int, ...] | None = None, *,
                   name: str = "denoiser"):
    """Check a denoiser (and its condition) at a consumer's public boundary.

    Args:
      denoiser: the callable.
      cond: None, or integer condition ids.
      batch_shape: the shape ``cond`` must broadcast to (its own shape when None).
      name: the denoiser argument's name in error messages.

    Returns:
      ``cond`` as an int32 array, or None.

    Raises:
      ValueError: not callable; ``cond`` given to an unconditional denoiser; no ``cond`` for
        a denoiser that requires one; ``cond`` of the wrong dtype or shape; ids the
        denoiser's own ``check_cond(cond, batch_shape)`` method (when it has one) refuses.
    """
    if not callable(denoiser):
        raise ValueError(f"{name}: expected a callable D(x, sigma) or D(x, sigma, cond), "
                         f"got {type(denoiser).__name__}")
    if cond is None:
        if _requires_cond(denoiser):
            raise ValueError(f"cond: expected integer condition ids for the conditional "
                             f"{name} {type(denoiser).__name__} (it takes D(x, sigma, cond)), "
                             f"got None")
        return None
    if takes_cond(denoiser) is False:
        raise ValueError(f"cond: expected None for the unconditional {name} "
                         f"{type(denoiser).__name__} (it takes D(x, sigma)), got "
                         f"{type(cond).__name__}; pass a conditional denoiser "
                         f"D(x, sigma, cond)")
    shape = tuple(np.shape(cond)) if batch_shape is None else tuple(batch_shape)
    own = getattr(denoiser, "check_cond", None)  # e.g. ids no training point carries
    if callable(own):
        return jnp.asarray(own(cond, shape), jnp.int32)
    return check_cond(cond, shape)


def call(denoiser, x, sigma, cond=None):
    """``denoiser(x, sigma)``, or ``denoiser(x, sigma, cond)`` with ``cond`` broadcast to
    ``x.shape[:-1]`` when a condition is given. Used inside compiled code."""
    if cond is None:
        return denoiser(x, sigma)
    return denoiser(x, sigma, jnp.broadcast_to(cond, x.shape[:-1]))


def bind(denoiser, cond):
    """The unconditional callable ``(x, sigma) -> call(denoiser, x, sigma, cond)``, for
    solvers written against ``D(x, sigma)``; ``denoiser`` itself when ``cond`` is None."""
    if cond is None:
        return denoiser
    return lambda x, sigma: call(denoiser, x, sigma, cond)
