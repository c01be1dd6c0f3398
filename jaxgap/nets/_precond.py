r"""EDM preconditioning around a raw network, and small helpers shared by the nets.

A raw network ``F(x_in, c_noise)`` becomes a denoiser obeying jaxgap's protocol
``D(x, sigma) -> x_hat`` (Karras et al., 2022, Table 1):

.. math::
    D(x, \sigma) = c_\mathrm{skip}(\sigma)\, x
                 + c_\mathrm{out}(\sigma)\, F\bigl(c_\mathrm{in}(\sigma)\, x,\;
                   c_\mathrm{noise}(\sigma)\bigr);

a conditional raw network ``F(x_in, c_noise, cond)`` (``num_classes > 0``) becomes a
conditional denoiser ``D(x, sigma, cond)``, the condition passed to ``F`` unchanged.

References:
  T. Karras, M. Aittala, T. Aila, S. Laine. Elucidating the Design Space of Diffusion-Based
  Generative Models. NeurIPS 2022 (arXiv:2206.00364), Table 1 and Appendix B.6;
  ``training/networks.py::EDMPrecond.forward`` of NVlabs/edm.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, ArrayLike, Float, Int

from jaxgap._checks import float_array, guard_positive, positive_float, positive_int, sigma_shape
from jaxgap._jit import jit
from jaxgap._protocol import NULL, check_cond

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


def _guard_cond(result, cond, num_classes: int):
    """``result`` unchanged, with an in-graph check that every id of ``cond`` is ``NULL`` or
    in ``[0, num_classes)`` (as :func:`jaxgap._checks.guard_positive` for ``sigma``)."""
    ok = (cond == NULL) | ((cond >= 0) & (cond < num_classes))
    return eqx.error_if(result, ~ok, f"cond: expected condition ids in [0, {num_classes}) or "
                                     f"NULL = {NULL}, got another id (checked inside the "
                                     f"compiled call)")


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

    Conditional denoisers: when the raw network has ``num_classes = C > 0`` (its class
    embedding is added to the noise embedding, see :class:`jaxgap.nets.MLP`), the denoiser
    follows the conditional protocol,

    .. math::
        D(x, \sigma, c) = c_\mathrm{skip}\, x + c_\mathrm{out}\,
        F(c_\mathrm{in}\, x, c_\mathrm{noise}, c),
        \qquad c \in \{0, \dots, C - 1\} \cup \{\mathrm{NULL}\},

    with ``NULL`` (-1, :data:`jaxgap.denoisers.NULL`) the learned null token, the
    ``D(x, sigma, NULL)`` term of classifier-free guidance (:func:`jaxgap.denoisers.guided`).
    Its instance attribute ``conditional`` is then True (the class attribute, False, stays
    for unconditional ones), which jaxgap's consumers read to pass their ``cond=``.

    Args:
      net: the raw network, a callable ``F(x_in: [n, d], c_noise: [n]) -> [n, d]`` (usually
        an ``nnx.Module``, e.g. :class:`jaxgap.nets.MLP` or :class:`jaxgap.nets.UNet`); a
        conditional one has an integer attribute ``num_classes > 0`` and takes
        ``F(x_in, c_noise, cond: [n])``.
      dim: data dimension ``d`` (images flattened in HWC order: ``d = H * W * C``).
      sigma_data: standard deviation of the data per dimension, a scalar ``> 0``.

    Attributes:
      net: the raw network ``F``.
      dim: ``d``.
      sigma_data: :math:`\sigma_d` (a Python float, static in the pytree).
      num_classes: ``C``, the raw network's condition count (0: unconditional).
      conditional: True for a conditional denoiser ``D(x, sigma, cond)``, else False.

    Example:
      >>> from jaxgap.nets import MLP
      >>> D = EDMPrecond(MLP(16, width=16, depth=1, emb_dim=8, rngs=nnx.Rngs(0)), 16)
      >>> x = jnp.ones((3, 16))
      >>> D(x, 0.5).shape
      (3, 16)
      >>> D(x, 0.5).round(4)[0, :4]  # F = 0 at initialization: D = c_skip x = x / 2
      Array([0.5, 0.5, 0.5, 0.5], dtype=float32)
      >>> C = EDMPrecond(MLP(16, width=16, depth=1, emb_dim=8, num_classes=3,
      ...                    rngs=nnx.Rngs(0)), 16)
      >>> C.conditional, C(x, 0.5, jnp.array([0, 2, NULL])).shape  # one id per example
      (True, (3, 16))

    References:
      Karras et al. (2022), Table 1 ("Network and preconditioning") and Eq. (7);
      NVlabs/edm ``training/networks.py::EDMPrecond.forward``.
    """

    conditional = False  # the protocol D(x, sigma), read by jaxgap's consumers

    def __init__(self, net: Any, dim: int, *, sigma_data: float = 0.5):
        if not callable(net):
            raise ValueError(f"net: expected a callable F(x_in, c_noise), got "
                             f"{type(net).__name__}")
        num_classes = getattr(net, "num_classes", 0)
        self.net = net
        self.dim = positive_int(dim, "dim")
        self.sigma_data = positive_float(sigma_data, "sigma_data")
        self.num_classes = positive_int(num_classes, "net.num_classes", minimum=0)
        if self.num_classes:
            self.conditional = True  # the protocol D(x, sigma, cond)

    def _cond_batch(self, cond, batch_shape: tuple[int, ...]):
        """``cond`` checked and broadcast to ``batch_shape`` (None for an unconditional
        denoiser): host values as NumPy int32 (free; their ids are checked here), a
        ``jax.Array`` or tracer as a JAX int32 array (ids checked in-graph, no host sync)."""
        name = type(self).__name__
        if not self.num_classes:
            if cond is not None:
                raise ValueError(f"cond: expected None for the unconditional {name} (it takes "
                                 f"D(x, sigma); build it with num_classes > 0 for "
                                 f"D(x, sigma, cond)), got {type(cond).__name__}")
            return None
        if cond is None:
            raise ValueError(f"cond: expected integer condition ids in [0, {self.num_classes})"
                             f" or NULL = {NULL} for the conditional {name} (it takes "
                             f"D(x, sigma, cond)), got None")
        out = check_cond(cond, batch_shape)  # dtype and shape
        if isinstance(cond, jax.Array):  # device values and tracers: not read back
            return out if out.shape == tuple(batch_shape) else jnp.broadcast_to(out, batch_shape)
        values = np.asarray(cond)
        bad = (values != NULL) & ((values < 0) | (values >= self.num_classes))
        if np.any(bad):
            raise ValueError(f"cond: expected condition ids in [0, {self.num_classes}) or "
                             f"NULL = {NULL}, got {int(values[bad].flat[0])}")
        return np.broadcast_to(values.astype(np.int32), batch_shape)

    def check_cond(self, cond, batch_shape: tuple[int, ...] = ()):
        """Check condition ids at a consumer's public boundary (jaxgap's consumers and
        :func:`jaxgap.denoisers.guided` call it through the protocol's check).

        Args:
          cond: integer ids broadcastable to ``batch_shape``, each in ``[0, num_classes)``
            or ``NULL``; None for an unconditional denoiser.
          batch_shape: the batch shape the ids are for.

        Returns:
          ``cond`` as an int32 JAX array of shape ``batch_shape`` (None when the denoiser
          is unconditional and ``cond`` is None).

        Raises:
          ValueError: naming ``cond``: missing for a conditional denoiser, given to an
            unconditional one, not integers, a shape that does not broadcast to
            ``batch_shape``, or (host values) an id outside ``[0, num_classes)`` other than
            ``NULL``.
        """
        out = self._cond_batch(cond, tuple(batch_shape))
        return None if out is None else jnp.asarray(out)

    def __call__(self, x: Float[ArrayLike, "*batch d"], sigma: Float[ArrayLike, "*#batch"],
                 cond: Int[ArrayLike, "*#batch"] | None = None) -> Float[Array, "*batch d"]:
        r"""Denoise ``x`` at noise level ``sigma`` (and condition ``cond``).

        Args:
          x: ``[..., d]`` noisy states (flattened images in HWC order).
          sigma: finite noise levels ``> 0``, a scalar or an array broadcastable to
            ``x.shape[:-1]``. Host values (Python, NumPy) are checked before the call; a
            ``jax.Array`` or a traced ``sigma`` is checked inside the compiled call
            (``equinox.error_if``: a run-time error, under ``jax.jit``, ``vmap`` and
            ``grad`` too; ``EQX_ON_ERROR`` chooses what a failed check does).
          cond: a conditional denoiser's condition ids, integers broadcastable to
            ``x.shape[:-1]``, each in ``[0, num_classes)`` or ``NULL`` (-1, the null
            token); None (the default) for an unconditional denoiser. Checked like
            ``sigma``: host values before the call, a ``jax.Array`` or traced ``cond``
            inside the compiled call.

        Returns:
          ``[..., d]`` denoised states :math:`D(x, \sigma)` or :math:`D(x, \sigma, c)`,
          the shape of ``x``.

        Raises:
          ValueError: ``x`` of rank 0 or with a last dimension other than ``d``, a
            ``sigma`` or ``cond`` whose shape does not broadcast to ``x.shape[:-1]``
            (shapes checked at trace time), a host ``sigma`` with a value ``<= 0``, NaN or
            inf; ``cond`` missing (conditional), given (unconditional), not integers, or a
            host id outside ``[0, num_classes)`` other than ``NULL``.
          RuntimeError: at run time, a device or traced ``sigma`` with a value ``<= 0``,
            NaN or inf (the message starts ``sigma: expected finite values > 0``), or a
            device or traced ``cond`` with an id outside ``[0, num_classes)`` other than
            ``NULL`` (``cond: expected condition ids``); under ``jax.grad`` JAX reports
            them as a ``ValueError``.
        """
        x = float_array(x, "x", min_ndim=1, dim=self.dim, allow_empty=True, finite=False)
        sigma = _sigma_batch(sigma, x.shape[:-1], x.dtype)
        cond = self._cond_batch(cond, x.shape[:-1])
        return self._guarded(x, sigma, cond)

    @jit
    def _guarded(self, x, sigma, cond=None):
        """``_denoise(x, sigma, cond)`` with ``sigma`` (<= 0, NaN, inf) and ``cond`` (ids
        outside ``[0, num_classes)`` other than ``NULL``) checked in-graph."""
        out = guard_positive(self._denoise(x, sigma, cond), sigma)
        return out if cond is None else _guard_cond(out, cond, self.num_classes)

    @jit
    def _denoise(self, x: Float[Array, "*batch d"], sigma: Float[Array, "*batch"],
                 cond: Int[Array, "*batch"] | None = None) -> Float[Array, "*batch d"]:
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

        if cond is None:
            f_x = self.net(c_in * x, c_noise)
        else:
            f_x = self.net(c_in * x, c_noise, cond.reshape(n))
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
