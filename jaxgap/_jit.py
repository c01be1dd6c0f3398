"""The one jit boundary of jaxgap's public entry points.

Every public function or method that runs compiled code is wrapped by :func:`jit`, which is
equinox's ``filter_jit``: the array leaves of every argument (a denoiser's parameters, data,
keys, noise grids) are traced, and everything else (a plain function or closure, a
``functools.partial``, an ``nnx`` module's structure, Python ints and strings) is static,
compared by equality and hashed. So any callable obeying the denoiser protocol passes
through, and new parameter values, keys or grids of the same shapes reuse the compiled
program. Inside a caller's ``jax.jit``/``vmap``/``grad`` the inner boundary is inlined.

Decorating a method compiles it with ``self`` as an argument (arrays traced, the rest
static), so a closed-form denoiser's ``__call__`` is one program per shape and structure.

Rules for callers: convert Python floats that vary between calls (a noise level, a churn
value) to arrays before the call, or each new value compiles a new program; validate
inputs before the call (outside jit), never inside.
"""

from __future__ import annotations

import equinox as eqx

jit = eqx.filter_jit
"""``equinox.filter_jit``: the single way jaxgap compiles an entry point."""

__all__ = ["jit"]
