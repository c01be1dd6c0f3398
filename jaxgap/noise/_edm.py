r"""EDM's preconditioning, loss weight and log-normal training distribution of sigma.

References:
  T. Karras, M. Aittala, T. Aila, S. Laine. Elucidating the Design Space of Diffusion-Based
  Generative Models. NeurIPS 2022 (arXiv:2206.00364), Table 1 and Appendix B.6.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from jaxgap.noise._validate import array_in, scalar, shape_tuple

__all__ = ["Precond", "edm_loss_weight", "edm_precond", "lognormal_sigma_density",
           "sample_lognormal_sigmas"]


class Precond(NamedTuple):
    r"""EDM preconditioning coefficients, each with the shape of ``sigma``.

    A network ``F`` becomes the denoiser
    :math:`D(x, \sigma) = c_\mathrm{skip}\, x + c_\mathrm{out}\, F(c_\mathrm{in}\, x,
    c_\mathrm{noise})`.

    Attributes:
      c_skip: weight of the skip connection, :math:`\sigma_d^2 / (\sigma^2 + \sigma_d^2)`.
      c_out: output scale, :math:`\sigma \sigma_d / \sqrt{\sigma^2 + \sigma_d^2}`.
      c_in: input scale, :math:`1 / \sqrt{\sigma^2 + \sigma_d^2}`.
      c_noise: noise conditioning, :math:`\tfrac14 \ln \sigma`.
    """

    c_skip: Float[Array, "*shape"]
    c_out: Float[Array, "*shape"]
    c_in: Float[Array, "*shape"]
    c_noise: Float[Array, "*shape"]


def edm_precond(sigma: Float[ArrayLike, "*shape"], sigma_data=0.5) -> Precond:
    r"""EDM preconditioning coefficients for noise level(s) ``sigma``.

    .. math::
        c_\mathrm{skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2}, \quad
        c_\mathrm{out} = \frac{\sigma \sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}}, \quad
        c_\mathrm{in} = \frac{1}{\sqrt{\sigma^2 + \sigma_d^2}}, \quad
        c_\mathrm{noise} = \tfrac14 \ln \sigma.

    With :math:`\operatorname{Var} x_0 = \sigma_d^2`, the network input
    :math:`c_\mathrm{in}(x_0 + \sigma\epsilon)` has unit variance, ``c_skip`` minimizes the
    variance of the network's effective target :math:`(x_0 - c_\mathrm{skip} x) /
    c_\mathrm{out}`, and ``c_out`` makes that target's variance one.

    Args:
      sigma: noise levels ``> 0``, any shape ``[*shape]``.
      sigma_data: standard deviation of the data per dimension, a scalar ``> 0``.

    Returns:
      :class:`Precond` ``(c_skip, c_out, c_in, c_noise)``, each ``[*shape]``.

    Raises:
      ValueError: a non-positive or non-finite ``sigma`` or ``sigma_data`` (concrete only).

    Example:
      >>> c = edm_precond(jnp.array([0.5]), sigma_data=0.5)
      >>> [round(float(v[0]), 4) for v in c]  # c_skip, c_out, c_in, c_noise
      [0.5, 0.3536, 1.4142, -0.1733]

    A network ``F`` then gives ``D(x, sigma) = c.c_skip * x + c.c_out * F(c.c_in * x, c.c_noise)``.

    References:
      Karras et al. (2022), Table 1 ("Network and preconditioning") and Appendix B.6.
    """
    sigma = array_in(sigma, "sigma")
    sigma_data = scalar(sigma_data, "sigma_data")
    norm = jnp.hypot(sigma, sigma_data)  # sqrt(sigma^2 + sigma_data^2) without overflow
    c_skip = (sigma_data / norm) ** 2
    c_out = sigma * sigma_data / norm
    c_in = 1.0 / norm
    c_noise = jnp.log(sigma) / 4.0
    return Precond(c_skip=c_skip, c_out=c_out, c_in=c_in, c_noise=c_noise)


def edm_loss_weight(sigma: Float[ArrayLike, "*shape"], sigma_data=0.5) -> Float[Array, "*shape"]:
    r"""EDM's loss weight :math:`\lambda(\sigma)`, the inverse square of ``c_out``.

    .. math::
        \lambda(\sigma) = \frac{\sigma^2 + \sigma_d^2}{(\sigma \sigma_d)^2}
                        = \frac{1}{\sigma^2} + \frac{1}{\sigma_d^2}
                        = \frac{1}{c_\mathrm{out}(\sigma)^2}.

    Multiplying the per-sigma denoising loss by :math:`\lambda` gives the network's effective
    loss unit weight at every noise level.

    Args:
      sigma: noise levels ``> 0``, any shape ``[*shape]``.
      sigma_data: standard deviation of the data per dimension, a scalar ``> 0``.

    Returns:
      ``[*shape]`` weights.

    Example:
      >>> edm_loss_weight(1.0, sigma_data=0.5)  # 1 / 1^2 + 1 / 0.5^2
      Array(5., dtype=float32)

    References:
      Karras et al. (2022), Table 1 ("Loss weighting") and Appendix B.6.
    """
    sigma = array_in(sigma, "sigma")
    sigma_data = scalar(sigma_data, "sigma_data")
    return 1.0 / sigma**2 + 1.0 / sigma_data**2


def sample_lognormal_sigmas(key: PRNGKeyArray, shape, *, p_mean=-1.2, p_std=1.2,
                            dtype=None) -> Float[Array, "*shape"]:
    r"""Draw noise levels from EDM's training distribution, :math:`\ln\sigma \sim
    \mathcal{N}(P_\mathrm{mean}, P_\mathrm{std}^2)`.

    .. math:: \sigma = \exp(P_\mathrm{mean} + P_\mathrm{std}\, n), \qquad n \sim \mathcal{N}(0, 1).

    Args:
      key: a PRNG key (never reused by the caller for anything else).
      shape: output shape, an int or a tuple of ints ``>= 0``.
      p_mean: mean of ``ln sigma`` (EDM: -1.2).
      p_std: standard deviation ``> 0`` of ``ln sigma`` (EDM: 1.2).
      dtype: floating dtype of the result (default: the default float dtype).

    Returns:
      ``[*shape]`` noise levels ``> 0``.

    Example:
      >>> sigmas = sample_lognormal_sigmas(jax.random.key(0), (256,))
      >>> sigmas.shape, bool(jnp.all(sigmas > 0))
      ((256,), True)

    References:
      Karras et al. (2022), Table 1 ("Noise distribution") and Section 5.
    """
    shape = shape_tuple(shape)
    p_mean = scalar(p_mean, "p_mean", positive=False)
    p_std = scalar(p_std, "p_std")
    dtype = jnp.result_type(float) if dtype is None else dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype: expected a floating dtype, got {dtype!r}")
    normal = jax.random.normal(key, shape, dtype=dtype)
    return jnp.exp(p_mean + p_std * normal)


def lognormal_sigma_density(sigma: Float[ArrayLike, "*shape"], *, p_mean=-1.2,
                            p_std=1.2) -> Float[Array, "*shape"]:
    r"""Density of :func:`sample_lognormal_sigmas`' distribution with respect to ``sigma``.

    .. math::
        p(\sigma) = \frac{1}{\sigma P_\mathrm{std} \sqrt{2\pi}}
                    \exp\Bigl(-\frac{(\ln\sigma - P_\mathrm{mean})^2}{2 P_\mathrm{std}^2}\Bigr).

    To average a per-sigma loss :math:`L(\sigma)` over the training distribution on a
    log-spaced grid, integrate in :math:`u = \ln \sigma`, where the density is
    :math:`\sigma\, p(\sigma)`: :math:`\mathbb{E}[L] = \int L(\sigma)\, \sigma\, p(\sigma)\, du`.

    Args:
      sigma: noise levels ``> 0``, any shape ``[*shape]``.
      p_mean: mean of ``ln sigma``.
      p_std: standard deviation ``> 0`` of ``ln sigma``.

    Returns:
      ``[*shape]`` density values (per unit of ``sigma``).

    Example:
      >>> round(float(lognormal_sigma_density(1.0)), 4)  # exp(-0.5) / (1.2 sqrt(2 pi))
      0.2016

    References:
      Karras et al. (2022), Table 1 ("Noise distribution").
    """
    sigma = array_in(sigma, "sigma")
    p_mean = scalar(p_mean, "p_mean", positive=False)
    p_std = scalar(p_std, "p_std")
    z = (jnp.log(sigma) - p_mean) / p_std
    return jnp.exp(-0.5 * z**2) / (sigma * p_std * math.sqrt(2.0 * math.pi))
