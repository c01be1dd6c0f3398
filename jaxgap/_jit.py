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

import functools
import os

import equinox as eqx
import jax

jit = eqx.filter_jit
"""``equinox.filter_jit``: the single way jaxgap compiles an entry point."""

__all__ = ["CPU_STEP_OPTIONS", "jit", "step_jit"]

CPU_STEP_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                    "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
"""XLA:CPU options of the training steps: YNNPACK keeps matmuls and reductions, and
convolutions go to Eigen, whose convolutions use every core and whose kernel gradients are
several times faster than YNNPACK's (jaxlib 0.10; ``docs/unet_speed.md``: the U-Net's
training step at 2 threads goes from 0.63-0.76x to 1.16x the PyTorch twin's speed)."""


@functools.cache
def _step_options(backend: str) -> tuple:
    """The options :func:`step_jit` passes on ``backend`` (empty off CPU, when ``XLA_FLAGS``
    already chooses the fusion types, when ``JAXGAP_XLA_DEFAULTS=1``, or when this jaxlib
    does not know the experimental option: checked once by compiling a tiny program)."""
    if (backend != "cpu" or "ynn_fusion_type" in os.environ.get("XLA_FLAGS", "")
            or os.environ.get("JAXGAP_XLA_DEFAULTS") == "1"):
        return ()
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_STEP_OPTIONS).lower(1.0).compile()
    except Exception:  # noqa: BLE001 - an unknown option in another jaxlib: keep defaults
        return ()
    return tuple(CPU_STEP_OPTIONS.items())


def step_jit(fn):
    """``jax.jit(fn)`` with :data:`CPU_STEP_OPTIONS` on XLA:CPU: how the training steps (of
    one network and of an ensemble) are compiled. The options change which library runs a
    convolution, not the function (same results to float32 rounding); set
    ``JAXGAP_XLA_DEFAULTS=1`` to compile with XLA's defaults."""
    options = _step_options(jax.default_backend())
    return jax.jit(fn, compiler_options=dict(options)) if options else jax.jit(fn)
