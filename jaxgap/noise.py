r"""Noise levels, EDM preconditioning and conversions between diffusion parametrizations.

jaxgap works in the variance-exploding convention of EDM (Karras et al., 2022):

.. math:: x_\sigma = x_0 + \sigma \epsilon, \qquad \epsilon \sim \mathcal{N}(0, I).

This module holds the noise-level grids (:func:`karras_sigmas`, :func:`log_sigmas`), EDM's
preconditioning and loss weight (:func:`edm_precond`, :func:`edm_loss_weight`), its log-normal
training distribution of noise levels (:func:`sample_lognormal_sigmas`,
:func:`lognormal_sigma_density`), and exact conversions from the VP/DDPM and
flow-matching parametrizations. Those write a noisy state as a scaled EDM state,

.. math:: x_t = s(t)\, (x_0 + \sigma(t)\, \epsilon),

(Karras et al., 2022, Eq. 4 and Table 1), so a VP or flow model is used with every jaxgap tool
by evaluating it at ``x_t = scale * x_sigma`` and reading off ``sigma``.

Validation: hyper-parameters and arrays are checked at the boundary when their values are
concrete; inside ``jit``/``vmap``/``grad`` the value checks are skipped (shapes are still
checked), so every function here can be traced. A failed check raises ``ValueError`` with the
message ``"<argument>: expected ..., got ..."``.

References:
  T. Karras, M. Aittala, T. Aila, S. Laine. Elucidating the Design Space of Diffusion-Based
  Generative Models. NeurIPS 2022 (arXiv:2206.00364).
  J. Ho, A. Jain, P. Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.
  Y. Lipman, R. T. Q. Chen, H. Ben-Hamu, M. Nickel, M. Le. Flow Matching for Generative
  Modeling. ICLR 2023. X. Liu, C. Gong, Q. Liu. Flow Straight and Fast: Learning to Generate
  and Transfer Data with Rectified Flow. ICLR 2023.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from jaxgap._checks import float_array, is_concrete, positive_float, positive_int, shape_str

__all__ = [
    "Precond",
    "SigmaScale",
    "ddpm_alpha_bar",
    "edm_loss_weight",
    "edm_precond",
    "edm_to_flow",
    "edm_to_vp",
    "flow_to_edm",
    "karras_sigmas",
    "log_sigmas",
    "lognormal_sigma_density",
    "sample_lognormal_sigmas",
    "vp_to_edm",
]


# ------------------------------------------------------------------------------------------
# Validation helpers (private)
# ------------------------------------------------------------------------------------------

def _scalar(value, name: str, *, positive: bool = True):
    """A real scalar hyper-parameter.

    Concrete values are checked (finite, and > 0 when ``positive``) and returned as a Python
    float; a tracer is returned unchanged after a rank check (its value cannot be checked).
    """
    if value is None:
        raise ValueError(f"{name}: expected a real number, got None")
    if np.ndim(value) != 0:
        raise ValueError(f"{name}: expected a scalar, got shape {shape_str(np.shape(value))}")
    if not is_concrete(value):
        return value
    if positive:
        return positive_float(value, name)
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a real number, got {value!r}") from err
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return v


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError as err:
        raise ValueError(f"shape: expected an int or a tuple of ints, got {shape!r}") from err
    return tuple(positive_int(s, "shape", minimum=0) for s in dims)


def _interval(low: float, high: float, low_closed: bool, high_closed: bool) -> str:
    if math.isinf(high):
        return f"values {'>=' if low_closed else '>'} {low:g}"
    left, right = ("[" if low_closed else "("), ("]" if high_closed else ")")
    return f"values in {left}{low:g}, {high:g}{right}"


def _array_in(x, name: str, *, low: float = 0.0, high: float = math.inf,
              low_closed: bool = False, high_closed: bool = False) -> Array:
    """``x`` as a floating array, its values (when concrete) finite and inside the interval."""
    x = float_array(x, name, allow_empty=True)  # dtype, and finiteness when concrete
    if is_concrete(x) and x.size:
        v = np.asarray(x)  # NumPy: inside a jit trace jnp ops on a constant give tracers
        above = (v >= low) if low_closed else (v > low)
        below = (v <= high) if high_closed else (v < high)
        ok = above & below
        if not np.all(ok):
            bad = float(v[~ok].ravel()[0])
            raise ValueError(
                f"{name}: expected {_interval(low, high, low_closed, high_closed)}, got {bad!r}")
    return x


def _sigma_range(sigma_min, sigma_max):
    """Check ``0 < sigma_min < sigma_max`` (order checked only when both are concrete)."""
    sigma_min = _scalar(sigma_min, "sigma_min")
    sigma_max = _scalar(sigma_max, "sigma_max")
    if is_concrete(sigma_min) and is_concrete(sigma_max) and not sigma_min < sigma_max:
        raise ValueError(f"sigma_min: expected a value < sigma_max = {sigma_max!r}, "
                         f"got {sigma_min!r}")
    return sigma_min, sigma_max


def _backend(*params):
    """NumPy in float64 when every hyper-parameter is concrete, else jax.numpy (traced).

    Grids built from concrete hyper-parameters are computed in float64 and rounded once to
    the default float dtype, so their values are correctly rounded and their endpoints exact.
    """
    if all(is_concrete(p) for p in params):
        return np, np.float64
    return jnp, jnp.result_type(float)


def _ramp(xp, num: int, dtype):
    """``i / (num - 1)`` for ``i = 0 .. num - 1`` (``[0]`` when ``num == 1``)."""
    return xp.arange(num, dtype=dtype) / max(num - 1, 1)


def _with_endpoints(xp, grid, first, last, dtype):
    """Replace the first and last entries of ``grid`` by the exact endpoint values."""
    first = xp.reshape(xp.asarray(first, dtype=dtype), (1,))
    last = xp.reshape(xp.asarray(last, dtype=dtype), (1,))
    return xp.concatenate([first, grid[1:-1], last])


# ------------------------------------------------------------------------------------------
# Noise-level grids
# ------------------------------------------------------------------------------------------

def karras_sigmas(num: int, sigma_min=0.002, sigma_max=80.0, rho=7.0) -> Float[Array, " K"]:
    r"""EDM's sampling grid of noise levels, descending from ``sigma_max`` to ``sigma_min``.

    Equally spaced in :math:`\sigma^{1/\rho}`:

    .. math::
        \sigma_i = \Bigl(\sigma_{\max}^{1/\rho} + \tfrac{i}{K-1}
                   \bigl(\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho}\bigr)\Bigr)^{\rho},
        \qquad i = 0, \dots, K - 1.

    Unlike EDM's sampler, no trailing :math:`\sigma_K = 0` is appended: every entry is a valid
    noise level for losses and denoisers (append a zero yourself for a sampler's last step).
    ``rho = 1`` gives a linear grid; large ``rho`` concentrates levels near ``sigma_min``.

    Args:
      num: number of levels ``K``, an integer ``>= 2`` (both endpoints are always included;
        ``num == 1`` is rejected because it cannot hold both).
      sigma_min: smallest level, ``0 < sigma_min < sigma_max``.
      sigma_max: largest level.
      rho: exponent ``> 0`` (EDM uses 7).

    Returns:
      ``[K]`` levels in the default float dtype, strictly descending, with
      ``out[0] == sigma_max`` and ``out[-1] == sigma_min`` exactly (after rounding to the
      dtype). With concrete hyper-parameters the grid is computed in float64 and rounded once;
      traced ``sigma_min``/``sigma_max``/``rho`` (e.g. under ``vmap``) are supported.

    Raises:
      ValueError: ``num < 2``, a non-positive or non-finite ``sigma_min``, ``sigma_max`` or
        ``rho``, or ``sigma_min >= sigma_max``.

    Example:
      >>> karras_sigmas(5, 0.002, 80.0)  # doctest: +SKIP
      Array([8.0000e+01, 1.7528e+01, 2.5152e+00, 1.6975e-01, 2.0000e-03], dtype=float32)

    References:
      Karras et al. (2022), Eq. (5) and Table 1 ("Time steps").
    """
    num = positive_int(num, "num", minimum=2)
    sigma_min, sigma_max = _sigma_range(sigma_min, sigma_max)
    rho = _scalar(rho, "rho")
    xp, dtype = _backend(sigma_min, sigma_max, rho)
    hi = xp.asarray(sigma_max, dtype=dtype) ** (1.0 / rho)
    lo = xp.asarray(sigma_min, dtype=dtype) ** (1.0 / rho)
    grid = (hi + _ramp(xp, num, dtype) * (lo - hi)) ** rho
    grid = _with_endpoints(xp, grid, sigma_max, sigma_min, dtype)
    return jnp.asarray(grid, dtype=jnp.result_type(float))


def log_sigmas(num: int, sigma_min, sigma_max) -> Float[Array, " K"]:
    r"""Log-spaced noise levels, ascending from ``sigma_min`` to ``sigma_max``.

    .. math::
        \sigma_i = \sigma_{\min} \Bigl(\frac{\sigma_{\max}}{\sigma_{\min}}\Bigr)^{i/(K-1)},
        \qquad i = 0, \dots, K - 1.

    The natural grid for per-sigma loss and gap curves plotted on a log axis.

    Args:
      num: number of levels ``K``, an integer ``>= 2``.
      sigma_min: smallest level, ``0 < sigma_min < sigma_max``.
      sigma_max: largest level.

    Returns:
      ``[K]`` levels in the default float dtype, strictly ascending, with
      ``out[0] == sigma_min`` and ``out[-1] == sigma_max`` exactly (after rounding to the
      dtype).

    Raises:
      ValueError: ``num < 2``, a non-positive or non-finite level, or
        ``sigma_min >= sigma_max``.

    Example:
      >>> log_sigmas(3, 0.01, 100.0)  # doctest: +SKIP
      Array([1.e-02, 1.e+00, 1.e+02], dtype=float32)
    """
    num = positive_int(num, "num", minimum=2)
    sigma_min, sigma_max = _sigma_range(sigma_min, sigma_max)
    xp, dtype = _backend(sigma_min, sigma_max)
    log_lo = xp.log(xp.asarray(sigma_min, dtype=dtype))
    log_hi = xp.log(xp.asarray(sigma_max, dtype=dtype))
    grid = xp.exp(log_lo + _ramp(xp, num, dtype) * (log_hi - log_lo))
    grid = _with_endpoints(xp, grid, sigma_min, sigma_max, dtype)
    return jnp.asarray(grid, dtype=jnp.result_type(float))


# ------------------------------------------------------------------------------------------
# EDM preconditioning, loss weight and training distribution of sigma
# ------------------------------------------------------------------------------------------

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
      >>> c = edm_precond(jnp.array([0.1, 1.0, 10.0]))  # doctest: +SKIP
      >>> denoised = c.c_skip[:, None] * x + c.c_out[:, None] * net(c.c_in[:, None] * x, c.c_noise)

    References:
      Karras et al. (2022), Table 1 ("Network and preconditioning") and Appendix B.6.
    """
    sigma = _array_in(sigma, "sigma")
    sigma_data = _scalar(sigma_data, "sigma_data")
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

    References:
      Karras et al. (2022), Table 1 ("Loss weighting") and Appendix B.6.
    """
    sigma = _array_in(sigma, "sigma")
    sigma_data = _scalar(sigma_data, "sigma_data")
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
      >>> sigmas = sample_lognormal_sigmas(jax.random.key(0), (256,))  # doctest: +SKIP

    References:
      Karras et al. (2022), Table 1 ("Noise distribution") and Section 5.
    """
    shape = _shape(shape)
    p_mean = _scalar(p_mean, "p_mean", positive=False)
    p_std = _scalar(p_std, "p_std")
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

    References:
      Karras et al. (2022), Table 1 ("Noise distribution").
    """
    sigma = _array_in(sigma, "sigma")
    p_mean = _scalar(p_mean, "p_mean", positive=False)
    p_std = _scalar(p_std, "p_std")
    z = (jnp.log(sigma) - p_mean) / p_std
    return jnp.exp(-0.5 * z**2) / (sigma * p_std * math.sqrt(2.0 * math.pi))


# ------------------------------------------------------------------------------------------
# Conversions: VP / DDPM and flow matching <-> EDM
# ------------------------------------------------------------------------------------------

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

    References:
      Karras et al. (2022), Eq. (4) and Table 1 (VP column); Ho et al. (2020), Eq. (4).
    """
    alpha_bar = _array_in(alpha_bar, "alpha_bar", low=0.0, high=1.0, high_closed=True)
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
    """
    sigma = _array_in(sigma, "sigma", low_closed=True)
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

    References:
      Ho et al. (2020), Section 4 (T = 1000, betas linear from 1e-4 to 0.02).
    """
    num_steps = positive_int(num_steps, "num_steps", minimum=1)
    betas = []
    for value, name in ((beta_start, "beta_start"), (beta_end, "beta_end")):
        value = _scalar(value, name)
        if is_concrete(value) and not value < 1.0:
            raise ValueError(f"{name}: expected a value in (0, 1), got {value!r}")
        betas.append(value)
    beta_start, beta_end = betas
    xp, dtype = _backend(beta_start, beta_end)
    beta = beta_start + _ramp(xp, num_steps, dtype) * (beta_end - beta_start)
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

    References:
      Lipman et al. (2023); Liu et al. (2023); Karras et al. (2022), Eq. (4).
    """
    t = _array_in(t, "t", low=0.0, high=1.0, low_closed=True)
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
    """
    sigma = _array_in(sigma, "sigma", low_closed=True)
    return sigma / (1.0 + sigma)
