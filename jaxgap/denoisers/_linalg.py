"""Linear algebra shared by the Gaussian and Gaussian-mixture denoisers (private).

Closed-form denoisers are references: their float32 matmuls run at full precision
(:data:`HIGHEST`: no TF32/bf16 passes on GPU/TPU). Covariances are eigendecomposed once, at
construction (:func:`psd_eigh`), so every noise level costs rotations and an elementwise
shrinkage (:func:`shrink`), never a solve.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgap._checks import is_concrete

__all__ = ["HIGHEST", "LOG_2PI", "param_dtype", "psd_eigh", "shrink"]

HIGHEST = jax.lax.Precision.HIGHEST
LOG_2PI = math.log(2.0 * math.pi)


def param_dtype(*arrays) -> jnp.dtype:
    """Floating dtype of the parameters: the promoted input dtype, at least float32."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def default_rtol(dtype) -> float:
    """Relative tolerance of the symmetry/PSD checks, as a fraction of the largest |eigenvalue|.

    ``1e3 * eps`` for 32-bit and ``1e6 * eps`` for 64-bit floats (about 1.2e-4 and 2.2e-10):
    rounding in a covariance estimated in that precision stays well below it.
    """
    eps = float(jnp.finfo(dtype).eps)
    return (1e3 if jnp.dtype(dtype).itemsize <= 4 else 1e6) * eps


def psd_eigh(cov: jax.Array, name: str, dtype, rtol: float | None):
    """Eigendecomposition of symmetric PSD matrices ``cov: [d, d]`` or ``[K, d, d]``, checked.

    Concrete inputs are checked (symmetric within ``rtol * max|C_ij|``, eigenvalues
    ``>= -rtol * max|lambda|``, per matrix; default ``rtol`` from ``cov``'s own dtype) and
    decomposed in float64 NumPy; eigenvalues in ``[-rtol * max|lambda|, 0)`` are rounding and
    clamped to 0. Traced inputs (construction inside jit) are symmetrized and decomposed with
    ``jnp.linalg.eigh`` in ``dtype``, negatives clamped, without value checks.

    Returns:
      ``(eigvals [..., d], eigvecs [..., d, d])`` in ``dtype``; the columns of ``eigvecs`` are
      the eigenvectors.

    Raises:
      ValueError: naming ``name``: an asymmetric matrix or an eigenvalue below the rounding
        tolerance (concrete inputs only).
    """
    if rtol is None:  # the precision the covariance was given in, not the promoted one
        rtol = default_rtol(param_dtype(cov))
    if not is_concrete(cov):
        sym = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        lam, vec = jnp.linalg.eigh(sym.astype(dtype))
        return jnp.maximum(lam, 0.0), vec
    c = np.asarray(cov, dtype=np.float64)
    batched = c.ndim == 3
    cb = c if batched else c[None]

    def where(k):
        return f" (component {k})" if batched else ""

    scale = np.max(np.abs(cb), axis=(1, 2))
    asym = np.max(np.abs(cb - np.swapaxes(cb, 1, 2)), axis=(1, 2))
    bad = np.flatnonzero(asym > rtol * scale)
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"{name}: expected a symmetric matrix{where(k)}, got max |C - C^T| = {asym[k]:.3g} "
            f"(tolerance {rtol * scale[k]:.3g})")
    lam, vec = np.linalg.eigh(0.5 * (cb + np.swapaxes(cb, 1, 2)))
    tol = rtol * np.max(np.abs(lam), axis=1)
    bad = np.flatnonzero(np.min(lam, axis=1) < -tol)
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"{name}: expected a positive semi-definite matrix{where(k)}, got eigenvalue "
            f"{np.min(lam[k]):.3g} (rounding tolerance {tol[k]:.3g})")
    lam = np.maximum(lam, 0.0)
    if not batched:
        lam, vec = lam[0], vec[0]
    return jnp.asarray(lam, dtype=dtype), jnp.asarray(vec, dtype=dtype)


def shrink(lam: jax.Array, denom: jax.Array) -> jax.Array:
    """``lam / denom`` with ``0 / 0 = 0`` (zero variance, sigma^2 underflowed), safe for grad."""
    ok = denom > 0
    return jnp.where(ok, lam / jnp.where(ok, denom, 1.0), 0.0)
