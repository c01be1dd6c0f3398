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

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgap._checks import float_array, positive_float, shape_str, sigma_array
from jaxgap._jit import jit
from jaxgap.denoisers._base import ClosedForm
from jaxgap.denoisers._linalg import HIGHEST, LOG_2PI, param_dtype, psd_eigh, shrink


class GaussianDenoiser(ClosedForm):
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
      >>> import jax.numpy as jnp
      >>> den = GaussianDenoiser(jnp.ones(2), jnp.diag(jnp.array([1.0, 0.0])))
      >>> den(jnp.array([3.0, 3.0]), 1.0)  # shrinks x - mean by 1/2 and by 0
      Array([2., 1.], dtype=float32)
      >>> den.mmse(1.0)  # (1 * 1 / (1 + 1) + 0) / 2
      Array(0.25, dtype=float32)
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
        dtype = param_dtype(mean, cov)
        self.eigvals, self.eigvecs = psd_eigh(cov, "cov", dtype, rtol)
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
        cov = jnp.matmul(xc.T, xc, precision=HIGHEST) / n
        if a > 0.0:
            cov = (1.0 - a) * cov + a * (jnp.trace(cov) / d) * jnp.eye(d, dtype=cov.dtype)
        return cls(mean, cov, rtol=rtol)

    @property
    def cov(self) -> Float[Array, "d d"]:
        """``[d, d]`` covariance as used: ``V diag(lambda) V^T`` (symmetrized, clamped)."""
        return jnp.matmul(self.eigvecs * self.eigvals[None, :], self.eigvecs.T,
                          precision=HIGHEST)

    def _rotate(self, x, sigma):
        """Flatten the batch; return ``(shape, z [M, d], lambda + sigma^2 [M, d])``."""
        shape = x.shape
        x2 = x.reshape(-1, self.dim)
        s2 = jnp.square(sigma.reshape(-1, 1))
        z = jnp.matmul(x2 - self.mean[None, :], self.eigvecs, precision=HIGHEST)
        return shape, z, self.eigvals[None, :] + s2

    @jit
    def _denoise(self, x, sigma):
        shape, z, denom = self._rotate(x, sigma)
        shrunk = shrink(self.eigvals[None, :], denom) * z
        out = self.mean[None, :] + jnp.matmul(shrunk, self.eigvecs.T, precision=HIGHEST)
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
        return self._log_prob(x, sigma)

    @jit
    def _log_prob(self, x, sigma):
        shape, z, denom = self._rotate(x, sigma)
        lp = -0.5 * jnp.sum(jnp.square(z) / denom + jnp.log(denom) + LOG_2PI, axis=-1)
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
        return self._mmse(sig)

    @jit
    def _mmse(self, sig):
        shape = sig.shape
        s2 = jnp.square(sig.reshape(-1, 1))
        lam = self.eigvals[None, :]
        per_dim = shrink(lam, lam + s2) * s2
        return jnp.mean(per_dim, axis=-1).reshape(shape)

