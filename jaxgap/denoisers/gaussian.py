r"""Optimal denoiser of a Gaussian distribution: the Wiener filter.

For data ``x0 ~ N(mu, C)`` and ``x = x0 + sigma * eps`` (EDM convention), the posterior mean is

.. math:: D(x, \sigma) = \mu + C (C + \sigma^2 I)^{-1} (x - \mu).

With the eigendecomposition ``C = V diag(lambda) V^T`` (done once, at construction) this is a
rotation, a per-eigendirection shrinkage ``lambda / (lambda + sigma^2)`` and a rotation back,
so any number of noise levels costs two ``[d, d]`` matmuls per query and no solve.
Singular covariances (data on a subspace) are fine: eigenvalues 0 shrink their directions to
the mean for every ``sigma > 0``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgap._checks import float_array, is_concrete, positive_float, shape_str, sigma_array
from jaxgap.denoisers._base import Denoiser
from jaxgap.denoisers._base import compiled as _compiled

# Closed-form denoisers are references: float32 matmuls at full precision (no TF32/bf16 passes
# on GPU/TPU).
_HIGHEST = jax.lax.Precision.HIGHEST
_LOG_2PI = math.log(2.0 * math.pi)


def _param_dtype(*arrays) -> jnp.dtype:
    """Floating dtype of the parameters: the promoted input dtype, at least float32."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _default_rtol(dtype) -> float:
    """Relative tolerance of the symmetry/PSD checks, as a fraction of the largest |eigenvalue|.

    ``1e3 * eps`` for 32-bit and ``1e6 * eps`` for 64-bit floats (about 1.2e-4 and 2.2e-10):
    rounding in a covariance estimated in that precision stays well below it.
    """
    eps = float(jnp.finfo(dtype).eps)
    return (1e3 if jnp.dtype(dtype).itemsize <= 4 else 1e6) * eps


def _psd_eigh(cov: jax.Array, name: str, dtype, rtol: float | None):
    """Eigendecomposition of symmetric PSD matrices ``cov: [d, d]`` or ``[K, d, d]``, checked.

    Concrete inputs are checked (symmetric within ``rtol * max|C_ij|``, eigenvalues
    ``>= -rtol * max|lambda|``, per matrix; default ``rtol`` from ``cov``'s own dtype) and
    decomposed in float64 NumPy; eigenvalues in ``[-rtol * max|lambda|, 0)`` are rounding and
    clamped to 0. Traced inputs (construction inside jit) are symmetrized and decomposed with
    ``jnp.linalg.eigh`` in ``dtype``, negatives clamped, without value checks.

    Returns:
      ``(eigvals [..., d], eigvecs [..., d, d])`` in ``dtype``; the columns of ``eigvecs`` are
      the eigenvectors.
    """
    if rtol is None:  # the precision the covariance was given in, not the promoted one
        rtol = _default_rtol(_param_dtype(cov))
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


def _shrink(lam: jax.Array, denom: jax.Array) -> jax.Array:
    """``lam / denom`` with ``0 / 0 = 0`` (zero variance, sigma^2 underflowed), safe for grad."""
    ok = denom > 0
    return jnp.where(ok, lam / jnp.where(ok, denom, 1.0), 0.0)


