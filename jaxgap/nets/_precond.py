r"""EDM preconditioning around a raw network, and small helpers shared by the nets.

A raw network ``F(x_in, c_noise)`` becomes a denoiser obeying jaxgap's protocol
``D(x, sigma) -> x_hat`` (Karras et al., 2022, Table 1):

.. math::
    D(x, \sigma) = c_\mathrm{skip}(\sigma)\, x
                 + c_\mathrm{out}(\sigma)\, F\bigl(c_\mathrm{in}(\sigma)\, x,\;
                   c_\mathrm{noise}(\sigma)\bigr).

References:
  T. Karras, M. Aittala, T. Aila, S. Laine. Elucidating the Design Space of Diffusion-Based
  Generative Models. NeurIPS 2022 (arXiv:2206.00364), Table 1 and Appendix B.6;
  ``training/networks.py::EDMPrecond.forward`` of NVlabs/edm.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, ArrayLike, Float

from jaxgap._checks import float_array, guard_positive, positive_float, positive_int, sigma_shape
from jaxgap._jit import jit

__all__ = ["EDMPrecond", "check_image_shape", "param_count"]


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """Check ``(H, W, C)`` (positive ints); return it as a tuple."""
    try:
        shape = tuple(image_shape)
    except TypeError as err:
        raise ValueError(f"image_shape: expected (H, W, C), got {image_shape!r}") from err
    if len(shape) != 3:
        raise ValueError(f"image_shape: expected (H, W, C) with 3 entries, got {shape!r}")
    return tuple(positive_int(s, "image_shape") for s in shape)


def _sigma_batch(sigma, batch_shape: tuple[int, ...], dtype):
    """``sigma`` broadcast to ``batch_shape`` after a shape check (trace-safe).

    Values are checked here only when they come from the host (NumPy, free): the nets run
    inside jit during training, and reading a ``jax.Array`` back would force a host sync
    on every call; those are checked inside the compiled call (``guard_positive``). Host
    values are broadcast with NumPy (free), so the compiled call depends on the shape of
    ``x`` only.
    """
    sig = sigma_shape(sigma, "sigma", batch_shape)
    if isinstance(sig, np.ndarray):
        sig = sig.astype(dtype, copy=False)
        if not np.all(np.isfinite(sig)):
            raise ValueError("sigma: expected finite values, got NaN or inf")
        if sig.size and not np.all(sig > 0):
            raise ValueError(f"sigma: expected values > 0, got min {float(sig.min())!r}")
        return np.broadcast_to(sig, batch_shape)
    if sig.shape != tuple(batch_shape) or sig.dtype != dtype:
        sig = jnp.broadcast_to(sig.astype(dtype), batch_shape)
    return sig


class EDMPrecond(nnx.Module):
    r"""EDM-preconditioned denoiser around a raw network ``F``.

    .. math::
        D(x, \sigma) = c_\mathrm{skip}\, x + c_\mathrm{out}\,
        F(c_\mathrm{in}\, x, c_\mathrm{noise}), \qquad
        c_\mathrm{skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2}, \;
        c_\mathrm{out} = \frac{\sigma \sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}}, \;
        c_\mathrm{in} = \frac{1}{\sqrt{\sigma^2 + \sigma_d^2}}, \;
        c_\mathrm{noise} = \tfrac14 \ln \sigma.

    The coefficients are those of :func:`jaxgap.noise.edm_precond` (same formulas, same
    float operations), written inline as EDM's four named lines so that the call makes no
    value check. A network whose output is zero gives exactly ``D = c_skip * x``.

    The module obeys jaxgap's denoiser protocol: it is a pytree (flax 0.12 ``nnx`` modules
    are), so it passes through ``jax.jit``/``vmap``/``grad`` and every loss, sampler and metric
    takes it unchanged. Batch dimensions are flattened before ``F`` is called and restored
    after.

    Args:
      net: the raw network, a callable ``F(x_in: [n, d], c_noise: [n]) -> [n, d]`` (usually
        an ``nnx.Module``, e.g. :class:`jaxgap.nets.MLP` or :class:`jaxgap.nets.UNet`).
      dim: data dimension ``d`` (images flattened in HWC order: ``d = H * W * C``).
      sigma_data: standard deviation of the data per dimension, a scalar ``> 0``.

    Attributes:
      net: the raw network ``F``.
      dim: ``d``.
      sigma_data: :math:`\sigma_d` (a Python float, static in the pytree).

    Example:
      >>> from jaxgap.nets import MLP
      >>> D = EDMPrecond(MLP(16, width=16, depth=1, emb_dim=8, rngs=nnx.Rngs(0)), 16)
      >>> x = jnp.ones((3, 16))
      >>> D(x, 0.5).shape
      (3, 16)
      >>> D(x, 0.5).round(4)[0, :4]  # F = 0 at initialization: D = c_skip x = x / 2
      Array([0.5, 0.5, 0.5, 0.5], dtype=float32)

    References:
      Karras et al. (2022), Table 1 ("Network and preconditioning") and Eq. (7);
      NVlabs/edm ``training/networks.py::EDMPrecond.forward``.
    """

    conditional = False  # the protocol D(x, sigma), read by jaxgap's consumers

    def __init__(self, net: Any, dim: int, *, sigma_data: float = 0.5):
        if not callable(net):
            raise ValueError(f"net: expected a callable F(x_in, c_noise), got "
                             f"{type(net).__name__}")
        self.net = net
        self.dim = positive_int(dim, "dim")
        self.sigma_data = positive_float(sigma_data, "sigma_data")

    def __call__(self, x: Float[ArrayLike, "*batch d"],
                 sigma: Float[ArrayLike, "*#batch"]) -> Float[Array, "*batch d"]:
        r"""Denoise ``x`` at noise level ``sigma``.

        Args:
          x: ``[..., d]`` noisy states (flattened images in HWC order).
          sigma: finite noise levels ``> 0``, a scalar or an array broadcastable to
            ``x.shape[:-1]``. Host values (Python, NumPy) are checked before the call; a
            ``jax.Array`` or a traced ``sigma`` is checked inside the compiled call
            (``equinox.error_if``: a run-time error, under ``jax.jit``, ``vmap`` and
            ``grad`` too; ``EQX_ON_ERROR`` chooses what a failed check does).

        Returns:
          ``[..., d]`` denoised states :math:`D(x, \sigma)`, the shape of ``x``.

        Raises:
          ValueError: ``x`` of rank 0 or with a last dimension other than ``d``, a
            ``sigma`` whose shape does not broadcast to ``x.shape[:-1]`` (shapes checked at
            trace time), or a host ``sigma`` with a value ``<= 0``, NaN or inf.
          RuntimeError: at run time, a device or traced ``sigma`` with a value ``<= 0``,
            NaN or inf (the message starts ``sigma: expected finite values > 0``; under
            ``jax.grad`` JAX reports it as a ``ValueError``).
        """
        x = float_array(x, "x", min_ndim=1, dim=self.dim, allow_empty=True, finite=False)
        sigma = _sigma_batch(sigma, x.shape[:-1], x.dtype)
        return self._guarded(x, sigma)

    @jit
    def _guarded(self, x, sigma):
        """``_denoise(x, sigma)`` with ``sigma`` checked in-graph (<= 0, NaN, inf raise)."""
        return guard_positive(self._denoise(x, sigma), sigma)

    @jit
    def _denoise(self, x: Float[Array, "*batch d"],
                 sigma: Float[Array, "*batch"]) -> Float[Array, "*batch d"]:
        """EDM's preconditioning on checked inputs; ``F`` sees a flat batch ``[n, d]``.

        Compiled (:func:`jaxgap._jit.jit`): an eager call runs one program per input shape
        and module structure (the module's arrays are traced, so new parameter values reuse
        it); inside a caller's jit/vmap/grad it is inlined.
        """
        batch_shape = x.shape[:-1]
        n = math.prod(batch_shape)
        x = x.reshape(n, self.dim)
        sigma = sigma.reshape(n, 1)
        sigma_data = self.sigma_data

        norm = jnp.hypot(sigma, sigma_data)  # sqrt(sigma^2 + sigma_data^2), as jaxgap.noise
        c_skip = (sigma_data / norm) ** 2
        c_out = sigma * sigma_data / norm
        c_in = 1.0 / norm
        c_noise = jnp.log(sigma[:, 0]) / 4.0

        f_x = self.net(c_in * x, c_noise)
        d_x = c_skip * x + c_out * f_x
        return d_x.reshape(*batch_shape, self.dim)


def param_count(model: Any) -> int:
    """Number of trainable scalars (``nnx.Param`` entries) of a flax ``nnx`` model.

    Args:
      model: an ``nnx.Module`` (e.g. :class:`jaxgap.nets.MLPDenoiser`), or its abstract
        version from ``nnx.eval_shape`` (counted without allocating the weights).

    Returns:
      The total size of all ``nnx.Param`` arrays, a Python int.

    Raises:
      ValueError: ``model`` is not an ``nnx.Module``.

    Example:
      >>> from jaxgap.nets import MLPDenoiser
      >>> param_count(nnx.eval_shape(lambda: MLPDenoiser(4, width=8, depth=0, emb_dim=4,
      ...                                                rngs=nnx.Rngs(0))))
      132
    """
    if not isinstance(model, nnx.Module):
        raise ValueError(f"model: expected a flax nnx.Module, got {type(model).__name__}")
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return int(sum(math.prod(np.shape(leaf)) for leaf in leaves))
