r"""Closed-form optimal denoisers of conditional distributions ``D(x, sigma, cond)``.

A training set with integer condition ids ``l_i`` (labels) defines one distribution per
condition ``c``: the points that carry ``c``. Its optimal denoiser is the posterior mean
given the noisy state *and* the condition. The null condition
:data:`~jaxgap.denoisers.NULL` (``-1``) means "no condition": the unconditional denoiser of
all training points, the ``D(x, sigma, NULL)`` term of classifier-free guidance
(:func:`~jaxgap.denoisers.guided`).

``cond`` is an integer array broadcastable to ``x.shape[:-1]``: one batch may mix
conditions. Ids that no training point carries are rejected: host values (Python ints,
NumPy arrays) with a ``ValueError`` before the call, ``jax.Array`` and traced values inside
the compiled call (``equinox.error_if``, an error at run time, also under a caller's
``jax.jit``/``vmap`` and in jaxgap's compiled loops), never a silent NaN.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int

from jaxgap._checks import (
    float_array,
    guard_positive,
    is_concrete,
    positive_float,
    positive_int,
    shape_str,
)
from jaxgap._exact import exact_sq_dist_diff
from jaxgap._jit import jit
from jaxgap._protocol import NULL, check_cond
from jaxgap.denoisers import _kernel
from jaxgap.denoisers._base import ClosedForm
from jaxgap.denoisers._linalg import HIGHEST, param_dtype, psd_eigh, shrink

__all__ = ["ConditionalEmpiricalDenoiser", "ConditionalGaussianDenoiser"]

_IN_GRAPH = ("cond: expected condition ids carried by the training points or NULL = -1, got "
             "another id (checked inside the compiled call)")


def _id_summary(ids: np.ndarray) -> str:
    """``"0..9"`` for a contiguous range, else the first few ids."""
    if ids.size and ids[-1] - ids[0] + 1 == ids.size:
        return f"{ids[0]}..{ids[-1]}" if ids.size > 1 else f"{ids[0]}"
    shown = ", ".join(str(i) for i in ids[:8])
    return shown + (", ..." if ids.size > 8 else "")


def _check_labels(labels, n: int, num_conditions):
    """``(labels as int32 [N], C)``: integer ids ``>= 0``, one per training point."""
    if labels is None:
        raise ValueError(f"labels: expected [{n}] integer condition ids, got None")
    arr = labels if isinstance(labels, jax.Array) else np.asarray(labels)
    if arr.dtype == bool or not jnp.issubdtype(arr.dtype, jnp.integer):
        raise ValueError(f"labels: expected integer condition ids, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"labels: expected shape [{n}] (one id per training point, N from "
                         f"train), got shape {shape_str(arr.shape)}")
    if num_conditions is not None:
        num_conditions = positive_int(num_conditions, "num_conditions")
    if is_concrete(arr):
        values = np.asarray(arr)
        if values.min() < 0:
            raise ValueError(f"labels: expected ids >= 0 (NULL = {NULL} is reserved for no "
                             f"condition), got min {int(values.min())}")
        top = int(values.max()) + 1
        if num_conditions is not None and num_conditions < top:
            raise ValueError(f"num_conditions: expected at least {top} (largest label + 1), "
                             f"got {num_conditions}")
        num_conditions = top if num_conditions is None else num_conditions
    elif num_conditions is None:
        raise ValueError("num_conditions: expected the number of condition ids when labels "
                         "are traced (built inside jit), got None")
    return jnp.asarray(arr, jnp.int32), num_conditions


class _Conditional(ClosedForm):
    """Base of conditional closed forms: ``D(x, sigma, cond)``; subclasses implement
    ``_denoise(x, sigma, cond)`` and ``_valid_conditions() -> bool [C]``."""

    conditional = True

    @property
    def num_conditions(self) -> int:
        """``C``: condition ids are ``0 .. C - 1`` (and ``NULL``)."""
        return int(self._valid_conditions().shape[0])

    def _valid_conditions(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x, sigma, cond=None):
        x, sigma, cond = self._check_call(x, sigma, cond)
        return self._guarded(x, sigma, cond)

    def _check_call(self, x, sigma, cond):
        x, sigma = self._check_inputs(x, sigma)
        return x, sigma, self.check_cond(cond, x.shape[:-1])

    def check_cond(self, cond, batch_shape: tuple[int, ...] = ()):
        """Check condition ids at the public boundary; return them as an int32 array
        broadcast to ``batch_shape``.

        Host values (Python ints, NumPy arrays) are checked against the conditions of the
        training set (the denoiser's ``[C]`` table of valid ids, computed at construction);
        ``jax.Array`` values are not read back (no host sync): they are checked inside the
        compiled call, as are all ids when the denoiser itself is traced.

        Raises:
          ValueError: naming ``cond``: None, not integers, a shape that does not broadcast
            to ``batch_shape``, or (host values) an id no training point carries.
        """
        if cond is None:
            raise ValueError(f"cond: expected integer condition ids (NULL = {NULL} for none) "
                             f"for the conditional {type(self).__name__} (it takes "
                             f"D(x, sigma, cond)), got None")
        out = check_cond(cond, tuple(batch_shape))
        valid = self._valid_conditions()
        if not isinstance(cond, jax.Array) and is_concrete(valid):
            values = np.asarray(cond).astype(np.int64)
            table = np.asarray(valid)
            inside = (values >= 0) & (values < table.size)
            ok = (values == NULL) | (inside & table[np.where(inside, values, 0)])
            if not np.all(ok):
                ids = np.flatnonzero(table)
                raise ValueError(f"cond: expected condition ids carried by the training points "
                                 f"({_id_summary(ids)}) or NULL = {NULL}, got "
                                 f"{int(values[~ok].flat[0])}")
        return jnp.broadcast_to(out, tuple(batch_shape))

    def _guard_cond(self, result, cond):
        """``result``, with an in-graph check that every id of ``cond`` is valid."""
        valid = self._valid_conditions()
        size = valid.shape[0]
        ok = (cond == NULL) | ((cond >= 0) & (cond < size) & valid[jnp.clip(cond, 0, size - 1)])
        return eqx.error_if(result, ~ok, _IN_GRAPH)

    @jit
    def _guarded(self, x, sigma, cond):
        """``_denoise`` with ``sigma`` and ``cond`` checked in-graph."""
        out = guard_positive(self._denoise(x, sigma, cond), sigma)
        return self._guard_cond(out, cond)


class ConditionalEmpiricalDenoiser(_Conditional):
    r"""Optimal denoiser of the empirical distribution of the training points of a condition.

    For training points ``y_i`` with labels ``l_i``:

    .. math::
        D^*(x, \sigma, c) = \sum_{i:\, l_i = c} w_i(x, \sigma, c)\, y_i, \qquad
        w_i = \operatorname{softmax}_{i:\, l_i = c}\Big(-\frac{|x - y_i|^2}{2\sigma^2}\Big),

    the posterior mean ``E[x0 | x0 + sigma eps = x, l = c]`` of the uniform distribution on
    the ``N_c`` points with label ``c``; ``c = NULL`` (-1) sums over all ``N`` points (the
    :class:`~jaxgap.denoisers.EmpiricalDenoiser` of ``train``). It equals
    ``EmpiricalDenoiser(train[labels == c])`` to float32 rounding.

    Computed by the streaming kernel of :class:`~jaxgap.denoisers.EmpiricalDenoiser` over
    all ``N`` points, with the logits of the points of other conditions set to ``-inf``
    inside the same streamed matmul (the same FLOPs and memory, independent of ``N`` beyond
    the data; one batch may mix conditions), before the ``num_exact`` candidates of every
    query are chosen and their logits re-evaluated without cancellation: the same exactness
    at small ``sigma`` and near ties between points of a condition.

    Args:
      train: ``[N, d]`` training points.
      labels: ``[N]`` integer condition ids ``>= 0``, one per point.
      num_conditions: the number of condition ids ``C`` (default: ``max(labels) + 1``;
        required when ``labels`` are traced, inside jit, where their values are not
        checked). Ids in ``0 .. C - 1`` that no point carries are rejected at call time.
      chunk_size, query_block, num_exact: as for :class:`~jaxgap.denoisers.EmpiricalDenoiser`.

    Attributes:
      train: ``[N, d]``; labels: ``[N]`` int32; counts: ``[C]`` int32 points per condition
        (``N_c``).

    Raises:
      ValueError: naming ``train``, ``labels`` (wrong length, not integers, negative) or
        ``num_conditions``; at call time naming ``cond`` (None, wrong dtype or shape, an id
        no training point carries).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgap.denoisers import NULL, ConditionalEmpiricalDenoiser
      >>> train = jnp.array([[0.0, 0.0], [1.0, 1.0], [4.0, 4.0]])
      >>> D = ConditionalEmpiricalDenoiser(train, jnp.array([0, 0, 1]))
      >>> D(jnp.array([[3.0, 3.0], [3.0, 3.0]]), 0.1, jnp.array([0, 1]))  # per example
      Array([[1., 1.],
             [4., 4.]], dtype=float32)
      >>> D(jnp.array([1.9, 1.9]), 100.0, NULL).round(3)  # all points: about their mean
      Array([1.667, 1.667], dtype=float32)

    References:
      Karras et al. (2022), eq. 3 (the ideal denoiser of a finite set); Ho and Salimans,
      "Classifier-free diffusion guidance" (2022) (conditional and null denoisers).
    """

    _fields = ("train", "labels", "counts", "center", "half_sq_norms")
    _static = ("dim", "chunk_size", "query_block", "num_exact")

    train: Float[Array, "n d"]
    labels: Int[Array, " n"]
    counts: Int[Array, " c"]

    def __init__(self, train: Float[ArrayLike, "n d"], labels: Int[ArrayLike, " n"], *,
                 num_conditions: int | None = None, chunk_size: int = 2048,
                 query_block: int = 512, num_exact: int = 4):
        train = float_array(train, "train", ndim=2)
        self.labels, size = _check_labels(labels, int(train.shape[0]), num_conditions)
        self.counts = jnp.bincount(self.labels, length=size).astype(jnp.int32)
        self.train = train
        (self.center, self.half_sq_norms, self.chunk_size, self.query_block,
         self.num_exact) = _kernel.prepare(train, chunk_size, query_block, num_exact)
        self.dim = int(train.shape[1])

    @property
    def num_points(self) -> int:
        return int(self.train.shape[0])

    def _valid_conditions(self):
        return self.counts > 0

    @jit
    def _denoise(self, x, sigma, cond):
        if x.size == 0:
            return x
        return self._posterior(x, sigma * sigma, cond).mean

    @jit
    def _posterior(self, x, var, cond) -> _kernel.Posterior:
        """The kernel's posterior of ``x [..., d]`` at ``var [...]`` given ``cond [...]``."""
        batch = x.shape[:-1]
        out = _kernel.posterior(
            x.reshape(-1, self.dim), var.reshape(-1), self.train, self.center,
            self.half_sq_norms, self.labels, cond.reshape(-1), chunk_size=self.chunk_size,
            query_block=self.query_block, num_exact=self.num_exact)
        return _kernel.Posterior(
            out.mean.reshape(batch + (self.dim,)), *(t.reshape(batch) for t in out[1:]))

    def posterior_stats(self, x, sigma, cond=None) -> _kernel.Posterior:
        """Posterior mean and summaries given the condition, as
        :meth:`EmpiricalDenoiser.posterior_stats <jaxgap.denoisers.EmpiricalDenoiser>`:
        ``mean [..., d]``, ``log_normalizer``, ``max_weight``, ``sum_sq_weights`` (over the
        points of the condition) and ``nearest`` (an index into ``train``), each ``[...]``.
        """
        x, sigma, cond = self._check_call(x, sigma, cond)
        return self._stats(x, sigma, cond)

    @jit
    def _stats(self, x, sigma, cond):
        out = self._posterior(x, sigma * sigma, cond)
        return out._replace(mean=self._guard_cond(out.mean, cond))

    def effective_count(self, x, sigma, cond=None):
        """Effective number of contributing points of the condition,
        ``1 / sum_i w_i^2``, ``[...]`` (at most ``N_c``)."""
        return 1.0 / self.posterior_stats(x, sigma, cond).sum_sq_weights

    def weights(self, x, sigma, cond=None):
        r"""Posterior weights over the whole training set, ``[..., N]`` (materialised: small
        ``N``), exactly 0 for the points of other conditions.

        Computed exactly relative to each query's nearest point of its condition ``y_r``:
        ``|x - y_i|^2 - |x - y_r|^2 = (y_i - y_r) . (y_i + y_r - 2x)``.
        """
        x, sigma, cond = self._check_call(x, sigma, cond)
        return self._weights(x, sigma, cond)

    @jit
    def _weights(self, x, sigma, cond):
        batch = x.shape[:-1]
        xf = x.reshape(-1, self.dim)
        var = (sigma * sigma).reshape(-1)
        c = cond.reshape(-1)
        y = self.train
        keep = (self.labels[None, :] == c[:, None]) | (c == NULL)[:, None]
        approx = jnp.dot(xf - self.center[None, :], y.T, precision=HIGHEST)
        approx = jnp.where(keep, approx - self.half_sq_norms[None, :], -jnp.inf)
        nearest = jnp.argmax(approx, axis=1)
        shift = exact_sq_dist_diff(xf[:, None, :], y[None, :, :], y[nearest][:, None, :])
        logits = jnp.where(keep, -0.5 * shift / var[:, None], -jnp.inf)
        w = jnp.exp(logits - jnp.max(logits, axis=1, keepdims=True))
        w = w / jnp.sum(w, axis=1, keepdims=True)
        return self._guard_cond(w.reshape(batch + (self.num_points,)), cond)


class ConditionalGaussianDenoiser(_Conditional):
    r"""Optimal denoiser of a class-conditional Gaussian: a Wiener filter per condition.

    For ``x0 | c ~ N(mu_c, C_c)`` and ``x = x0 + sigma eps``:

    .. math::
        D(x, \sigma, c) = \mu_c + C_c (C_c + \sigma^2 I)^{-1} (x - \mu_c)
            = \mu_c + V_c\, \mathrm{diag}\Big(\frac{\lambda_c}{\lambda_c + \sigma^2}\Big)
              V_c^\top (x - \mu_c),

    with ``C_c = V_c diag(lambda_c) V_c^T`` decomposed once at construction, as in
    :class:`~jaxgap.denoisers.GaussianDenoiser`. ``c = NULL`` uses the null moments
    ``(mu_0, C_0)``: ``null_mean``/``null_cov`` when given, else the moments of the
    equal-weight mixture of the conditions,
    ``mu_0 = mean_c mu_c``, ``C_0 = mean_c [C_c + (mu_c - mu_0)(mu_c - mu_0)^T]``
    (:meth:`from_data` uses the pooled moments of all training points instead). A batch
    ``[M, d]`` costs ``2 (C + 1) M d^2`` FLOPs with ``[M, d]`` intermediates (one Wiener
    filter per condition, selected per query).

    Args:
      means: ``[C, d]`` per-condition means.
      covs: ``[C, d, d]`` symmetric PSD per-condition covariances.
      null_mean: ``[d]`` mean for ``NULL`` (with ``null_cov``, or neither).
      null_cov: ``[d, d]`` covariance for ``NULL``.
      rtol: relative tolerance of the symmetry/PSD checks (see ``GaussianDenoiser``).

    Attributes:
      means: ``[C, d]``; eigvals: ``[C, d]``; eigvecs: ``[C, d, d]`` (columns);
      null_mean: ``[d]``; null_eigvals: ``[d]``; null_eigvecs: ``[d, d]``;
      valid: ``[C]`` bool, the conditions that may be asked for.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgap.denoisers import NULL, ConditionalGaussianDenoiser
      >>> D = ConditionalGaussianDenoiser(jnp.array([[-2.0], [2.0]]), jnp.ones((2, 1, 1)))
      >>> D(jnp.array([[0.0], [0.0], [0.0]]), 1.0, jnp.array([0, 1, NULL]))  # halfway
      Array([[-1.],
             [ 1.],
             [ 0.]], dtype=float32)
    """

    _fields = ("means", "eigvals", "eigvecs", "valid", "null_mean", "null_eigvals",
               "null_eigvecs")
    _static = ("dim",)

    means: Float[Array, "c d"]
    eigvals: Float[Array, "c d"]
    eigvecs: Float[Array, "c d d"]

    def __init__(self, means: Float[ArrayLike, "c d"], covs: Float[ArrayLike, "c d d"], *,
                 null_mean: Float[ArrayLike, " d"] | None = None,
                 null_cov: Float[ArrayLike, "d d"] | None = None, rtol: float | None = None):
        means = float_array(means, "means", ndim=2)
        size, d = means.shape
        covs = float_array(covs, "covs")
        if covs.shape != (size, d, d):
            raise ValueError(f"covs: expected shape [{size}, {d}, {d}] (C, d from means), got "
                             f"shape {shape_str(covs.shape)}")
        if (null_mean is None) != (null_cov is None):
            missing = "null_cov" if null_cov is None else "null_mean"
            raise ValueError(f"{missing}: expected the null condition's moments as both "
                             f"null_mean and null_cov, or neither, got None")
        if null_mean is None:  # moments of the equal-weight mixture of the conditions
            null_mean = jnp.mean(means, axis=0)
            dev = means - null_mean[None, :]
            null_cov = jnp.mean(covs, axis=0) + jnp.matmul(dev.T, dev, precision=HIGHEST) / size
        else:
            null_mean = float_array(null_mean, "null_mean", ndim=1)
            if null_mean.shape != (d,):
                raise ValueError(f"null_mean: expected shape [{d}] (d from means), got shape "
                                 f"{shape_str(null_mean.shape)}")
            null_cov = float_array(null_cov, "null_cov")
            if null_cov.shape != (d, d):
                raise ValueError(f"null_cov: expected shape [{d}, {d}] (d from means), got "
                                 f"shape {shape_str(null_cov.shape)}")
        if rtol is not None:
            rtol = positive_float(rtol, "rtol", allow_zero=True)
        dtype = param_dtype(means, covs, null_mean, null_cov)
        self.eigvals, self.eigvecs = psd_eigh(covs, "covs", dtype, rtol)
        self.null_eigvals, self.null_eigvecs = psd_eigh(null_cov, "null_cov", dtype, rtol)
        self.means = means.astype(dtype)
        self.null_mean = null_mean.astype(dtype)
        self.valid = jnp.ones(size, bool)
        self.dim = int(d)

    @classmethod
    def from_data(cls, train: Float[ArrayLike, "n d"], labels: Int[ArrayLike, " n"], *,
                  shrinkage: float = 0.0,
                  rtol: float | None = None) -> ConditionalGaussianDenoiser:
        r"""Fit per-condition Gaussians (and the pooled one for ``NULL``) to labelled data.

        Maximum-likelihood moments, as :meth:`GaussianDenoiser.from_data
        <jaxgap.denoisers.GaussianDenoiser.from_data>`: ``mu_c`` and
        ``C_c = (1/N_c) sum_{l_i = c} (y_i - mu_c)(y_i - mu_c)^T`` (a condition with one
        point has ``C_c = 0``: its denoiser returns ``mu_c``), and for ``NULL`` the mean and
        covariance of all points; each optionally shrunk towards
        ``(tr C / d) I`` by ``shrinkage``. Ids in ``0 .. max(labels)`` that no point
        carries are rejected at call time.

        Args:
          train: ``[N, d]`` points; labels: ``[N]`` integer ids ``>= 0`` (concrete values).
          shrinkage: ``a`` in ``[0, 1]``; rtol: forwarded to the constructor.
        """
        train = float_array(train, "train", ndim=2)
        if not is_concrete(labels):
            raise ValueError("labels: expected concrete values (fit outside jit), got a tracer")
        labels, size = _check_labels(labels, int(train.shape[0]), None)
        a = positive_float(shrinkage, "shrinkage", allow_zero=True)
        if a > 1.0:
            raise ValueError(f"shrinkage: expected a number in [0, 1], got {shrinkage!r}")
        host = np.asarray(labels)
        d = train.shape[1]

        def moments(x):
            mean = jnp.mean(x, axis=0)
            xc = x - mean[None, :]
            cov = jnp.matmul(xc.T, xc, precision=HIGHEST) / x.shape[0]
            if a > 0.0:
                cov = (1.0 - a) * cov + a * (jnp.trace(cov) / d) * jnp.eye(d, dtype=cov.dtype)
            return mean, cov

        zero = (jnp.zeros(d, train.dtype), jnp.zeros((d, d), train.dtype))
        fits = [moments(train[np.flatnonzero(host == c)]) if np.any(host == c) else zero
                for c in range(size)]
        null_mean, null_cov = moments(train)
        out = cls(jnp.stack([m for m, _ in fits]), jnp.stack([c for _, c in fits]),
                  null_mean=null_mean, null_cov=null_cov, rtol=rtol)
        out.valid = jnp.asarray(np.bincount(host, minlength=size) > 0)
        return out

    def _valid_conditions(self):
        return self.valid

    @jit
    def _denoise(self, x, sigma, cond):
        x2 = x.reshape(-1, self.dim)
        s2 = jnp.square(sigma.reshape(-1, 1))
        size = self.means.shape[0]
        which = jnp.where(cond.reshape(-1) == NULL, size, cond.reshape(-1))
        means = jnp.concatenate([self.means, self.null_mean[None]], axis=0)
        lams = jnp.concatenate([self.eigvals, self.null_eigvals[None]], axis=0)
        vecs = jnp.concatenate([self.eigvecs, self.null_eigvecs[None]], axis=0)

        def wiener(k, out):
            mean, lam, vec = means[k], lams[k][None, :], vecs[k]
            z = jnp.matmul(x2 - mean[None, :], vec, precision=HIGHEST)
            est = mean[None, :] + jnp.matmul(shrink(lam, lam + s2) * z, vec.T, precision=HIGHEST)
            return jnp.where((which == k)[:, None], est, out)

        out = lax.fori_loop(0, size + 1, wiener, jnp.zeros_like(x2))
        return out.reshape(x.shape)
