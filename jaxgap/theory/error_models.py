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
- :func:`with_error`: ``D + eps * e`` for any error field ``e``.

:func:`loss_expansion` splits the denoising loss of ``D + eps e`` into its exact quadratic
terms in ``eps`` with the noise of :mod:`jaxgap.losses` (common random numbers), and
:func:`position_error_field` gives the first-order field of :class:`PositionError` in
``delta^2`` by forward-mode differentiation.
"""

from __future__ import annotations

import types
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgap._checks import float_array, is_concrete, positive_int
from jaxgap.denoisers._base import Denoiser, Pytree, compiled
from jaxgap.denoisers.empirical import EmpiricalDenoiser
from jaxgap.losses import _check, example_noise

__all__ = [
    "InputNoiseError",
    "KernelWidthError",
    "LogitNoiseError",
    "LossExpansion",
    "PositionError",
    "PositionErrorField",
    "WithError",
    "loss_expansion",
    "position_error_field",
    "with_error",
]


def _amplitude(value, name: str, dtype):
    """A scalar error amplitude ``>= 0`` as a 0-d array leaf (tracers accepted, unchecked)."""
    arr = float_array(value, name, ndim=0)
    if is_concrete(arr) and not float(np.asarray(arr)) >= 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {float(arr)!r}")
    return arr.astype(dtype)


class _WidenedKernel(EmpiricalDenoiser):
    """Empirical posterior at the widened temperature ``sigma^2 + amplitude``.

    Shares :class:`EmpiricalDenoiser`'s storage (``train``, ``center``, ``half_sq_norms``) and
    its exact streaming kernel. Subclasses name the amplitude leaf in ``_amp_name`` and
    implement ``_output(x, var, amp, mean)``.
    """

    _amp_name = ""

    def _amp(self):
        a = getattr(self, self._amp_name)
        return a * a

    def _output(self, x, var, amp, mean):  # pragma: no cover - abstract
        raise NotImplementedError

    def _denoise_amp(self, x, sigma, amp):
        """The model at amplitude ``amp`` (= delta^2 or tau^2); differentiable in ``amp``."""
        var = sigma * sigma + amp
        mean = self._posterior(x, var).mean
        return self._output(x, var, amp, mean)

    def _denoise_impl(self, x, sigma):
        return self._denoise_amp(x, sigma, self._amp())

    def _denoise(self, x, sigma):
        if x.size == 0:
            return x
        return _widened_denoise(self, x, sigma)

    def _effective_sigma(self, sigma, shape):
        sig = jnp.broadcast_to(jnp.asarray(sigma, self.train.dtype), shape)
        return jnp.sqrt(sig * sig + self._amp())

    def posterior_stats(self, x, sigma):
        """Posterior summaries of the widened weights (temperature ``sigma^2 + amplitude``)."""
        x, sigma = self._check_inputs(x, sigma)
        return self._posterior(x, sigma * sigma + self._amp())

    def weights(self, x, sigma):
        """The widened weights ``w_i(x; sigma^2 + amplitude)``, ``[..., N]`` (small N)."""
        x, sigma = self._check_inputs(x, sigma)
        return super().weights(x, self._effective_sigma(sigma, x.shape[:-1]))


_widened_denoise = compiled("_denoise_impl")


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
      chunk_size, query_block, num_exact: as for :class:`EmpiricalDenoiser`.
    """

    _fields = EmpiricalDenoiser._fields + ("delta",)
    _amp_name = "delta"

    def __init__(self, train, delta, **kernel):
        super().__init__(train, **kernel)
        self.delta = _amplitude(delta, "delta", self.train.dtype)

    def _output(self, x, var, amp, mean):
        return mean + (amp / var)[..., None] * (x - mean)


