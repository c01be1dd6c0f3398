"""Closed-form denoisers' base classes (pytrees) and Tweedie's score and velocity.

The protocol itself (``D(x, sigma)``, ``D(x, sigma, cond)``) is stated in
:mod:`jaxgap._protocol` and exported as :class:`jaxgap.denoisers.Denoiser`.

``x`` has shape ``[..., d]``; ``sigma`` is a scalar or an array broadcastable to
``x.shape[:-1]``. Conventions follow EDM (Karras et al., 2022): ``x_sigma = x0 + sigma * eps``
and ``D(x, sigma) ~ E[x0 | x_sigma = x]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxgap._checks import float_array, guard_positive, shape_str, sigma_array
from jaxgap._jit import jit
from jaxgap._protocol import call, check_denoiser


class Pytree:
    """Minimal pytree base class.

    Subclasses list array-valued attributes in ``_fields`` (pytree children, traced by
    jit/vmap/grad) and hashable hyper-parameters in ``_static`` (kept in the treedef).
    Unflattening bypasses ``__init__``, so validation in ``__init__`` never sees tracers.
    """

    _fields: tuple[str, ...] = ()
    _static: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_with_keys(
            cls, cls._tree_flatten_with_keys, cls._tree_unflatten, cls._tree_flatten)

    def _tree_flatten(self):
        children = tuple(getattr(self, f) for f in self._fields)
        aux = tuple(getattr(self, s) for s in self._static)
        return children, aux

    def _tree_flatten_with_keys(self):
        children = tuple((jax.tree_util.GetAttrKey(f), getattr(self, f)) for f in self._fields)
        aux = tuple(getattr(self, s) for s in self._static)
        return children, aux

    @classmethod
    def _tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for f, c in zip(cls._fields, children, strict=True):
            object.__setattr__(obj, f, c)
        for s, a in zip(cls._static, aux, strict=True):
            object.__setattr__(obj, s, a)
        return obj

    def __repr__(self) -> str:
        parts = []
        for f in self._fields:
            v = getattr(self, f)
            shape = getattr(v, "shape", None)
            parts.append(f"{f}={shape_str(shape) if shape is not None else repr(v)}")
        parts += [f"{s}={getattr(self, s)!r}" for s in self._static]
        return f"{type(self).__name__}({', '.join(parts)})"


class ClosedForm(Pytree):
    """Base class of closed-form denoisers: subclasses implement ``_denoise(x, sigma)``.

    ``__call__`` checks shapes (outside jit; no value is read from a ``jax.Array``, so no
    host sync; host values of ``sigma`` are checked, a ``ValueError``), broadcasts ``sigma``
    to ``x.shape[:-1]`` and calls ``_denoise`` with ``x: [..., d]`` and ``sigma: [...]``
    inside one compiled call that also checks ``sigma`` in-graph
    (:func:`jaxgap._checks.guard_positive`: finite and > 0, else an error at run time, also
    under a caller's ``jax.jit``/``vmap``/``grad`` and in jaxgap's compiled loops).
    Subclasses decorate ``_denoise`` with :func:`jaxgap._jit.jit` too (inlined there), so an
    eager call runs one compiled program per shape and structure (new parameter values
    reuse it); inside a caller's jit it is inlined.
    """

    dim: int
    conditional = False  # the protocol D(x, sigma); conditional denoisers set True

    def __call__(self, x, sigma):
        x, sigma = self._check_inputs(x, sigma)
        return self._guarded(x, sigma)

    @jit
    def _guarded(self, x, sigma):
        """``_denoise(x, sigma)`` with ``sigma`` checked in-graph (<= 0, NaN, inf raise)."""
        return guard_positive(self._denoise(x, sigma), sigma)

    def _check_inputs(self, x, sigma):
        x = float_array(x, "x", min_ndim=1, dim=self.dim, allow_empty=True, finite="host")
        sigma = sigma_array(sigma, "sigma", x.shape[:-1], dtype=x.dtype)
        return x, sigma

    def _denoise(self, x, sigma):  # pragma: no cover - abstract
        raise NotImplementedError


def _evaluate(denoiser, x, sigma, cond):
    """``(x, sigma broadcast to x.shape[:-1], D(x, sigma[, cond]))``, checked."""
    x = jnp.asarray(x)
    cond = check_denoiser(denoiser, cond, x.shape[:-1])
    sig = sigma_array(sigma, "sigma", x.shape[:-1], dtype=x.dtype)
    return x, sig, call(denoiser, x, sig, cond)


def score(denoiser: Any, x, sigma, cond=None):
    r"""Score of the noisy distribution from a denoiser (Tweedie's formula).

    .. math:: \nabla_x \log p_\sigma(x) = (D(x, \sigma) - x) / \sigma^2

    Args:
      denoiser: any callable obeying the protocol ``D(x, sigma)`` (or ``D(x, sigma, cond)``).
      x: ``[..., d]`` noisy states.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``.
      cond: condition ids broadcastable to ``x.shape[:-1]``, for a conditional denoiser.

    Returns:
      ``[..., d]`` score.

    Example:
      >>> import jax.numpy as jnp
      >>> score(lambda x, s: 0.0 * x, jnp.ones(2), 2.0)  # N(0, 0) data: -x / sigma^2
      Array([-0.25, -0.25], dtype=float32)
    """
    x, sig, out = _evaluate(denoiser, x, sigma, cond)
    return (out - x) / (sig**2)[..., None]


def velocity(denoiser: Any, x, sigma, cond=None):
    r"""Probability-flow ODE velocity ``dx/dsigma`` in the EDM convention.

    .. math:: \frac{dx}{d\sigma} = \frac{x - D(x, \sigma)}{\sigma}

    Args:
      denoiser: any callable obeying the protocol ``D(x, sigma)`` (or ``D(x, sigma, cond)``).
      x: ``[..., d]`` states.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``.
      cond: condition ids broadcastable to ``x.shape[:-1]``, for a conditional denoiser.

    Returns:
      ``[..., d]`` velocity.

    Example:
      >>> import jax.numpy as jnp
      >>> velocity(lambda x, s: 0.0 * x, jnp.ones(2), 2.0)
      Array([0.5, 0.5], dtype=float32)
    """
    x, sig, out = _evaluate(denoiser, x, sigma, cond)
    return (x - out) / sig[..., None]

