r"""Exact conversions between EDM noise levels and the VP/DDPM and flow-matching
parametrizations, which write a noisy state as a scaled EDM state
:math:`x_t = s(t)\, (x_0 + \sigma(t)\, \epsilon)` (Karras et al., 2022, Eq. 4).

References:
  T. Karras et al. (2022), Eq. (4) and Table 1. J. Ho, A. Jain, P. Abbeel. Denoising
  Diffusion Probabilistic Models. NeurIPS 2020. Y. Lipman et al. Flow Matching for Generative
  Modeling. ICLR 2023. X. Liu, C. Gong, Q. Liu. Flow Straight and Fast. ICLR 2023.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxgap._checks import is_concrete, positive_int
from jaxgap.noise._validate import array_in, backend, ramp, scalar

__all__ = ["SigmaScale", "ddpm_alpha_bar", "edm_to_flow", "edm_to_vp", "flow_to_edm",
           "vp_to_edm"]


class SigmaScale(NamedTuple):
    r"""An EDM noise level and the scale with which another parametrization's state is
    written: :math:`x_t = \mathrm{scale} \cdot (x_0 + \sigma \epsilon)`.

    Attributes:
      sigma: EDM noise level, same shape as the input.
      scale: factor between the other parametrization's state and the EDM state.
    """

    sigma: Float[Array, "*shape"]
    scale: Float[Array, "*shape"]


def vp_to_edm(alpha_bar: Float[ArrayLike, "*shape"]) -> SigmaScale:
    r"""EDM noise level and scale of a VP/DDPM state
    :math:`x_t = \sqrt{\bar\alpha}\, x_0 + \sqrt{1 - \bar\alpha}\, \epsilon`.

    .. math::
        \sigma = \sqrt{\frac{1 - \bar\alpha}{\bar\alpha}}, \qquad s = \sqrt{\bar\alpha},
        \qquad x_t = s\, (x_0 + \sigma \epsilon).

    So an EDM denoiser is evaluated on VP states as ``D(x_t / scale, sigma)``, and a VP model
    is evaluated on EDM states at ``x_t = scale * x_sigma``. ``sigma**2`` is the inverse
    signal-to-noise ratio :math:`(1 - \bar\alpha) / \bar\alpha`.

    Args:
      alpha_bar: cumulative signal fraction :math:`\bar\alpha \in (0, 1]`, any shape
        ``[*shape]`` (``alpha_bar == 1`` gives ``sigma == 0``).

    Returns:
      :class:`SigmaScale` ``(sigma, scale)``, each ``[*shape]``.

    Raises:
      ValueError: ``alpha_bar`` outside ``(0, 1]`` or not finite (concrete only).

    Example:
      >>> sigma, scale = vp_to_edm(0.5)  # half signal, half noise: sigma = 1
      >>> round(float(sigma), 4), round(float(scale), 4)
      (1.0, 0.7071)

    References:
      Karras et al. (2022), Eq. (4) and Table 1 (VP column); Ho et al. (2020), Eq. (4).
    """
    alpha_bar = array_in(alpha_bar, "alpha_bar", low=0.0, high=1.0, high_closed=True)
    return SigmaScale(sigma=jnp.sqrt((1.0 - alpha_bar) / alpha_bar), scale=jnp.sqrt(alpha_bar))


def edm_to_vp(sigma: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    r"""VP :math:`\bar\alpha` whose state is the scaled EDM state at noise level ``sigma``.

    .. math:: \bar\alpha = \frac{1}{1 + \sigma^2}

    The inverse of :func:`vp_to_edm` (the scale is :math:`\sqrt{\bar\alpha}`).

    Args:
      sigma: EDM noise levels ``>= 0``, any shape ``[*shape]``.

    Returns:
      ``[*shape]`` values of :math:`\bar\alpha \in (0, 1]`. For small ``sigma``,
      :math:`\bar\alpha \approx 1 - \sigma^2` resolves ``sigma`` only to about
      ``eps / sigma**2`` relative (float32: a few percent at ``sigma = 1e-3``), so keep
      noise levels as ``sigma`` where precision at low noise matters.

    Raises:
      ValueError: negative or non-finite ``sigma`` (concrete only).

    Example:
      >>> edm_to_vp(1.0)
      Array(0.5, dtype=float32)
    """
    sigma = array_in(sigma, "sigma", low_closed=True)
    return 1.0 / (1.0 + sigma**2)


def ddpm_alpha_bar(num_steps: int = 1000, beta_start=1e-4,
                   beta_end=0.02) -> Float[Array, " T"]:
    r"""DDPM's linear schedule: :math:`\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)`.

    .. math::
        \beta_t = \beta_\mathrm{start} + \frac{t}{T - 1} (\beta_\mathrm{end} -
        \beta_\mathrm{start}), \qquad t = 0, \dots, T - 1.

    Feed the result to :func:`vp_to_edm` to get the EDM noise levels of the DDPM steps
    (with the defaults, ``sigma`` runs from about 0.01 to about 157).

    Args:
      num_steps: number of steps ``T >= 1`` (``T == 1`` gives ``[1 - beta_start]``).
      beta_start: first beta, in ``(0, 1)``.
      beta_end: last beta, in ``(0, 1)``.

    Returns:
      ``[T]`` values of :math:`\bar\alpha` in ``(0, 1)``, strictly descending. Computed in
      float64 (and rounded once to the default float dtype) when the arguments are concrete.

    Raises:
      ValueError: ``num_steps < 1`` or a beta outside ``(0, 1)``.

    Example:
      >>> sigma = vp_to_edm(ddpm_alpha_bar()).sigma  # DDPM's 1000 steps as EDM levels
      >>> round(float(sigma[0]), 4), round(float(sigma[-1]), 1)
      (0.01, 157.4)

    References:
      Ho et al. (2020), Section 4 (T = 1000, betas linear from 1e-4 to 0.02).
    """
    num_steps = positive_int(num_steps, "num_steps", minimum=1)
    betas = []
    for value, name in ((beta_start, "beta_start"), (beta_end, "beta_end")):
        value = scalar(value, name)
        if is_concrete(value) and not value < 1.0:
            raise ValueError(f"{name}: expected a value in (0, 1), got {value!r}")
        betas.append(value)
    beta_start, beta_end = betas
    xp, dtype = backend(beta_start, beta_end)
    beta = beta_start + ramp(xp, num_steps, dtype) * (beta_end - beta_start)
    return jnp.asarray(xp.cumprod(1.0 - beta), dtype=jnp.result_type(float))


def flow_to_edm(t: Float[ArrayLike, "*shape"]) -> SigmaScale:
    r"""EDM noise level and scale of a flow-matching / rectified-flow state
    :math:`x_t = (1 - t)\, x_0 + t\, \epsilon`.

    .. math::
        \sigma = \frac{t}{1 - t}, \qquad s = 1 - t, \qquad x_t = s\, (x_0 + \sigma \epsilon).

    Args:
      t: flow times in ``[0, 1)`` (``t == 0`` is data, ``t -> 1`` pure noise), any shape
        ``[*shape]``.

    Returns:
      :class:`SigmaScale` ``(sigma, scale)``, each ``[*shape]``.

    Raises:
      ValueError: ``t`` outside ``[0, 1)`` or not finite (concrete only).

    Example:
      >>> flow_to_edm(0.5)  # halfway between data and noise: sigma = 1, scale = 1/2
      SigmaScale(sigma=Array(1., dtype=float32), scale=Array(0.5, dtype=float32))

    References:
      Lipman et al. (2023); Liu et al. (2023); Karras et al. (2022), Eq. (4).
    """
    t = array_in(t, "t", low=0.0, high=1.0, low_closed=True)
    scale = 1.0 - t
    return SigmaScale(sigma=t / scale, scale=scale)


def edm_to_flow(sigma: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    r"""Flow time whose state is the scaled EDM state at noise level ``sigma``.

    .. math:: t = \frac{\sigma}{1 + \sigma}

    The inverse of :func:`flow_to_edm` (the scale is :math:`1 - t = 1 / (1 + \sigma)`).
    In float32, ``sigma`` above about ``1e7`` rounds ``t`` to 1.

    Args:
      sigma: EDM noise levels ``>= 0``, any shape ``[*shape]``.

    Returns:
      ``[*shape]`` flow times in ``[0, 1)``.

    Raises:
      ValueError: negative or non-finite ``sigma`` (concrete only).

    Example:
      >>> edm_to_flow(1.0)
      Array(0.5, dtype=float32)
    """
    sigma = array_in(sigma, "sigma", low_closed=True)
    return sigma / (1.0 + sigma)