class KernelWidthError(_WidenedKernel):
    r"""Weighted training mean with a kernel wider by ``tau`` (a negative control).

    .. math::
        D_\tau(x, \sigma) = \sum_i w_i(x; \sigma^2 + \tau^2)\, y_i, \qquad
        w_i = \operatorname{softmax}_i\Big(-\frac{|x - y_i|^2}{2(\sigma^2 + \tau^2)}\Big).

    Unlike :class:`PositionError` it omits the shrinkage term ``tau^2 / (sigma^2 + tau^2)
    (x - m)``, so it is not the posterior mean of any smeared data set. Exact streaming kernel
    of :class:`~jaxgap.denoisers.EmpiricalDenoiser`; ``tau = 0`` gives ``D*``.

    Args:
      train: ``[N, d]`` training points.
      tau: extra kernel width ``>= 0`` (a pytree leaf).
      chunk_size, query_block, num_exact: as for :class:`EmpiricalDenoiser`.
    """

    _fields = EmpiricalDenoiser._fields + ("tau",)
    _amp_name = "tau"

    def __init__(self, train, tau, **kernel):
        super().__init__(train, **kernel)
        self.tau = _amplitude(tau, "tau", self.train.dtype)

    def _output(self, x, var, amp, mean):
        return mean


class InputNoiseError(Denoiser):
    r"""``D*`` averaged over fixed random perturbations of its input.

    .. math:: D_\tau(x, \sigma) = \frac{1}{J}\sum_{j=1}^{J} D^*(x + \tau\,\eta_j, \sigma),
        \qquad \eta_j \sim N(0, I_d)\ \text{drawn once from ``key`` at construction.}

    The draws ``eta [J, d]`` are fixed (a leaf), so the model is a deterministic function.

    Args:
      train: ``[N, d]`` training points.
      tau: perturbation scale ``>= 0`` (a pytree leaf).
      key: PRNG key for the draws.
      num_draws: ``J``.
      chunk_size, query_block, num_exact: passed to the inner
        :class:`~jaxgap.denoisers.EmpiricalDenoiser`.
    """

    _fields = ("optimal", "tau", "eta")
    _static = ("dim", "num_draws")

    def __init__(self, train, tau, key, *, num_draws: int = 16, **kernel):
        self.optimal = EmpiricalDenoiser(train, **kernel)
        self.dim = self.optimal.dim
        dtype = self.optimal.train.dtype
        self.tau = _amplitude(tau, "tau", dtype)
        self.num_draws = positive_int(num_draws, "num_draws")
        self.eta = jax.random.normal(key, (self.num_draws, self.dim), dtype)

    def _denoise(self, x, sigma):
        if x.size == 0:
            return x
        return _input_noise_denoise(self, x, sigma)

    def _denoise_impl(self, x, sigma):
        j = self.num_draws
        eta = self.eta.reshape((j,) + (1,) * (x.ndim - 1) + (self.dim,))
        xs = x[None] + self.tau * eta
        sig = jnp.broadcast_to(sigma[None], (j,) + sigma.shape)
        return jnp.mean(self.optimal._denoise(xs, sig), axis=0)


_input_noise_denoise = compiled("_denoise_impl")


