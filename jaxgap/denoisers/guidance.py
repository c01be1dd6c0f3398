r"""Classifier-free guidance: a combinator over conditional denoisers.

.. math::
    D_w(x, \sigma, c) = D(x, \sigma, \varnothing) + w\,\big(D(x, \sigma, c)
                        - D(x, \sigma, \varnothing)\big),

with ``varnothing`` the null condition :data:`~jaxgap.denoisers.NULL`: ``w = 0`` is the
unconditional denoiser, ``w = 1`` the conditional one, ``w > 1`` pushes towards the
condition (Ho and Salimans, "Classifier-free diffusion guidance", 2022). The result is
itself a conditional denoiser ``D_w(x, sigma, cond)``: losses, samplers and metrics take it
like any other (``cond=``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxgap._checks import float_array, is_concrete, sigma_array
from jaxgap._jit import jit
from jaxgap._protocol import NULL, call, check_cond, takes_cond
from jaxgap.denoisers._base import Pytree

__all__ = ["Guided", "guided"]


def _guidance_weight(w):
    """``(w as a 0-d float array, mode)``: ``"null"`` at ``w = 0``, ``"cond"`` at ``w = 1``,
    ``"mix"`` otherwise or when ``w`` is traced."""
    if isinstance(w, bool) or w is None:
        raise ValueError(f"w: expected a finite real number, got {w!r}")
    if not is_concrete(w):
        if jnp.ndim(w) != 0:
            raise ValueError(f"w: expected a scalar, got shape {list(jnp.shape(w))}")
        return jnp.asarray(w, jnp.result_type(float)), "mix"
    try:
        value = np.asarray(w)
    except Exception as err:  # pragma: no cover - numpy's own message is kept
        raise ValueError(f"w: expected a finite real number, got {w!r}") from err
    if value.ndim != 0 or not (np.issubdtype(value.dtype, np.floating)
                               or np.issubdtype(value.dtype, np.integer)):
        raise ValueError(f"w: expected a finite real number, got {w!r}")
    if not np.isfinite(value):
        raise ValueError(f"w: expected a finite real number, got {float(value)!r}")
    mode = {0.0: "null", 1.0: "cond"}.get(float(value), "mix")
    return jnp.asarray(value, jnp.result_type(float)), mode


class Guided(Pytree):
    r"""``D_w(x, sigma, c) = (1 - w) D(x, sigma, NULL) + w D(x, sigma, c)``: classifier-free
    guidance of a conditional denoiser (built by :func:`guided`).

    ``denoiser`` and ``w`` (a 0-d array) are pytree children: a closed form's arrays are
    traced by jaxgap's jit boundary (``equinox.filter_jit``), a plain function is held
    static. A concrete ``w`` of 0 or 1 (static ``mode``) makes the call the inner denoiser's
    own call with ``NULL`` or ``cond``: exactly its result, at the cost of one evaluation.
    Any other ``w`` evaluates the conditional and null terms in one call on a stacked batch
    ``[2, ..., d]``; new values of ``w`` reuse the compiled program.
    """

    _fields = ("denoiser", "w")
    _static = ("dim", "mode")
    conditional = True

    def __init__(self, denoiser, w):
        if not callable(denoiser):
            raise ValueError(f"denoiser: expected a conditional denoiser D(x, sigma, cond), "
                             f"got {type(denoiser).__name__}")
        if takes_cond(denoiser) is not True:
            raise ValueError(f"denoiser: expected a conditional denoiser D(x, sigma, cond) "
                             f"(guidance mixes D(x, sigma, NULL) and D(x, sigma, c)), got "
                             f"{type(denoiser).__name__}, which takes D(x, sigma) (set "
                             f"conditional = True on a callable taking *args)")
        self.denoiser = denoiser
        self.w, self.mode = _guidance_weight(w)
        self.dim = getattr(denoiser, "dim", None)

    def __repr__(self) -> str:
        w = float(self.w) if is_concrete(self.w) else "traced"
        return f"Guided(denoiser={self.denoiser!r}, w={w})"

    def check_cond(self, cond, batch_shape: tuple[int, ...] = ()):
        """The inner denoiser's check of condition ids (its ``check_cond`` when it has one,
        else dtype and shape); returns int32 ids broadcast to ``batch_shape``."""
        if cond is None:
            raise ValueError(f"cond: expected integer condition ids (NULL = {NULL} for none) "
                             f"for the guided denoiser (it takes D(x, sigma, cond)), got None")
        inner = getattr(self.denoiser, "check_cond", None)
        out = inner(cond, batch_shape) if callable(inner) else check_cond(cond, batch_shape)
        return jnp.broadcast_to(out, tuple(batch_shape))

    def __call__(self, x, sigma, cond=None):
        x = float_array(x, "x", min_ndim=1, dim=self.dim, allow_empty=True, finite="host")
        batch = x.shape[:-1]
        cond = self.check_cond(cond, batch)
        if self.mode == "cond":
            return self.denoiser(x, sigma, cond)
        if self.mode == "null":
            return self.denoiser(x, sigma, jnp.full(batch, NULL, jnp.int32))
        return self._mix(x, sigma_array(sigma, "sigma", batch, dtype=x.dtype), cond)

    @jit
    def _mix(self, x, sigma, cond):
        null = jnp.full_like(cond, NULL)
        out = call(self.denoiser, jnp.stack([x, x]), jnp.stack([sigma, sigma]),
                   jnp.stack([cond, null]))
        w = self.w.astype(out.dtype)
        return (1.0 - w) * out[1] + w * out[0]


def guided(denoiser, w) -> Guided:
    r"""Classifier-free guidance of a conditional denoiser.

    .. math::
        D_w(x, \sigma, c) = D(x, \sigma, \mathrm{NULL})
            + w\,\big(D(x, \sigma, c) - D(x, \sigma, \mathrm{NULL})\big),

    evaluated as ``(1 - w) D(x, sigma, NULL) + w D(x, sigma, c)``. ``w = 0`` returns
    exactly ``D(x, sigma, NULL)`` (the unconditional denoiser: for the conditional closed
    forms, that of all training points), ``w = 1`` exactly ``D(x, sigma, c)``, ``w > 1``
    guides beyond the conditional denoiser; any finite ``w`` is allowed (negative too).

    Args:
      denoiser: a conditional denoiser ``D(x, sigma, cond)`` that accepts ``cond = NULL``
        (-1): a conditional closed form, a conditional network, or a callable with
        ``conditional = True``.
      w: the guidance weight, a finite real number (a traced ``w``, inside jit, is not
        checked).

    Returns:
      :class:`Guided`, a conditional denoiser ``D_w(x, sigma, cond)``.

    Raises:
      ValueError: naming ``denoiser`` (not callable, or unconditional) or ``w`` (not a
        finite real number).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgap.denoisers import ConditionalEmpiricalDenoiser, guided
      >>> D = ConditionalEmpiricalDenoiser(jnp.array([[0.0], [2.0]]), jnp.array([0, 1]))
      >>> x = jnp.array([[1.0]])
      >>> D(x, 1e3, -1).round(3)  # NULL: the mean of both points
      Array([[1.]], dtype=float32)
      >>> guided(D, 3.0)(x, 1e3, 1).round(3)  # 1 + 3 (2 - 1): beyond the condition
      Array([[4.]], dtype=float32)
    """
    return Guided(denoiser, w)
