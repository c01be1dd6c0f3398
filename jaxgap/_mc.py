"""Monte Carlo noise with common random numbers, and the batched/sharded per-example map.

The one owner of the noise that losses (:mod:`jaxgap.losses`), the loss expansion
(:mod:`jaxgap.theory`) and noisy states (:mod:`jaxgap.metrics`) use: the noise of example
``i`` at grid index ``k`` and draw ``r`` is ``normal(fold_in(fold_in(fold_in(key, i), k), r))``,
a function of ``(key, i, k, r)`` only. Two denoisers evaluated with one key see identical
noise, and results do not depend on the batch size or the number of devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgap._checks import float_array, is_concrete, positive_int, prng_key
from jaxgap._protocol import check_denoiser

__all__ = ["check_batch_size", "check_loss_args", "check_mesh", "default_batch_size",
           "example_noise", "noisy_queries", "per_example_map", "place_data"]

_MAX_ELEMENTS = 1 << 22  # noisy queries per batch, times d: ~16 MB of float32 per buffer


def example_noise(key, index, k, r, dim: int, dtype=jnp.float32):
    """The standard normal noise ``[d]`` of example ``index`` at grid index ``k``, draw ``r``.

    Common random numbers: a function of ``(key, index, k, r)`` only.
    """
    sub = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, index), k), r)
    return jax.random.normal(sub, (dim,), dtype)


def noisy_queries(key, x0, index, sigmas, num_noise: int):
    """Noisy copies of a batch: ``x [K, R, B, d]`` and their noise levels ``sig [K, R, B]``.

    ``x0 [B, d]`` clean examples with global indices ``index [B]``, ``sigmas [K]``;
    ``x[k, r, b] = x0[b] + sigmas[k] * example_noise(key, index[b], k, r, d)``.
    """
    k_len, dim = sigmas.shape[0], x0.shape[-1]
    draws = jnp.arange(num_noise)
    grid = jnp.arange(k_len)
    eps = jax.vmap(lambda k: jax.vmap(lambda r: jax.vmap(
        lambda i: example_noise(key, i, k, r, dim, x0.dtype))(index))(draws))(grid)
    sig = jnp.broadcast_to(sigmas[:, None, None], (k_len, num_noise, x0.shape[0]))
    return x0[None, None] + sig[..., None] * eps, sig


def default_batch_size(num_sigmas: int, num_noise: int, dim: int) -> int:
    """Examples per batch so that ``K * R * batch * d`` is about 4M elements."""
    return max(1, _MAX_ELEMENTS // (num_sigmas * num_noise * dim))


def check_mesh(mesh, denoiser=None):
    """``mesh`` is None or a 1-D ``jax.sharding.Mesh`` (and the denoiser is not sharded)."""
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    if len(mesh.axis_names) != 1:
        raise ValueError(f"mesh: expected a 1-D mesh, got axes {mesh.axis_names}")
    if getattr(denoiser, "mesh", None) is not None:
        raise ValueError("mesh: the denoiser is already sharded over a mesh (its training "
                         "points); pass mesh=None, or an unsharded denoiser")
    return mesh


def device_text() -> str:
    """The devices JAX computes on, for a result's metadata: ``"CPU"`` (``"CPU (8
    devices)"``) or ``"1 x NVIDIA H200 (gpu)"`` (``device_kind`` per kind)."""
    devices = jax.devices()
    platform = devices[0].platform
    if platform == "cpu":
        return "CPU" if len(devices) == 1 else f"CPU ({len(devices)} devices)"
    kinds: dict[str, int] = {}
    for d in devices:
        kinds[d.device_kind] = kinds.get(d.device_kind, 0) + 1
    return ", ".join(f"{n} x {kind}" for kind, n in kinds.items()) + f" ({platform})"


def place_data(data, mesh):
    """``data`` replicated over ``mesh`` (unchanged when ``mesh`` is None)."""
    return data if mesh is None else jax.device_put(data, NamedSharding(mesh, P()))


