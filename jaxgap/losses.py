r"""Denoising losses over noise grids, generalization-gap curves and the EDM objective.

Per-sigma loss (EDM convention, mean squared error per dimension):

.. math:: L(\sigma) = \mathbb{E}_{x_0, \epsilon}\,
    \frac{1}{d}\,\big|D(x_0 + \sigma\epsilon, \sigma) - x_0\big|^2 .

Common random numbers: the noise of example ``i`` at grid index ``k`` and draw ``r`` is
``normal(fold_in(fold_in(fold_in(key, i), k), r))``, a function of ``(key, i, k, r)`` only.
Two denoisers evaluated with one key see identical noise, and results do not depend on the
batch size or the number of devices.

One compiled program per (grid length, data shape, denoiser structure): the grid is a traced
argument, so a new grid of the same length does not recompile.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgap import noise as _noise
from jaxgap._checks import float_array, is_concrete, positive_int

_MAX_ELEMENTS = 1 << 22  # noisy queries per batch, times d: ~16 MB of float32 per buffer


def example_noise(key, index, k, r, dim: int, dtype=jnp.float32):
    """The standard normal noise ``[d]`` of example ``index`` at grid index ``k``, draw ``r``.

    Common random numbers: a function of ``(key, index, k, r)`` only.
    """
    sub = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, index), k), r)
    return jax.random.normal(sub, (dim,), dtype)


def _batch_stats(denoiser, x0, index, sigmas, key, num_noise):
    """Per-example ``mean_r |D - x0|^2 / d`` and ``mean_r |D|^2 / d`` for one batch.

    ``x0 [B, d]``, ``index [B]`` (global example indices), ``sigmas [K]``; returns two
    ``[K, B]`` arrays. The denoiser is called once on ``[K, R, B, d]`` noisy queries with a
    per-query sigma, so closed-form denoisers batch the whole grid in one call.
    """
    k_len, dim = sigmas.shape[0], x0.shape[-1]
    draws = jnp.arange(num_noise)
    grid = jnp.arange(k_len)
    eps = jax.vmap(lambda k: jax.vmap(lambda r: jax.vmap(
        lambda i: example_noise(key, i, k, r, dim, x0.dtype))(index))(draws))(grid)
    sig = jnp.broadcast_to(sigmas[:, None, None], (k_len, num_noise, x0.shape[0]))
    x = x0[None, None] + sig[..., None] * eps
    out = denoiser(x, sig)
    mse = jnp.mean((out - x0[None, None]) ** 2, axis=-1)
    out_sq = jnp.mean(out**2, axis=-1)
    return jnp.mean(mse, axis=1), jnp.mean(out_sq, axis=1)


def _all_stats(denoiser, data, sigmas, key, *, num_noise, batch_size, mesh):
    """``[K, n]`` per-example statistics, batched (and sharded over a 1-D mesh)."""
    n = data.shape[0]
    num_dev = 1 if mesh is None else mesh.devices.size
    per_dev = -(-n // num_dev)
    bsz = min(batch_size, per_dev)
    per_dev = -(-per_dev // bsz) * bsz
    total = per_dev * num_dev
    xp = jnp.pad(data, ((0, total - n), (0, 0)))
    index = jnp.arange(total, dtype=jnp.uint32)

    def local(x_loc, i_loc):
        nb = x_loc.shape[0] // bsz
        out = jax.lax.map(
            lambda a: _batch_stats(denoiser, a[0], a[1], sigmas, key, num_noise),
            (x_loc.reshape(nb, bsz, -1), i_loc.reshape(nb, bsz)))
        # [nb, 2, K, bsz] -> [2, K, nb * bsz]
        return tuple(jnp.moveaxis(t, 0, 1).reshape(t.shape[1], nb * bsz) for t in out)

    if mesh is None:
        mse, out_sq = local(xp, index)
    else:
        axis = mesh.axis_names[0]
        mse, out_sq = jax.shard_map(
            local, mesh=mesh, in_specs=(P(axis), P(axis)), out_specs=(P(None, axis),) * 2,
            check_vma=False)(xp, index)
    return mse[:, :n], out_sq[:, :n]


_compiled_stats = jax.jit(_all_stats, static_argnames=("num_noise", "batch_size", "mesh"))


def _check(denoiser, data, sigmas, key, num_noise, batch_size, mesh, name="data"):
    """Validate at the public boundary (outside jit); return normalized arguments."""
    if not callable(denoiser):
        raise ValueError(
            f"denoiser: expected a callable D(x, sigma), got {type(denoiser).__name__}")
    data = float_array(data, name, ndim=2)
    dim = getattr(denoiser, "dim", None)
    if dim is not None and data.shape[1] != dim:
        raise ValueError(f"{name}: expected last dimension d = {dim} (the denoiser's), "
                         f"got shape [{data.shape[0]}, {data.shape[1]}]")
    sigmas = float_array(sigmas, "sigmas", ndim=1)
    if is_concrete(sigmas) and not np.all(np.asarray(sigmas) > 0):
        raise ValueError(f"sigmas: expected values > 0, got min {float(np.min(sigmas))!r}")
    if not (isinstance(key, jax.Array) and key.shape in ((2,), ()) and
            (key.dtype == jnp.uint32 or jnp.issubdtype(key.dtype, jax.dtypes.prng_key))):
        raise ValueError(f"key: expected a PRNG key (jax.random.PRNGKey or jax.random.key), "
                         f"got {type(key).__name__} {getattr(key, 'shape', '')}")
    num_noise = positive_int(num_noise, "num_noise")
    if batch_size is None:
        batch_size = max(1, _MAX_ELEMENTS // (sigmas.shape[0] * num_noise * data.shape[1]))
    batch_size = positive_int(batch_size, "batch_size")
    if mesh is not None:
        if not isinstance(mesh, Mesh):
            raise ValueError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
        if len(mesh.axis_names) != 1:
            raise ValueError(f"mesh: expected a 1-D mesh, got axes {mesh.axis_names}")
        if getattr(denoiser, "mesh", None) is not None:
            raise ValueError("mesh: the denoiser is already sharded over a mesh (its training "
                             "points); pass mesh=None, or an unsharded denoiser")
        data = jax.device_put(data, NamedSharding(mesh, P()))
    return data, sigmas.astype(data.dtype), num_noise, batch_size


def per_example_loss(denoiser, data, sigmas, key, *, num_noise: int = 1,
                     batch_size: int | None = None, mesh: Mesh | None = None):
    r"""Per-example denoising loss, averaged over ``num_noise`` draws: ``[K, n]``.

    .. math:: \ell_{ki} = \frac{1}{R}\sum_{r} \frac{1}{d}
        \big|D(x_i + \sigma_k \epsilon_{ikr}, \sigma_k) - x_i\big|^2

    Args:
      denoiser: any callable ``D(x, sigma)`` obeying the protocol.
      data: ``[n, d]`` clean examples.
      sigmas: ``[K]`` noise levels (> 0).
      key: PRNG key; the noise is a function of ``(key, i, k, r)`` only.
      num_noise: noise draws ``R`` per example and sigma.
      batch_size: examples per compiled batch (default: ``K * R * batch * d ~ 4M``).
      mesh: optional 1-D ``jax.sharding.Mesh``: examples are spread over its devices.

    Returns:
      ``[K, n]`` float array.
    """
    data, sigmas, num_noise, batch_size = _check(denoiser, data, sigmas, key, num_noise,
                                                 batch_size, mesh)
    return _compiled_stats(denoiser, data, sigmas, key, num_noise=num_noise,
                           batch_size=batch_size, mesh=mesh)[0]


def denoising_loss(denoiser, data, sigmas, key, *, num_noise: int = 1,
                   batch_size: int | None = None, mesh: Mesh | None = None):
    r"""Per-sigma denoising loss ``[K]``: the mean of :func:`per_example_loss` over examples.

    .. math:: L(\sigma_k) = \frac{1}{n R}\sum_{i, r} \frac{1}{d}
        \big|D(x_i + \sigma_k \epsilon_{ikr}, \sigma_k) - x_i\big|^2

    Example:
      >>> L = denoising_loss(D, ds.val, noise.log_sigmas(16, 0.01, 10.0), key)
    """
    return jnp.mean(per_example_loss(denoiser, data, sigmas, key, num_noise=num_noise,
                                     batch_size=batch_size, mesh=mesh), axis=1)


def optimal_loss_identity(denoiser, data, sigmas, key, *, num_noise: int = 1,
                          batch_size: int | None = None, mesh: Mesh | None = None):
    r"""``E|x0|^2 / d - E|D(x_sigma)|^2 / d`` per sigma, ``[K]``, with the loss's noise.

    For the posterior-mean denoiser of the distribution the data are drawn from (the
    :class:`~jaxgap.denoisers.EmpiricalDenoiser` of ``data`` itself), this equals the
    optimal loss ``J*(sigma)`` in expectation, since ``E[x0 . D] = E|D|^2``: an independent
    cross-check of :func:`denoising_loss`.
    """
    data, sigmas, num_noise, batch_size = _check(denoiser, data, sigmas, key, num_noise,
                                                 batch_size, mesh)
    _, out_sq = _compiled_stats(denoiser, data, sigmas, key, num_noise=num_noise,
                                batch_size=batch_size, mesh=mesh)
    return jnp.mean(jnp.sum(data**2, axis=1)) / data.shape[1] - jnp.mean(out_sq, axis=1)


class GapCurve(NamedTuple):
    """Train and validation denoising losses over a noise grid, with standard errors.

    All fields are ``[K]`` arrays (``sigmas`` ascending or as given). Standard errors are
    over examples (each example's loss averaged over its noise draws); ``gap_se`` treats the
    train and validation sets as independent.
    """

    sigmas: Any
    train: Any
    val: Any
    gap: Any
    train_se: Any
    val_se: Any
    gap_se: Any

    @property
    def peak_sigma(self) -> float:
        """The sigma where the gap is largest."""
        return float(np.asarray(self.sigmas)[int(np.argmax(np.asarray(self.gap)))])

    def to_dict(self) -> dict:
        """Plain lists, ready for ``json.dump``."""
        return {f: np.asarray(getattr(self, f), np.float64).tolist() for f in self._fields}

    def to_json(self, **extra) -> str:
        """JSON text of :meth:`to_dict` plus any extra metadata keys."""
        return json.dumps({**extra, **self.to_dict()}, indent=2)

    def to_csv(self) -> str:
        """CSV text, one row per sigma."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self._fields)
        cols = [np.asarray(getattr(self, f), np.float64) for f in self._fields]
        for row in zip(*cols, strict=True):
            writer.writerow([repr(float(v)) for v in row])
        return buf.getvalue()


def _mean_se(losses):
    n = losses.shape[1]
    mean = jnp.mean(losses, axis=1)
    se = jnp.std(losses, axis=1, ddof=1) / math.sqrt(n) if n > 1 else jnp.full_like(mean, jnp.nan)
    return mean, se


def gap_curve(denoiser, train, val, sigmas, key, *, num_noise: int = 1,
              batch_size: int | None = None, mesh: Mesh | None = None) -> GapCurve:
    r"""Generalization-gap curve ``L_val(sigma) - L_train(sigma)`` with standard errors.

    Args:
      denoiser: any ``D(x, sigma)`` (typically fit on ``train``).
      train: ``[n_train, d]`` training examples.
      val: ``[n_val, d]`` held-out examples.
      sigmas: ``[K]`` noise levels.
      key: PRNG key, split once into a train and a validation key.
      num_noise, batch_size, mesh: as in :func:`per_example_loss`.

    Returns:
      :class:`GapCurve`.

    Example:
      >>> ds = data.load("digits")
      >>> curve = gap_curve(EmpiricalDenoiser(ds.train), ds.train, ds.val,
      ...                   noise.log_sigmas(32, 0.002, 80.0), jax.random.PRNGKey(0))
      >>> curve.peak_sigma
    """
    k_train, k_val = jax.random.split(key)
    lt = per_example_loss(denoiser, train, sigmas, k_train, num_noise=num_noise,
                          batch_size=batch_size, mesh=mesh)
    lv = per_example_loss(denoiser, val, sigmas, k_val, num_noise=num_noise,
                          batch_size=batch_size, mesh=mesh)
    t, t_se = _mean_se(lt)
    v, v_se = _mean_se(lv)
    return GapCurve(jnp.asarray(sigmas), t, v, v - t, t_se, v_se, jnp.sqrt(t_se**2 + v_se**2))


def weighted_objective(sigmas, losses, *, p_mean: float = -1.2, p_std: float = 1.2,
                       sigma_data: float = 0.5, min_mass: float = 0.98):
    r"""The EDM training objective from per-sigma losses: what a network minimizes.

    .. math:: J = \int p(\sigma)\,\lambda(\sigma)\,L(\sigma)\,d\sigma
              = \int p(\sigma)\,\sigma\,\lambda(\sigma)\,L(\sigma)\,d\log\sigma

    with ``p`` the log-normal training density (``P_mean``, ``P_std``) and
    ``lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (Karras et al. 2022, eq. 8
    and Table 1), by the trapezoidal rule in ``log sigma`` over the grid.

    Args:
      sigmas: ``[K]`` strictly increasing or decreasing noise levels.
      losses: ``[K]`` per-dimension losses at those levels.
      min_mass: the grid must hold at least this much of the density's mass.

    Returns:
      Scalar objective (per dimension).
    """
    sigmas = np.asarray(float_array(sigmas, "sigmas", ndim=1), np.float64)
    losses = np.asarray(float_array(losses, "losses", ndim=1), np.float64)
    if losses.shape != sigmas.shape:
        raise ValueError(f"losses: expected shape [{sigmas.shape[0]}] like sigmas, "
                         f"got [{losses.shape[0]}]")
    if sigmas.shape[0] < 2 or not (np.all(np.diff(sigmas) > 0) or np.all(np.diff(sigmas) < 0)):
        raise ValueError("sigmas: expected at least 2 strictly monotonic values")
    order = np.argsort(sigmas)
    s, ls = sigmas[order], losses[order]
    log_s = np.log(s)
    dens = np.asarray(_noise.lognormal_sigma_density(s, p_mean=p_mean, p_std=p_std)) * s
    mass = np.trapezoid(dens, log_s)
    if mass < min_mass:
        raise ValueError(
            f"sigmas: the grid [{s[0]:.3g}, {s[-1]:.3g}] holds only {mass:.3f} of the training "
            f"density's mass (expected >= {min_mass}); widen it to about "
            f"[{math.exp(p_mean - 3 * p_std):.3g}, {math.exp(p_mean + 3 * p_std):.3g}]")
    weight = np.asarray(_noise.edm_loss_weight(s, sigma_data))
    return float(np.trapezoid(dens * weight * ls, log_s))
