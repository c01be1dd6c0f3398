r"""Optimal denoiser of a Gaussian mixture: posterior-weighted Wiener filters.

For data ``x0 ~ sum_k w_k N(mu_k, C_k)`` and ``x = x0 + sigma * eps`` (EDM convention),

.. math::
    D(x, \sigma) = \sum_k r_k(x, \sigma) \big[\mu_k + C_k (C_k + \sigma^2 I)^{-1} (x - \mu_k)\big],
    \qquad r_k \propto w_k\, \mathcal N(x; \mu_k, C_k + \sigma^2 I).

Covariances are full ``[K, d, d]`` (eigendecomposed once at construction, so every noise
level costs two batched ``[d, d]`` matmuls per query and component, no solve), diagonal
``[K, d]`` or isotropic ``[K]`` (elementwise fast paths). The responsibilities are a softmax of
log-densities, exact for vanishing covariances: with ``C_k = 0`` the denoiser is the optimal
denoiser of the weighted empirical distribution ``sum_k w_k delta(mu_k)``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgap._checks import float_array, is_concrete, positive_float, shape_str
from jaxgap._jit import jit
from jaxgap.denoisers._base import ClosedForm
from jaxgap.denoisers._linalg import HIGHEST, LOG_2PI, param_dtype, psd_eigh, shrink


class GMMDenoiser(ClosedForm):
    r"""Optimal denoiser of a Gaussian mixture ``sum_k w_k N(mu_k, C_k)``.

    .. math::
        D(x, \sigma) = \sum_k r_k \Big[\mu_k + V_k\, \mathrm{diag}\Big(
            \frac{\lambda_k}{\lambda_k + \sigma^2}\Big) V_k^\top (x - \mu_k)\Big],
        \quad
        \log r_k = \log w_k - \tfrac12 \sum_j \Big[\frac{z_{kj}^2}{\lambda_{kj} + \sigma^2}
            + \log(\lambda_{kj} + \sigma^2)\Big] - \log Z,

    with ``C_k = V_k diag(lambda_k) V_k^T`` and ``z_k = V_k^T (x - mu_k)`` (``V_k = I`` for
    diagonal and isotropic covariances). Responsibilities use a log-sum-exp (softmax), so
    they stay exact for tiny ``sigma`` and zero covariances. A batch ``x: [M, d]`` is evaluated
    with ``[M, K, d]`` intermediates at most (never ``[M, K, d, d]``).

    Args:
      weights: ``[K]`` mixture weights, all ``> 0``; normalized to sum to 1 (so unnormalized
        counts may be passed).
      means: ``[K, d]`` component means.
      covs: component covariances, one of: ``[K, d, d]`` full (symmetric PSD; tiny negative
        eigenvalues from rounding are clamped to 0), ``[K, d]`` diagonal variances or ``[K]``
        isotropic variances (``C_k = covs[k] * I``); variances ``>= 0`` (0 is allowed: a point
        mass).
      rtol: relative tolerance of the symmetry/PSD checks of full covariances (see
        ``GaussianDenoiser``).

    Attributes:
      weights: ``[K]`` normalized weights.
      means: ``[K, d]``.
      variances: ``[K, d]`` eigenvalues (full) or diagonal variances, or ``[K]`` (isotropic).
      eigvecs: ``[K, d, d]`` eigenvectors (columns) for full covariances, else ``None``.
      cov_type: ``"full"``, ``"diag"`` or ``"iso"`` (static).
      dim: ``d`` (static).

    Raises:
      ValueError: naming ``weights``, ``means`` or ``covs`` with the expected and received
        shape, or on non-finite, non-positive weights, negative variances, asymmetric or
        non-PSD covariances.

    References:
      Kaiser and Kollmann, arXiv 2603.13419 (2026); Karras et al., "Elucidating the design
      space of diffusion-based generative models" (NeurIPS 2022), Eq. (3) (EDM convention).

    Example:
      >>> import jax.numpy as jnp
      >>> den = GMMDenoiser(jnp.ones(2), jnp.array([[-1.0, 0.0], [1.0, 0.0]]), jnp.zeros(2))
      >>> r = den.responsibilities(jnp.array([0.0, 0.0]), 0.5)  # halfway: equal odds
      >>> r.round(4).tolist()
      [0.5, 0.5]
      >>> den(jnp.array([[0.3, 0.0]]), 0.5).round(4)  # tanh(0.3 / 0.5**2) towards +1
      Array([[0.8337, 0.    ]], dtype=float32)
    """

    _fields = ("weights", "means", "variances", "eigvecs")
    _static = ("dim", "cov_type")

    weights: Float[Array, " K"]
    means: Float[Array, "K d"]
    variances: Float[Array, "K d"] | Float[Array, " K"]
    eigvecs: Float[Array, "K d d"] | None

    def __init__(self, weights: Float[ArrayLike, " K"], means: Float[ArrayLike, "K d"],
                 covs: Float[ArrayLike, "K d d"] | Float[ArrayLike, "K d"] | Float[ArrayLike, " K"],
                 *, rtol: float | None = None):
        weights = float_array(weights, "weights", ndim=1)
        k = weights.shape[0]
        if is_concrete(weights) and not np.all(np.asarray(weights) > 0):
            raise ValueError(f"weights: expected values > 0, got min {float(np.min(weights))!r}")
        means = float_array(means, "means", ndim=2)
        if means.shape[0] != k:
            raise ValueError(f"means: expected shape [K, d] with K = {k} (from weights), "
                             f"got shape {shape_str(means.shape)}")
        d = means.shape[1]
        covs = float_array(covs, "covs", allow_empty=False)
        expected = {3: (k, d, d), 2: (k, d), 1: (k,)}
        if covs.ndim not in expected or covs.shape != expected[covs.ndim]:
            raise ValueError(
                f"covs: expected shape [{k}, {d}, {d}] (full), [{k}, {d}] (diagonal) or [{k}] "
                f"(isotropic variances) with K = {k}, d = {d} from means, "
                f"got shape {shape_str(covs.shape)}")
        if rtol is not None:
            rtol = positive_float(rtol, "rtol", allow_zero=True)
        dtype = param_dtype(weights, means, covs)
        if covs.ndim == 3:
            self.cov_type = "full"
            self.variances, self.eigvecs = psd_eigh(covs, "covs", dtype, rtol)
        else:
            self.cov_type = "diag" if covs.ndim == 2 else "iso"
            if is_concrete(covs) and not np.all(np.asarray(covs) >= 0):
                raise ValueError(f"covs: expected variances >= 0, got min {float(np.min(covs))!r}")
            self.variances, self.eigvecs = covs.astype(dtype), None
        weights = weights.astype(dtype)
        self.weights = weights / jnp.sum(weights)
        self.means = means.astype(dtype)
        self.dim = d

    @property
    def num_components(self) -> int:
        """``K``."""
        return self.means.shape[0]

    @property
    def covs(self) -> Float[Array, "K d d"] | Float[Array, "K d"] | Float[Array, " K"]:
        """Covariances in the form given: full ``V diag(lambda) V^T``, diagonal or isotropic."""
        if self.cov_type != "full":
            return self.variances
        return jnp.einsum("kij,klj->kil", self.eigvecs * self.variances[:, None, :],
                          self.eigvecs, precision=HIGHEST)

    @property
    def mean(self) -> Float[Array, " d"]:
        """``[d]`` mixture mean ``sum_k w_k mu_k`` (the limit of ``D`` as sigma -> inf)."""
        return jnp.matmul(self.weights, self.means, precision=HIGHEST)

    def _terms(self, x2, s2):
        """Per-component quantities for ``x2: [M, d]``, ``s2 = sigma^2: [M]``.

        Returns ``(logits [M, K], z [M, K, d], denom)`` with ``z`` the (rotated) residual and
        ``denom = lambda + sigma^2`` (``[M, K, d]``, or ``[M, K]`` for isotropic components);
        ``logits`` are the log responsibilities up to a per-query constant.
        """
        r = x2[:, None, :] - self.means[None, :, :]
        lam = self.variances
        if self.cov_type == "full":
            z = jnp.einsum("mkd,kdj->mkj", r, self.eigvecs, precision=HIGHEST)
        else:
            z = r
        if self.cov_type == "iso":
            denom = lam[None, :] + s2[:, None]
            maha = jnp.sum(jnp.square(z), axis=-1) / denom
            logdet = self.dim * jnp.log(denom)
        else:
            denom = lam[None, :, :] + s2[:, None, None]
            maha = jnp.sum(jnp.square(z) / denom, axis=-1)
            logdet = jnp.sum(jnp.log(denom), axis=-1)
        logits = jnp.log(self.weights)[None, :] - 0.5 * (maha + logdet)
        return logits, z, denom

    def _flat(self, x, sigma):
        return x.reshape(-1, self.dim), jnp.square(sigma.reshape(-1))

    @jit
    def _denoise(self, x, sigma):
        x2, s2 = self._flat(x, sigma)
        logits, z, denom = self._terms(x2, s2)
        resp = jax.nn.softmax(logits, axis=-1)
        lam = self.variances
        if self.cov_type == "full":
            shrunk = shrink(lam[None, :, :], denom) * z
            offset = jnp.einsum("mkj,kdj->mkd", shrunk, self.eigvecs, precision=HIGHEST)
        elif self.cov_type == "diag":
            offset = shrink(lam[None, :, :], denom) * z
        else:
            offset = shrink(lam[None, :], denom)[:, :, None] * z
        comp = self.means[None, :, :] + offset
        out = jnp.einsum("mk,mkd->md", resp, comp, precision=HIGHEST)
        return out.reshape(x.shape)

    def log_prob(self, x: Float[ArrayLike, "*batch d"],
                 sigma: Float[ArrayLike, "*batch"] | float) -> Float[Array, "*batch"]:
        r"""Log-density of the noisy mixture ``sum_k w_k N(mu_k, C_k + sigma^2 I)`` at ``x``.

        Args:
          x: ``[..., d]``.
          sigma: scalar or array broadcastable to ``x.shape[:-1]``.

        Returns:
          ``[...]`` log-densities (a log-sum-exp over components).
        """
        x, sigma = self._check_inputs(x, sigma)
        return self._log_prob(x, sigma)

    @jit
    def _log_prob(self, x, sigma):
        x2, s2 = self._flat(x, sigma)
        logits, _, _ = self._terms(x2, s2)
        lp = jax.nn.logsumexp(logits, axis=-1) - 0.5 * self.dim * LOG_2PI
        return lp.reshape(x.shape[:-1])

    def responsibilities(self, x: Float[ArrayLike, "*batch d"],
                         sigma: Float[ArrayLike, "*batch"] | float) -> Float[Array, "*batch K"]:
        r"""Responsibilities ``r_k(x, sigma) = P(component k | x_sigma = x)``.

        .. math:: r_k \propto w_k\, \mathcal N(x; \mu_k, C_k + \sigma^2 I)

        Args:
          x: ``[..., d]``.
          sigma: scalar or array broadcastable to ``x.shape[:-1]``.

        Returns:
          ``[..., K]``, summing to 1 over the last axis.
        """
        x, sigma = self._check_inputs(x, sigma)
        return self._responsibilities(x, sigma)

    def posterior(self, x, sigma):
        """Deprecated alias of :meth:`responsibilities` (kept for one release)."""
        warnings.warn("GMMDenoiser.posterior is deprecated and will be removed in the next "
                      "release; use GMMDenoiser.responsibilities (same values)",
                      DeprecationWarning, stacklevel=2)
        return self.responsibilities(x, sigma)

    @jit
    def _responsibilities(self, x, sigma):
        x2, s2 = self._flat(x, sigma)
        logits, _, _ = self._terms(x2, s2)
        resp = jax.nn.softmax(logits, axis=-1)
        return resp.reshape(x.shape[:-1] + (self.num_components,))