class GaussianDenoiser(Denoiser):
    r"""Optimal denoiser of ``N(mean, cov)``: the Wiener filter.

    .. math::
        D(x, \sigma) = \mu + C (C + \sigma^2 I)^{-1} (x - \mu)
                     = \mu + V \,\mathrm{diag}\!\Big(\frac{\lambda}{\lambda + \sigma^2}\Big)
                       V^\top (x - \mu),

    with ``C = V diag(lambda) V^T`` computed once at construction (float64 on the host for
    concrete inputs). The covariance may be singular; tiny negative eigenvalues from rounding
    are clamped to 0.

    Args:
      mean: ``[d]`` mean ``mu``.
      cov: ``[d, d]`` symmetric positive semi-definite covariance ``C``.
      rtol: relative tolerance of the symmetry and PSD checks (a fraction of ``max|C_ij|``
        and of the largest ``|lambda|``); default ``1e3 * eps`` in 32-bit, ``1e6 * eps`` in
        64-bit floats.

    Attributes:
      mean: ``[d]``.
      eigvals: ``[d]`` eigenvalues of ``cov``, ascending, ``>= 0``.
      eigvecs: ``[d, d]`` orthonormal eigenvectors (columns).
      dim: ``d`` (static).

    Raises:
      ValueError: naming ``mean`` or ``cov`` on a wrong rank/shape, non-finite values, an
        asymmetric or non-PSD covariance.

    References:
      Wiener filter / Gaussian posterior mean; Kadkhodaie et al., "Generalization in diffusion
      models arises from geometry-adaptive harmonic representations" (ICLR 2024), Sec. 2;
      Kaiser and Kollmann, arXiv 2603.13419 (2026).

    Example:
      >>> den = GaussianDenoiser(jnp.zeros(2), jnp.diag(jnp.array([1.0, 0.0])))
      >>> den(jnp.array([2.0, 2.0]), 1.0)  # [1., 0.]: half the variance, and none
    """

    _fields = ("mean", "eigvals", "eigvecs")
    _static = ("dim",)

    mean: Float[Array, " d"]
    eigvals: Float[Array, " d"]
    eigvecs: Float[Array, "d d"]

    def __init__(self, mean: Float[ArrayLike, " d"], cov: Float[ArrayLike, "d d"], *,
                 rtol: float | None = None):
        mean = float_array(mean, "mean", ndim=1)
        d = mean.shape[0]
        cov = float_array(cov, "cov")
        if cov.shape != (d, d):
            raise ValueError(
                f"cov: expected shape [{d}, {d}] (d from mean), got shape {shape_str(cov.shape)}")
        if rtol is not None:
            rtol = positive_float(rtol, "rtol", allow_zero=True)
        dtype = _param_dtype(mean, cov)
        self.eigvals, self.eigvecs = _psd_eigh(cov, "cov", dtype, rtol)
        self.mean = mean.astype(dtype)
        self.dim = d

    @classmethod
    def from_data(cls, x: Float[ArrayLike, "n d"], *, shrinkage: float = 0.0,
                  rtol: float | None = None) -> GaussianDenoiser:
        r"""Fit mean and covariance to data (maximum likelihood) and return the Wiener filter.

        The covariance is the maximum-likelihood estimate (divides by ``n``, not ``n - 1``):
        it is the covariance of the empirical distribution of ``x``, so the Gaussian matches
        the first two moments of the training set whose empirical optimal denoiser it is
        compared with. Optional shrinkage towards the scaled identity:

        .. math::
            \hat C = (1 - a)\, \frac1n \sum_i (x_i - \bar x)(x_i - \bar x)^\top
                     + a\, \frac{\mathrm{tr}\, \hat C_{ML}}{d} I.

        Args:
          x: ``[n, d]`` samples, ``n >= 1``.
          shrinkage: ``a`` in ``[0, 1]``; 0 (default) is the plain ML estimate.
          rtol: forwarded to the constructor.

        Returns:
          A ``GaussianDenoiser``.
        """
        x = float_array(x, "x", ndim=2)
        a = positive_float(shrinkage, "shrinkage", allow_zero=True)
        if a > 1.0:
            raise ValueError(f"shrinkage: expected a number in [0, 1], got {shrinkage!r}")
        n, d = x.shape
        mean = jnp.mean(x, axis=0)
        xc = x - mean[None, :]
        cov = jnp.matmul(xc.T, xc, precision=_HIGHEST) / n
        if a > 0.0:
            cov = (1.0 - a) * cov + a * (jnp.trace(cov) / d) * jnp.eye(d, dtype=cov.dtype)
        return cls(mean, cov, rtol=rtol)

    @property
    def cov(self) -> Float[Array, "d d"]:
        """``[d, d]`` covariance as used: ``V diag(lambda) V^T`` (symmetrized, clamped)."""
        return jnp.matmul(self.eigvecs * self.eigvals[None, :], self.eigvecs.T,
                          precision=_HIGHEST)

    def _rotate(self, x, sigma):
        """Flatten the batch; return ``(shape, z [M, d], lambda + sigma^2 [M, d])``."""
        shape = x.shape
        x2 = x.reshape(-1, self.dim)
        s2 = jnp.square(sigma.reshape(-1, 1))
        z = jnp.matmul(x2 - self.mean[None, :], self.eigvecs, precision=_HIGHEST)
        return shape, z, self.eigvals[None, :] + s2

    def _denoise(self, x, sigma):
        return _gaussian_denoise(self, x, sigma)

    def _denoise_impl(self, x, sigma):
        shape, z, denom = self._rotate(x, sigma)
        shrunk = _shrink(self.eigvals[None, :], denom) * z
        out = self.mean[None, :] + jnp.matmul(shrunk, self.eigvecs.T, precision=_HIGHEST)
        return out.reshape(shape)

    def log_prob(self, x: Float[ArrayLike, "*batch d"],
                 sigma: Float[ArrayLike, "*batch"] | float) -> Float[Array, "*batch"]:
        r"""Log-density of the noisy data ``N(mu, C + sigma^2 I)`` at ``x``.

        .. math::
            \log p_\sigma(x) = -\tfrac12 \sum_j \Big[\frac{z_j^2}{\lambda_j + \sigma^2}
                               + \log(\lambda_j + \sigma^2) + \log 2\pi\Big],
            \quad z = V^\top (x - \mu).

        Args:
          x: ``[..., d]``.
          sigma: scalar or array broadcastable to ``x.shape[:-1]``.

        Returns:
          ``[...]`` log-densities.
        """
        x, sigma = self._check_inputs(x, sigma)
        return _gaussian_log_prob(self, x, sigma)

    def _log_prob_impl(self, x, sigma):
        shape, z, denom = self._rotate(x, sigma)
        lp = -0.5 * jnp.sum(jnp.square(z) / denom + jnp.log(denom) + _LOG_2PI, axis=-1)
        return lp.reshape(shape[:-1])

    def mmse(self, sigma: Float[ArrayLike, "*s"] | float) -> Float[Array, "*s"]:
        r"""Minimum mean squared error per dimension at noise level ``sigma`` (closed form).

        .. math::
            \mathrm{mmse}(\sigma) = \frac1d \sum_k \frac{\lambda_k \sigma^2}{\lambda_k + \sigma^2}
            = \frac1d\, \mathbb E \|D(x_0 + \sigma \epsilon, \sigma) - x_0\|^2.

        Args:
          sigma: scalar or array of any shape, values ``> 0``.

        Returns:
          An array of the shape of ``sigma``.
        """
        shape = np.shape(sigma)
        sig = sigma_array(sigma, "sigma", shape, dtype=self.eigvals.dtype)
        return _gaussian_mmse(self, sig)

    def _mmse_impl(self, sig):
        shape = sig.shape
        s2 = jnp.square(sig.reshape(-1, 1))
        lam = self.eigvals[None, :]
        per_dim = _shrink(lam, lam + s2) * s2
        return jnp.mean(per_dim, axis=-1).reshape(shape)


_gaussian_denoise = _compiled("_denoise_impl")
_gaussian_log_prob = _compiled("_log_prob_impl")
_gaussian_mmse = _compiled("_mmse_impl")
