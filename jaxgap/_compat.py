"""Old spellings kept for one release (0.2), where the README of 0.1 showed them."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp

__all__ = ["key_first"]


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and (
        (x.shape == (2,) and x.dtype == jnp.uint32)
        or (x.shape == () and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)))


def key_first(old_position: int):
    """Accept the 0.1 argument order ``f(denoiser, ..., key)`` (key at ``old_position``,
    or ``key=`` by keyword) with a ``DeprecationWarning``; the new order is ``f(key, ...)``."""

    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if args and not _is_key(args[0]) and callable(args[0]):
                if "key" in kwargs:
                    args = (kwargs.pop("key"),) + args
                elif len(args) > old_position and _is_key(args[old_position]):
                    args = ((args[old_position],) + args[:old_position]
                            + args[old_position + 1:])
                else:
                    return fn(*args, **kwargs)
                warnings.warn(f"{fn.__name__}: the PRNG key is now the first argument, "
                              f"{fn.__name__}(key, denoiser, ...); the old order is accepted "
                              "until jaxgap 0.3", DeprecationWarning, stacklevel=2)
            return fn(*args, **kwargs)

        return wrapper

    return wrap
