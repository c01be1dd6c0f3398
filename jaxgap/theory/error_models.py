r"""Error-prone toy models of the optimal denoiser and the linearized loss they induce.

Every model here is a pytree denoiser obeying the protocol ``D(x, sigma) -> x_hat``; its
error amplitude (``delta``, ``tau``, ``s``, ``eps``) is a pytree *leaf*, so ``jax.jit``,
``jax.jvp`` and ``jax.grad`` with respect to it work. Throughout, ``y_1..y_N`` are the
training points, ``D*`` is the optimal denoiser of their empirical distribution
(:class:`~jaxgap.denoisers.EmpiricalDenoiser`) and

.. math:: w_i(x; v) = \operatorname{softmax}_i\Big(-\frac{|x - y_i|^2}{2 v}\Big), \qquad
    m(x; v) = \sum_i w_i(x; v)\, y_i .

Models:

- :class:`PositionError`: training points known only up to ``N(0, delta^2 I)``; the exact
  posterior mean of that smeared distribution.
- :class:`KernelWidthError`: the weights of a wider kernel (``sigma^2 + tau^2``) with the plain
  weighted mean as output (not a posterior mean of anything: a negative control).
- :class:`InputNoiseError`: ``D*`` averaged over fixed perturbations of its input.
- :class:`LogitNoiseError`: ``D*`` with its log-weights perturbed by a fixed random field.
- :func:`with_error`: ``D + eps * e`` for any denoiser ``D`` and error field ``e`` (plain
  functions and closures included; conditional denoisers take ``cond`` through).

:func:`loss_expansion` splits the denoising loss of ``D + eps e`` into its exact quadratic
terms in ``eps`` with the noise of :mod:`jaxgap.losses` (common random numbers), and
:func:`position_error_field` gives the first-order field of :class:`PositionError` in
``delta^2`` by forward-mode differentiation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgap._checks import float_array, is_concrete, positive_int, prng_key
from jaxgap._jit import jit
from jaxgap._mc import check_loss_args, noisy_queries, per_example_map
from jaxgap._protocol import call, takes_cond
from jaxgap.denoisers import ClosedForm, EmpiricalDenoiser, Pytree

__all__ = ["InputNoiseError", "KernelWidthError", "LogitNoiseError", "LossExpansion",
           "PositionError", "PositionErrorField", "WithError", "loss_expansion",
           "position_error_field", "with_error"]


def _amplitude(value, name: str, dtype):
    """A scalar error amplitude ``>= 0`` as a 0-d array leaf (tracers accepted, unchecked)."""
    arr = float_array(value, name, ndim=0)
    if is_concrete(arr) and not float(np.asarray(arr)) >= 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {float(arr)!r}")
    return arr.astype(dtype)


class _WidenedKernel(EmpiricalDenoiser):
    """Empirical posterior at the widened temperature ``sigma^2 + a`` (``a`` the squared
    amplitude), shrunk toward ``x`` by ``a / (sigma^2 + a)`` when ``_shrink``.

    Shares :class:`EmpiricalDenoiser`'s storage (``train``, ``center``, ``half_sq_norms``) and
    its exact streaming kernel. Subclasses name the amplitude leaf in ``_amp_name``.
    """

    _amp_name = ""
    _shrink = False

    def __init__(self, train, amplitude, **kernel):
        super().__init__(train, **kernel)
        setattr(self, self._amp_name, _amplitude(amplitude, self._amp_name, self.train.dtype))

    def _amp(self):
        a = getattr(self, self._amp_name)
        return a * a

    def _denoise_amp(self, x, sigma, amp):
        """The model at squared amplitude ``amp``; differentiable in ``amp``."""
        var = sigma * sigma + amp
        mean = self._posterior(x, var).mean
        if not self._shrink:
            return mean
        return mean + (amp / var)[..., None] * (x - mean)

    @jit
    def _denoise(self, x, sigma):
        if x.size == 0:
            return x
        return self._denoise_amp(x, sigma, self._amp())

    def posterior_stats(self, x, sigma):
        """Posterior summaries of the widened weights (temperature ``sigma^2 + amplitude``)."""
        x, sigma = self._check_inputs(x, sigma)
        return self._posterior(x, sigma * sigma + self._amp())

    def weights(self, x, sigma):
        """The widened weights ``w_i(x; sigma^2 + amplitude)``, ``[..., N]`` (small N)."""
        x, sigma = self._check_inputs(x, sigma)
        return super().weights(x, jnp.sqrt(sigma * sigma + self._amp()))


class PositionError(_WidenedKernel):
    r"""Optimal denoiser of the training set with positions known up to ``N(0, delta^2 I)``.

    The data distribution is the empirical one convolved with ``N(0, delta^2 I)``; its exact
    posterior mean at noise level ``sigma`` is, with ``v = sigma^2 + delta^2``,

    .. math::
        D_\delta(x, \sigma) = m + \frac{\delta^2}{\sigma^2 + \delta^2}\,(x - m), \qquad
        m = \sum_i w_i(x; v)\, y_i, \quad
        w_i = \operatorname{softmax}_i\Big(-\frac{|x - y_i|^2}{2(\sigma^2 + \delta^2)}\Big).

    The weights come from the same exact streaming kernel as
    :class:`~jaxgap.denoisers.EmpiricalDenoiser` (temperature ``v`` instead of ``sigma^2``),
    so it is exact and as fast; at ``delta = 0`` it is ``D*`` itself.

    Args:
      train: ``[N, d]`` training points.
      delta: position uncertainty ``>= 0`` (a pytree leaf: ``jax.jvp``/``grad`` work).
      **kernel: ``chunk_size``, ``query_block``, ``num_exact`` of
        :class:`~jaxgap.denoisers.EmpiricalDenoiser`.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgap.theory import PositionError
      >>> D = PositionError(jnp.array([[0.0, 0.0], [1.0, 1.0]]), delta=1.0)
      >>> [round(float(v), 3) for v in D(jnp.array([0.9, 1.1]), 1e-3)]  # D* snaps; D ~ x
      [0.9, 1.1]
    """

    _fields = EmpiricalDenoiser._fields + ("delta",)
    _amp_name, _shrink = "delta", True

    def __init__(self, train, delta, **kernel):
        super().__init__(train, delta, **kernel)


class KernelWidthError(_WidenedKernel):
    r"""Weighted training mean with a kernel wider by ``tau`` (a negative control).

    .. math::
        D_\tau(x, \sigma) = \sum_i w_i(x; \sigma^2 + \tau^2)\, y_i, \qquad
        w_i = \operatorname{softmax}_i\Big(-\frac{|x - y_i|^2}{2(\sigma^2 + \tau^2)}\Big).

    Unlike :class:`PositionError` it omits the shrinkage term ``tau^2 / (sigma^2 + tau^2)
    (x - m)``, so it is not the posterior mean of any smeared data set. Exact streaming kernel
    of :class:`~jaxgap.denoisers.EmpiricalDenoiser` (``train`` and ``**kernel`` as there);
    ``tau = 0`` gives ``D*``. ``tau``, the extra kernel width ``>= 0``, is a pytree leaf.
    """

    _fields = EmpiricalDenoiser._fields + ("tau",)
    _amp_name = "tau"

    def __init__(self, train, tau, **kernel):
        super().__init__(train, tau, **kernel)


class InputNoiseError(ClosedForm):
    r"""``D*`` averaged over fixed random perturbations of its input.

    .. math:: D_\tau(x, \sigma) = \frac{1}{J}\sum_{j=1}^{J} D^*(x + \tau\,\eta_j, \sigma),
        \qquad \eta_j \sim N(0, I_d)\ \text{drawn once from ``key`` at construction.}

    The draws ``eta [J, d]`` are fixed (a leaf), so the model is a deterministic function.

    Args:
      key: PRNG key for the draws.
      train: ``[N, d]`` training points.
      tau: perturbation scale ``>= 0`` (a pytree leaf).
      num_draws: ``J``.
      chunk_size, query_block, num_exact: passed to the inner
        :class:`~jaxgap.denoisers.EmpiricalDenoiser`.
    """

    _fields = ("optimal", "tau", "eta")
    _static = ("dim", "num_draws")

    def __init__(self, key, train, tau, *, num_draws: int = 16, **kernel):
        key = prng_key(key)
        self.optimal = EmpiricalDenoiser(train, **kernel)
        self.dim = self.optimal.dim
        dtype = self.optimal.train.dtype
        self.tau = _amplitude(tau, "tau", dtype)
        self.num_draws = positive_int(num_draws, "num_draws")
        self.eta = jax.random.normal(key, (self.num_draws, self.dim), dtype)

    @jit
    def _denoise(self, x, sigma):
        if x.size == 0:
            return x
        j = self.num_draws
        eta = self.eta.reshape((j,) + (1,) * (x.ndim - 1) + (self.dim,))
        xs = x[None] + self.tau * eta
        sig = jnp.broadcast_to(sigma[None], (j,) + sigma.shape)
        return jnp.mean(self.optimal(xs, sig), axis=0)


class LogitNoiseError(ClosedForm):
    r"""``D*`` with log-weights perturbed by a fixed random field over the training points.

    .. math::
        D_s(x, \sigma) = \sum_i w_i\, y_i, \qquad
        w_i = \operatorname{softmax}_i\Big(-\frac{|x - y_i|^2}{2\sigma^2} + s\, g_i\Big),
        \qquad g_i \sim N(0, 1) \ \text{drawn once from ``key`` at construction.}

    Implementation: a plain (non-streaming) softmax over all points, with the squared
    distances formed directly from ``x - y_i`` (no cancellation at small sigma) and the
    logits shifted by their maximum before ``exp`` (safe in float32 and float64). Queries are
    mapped in blocks, so memory is ``O(block * N * d)``; meant for small toy training sets.
    ``s = 0`` gives ``D*``.

    Args:
      key: PRNG key for ``g [N]``.
      train: ``[N, d]`` training points.
      s: field strength ``>= 0`` (a pytree leaf).
    """

    _fields = ("train", "g", "s")
    _static = ("dim",)

    def __init__(self, key, train, s):
        key = prng_key(key)
        self.train = float_array(train, "train", ndim=2)
        self.dim = int(self.train.shape[1])
        self.s = _amplitude(s, "s", self.train.dtype)
        self.g = jax.random.normal(key, (self.train.shape[0],), self.train.dtype)

    @jit
    def _denoise(self, x, sigma):
        if x.size == 0:
            return x
        batch = x.shape[:-1]
        xf, vf = x.reshape(-1, self.dim), (sigma * sigma).reshape(-1)
        y, field = self.train, self.s * self.g
        n = y.shape[0]

        def one(a):
            xq, vq = a
            sq = jnp.sum((xq[None, :] - y) ** 2, axis=1)
            logits = -0.5 * sq / vq + field
            w = jnp.exp(logits - jnp.max(logits))
            return jnp.dot(w, y, precision=jax.lax.Precision.HIGHEST) / jnp.sum(w)

        block = max(1, min(xf.shape[0], (1 << 22) // max(1, n * self.dim)))
        out = jax.lax.map(one, (xf, vf), batch_size=block)
        return out.reshape(batch + (self.dim,))


def _callable(fn, name: str, what: str):
    if not callable(fn):
        raise ValueError(f"{name}: expected a callable {what}, got {type(fn).__name__}")
    return fn


def _common_dim(denoiser, error_field):
    d1, d2 = getattr(denoiser, "dim", None), getattr(error_field, "dim", None)
    if d1 is not None and d2 is not None and d1 != d2:
        raise ValueError(f"error_field: expected dimension d = {d1} (the denoiser's), got {d2}")
    return d1 if d1 is not None else d2


class WithError(Pytree):
    r"""``D(x, sigma) + eps * e(x, sigma)``: a denoiser plus a scaled error field.

    ``denoiser``, ``error_field`` and ``eps`` are pytree children (``eps`` a 0-d leaf); a
    plain function or closure is a non-array leaf, which jaxgap's jit boundary
    (``equinox.filter_jit``) holds static. With a conditional ``denoiser``
    (``D(x, sigma, cond)``) the model is called ``WithError(x, sigma, cond)`` and passes
    ``cond`` on (to the error field too when it takes one).

    Args:
      denoiser: any callable ``D(x, sigma)`` or ``D(x, sigma, cond)``.
      error_field: a callable ``e(x, sigma) -> [..., d]`` (or ``e(x, sigma, cond)``).
      eps: scalar amplitude (any sign; a pytree leaf, so ``jax.grad`` w.r.t. it works).
    """

    _fields = ("denoiser", "error_field", "eps")
    _static = ("dim", "conditional", "field_cond")

    def __init__(self, denoiser, error_field, eps):
        self.denoiser = _callable(denoiser, "denoiser", "D(x, sigma)")
        self.error_field = _callable(error_field, "error_field", "e(x, sigma)")
        self.dim = _common_dim(denoiser, error_field)
        self.eps = float_array(eps, "eps", ndim=0)
        self.conditional = takes_cond(denoiser)
        self.field_cond = takes_cond(error_field) is True

    @jit
    def __call__(self, x, sigma, cond=None):
        out = call(self.denoiser, x, sigma, cond)
        err = call(self.error_field, x, sigma, cond if self.field_cond else None)
        return out + self.eps.astype(out.dtype) * err


def with_error(denoiser, error_field, eps) -> WithError:
    r"""The denoiser ``D + eps * e`` for any error field ``e`` obeying the protocol.

    Args:
      denoiser: any callable ``D(x, sigma)`` (or a conditional ``D(x, sigma, cond)``).
      error_field: a callable ``e(x, sigma) -> [..., d]``: a pytree (a closed form, a
        network), a plain function, a closure or a ``functools.partial``.
      eps: scalar amplitude (any sign; a pytree leaf, so ``jax.grad`` w.r.t. it works).

    Returns:
      :class:`WithError`.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgap.theory import with_error
      >>> D = with_error(lambda x, s: 0.5 * x, lambda x, s: jnp.ones_like(x), 0.1)
      >>> D(jnp.array([2.0, 4.0]), 1.0)
      Array([1.1, 2.1], dtype=float32)
    """
    return WithError(denoiser, error_field, eps)


class PositionErrorField(ClosedForm):
    r"""First-order error field of :class:`PositionError` in the amplitude ``a = delta^2``.

    .. math:: e(x, \sigma) = \frac{\partial}{\partial a} D_{\sqrt a}(x, \sigma)
        \Big|_{a = \delta_0^2},

    evaluated by ``jax.jvp`` (forward mode, exact; no finite differences), so that
    ``PositionError(delta) = D_{delta0} + (delta^2 - delta0^2) e + O((delta^2 - delta0^2)^2)``.
    At ``delta0 = 0``: ``e = (x - m)/sigma^2 + dm/dv`` with ``m = D*(x, sigma)`` and
    ``dm/dv = Cov_w(y, |x - y|^2) / (2 sigma^4)``.

    Args:
      train: ``[N, d]`` training points.
      delta0: expansion point ``>= 0`` (0: the field around ``D*``).
      chunk_size, query_block, num_exact: as for :class:`EmpiricalDenoiser`.
    """

    _fields = ("model",)
    _static = ("dim",)

    def __init__(self, train, delta0=0.0, **kernel):
        self.model = PositionError(train, delta0, **kernel)
        self.dim = self.model.dim

    @jit
    def _denoise(self, x, sigma):
        if x.size == 0:
            return x
        a0 = self.model._amp()
        _, tangent = jax.jvp(lambda a: self.model._denoise_amp(x, sigma, a),
                             (a0,), (jnp.ones_like(a0),))
        return tangent


def position_error_field(train, delta0=0.0, **kernel) -> PositionErrorField:
    """The first-order error field of :class:`PositionError` in ``delta^2`` at ``delta0``.

    Args:
      train: ``[N, d]`` training points.
      delta0: expansion point ``>= 0`` (0: the field around ``D*``).
      chunk_size, query_block, num_exact: as for :class:`EmpiricalDenoiser`.

    Returns:
      :class:`PositionErrorField`, a pytree error field ``e(x, sigma)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgap.theory import position_error_field
      >>> e = position_error_field(jnp.array([[0.0, 0.0], [2.0, 0.0]]))
      >>> e(jnp.array([1.0, 1.0]), 1.0)  # between the points: (x - m) / sigma^2
      Array([0., 1.], dtype=float32)
    """
    return PositionErrorField(train, delta0, **kernel)


class LossExpansion(NamedTuple):
    r"""Exact terms of the loss of ``D + eps e`` (per dimension), each ``[K]``.

    .. math:: L_\epsilon(\sigma) = \mathrm{base} + 2\epsilon\,\mathrm{cross}
        + \epsilon^2\,\mathrm{power}

    with ``base = E|D - x0|^2 / d``, ``cross = E<D - x0, e> / d``, ``power = E|e|^2 / d``,
    averaged over the examples and noise of :func:`jaxgap.losses.denoising_loss`.
    """

    base: Any
    cross: Any
    power: Any

    def loss(self, eps):
        """``base + 2 eps cross + eps^2 power``, ``[K]``."""
        return self.base + 2.0 * eps * self.cross + eps * eps * self.power


@jit
def _expansion(key, denoiser, error_field, data, sigmas, cond, field_cond, *, num_noise,
               batch_size):
    """``[K]`` base, cross and power terms: per-example ``[K, n]`` terms, averaged."""

    def batch_terms(x0, index, c):
        x, sig = noisy_queries(key, x0, index, sigmas, num_noise)
        resid = call(denoiser, x, sig, c) - x0[None, None]
        err = call(error_field, x, sig, c if field_cond else None)
        terms = (jnp.mean(resid**2, axis=-1), jnp.mean(resid * err, axis=-1),
                 jnp.mean(err**2, axis=-1))
        return tuple(jnp.mean(t, axis=1) for t in terms)

    out = per_example_map(batch_terms, data, cond, batch_size=batch_size)
    return tuple(jnp.mean(t, axis=1) for t in out)


def loss_expansion(key, denoiser, error_field, data, sigmas, *, cond=None,
                   num_noise: int = 1, batch_size: int | None = None) -> LossExpansion:
    r"""The denoising loss of ``D + eps e`` as an exact quadratic in ``eps``, per sigma.

    .. math:: L_\epsilon(\sigma) = L^*(\sigma) + 2\epsilon\,
        \mathbb{E}\langle D - x_0, e\rangle / d + \epsilon^2\, \mathbb{E}|e|^2 / d

    with the noise of :func:`jaxgap.losses.denoising_loss` for the same ``key`` (common
    random numbers: ``example_noise(key, i, k, r, d)``), so ``base`` equals
    ``denoising_loss(key, denoiser, data, sigmas)`` and ``expansion.loss(eps)`` equals
    ``denoising_loss(key, with_error(denoiser, error_field, eps), ...)`` up to rounding.

    Args:
      key: PRNG key.
      denoiser: any callable ``D(x, sigma)`` (typically ``D*``), or ``D(x, sigma, cond)``
        with ``cond``.
      error_field: any callable ``e(x, sigma)`` (e.g. :func:`position_error_field`); it gets
        ``cond`` too when it takes one.
      data: ``[n, d]`` clean examples.
      sigmas: ``[K]`` noise levels (> 0).
      cond: ``[n]`` (or scalar) integer condition ids, for a conditional denoiser.
      num_noise: noise draws per example and sigma.
      batch_size: examples per compiled batch (default as in :mod:`jaxgap.losses`).

    Returns:
      :class:`LossExpansion` with ``[K]`` fields ``base``, ``cross``, ``power``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgap.theory import loss_expansion
      >>> ex = loss_expansion(jax.random.key(0), lambda x, s: 0 * x,
      ...                     lambda x, s: jnp.ones_like(x), jnp.ones((4, 2)),
      ...                     jnp.array([1.0]))  # D = 0, e = 1, x0 = 1: (1 - eps)^2
      >>> [round(float(t[0]), 3) for t in ex]
      [1.0, -1.0, 1.0]
    """
    args = check_loss_args(key, denoiser, data, sigmas, cond, num_noise, batch_size, None)
    _callable(error_field, "error_field", "e(x, sigma)")
    dim = getattr(error_field, "dim", None)
    if dim is not None and dim != args["data"].shape[1]:
        raise ValueError(f"error_field: expected dimension d = {args['data'].shape[1]} (the "
                         f"data's), got {dim}")
    key, data, sigmas, cond = args["key"], args["data"], args["sigmas"], args["cond"]
    num_noise, batch_size = args["num_noise"], args["batch_size"]
    field_cond = cond is not None and takes_cond(error_field) is True
    base, cross, power = _expansion(key, denoiser, error_field, data,
                                    sigmas.astype(data.dtype), cond, field_cond,
                                    num_noise=num_noise, batch_size=batch_size)
    return LossExpansion(base, cross, power)