def per_example_map(fn, data, cond=None, *, batch_size: int, mesh: Mesh | None = None):
    """Apply ``fn`` to batches of examples; returns its outputs as ``[K, n]`` arrays.

    ``fn(x0 [B, d], index [B], cond [B] | None)`` returns a tuple of ``[K, B]`` arrays
    (``index`` the examples' global indices, for common random numbers). Examples are padded
    to whole batches, mapped with ``lax.map`` (memory bounded by one batch) and, with a 1-D
    ``mesh``, spread over its devices with ``shard_map``. Runs inside the caller's jit.

    Args:
      fn: the per-batch statistic.
      data: ``[n, d]`` examples.
      cond: ``[n]`` int condition ids, or None.
      batch_size: examples per batch.
      mesh: optional 1-D mesh.

    Returns:
      A tuple of ``[K, n]`` arrays, one per output of ``fn``.
    """
    n = data.shape[0]
    num_dev = 1 if mesh is None else mesh.devices.size
    per_dev = -(-n // num_dev)
    bsz = min(batch_size, per_dev)
    per_dev = -(-per_dev // bsz) * bsz
    total = per_dev * num_dev
    xp = jnp.pad(data, ((0, total - n), (0, 0)))
    index = jnp.arange(total, dtype=jnp.uint32)
    cp = None if cond is None else jnp.pad(jnp.broadcast_to(cond, (n,)), (0, total - n))

    def local(x_loc, i_loc, c_loc):
        nb = x_loc.shape[0] // bsz
        batches = (x_loc.reshape(nb, bsz, -1), i_loc.reshape(nb, bsz),
                   None if c_loc is None else c_loc.reshape(nb, bsz))
        out = jax.lax.map(lambda a: fn(*a), batches)
        # [nb, K, bsz] per output -> [K, nb * bsz]
        return tuple(jnp.moveaxis(t, 0, 1).reshape(t.shape[1], nb * bsz) for t in out)

    if mesh is None:
        out = local(xp, index, cp)
    else:
        axis = mesh.axis_names[0]
        probe = jax.eval_shape(lambda: fn(xp[:bsz], index[:bsz],
                                          None if cp is None else cp[:bsz]))
        out = jax.shard_map(
            local, mesh=mesh, in_specs=(P(axis), P(axis), None if cp is None else P(axis)),
            out_specs=(P(None, axis),) * len(probe), check_vma=False)(xp, index, cp)
    return tuple(t[:, :n] for t in out)


def check_batch_size(batch_size, num_sigmas: int, num_noise: int, dim: int) -> int:
    """``batch_size`` checked, or the default for these sizes when None."""
    if batch_size is None:
        return default_batch_size(num_sigmas, num_noise, dim)
    return positive_int(batch_size, "batch_size")


def check_loss_args(key, denoiser, data, sigmas, cond, num_noise, batch_size, mesh,
                    name: str = "data") -> dict:
    """Validate a Monte Carlo loss's arguments at the public boundary (outside jit).

    Returns the normalized ``key, denoiser, data, sigmas, cond, num_noise, batch_size, mesh``
    as a dict (``data`` placed on ``mesh``; ``sigmas`` in the data's dtype).
    """
    key = prng_key(key)
    data = float_array(data, name, ndim=2)
    cond = check_denoiser(denoiser, cond, (data.shape[0],))
    dim = getattr(denoiser, "dim", None)
    if dim is not None and data.shape[1] != dim:
        raise ValueError(f"{name}: expected last dimension d = {dim} (the denoiser's), "
                         f"got shape [{data.shape[0]}, {data.shape[1]}]")
    sigmas = float_array(sigmas, "sigmas", ndim=1)
    if is_concrete(sigmas) and not np.all(np.asarray(sigmas) > 0):
        raise ValueError(f"sigmas: expected values > 0, got min {float(np.min(sigmas))!r}")
    num_noise = positive_int(num_noise, "num_noise")
    batch_size = check_batch_size(batch_size, sigmas.shape[0], num_noise, data.shape[1])
    mesh = check_mesh(mesh, denoiser)
    data = place_data(data, mesh)
    return dict(key=key, denoiser=denoiser, data=data, sigmas=sigmas.astype(data.dtype),
                cond=cond, num_noise=num_noise, batch_size=batch_size, mesh=mesh)
