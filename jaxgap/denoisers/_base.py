"""The one denoiser protocol: a pytree callable ``D(x, sigma) -> x_hat``.

``x`` has shape ``[..., d]``; ``sigma`` is a scalar or an array broadcastable to
``x.shape[:-1]``. Conventions follow EDM (Karras et al., 2022): ``x_sigma = x0 + sigma * eps``
and ``D(x, sigma) ~ E[x0 | x_sigma = x]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxgap._checks import float_array, shape_str, sigma_array


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


def compiled(method_name: str):
    """``jax.jit`` of ``obj.<method_name>(*args)`` with the object passed as a pytree.

    Eager calls then run one compiled program per shape instead of dispatching op by op;
    inside a caller's jit/vmap/grad the inner jit is simply inlined.
    """
    return jax.jit(lambda obj, *args: getattr(obj, method_name)(*args))


class Denoiser(Pytree):
    """Base class of closed-form denoisers: subclasses implement ``_denoise(x, sigma)``.

    ``__call__`` validates shapes (and values, outside jit), broadcasts ``sigma`` to
    ``x.shape[:-1]`` and calls ``_denoise`` with ``x: [..., d]`` and ``sigma: [...]``.
    """

    dim: int

    def __call__(self, x, sigma):
        x, sigma = self._check_inputs(x, sigma)
        return self._denoise(x, sigma)

    def _check_inputs(self, x, sigma):
        x = float_array(x, "x", min_ndim=1, dim=self.dim, allow_empty=True)
        sigma = sigma_array(sigma, "sigma", x.shape[:-1], dtype=x.dtype)
        return x, sigma

    def _denoise(self, x, sigma):  # pragma: no cover - abstract
        raise NotImplementedError


def score(denoiser: Any, x, sigma):
    r"""Score of the noisy distribution from a denoiser (Tweedie's formula).

    .. math:: \nabla_x \log p_\sigma(x) = (D(x, \sigma) - x) / \sigma^2

    Args:
      denoiser: any callable obeying the protocol ``D(x, sigma)``.
      x: ``[..., d]`` noisy states.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``.

    Returns:
      ``[..., d]`` score.
    """
    x = jnp.asarray(x)
    sig = sigma_array(sigma, "sigma", x.shape[:-1], dtype=x.dtype)
    return (denoiser(x, sig) - x) / (sig**2)[..., None]


def velocity(denoiser: Any, x, sigma):
    r"""Probability-flow ODE velocity ``dx/dsigma`` in the EDM convention.

    .. math:: \frac{dx}{d\sigma} = \frac{x - D(x, \sigma)}{\sigma}

    Args:
      denoiser: any callable obeying the protocol ``D(x, sigma)``.
      x: ``[..., d]`` states.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``.

    Returns:
      ``[..., d]`` velocity.
    """
    x = jnp.asarray(x)
    sig = sigma_array(sigma, "sigma", x.shape[:-1], dtype=x.dtype)
    return (x - denoiser(x, sig)) / sig[..., None]