class LogitNoiseError(Denoiser):
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
      train: ``[N, d]`` training points.
      s: field strength ``>= 0`` (a pytree leaf).
      key: PRNG key for ``g [N]``.
    """

    _fields = ("train", "g", "s")
    _static = ("dim",)

    def __init__(self, train, s, key):
        self.train = float_array(train, "train", ndim=2)
        self.dim = int(self.train.shape[1])
        self.s = _amplitude(s, "s", self.train.dtype)
        self.g = jax.random.normal(key, (self.train.shape[0],), self.train.dtype)

    def _denoise(self, x, sigma):
        if x.size == 0:
            return x
        return _logit_noise_denoise(self, x, sigma)

    def _denoise_impl(self, x, sigma):
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


_logit_noise_denoise = compiled("_denoise_impl")


def _as_pytree_callable(fn, name: str):
    if not callable(fn):
        raise ValueError(f"{name}: expected a callable e(x, sigma), got {type(fn).__name__}")
    if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)):
        return jax.tree_util.Partial(fn)  # a plain function becomes a (leafless) pytree
    return fn


class WithError(Pytree):
    r"""``D(x, sigma) + eps * e(x, sigma)``: a denoiser plus a scaled error field.

    ``denoiser``, ``error_field`` and ``eps`` are pytree children (``eps`` a 0-d leaf).
    Build it with :func:`with_error`.
    """

    _fields = ("denoiser", "error_field", "eps")
    _static = ("dim",)

    def __call__(self, x, sigma):
        out = self.denoiser(x, sigma)
        return out + self.eps.astype(out.dtype) * self.error_field(x, sigma)


def with_error(denoiser, error_field, eps) -> WithError:
    r"""The denoiser ``D + eps * e`` for any error field ``e`` obeying the protocol.

    Args:
      denoiser: a pytree callable ``D(x, sigma)``.
      error_field: a pytree callable ``e(x, sigma) -> [..., d]`` (a plain Python function is
        wrapped in ``jax.tree_util.Partial``; closures over arrays should be pytrees).
      eps: scalar amplitude (any sign; a pytree leaf, so ``jax.grad`` w.r.t. it works).

    Returns:
      :class:`WithError`.
    """
    denoiser = _as_pytree_callable(denoiser, "denoiser")
    error_field = _as_pytree_callable(error_field, "error_field")
    d1, d2 = getattr(denoiser, "dim", None), getattr(error_field, "dim", None)
    if d1 is not None and d2 is not None and d1 != d2:
        raise ValueError(f"error_field: expected dimension d = {d1} (the denoiser's), got {d2}")
    obj = object.__new__(WithError)
    obj.denoiser, obj.error_field = denoiser, error_field
    obj.eps = float_array(eps, "eps", ndim=0)
    obj.dim = d1 if d1 is not None else d2
    return obj


class PositionErrorField(Denoiser):
    r"""First-order error field of :class:`PositionError` in the amplitude ``a = delta^2``.

    .. math:: e(x, \sigma) = \frac{\partial}{\partial a} D_{\sqrt a}(x, \sigma)
        \Big|_{a = \delta_0^2},

    evaluated by ``jax.jvp`` (forward mode, exact; no finite differences), so that
    ``PositionError(delta) = D_{delta0} + (delta^2 - delta0^2) e + O((delta^2 - delta0^2)^2)``.
    At ``delta0 = 0``: ``e = (x - m)/sigma^2 + dm/dv`` with ``m = D*(x, sigma)`` and
    ``dm/dv = Cov_w(y, |x - y|^2) / (2 sigma^4)``. Build it with
    :func:`position_error_field`.
    """

    _fields = ("model",)
    _static = ("dim",)

    def _denoise(self, x, sigma):
        if x.size == 0:
            return x
        return _position_field(self, x, sigma)

    def _denoise_impl(self, x, sigma):
        a0 = self.model._amp()
        _, tangent = jax.jvp(lambda a: self.model._denoise_amp(x, sigma, a),
                             (a0,), (jnp.ones_like(a0),))
        return tangent


_position_field = compiled("_denoise_impl")


def position_error_field(train, delta0=0.0, **kernel) -> PositionErrorField:
    """The first-order error field of :class:`PositionError` in ``delta^2`` at ``delta0``.

    Args:
      train: ``[N, d]`` training points.
      delta0: expansion point ``>= 0`` (0: the field around ``D*``).
      chunk_size, query_block, num_exact: as for :class:`EmpiricalDenoiser`.

    Returns:
      :class:`PositionErrorField`, a pytree error field ``e(x, sigma)``.
    """
    model = PositionError(train, delta0, **kernel)
    obj = object.__new__(PositionErrorField)
    obj.model, obj.dim = model, model.dim
    return obj


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


def _batch_terms(denoiser, field, x0, index, sigmas, key, num_noise):
    """Per-example ``[K, B]`` base, cross and power terms for one batch (as in losses)."""
    k_len, dim = sigmas.shape[0], x0.shape[-1]
    draws = jnp.arange(num_noise)
    grid = jnp.arange(k_len)
    eps = jax.vmap(lambda k: jax.vmap(lambda r: jax.vmap(
        lambda i: example_noise(key, i, k, r, dim, x0.dtype))(index))(draws))(grid)
    sig = jnp.broadcast_to(sigmas[:, None, None], (k_len, num_noise, x0.shape[0]))
    x = x0[None, None] + sig[..., None] * eps
    resid = denoiser(x, sig) - x0[None, None]
    err = field(x, sig)
    terms = (jnp.mean(resid**2, axis=-1), jnp.mean(resid * err, axis=-1),
             jnp.mean(err**2, axis=-1))
    return tuple(jnp.mean(t, axis=1) for t in terms)


def _all_terms(denoiser, field, data, sigmas, key, *, num_noise, batch_size):
    n = data.shape[0]
    bsz = min(batch_size, n)
    total = -(-n // bsz) * bsz
    xp = jnp.pad(data, ((0, total - n), (0, 0)))
    index = jnp.arange(total, dtype=jnp.uint32)
    nb = total // bsz
    out = jax.lax.map(
        lambda a: _batch_terms(denoiser, field, a[0], a[1], sigmas, key, num_noise),
        (xp.reshape(nb, bsz, -1), index.reshape(nb, bsz)))
    return tuple(jnp.mean(jnp.moveaxis(t, 0, 1).reshape(t.shape[1], total)[:, :n], axis=1)
                 for t in out)


_compiled_terms = jax.jit(_all_terms, static_argnames=("num_noise", "batch_size"))


def loss_expansion(denoiser, error_field, data, sigmas, key, *, num_noise: int = 1,
                   batch_size: int | None = None) -> LossExpansion:
    r"""The denoising loss of ``D + eps e`` as an exact quadratic in ``eps``, per sigma.

    .. math:: L_\epsilon(\sigma) = L^*(\sigma) + 2\epsilon\,
        \mathbb{E}\langle D - x_0, e\rangle / d + \epsilon^2\, \mathbb{E}|e|^2 / d

    with the noise of :func:`jaxgap.losses.denoising_loss` for the same ``key`` (common
    random numbers: ``example_noise(key, i, k, r, d)``), so ``base`` equals
    ``denoising_loss(denoiser, data, sigmas, key)`` and ``expansion.loss(eps)`` equals
    ``denoising_loss(with_error(denoiser, error_field, eps), ...)`` up to rounding.

    Args:
      denoiser: a pytree callable ``D(x, sigma)`` (typically ``D*``).
      error_field: a pytree callable ``e(x, sigma)`` (e.g. :func:`position_error_field`).
      data: ``[n, d]`` clean examples.
      sigmas: ``[K]`` noise levels (> 0).
      key: PRNG key.
      num_noise: noise draws per example and sigma.
      batch_size: examples per compiled batch (default as in :mod:`jaxgap.losses`).

    Returns:
      :class:`LossExpansion` with ``[K]`` fields ``base``, ``cross``, ``power``.
    """
    denoiser = _as_pytree_callable(denoiser, "denoiser")
    error_field = _as_pytree_callable(error_field, "error_field")
    data, sigmas, num_noise, batch_size = _check(denoiser, data, sigmas, key, num_noise,
                                                 batch_size, None)
    dim = getattr(error_field, "dim", None)
    if dim is not None and dim != data.shape[1]:
        raise ValueError(f"error_field: expected dimension d = {data.shape[1]} (the data's), "
                         f"got {dim}")
    base, cross, power = _compiled_terms(denoiser, error_field, data, sigmas, key,
                                         num_noise=num_noise, batch_size=batch_size)
    return LossExpansion(base, cross, power)
